"""go-containerregistry's pkg/name tables (v0.20.3, the version knative/serving 98e5ef90 pins), weak validation.

From ref_test.go, tag_test.go, digest_test.go, repository_test.go and registry_test.go: the name lists and the
tests that parse them with name.WeakValidation, the path the webhook takes (name.ParseReference(image,
name.WeakValidation)). Ids are `UpstreamTestFunction/name`.
"""

from __future__ import annotations

import pytest

from edgeinfer.knative.webhook.image_reference import (
    DEFAULT_REGISTRY,
    BadNameError,
    Digest,
    Options,
    Tag,
    new_digest,
    new_registry,
    new_repository,
    new_tag,
    parse_reference,
)

VALID_DIGEST = "sha256:deadb33fdeadb33fdeadb33fdeadb33fdeadb33fdeadb33fdeadb33fdeadb33f"
STRICT = Options(strict=True)

GOOD_STRICT_TAG_NAMES = [
    "gcr.io/g-convoy/hello-world:latest",
    "gcr.io/google.com/g-convoy/hello-world:latest",
    "gcr.io/project-id/with-nums:v2",
    "us.gcr.io/project-id/image:with.period.in.tag",
    "gcr.io/project-id/image:w1th-alpha_num3ric.PLUScaps",
    "domain.with.port:9001/image:latest",
]
GOOD_WEAK_TAG_NAMES = [
    "namespace/pathcomponent/image",
    "library/ubuntu",
    "gcr.io/project-id/implicit-latest",
    "www.example.test:12345/repo/path",
]
BAD_TAG_NAMES = [
    "gcr.io/project-id/bad_chars:c@n'tuse",
    "gcr.io/project-id/wrong-length:white space",
    "gcr.io/project-id/too-many-chars:thisisthetagthatneverendsitgoesonandonmyfriendsomepeoplestartedtaggingitnot"
    "knowingwhatitwasandtheyllcontinuetaggingitforeverjustbecausethisisthetagthatneverends",
]
GOOD_STRICT_DIGEST_NAMES = [
    "gcr.io/g-convoy/hello-world@" + VALID_DIGEST,
    "gcr.io/google.com/project-id/hello-world@" + VALID_DIGEST,
    "us.gcr.io/project-id/sub-repo@" + VALID_DIGEST,
    "example.text/foo/bar@" + VALID_DIGEST,
]
GOOD_STRICT_TAG_DIGEST_NAMES = [
    "example.text/foo/bar:latest@" + VALID_DIGEST,
    "example.text:8443/foo/bar:latest@" + VALID_DIGEST,
    "example.text/foo/bar:v1.0.0-alpine@" + VALID_DIGEST,
]
GOOD_WEAK_DIGEST_NAMES = [
    "namespace/pathcomponent/image@" + VALID_DIGEST,
    "library/ubuntu@" + VALID_DIGEST,
]
GOOD_WEAK_TAG_DIGEST_NAMES = [
    "nginx:latest@" + VALID_DIGEST,
    "library/nginx:latest@" + VALID_DIGEST,
]
BAD_DIGEST_NAMES = [
    "gcr.io/project-id/unknown-alg@unknown:abc123",
    "gcr.io/project-id/wrong-length@sha256:d34db33fd34db33f",
    "gcr.io/project-id/missing-digest@",
    "repo@sha256:" + ":" * 64,  # go-containerregistry#1394
    "repo@sha256:" + "sh" * 32,
    "repo@sha256:" + VALID_DIGEST + "@" + VALID_DIGEST,
]
GOOD_STRICT_REPOSITORY_NAMES = [
    "gcr.io/g-convoy/hello-world",
    "gcr.io/google.com/project-id/hello-world",
    "us.gcr.io/project-id/sub-repo",
    "example.text/foo/bar",
    "mirror.gcr.io/ubuntu",
    "index.docker.io/library/ubuntu",
]
GOOD_WEAK_REPOSITORY_NAMES = ["namespace/pathcomponent/image", "library/ubuntu", "ubuntu"]
BAD_REPOSITORY_NAMES = ["white space", "b@char/image", ""]
GOOD_STRICT_REGISTRY_NAMES = ["gcr.io", "gcr.io:9001", "index.docker.io", "us.gcr.io", "example.text", "localhost"]
GOOD_STRICT_REGISTRY_NAMES += ["localhost:9090"]
GOOD_WEAK_REGISTRY_NAMES = [""]
BAD_REGISTRY_NAMES = ["white space", "gcr?com"]


def ids(test: str, names: list[str]) -> list[object]:
    return [pytest.param(name, id=f"{test}/{name}") for name in names]


# --- ref_test.go: TestParseReference (its WeakValidation loops) ----------------------------------------------


@pytest.mark.parametrize("name", ids("TestParseReference", GOOD_WEAK_DIGEST_NAMES))
def test_parse_reference_digest(name: str) -> None:
    ref = parse_reference(name)
    assert isinstance(ref, Digest)
    assert ref == new_digest(name)


@pytest.mark.parametrize("name", ids("TestParseReference", GOOD_WEAK_TAG_NAMES))
def test_parse_reference_tag(name: str) -> None:
    ref = parse_reference(name)
    assert isinstance(ref, Tag)
    assert ref == new_tag(name)


@pytest.mark.parametrize("name", ids("TestParseReference", BAD_DIGEST_NAMES + BAD_TAG_NAMES))
def test_parse_reference_bad(name: str) -> None:
    with pytest.raises(BadNameError, match=r"^could not parse reference: "):
        parse_reference(name)


# --- tag_test.go, digest_test.go, repository_test.go, registry_test.go: the weak-validation tests ------------------


@pytest.mark.parametrize("name", ids("TestNewTag", GOOD_STRICT_TAG_NAMES + GOOD_WEAK_TAG_NAMES))
def test_new_tag(name: str) -> None:
    new_tag(name)


@pytest.mark.parametrize("name", ids("TestNewTag", BAD_TAG_NAMES))
def test_new_tag_bad(name: str) -> None:
    with pytest.raises(BadNameError):
        new_tag(name)


@pytest.mark.parametrize("name", ids("TestNewTagStrictValidation", GOOD_STRICT_TAG_NAMES))
def test_new_tag_strict(name: str) -> None:
    assert new_tag(name, STRICT).name() == name


@pytest.mark.parametrize("name", ids("TestNewTagStrictValidation", GOOD_WEAK_TAG_NAMES + BAD_TAG_NAMES))
def test_new_tag_strict_bad(name: str) -> None:
    with pytest.raises(BadNameError):
        new_tag(name, STRICT)


def test_all_defaults() -> None:
    """TestAllDefaults."""
    assert new_tag("ubuntu").name() == "index.docker.io/library/ubuntu:latest"


@pytest.mark.parametrize(
    "name",
    ids("TestNewDigest", GOOD_STRICT_DIGEST_NAMES + GOOD_WEAK_DIGEST_NAMES + GOOD_WEAK_TAG_DIGEST_NAMES),
)
def test_new_digest(name: str) -> None:
    new_digest(name)


@pytest.mark.parametrize("name", ids("TestNewDigest", BAD_DIGEST_NAMES))
def test_new_digest_bad(name: str) -> None:
    with pytest.raises(BadNameError):
        new_digest(name)


@pytest.mark.parametrize("name", ids("TestNewDigestStrictValidation", GOOD_STRICT_TAG_DIGEST_NAMES))
def test_new_digest_strict_tag_digest(name: str) -> None:
    new_digest(name, STRICT)


@pytest.mark.parametrize("name", ids("TestNewRepository", GOOD_STRICT_REPOSITORY_NAMES + GOOD_WEAK_REPOSITORY_NAMES))
def test_new_repository(name: str) -> None:
    new_repository(name)


@pytest.mark.parametrize("name", ids("TestNewRepository", BAD_REPOSITORY_NAMES))
def test_new_repository_bad(name: str) -> None:
    with pytest.raises(BadNameError):
        new_repository(name)


@pytest.mark.parametrize("name", ids("TestNewRegistry", GOOD_STRICT_REGISTRY_NAMES + GOOD_WEAK_REGISTRY_NAMES))
def test_new_registry(name: str) -> None:
    new_registry(name)


@pytest.mark.parametrize("name", ids("TestNewRegistry", BAD_REGISTRY_NAMES))
def test_new_registry_bad(name: str) -> None:
    with pytest.raises(BadNameError, match=r"^registries must be valid RFC 3986 URI authorities: "):
        new_registry(name)


@pytest.mark.parametrize("name", ids("TestDefaultRegistryNames", ["docker.io", ""]))
def test_default_registry_names(name: str) -> None:
    assert new_registry(name).name() == DEFAULT_REGISTRY


# --- not upstream: what the webhook's cases and the Go parsers' rules imply ---------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("foo:bar:baz", "could not parse reference: foo:bar:baz"),  # Knative's "invalid container image"
        ("Foo", "could not parse reference: Foo"),  # a repository is lower case
        ("a", "could not parse reference: a"),  # at least 2 characters
    ],
)
def test_parse_reference_errors(name: str, message: str) -> None:
    with pytest.raises(BadNameError) as raised:
        parse_reference(name)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Foo", "repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: Foo"),
        ("a", "repository must be between 2 and 255 characters in length: a"),
        (
            "foo:b@d",
            "tag can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTU"
            "VWXYZ`: b@d",
        ),
        ("gcr.io:x/foo", "registries must be valid RFC 3986 URI authorities: gcr.io:x"),
    ],
)
def test_new_tag_errors(name: str, message: str) -> None:
    with pytest.raises(BadNameError) as raised:
        new_tag(name)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("localhost:5000/foo", True),
        ("[::1]:5000/foo", True),
        ("[::1]/foo:v1", True),
        ("[127.0.0.1]:5000/foo", False),  # only IPv6 in brackets (Go 1.25.2)
        ("[nothost]/foo", False),
        ("my.registry:5000:6000/foo", True),  # the port is after the last ':'
        ("my.registry:50a/foo", False),
        ("my.reg%41istry/foo", False),  # a %-escape changes the host
        ("my.reg~istry/foo", True),
        ("my.reg^istry/foo", False),
    ],
)
def test_registry_authority(name: str, valid: bool) -> None:
    try:
        parse_reference(name)
    except BadNameError:
        assert not valid
    else:
        assert valid


LEFT_OUT: dict[str, str] = {
    "TestParseReferenceDefaulting": "WithDefaultRegistry/WithDefaultTag options; the webhook uses the defaults",
    "TestParseReference/StrictValidation": "strict validation; the webhook uses WeakValidation",
    "TestNewDigestStrictValidation/goodStrictValidationDigestNames": "strict Name() round trip; not the webhook path",
    "TestNewRepositoryStrictValidation": "strict validation; the webhook uses WeakValidation",
    "TestNewRegistryStrictValidation": "strict validation; the webhook uses WeakValidation",
    "TestNewInsecureRegistry": "Insecure option (http scheme); not on the webhook path",
    "TestOverrideDefaultRegistryNames": "WithDefaultRegistry option; the webhook uses the defaults",
    "TestOverrideDefault": "WithDefaultTag option; the webhook uses the defaults",
    "TestMustParseReference": "Go's panicking wrapper of ParseReference; same lists as TestParseReference",
    "TestTagComponents/TestDigestComponents/TestRepositoryComponents": "accessors (RegistryStr, Scope...) unused",
    "TestTagScopes/TestDigestScopes/TestRepositoryScopes/TestRegistryScopes": "registry auth scopes; unused",
    "TestJSON": "JSON (un)marshalling of Digest; unused",
    "TestRepositoryBadDefaulting/TestRepositoryChildren": "strict and Insecure options, Tag()/Digest() builders",
    "errors_test.go, TestRegistrySchemes...": "error type assertions, http/https scheme choice; unused",
}
