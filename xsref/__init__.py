"""Run Xen's own XenStore daemons, for comparing ours with them.

The reference daemons are the C ``xenstored`` ("c") and the OCaml
``oxenstored`` ("o") from Debian's ``xen-utils-4.17``. They normally need a Xen
hypervisor; :mod:`xsref.launcher` starts them on a plain Linux host
(as root) with a small preloaded library standing in for the hypervisor, each
in its own mount namespace so that several can run at once::

    from xsref import start
    with start("c", "/tmp/xsref") as daemon:
        Client(daemon.socket_path).read("/tool/xenstored")

``python -m xsref c|o DIR`` does the same from a shell.

This is development machinery (a C shim built at run time, root, Debian's
Xen packages), so it lives beside the ``xenstore`` package in a clone and is
not part of the installed wheel: run it from the repository's root, where the
tests, ``bench/`` and ``python -m xenstore.conformance --guest-rings`` find it.
"""

from xsref.launcher import (
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
