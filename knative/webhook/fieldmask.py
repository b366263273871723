"""apis.CheckDisallowedFields for manifests: the fields set in an object that its mask does not allow.

Knative's fieldmask.go copies the allowed fields of a struct into an empty one and reports, by JSON name, each
field where the two differ (kmp.CompareSetFields). On a manifest's map that is: each key outside `allowed` whose
value is set. A value field (bool, number, string, struct) is set when it is not Go's zero value; a pointer field
(listed in `pointers`) is set whenever it is present, `false` and `0` included, as in Go.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from edgeinfer.knative.webhook.field_error import NIL, FieldError, err_disallowed_fields


def is_zero(value: Any) -> bool:
    """Go's zero value as JSON decodes it: null, false, 0, "", and an object whose fields are all zero."""
    if value is None or value is False or value == "" or (isinstance(value, (int, float)) and value == 0):
        return True
    if isinstance(value, Mapping):
        return all(is_zero(v) for v in value.values())
    if isinstance(value, list):
        return not value
    return False


def is_set(obj: Mapping[str, Any] | None, key: str, *, pointer: bool = False) -> bool:
    if not isinstance(obj, Mapping) or key not in obj or obj[key] is None:
        return False
    return pointer or not is_zero(obj[key])


def disallowed_fields(
    obj: Mapping[str, Any] | None, allowed: Collection[str], *, pointers: Collection[str] = ()
) -> list[str]:
    """The keys of `obj` set and not allowed, sorted (as kmp sorts them)."""
    if not isinstance(obj, Mapping):
        return []
    return sorted(k for k in obj if k not in allowed and is_set(obj, k, pointer=k in pointers))


def check_disallowed_fields(
    obj: Mapping[str, Any] | None, allowed: Collection[str], *, pointers: Collection[str] = ()
) -> FieldError:
    found = disallowed_fields(obj, allowed, pointers=pointers)
    return err_disallowed_fields(*found) if found else NIL
