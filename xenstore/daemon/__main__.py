"""``pyxenstored`` / ``python -m xenstore.daemon``: run the daemon in the foreground."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Sequence

import trio

from xenstore import compiled
from xenstore.daemon import assemble, logfile, options
from xenstore.daemon.listeners import SocketInUse, bind_unix
from xenstore.daemon.live_exec import state_dump_path
from xenstore.daemon.logfile import ReopenableFileHandler
from xenstore.daemon.shell import Shell
from xenstore.daemon.supervision import supervised
from xenstore.migration import StreamError
from xenstore.migration.adopt import Handover

log = logging.getLogger("xenstore.daemon")


def notify_ready() -> None:
    """sd_notify(READY=1) when started by systemd (or anything speaking its protocol)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(b"READY=1", address)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", address, exc)


def raise_open_files_limit() -> int:
    """Raise the soft limit of open files as far as the hard limit allows.

    Every client is a file descriptor; distributions start processes with a soft
    limit of 1024, which a host with many guests and tools outgrows. Returns the
    limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
    log.info("open files limit: %d", soft)
    return soft


def announce_ready(args: object, socket_path: str) -> None:
    """Tell whoever waits that the socket listens: pid file, -P, sd_notify."""
    pid = os.getpid()
    pid_file = getattr(args, "pid_file", None)
    if pid_file:
        tmp = f"{pid_file}.{pid}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, pid_file)
    if getattr(args, "output_pid", False):
        with contextlib.suppress(BrokenPipeError):  # nobody reads it: as cxenstored
            print(pid, flush=True)
    notify_ready()
    socket_path = os.path.abspath(socket_path)
    print(
        f"pyxenstored: listening on {socket_path}\n"
        f"pyxenstored: point clients at it with: export XENSTORED_PATH={socket_path}",
        file=sys.stderr,
        flush=True,
    )


def reopen_files(shell: Shell, log_file: ReopenableFileHandler | None) -> None:
    """SIGHUP: reopen the trace and log files, as cxenstored does (after logrotate)."""
    if log_file is not None:
        log_file.reopen()
    if shell.tracer is not None:
        shell.tracer.reopen()
    log.info("reopened the trace and log files on SIGHUP")


async def run(
    shell: Shell,
    listener: socket.socket,
    args: object,
    log_file: ReopenableFileHandler | None = None,
    handover: Handover | None = None,
) -> None:
    # The receiver stays open for the daemon's life, so no signal ever meets the
    # default action (death) while its handling is started again after a failure.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.serve, listener)
            assemble.listen_restored(shell)  # the domains of a --restore
            assemble.adopt_connections(shell, handover)
            announce_ready(args, shell.options.socket_path)

            async def handle_signals() -> None:
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        reopen_files(shell, log_file)
                        continue
                    log.info("stopping on signal %d", signum)
                    nursery.cancel_scope.cancel()
                    return

            await supervised("signal handling", handle_signals)


def main(argv: Sequence[str] | None = None) -> int:
    args = options.parse(argv)
    stale = compiled.stale()
    if stale:  # it would run code that is no longer written anywhere
        print(f"pyxenstored: {compiled.stale_message(stale)}", file=sys.stderr)
        return 1
    try:
        log_file = logfile.configure(args.verbose, args.log_file, args.syslog)
    except OSError as exc:
        to_file = args.log_file is not None and exc.filename == args.log_file
        where = args.log_file if to_file else f"syslog at {args.syslog}"
        print(f"pyxenstored: cannot log to {where}: {exc}", file=sys.stderr)
        return 1
    for flag in options.not_yet_given(args):
        print(f"pyxenstored: warning: {flag} is not implemented yet; ignored", file=sys.stderr)
    raise_open_files_limit()
    try:
        server, restored, handover = assemble.build_server(args)
        shell = assemble.build_shell(args, server)
    except StreamError as exc:
        what = state_dump_path() if args.live_update else args.restore
        print(f"pyxenstored: cannot restore {what}: {exc}", file=sys.stderr)
        return 4
    except ValueError as exc:
        print(f"pyxenstored: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        what = "the live update's state" if args.live_update else "the snapshot"
        print(f"pyxenstored: cannot read {what}: {exc}", file=sys.stderr)
        return 4
    if restored:
        log.info("%s", restored)
    log.info("core: %s", compiled.describe())
    try:
        listener = (assemble.inherited_listener(handover) if handover is not None
                    else bind_unix(args.socket, args.socket_mode))
    except SocketInUse:
        print(f"pyxenstored: {args.socket}: another daemon is running and answers on this "
              "socket; stop it first, or choose another path with --socket", file=sys.stderr)
        return 3
    except (OSError, ValueError) as exc:
        # In use, too long, no such directory...: say so, no traceback.
        print(f"pyxenstored: cannot listen on {args.socket}: {exc}", file=sys.stderr)
        return 1
    try:
        trio.run(run, shell, listener, args, log_file, handover)
    finally:
        if shell.tracer:
            shell.tracer.close()
        if args.pid_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
