"""Go's text for values, which Knative's messages embed: fmt.Sprint, strconv.Quote and time.Duration.

A message must read as the webhook's does ("expected 6s <= 1m9.082s <= 1h0m0s"), so values are formatted the
way Go formats them, not the way Python does.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


class Duration(int):
    """A time.Duration: whole nanoseconds, printed as Go prints it."""

    def __str__(self) -> str:
        return format_duration(self)

    def __repr__(self) -> str:
        return f"Duration({format_duration(self)})"

    @property
    def seconds(self) -> float:
        return int(self) / 1e9


SECOND = Duration(10**9)
MINUTE = Duration(60 * 10**9)
HOUR = Duration(3600 * 10**9)


def seconds(n: float) -> Duration:
    return Duration(round(n * 10**9))


class DurationError(ValueError):
    """time.ParseDuration's error; str() is Go's message."""


def parse_duration(text: str) -> Duration:
    """time.ParseDuration: "300ms", "-1.5h", "2h45m"; units ns, us (µs), ms, s, m, h."""
    original, rest = text, text
    negative = False
    if rest and rest[0] in "+-":
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return Duration(0)
    if not rest:
        raise DurationError(f'time: invalid duration "{original}"')
    total = Decimal(0)
    while rest:
        number = re.match(r"[0-9]*(\.[0-9]*)?", rest)
        digits = number.group(0) if number else ""
        if digits in ("", ".") or not re.search(r"[0-9]", digits):
            raise DurationError(f'time: invalid duration "{original}"')
        rest = rest[len(digits) :]
        unit_match = re.match(r"[^0-9.]*", rest)
        unit = unit_match.group(0) if unit_match else ""
        if not unit:
            raise DurationError(f'time: missing unit in duration "{original}"')
        if unit not in _NS:
            raise DurationError(f'time: unknown unit "{unit}" in duration "{original}"')
        rest = rest[len(unit) :]
        total += Decimal(digits if not digits.endswith(".") else digits[:-1] or "0") * _NS[unit]
    if total > 2**63 - 1:
        raise DurationError(f'time: invalid duration "{original}"')
    nanoseconds = int(total)
    return Duration(-nanoseconds if negative else nanoseconds)


def _fraction(value: int, precision: int) -> str:
    whole, part = divmod(value, 10**precision)
    digits = str(part).rjust(precision, "0").rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def format_duration(nanoseconds: int) -> str:
    """Duration.String(): "0s", "1.5ms", "1m9.082s", "1h0m0s"."""
    if nanoseconds == 0:
        return "0s"
    sign, u = ("-" if nanoseconds < 0 else ""), abs(int(nanoseconds))
    if u < 10**9:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{_fraction(u, 3)}µs"
        return f"{sign}{_fraction(u, 6)}ms"
    text = _fraction(u % (60 * 10**9), 9) + "s"
    minutes = u // (60 * 10**9)
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def format_float(value: float) -> str:
    """%v of a float64 (%g, shortest digits): exponent form below 1e-4 and from 1e6, as Go prints 1e+06."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    assert isinstance(exponent, int)
    exp10 = len(text) + exponent - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if exp10 < 0:
        return f"{prefix}0.{'0' * (-exp10 - 1)}{text}"
    if exp10 + 1 >= len(text):
        return prefix + text + "0" * (exp10 + 1 - len(text))
    return f"{prefix}{text[: exp10 + 1]}.{text[exp10 + 1 :]}"


def quote(text: str) -> str:
    """strconv.Quote / %q: double quotes, Go's escapes, printable Unicode kept."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
    escapes.update({"\r": "\\r", "\t": "\\t", "\v": "\\v"})
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable() or char == " ":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def sprint(value: Any) -> str:
    """fmt.Sprint of one value (%v)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Duration):
        return format_duration(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(sprint(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{sprint(k)}:{sprint(value[k])}" for k in sorted(value)) + "]"
    return str(value)
