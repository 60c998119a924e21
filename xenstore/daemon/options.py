"""Command-line flags of ``pyxenstored``, named as cxenstored names them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from xenstore import __version__
from xenstore.sockets import default_socket_path

#: Flags cxenstored has whose effect arrives with a later part of this daemon:
#: accepted, and announced on stderr, never silently ignored.
NOT_YET = {
    "quota_soft": "-q/--quota-soft",
    "timeout": "-w/--timeout",
}


def _mode(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text}") from None


def _owner(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    try:
        return int(uid), int(gid) if gid else -1
    except ValueError:
        raise argparse.ArgumentTypeError(f"not UID[:GID]: {text}") from None


def _rate(text: str) -> tuple[float, int]:
    rate, _, burst = text.partition("/")
    try:
        return float(rate), int(burst) if burst else 10
    except ValueError:
        raise argparse.ArgumentTypeError(f"not RATE[/BURST]: {text}") from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyxenstored",
        description="A XenStore daemon serving the XenStore wire protocol on a Unix socket.",
        add_help=False,
    )
    p.add_argument("-H", "-h", "--help", action="help", help="show this message and exit")
    p.add_argument("--version", action="version", version=f"pyxenstored {__version__}")
    p.add_argument(
        "--socket",
        metavar="PATH",
        default=None,
        help="socket to listen on (default: $XENSTORED_PATH, else "
        "$XENSTORED_RUNDIR/socket, else /var/run/xenstored/socket)",
    )
    p.add_argument("--socket-mode", metavar="OCTAL", type=_mode, default=0o600,
                   help="file mode of the socket (default 0600: only its owner may connect)")
    p.add_argument("-F", "--pid-file", metavar="FILE",
                   help="write the daemon's pid to FILE once the socket listens")
    p.add_argument("-P", "--output-pid", action="store_true",
                   help="print the pid on stdout once the socket listens")
    p.add_argument("-N", "--no-fork", action="store_true",
                   help="accepted for cxenstored compatibility: this daemon never forks")
    p.add_argument("-T", "--trace-file", metavar="FILE",
                   help="append every request and reply to FILE in cxenstored's trace format")
    p.add_argument("-V", "--verbose", action="store_true",
                   help="log INFO lines too: each connection opened and closed, with its "
                   "domain, and what the daemon does")
    p.add_argument("--log-file", metavar="FILE",
                   help="also log to FILE, as on stderr (reopened on SIGHUP)")
    p.add_argument("--syslog", metavar="SOCKET", nargs="?", const="/dev/log", default=None,
                   help="also log to syslog (facility daemon) through SOCKET (default "
                   "/dev/log), as cxenstored logs")
    p.add_argument("-M", "--path-max", metavar="CHARS", type=int, default=None,
                   help="limit the length of node paths, for every connection (default 2048)")
    p.add_argument("--domain-dir", metavar="DIR",
                   help="after INTRODUCE of domain N, listen on DIR/N: whoever connects there "
                   "is domain N (unprivileged)")
    p.add_argument("--domain-socket-mode", metavar="OCTAL", type=_mode, default=0o600,
                   help="file mode of each domain socket (default 0600)")
    p.add_argument("--domain-socket-owner", metavar="UID[:GID]", type=_owner, default=None,
                   help="give each domain socket to this user (and group)")
    p.add_argument("--write-rate", metavar="RATE[/BURST]", type=_rate, default=(200.0, 10),
                   help="writes a second a guest domain may make, and how many at once "
                   "(default 200/10; 0: no limit)")
    p.add_argument("--backlog-max", metavar="BYTES", type=int, default=None,
                   help="disconnect a client whose unread output exceeds BYTES (default 8 MiB)")
    p.add_argument("--backlog-total", metavar="BYTES", type=int, default=None,
                   help="when all clients' unread output exceeds BYTES, disconnect the client "
                   "holding the most (default 16 MiB)")
    # Accepted for compatibility; they change nothing here.
    p.add_argument("-D", "--no-domain-init", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-I", "--internal-db", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-R", "--no-recovery", action="store_true", help=argparse.SUPPRESS)
    # Not implemented yet (see NOT_YET): a warning is printed when given.
    p.add_argument("-E", "--entry-nb", metavar="NB", type=int,
                   help="nodes an unprivileged domain may own (default 1000)")
    p.add_argument("-S", "--entry-size", metavar="BYTES", type=int,
                   help="size of a node an unprivileged domain writes (default 2048)")
    p.add_argument("-W", "--watch-nb", metavar="NB", type=int,
                   help="watches per unprivileged domain (default 128)")
    p.add_argument("-t", "--transaction", metavar="NB", type=int,
                   help="open transactions per unprivileged domain (default 10; 0: no limit)")
    p.add_argument("-A", "--perm-nb", metavar="NB", type=int,
                   help="permission entries per node set by an unprivileged domain (default 5)")
    p.add_argument("-Q", "--quota", metavar="NAME=NB", action="append",
                   help="set a quota by name: nodes, watches, transactions, node-size, "
                   "permissions, path-max, transaction-nodes, memory, outstanding")
    p.add_argument("-q", "--quota-soft", action="append", help="(not implemented yet)")
    p.add_argument("-w", "--timeout", action="append", help="(not implemented yet)")
    p.add_argument("-K", "--keep-orphans", action="store_true",
                   help="at RELEASE, give a domain's nodes to dom0 instead of removing them")
    p.add_argument("--monitor", metavar="PATH",
                   help="a Unix socket (mode 0600) where each client gets a JSON line for every "
                   "request that changed the store or the watches: who, what, the reply and "
                   "the watch events it caused")
    p.add_argument("--monitor-all", action="store_true",
                   help="with --monitor: a line for every request, reads too")
    p.add_argument("--portable-loop", action="store_true",
                   help="always wait for clients through trio, never in the daemon's own epoll "
                   "(slower; for comparison, or where the fast path misbehaves)")
    p.add_argument("--faults", action="store_true",
                   help="for tests only: accept CONTROL fault, which makes commits, writes and "
                   "watch events fail or come late on purpose (without it: EACCES)")
    p.add_argument("--restore", metavar="FILE",
                   help="start from a snapshot (Xen's migration stream, as CONTROL snapshot or "
                   "a cxenstored live update writes it): its tree, special perms and "
                   "domains; its connections are dropped")
    p.add_argument("-U", "--live-update", action="store_true",
                   help="take over from a daemon that live-updated into this one: restore "
                   "$XENSTORED_RUNDIR/state_dump (default /var/run/xenstored/state_dump) and "
                   "serve the listening socket and connections it handed over")
    return p


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = parser().parse_args(argv)
    if args.socket is None:
        args.socket = default_socket_path()
    return args


def not_yet_given(args: argparse.Namespace) -> list[str]:
    """The flags given whose effect this daemon does not have yet."""
    return [text for name, text in NOT_YET.items() if getattr(args, name) not in (None, False)]
