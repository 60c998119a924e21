"""``pyxl top``: xentop's table of domains, refreshed until q (or Ctrl-C).

xl's ``top`` runs xentop; this is xentop's table drawn from the host's
``list`` and ``info``: sorted by name, the CPU share measured between two
refreshes (0.0 on the first, as xentop). With xentop's ``-b`` (batch) it
prints the header and rows each time, without the summary and without
taking the terminal, and ``-i N`` stops after N refreshes, so scripts and
tests can read it. The lab counts no network or disk traffic: those columns
stay 0.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from types import FrameType
from typing import Any

from xenstore.lab import xlformat
from xenstore.lab.cnumbers import c_strtol
from xenstore.lab.xlsession import Invocation, out

#: The lab refreshes every second (xentop's default is 3).
DEFAULT_DELAY = 1
CLEAR = "\x1b[H\x1b[2J"
REVERSE, PLAIN = "\x1b[7m", "\x1b[0m"


class Sampler:
    """Successive snapshots of the host, with each domain's CPU share between two."""

    def __init__(self, inv: Invocation, full_name: bool) -> None:
        self.inv = inv
        self.full_name = full_name
        self.previous: dict[int, float] = {}
        self.previous_at = 0.0

    def sample(self) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
        """(rows sorted by name, info, the table's lines)."""
        rows = sorted(self.inv.call("list"), key=lambda row: str(row["name"]).lower())
        info = self.inv.call("info")
        now = time.monotonic()
        elapsed = now - self.previous_at
        total_kib = int(info.get("total_memory", 0)) * 1024
        width = xlformat.top_name_width(rows, self.full_name)
        lines = [xlformat.top_header(width)] if rows else []
        for row in rows:
            cpu = float(row["cpu_time"])
            before = self.previous.get(int(row["domid"]))
            pct = (cpu - before) / elapsed * 100 if before is not None and elapsed > 0 else 0.0
            lines.append(xlformat.top_row(row, total_kib, max(pct, 0.0), name_width=width,
                                          full_name=self.full_name))
        self.previous = {int(row["domid"]): float(row["cpu_time"]) for row in rows}
        self.previous_at = now
        return rows, info, lines


def cmd_top(inv: Invocation) -> int:
    delay = _number(inv.value("-d", "--delay"), DEFAULT_DELAY)  # atoi, as xentop
    iterations = _number(inv.value("-i", "--iterations"), 0)  # 0: until q
    sampler = Sampler(inv, inv.has("-f", "--full-name"))
    interactive = not inv.has("-b", "--batch") and os.isatty(0) and os.isatty(1)
    if interactive:
        return _interactive(sampler, max(delay, 1), iterations)
    return _batch(sampler, max(delay, 0), iterations)


def _number(text: str | None, default: int) -> int:
    if text is None:
        return default
    return c_strtol(text, 10)[0] or 0


def _batch(sampler: Sampler, delay: int, iterations: int) -> int:
    stop = False

    def stopping(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    done = 0
    while not stop:
        for line in sampler.sample()[2]:
            out(line)
        sys.stdout.flush()
        done += 1
        if iterations and done >= iterations:
            break
        deadline = time.monotonic() + delay
        while not stop and time.monotonic() < deadline:
            time.sleep(min(0.1, max(deadline - time.monotonic(), 0)))
    return 0


def _interactive(sampler: Sampler, delay: int, iterations: int) -> int:
    import termios
    import tty

    saved = termios.tcgetattr(0)
    tty.setcbreak(0)
    done = 0
    try:
        while True:
            _draw(sampler)
            done += 1
            if iterations and done >= iterations:
                return 0
            ready, _, _ = select.select([0], [], [], delay)
            if ready and os.read(0, 16)[:1] in (b"q", b"Q"):
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        termios.tcsetattr(0, termios.TCSANOW, saved)
        sys.stdout.write("\n")
        sys.stdout.flush()


def _draw(sampler: Sampler) -> None:
    rows, info, table = sampler.sample()
    now = time.strftime("%H:%M:%S")
    lines = [*xlformat.top_summary(rows, info, now), *table]
    height = os.get_terminal_size(1).lines or 24  # a terminal that tells no size: VT100's
    lines = lines[:max(height - 2, 1)]
    bottom = f"  {REVERSE}Q{PLAIN}uit  (any other key refreshes)"
    sys.stdout.write(CLEAR + "\n".join(lines) + "\n" * (height - len(lines) - 1) + bottom)
    sys.stdout.flush()
