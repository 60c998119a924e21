"""``pyxl host --domain-dir DIR``: run the simulated host in the foreground.

It connects as dom0 to the daemon at ``$XENSTORED_PATH`` (or ``--socket``), whose
guest sockets are in DIR (the daemon's ``--domain-dir``), serves ``pyxl``'s
commands on ``DIR/pyxl-host.sock`` and publishes that path at ``/tool/pyxl/host``.
Ctrl-C (or SIGTERM) stops it; its guests stop with it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

import trio

from xenstore.aclient import open_client
from xenstore.lab.commands import Commands, Server
from xenstore.lab.host import Host, HostOptions
from xenstore.sockets import default_socket_path

log = logging.getLogger("xenstore.lab")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyxl host", description=__doc__.split("\n")[0])
    p.add_argument("--domain-dir", metavar="DIR", required=True,
                   help="where the daemon makes its guest sockets (its --domain-dir)")
    p.add_argument("--socket", metavar="PATH", default=None,
                   help="the daemon's dom0 socket (default: $XENSTORED_PATH...)")
    p.add_argument("--name", default=None, help="this host's name (for migrate)")
    p.add_argument("--memory", metavar="MiB", type=int, default=16384,
                   help="the host's memory (default 16384)")
    p.add_argument("--cpus", type=int, default=4, help="the host's CPUs (default 4)")
    p.add_argument("-v", "--verbose", action="store_true", help="log what the host does")
    return p


async def serve(options: HostOptions, socket_path: str,
                task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The host and its command server until cancelled; started once both are up."""
    async with open_client(socket_path) as xs, trio.open_nursery() as nursery:
        host = Host(xs, options)
        await nursery.start(host.run)
        server = Server(Commands(host), options.socket_path or os.path.join(
            options.domain_dir, "pyxl-host.sock"))
        await nursery.start(server.run)
        task_status.started()


async def run(options: HostOptions, socket_path: str) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, options, socket_path)
            print(f"pyxl host {options.name}: serving dom0 of {socket_path}; "
                  f"try: pyxl list", file=sys.stderr, flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="pyxl host: %(message)s")
    socket_path = args.socket or default_socket_path()
    name = args.name or os.path.basename(os.path.abspath(args.domain_dir))
    options = HostOptions(os.path.abspath(args.domain_dir), name, args.memory * 1024,
                          args.cpus)
    try:
        trio.run(run, options, socket_path)
    except OSError as exc:
        print(f"pyxl host: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
