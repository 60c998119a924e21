"""Replies of the core that are more than a value: ``OK``, and lists that must fit.

A reply may not exceed the protocol's 4096 bytes (cxenstored answers E2BIG to one
that would); lists the daemon makes itself, such as CONTROL ``conflicts``, keep
their newest lines instead and say how many they left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xenstore.protocol.ops import PAYLOAD_MAX

OK = b"OK\0"


def newest_that_fit(lines: Sequence[str], left_out: Callable[[int], str]) -> bytes:
    """A reply of ``lines`` (oldest first) that fits in one message, NUL included.

    When they do not all fit, the newest that do are kept, in order, followed by
    the line ``left_out(count)``; a newest line too long on its own is cut (``...``).
    """
    encoded = [line.encode() + b"\n" for line in lines]
    if sum(map(len, encoded)) < PAYLOAD_MAX:
        return b"".join(encoded) + b"\0"
    # Room for the note at its longest (every line left out) and the NUL.
    room = PAYLOAD_MAX - 1 - len(left_out(len(lines)).encode()) - 1
    kept: list[bytes] = []
    for line in reversed(encoded):
        if len(line) > room:
            if not kept:  # the newest alone is too long: show its start
                kept.append(line[: room - 4] + b"...\n")
            break
        kept.append(line)
        room -= len(line)
    count = len(lines) - len(kept)
    note = left_out(count).encode() + b"\n" if count else b""
    return b"".join(reversed(kept)) + note + b"\0"
