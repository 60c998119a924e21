"""Random writes, mkdirs, removals and perms changes: events equal a plain model's.

The model is deliberately naive: a dict of nodes, a list of watches scanned in
full for every change, the documented rules written out directly. The core's
indexed matching, ordering and permission filtering must agree with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Send
from xenstore.protocol.ops import Op

GUEST = 5
PATHS = ["/a", "/a/b", "/a/b/c", "/a/d", "/e", "/e/f", "/a/b/c/g"]
PERMS = [("n0",), ("r0",), ("n0", "r5"), ("n5",), ("b0", "n5")]


def readable(perms: tuple[str, ...], domid: int) -> bool:
    owner = int(perms[0][1:])
    if owner == domid:
        return True
    for entry in perms[1:]:
        if int(entry[1:]) == domid:
            return entry[0] in "rb"
    return perms[0][0] in "rb"


def is_within(path: str, top: str, depth: int | None) -> bool:
    if top == "/":
        below = path.count("/") if path != "/" else 0
    elif path == top:
        below = 0
    elif path.startswith(top + "/"):
        below = path[len(top):].count("/")
    else:
        return False
    return depth is None or below <= depth


@dataclass
class Model:
    nodes: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "/": ("n0",), "/tool": ("n0",), "/tool/xenstored": ("n0",)})
    children: dict[str, list[str]] = field(default_factory=lambda: {
        "/": ["/tool"], "/tool": ["/tool/xenstored"], "/tool/xenstored": []})
    # (watcher, path, token, depth) in registration order; watcher 0 is dom0, 1 the guest
    watches: list[tuple[int, str, str, int | None]] = field(default_factory=list)

    @staticmethod
    def parent(path: str) -> str:
        return path.rsplit("/", 1)[0] or "/"

    def create(self, path: str) -> None:
        if path in self.nodes:
            return
        above = self.parent(path)
        self.create(above)
        self.nodes[path] = self.nodes[above]
        self.children[path] = []
        self.children[above].append(path)

    def fire(self, path: str, judged: list[tuple[str, ...]],
             exact: bool = False) -> list[tuple[int, str, str]]:
        out = []
        for watcher in (0, 1):
            for who, wpath, token, depth in self.watches:
                if who != watcher:
                    continue
                hit = wpath == path if exact else is_within(path, wpath, depth)
                if hit and (watcher == 0 or any(readable(p, GUEST) for p in judged)):
                    out.append((watcher, path, token))
        return out

    def write(self, path: str) -> list[tuple[int, str, str]]:
        self.create(path)
        return self.fire(path, [self.nodes[path], self.nodes[self.parent(path)]])

    def mkdir(self, path: str) -> list[tuple[int, str, str]]:
        return [] if path in self.nodes else self.write(path)

    def set_perms(self, path: str, perms: tuple[str, ...]) -> list[tuple[int, str, str]]:
        if path not in self.nodes:
            return []
        old, self.nodes[path] = self.nodes[path], perms
        return self.fire(path, [old, perms, self.nodes[self.parent(path)]])

    def rm(self, path: str) -> list[tuple[int, str, str]]:
        if path not in self.nodes:
            return []
        order: list[str] = []

        def post(node: str) -> None:
            for kid in self.children[node]:
                post(kid)
            order.append(node)

        post(path)
        judged = {n: [self.nodes[n], self.nodes[self.parent(n)]] for n in order}
        out = []
        for gone in order[:-1]:
            out += self.fire(gone, judged[gone], exact=True)
        out += self.fire(path, judged[path])
        for gone in order:
            del self.nodes[gone], self.children[gone]
        self.children[self.parent(path)].remove(path)
        return out


actions = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(PATHS)),
    st.tuples(st.just("mkdir"), st.sampled_from(PATHS)),
    st.tuples(st.just("rm"), st.sampled_from(PATHS)),
    st.tuples(st.just("perms"), st.sampled_from(PATHS), st.sampled_from(PERMS)),
    st.tuples(st.just("watch"), st.integers(0, 1), st.sampled_from(["/", *PATHS]),
              st.sampled_from([None, 0, 1, 2])),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(actions, max_size=30))
def test_events_match_the_model(script: list[tuple]) -> None:  # type: ignore[type-arg]
    server = Server()
    dom0 = Caller(server)
    guest = Caller(server, domid=GUEST, privileged=False)
    callers = {dom0.conn_id: 0, guest.conn_id: 1}
    model = Model()
    for number, action in enumerate(script):
        kind = action[0]
        if kind == "watch":
            _, who, wpath, depth = action
            token = f"t{number}"
            fields = [wpath, token] if depth is None else [wpath, token, str(depth)]
            (guest if who else dom0).ok(Op.WATCH, *fields)
            model.watches.append((who, wpath, token, depth))
            continue
        path = action[1]
        if kind == "write":
            dom0.write(path, "v")
            expected = model.write(path)
        elif kind == "mkdir":
            dom0.ok(Op.MKDIR, path)
            expected = model.mkdir(path)
        elif kind == "rm" and model.parent(path) in model.nodes:
            dom0.ok(Op.RM, path)
            expected = model.rm(path)
        elif kind == "perms" and path in model.nodes:
            dom0.set_perms(path, *action[2])
            expected = model.set_perms(path, action[2])
        else:  # removing below a missing parent, or perms of a missing node
            continue
        got = []
        for effect in dom0.effects:
            if isinstance(effect, Send) and effect.packet.op == Op.WATCH_EVENT:
                epath, token, _ = effect.packet.payload.decode().split("\0")
                got.append((callers[effect.conn_id], epath, token))
        assert got == expected, (number, action)
