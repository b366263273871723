"""A manifest's values as Go's decoder would hand them to the webhook: a missing field, or one of a type the CRD
schema refuses (it runs first), reads as Go's zero value, so validation never trips over a malformed map."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def as_map(value: Any) -> Mapping[str, Any]:
    """A struct or map field: {} when unset."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """A slice field: [] when unset."""
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str:
    """A string field: "" when unset."""
    return value if isinstance(value, str) else ""


def as_int(value: Any) -> int | None:
    """An *int32/*int64 field: None when unset (a JSON bool is not a number here)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_int_or_zero(value: Any) -> int:
    """An int32/int64 value field: 0 when unset."""
    found = as_int(value)
    return 0 if found is None else found


def is_present(obj: Mapping[str, Any], key: str) -> bool:
    """A pointer field is non-nil."""
    return obj.get(key) is not None
