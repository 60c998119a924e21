"""DIRECTORY, DIRECTORY_PART and the generation count."""

from __future__ import annotations

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.protocol.ops import PAYLOAD_MAX, Op


def parts(caller: Caller, path: str) -> tuple[list[str], set[bytes]]:
    """List ``path`` by DIRECTORY_PART as libxenstore does; return names and generations."""
    listing = b""
    gens = set()
    while True:
        reply = caller.ok(Op.DIRECTORY_PART, path, str(len(listing)))
        assert len(reply) <= PAYLOAD_MAX
        gen, _, body = reply.partition(b"\0")
        gens.add(gen)
        listing += body
        if len(listing) <= 1 or listing[-2] == 0:
            return [n.decode() for n in listing[:-1].split(b"\0")[:-1]], gens


def test_children_keep_insertion_order() -> None:
    caller = Caller(Server())
    for name in ["zeta", "alpha", "mid", "beta"]:
        caller.write(f"/o/{name}", "")
    caller.ok(Op.RM, "/o/mid")
    caller.write("/o/mid", "")
    assert caller.directory("/o") == ["zeta", "alpha", "beta", "mid"]


def test_big_directories_need_directory_part() -> None:
    caller = Caller(Server())
    names = [f"node-{i:05d}-{'x' * 40}" for i in range(500)]
    for name in names:
        caller.write(f"/big/{name}", "")
    assert caller.error(Op.DIRECTORY, "/big") == "E2BIG"
    listed, gens = parts(caller, "/big")
    assert listed == names
    assert len(gens) == 1


def test_generation_changes_exactly_when_the_node_changes() -> None:
    caller = Caller(Server())
    caller.write("/g/a", "")

    def gen() -> bytes:
        return caller.ok(Op.DIRECTORY_PART, "/g", "0").partition(b"\0")[0]

    first = gen()
    caller.read("/g/a")
    caller.write("/other", "")
    assert gen() == first
    caller.write("/g/b", "")
    second = gen()
    assert second != first
    caller.write("/g/b", "deeper change")  # a child's value is not /g's change
    assert gen() == second
    caller.set_perms("/g", "n0", "r1")
    assert gen() != second


def test_empty_and_past_the_end() -> None:
    caller = Caller(Server())
    caller.write("/e", "")
    assert caller.ok(Op.DIRECTORY, "/e") == b""
    assert caller.ok(Op.DIRECTORY_PART, "/e", "0").endswith(b"\0\0")
    assert caller.ok(Op.DIRECTORY_PART, "/tool", "99").endswith(b"\0\0")
