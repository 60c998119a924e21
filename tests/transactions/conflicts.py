"""The classic conflict cases: what a transaction did, what another did meanwhile.

Each case sets the tree up, opens transaction T on one connection, runs T's
steps, then another connection's steps (plain requests, or a whole other
transaction), then commits T. ``OURS`` and ``CXENSTORED`` are the verdicts of
our daemon and of Xen's C xenstored 4.17 (recorded from it; the interop test
re-checks them against the live reference).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from xenstore import errors
from xenstore.client import Client

Steps = Callable[[Client, int], None]


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Client], None]
    mine: Steps
    theirs: Steps  # tx id 0: plain requests; a case may open its own transaction
    ours: str
    cxenstored: str


def _base(xs: Client) -> None:
    xs.write("/c/a", "1")
    xs.write("/c/b", "1")
    xs.write("/c/d/old", "")
    xs.write("/c/n", "v")


def _none(xs: Client, tx: int) -> None:
    pass


def _read_missing_then_write(xs: Client, tx: int) -> None:
    with contextlib.suppress(errors.ENOENT):
        xs.read("/c/missing", tx)
    xs.write("/c/x", "1", tx)


def _read_a_write_x(xs: Client, tx: int) -> None:
    xs.read("/c/a", tx)
    xs.write("/c/x", "1", tx)


def _skew_mine(xs: Client, tx: int) -> None:
    xs.read("/c/a", tx)
    xs.read("/c/b", tx)
    xs.write("/c/a", "2", tx)


def _list_d_write_x(xs: Client, tx: int) -> None:
    xs.directory("/c/d", tx)
    xs.write("/c/x", "1", tx)


def _perms_n_write_x(xs: Client, tx: int) -> None:
    xs.get_perms("/c/n", tx)
    xs.write("/c/x", "1", tx)


def _read_only(xs: Client, tx: int) -> None:
    xs.read("/c/a", tx)


def _skew_other(xs: Client, tx: int) -> None:
    other = xs.transaction_start()
    xs.read("/c/a", other)
    xs.read("/c/b", other)
    xs.write("/c/b", "2", other)
    xs.transaction_end(other)


CASES = [
    Case("blind write; other writes the same node",
         _base, lambda xs, tx: xs.write("/c/a", "T", tx), lambda xs, tx: xs.write("/c/a", "B"),
         "commit", "EAGAIN"),
    Case("reads a, writes x; other writes a",
         _base, _read_a_write_x,
         lambda xs, tx: xs.write("/c/a", "B"), "EAGAIN", "EAGAIN"),
    Case("lost update: reads a, writes a; other writes a",
         _base, lambda xs, tx: xs.write("/c/a", xs.read("/c/a", tx) + b"+", tx),
         lambda xs, tx: xs.write("/c/a", "B"), "EAGAIN", "EAGAIN"),
    Case("lost update: reads a, writes a; other writes a, the same value",
         _base, lambda xs, tx: xs.write("/c/a", xs.read("/c/a", tx) + b"+", tx),
         lambda xs, tx: xs.write("/c/a", "1"), "EAGAIN", "EAGAIN"),
    Case("write skew: reads a and b, writes a; other reads both, writes b",
         _base,
         _skew_mine,
         _skew_other, "EAGAIN", "EAGAIN"),
    Case("creates d/x; other creates d/y",
         _base, lambda xs, tx: xs.write("/c/d/x", "1", tx), lambda xs, tx: xs.write("/c/d/y", "1"),
         "commit", "EAGAIN"),
    Case("lists d, writes x; other creates d/y",
         _base, _list_d_write_x,
         lambda xs, tx: xs.write("/c/d/y", "1"), "EAGAIN", "EAGAIN"),
    Case("reads a missing node, writes x; other creates it",
         _base, _read_missing_then_write, lambda xs, tx: xs.write("/c/missing", "1"),
         "EAGAIN", "EAGAIN"),
    Case("removes d; other writes d/z",
         _base, lambda xs, tx: xs.rm("/c/d", tx), lambda xs, tx: xs.write("/c/d/z", "1"),
         "commit", "EAGAIN"),
    Case("writes n; other changes n's perms",
         _base, lambda xs, tx: xs.write("/c/n", "T", tx),
         lambda xs, tx: xs.set_perms("/c/n", ["n0", "r1"]), "commit", "EAGAIN"),
    Case("reads n's perms, writes x; other changes n's perms",
         _base, _perms_n_write_x,
         lambda xs, tx: xs.set_perms("/c/n", ["n0", "r1"]), "EAGAIN", "EAGAIN"),
    Case("read-only: reads a; other writes a",
         _base, _read_only, lambda xs, tx: xs.write("/c/a", "B"),
         "commit", "EAGAIN"),
    Case("writes a; other writes an unrelated node",
         _base, lambda xs, tx: xs.write("/c/a", "T", tx),
         lambda xs, tx: xs.write("/elsewhere", "1"), "commit", "commit"),
    Case("creates a/b below a missing a; other creates a",
         _base, lambda xs, tx: xs.write("/c/new/b", "1", tx),
         lambda xs, tx: xs.write("/c/new", "1"), "EAGAIN", "EAGAIN"),
    Case("writes d/x; other removes d",
         _base, lambda xs, tx: xs.write("/c/d/x", "1", tx), lambda xs, tx: xs.rm("/c/d"),
         "EAGAIN", "EAGAIN"),
    Case("removes d; other removes d",
         _base, lambda xs, tx: xs.rm("/c/d", tx), lambda xs, tx: xs.rm("/c/d"),
         "EAGAIN", "EAGAIN"),
    Case("nothing at all; other writes",
         _base, _none, lambda xs, tx: xs.write("/c/a", "B"), "commit", "commit"),
]


def verdict(socket_path: str, case: Case) -> str:
    """Run one case on a daemon; return "commit" or "EAGAIN"."""
    with Client(socket_path, timeout=10) as xs, Client(socket_path, timeout=10) as other:
        with contextlib.suppress(errors.ENOENT):
            xs.rm("/c")
        case.setup(xs)
        tx = xs.transaction_start()
        case.mine(xs, tx)
        case.theirs(other, 0)
        try:
            xs.transaction_end(tx)
        except errors.EAGAIN:
            return "EAGAIN"
        return "commit"
