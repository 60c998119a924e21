"""Guests on a laptop: per-domain sockets, Debian's C clients acting as a guest."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import OurDaemon
from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

C_TOOLS = "/usr/bin"


@dataclass
class Host:
    daemon: OurDaemon
    dom0: Client

    @property
    def domain_dir(self) -> str:
        return self.daemon.directory

    def introduce(self, domid: int) -> str:
        """As a toolstack does: the home, its perms, then INTRODUCE; returns the socket."""
        home = f"/local/domain/{domid}"
        self.dom0.write(home, "")
        self.dom0.set_perms(home, [f"n{domid}", "r0"])
        self.dom0.request(Op.INTRODUCE, join(str(domid), "4096", "1"))
        return os.path.join(self.domain_dir, str(domid))

    def c_tool(self, domid: int, tool: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        if not os.path.exists(f"{C_TOOLS}/xenstore-ls"):
            pytest.skip("Debian's xenstore-utils is not installed")
        env = {**os.environ, "XENSTORED_PATH": os.path.join(self.domain_dir, str(domid))}
        return subprocess.run([f"{C_TOOLS}/xenstore-{tool}", *args], capture_output=True,
                              env=env, timeout=30)


@pytest.fixture
def host() -> Iterator[Host]:
    daemon = OurDaemon("--domain-dir", None)  # None: the daemon's own directory
    try:
        yield Host(daemon, Client(daemon.socket_path, timeout=10))
    finally:
        daemon.stop()


def test_c_clients_as_a_guest(host: Host) -> None:
    socket_path = host.introduce(5)
    assert os.path.exists(socket_path)
    assert host.c_tool(5, "write", "name", "vm5").returncode == 0
    assert host.dom0.read("/local/domain/5/name") == b"vm5"
    assert host.c_tool(5, "read", "name").stdout == b"vm5\n"
    assert host.dom0.get_perms("/local/domain/5/name") == ["n5", "r0"]
    denied = host.c_tool(5, "ls", "/local")
    assert denied.returncode == 1
    assert denied.stderr == b"xenstore-ls: xs_directory (/local): Permission denied\n"
    host.dom0.write("/local/domain/0/secret", "s")
    assert host.c_tool(5, "read", "/local/domain/0/secret").returncode == 1
    assert host.c_tool(5, "exists", "/local/domain/0/nothing").returncode == 1
    gave_away = host.c_tool(5, "chmod", "name", "n6")
    assert gave_away.returncode == 1 and b"Operation not permitted" in gave_away.stderr
    assert host.c_tool(5, "chmod", "name", "n5", "r6").returncode == 0
    assert host.dom0.get_perms("/local/domain/5/name") == ["n5", "r6"]


def test_a_guest_cannot_manage_domains(host: Host) -> None:
    host.introduce(5)
    with Client(os.path.join(host.domain_dir, "5"), timeout=10) as guest:
        for op in (Op.INTRODUCE, Op.RELEASE, Op.SET_TARGET):
            with pytest.raises(errors.EACCES):
                guest.request(op, join("6", "1", "1"))
        assert guest.get_domain_path(5) == "/local/domain/5"


def test_release_closes_the_guest_and_its_socket(host: Host) -> None:
    socket_path = host.introduce(5)
    guest = Client(socket_path, timeout=10)
    guest.write("data", "x")
    host.dom0.watch("@releaseDomain", "rel")
    assert host.dom0.read_watch() == ("@releaseDomain", "rel")
    host.dom0.request(Op.RELEASE, join("5"))
    assert host.dom0.read_watch() == ("@releaseDomain", "rel")
    with pytest.raises(ConnectionError):  # reset, or a broken pipe on sending
        guest.read("data")
    assert not os.path.exists(socket_path)
    assert not host.dom0.exists("/local/domain/5")
    assert "domain 5 released" in host.daemon.stderr()


def test_socket_files_are_the_boundary() -> None:
    """A non-root user cannot act as a guest unless the socket is theirs (root ignores modes)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user")
    probe = ("import sys; from xenstore.client import Client; "
             "print(Client(sys.argv[1], timeout=5).read('name').decode())")

    def as_nobody(socket_path: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-c", probe, socket_path],
            capture_output=True, text=True, timeout=30, env={**os.environ, "HOME": "/"},
        )

    for owner_flags, allowed in (((), False), (("--domain-socket-owner", "65534:65534"), True)):
        daemon = OurDaemon("--domain-dir", None, *owner_flags)
        try:
            os.chmod(daemon.directory, 0o755)  # let nobody reach the socket file
            host = Host(daemon, Client(daemon.socket_path, timeout=10))
            socket_path = host.introduce(5)
            host.dom0.write("/local/domain/5/name", "vm5")
            result = as_nobody(socket_path)
            if allowed:
                assert result.returncode == 0 and result.stdout == "vm5\n", result.stderr
            else:  # errors.ConnectionError, a PermissionError too
                assert result.returncode != 0 and "Permission denied" in result.stderr
            assert "Permission denied" in as_nobody(daemon.socket_path).stderr  # dom0's: never
        finally:
            daemon.stop()


def test_write_rate_limit_slows_only_the_guest() -> None:
    daemon = OurDaemon("--domain-dir", None, "--write-rate", "100/5")
    try:
        host = Host(daemon, Client(daemon.socket_path, timeout=10))
        guest = Client(host.introduce(5), timeout=10)
        start = time.monotonic()
        slowest_dom0 = 0.0
        for i in range(55):
            guest.write("counter", str(i))
            t = time.monotonic()
            host.dom0.read("/local/domain/5/counter")
            slowest_dom0 = max(slowest_dom0, time.monotonic() - t)
        # 5 at once, then 100 a second: the other 50 need at least half a second.
        assert time.monotonic() - start >= 0.45
        assert slowest_dom0 < 0.4  # dom0 was answered meanwhile (a generous bound)
        assert guest.read("counter") == b"54"
    finally:
        daemon.stop()


def test_a_guest_over_quota_is_refused_and_logged_others_go_on(host: Host) -> None:
    host.introduce(5)
    host.dom0.request(Op.SET_QUOTA, join("5", "nodes", "3"))
    guest = Client(os.path.join(host.domain_dir, "5"), timeout=10)
    guest.write("a", "")
    guest.write("b", "")
    with pytest.raises(errors.ENOSPC):
        guest.write("c", "")
    host.dom0.write("/still/serving", "yes")
    assert host.dom0.read("/still/serving") == b"yes"
    assert "domain 5: nodes quota hit" in host.daemon.stderr()


def test_a_guest_cannot_flood_the_log(host: Host) -> None:
    """Every refused request over a quota is worth a log line, and a guest can send
    them as fast as it likes: its lines are rate-limited, and the count of those
    left out is logged with the next."""
    host.introduce(5)
    host.dom0.request(Op.SET_QUOTA, join("5", "watches", "1"))
    guest = Client(os.path.join(host.domain_dir, "5"), timeout=10)
    guest.watch("a", "t0")
    refused = 0
    for n in range(300):
        with pytest.raises(errors.XenStoreError) as caught:
            guest.watch(f"b{n}", "t")
        refused += caught.value.name == "ENOSPC"
    assert refused == 300
    time.sleep(0.5)  # a budget refills with time: the next line is logged
    with pytest.raises(errors.XenStoreError):
        guest.watch("last", "t")
    log = host.daemon.stderr()
    lines = log.count("domain 5: watches quota hit")
    assert 1 <= lines < 100, lines
    assert "more lines of domain 5 not logged" in log
    guest.close()


def test_a_guest_that_never_reads_is_paced_not_buffered(host: Host) -> None:
    host.introduce(5)
    host.dom0.write("/local/domain/5/big", "v" * 4000)
    sloth = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sloth.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sloth.connect(os.path.join(host.domain_dir, "5"))
    sloth.setblocking(False)
    sent = 0
    request = encode(Packet(Op.READ, 1, 0, b"big\0"))
    try:
        for _ in range(5000):
            sloth.send(request)
            sent += 1
    except BlockingIOError:
        pass  # the daemon stopped reading it: its requests wait in the kernel
    assert sent < 5000
    host.dom0.write("/others/fine", "yes")
    assert host.dom0.read("/others/fine") == b"yes"
    sloth.close()
