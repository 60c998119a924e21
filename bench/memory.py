"""Memory and core speed of a Xen-host-shaped store, in-process (issue 17).

Populates a core :class:`~xenstore.daemon.core.Server` with ``xsbench.c``'s ``scale``
shape (62 WRITEs a domain, through ``Server.handle`` as the daemon makes them) for D
domains, then reports the process's RSS (VmRSS), the bytes tracemalloc counts per node,
and the core's time for a READ and a WRITE of an existing node (``timeit``, best of
rounds). No sockets, no root, no reference daemon::

    python -m bench.memory --domains 1000
    python -m bench.memory --domains 10000 --no-tracemalloc   # RSS alone, faster

RSS is measured in a run without tracemalloc (it costs memory of its own): with
tracemalloc on, the report gives its bytes per node and leaves RSS out.
"""

from __future__ import annotations

import argparse
import gc
import time
import timeit
import tracemalloc

from xenstore.daemon.core import Server
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op

#: xsbench.c's DOMAIN_SHAPE: (path relative to the domain's home, value); "B:" paths
#: go under dom0's backend directory; every %d is the domid.
SHAPE = (
    ("name", "guest-%d"), ("vm", "/vm/00000000-0000-0000-0000-%012d"),
    ("memory/static-max", "2097152"), ("memory/target", "2097152"),
    ("memory/videoram", "-1"), ("cpu/0/availability", "online"),
    ("cpu/1/availability", "online"), ("control/shutdown", ""),
    ("control/feature-poweroff", "1"), ("control/feature-reboot", "1"),
    ("control/feature-suspend", "1"), ("control/platform-feature-multiprocessor-suspend", "1"),
    ("console/ring-ref", "1044476"), ("console/port", "2"),
    ("console/type", "xenconsoled"), ("console/backend-id", "0"),
    ("console/backend", "/local/domain/0/backend/console/%d/0"),
    ("data/updated", "1"), ("drivers/0", "Linux 6.1.0"), ("attr/os", "linux"),
    ("device/vif/0/backend", "/local/domain/0/backend/vif/%d/0"),
    ("device/vif/0/backend-id", "0"), ("device/vif/0/state", "4"),
    ("device/vif/0/handle", "0"), ("device/vif/0/mac", "00:16:3e:00:00:01"),
    ("device/vif/0/tx-ring-ref", "8"), ("device/vif/0/rx-ring-ref", "9"),
    ("device/vif/0/event-channel", "10"), ("device/vif/0/request-rx-copy", "1"),
    ("device/vif/0/feature-sg", "1"),
    ("device/vbd/51712/backend", "/local/domain/0/backend/vbd/%d/51712"),
    ("device/vbd/51712/backend-id", "0"), ("device/vbd/51712/state", "4"),
    ("device/vbd/51712/virtual-device", "51712"), ("device/vbd/51712/device-type", "disk"),
    ("device/vbd/51712/ring-ref", "11"), ("device/vbd/51712/event-channel", "12"),
    ("device/vbd/51712/protocol", "x86_64-abi"),
    ("B:vif/%d/0/frontend", "/local/domain/%d/device/vif/0"),
    ("B:vif/%d/0/frontend-id", "%d"), ("B:vif/%d/0/online", "1"),
    ("B:vif/%d/0/state", "4"), ("B:vif/%d/0/script", "/etc/xen/scripts/vif-bridge"),
    ("B:vif/%d/0/mac", "00:16:3e:00:00:01"), ("B:vif/%d/0/bridge", "xenbr0"),
    ("B:vif/%d/0/handle", "0"), ("B:vif/%d/0/type", "vif"),
    ("B:vif/%d/0/hotplug-status", "connected"), ("B:vif/%d/0/feature-sg", "1"),
    ("B:vbd/%d/51712/frontend", "/local/domain/%d/device/vbd/51712"),
    ("B:vbd/%d/51712/frontend-id", "%d"), ("B:vbd/%d/51712/online", "1"),
    ("B:vbd/%d/51712/state", "4"), ("B:vbd/%d/51712/params", "/dev/vg0/guest-%d"),
    ("B:vbd/%d/51712/type", "phy"), ("B:vbd/%d/51712/mode", "w"),
    ("B:vbd/%d/51712/device-type", "disk"), ("B:vbd/%d/51712/physical-device", "fe:%d"),
    ("B:vbd/%d/51712/dev", "xvda"), ("B:vbd/%d/51712/removable", "0"),
    ("B:vbd/%d/51712/feature-flush-cache", "1"), ("B:vbd/%d/51712/hotplug-status", "connected"),
)
assert len(SHAPE) == 62


def fill(template: str, domid: int) -> str:
    return template.replace("%012d", f"{domid:012d}").replace("%d", str(domid))


def domain_writes(domid: int) -> list[bytes]:
    """The WRITE payloads (``path\\0value``) of one domain, in xsbench's order."""
    out = []
    for key, value in SHAPE:
        if key.startswith("B:"):
            path = "/local/domain/0/backend/" + fill(key[2:], domid)
        else:
            path = f"/local/domain/{domid}/{fill(key, domid)}"
        out.append(path.encode() + b"\0" + fill(value, domid).encode())
    return out


def populate(server: Server, conn: int, domains: int) -> None:
    handle = server.handle
    for domid in range(1, domains + 1):
        for payload in domain_writes(domid):
            handle(conn, Packet(Op.WRITE, 1, 0, payload))


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def core_us(server: Server, conn: int, packet: Packet, rounds: int = 5,
            number: int = 20000) -> float:
    """Best per-call microseconds of ``Server.handle(packet)`` over ``rounds``, in
    this process's CPU time (a shared machine's other load does not count)."""
    handle = server.handle
    times = timeit.repeat(lambda: handle(conn, packet), number=number, repeat=rounds,
                          timer=time.process_time)
    return min(times) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--domains", "-d", type=int, default=1000)
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="measure RSS only (tracemalloc costs memory and time)")
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()

    gc.collect()
    base_rss = rss_mib()
    traced = not args.no_tracemalloc
    if traced:
        tracemalloc.start()
    server = Server()
    conn = server.connect(0, True)
    base = tracemalloc.get_traced_memory()[0] if traced else 0
    populate(server, conn, args.domains)
    gc.collect()
    nodes = len(server.store)
    print(f"domains {args.domains}, nodes {nodes}")
    if traced:
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        print(f"tracemalloc {held / 2**20:.1f} MiB, {held / nodes:.0f} B/node")
    else:
        rss = rss_mib()
        print(f"RSS {rss:.1f} MiB ({base_rss:.1f} before populating), "
              f"{(rss - base_rss) * 2**20 / nodes:.0f} B/node populated")
    if args.no_timing:
        return
    home = f"/local/domain/{args.domains // 2}"
    read = Packet(Op.READ, 1, 0, f"{home}/device/vif/0/state\0".encode())
    write = Packet(Op.WRITE, 1, 0, f"{home}/device/vif/0/state\0".encode() + b"4")
    dir_read = Packet(Op.READ, 1, 0, f"{home}/device/vif/0\0".encode())
    directory = Packet(Op.DIRECTORY, 1, 0, f"{home}/device/vif/0\0".encode())
    for name, packet in (("READ", read), ("READ dir", dir_read), ("WRITE", write),
                         ("DIRECTORY", directory)):
        print(f"core {name}: {core_us(server, conn, packet):.3f} us")


if __name__ == "__main__":
    main()
