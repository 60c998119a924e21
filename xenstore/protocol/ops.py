"""Wire numbers and limits from xs_wire.h, and the one table of what each op is.

:data:`OPS` says, per op, what every part of the daemon needs to know of it: its
name, whether only privileged callers may send it (cxenstored's XS_FLAG_PRIV),
whether the header's tx_id names a transaction (not for WATCH and UNWATCH,
XS_FLAG_NOTID), and whether it counts as a write for a guest's write rate. The
core, the shell, the trace and the monitor all read it.
"""

from __future__ import annotations

from collections import namedtuple
from enum import IntEnum


class Op(IntEnum):
    """``enum xsd_sockmsg_type``: the type field of every message header."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    # 20 was XS_RESTRICT, removed from the protocol.
    RESET_WATCHES = 21
    DIRECTORY_PART = 22
    GET_FEATURE = 23
    SET_FEATURE = 24
    GET_QUOTA = 25
    SET_QUOTA = 26


#: XENSTORE_PAYLOAD_MAX: the largest payload in either direction.
PAYLOAD_MAX = 4096
#: XENSTORE_ABS_PATH_MAX and XENSTORE_REL_PATH_MAX.
ABS_PATH_MAX = 3072
REL_PATH_MAX = 2048
#: Size of ``struct xsd_sockmsg``: type, req_id, tx_id, len as little-endian u32.
HEADER_SIZE = 16


# A namedtuple, declared as typing's NamedTuple for the type checker only: importing
# typing would cost every CLI tool a third of its start-up (tests/protocol/test_imports.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    class OpSpec(NamedTuple):
        name: str
        #: Only privileged callers may send it (EACCES otherwise).
        privileged: bool = False
        #: The header's tx_id names the caller's transaction (ENOENT if it has none such).
        in_transaction: bool = True
        #: It counts against a guest's write rate, as cxenstored counts writes.
        writes: bool = False
else:
    OpSpec = namedtuple("OpSpec", ["name", "privileged", "in_transaction", "writes"],
                        defaults=[False, True, False])


_PRIVILEGED = (Op.CONTROL, Op.INTRODUCE, Op.RELEASE, Op.IS_DOMAIN_INTRODUCED, Op.RESUME,
               Op.SET_TARGET, Op.GET_FEATURE, Op.SET_FEATURE, Op.GET_QUOTA, Op.SET_QUOTA)
_NO_TRANSACTION = (Op.WATCH, Op.UNWATCH)
_WRITES = (Op.WRITE, Op.MKDIR, Op.RM, Op.SET_PERMS, Op.TRANSACTION_END)

#: Every op of the protocol, by wire number.
OPS: dict[int, OpSpec] = {
    op.value: OpSpec(op.name, op in _PRIVILEGED, op not in _NO_TRANSACTION, op in _WRITES)
    for op in Op
}


def op_name(op: int) -> str:
    """The op's name, or ``op <n>`` for a number the protocol does not have."""
    spec = OPS.get(op)
    return spec.name if spec is not None else f"op {op}"
