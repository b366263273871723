"""k8s.io/apimachinery/pkg/api/resource.Quantity: ParseQuantity, Cmp and the canonical String().

Ports quantity.go, suffix.go and the parts of amount.go/math.go these need. A Quantity keeps Go's two
representations (the int64Amount fast path and the inf.Dec slow path) and the string ParseQuantity caches when
its input is already canonical, because all three show in what Knative prints: String() returns the cached
input ("100m" stays "100m", "+1" stays "+1"), and kmp's diff prints the struct (`{i:{value:100 scale:-3} ...}`).
Values are exact (Python ints), so comparison and canonical form never round where Go does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

DECIMAL_EXPONENT = "DecimalExponent"  # 12e6
BINARY_SI = "BinarySI"  # 12Mi (12 * 2^20)
DECIMAL_SI = "DecimalSI"  # 12M  (12 * 10^6)

SPLIT_RE_STRING = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ERR_FORMAT_WRONG = "quantities must match the regular expression '" + SPLIT_RE_STRING + "'"
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"

_MAX_INT64 = 2**63 - 1
_MAX_INT64_FACTORS = 18
_NANO = -9
_SUFFIX_CHARS = "eEinumkKMGTP"
_DIGITS = "0123456789"

# fastLookup and the listSuffixer tables: suffix -> (base, exponent), and back.
_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXPONENT = {exponent: suffix for suffix, exponent in _BINARY_SUFFIXES.items()}


class QuantityError(ValueError):
    """ParseQuantity's error; str() is Go's message."""


@dataclass(frozen=True, eq=False)
class Quantity:
    """resource.Quantity. `d` is the inf.Dec as (unscaled, scale): value = unscaled * 10**-scale."""

    i_value: int = 0  # int64Amount.value, used when d is None
    i_scale: int = 0  # int64Amount.scale (base-10 exponent)
    d: tuple[int, int] | None = None
    s: str = ""  # the cached String()
    format: str = ""

    def value(self) -> Fraction:
        """The exact number."""
        if self.d is not None:
            unscaled, scale = self.d
            return Fraction(unscaled) / Fraction(10) ** scale
        return Fraction(self.i_value) * Fraction(10) ** self.i_scale

    def is_zero(self) -> bool:
        return self.value() == 0

    def sign(self) -> int:
        v = self.value()
        return (v > 0) - (v < 0)

    def cmp(self, other: Quantity) -> int:
        """Cmp: -1, 0 or 1."""
        a, b = self.value(), other.value()
        return (a > b) - (a < b)

    def __eq__(self, other: object) -> bool:
        # Quantity.Equal, which equality.Semantic and kmp use: the same number, whatever its spelling.
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.cmp(other) == 0

    def __hash__(self) -> int:
        return hash(self.value())

    def __str__(self) -> str:
        """String(): the cached input when ParseQuantity kept it, else the canonical form."""
        if self.s:
            return self.s
        number, suffix = canonicalize(self)
        return number + suffix

    def go_struct(self) -> str:
        """%+v of the struct, as kmp.ShortDiff prints it. Go prints an inf.Dec pointer as its address."""
        dec = "<nil>" if self.d is None else "0xc000000000"
        return f"{{i:{{value:{self.i_value} scale:{self.i_scale}}} d:{{Dec:{dec}}} s:{self.s} Format:{self.format}}}"


def _parse_quantity_string(text: str) -> tuple[bool, str, str, str, str]:
    """parseQuantityString: (positive, value, num, denom, suffix); raises on a malformed suffix."""
    positive = True
    pos, end = 0, len(text)
    if pos < end and text[0] in "+-":
        positive = text[0] != "-"
        pos += 1
    # strip leading zeros
    i = pos
    while True:
        if i >= end:
            return positive, "0", "0", "", ""
        if text[i] != "0":
            break
        pos += 1
        i += 1
    # the numerator
    i = pos
    while True:
        if i >= end:
            return positive, text[0:end], text[pos:end], "", ""
        if text[i] not in _DIGITS:
            num, pos = text[pos:i], i
            break
        i += 1
    if not num:
        num = "0"
    denom = ""
    if pos < end and text[pos] == ".":
        pos += 1
        i = pos
        while True:
            if i >= end:
                return positive, text[0:end], num, text[pos:end], ""
            if text[i] not in _DIGITS:
                denom, pos = text[pos:i], i
                break
            i += 1
    value = text[0:pos]
    # the suffix: letters, then an optional signed exponent
    suffix_start = pos
    i = pos
    while True:
        if i >= end:
            return positive, value, num, denom, text[suffix_start:end]
        if text[i] not in _SUFFIX_CHARS:
            pos = i
            break
        i += 1
    if pos < end and text[pos] in "-+":
        pos += 1
    i = pos
    while True:
        if i >= end:
            return positive, value, num, denom, text[suffix_start:end]
        if text[i] not in _DIGITS:
            break
        i += 1
    raise QuantityError(ERR_FORMAT_WRONG)


def _interpret(suffix: str) -> tuple[int, int, str] | None:
    """quantitySuffixer.interpret: (base, exponent, format), None when not a suffix."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        parsed = _parse_int64(suffix[1:])
        if parsed is None:
            return None
        return 10, (parsed + 2**31) % 2**32 - 2**31, DECIMAL_EXPONENT  # int32(parsed)
    return None


def _parse_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), None on error."""
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or any(c not in _DIGITS for c in body):
        return None
    value = int(text)
    return value if -(2**63) <= value <= _MAX_INT64 else None


def _scan_dec(text: str) -> tuple[int, int] | None:
    """inf.Dec.SetString on the numeric part: (unscaled, scale), None without digits."""
    digits, point, seen_digit = "", -1, False
    for char in text:
        if char in "+-":
            if digits or point >= 0:
                return None
            digits += char
        elif char == ".":
            if point >= 0:
                return None
            point = len(digits)
        elif char in _DIGITS:
            seen_digit = True
            digits += char
        else:
            return None
    if not seen_digit:
        return None
    scale = len(digits) - point if point >= 0 else 0
    return int(digits), scale


def parse_quantity(text: str) -> Quantity:
    """ParseQuantity: raises QuantityError with Go's message."""
    if not text:
        raise QuantityError(ERR_FORMAT_WRONG)
    if text == "0":
        return Quantity(format=DECIMAL_SI, s=text)
    positive, value, num, denom, suf = _parse_quantity_string(text)
    interpreted = _interpret(suf)
    if interpreted is None:
        raise QuantityError(ERR_SUFFIX)
    base, exponent, fmt = interpreted

    precision, scale, mantissa = 0, 0, 1
    if fmt in (DECIMAL_EXPONENT, DECIMAL_SI):
        scale = exponent
        precision = _MAX_INT64_FACTORS - (len(num) + len(denom))
    elif exponent >= 0 and not denom:
        # only positive binary numbers take the fast path; 1Mi (2^20) has ~6 digits of precision
        mantissa = 1 << exponent
        precision = 15 - len(num) - int(exponent * 3 / 10) - 1
    else:
        precision = -1

    if precision >= 0:
        scale -= len(denom)
        if scale >= _NANO:
            shifted = num + denom
            parsed = int(shifted)
            result = parsed * mantissa
            if result <= _MAX_INT64:
                if not positive:
                    result = -result
                # an input already in canonical form is kept as the String()
                if fmt == BINARY_SI:
                    if exponent % 10 == 0 and parsed & 0x07 != 0:
                        return Quantity(i_value=result, i_scale=scale, format=fmt, s=text)
                elif scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0":
                    return Quantity(i_value=result, i_scale=scale, format=fmt, s=text)
                return Quantity(i_value=result, i_scale=scale, format=fmt)

    scanned = _scan_dec(value)
    if scanned is None:
        raise QuantityError(ERR_NUMERIC)
    unscaled, dec_scale = scanned
    # remove the suffix: scale by 10^exponent or multiply by 2^exponent
    if base == 10:
        dec_scale -= exponent
    else:
        unscaled *= 1 << exponent
    negative = unscaled < 0
    unscaled = abs(unscaled)
    if unscaled != 0:
        # round non-zero values up to the nano, so asking for a little never yields nothing
        amount = Fraction(unscaled) / Fraction(10) ** dec_scale
        scaled = amount * 10**9
        unscaled, dec_scale = -(-scaled.numerator // scaled.denominator), 9
    amount = Fraction(unscaled) / Fraction(10) ** dec_scale
    if fmt == BINARY_SI and amount > _MAX_INT64:
        unscaled, dec_scale, amount = _MAX_INT64, 0, Fraction(_MAX_INT64)
    if fmt == BINARY_SI and 0 < amount < 1:
        fmt = DECIMAL_SI
    if negative:
        unscaled = -unscaled
    return Quantity(d=(unscaled, dec_scale), format=fmt)


def must_parse(text: str) -> Quantity:
    """MustParse, for tests and constants."""
    return parse_quantity(text)


def _remove_factors(value: int, base: int) -> tuple[int, int]:
    times, result = 0, abs(value)
    while result >= base and result % base == 0:
        times += 1
        result //= base
    return (-result if value < 0 else result), times


def canonicalize(q: Quantity) -> tuple[str, str]:
    """CanonicalizeBytes: (number, suffix), the exponent as large as it goes without losing precision."""
    if q.is_zero():
        return "0", ""
    fmt = q.format
    value = q.value()
    if fmt == BINARY_SI:
        if -1024 < value < 1024 or value.denominator != 1:
            fmt = DECIMAL_SI  # avoids rounding (and confusion)
    elif fmt not in (DECIMAL_EXPONENT, DECIMAL_SI):
        fmt = DECIMAL_EXPONENT
    if fmt == BINARY_SI:
        amount, times = _remove_factors(value.numerator, 1024)
        return str(amount), _BINARY_BY_EXPONENT.get(times * 10, "")
    if q.d is not None:
        mantissa, exponent = q.d[0], -q.d[1]
    else:
        mantissa, exponent = q.i_value, q.i_scale
    mantissa, times = _remove_factors(mantissa, 10)
    exponent += times
    while exponent % 3 != 0:
        mantissa *= 10
        exponent -= 1
    if fmt == DECIMAL_SI:
        return str(mantissa), _DECIMAL_BY_EXPONENT.get(exponent, "")
    return str(mantissa), "" if exponent == 0 else f"e{exponent}"


def parse_json_quantity(raw: Any) -> Quantity:
    """Quantity.UnmarshalJSON on a manifest's value: a string (trimmed) or a bare JSON number."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise QuantityError(ERR_FORMAT_WRONG)
    return parse_quantity(raw.strip() if isinstance(raw, str) else repr(raw))


def _pow10(n: int) -> int:
    result: int = 10**n
    return result


def int_value(q: Quantity) -> int:
    """Quantity.Value() (ScaledValue(0)), its rounding included: the int64 path rounds a fraction away from zero,
    the inf.Dec path adds one to the truncated quotient (so -1.5 gives 0 there)."""
    if q.d is None:
        if q.i_scale >= 0:
            return q.i_value * _pow10(q.i_scale)
        magnitude, remainder = divmod(abs(q.i_value), _pow10(-q.i_scale))
        result = magnitude + (remainder != 0)
        return result if q.i_value >= 0 else -result
    unscaled, scale = q.d
    if scale <= 0:
        return unscaled * _pow10(-scale)
    divisor = _pow10(scale)
    if unscaled < 2**63 - 1 and scale < 19:
        quotient = abs(unscaled) // divisor * (1 if unscaled >= 0 else -1)  # Go's / truncates
        return quotient + (unscaled % divisor != 0)
    quotient, remainder = divmod(unscaled, divisor)  # big.Int.DivMod: Euclidean
    return quotient + (remainder != 0)
