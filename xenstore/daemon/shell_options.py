"""How a shell is set up: its sockets, output bounds and guest pacing (from the flags)."""

from __future__ import annotations

from dataclasses import dataclass

#: Default bound of a connection's unsent output (``--backlog-max``).
BACKLOG_MAX = 8 * 1024 * 1024
#: Default bound of all connections' unsent output together (``--backlog-total``).
BACKLOG_TOTAL = 16 * 1024 * 1024
#: A dom0 connection with this much unsent output is not read until it drains.
STALL_AT = 1024 * 1024


@dataclass(slots=True)
class ShellOptions:
    socket_path: str
    socket_mode: int = 0o600
    backlog_max: int = BACKLOG_MAX
    backlog_total: int = BACKLOG_TOTAL
    stall_at: int = STALL_AT
    #: Where introduced domains get their sockets (``--domain-dir``); None: nowhere.
    domain_dir: str | None = None
    domain_socket_mode: int = 0o600
    #: (uid, gid) to give each domain socket, or None to leave it as created.
    domain_socket_owner: tuple[int, int] | None = None
    #: A guest domain's writes per second, and how many may come at once.
    write_rate: float = 200.0
    write_burst: int = 10
    #: The monitor feed's socket (``--monitor``), and whether it shows every request.
    monitor_path: str | None = None
    monitor_all: bool = False
    #: Whether the hot loop may block in its own epoll while trio is idle (fast); if
    #: not, it always waits through trio (``--portable-loop``; also where trio's run
    #: loop cannot be seen, see :mod:`xenstore.daemon.runloop`).
    in_place: bool = True
