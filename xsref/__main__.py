"""``python -m xsref c|o DIR [-- DAEMON-ARGS...]``: run a reference daemon.

The daemon serves ``DIR/socket`` until this program gets Ctrl-C or SIGTERM
(then it stops the daemon and exits 0) or the daemon ends on its own (then it
shows the daemon's stderr and exits 1). Arguments after ``--`` go to the
daemon, e.g. ``-- -E 30 -W 5`` for cxenstored's small quotas.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence

from xsref.launcher import (
    ReferenceStartError,
    ReferenceUnavailable,
    check_available,
    start,
)

_WAKE_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xsref",
        description="Run Xen's C (c) or OCaml (o) XenStore daemon on DIR/socket, without Xen.",
    )
    parser.add_argument("kind", choices=("c", "o"), help="c: cxenstored, o: oxenstored")
    parser.add_argument("directory", metavar="DIR", help="where the socket goes (keep it short)")
    parser.add_argument(
        "daemon_args",
        nargs=argparse.REMAINDER,
        metavar="-- DAEMON-ARGS",
        help="extra arguments for the daemon",
    )
    args = parser.parse_args(argv)
    extra: list[str] = args.daemon_args
    if extra and extra[0] == "--":
        extra = extra[1:]

    try:
        check_available(args.kind)
        daemon = start(args.kind, args.directory, extra)
    except ReferenceUnavailable as exc:
        print(f"cannot run the reference daemon: {exc}", file=sys.stderr)
        return 2
    except (ReferenceStartError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1

    # Wait for Ctrl-C, SIGTERM or the daemon's end, without polling: block
    # the three signals and take them synchronously. SIGCHLD needs a handler
    # to be sure it is delivered at all (its default action is to discard it).
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAKE_SIGNALS)
    try:
        print(
            f"{daemon.name} (pid {daemon.pid}) is serving {daemon.socket_path}\n"
            f"point clients at it with:  export XENSTORED_PATH={daemon.socket_path}\n"
            f"for example:  XENSTORED_PATH={daemon.socket_path} xenstore-ls\n"
            f"its logs are in {daemon.state_dir}\n"
            f"stop it with Ctrl-C or: kill {os.getpid()}",
            flush=True,
        )
        received = None
        while daemon.running():
            received = signal.sigwait(_WAKE_SIGNALS)
            if received != signal.SIGCHLD:
                break
    finally:
        daemon.stop()
    if received in (signal.SIGINT, signal.SIGTERM):
        print(f"stopped {daemon.name}", file=sys.stderr)
        return 0
    print(
        f"{daemon.name} ended by itself (status {daemon.returncode}); its stderr:\n"
        + daemon.stderr_text(),
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
