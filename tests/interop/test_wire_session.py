"""The recorded wire session against live daemons: ours and the reference.

Against the reference this checks that the goldens are still what cxenstored
answers; against ours, that the real socket path (framing, shell) agrees too.
"""

from __future__ import annotations

from tests import wiretable


def test_wire_session(any_daemon: str) -> None:
    cases = wiretable.load("wire_session.txt")
    assert wiretable.run(cases, wiretable.socket_exchange(any_daemon)) == []
