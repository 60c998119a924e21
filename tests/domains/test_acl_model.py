"""Random ACLs and callers: the core's allow/deny decisions against a model of the rules.

The model is written from the rules as documented (README, cxenstored 4.17), not
from the code: an unprivileged domain D (possibly acting for a target T) has,
on a node with perms [owner/default, entries...],
- everything if the owner is D or T;
- else the access of the first entry naming D or T (one walk, as cxenstored's
  perm_for_conn: ``n0 r9 w5`` gives domain 5 with target 9 read only);
- else the owner entry's access, which is the default for everyone else.
A missing node is ENOENT only if its nearest existing ancestor grants D the
access the request asked for (read to read; write to write, create or remove),
else EACCES (EACCES hides existence); so creating needs write access (only)
to the nearest existing ancestor. SET_PERMS needs ownership (EACCES), and only
dom0 may change the owner (EPERM). (cxenstored 4.17, observed on its rings.)
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.protocol.ops import Op

DOMAINS = [0, 5, 6, 7]
LETTERS = "nrwb"
TREE = ["/t", "/t/a", "/t/a/x", "/t/b", "/t/b/y"]
PROBES = [*TREE, "/t/missing", "/t/a/missing", "/t/b/y/missing/deeper", "/t/a/x/new"]

perms_strategy = st.tuples(
    st.sampled_from(DOMAINS), st.sampled_from(LETTERS),
    st.lists(st.tuples(st.sampled_from(DOMAINS), st.sampled_from(LETTERS)), max_size=3),
)


def access(perms: list[str], me: int, target: int | None) -> set[str]:
    owner = int(perms[0][1:])
    if owner in (me, target):
        return {"r", "w", "own"}
    for entry in perms[1:]:
        if int(entry[1:]) in (me, target):
            return {"n": set(), "r": {"r"}, "w": {"w"}, "b": {"r", "w"}}[entry[0]]
    return {"n": set(), "r": {"r"}, "w": {"w"}, "b": {"r", "w"}}[perms[0][0]]


def nearest(tree: dict[str, list[str]], path: str) -> str:
    while path not in tree:
        path = path.rsplit("/", 1)[0] or "/"
    return path


def expect(tree: dict[str, list[str]], op: str, path: str, me: int,
           target: int | None) -> str:
    def can(p: str, what: str) -> bool:
        return what in access(tree[p], me, target)

    if path not in tree:
        above = nearest(tree, path)
        if op in ("write", "mkdir"):
            return "OK" if can(above, "w") else "EACCES"
        if op == "rm":
            if not can(above, "w"):
                return "EACCES"
            return "OK" if path.rsplit("/", 1)[0] in tree else "ENOENT"
        if op.startswith("set_perms"):
            return "ENOENT" if can(above, "w") else "EACCES"
        return "ENOENT" if can(above, "r") else "EACCES"
    if op in ("read", "get_perms", "directory"):
        return "OK" if can(path, "r") else "EACCES"
    if op in ("write", "mkdir", "rm"):
        return "OK" if can(path, "w") else "EACCES"
    assert op in ("set_perms_same_owner", "set_perms_new_owner")
    if not (can(path, "w") and can(path, "own")):
        return "EACCES"
    return "OK" if op == "set_perms_same_owner" else "EPERM"


@settings(max_examples=300, deadline=None)
@given(
    acls=st.fixed_dictionaries({p: perms_strategy for p in TREE}),
    me=st.sampled_from([5, 6]),
    target=st.sampled_from([None, 7]),
    probes=st.lists(st.tuples(
        st.sampled_from(["read", "get_perms", "directory", "write", "mkdir", "rm",
                         "set_perms_same_owner", "set_perms_new_owner"]),
        st.sampled_from(PROBES)), min_size=1, max_size=8),
)
def test_decisions_match_the_model(
    acls: dict[str, tuple[int, str, list[tuple[int, str]]]],
    me: int, target: int | None, probes: list[tuple[str, str]],
) -> None:
    server = Server()
    dom0 = Caller(server)
    tree: dict[str, list[str]] = {"/": ["n0"]}
    for path in TREE:
        owner, default, entries = acls[path]
        perms = [f"{default}{owner}", *(f"{letter}{who}" for who, letter in entries)]
        dom0.write(path, "v")
        dom0.set_perms(path, *perms)
        tree[path] = perms
    guest = Caller(server, me, privileged=False)
    server.connections[guest.conn_id].target = target
    for op, path in probes:
        expected = expect(tree, op, path, me, target)
        if op == "write":
            status, payload = guest.request(Op.WRITE, path.encode() + b"\0new")
        elif op.startswith("set_perms"):
            owner = int(tree[path][0][1:]) if path in tree else 0
            new_owner = owner if op == "set_perms_same_owner" else owner + 1
            status, payload = guest.request(Op.SET_PERMS, f"{path}\0n{new_owner}\0r0\0".encode())
        else:
            wire = {"read": Op.READ, "get_perms": Op.GET_PERMS, "directory": Op.DIRECTORY,
                    "mkdir": Op.MKDIR, "rm": Op.RM}[op]
            status, payload = guest.request(wire, path.encode() + b"\0")
        got = "OK" if status == "OK" else payload.decode()
        assert got == expected, (op, path, tree, me, target)
        if got == "OK":  # keep the model in step with what the guest changed
            if op in ("write", "mkdir") and path not in tree:
                above = nearest(tree, path)
                inherited = [f"{tree[above][0][0]}{me}", *tree[above][1:]]  # it owns them
                while path not in tree:
                    missing = path
                    while missing.rsplit("/", 1)[0] not in tree:
                        missing = missing.rsplit("/", 1)[0]
                    tree[missing] = inherited
            elif op == "rm" and path in tree:
                for gone in [p for p in tree if p == path or p.startswith(path + "/")]:
                    del tree[gone]
            elif op == "set_perms_same_owner":
                tree[path] = [f"n{int(tree[path][0][1:])}", "r0"]
