"""go-containerregistry's name.ParseReference (pkg/name at v0.20.3, the version knative/serving pins).

The webhook refuses a container image that parses neither as a tag reference (`[registry/]repo[:tag]`) nor as a
digest reference (`[registry/]repo[:tag]@sha256:<64 hex>`). ParseReference hides the reason behind one message,
`could not parse reference: <image>`; the reasons are kept on `BadNameError` for the Tag/Digest/Repository parsers.

A registry is checked the way Go's `url.Parse("//" + name)` sees an authority (Go 1.25, with the 1.25.2 rule that
only an IPv6 address may sit in brackets); the IPv6 literal itself is checked by Python's ipaddress, which accepts
the same forms as Go's netip for addresses without a zone.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass

DEFAULT_REGISTRY = "index.docker.io"
DEFAULT_REGISTRY_ALIAS = "docker.io"
DEFAULT_TAG = "latest"
DEFAULT_NAMESPACE = "library"
REPOSITORY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-./"
TAG_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SHA256_HEX = re.compile(r"[a-f0-9]{64}")


class BadNameError(ValueError):
    """name.ErrBadName; str() is its Error()."""


@dataclass(frozen=True)
class Options:
    """name.Option: weak validation by default, as the webhook calls it (name.WeakValidation)."""

    strict: bool = False
    default_registry: str = DEFAULT_REGISTRY
    default_tag: str = DEFAULT_TAG


WEAK = Options()


@dataclass(frozen=True)
class Registry:
    registry: str

    def name(self) -> str:
        return self.registry


@dataclass(frozen=True)
class Repository:
    registry: Registry
    repository: str

    def repository_str(self) -> str:
        if _has_implicit_namespace(self.repository, self.registry):
            return f"{DEFAULT_NAMESPACE}/{self.repository}"
        return self.repository

    def name(self) -> str:
        registry = self.registry.name()
        return f"{registry}/{self.repository_str()}" if registry else self.repository_str()


@dataclass(frozen=True)
class Tag:
    repository: Repository
    tag: str
    original: str

    def name(self) -> str:
        return f"{self.repository.name()}:{self.tag}"

    def __str__(self) -> str:
        return self.original


@dataclass(frozen=True)
class Digest:
    repository: Repository
    digest: str
    original: str

    def name(self) -> str:
        return f"{self.repository.name()}@{self.digest}"

    def __str__(self) -> str:
        return self.original


# --- check.go ---------------------------------------------------------------------------------------------


def _check_element(name: str, element: str, allowed: str, min_runes: int, max_runes: int) -> None:
    if not min_runes <= len(element) <= max_runes:
        raise BadNameError(f"{name} must be between {min_runes} and {max_runes} characters in length: {element}")
    if any(c not in allowed for c in element):
        raise BadNameError(f"{name} can only contain the characters `{allowed}`: {element}")


# --- registry.go ------------------------------------------------------------------------------------------


def _check_registry(name: str) -> None:
    # url.Parse("//" + name) must succeed with Host == name.
    if _url_authority_host(name) != name:
        raise BadNameError(f"registries must be valid RFC 3986 URI authorities: {name}")


def new_registry(name: str, opts: Options = WEAK) -> Registry:
    if opts.strict and not name:
        raise BadNameError("strict validation requires the registry to be explicitly defined")
    _check_registry(name)
    if not name:
        name = opts.default_registry
    if name == DEFAULT_REGISTRY_ALIAS:  # "docker.io" is "index.docker.io"
        name = DEFAULT_REGISTRY
    return Registry(name)


# --- repository.go ----------------------------------------------------------------------------------------


def _has_implicit_namespace(repo: str, registry: Registry) -> bool:
    return "/" not in repo and registry.name() == DEFAULT_REGISTRY


def new_repository(name: str, opts: Options = WEAK) -> Repository:
    if not name:
        raise BadNameError("a repository name must be specified")
    registry, repo = "", name
    parts = name.split("/", 1)
    # The first part is the registry only when it looks like a host (has a '.' or ':').
    if len(parts) == 2 and ("." in parts[0] or ":" in parts[0]):
        registry, repo = parts
    _check_element("repository", repo, REPOSITORY_CHARS, 2, 255)
    reg = new_registry(registry, opts)
    if _has_implicit_namespace(repo, reg) and opts.strict:
        raise BadNameError("strict validation requires the full repository path (missing 'library')")
    return Repository(reg, repo)


# --- tag.go -----------------------------------------------------------------------------------------------


def new_tag(name: str, opts: Options = WEAK) -> Tag:
    base, tag = name, ""
    parts = name.split(":")
    # A last part with a '/' is a registry's port followed by the repository, not a tag.
    if len(parts) > 1 and "/" not in parts[-1]:
        base, tag = ":".join(parts[:-1]), parts[-1]
    if tag or opts.strict:
        _check_element("tag", tag, TAG_CHARS, 1, 128)
    if not tag:
        tag = opts.default_tag
    return Tag(new_repository(base, opts), tag, name)


# --- digest.go --------------------------------------------------------------------------------------------


def new_digest(name: str, opts: Options = WEAK) -> Digest:
    parts = name.split("@")
    if len(parts) != 2:
        raise BadNameError(
            f"a digest must contain exactly one '@' separator (e.g. registry/repository@digest) saw: {name}"
        )
    base, digest = parts
    prefix = "sha256:"
    if not digest.startswith(prefix):
        raise BadNameError(f"unsupported digest algorithm: {digest}")
    encoded = digest[len(prefix) :]
    # go-digest's Algorithm.Validate (these two are plain errors in Go, not ErrBadName).
    if len(encoded) != 64:
        raise BadNameError("invalid checksum digest length")
    if not _SHA256_HEX.fullmatch(encoded):
        raise BadNameError("invalid checksum digest format")
    with contextlib.suppress(BadNameError):  # a tag in the base ("repo:tag@sha256:...") is dropped
        base = new_tag(base, opts).repository.name()
    return Digest(new_repository(base, opts), digest, name)


# --- ref.go -----------------------------------------------------------------------------------------------


def parse_reference(s: str, opts: Options = WEAK) -> Tag | Digest:
    """name.ParseReference: a tag reference if it is one, else a digest reference, else BadNameError."""
    try:
        return new_tag(s, opts)
    except BadNameError:
        pass
    try:
        return new_digest(s, opts)
    except BadNameError:
        pass
    raise BadNameError(f"could not parse reference: {s}")


# --- net/url, as far as url.Parse("//" + name).Host goes ---------------------------------------------------

_HOST_PUNCTUATION = set("!$&'()*+,;=:[]<>\"-_.~")


def _url_authority_host(name: str) -> str | None:
    """The Host url.Parse("//" + name) gives, or None where it fails."""
    raw = "//" + name
    raw = raw.split("#", 1)[0]  # the fragment
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return None  # invalid control character in URL
    # "//x?" only forces an empty query; otherwise the query starts at the first '?'.
    raw = raw[:-1] if raw.endswith("?") and raw.count("?") == 1 else raw.split("?", 1)[0]
    if raw.startswith("///"):
        return ""  # a path, no authority
    authority = raw[2:].split("/", 1)[0]
    at = authority.rfind("@")
    host = _parse_host(authority[at + 1 :] if at >= 0 else authority)
    if host is None:
        return None
    if at >= 0 and not _valid_userinfo(authority[:at]):
        return None
    return host


def _parse_host(host: str) -> str | None:
    if host.rfind("[") != -1:
        # An IP-literal: since Go 1.25.2 only an IPv6 address may be bracketed.
        open_index, close_index = host.rfind("["), host.rfind("]")
        if close_index < 0 or close_index < open_index:
            return None
        colon_port = host[close_index + 1 :]
        if not _valid_optional_port(colon_port):
            return None
        hostname = _unescape_host(host[open_index + 1 : close_index])
        if hostname is None or not _is_ipv6(hostname):
            return None
        return f"[{hostname}]{colon_port}"
    colon = host.rfind(":")
    if colon != -1 and not _valid_optional_port(host[colon:]):
        return None
    return _unescape_host(host)


def _valid_optional_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all("0" <= c <= "9" for c in port[1:]))


def _unescape_host(s: str) -> str | None:
    """url.unescape(s, encodeHost): %-escapes only for non-ASCII bytes (or %25); other ASCII must be allowed."""
    data = s.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        if c == ord("%"):
            hex_digits = data[i + 1 : i + 3]
            if len(hex_digits) < 2 or not all(chr(h) in "0123456789abcdefABCDEF" for h in hex_digits):
                return None
            value = int(hex_digits.decode(), 16)
            if value < 0x80 and hex_digits.decode().lower() != "25":
                return None
            out.append(value)
            i += 3
            continue
        if c < 0x80 and not (chr(c).isascii() and chr(c).isalnum()) and chr(c) not in _HOST_PUNCTUATION:
            return None  # invalid character in host name
        out.append(c)
        i += 1
    return out.decode("utf-8", errors="replace")


def _valid_userinfo(s: str) -> bool:
    allowed = set("-._:~!$&'()*+,;=%@")
    return all(("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in allowed for c in s)


def _is_ipv6(s: str) -> bool:
    # netip.ParseAddr, then not Is4(): an IPv6 address (a zone needs '%', which cannot reach here unescaped).
    if "%" in s or ":" not in s:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True
