"""Run Xen's own XenStore daemons, for comparing ours with them.

The reference daemons are the C ``xenstored`` ("c") and the OCaml
``oxenstored`` ("o") from Debian's ``xen-utils-4.17``. They normally need a Xen
hypervisor; :mod:`xenstore.reference.launcher` starts them on a plain Linux host
(as root) with a small preloaded library standing in for the hypervisor, each
in its own mount namespace so that several can run at once::

    from xenstore.reference import start
    with start("c", "/tmp/xsref") as daemon:
        Client(daemon.socket_path).read("/tool/xenstored")

``python -m xenstore.reference c|o DIR`` does the same from a shell.
"""

from xenstore.reference.launcher import (
    KINDS,
    ReferenceDaemon,
    ReferenceStartError,
    ReferenceUnavailable,
    check_available,
    start,
)

__all__ = [
    "KINDS",
    "ReferenceDaemon",
    "ReferenceStartError",
    "ReferenceUnavailable",
    "check_available",
    "start",
]
