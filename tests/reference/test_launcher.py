"""The reference daemons (Xen 4.17's cxenstored and oxenstored) run through our launcher.

Skipped, with the reason, on a machine that cannot run them (not root, no
xen-utils-4.17, no gcc, no mount namespaces).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import pytest

from xenstore.client import Client
from xsref import (
    ReferenceDaemon,
    ReferenceStartError,
    ReferenceUnavailable,
    check_available,
    start,
)

KINDS = ("c", "o")

#: The tree each daemon starts with: cxenstored has only /tool/xenstored (empty);
#: oxenstored also has /local and shows its two special watch paths as nodes.
INITIAL_ROOT = {
    "c": ["tool"],
    "o": ["@introduceDomain", "@releaseDomain", "local", "tool"],
}
TOOL_XENSTORED = {
    "c": b"",
    "o": b"/usr/lib/xen-4.17/bin/oxenstored",
}


def require(kind: str) -> None:
    try:
        check_available(kind)
    except ReferenceUnavailable as exc:
        pytest.skip(str(exc))


def short_dir() -> str:
    # Unix socket paths are limited to 107 bytes: pytest's tmp_path is too long.
    return tempfile.mkdtemp(prefix="xs", dir="/tmp")


@pytest.fixture
def workdir() -> Iterator[str]:
    path = short_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=KINDS)
def daemon(request: pytest.FixtureRequest, workdir: str) -> Iterator[ReferenceDaemon]:
    kind: str = request.param
    require(kind)
    with start(kind, workdir) as running:
        yield running


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_socket_is_in_the_directory(daemon: ReferenceDaemon, workdir: str) -> None:
    assert daemon.socket_path == os.path.join(workdir, "socket")
    assert daemon.running()
    assert pid_exists(daemon.pid)
    # The real run directory is not where it listens.
    assert os.path.realpath(daemon.socket_path) != os.path.realpath("/var/run/xenstored/socket")


def test_initial_tree(daemon: ReferenceDaemon) -> None:
    with Client(daemon.socket_path, timeout=5) as client:
        assert client.read("/tool/xenstored") == TOOL_XENSTORED[daemon.kind]
        assert sorted(client.directory("/")) == INITIAL_ROOT[daemon.kind]
        assert client.get_perms("/") == ["n0"]


def test_write_read_round_trip(daemon: ReferenceDaemon) -> None:
    with Client(daemon.socket_path, timeout=5) as client:
        client.write("/test/node", b"hello\x00world")
        assert client.read("/test/node") == b"hello\x00world"
        assert client.directory("/test") == ["node"]
    # A second connection sees the same store.
    with Client(daemon.socket_path, timeout=5) as client:
        assert client.read("/test/node") == b"hello\x00world"


def test_stop_ends_the_process(daemon: ReferenceDaemon) -> None:
    pid = daemon.pid
    daemon.stop()
    assert not daemon.running()
    assert daemon.returncode is not None
    assert not pid_exists(pid)
    assert not os.path.exists(daemon.socket_path)
    with pytest.raises(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.connect(daemon.socket_path)
    daemon.stop()  # a second stop is harmless


@pytest.mark.parametrize("kind", KINDS)
def test_no_state_survives_a_restart(kind: str, workdir: str) -> None:
    require(kind)
    with start(kind, workdir) as first, Client(first.socket_path, timeout=5) as client:
        client.write("/test/kept", b"1")
    with start(kind, workdir) as second, Client(second.socket_path, timeout=5) as client:
        assert not client.exists("/test/kept")


def test_instances_side_by_side() -> None:
    for kind in KINDS:
        require(kind)
    dirs = [short_dir() for _ in range(3)]
    daemons: list[ReferenceDaemon] = []
    try:
        for kind, directory in zip(("c", "c", "o"), dirs, strict=True):
            daemons.append(start(kind, directory))
        assert len({d.pid for d in daemons}) == 3
        for index, running in enumerate(daemons):
            with Client(running.socket_path, timeout=5) as client:
                client.write("/test/which", str(index))
        for index, running in enumerate(daemons):
            with Client(running.socket_path, timeout=5) as client:
                assert client.read("/test/which") == str(index).encode()
        daemons[0].stop()
        with Client(daemons[1].socket_path, timeout=5) as client:
            assert client.read("/test/which") == b"1"
    finally:
        for running in daemons:
            running.stop()
        for directory in dirs:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize(
    ("kind", "bad_args", "complaint"),
    [
        ("c", ["-Q", "bogus=1"], "unknown quota"),
        ("o", ["--bogus"], "unknown option"),
    ],
)
def test_daemon_that_exits_at_start(
    kind: str, bad_args: list[str], complaint: str, workdir: str
) -> None:
    require(kind)
    with pytest.raises(ReferenceStartError, match=complaint):
        start(kind, workdir, bad_args)


@pytest.mark.parametrize("kind", KINDS)
def test_start_timeout_kills_the_daemon(kind: str, workdir: str) -> None:
    require(kind)
    with pytest.raises(ReferenceStartError, match="did not become ready"):
        start(kind, workdir, timeout=0)
    assert not os.path.exists(os.path.join(workdir, "socket"))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        start("x", "/tmp/xs-unused")
    with pytest.raises(ValueError, match="107"):
        start("c", "/tmp/" + "d" * 110)
    with pytest.raises(ValueError, match="kind"):
        check_available("cxenstored")
