"""C's ``strtol`` and ``atoi``, for the numbers the tools parse.

``xenstore-chmod r-1`` sends ``r4294967295`` because the C tool stores
``atoi("-1")`` in an ``unsigned int``; matching that needs C's conversions
rather than :func:`int`.
"""

from __future__ import annotations

__all__ = ["atoi", "strtol"]

_C_SPACE = frozenset(b" \t\n\v\f\r")
_LONG_MAX = 2**63 - 1
_LONG_MIN = -(2**63)


def _digit(byte: int) -> int:
    if 0x30 <= byte <= 0x39:
        return byte - 0x30
    if 0x61 <= byte <= 0x7A:
        return byte - 0x61 + 10
    if 0x41 <= byte <= 0x5A:
        return byte - 0x41 + 10
    return 99


def strtol(text: bytes, base: int = 10) -> tuple[int, int]:
    """``strtol(text, &end, base)`` on LP64: return ``(value, end - text)``.

    Blanks and a sign may lead; base 0 reads ``0x`` as hex and a leading 0 as
    octal; out-of-range values saturate; with no digits, end is ``text``.
    """
    end = len(text)
    i = 0
    while i < end and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < end and text[i] in b"+-":
        negative = text[i] == 0x2D
        i += 1
    # A 0x prefix counts only if a hex digit follows it; otherwise "0" is parsed.
    prefixed = text[i : i + 2] in (b"0x", b"0X") and i + 2 < end and _digit(text[i + 2]) < 16
    if base in (0, 16) and prefixed:
        i += 2
        base = 16
    elif base == 0:
        base = 8 if text[i : i + 1] == b"0" else 10
    start = i
    value = 0
    while i < end and _digit(text[i]) < base:
        value = value * base + _digit(text[i])
        i += 1
    if i == start:
        return 0, 0
    if negative:
        value = -value
    return max(_LONG_MIN, min(_LONG_MAX, value)), i


def atoi(text: bytes) -> int:
    """``atoi(text)``: glibc's ``(int) strtol(text, NULL, 10)``, wrapped to 32 bits."""
    value = strtol(text, 10)[0] & 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value
