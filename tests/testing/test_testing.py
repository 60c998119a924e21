"""xenstore.testing: the throwaway daemon, as a context manager and as pytest fixtures.

The fixtures ``xenstored`` and ``xs`` are used here without any conftest
defining them: they come from the ``pytest11`` entry point of the installed
package, which these tests thereby prove.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from xenstore import errors, testing
from xenstore.client import Client
from xenstore.testing import TestDaemon

MODES = [pytest.param(False, id="subprocess"), pytest.param(True, id="in-process")]


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def daemon_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("xenstored ")]


def assert_gone(daemon: TestDaemon) -> None:
    """Nothing of ``daemon`` is left: socket, directory, process or thread."""
    assert not os.path.exists(daemon.socket_path)
    assert not os.path.exists(os.path.dirname(daemon.socket_path))
    if daemon.pid is not None:
        assert not is_running(daemon.pid)
    assert f"xenstored {daemon.socket_path}" not in daemon_threads()
    with pytest.raises(OSError):
        Client(daemon.socket_path)


# -- the context manager ------------------------------------------------------------------


@pytest.mark.parametrize("in_process", MODES)
def test_start_serve_stop(in_process: bool) -> None:
    with testing.xenstored(in_process=in_process) as daemon:
        assert len(os.fsencode(daemon.socket_path)) <= 107
        assert os.path.exists(daemon.socket_path)
        if in_process:
            assert daemon.pid is None
            assert f"xenstored {daemon.socket_path}" in daemon_threads()
        else:
            assert daemon.pid is not None and daemon.pid != os.getpid()
            assert is_running(daemon.pid)
        with daemon.client() as xs:
            xs.write("/a/b", b"value")
            assert xs.read("/a/b") == b"value"
            assert xs.directory("/a") == ["b"]
    assert_gone(daemon)


@pytest.mark.parametrize("in_process", MODES)
def test_stop_with_clients_connected(in_process: bool) -> None:
    daemon = testing.start(in_process=in_process)
    xs = daemon.client(timeout=10)
    try:
        xs.write("/x", b"1")
        daemon.stop()
        assert_gone(daemon)
        with pytest.raises(OSError):
            xs.read("/x")
        daemon.stop()  # again: nothing to do
    finally:
        xs.close()
        daemon.stop()


def test_side_by_side() -> None:
    with (
        testing.xenstored() as one,
        testing.xenstored(in_process=True) as two,
        testing.xenstored() as three,
        testing.xenstored(in_process=True) as four,
    ):
        daemons = [one, two, three, four]
        assert len({d.socket_path for d in daemons}) == 4
        for i, daemon in enumerate(daemons):
            with daemon.client() as xs:
                xs.write("/who", str(i))
        for i, daemon in enumerate(daemons):
            with daemon.client() as xs:
                assert xs.read("/who") == str(i).encode()
    for daemon in daemons:
        assert_gone(daemon)


@pytest.mark.parametrize("in_process", MODES)
def test_daemon_flags(in_process: bool) -> None:
    # -M: at most 20 bytes of path.
    with (
        testing.xenstored(in_process=in_process, args=["-M", "20"]) as daemon,
        daemon.client() as xs,
    ):
        xs.write("/short", b"1")
        with pytest.raises(errors.XenStoreError):
            xs.write("/" + "a" * 40, b"1")


@pytest.fixture
def created_directories(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The directories start() makes, recorded."""
    made: list[str] = []
    original: Callable[[], str] = testing._short_directory

    def record() -> str:
        made.append(original())
        return made[-1]

    monkeypatch.setattr(testing, "_short_directory", record)
    yield made


def test_failed_start_leaves_nothing(created_directories: list[str]) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)did not start.*--no-such-flag"):
        testing.start(args=["--no-such-flag"])
    with pytest.raises(ValueError, match="--no-such-flag"):
        testing.start(in_process=True, args=["--no-such-flag"])
    assert len(created_directories) == 2
    for directory in created_directories:
        assert not os.path.exists(directory)


def test_importing_needs_neither_pytest_nor_trio(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['pytest'] = None  # as if pytest were not installed\n"
        "from xenstore.testing import xenstored\n"
        "assert 'trio' not in sys.modules, 'trio imported'\n"
        "with xenstored() as daemon, daemon.client() as xs:\n"
        "    xs.write('/k', 'v')\n"
        "    assert xs.read('/k') == b'v'\n"
        "assert 'trio' not in sys.modules, 'trio imported'\n"
        "with xenstored(in_process=True) as daemon, daemon.client() as xs:\n"
        "    assert xs.read('/tool/xenstored') == b''\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert (proc.returncode, proc.stdout) == (0, "ok\n"), proc.stderr


def test_plugin_is_declared() -> None:
    from importlib.metadata import entry_points

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("xenstore") == "xenstore.testing"


# -- the fixtures --------------------------------------------------------------------------


def test_fixtures(xenstored: TestDaemon, xs: Client) -> None:
    assert xenstored.pid is not None  # a subprocess by default
    assert xs.path == xenstored.socket_path
    xs.write("/vm/name", "guest")
    # $XENSTORED_PATH points at it: the default client and the tools find it.
    assert os.environ["XENSTORED_PATH"] == xenstored.socket_path
    with Client() as default:
        assert default.read("/vm/name") == b"guest"
    proc = subprocess.run(
        [sys.executable, "-m", "xenstore.tools.read", "/vm/name"], capture_output=True, timeout=60
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"guest\n", b"")


def test_fixture_is_fresh_for_each_test(xs: Client) -> None:
    assert not xs.exists("/vm/name")


@pytest.mark.xenstored(in_process=True, args=["-M", "20"])
def test_marker_configures_the_fixture(xenstored: TestDaemon, xs: Client) -> None:
    assert xenstored.pid is None
    with pytest.raises(errors.XenStoreError):
        xs.write("/" + "a" * 40, b"1")


# -- the README's example ------------------------------------------------------------------


def serve_requests() -> None:
    """A stand-in for the backend under test: answers /backend/request in /backend/reply."""
    try:
        with Client() as xs:  # finds the daemon through $XENSTORED_PATH
            xs.watch("/backend/request", "request")
            while True:
                path, _token = xs.read_watch()
                # The first event comes at once, maybe before any request.
                if xs.exists(path):
                    xs.write("/backend/reply", b"re: " + xs.read(path))
    except OSError:
        return  # the daemon stopped at the end of the test


def test_backend_answers(xs: Client) -> None:
    threading.Thread(target=serve_requests, daemon=True).start()
    xs.watch("/backend/reply", "reply")
    assert xs.read_watch() == ("/backend/reply", "reply")  # a new watch fires at once
    xs.write("/backend/request", "ping")
    assert xs.read_watch() == ("/backend/reply", "reply")
    assert xs.read("/backend/reply") == b"re: ping"
