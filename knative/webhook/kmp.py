"""knative.dev/pkg/kmp.ShortDiff: go-cmp's comparison of two Go values, reported as Knative's short diff.

ShortDiff walks both values as cmp.Equal does (with kmp's Quantity comparer) and, for each difference, writes
the cmp.Path's GoString and the two values in %+v:

    {v1.RevisionSpec}.PodSpec.Containers[0].Image:
        -: "busybox"
        +: "helloworld"

Manifests are JSON maps, so the walk follows the Go types of go_types.py: a missing key is Go's zero value, a
missing pointer, slice or map is nil (not the same as an empty one, as in Go), an inlined struct reads the same
map. Slices are matched element by element with go-cmp's edit-script search (internal/diff), run in its
forward-first order (go-cmp picks the direction at random per process). Go prints a pointer's address where
%+v meets one below the top; this port prints 0xc000000000 there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeinfer.knative.webhook.go import quote, sprint
from edgeinfer.knative.webhook.go_types import NAMED, STRUCTS
from edgeinfer.knative.webhook.quantity import Quantity, QuantityError, parse_json_quantity

_ADDRESS = "0xc000000000"
_INTS = {"int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "byte"}
_MAP = re.compile(r"map\[([^\]]+)\](.*)")
_ZERO_TIME = "0001-01-01 00:00:00 +0000 UTC"


# --- types ------------------------------------------------------------------------------------------------


def _underlying(t: str) -> str:
    while t in NAMED:
        t = NAMED[t]
    return t


def _kind(t: str) -> str:
    """reflect.Kind, as far as the walk needs it."""
    u = _underlying(t)
    if u.startswith("*"):
        return "ptr"
    if u.startswith("[]"):
        return "slice"
    if u.startswith("map["):
        return "map"
    if u in STRUCTS or u in ("resource.Quantity", "time.Time", "intstr.IntOrString"):
        return "struct"
    return u


def _elem(t: str) -> str:
    u = _underlying(t)
    if u.startswith("*"):
        return u[1:]
    if u.startswith("[]"):
        return u[2:]
    match = _MAP.fullmatch(u)
    return match.group(2) if match else u


def _fields(t: str, raw: Any) -> list[tuple[str, str, Any]]:
    """The struct's fields in Go's order: (name, type, raw value); an inlined struct reads the same map."""
    if t == "intstr.IntOrString":
        if isinstance(raw, str):
            return [("Type", "intstr.Type", 1), ("IntVal", "int32", 0), ("StrVal", "string", raw)]
        number = raw if isinstance(raw, int) and not isinstance(raw, bool) else 0
        return [("Type", "intstr.Type", 0), ("IntVal", "int32", number), ("StrVal", "string", "")]
    if t == "v1.Time":
        return [("Time", "time.Time", raw)]
    obj = raw if isinstance(raw, Mapping) else {}
    result: list[tuple[str, str, Any]] = []
    for name, json_name, field_type in STRUCTS.get(t, ()):
        if json_name == "":
            result.append((name, field_type, obj))
        elif json_name is None:
            result.append((name, field_type, None))
        else:
            result.append((name, field_type, obj.get(json_name)))
    return result


def _zero(kind: str) -> Any:
    if kind == "string":
        return ""
    if kind == "bool":
        return False
    if kind in ("float32", "float64"):
        return 0.0
    return 0


def _quantity(raw: Any) -> Quantity:
    if raw is None:
        return Quantity()
    try:
        return parse_json_quantity(raw)
    except QuantityError:
        return Quantity()


# --- %+v ---------------------------------------------------------------------------------------------------


def _stringer(t: str, raw: Any) -> str | None:
    """String() of a value whose type (or pointer type) has one: fmt prints it instead of the fields."""
    if t == "*resource.Quantity":
        return str(_quantity(raw))
    if t == "*intstr.IntOrString":
        fields = dict((name, value) for name, _, value in _fields("intstr.IntOrString", raw))
        return str(fields["StrVal"]) if fields["Type"] == 1 else sprint(fields["IntVal"])
    if t in ("v1.Time", "*v1.Time", "time.Time"):
        return str(raw) if raw else _ZERO_TIME
    return None


def format_value(t: str, raw: Any, depth: int = 0) -> str:
    """fmt's %+v of a value of Go type t read from JSON."""
    text = _stringer(t, raw)
    if text is not None and (raw is not None or not t.startswith("*")):
        return text
    kind = _kind(t)
    if kind == "ptr":
        if raw is None:
            return "<nil>"
        if depth == 0 and _kind(_elem(t)) in ("struct", "slice", "map"):
            return "&" + format_value(_elem(t), raw, depth + 1)
        return _ADDRESS
    if kind == "slice":
        items = raw if isinstance(raw, list) else []
        return "[" + " ".join(format_value(_elem(t), item, depth + 1) for item in items) + "]"
    if kind == "map":
        entries = raw if isinstance(raw, Mapping) else {}
        return "map[" + " ".join(f"{k}:{format_value(_elem(t), entries[k], depth + 1)}" for k in sorted(entries)) + "]"
    if t == "resource.Quantity":
        return _quantity(raw).go_struct()
    if kind == "struct":
        return "{" + " ".join(f"{n}:{format_value(ft, v, depth + 1)}" for n, ft, v in _fields(t, raw)) + "}"
    return sprint(_zero(kind) if raw is None else raw)


# --- cmp.Path ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    kind: str  # root, field, slice, map, indirect
    text: str
    type: str
    x: Any = None
    y: Any = None
    x_valid: bool = True
    y_valid: bool = True


def _go_string(path: list[_Step]) -> str:
    """Path.GoString: steps joined, a dereference written as a leading '*' (not on struct fields)."""
    pre: list[str] = []
    post: list[str] = []
    indirects = 0
    for i, step in enumerate(path):
        following = path[i + 1] if i + 1 < len(path) else None
        if step.kind == "indirect":
            indirects += 1
            open_, close_ = "(", ")"
            if following is not None and following.kind == "indirect":
                continue  # batch consecutive indirections
            if following is not None and following.kind == "field":
                indirects -= 1  # automatic indirection on struct fields
            elif following is None:
                open_, close_ = "", ""
            if indirects > 0:
                pre.append(open_ + "*" * indirects)
                post.append(close_)
            indirects = 0
            continue
        post.append(step.text)
    return "".join(reversed(pre)) + "".join(post)


# --- cmp.Equal with a reporter ---------------------------------------------------------------------------


class _State:
    def __init__(self, report: bool) -> None:
        self.path: list[_Step] = []
        self.same = 0
        self.diff = 0
        self.reporting = report
        self.diffs: list[str] = []

    def report(self, equal: bool) -> None:
        if equal:
            self.same += 1
            return
        self.diff += 1
        if not self.reporting:
            return
        step = self.path[-1]
        text = _go_string(self.path) + ":\n"
        if step.x_valid:
            text += _diff_string("-", step.type, step.x)
        if step.y_valid:
            text += _diff_string("+", step.type, step.y)
        self.diffs.append(text)

    def stateless(self, step: _Step) -> tuple[int, int]:
        """statelessCompare: the (same, diff) counts of one comparison, reported nowhere."""
        saved = (self.same, self.diff, self.reporting)
        self.same, self.diff, self.reporting = 0, 0, False
        self.compare(step)
        result = (self.same, self.diff)
        self.same, self.diff, self.reporting = saved
        return result

    def compare(self, step: _Step) -> None:
        self.path.append(step)
        try:
            self._compare_any(step)
        finally:
            self.path.pop()

    def _compare_any(self, step: _Step) -> None:
        if not step.x_valid or not step.y_valid:
            self.report(step.x_valid == step.y_valid)
            return
        t, x, y = step.type, step.x, step.y
        if _underlying(t) == "resource.Quantity":
            # kmp's comparer: the same number, however spelled.
            self.report(_quantity(x).cmp(_quantity(y)) == 0)
            return
        if t == "time.Time":
            self.report((x or None) == (y or None))
            return
        kind = _kind(t)
        if kind == "ptr":
            if x is None or y is None:
                self.report(x is None and y is None)
                return
            self.compare(_Step("indirect", "*", _elem(t), x, y))
        elif kind == "struct":
            x_fields, y_fields = _fields(t, x), _fields(t, y)
            for (name, field_type, xv), (_, _, yv) in zip(x_fields, y_fields, strict=True):
                self.compare(_Step("field", "." + name, field_type, xv, yv))
        elif kind == "slice":
            if not isinstance(x, list) or not isinstance(y, list):
                self.report(not isinstance(x, list) and not isinstance(y, list))
                return
            self._compare_slice(t, x, y)
        elif kind == "map":
            if not isinstance(x, Mapping) or not isinstance(y, Mapping):
                self.report(not isinstance(x, Mapping) and not isinstance(y, Mapping))
                return
            elem = _elem(t)
            for key in sorted(set(x) | set(y)):
                self.compare(_Step("map", f"[{quote(str(key))}]", elem, x.get(key), y.get(key), key in x, key in y))
        else:
            zero = _zero(kind)
            self.report((zero if x is None else x) == (zero if y is None else y))

    def _compare_slice(self, t: str, x: list[Any], y: list[Any]) -> None:
        elem = _elem(t)

        def step(ix: int, iy: int) -> _Step:
            text = (
                f"[{ix}]" if ix == iy else f"[{ix}->?]" if iy == -1 else f"[?->{iy}]" if ix == -1 else f"[{ix}->{iy}]"
            )
            return _Step(
                "slice",
                text,
                elem,
                x[ix] if ix >= 0 else None,
                y[iy] if iy >= 0 else None,
                ix >= 0,
                iy >= 0,
            )

        edits = _difference(len(x), len(y), lambda ix, iy: self.stateless(step(ix, iy)))
        ix = iy = 0
        for edit in edits:
            if edit == _UNIQUE_X:
                self.compare(step(ix, -1))
                ix += 1
            elif edit == _UNIQUE_Y:
                self.compare(step(-1, iy))
                iy += 1
            else:
                self.compare(step(ix, iy))
                ix += 1
                iy += 1


def _diff_string(sign: str, t: str, raw: Any) -> str:
    """shortDiffReporter.diffString: a struct value is prefixed with its type."""
    if _kind(t) == "struct":
        return f'\t{sign}: {t}: "{format_value(t, raw)}"\n'
    return f'\t{sign}: "{format_value(t, raw)}"\n'


def short_diff(prev: Any, cur: Any, type_name: str, *, pointer: bool = False) -> str:
    """kmp.ShortDiff(prev, cur) of two values of Go type `type_name` (pointers to it with pointer=True)."""
    state = _State(report=True)
    if pointer:
        root = _Step("root", "{*" + type_name + "}", "*" + type_name, prev, cur)
    else:
        root = _Step("root", "{" + type_name + "}", type_name, prev, cur)
    state.compare(root)
    return "".join(state.diffs)


# --- go-cmp/cmp/internal/diff ------------------------------------------------------------------------------

_IDENTITY, _UNIQUE_X, _UNIQUE_Y, _MODIFIED = 0, 1, 2, 3


def _zigzag(x: int) -> int:
    if x & 1:
        x = ~x
    return x >> 1


class _Path:
    def __init__(self, direction: int, x: int, y: int) -> None:
        self.dir, self.x, self.y = direction, x, y
        self.es: list[int] = []

    def append(self, edit: int) -> None:
        self.es.append(edit)
        if edit in (_IDENTITY, _MODIFIED):
            self.x += self.dir
            self.y += self.dir
        elif edit == _UNIQUE_X:
            self.x += self.dir
        else:
            self.y += self.dir

    def connect(self, dx: int, dy: int, f: Callable[[int, int], tuple[int, int]]) -> None:
        if self.dir > 0:
            while dx > self.x and dy > self.y:
                same, diff = f(self.x, self.y)
                if diff == 0:
                    self.append(_IDENTITY)
                elif same + 1 >= diff:
                    self.append(_MODIFIED)
                elif dx - self.x >= dy - self.y:
                    self.append(_UNIQUE_X)
                else:
                    self.append(_UNIQUE_Y)
            while dx > self.x:
                self.append(_UNIQUE_X)
            while dy > self.y:
                self.append(_UNIQUE_Y)
        else:
            while self.x > dx and self.y > dy:
                same, diff = f(self.x - 1, self.y - 1)
                if diff == 0:
                    self.append(_IDENTITY)
                elif same + 1 >= diff:
                    self.append(_MODIFIED)
                elif self.y - dy >= self.x - dx:
                    self.append(_UNIQUE_Y)
                else:
                    self.append(_UNIQUE_X)
            while self.x > dx:
                self.append(_UNIQUE_X)
            while self.y > dy:
                self.append(_UNIQUE_Y)


def _difference(nx: int, ny: int, f: Callable[[int, int], tuple[int, int]]) -> list[int]:
    """diff.Difference: a greedy meet-in-the-middle edit script turning list X into list Y."""
    fwd, rev = _Path(+1, 0, 0), _Path(-1, nx, ny)
    fwd_fx, fwd_fy = 0, 0  # forward search frontier
    rev_fx, rev_fy = nx, ny  # reverse search frontier
    budget = 4 * (nx + ny)
    forward = True
    while True:
        if fwd_fx >= rev_fx or fwd_fy >= rev_fy or budget == 0:
            break
        if forward:
            stop1 = stop2 = False
            i = 0
            while not (stop1 and stop2) and budget > 0:
                z = _zigzag(i)
                px, py = fwd_fx + z, fwd_fy - z
                if px >= rev.x or py < fwd.y:
                    stop1 = True
                elif py >= rev.y or px < fwd.x:
                    stop2 = True
                elif f(px, py)[1] == 0:
                    fwd.connect(px, py, f)
                    fwd.append(_IDENTITY)
                    while fwd.x < rev.x and fwd.y < rev.y and f(fwd.x, fwd.y)[1] == 0:
                        fwd.append(_IDENTITY)
                    fwd_fx, fwd_fy = fwd.x, fwd.y
                    stop1 = stop2 = True
                else:
                    budget -= 1
                i += 1
            if rev.x - fwd_fx >= rev.y - fwd_fy:
                fwd_fx += 1
            else:
                fwd_fy += 1
        else:
            stop1 = stop2 = False
            i = 0
            while not (stop1 and stop2) and budget > 0:
                z = _zigzag(i)
                px, py = rev_fx - z, rev_fy + z
                if fwd.x >= px or rev.y < py:
                    stop1 = True
                elif fwd.y >= py or rev.x < px:
                    stop2 = True
                elif f(px - 1, py - 1)[1] == 0:
                    rev.connect(px, py, f)
                    rev.append(_IDENTITY)
                    while fwd.x < rev.x and fwd.y < rev.y and f(rev.x - 1, rev.y - 1)[1] == 0:
                        rev.append(_IDENTITY)
                    rev_fx, rev_fy = rev.x, rev.y
                    stop1 = stop2 = True
                else:
                    budget -= 1
                i += 1
            if rev_fx - fwd.x >= rev_fy - fwd.y:
                rev_fx -= 1
            else:
                rev_fy -= 1
        forward = not forward
    fwd.connect(rev.x, rev.y, f)
    for edit in reversed(rev.es):
        fwd.append(edit)
    return fwd.es
