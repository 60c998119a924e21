"""Drive the pure core with plain calls: no sockets, no trio."""

from __future__ import annotations

from xenstore.daemon.core import Server
from xenstore.daemon.effects import Effect, Send
from xenstore.protocol.codec import Packet, join
from xenstore.protocol.ops import Op


class Caller:
    """One connection to a :class:`Server`, speaking in (op, payload) pairs."""

    def __init__(self, server: Server, domid: int = 0, privileged: bool = True) -> None:
        self.server = server
        self.conn_id = server.connect(domid, privileged)
        self.effects: list[Effect] = []

    def request(self, op: Op, payload: bytes, tx: int = 0) -> tuple[str, bytes]:
        self.effects = self.server.handle(self.conn_id, Packet(op, 1, tx, payload))
        (reply,) = [
            e.packet for e in self.effects
            if isinstance(e, Send) and e.conn_id == self.conn_id and e.packet.op != Op.WATCH_EVENT
        ]
        assert (reply.req_id, reply.tx_id) == (1, tx)
        if reply.op == Op.ERROR:
            return "ERROR", reply.payload.rstrip(b"\0")
        assert reply.op == op
        return "OK", reply.payload

    def ok(self, op: Op, *fields: str | bytes, tx: int = 0) -> bytes:
        status, payload = self.request(op, join(*fields), tx)
        assert status == "OK", (op, fields, payload)
        return payload

    def error(self, op: Op, *fields: str | bytes, tx: int = 0) -> str:
        status, payload = self.request(op, join(*fields), tx)
        assert status == "ERROR", (op, fields, payload)
        return payload.decode()

    # shorthands
    def read(self, path: str, tx: int = 0) -> bytes:
        return self.ok(Op.READ, path, tx=tx)

    def write(self, path: str, value: bytes | str, tx: int = 0) -> None:
        data = value.encode() if isinstance(value, str) else value
        status, payload = self.request(Op.WRITE, path.encode() + b"\0" + data, tx)
        assert status == "OK", (path, payload)

    def directory(self, path: str, tx: int = 0) -> list[str]:
        return [n.decode() for n in self.ok(Op.DIRECTORY, path, tx=tx).split(b"\0")[:-1]]

    def set_perms(self, path: str, *perms: str, tx: int = 0) -> None:
        self.ok(Op.SET_PERMS, path, *perms, tx=tx)

    def get_perms(self, path: str) -> list[str]:
        return [p.decode() for p in self.ok(Op.GET_PERMS, path).split(b"\0")[:-1]]

    def start(self) -> int:
        return int(self.ok(Op.TRANSACTION_START, "").rstrip(b"\0"))

    def end(self, tx: int, commit: bool = True) -> bytes:
        return self.ok(Op.TRANSACTION_END, "T" if commit else "F", tx=tx)
