"""knative.dev/pkg/apis.FieldError: an error with the field paths it concerns, merged and sorted as Knative does.

An empty FieldError stands for Go's nil: it is falsy, `.also()` drops it, and `.via_*()` keeps it empty, so
validation code reads like its Go original without None checks. `str()` is Go's `Error()`, byte for byte, so a
ported test compares the text Knative's own test compares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from edgeinfer.knative.webhook.go import quote, sprint

CURRENT_FIELD = ""


class Level(IntEnum):
    ERROR = 0
    WARNING = 1

    def __str__(self) -> str:
        return "Error" if self is Level.ERROR else "Warning"


@dataclass(frozen=True)
class FieldError:
    message: str = ""
    paths: tuple[str, ...] = ()
    level: Level = Level.ERROR
    details: str = ""
    errors: tuple[FieldError, ...] = field(default=(), repr=False)

    # --- Go's nil ---------------------------------------------------------------------------------------
    def is_empty(self) -> bool:
        return not self.message and not self.details and not self.errors and not self.paths

    def __bool__(self) -> bool:
        return not self.is_empty()

    # --- paths ------------------------------------------------------------------------------------------
    def via_field(self, *prefix: str) -> FieldError:
        if self.is_empty():
            return self
        result = FieldError(
            self.message, tuple(_flatten([*prefix, path]) for path in self.paths), self.level, self.details
        )
        for child in self.errors:
            result = result.also(child.via_field(*prefix))
        return result

    def via_index(self, index: int) -> FieldError:
        return self.via_field(f"[{index}]")

    def via_field_index(self, name: str, index: int) -> FieldError:
        return self.via_index(index).via_field(name)

    def via_key(self, key: str) -> FieldError:
        return self.via_field(f"[{key}]")

    def via_field_key(self, name: str, key: str) -> FieldError:
        return self.via_key(key).via_field(name)

    # --- levels -----------------------------------------------------------------------------------------
    def at(self, level: Level) -> FieldError:
        if self.is_empty():
            return self
        result = FieldError(self.message, self.paths, level, self.details)
        for child in self.errors:
            result = result.also(child.at(level))
        return result

    def filter(self, level: Level) -> FieldError:
        result = FieldError(self.message, self.paths, self.level, self.details) if self.level == level else NIL
        for child in self.errors:
            result = result.also(child.filter(level))
        return result if not result.is_empty() else NIL

    # --- combining --------------------------------------------------------------------------------------
    def also(self, *others: FieldError | None) -> FieldError:
        kept = tuple(e for e in others if e is not None and not e.is_empty())
        if not kept:
            return self
        base = self if not self.is_empty() else FieldError()
        result = FieldError(base.message, base.paths, base.level, base.details, base.errors + kept)
        return result if not result.is_empty() else NIL

    # --- text -------------------------------------------------------------------------------------------
    def _normalized(self) -> list[FieldError]:
        found = [FieldError(self.message, self.paths, self.level, self.details)] if self.message else []
        for child in self.errors:
            found.extend(child._normalized())
        return found

    def wrapped_errors(self) -> list[FieldError]:
        """One error per (level, message, details), its paths merged and sorted; sorted as Knative sorts them."""
        merged: dict[tuple[int, str, str], list[str]] = {}
        first: dict[tuple[int, str, str], FieldError] = {}
        for error in self._normalized():
            key = (int(error.level), error.message, error.details)
            paths = merged.setdefault(key, [])
            first.setdefault(key, error)
            paths.extend(p for p in error.paths if p not in paths)
        result = [
            FieldError(first[key].message, tuple(sorted(paths)), first[key].level, first[key].details)
            for key, paths in merged.items()
        ]
        return sorted(result, key=lambda e: (e.message, e.details, int(e.level)))

    def __str__(self) -> str:
        lines = []
        for error in self.wrapped_errors():
            text = f"{error.message}: {', '.join(error.paths)}"
            lines.append(f"{text}\n{error.details}" if error.details else text)
        return "\n".join(lines)

    def __eq__(self, other: object) -> bool:
        # Knative's tests compare the text (cmp.Diff of Error()); structure may differ, meaning may not.
        if not isinstance(other, FieldError):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


NIL = FieldError()


def _flatten(parts: Iterable[str]) -> str:
    path: list[str] = []
    for part in parts:
        for piece in part.split("."):
            if piece == CURRENT_FIELD:
                continue
            if path and piece.startswith("[") and piece.endswith("]"):
                path[-1] += piece
            else:
                path.append(piece)
    return ".".join(path)


# --- the constructors of knative.dev/pkg/apis ------------------------------------------------------------


def err_missing_field(*paths: str) -> FieldError:
    return FieldError("missing field(s)", paths)


def err_disallowed_fields(*paths: str) -> FieldError:
    return FieldError("must not set the field(s)", paths)


def err_disallowed_update_deprecated_fields(*paths: str) -> FieldError:
    return FieldError("must not update deprecated field(s)", paths)


def err_invalid_array_value(value: Any, name: str, index: int) -> FieldError:
    return err_invalid_value(value, CURRENT_FIELD).via_field_index(name, index)


def err_invalid_value(value: Any, path: str, *details: str) -> FieldError:
    return FieldError(f"invalid value: {sprint(value)}", (path,), details=", ".join(details))


def err_generic(diagnostic: str, *paths: str) -> FieldError:
    return FieldError(diagnostic, paths)


def err_missing_one_of(*paths: str) -> FieldError:
    return FieldError("expected exactly one, got neither", paths)


def err_multiple_one_of(*paths: str) -> FieldError:
    return FieldError("expected exactly one, got both", paths)


def err_invalid_key_name(key: str, path: str, *details: str) -> FieldError:
    return FieldError(f"invalid key name {quote(key)}", (path,), details=", ".join(details))


def err_out_of_bounds_value(value: Any, lower: Any, upper: Any, path: str) -> FieldError:
    return FieldError(f"expected {sprint(lower)} <= {sprint(value)} <= {sprint(upper)}", (path,))
