"""``-T FILE``: every request and reply in cxenstored's trace format.

A line per message, ``IN|OUT <conn> <yyyymmdd hh:mm:ss> <OP> (<payload>)`` with
NUL bytes shown as spaces, plus ``CREATE connection``/``DESTROY connection``
lines, so that tools and habits built on cxenstored's traces keep working.
"""

from __future__ import annotations

import time
from typing import TextIO

from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import OPS


class Tracer:
    """Appends trace lines to a file, flushed per line so a crash loses nothing."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: TextIO = self._open()

    def _open(self) -> TextIO:
        trace = open(self.path, "a", encoding="latin-1", buffering=1)  # noqa: SIM115
        trace.write("\n***\n")
        return trace

    def reopen(self) -> None:
        """Close the file and open it again at the same path (SIGHUP: after logrotate)."""
        self._file.close()
        self._file = self._open()

    def _line(self, text: str) -> None:
        self._file.write(text + "\n")

    def message(self, direction: str, conn_id: int, packet: Packet) -> None:
        stamp = time.strftime("%Y%m%d %H:%M:%S")
        spec = OPS.get(packet.op)
        name = spec.name if spec is not None else "INVALID"
        shown = packet.payload.replace(b"\0", b" ").decode("latin-1")
        self._line(f"{direction} 0x{conn_id:x} {stamp} {name} ({shown})")

    def created(self, conn_id: int) -> None:
        self._line(f"CREATE connection 0x{conn_id:x}")

    def destroyed(self, conn_id: int) -> None:
        self._line(f"DESTROY connection 0x{conn_id:x}")

    def close(self) -> None:
        self._file.close()
