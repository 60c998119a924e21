"""``xenstore-conformance``: score a daemon against the recorded corpus or a live reference.

    xenstore-conformance SOCKET [--ref SOCKET] [--category NAME]... [--guest-dir DIR]
    xenstore-conformance --record CATEGORY SOCKET

Each category starts from a clean tree (everything but /tool removed through
the target's own socket), on fresh connections. A category whose steps act as
guests is skipped, saying so, unless there is a way to be a guest (--guest-dir,
--guest-rings; with --ref, for the reference too). Exit status: 0 when every
step run matched or is a documented difference, 1 otherwise, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from xenstore import __version__
from xenstore.conformance import scenario
from xenstore.conformance.runners import Runner, Stream, socket_runner, unix_connector
from xenstore.conformance.scenario import Step


@dataclass
class Score:
    category: str
    total: int = 0
    passed: int = 0
    documented: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        extra = []
        if self.documented:
            extra.append(f"{len(self.documented)} documented differences")
        if self.failures:
            extra.append(f"{len(self.failures)} failures")
        note = f" ({', '.join(extra)})" if extra else ""
        return f"{self.category:<14} {self.passed:4d}/{self.total:<4d}{note}"


def clean(connect: Callable[[], Stream]) -> None:
    """Bring the tree back to a daemon's initial one, so a category starts as recorded."""
    from xenstore.client import Client
    from xenstore.errors import XenStoreError

    with Client(stream=connect()) as xs:
        for name in xs.directory("/"):
            if name != "tool":
                with contextlib.suppress(XenStoreError):  # oxenstored keeps @ nodes
                    xs.rm(f"/{name}")
        xs.write("/tool/xenstored", b"")
        for name in xs.directory("/tool"):
            if name != "xenstored":
                xs.rm(f"/tool/{name}")
        for path in ("/", "/tool", "/tool/xenstored"):
            xs.write(path, b"")
            xs.set_perms(path, ["n0"])


def run_category(
    category: str, target: Runner, reference: Runner | None, steps: list[Step] | None = None
) -> Score:
    steps = steps if steps is not None else scenario.load(category)
    order = scenario.connections(steps)
    score = Score(category)
    for step in steps:
        score.total += 1
        try:
            got = target(step, order)
        except (OSError, RuntimeError) as exc:
            got = [f"{step.who} ERROR {exc}"]
        expected = step.expected if reference is None else reference(step, order)
        if got == expected:
            score.passed += 1
            continue
        report = (f"{category}:{step.line_no}: {step.text}\n"
                  f"    expected {expected}\n    got      {got}")
        if step.differs:
            score.documented.append(f"{report}\n    documented: {step.differs}")
        else:
            score.failures.append(report)
    return score


def record(
    category: str, socket_path: str, guests: Callable[[int], Stream] | None = None
) -> None:
    """Rewrite a category's expectations from a live (reference) daemon."""
    connect = unix_connector(socket_path)
    clean(connect)
    path = scenario.corpus_file(category)
    runner = socket_runner(connect, guests)
    steps = scenario.parse(path.read_text())
    order = scenario.connections(steps)
    by_line = {step.line_no: step for step in steps}
    out: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("  "):
            continue
        out.append(line)
        if number in by_line:
            out.extend("  " + text for text in runner(by_line[number], order))
    path.write_text("\n".join(out) + "\n")


def guest_connector(
    directory: str | None, rings: str | None = None
) -> Callable[[int], Stream] | None:
    """How to be guest N: ``directory``/N (pyxenstored --domain-dir), or a ring of the
    reference daemons' stand-in for Xen (its state directory)."""
    if rings is not None:
        try:  # development machinery, beside the package in a clone, not installed
            from xsref.guest import GuestRing
        except ImportError:
            raise SystemExit(
                "--guest-rings needs xsref, the reference launcher of a clone of this "
                "repository: run python -m xenstore.conformance from the clone's root"
            ) from None

        return lambda domid: GuestRing(rings, domid)
    if directory is None:
        return None
    return lambda domid: unix_connector(os.path.join(directory, str(domid)))()


def uses_guests(steps: list[Step]) -> bool:
    """Whether some step of a category acts as a guest (a ``g<domid>`` connection)."""
    return any(scenario.guest_domid(who) is not None for who in scenario.connections(steps))


def guests_missing(args: argparse.Namespace) -> str | None:
    """Why steps that act as guests cannot run with these flags; None if they can."""
    if args.guest_dir is None and args.guest_rings is None:
        return "give --guest-dir DIR (the target's pyxenstored --domain-dir DIR)"
    if args.ref and args.ref_guest_dir is None and args.ref_guest_rings is None:
        return "give --ref-guest-dir DIR for the reference"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="xenstore-conformance", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"xenstore-conformance {__version__}")
    p.add_argument("socket", nargs="?", help="the daemon to score")
    p.add_argument("--ref", metavar="SOCKET", help="compare with this live daemon instead")
    p.add_argument("--category", action="append", choices=scenario.categories(),
                   help="only these categories (default: all)")
    p.add_argument("--guest-dir", metavar="DIR",
                   help="where the target's guest sockets are (pyxenstored --domain-dir)")
    p.add_argument("--guest-rings", metavar="STATE_DIR",
                   help="play guests over the rings of a reference daemon started by "
                   "python -m xsref, from a clone (its state directory)")
    p.add_argument("--ref-guest-dir", metavar="DIR", help="--guest-dir for --ref")
    p.add_argument("--ref-guest-rings", metavar="STATE_DIR", help="--guest-rings for --ref")
    p.add_argument("--record", metavar="CATEGORY", help="re-record CATEGORY from SOCKET")
    p.add_argument("-v", "--verbose", action="store_true", help="show documented differences")
    args = p.parse_args(argv)
    if args.socket is None:
        p.error("a socket is needed")
    if args.record:
        record(args.record, args.socket, guest_connector(args.guest_dir, args.guest_rings))
        return 0
    failed = False
    for category in args.category or scenario.categories():
        steps = scenario.load(category)
        missing = guests_missing(args) if uses_guests(steps) else None
        if missing is not None:
            print(f"{category:<14} skipped: its steps act as guests; {missing}", flush=True)
            continue
        target_connect = unix_connector(args.socket)
        try:
            clean(target_connect)
        except Exception as exc:  # a broken target is scored, never a crash
            print(f"{category:<14} could not reset the target: {exc!r}")
            failed = True
            continue
        target = socket_runner(target_connect,
                               guest_connector(args.guest_dir, args.guest_rings))
        reference = None
        if args.ref:
            ref_connect = unix_connector(args.ref)
            clean(ref_connect)
            reference = socket_runner(
                ref_connect, guest_connector(args.ref_guest_dir, args.ref_guest_rings)
            )
        score = run_category(category, target, reference, steps)
        print(score.line(), flush=True)
        for report in score.failures + (score.documented if args.verbose else []):
            print(report)
        failed = failed or bool(score.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
