"""The C tools' quoting of possibly-binary values, both ways.

:func:`sanitise` is how ``xenstore-read`` and ``xenstore-ls`` print a value;
:func:`unsanitise` is how ``xenstore-write`` (without ``-R``) turns its
argument back into bytes. Both reproduce the C code's quirks exactly, because
scripts depend on the bytes: for instance a trailing lone backslash writes a
NUL byte, ``\\x`` scans its digits with ``sscanf("%2x")`` (so it skips
blanks, takes a sign, and reads ``0x`` as the number 0), and an unknown escape
``\\q`` simply drops the backslash.
"""

from __future__ import annotations

__all__ = ["sanitise", "unsanitise"]

# Bytes printed as themselves: ' '..'~' except the backslash.
_PLAIN = frozenset(range(0x20, 0x7F)) - {0x5C}
_NAMED = {0x09: b"\\t", 0x0A: b"\\n", 0x0D: b"\\r", 0x5C: b"\\\\"}


def _escape_table() -> tuple[bytes, ...]:
    table = []
    for byte in range(256):
        if byte in _PLAIN:
            table.append(bytes((byte,)))
        elif byte in _NAMED:
            table.append(_NAMED[byte])
        elif byte < 0o10:
            # Only 0..7 get octal: three digits, "\\000".."\\007".
            table.append(b"\\%03o" % byte)
        else:
            table.append(b"\\x%02x" % byte)
    return tuple(table)


_ESCAPES = _escape_table()


def sanitise(value: bytes) -> bytes:
    """``value`` as the C tools print it: printable ASCII kept, the rest escaped."""
    escapes = _ESCAPES
    return b"".join([escapes[byte] for byte in value])


# isspace() in the C locale, which the tools never leave.
_C_SPACE = frozenset(b" \t\n\v\f\r")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_OCT = frozenset(b"01234567")


def _scan_hex2(text: bytes, pos: int) -> tuple[int, int] | None:
    """Emulate glibc ``sscanf(text + pos, "%2x%n", ...)``.

    Return ``(value, consumed)`` or None when the conversion fails (the C
    code then keeps the ``x`` itself). The width of 2 counts a sign and a
    ``0x`` prefix but not the blanks skipped before the number.
    """
    end = len(text)
    i = pos
    while i < end and text[i] in _C_SPACE:
        i += 1
    width = 2
    negative = False
    if i < end and text[i] in b"+-":
        negative = text[i] == 0x2D
        i += 1
        width -= 1
    digits = bytearray()
    if width and i < end and text[i] == 0x30:
        # A leading 0 is a digit; an 'x' right after it is a prefix, eaten
        # if the width allows even when no hex digit follows.
        digits.append(0x30)
        i += 1
        width -= 1
        if width and i < end and text[i] in b"xX":
            i += 1
            width -= 1
    while width and i < end and text[i] in _HEX:
        digits.append(text[i])
        i += 1
        width -= 1
    if not digits:
        return None
    value = int(digits, 16)
    return (-value if negative else value), i - pos


def _scan_oct3(text: bytes, pos: int) -> tuple[int, int]:
    """Emulate ``sscanf(text + pos, "%3o%n", ...)`` where text[pos] is an octal digit."""
    i = pos
    while i < len(text) and i - pos < 3 and text[i] in _OCT:
        i += 1
    return int(text[pos:i], 8), i - pos


def unsanitise(text: bytes) -> bytes:
    """The bytes ``xenstore-write`` stores for the argument ``text`` (without ``-R``)."""
    out = bytearray()
    end = len(text)
    i = 0
    while i < end:
        c = text[i]
        i += 1
        if c == 0x5C:  # backslash
            if i == end:
                # The C loop stores the terminating NUL it found after the
                # backslash, then stops: "abc\" writes b"abc\0".
                out.append(0)
                break
            c = text[i]
            i += 1
            if c == 0x74:  # t
                c = 0x09
            elif c == 0x6E:  # n
                c = 0x0A
            elif c == 0x72:  # r
                c = 0x0D
            elif c == 0x78:  # x
                scanned = _scan_hex2(text, i)
                if scanned is not None:
                    c, used = scanned
                    i += used
            elif c in _OCT:
                c, used = _scan_oct3(text, i - 1)
                i += used - 1
            # Anything else (including a second backslash) stands for itself.
        out.append(c & 0xFF)
    return bytes(out)
