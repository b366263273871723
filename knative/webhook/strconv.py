"""Go's strconv.ParseInt, Atoi and ParseFloat: which strings they accept, and syntax versus range errors.

Knative's annotation checks answer differently for a string Go cannot parse ("invalid value") and one out of
range ("expected 0 <= v <= 2147483647"), and Python's int()/float() accept what Go refuses (spaces, "1_0" for
ints, "1e400" as inf), so the acceptance rules are Go's (strconv/atoi.go, strconv/atof.go), not Python's.
"""

from __future__ import annotations

import re
from enum import Enum

_MAX_UINT64 = 2**64 - 1


class NumErrorKind(Enum):
    SYNTAX = "invalid syntax"
    RANGE = "value out of range"


class NumError(ValueError):
    """strconv.NumError; `kind` is its Err (ErrSyntax or ErrRange), str() is Go's Error()."""

    def __init__(self, func: str, num: str, kind: NumErrorKind) -> None:
        super().__init__(f'strconv.{func}: parsing "{num}": {kind.value}')
        self.func, self.num, self.kind = func, num, kind


def _parse_uint10(text: str, bit_size: int) -> tuple[int, NumErrorKind | None]:
    """ParseUint(text, 10, bit_size): the first bad digit is a syntax error, the first overflow a range error."""
    if not text:
        return 0, NumErrorKind.SYNTAX
    max_val = (1 << bit_size) - 1
    cutoff = _MAX_UINT64 // 10 + 1
    n = 0
    for char in text:
        if not ("0" <= char <= "9"):
            return 0, NumErrorKind.SYNTAX
        if n >= cutoff:
            return max_val, NumErrorKind.RANGE
        n = n * 10 + (ord(char) - ord("0"))
        if n > max_val:
            return max_val, NumErrorKind.RANGE
    return n, None


def parse_int(text: str, bit_size: int = 64) -> int:
    """strconv.ParseInt(text, 10, bit_size) (bit_size 0 is 64); raises NumError."""
    bit_size = bit_size or 64
    if not text:
        raise NumError("ParseInt", text, NumErrorKind.SYNTAX)
    body, negative = text, False
    if text[0] in "+-":
        body, negative = text[1:], text[0] == "-"
    unsigned, kind = _parse_uint10(body, bit_size)
    if kind is not None:
        raise NumError("ParseInt", text, kind)
    cutoff = 1 << (bit_size - 1)
    if (not negative and unsigned >= cutoff) or (negative and unsigned > cutoff):
        raise NumError("ParseInt", text, NumErrorKind.RANGE)
    return -unsigned if negative else unsigned


def atoi(text: str) -> int:
    """strconv.Atoi on a 64-bit platform (int is int64); raises NumError named Atoi."""
    try:
        return parse_int(text, 64)
    except NumError as error:
        raise NumError("Atoi", text, error.kind) from None


_DECIMAL = re.compile(r"[+-]?(?P<mant>[0-9_]*(?:\.[0-9_]*)?)(?:[eE][+-]?[0-9][0-9_]*)?")
_HEX = re.compile(r"[+-]?0[xX](?P<mant>[0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?)[pP][+-]?[0-9][0-9_]*")
_SPECIAL = re.compile(r"[+-]?(?:infinity|inf)|nan", re.IGNORECASE | re.ASCII)


def _underscore_ok(text: str) -> bool:
    """underscoreOK: each '_' between two digits (a base prefix counts as a digit)."""
    saw, i = "^", 0
    if text[:1] in ("-", "+"):
        text = text[1:]
    hexadecimal = False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        i, saw, hexadecimal = 2, "0", text[1].lower() == "x"
    for char in text[i:]:
        if "0" <= char <= "9" or (hexadecimal and "a" <= char.lower() <= "f"):
            saw = "0"
        elif char == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def parse_float(text: str) -> float:
    """strconv.ParseFloat(text, 64): decimal or hex (0x1p-2) literals, Inf/Infinity/NaN; raises NumError.

    Overflow is a range error (Go also returns ±Inf, which callers never use); underflow is 0 and no error.
    """
    if _SPECIAL.fullmatch(text):
        return float(text)
    # readFloat takes the hex path only with a digit after "0x" (i+2 < len(s)), after one optional sign.
    body = text[1:] if text[:1] in ("+", "-") else text
    hexadecimal = len(body) > 2 and body[0] == "0" and body[1] in "xX"
    match = (_HEX if hexadecimal else _DECIMAL).fullmatch(text)
    if match is None or not re.search("[0-9a-fA-F]" if hexadecimal else "[0-9]", match.group("mant")):
        raise NumError("ParseFloat", text, NumErrorKind.SYNTAX)
    if "_" in text and not _underscore_ok(text):
        raise NumError("ParseFloat", text, NumErrorKind.SYNTAX)
    clean = text.replace("_", "")
    try:
        value = float.fromhex(clean) if hexadecimal else float(clean)
    except OverflowError:
        raise NumError("ParseFloat", text, NumErrorKind.RANGE) from None
    if value in (float("inf"), float("-inf")):
        raise NumError("ParseFloat", text, NumErrorKind.RANGE)
    return value
