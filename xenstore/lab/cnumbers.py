"""C's text-to-number conversions (glibc's ``strtol``/``strtoul``), as xl's readers use them.

xl accepts what these accept and no more, so a value such as ``memory = "0x400"``
(hex), ``"010"`` (octal: 8) or ``" 12"`` (leading blanks) means here what it
means to xl.
"""

from __future__ import annotations

LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
ULONG_MAX = (1 << 64) - 1
_SPACE = " \t\n\v\f\r"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _scan(text: str, base: int) -> tuple[int, int, int] | None:
    """(sign, magnitude, characters used), or None when no digit is found."""
    i = 0
    while i < len(text) and text[i] in _SPACE:
        i += 1
    sign = 1
    if i < len(text) and text[i] in "+-":
        sign = -1 if text[i] == "-" else 1
        i += 1
    hex_prefix = (text[i:i + 2].lower() == "0x" and i + 2 < len(text)
                  and text[i + 2].lower() in _DIGITS[:16])
    if base in (0, 16) and hex_prefix:
        base, i = 16, i + 2
    elif base == 0:
        base = 8 if text[i:i + 1] == "0" else 10
    start = i
    while i < len(text) and text[i].lower() in _DIGITS[:base]:
        i += 1
    if i == start:
        return None
    return sign, int(text[start:i], base), i


def c_strtol(text: str, base: int = 0) -> tuple[int | None, int, bool]:
    """``strtol(text, &end, base)``: (value or None, characters used, out of range).

    None with 0 characters used means no number at all (``end == text``).
    """
    scanned = _scan(text, base)
    if scanned is None:
        return None, 0, False
    sign, magnitude, used = scanned
    value = sign * magnitude
    if not LONG_MIN <= value <= LONG_MAX:
        return (LONG_MAX if sign > 0 else LONG_MIN), used, True
    return value, used, False


def c_strtoul(text: str, base: int = 0) -> tuple[int | None, int, bool]:
    """``strtoul``: as :func:`c_strtol`, and a minus sign wraps around as in C."""
    scanned = _scan(text, base)
    if scanned is None:
        return None, 0, False
    sign, magnitude, used = scanned
    if magnitude > ULONG_MAX:
        return ULONG_MAX, used, True
    return (magnitude if sign > 0 else (-magnitude) & ULONG_MAX), used, False
