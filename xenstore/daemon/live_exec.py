"""The shell's half of a live update: hand the state and the sockets to a new binary.

:class:`~xenstore.daemon.effects.ExecLiveUpdate` comes once the core has queued
the OK for ``xenstore-control``. :func:`hand_over` writes the migration stream
(tree, perms, domains, dom0's socket connections with their descriptors,
watches, unsent output (the OK among it), the bytes of a request partly
received and, forced with transactions open, those transactions in our own
records) to ``$XENSTORED_RUNDIR/state_dump`` as cxenstored 4.17 reads it, keeps
the listening socket and those connections open across the exec (blocking, as
cxenstored makes its own) and execs the binary with ``-U``. It returns only on
failure, with the reason, having put everything back as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Mapping

from xenstore.daemon.effects import ExecLiveUpdate
from xenstore.daemon.live_update import exec_argv
from xenstore.daemon.output import Peer
from xenstore.daemon.state import ServerState
from xenstore.migration import snapshot, stream
from xenstore.sockets import DEFAULT_RUNDIR

__all__ = ["hand_over", "state_dump_path"]

log = logging.getLogger("xenstore.daemon")


def state_dump_path() -> str:
    """Where a live update leaves the state: ``$XENSTORED_RUNDIR/state_dump``."""
    return os.path.join(os.environ.get("XENSTORED_RUNDIR") or DEFAULT_RUNDIR, "state_dump")


def hand_over(effect: ExecLiveUpdate, state: ServerState, peers: Mapping[int, Peer],
              listener: socket.socket | None) -> str:
    """Dump, keep the descriptors, exec; return why it failed (it returns only then)."""
    if listener is None:
        return "no listening socket to hand over"
    live = {conn_id: peer for conn_id, peer in peers.items()
            if peer.domid is None and not peer.closing and conn_id in state.connections}
    fds = {conn_id: peer.sock.fileno() for conn_id, peer in live.items()}
    outputs = {conn_id: bytes(peer.backlog) + b"".join(peer.out)
               for conn_id, peer in live.items()}
    inputs = {conn_id: peer.framer.held for conn_id, peer in live.items()}
    argv = exec_argv(effect.filename, effect.cmdline, sys.argv[1:])
    path = state_dump_path()
    data = stream.write(snapshot.dump(state, socket_fd=listener.fileno(), fds=fds,
                                      outputs=outputs, inputs=inputs,
                                      transactions=effect.transactions))
    try:
        with open(path, "wb") as file:
            file.write(data)
    except OSError as exc:
        log.warning("live update: cannot write %s: %s", path, exc)
        return "Dump state open error"
    socks = [listener, *(peer.sock for peer in live.values())]
    log.warning("live update: %d connection(s) to %s", len(live), " ".join(argv))
    for handler in logging.getLogger().handlers + log.handlers:
        handler.flush()
    for stream_ in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream_.flush()
    try:
        for sock in socks:
            sock.set_inheritable(True)
            sock.setblocking(True)
        os.execv(argv[0], argv)
    except OSError as exc:
        log.warning("live update: cannot exec %s: %s", argv[0], exc)
    for sock in socks:  # still ours: as they were
        with contextlib.suppress(OSError):
            sock.set_inheritable(False)
            sock.setblocking(False)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return "Error activating new binary."
