"""Wire numbers and limits from xs_wire.h."""

from __future__ import annotations

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
