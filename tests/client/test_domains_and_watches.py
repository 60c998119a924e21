"""The clients' domain requests (pyxs's names) and the blocking client's watch iterator."""

from __future__ import annotations

import os
import time

import pytest

from xenstore import errors
from xenstore.aclient import open_client
from xenstore.client import Client
from xenstore.protocol.requests import WatchEvent
from xenstore.testing import TestDaemon


@pytest.mark.xenstored(guests=True)
def test_a_toolstack_introduces_targets_resumes_and_releases_a_domain(
    xenstored: TestDaemon, xs: Client
) -> None:
    assert not xs.is_domain_introduced(5)
    xs.write("/local/domain/5", "")
    xs.set_perms("/local/domain/5", ["n5", "r0"])
    xs.introduce_domain(5)
    xs.introduce_domain(6, mfn=4096, eventchn=7)
    assert xs.is_domain_introduced(5) and xs.is_domain_introduced(6)
    assert xs.get_domain_path(5) == "/local/domain/5"
    with Client(xenstored.guest_socket(5)) as guest:
        guest.write("name", "guest5")  # relative: below its home
        assert xs.read("/local/domain/5/name") == b"guest5"
    xs.set_target(6, 5)
    with Client(xenstored.guest_socket(6)) as model:  # domain 6 acts for 5 now
        model.write("/local/domain/5/device-model", "running")
    xs.resume_domain(5)
    xs.release_domain(5)
    assert not xs.is_domain_introduced(5)
    assert not os.path.exists(xenstored.guest_socket(5))
    with pytest.raises(errors.ENOENT, match=r"^release_domain 5: ENOENT"):
        xs.release_domain(5)


@pytest.mark.xenstored(guests=True)
async def test_the_trio_client_has_the_same_domain_requests(xenstored: TestDaemon) -> None:
    async with open_client(xenstored.socket_path) as xs:
        await xs.introduce_domain(7)
        await xs.introduce_domain(8)
        assert await xs.is_domain_introduced(7)
        await xs.set_target(8, 7)
        await xs.resume_domain(7)
        await xs.release_domain(7)
        assert not await xs.is_domain_introduced(7)
        with pytest.raises(errors.ENOENT, match=r"^release_domain 99: ENOENT"):
            await xs.release_domain(99)


def test_watches_iterates_until_no_event_came_for_the_timeout(
    xenstored: TestDaemon, xs: Client
) -> None:
    with xenstored.client(timeout=10) as writer:
        events = xs.watches("/w", timeout=0.5)
        writer.write("/w/a", "1")
        writer.write("/w/b", "2")
        t0 = time.monotonic()
        seen = [event.path for event in events]
        waited = time.monotonic() - t0
        assert seen == ["/w", "/w/a", "/w/b"]
        assert 0.5 <= waited < 5
        # The watch went with the iteration: nothing more arrives.
        writer.write("/w/c", "3")
        with pytest.raises(TimeoutError):
            xs.read_watch(timeout=0.3)


def test_leaving_the_loop_removes_the_watch_and_keeps_the_others_events(
    xenstored: TestDaemon, xs: Client
) -> None:
    xs.watch("/other", "mine")
    with xenstored.client(timeout=10) as writer:
        writer.write("/other/x", "1")
        for event in xs.watches("/w", token="tok"):
            assert event == WatchEvent("/w", "tok")
            assert (event.path, event.token) == event
            break
        writer.write("/w/after", "1")
        # read_watch still has the other watch's events, and no more of /w's.
        assert xs.read_watch(timeout=5) == ("/other", "mine")
        assert xs.read_watch(timeout=5) == ("/other/x", "mine")
        with pytest.raises(TimeoutError, match=r"no watch event within 0\.3 s"):
            xs.read_watch(timeout=0.3)


def test_a_watch_refused_is_raised_where_it_is_asked_for(xs: Client) -> None:
    with pytest.raises(errors.EINVAL, match=r"^watch 'bad path'"):
        xs.watches("bad path", timeout=1)


def test_watches_without_a_timeout_waits_as_long_as_it_takes(
    xenstored: TestDaemon, xs: Client
) -> None:
    events = xs.watches("/w", depth=0)
    assert next(events).path == "/w"
    with xenstored.client(timeout=10) as writer:
        writer.write("/w/child", "not at depth 0")
        writer.write("/w", "itself")
    assert next(events).path == "/w"
    events.close()  # type: ignore[attr-defined]
