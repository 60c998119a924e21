"""``xenstore-control conflicts`` after many refused commits, over a real socket.

The explanations of 45 refused commits with long paths are far more than one
message holds (4096 bytes): the daemon answers with the newest that fit and a
line saying how many it left out. Our tool and Xen's print that reply alike.
"""

from __future__ import annotations

import os

import pytest

from tests.conftest import OurDaemon
from tests.tools.test_control import c_control, run
from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.ops import PAYLOAD_MAX

REFUSED = 45


def path_of(i: int) -> str:
    """A path of about 300 bytes: a few explanations fill a message."""
    return f"/vm/{i:02d}/" + "/".join(["device", "vbd", "51712", "x" * 250, "state"])


def refuse_commits(socket_path: str) -> None:
    """Each transaction reads a node that another connection then writes: EAGAIN."""
    with Client(socket_path, timeout=10) as xs, Client(socket_path, timeout=10) as other:
        for i in range(REFUSED):
            xs.write(path_of(i), "1")
            tx = xs.transaction_start()
            xs.read(path_of(i), tx)
            other.write(path_of(i), "2")
            xs.write(path_of(i), "3", tx)
            with pytest.raises(errors.EAGAIN):
                xs.transaction_end(tx)


@pytest.mark.parametrize("impl", ["ours", "c"])
def test_conflicts_after_many_refused_commits(impl: str, our_daemon: OurDaemon) -> None:
    if impl == "c" and c_control() is None:
        reason = "Xen's xenstore-control is not installed (apt install xen-utils-4.17)"
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    refuse_commits(our_daemon.socket_path)
    with Client(our_daemon.socket_path, timeout=10) as xs:
        reply = xs.control("conflicts")  # raised "payload length ... exceeds 4096" before
    assert len(reply) <= PAYLOAD_MAX and reply.endswith(b"\n\0")

    result = run(impl, our_daemon.socket_path, "conflicts")
    assert result == (0, reply[:-1] + b"\n", b"")
    # C prints the reply up to its NUL, and a newline.
    *shown, note = result.out.decode().removesuffix("\n\n").split("\n")
    assert len(shown) >= 5
    assert all(line.startswith("transaction ") and " refused: " in line for line in shown)
    # The newest, in order, then how many older ones were left out.
    for line, i in zip(reversed(shown), reversed(range(REFUSED)), strict=False):
        assert f" of {path_of(i)} it read was changed by " in line
    assert note == (f"({REFUSED - len(shown)} earlier conflicts left out; "
                    "the daemon's log has every one when it runs with -V)")
    assert "internal error" not in our_daemon.stderr()
