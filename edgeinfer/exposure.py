"""Listening beyond loopback: what counts as loopback, and reading the token such a port then requires."""

from __future__ import annotations

import ipaddress
from pathlib import Path


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_secret(path: Path, flag: str) -> str:
    """The secret in `path` (a token, a password), stripped; ValueError naming `flag` but never the content."""
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
    if not secret:
        raise ValueError(f"{flag} {path}: the file is empty")
    return secret
