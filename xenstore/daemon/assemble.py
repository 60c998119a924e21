"""Build a daemon from parsed flags: shared by ``pyxenstored`` and ``xenstore.testing``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket

from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Listen
from xenstore.daemon.live_exec import state_dump_path
from xenstore.daemon.output import BACKLOG_MAX, BACKLOG_TOTAL
from xenstore.daemon.quotas import DEFAULTS, FLAGS
from xenstore.daemon.shell import Shell, ShellOptions
from xenstore.daemon.trace import Tracer
from xenstore.migration.adopt import Handover, live_server_from
from xenstore.migration.restore import describe, server_from

log = logging.getLogger("xenstore.daemon")


def config_from(args: argparse.Namespace) -> Config:
    """The core's settings from the flags; ValueError for a malformed or unknown quota."""
    config = Config(keep_orphans=bool(args.keep_orphans), trace_file=args.trace_file,
                    faults=bool(args.faults))
    for flag, quota in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            config.quotas[quota] = value
    for quota in args.quota or ():
        name, _, value = quota.partition("=")
        if not value.isdigit():
            raise ValueError(f"-Q {quota}: expected NAME=NUMBER")
        if name not in DEFAULTS:
            raise ValueError(f"-Q {quota}: unknown quota {name!r}")
        config.quotas[name] = int(value)
    return config


def build_server(args: argparse.Namespace) -> tuple[Server, str | None, Handover | None]:
    """A fresh Server, or one restored from ``--restore FILE`` or (``-U``) from a live
    update's state dump, with a line saying what it restored and, for ``-U``, what to
    take over. A bad stream raises :class:`~xenstore.migration.StreamError` (a
    ValueError naming the record and the offset), an unreadable one OSError."""
    config = config_from(args)
    if getattr(args, "live_update", False):
        dump = state_dump_path()
        with open(dump, "rb") as file:
            data = file.read()
        server, handover = live_server_from(data, config)
        with contextlib.suppress(OSError):
            os.unlink(dump)  # as cxenstored does once it has read it
        for domid in handover.loaded.domains:
            log.warning("live update: domain %d's shared ring is not carried over: the "
                        "domain stays introduced, without a live ring", domid)
        return server, f"{dump}: {handover.describe()}", handover
    restore = getattr(args, "restore", None)
    if not restore:
        return Server(config), None, None
    with open(restore, "rb") as file:
        data = file.read()
    server, loaded = server_from(data, config)
    return server, f"{restore}: {describe(loaded)}", None


def build_shell(args: argparse.Namespace, server: Server | None = None) -> Shell:
    """The Server (``server``, or a fresh one) and its trio Shell as the flags say."""
    tracer = Tracer(args.trace_file) if args.trace_file else None
    return Shell(
        server if server is not None else Server(config_from(args)),
        ShellOptions(
            socket_path=args.socket,
            socket_mode=args.socket_mode,
            backlog_max=args.backlog_max or BACKLOG_MAX,
            backlog_total=args.backlog_total or BACKLOG_TOTAL,
            domain_dir=args.domain_dir,
            domain_socket_mode=args.domain_socket_mode,
            domain_socket_owner=args.domain_socket_owner,
            write_rate=args.write_rate[0],
            write_burst=args.write_rate[1],
            monitor_path=args.monitor,
            monitor_all=bool(args.monitor_all),
            in_place=not args.portable_loop,
        ),
        tracer,
    )


def inherited_listener(handover: Handover) -> socket.socket:
    """The listening socket a live update handed over (OSError if there is none)."""
    if handover.listener_fd < 0:
        raise OSError("the live update handed over no listening socket")
    sock = socket.socket(fileno=handover.listener_fd)
    sock.setblocking(False)
    return sock


def adopt_connections(shell: Shell, handover: Handover | None) -> None:
    """Serve the connections a live update handed over (once the shell serves)."""
    for inherited in handover.connections if handover is not None else ():
        try:
            sock = socket.socket(fileno=inherited.fd)
            sock.setblocking(False)
        except OSError as exc:
            log.warning("live update: connection %d (fd %d) is not a socket: %s; dropped",
                        inherited.conn_id, inherited.fd, exc)
            shell.carry_out(shell.server.disconnect(inherited.conn_id))
            continue
        shell.adopt_peer(sock, inherited.conn_id, inherited.data_out, inherited.data_in)


def listen_restored(shell: Shell) -> None:
    """Open the sockets of the domains a restore brought (once the shell serves)."""
    if shell.server.domains:
        shell.carry_out([Listen(domid) for domid in sorted(shell.server.domains)])
