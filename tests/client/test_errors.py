"""The clients' errors say where: the request, its path (or the socket) and the wire error."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from xenstore import errors
from xenstore.aclient import open_client
from xenstore.client import Client
from xenstore.protocol.codec import join
from xenstore.protocol.ops import PAYLOAD_MAX, Op
from xenstore.testing import TestDaemon


@pytest.mark.parametrize(
    ("call", "cls", "text"),
    [
        (lambda xs: xs.write("bad path", "x"), errors.EINVAL,
         "write 'bad path': EINVAL (invalid argument)"),
        (lambda xs: xs.read("/nowhere"), errors.ENOENT,
         "read '/nowhere': ENOENT (no such file or directory)"),
        (lambda xs: xs.directory("/nowhere"), errors.ENOENT,
         "directory '/nowhere': ENOENT (no such file or directory)"),
        (lambda xs: xs.set_perms("/nowhere", ["n0"]), errors.ENOENT,
         "set_perms '/nowhere': ENOENT (no such file or directory)"),
        (lambda xs: xs.unwatch("/x", "never"), errors.ENOENT,
         "unwatch '/x': ENOENT (no such file or directory)"),
        (lambda xs: xs.transaction_end(99), errors.ENOENT,
         "transaction_end 99: ENOENT (no such file or directory)"),
        (lambda xs: xs.request(Op.RELEASE, join("0")), errors.EINVAL,
         "release_domain 0: EINVAL (invalid argument)"),
        (lambda xs: xs.control("no-such-command"), errors.EINVAL,
         "control 'no-such-command': EINVAL (invalid argument)"),
    ],
)
def test_an_error_reply_names_the_request_and_its_path(
    xs: Client, call: object, cls: type[errors.XenStoreError], text: str
) -> None:
    with pytest.raises(cls) as info:
        call(xs)  # type: ignore[operator]
    assert str(info.value) == text
    assert info.value.errno == cls.errno
    assert info.value.strerror == os.strerror(cls.errno)


def test_the_error_keeps_its_parts(xs: Client) -> None:
    with pytest.raises(errors.EINVAL) as info:
        xs.write("bad path", "x")
    assert (info.value.op, info.value.path, info.value.name) == ("write", "bad path", "EINVAL")
    assert isinstance(info.value, errors.XenStoreError)


def test_a_request_too_big_to_send_is_refused_before_sending(xs: Client) -> None:
    with pytest.raises(errors.E2BIG) as info:
        xs.write("/big", b"x" * PAYLOAD_MAX)
    assert str(info.value) == (f"write '/big': E2BIG (argument list too long): request of "
                               f"{PAYLOAD_MAX + 5} bytes exceeds {PAYLOAD_MAX}")
    xs.write("/small", "still connected")


def test_the_core_s_own_errors_read_as_before() -> None:
    assert str(errors.ENOENT()) == "ENOENT"
    assert str(errors.EINVAL("no such domain")) == "EINVAL: no such domain"


def test_a_missing_socket_names_the_path_and_what_to_set(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = os.path.join(tmp_path, "socket")
    with pytest.raises(errors.ConnectionError) as info:
        Client(path)
    assert isinstance(info.value, FileNotFoundError)  # what callers caught so far
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == path
    assert str(info.value) == (f"cannot connect to the XenStore daemon at {path!r}: No such "
                               "file or directory (is the daemon running, and is that its socket?)")

    monkeypatch.setenv("XENSTORED_PATH", path)
    with pytest.raises(FileNotFoundError, match=r"from \$XENSTORED_PATH.*Set XENSTORED_PATH"):
        Client()

    monkeypatch.delenv("XENSTORED_PATH")
    monkeypatch.setenv("XENSTORED_RUNDIR", os.fspath(tmp_path))
    with pytest.raises(errors.ConnectionError) as info:
        Client()
    assert str(info.value).endswith(
        "($XENSTORED_RUNDIR/socket: set XENSTORED_PATH to the socket the daemon listens on)")
    assert info.value.filename == path


def test_a_refused_socket_is_a_connection_error_too(tmp_path: os.PathLike[str]) -> None:
    import socket

    path = os.path.join(tmp_path, "socket")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)  # bound, never listening: connect() is refused
        with pytest.raises(ConnectionRefusedError) as info:
            Client(path)
    assert isinstance(info.value, errors.ConnectionError)
    assert path in str(info.value)


def test_a_lost_daemon_names_its_socket(xenstored: TestDaemon) -> None:
    xs = xenstored.client(timeout=10)
    xenstored.stop()
    with pytest.raises(OSError) as info, xs:
        xs.read("/")
    assert str(info.value).startswith("[Errno 32] read '/': Broken pipe (XenStore socket")
    assert isinstance(info.value, BrokenPipeError)
    assert repr(xenstored.socket_path) in str(info.value)


async def test_the_trio_client_names_request_path_and_socket(
    xenstored: TestDaemon, tmp_path: os.PathLike[str]
) -> None:
    async with open_client(xenstored.socket_path) as xs:
        with pytest.raises(errors.EINVAL) as info:
            await xs.write("bad path", "x")
        assert str(info.value) == "write 'bad path': EINVAL (invalid argument)"
        with pytest.raises(errors.E2BIG, match=r"^mkdir '/x+': E2BIG"):
            await xs.mkdir("/" + "x" * PAYLOAD_MAX)
    missing = os.path.join(tmp_path, "socket")
    with pytest.raises(errors.ConnectionError) as connect:
        async with open_client(missing):
            pass
    assert isinstance(connect.value, FileNotFoundError)
    assert repr(missing) in str(connect.value)
    await trio.lowlevel.checkpoint()
