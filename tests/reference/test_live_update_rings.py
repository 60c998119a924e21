"""C → ours with an introduced guest: its shared ring cannot be handed over.

The domain stays introduced without a live ring (a warning names it once),
IS_DOMAIN_INTRODUCED says so, and releasing it tells ``@releaseDomain``'s watchers.
"""

from __future__ import annotations

from tests.reference.liveupdate import live_update, to_ours
from xenstore.client import Client
from xsref import launcher


def test_an_introduced_guest_stays_introduced_without_its_ring(
        ref_daemon: launcher.ReferenceDaemon) -> None:
    wrapper = to_ours(ref_daemon.directory)
    with Client(ref_daemon.socket_path) as tool, Client(ref_daemon.socket_path) as watcher:
        tool.introduce_domain(5)
        assert tool.is_domain_introduced(5)
        live_update(ref_daemon.socket_path, wrapper, ref_daemon.running,
                     ref_daemon.stderr_text)
        said = ref_daemon.stderr_text()
        assert said.count("domain 5's shared ring is not carried over") == 1, said
        assert tool.is_domain_introduced(5)
        watcher.watch("@releaseDomain", "rel")
        assert watcher.read_watch(timeout=5) == ("@releaseDomain", "rel")  # its first
        tool.release_domain(5)
        assert watcher.read_watch(timeout=5)[1] == "rel"
        assert not tool.is_domain_introduced(5)
