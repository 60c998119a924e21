"""A conformance kit: wire-level scenarios run against any xenstored.

The corpus (``corpus/*.txt``, one file per category) was recorded from Xen's C
xenstored 4.17. ``xenstore-conformance SOCKET`` replays it against a daemon
and compares every reply, error, watch event and connection close with the
recording, or with a live reference daemon (``--ref SOCKET``). Steps where our
daemon deliberately differs are marked in the corpus with the reason.
"""
