"""The hypervisor of the simulated host: domains, their states, memory, vCPUs and CPU time.

What Xen itself keeps about a domain, as ``xl list`` and ``xl info`` show it:
a domain id (from 1, never reused while the host runs, as Xen's counter goes
up), a uuid, a state (running, paused, shut down with a reason, dying), the
memory it holds and may hold, its vCPUs, and the CPU time it has used, which
advances while it runs. Memory is accounted against the host's total: a domain
that does not fit is refused, as Xen refuses an allocation. No store, no I/O:
the host drives this and writes the store.

The clock is passed in, so the accounting is testable without waiting.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: What a running guest uses of a vCPU on average (an idle laptop guest).
GUEST_LOAD = 0.02
DOMID_FIRST_RESERVED = 0x7FF0


class LabError(Exception):
    """A request the simulated host refuses; ``str`` is the message xl would print."""


class RunState(enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    DYING = "dying"


class ShutdownReason(enum.Enum):
    """SHUTDOWN_* of Xen's sched.h, as a guest reports it."""

    POWEROFF = "poweroff"
    REBOOT = "reboot"
    SUSPEND = "suspend"
    CRASH = "crash"


#: xl list's fifth State letter for each shutdown reason.
REASON_LETTERS = {ShutdownReason.POWEROFF: "-", ShutdownReason.REBOOT: "r",
                  ShutdownReason.SUSPEND: "s", ShutdownReason.CRASH: "c"}


@dataclass(slots=True, eq=False)
class Domain:
    domid: int
    name: str
    uuid: str
    type: str
    memory_kib: int
    maxmem_kib: int
    vcpus: int
    max_vcpus: int
    created: float
    state: RunState = RunState.RUNNING
    shutdown_reason: ShutdownReason | None = None
    #: CPU seconds used up to ``since``, and when it last started running.
    cpu_seconds: float = 0.0
    since: float = 0.0
    #: Anything the host keeps with the domain (its config, its devices...).
    extra: dict[str, object] = field(default_factory=dict)

    def cpu_time(self, now: float) -> float:
        if self.state is RunState.RUNNING:
            return self.cpu_seconds + (now - self.since) * self.vcpus * GUEST_LOAD
        return self.cpu_seconds

    def flags(self) -> str:
        """``xl list``'s State column: r running, b blocked, p paused, s shutdown (and
        its reason: r reboot, s suspend, c crash), d dying; a running guest idles, so it
        shows blocked."""
        letters = ["-"] * 6
        if self.domid == 0:
            letters[0] = "r"  # dom0 is the one running the toolstack
        elif self.state is RunState.RUNNING:
            letters[1] = "b"
        elif self.state is RunState.PAUSED:
            letters[2] = "p"
        elif self.state is RunState.SHUTDOWN:
            # xl: "s", then the reason's letter from "-rscwS" (poweroff shows none).
            letters[3] = "s"
            letters[4] = REASON_LETTERS[self.shutdown_reason or ShutdownReason.POWEROFF]
        else:
            letters[5] = "d"
        return "".join(letters)


class Xen:
    """The simulated hypervisor: ``total_kib`` of memory and ``cpus`` physical CPUs.

    Domain 0 exists from the start with ``dom0_kib`` of memory.
    """

    def __init__(self, total_kib: int = 16 << 20, cpus: int = 4, dom0_kib: int = 2 << 20,
                 clock: Callable[[], float] = time.time) -> None:
        self.total_kib = total_kib
        self.cpus = cpus
        self.clock = clock
        self.booted = clock()
        self._next_domid = 1
        dom0 = Domain(0, "Domain-0", "00000000-0000-0000-0000-000000000000", "pv",
                      dom0_kib, dom0_kib, min(cpus, 4), min(cpus, 4), self.booted,
                      since=self.booted)
        self.domains: dict[int, Domain] = {0: dom0}

    # -- accounting --------------------------------------------------------------

    @property
    def free_kib(self) -> int:
        return self.total_kib - sum(d.memory_kib for d in self.domains.values())

    def domain(self, domid: int) -> Domain:
        try:
            return self.domains[domid]
        except KeyError:
            raise LabError(f"Domain {domid} does not exist.") from None

    def find(self, name_or_id: str) -> Domain:
        """A domain by name or domid, as xl takes either."""
        if name_or_id.isdigit():
            return self.domain(int(name_or_id))
        for domain in self.domains.values():
            if domain.name == name_or_id:
                return domain
        raise LabError(f"{name_or_id} is an invalid domain identifier (rc=-6)")

    # -- lifecycle -----------------------------------------------------------------

    def create(self, name: str, uuid: str, type_: str, memory_kib: int, maxmem_kib: int,
               vcpus: int, max_vcpus: int, *, domid: int | None = None) -> Domain:
        """A new domain, running. Refused if the name is taken or memory is short."""
        if any(d.name == name for d in self.domains.values()):
            raise LabError(f'domain with name "{name}" already exists.')
        if memory_kib > self.free_kib:
            raise LabError(f"failed to free memory for the domain: it needs {memory_kib} KiB, "
                           f"the host has {self.free_kib} KiB free")
        if vcpus > max_vcpus:
            raise LabError(f"vcpus ({vcpus}) must not exceed maxvcpus ({max_vcpus})")
        if domid is None:
            domid = self._allocate()
        now = self.clock()
        domain = Domain(domid, name, uuid, type_, memory_kib, max(maxmem_kib, memory_kib),
                        vcpus, max_vcpus, now, since=now)
        self.domains[domid] = domain
        return domain

    def _allocate(self) -> int:
        # Xen hands out the next id up, wrapping below the reserved ids, skipping used ones.
        for _ in range(DOMID_FIRST_RESERVED):
            domid = self._next_domid
            self._next_domid = domid + 1 if domid + 1 < DOMID_FIRST_RESERVED else 1
            if domid not in self.domains:
                return domid
        raise LabError("no free domain id")

    def _stop_clock(self, domain: Domain) -> None:
        domain.cpu_seconds = domain.cpu_time(self.clock())

    def pause(self, domid: int) -> None:
        domain = self._guest(domid)
        if domain.state is RunState.RUNNING:
            self._stop_clock(domain)
            domain.state = RunState.PAUSED

    def unpause(self, domid: int) -> None:
        domain = self._guest(domid)
        if domain.state is RunState.PAUSED:
            domain.since = self.clock()
            domain.state = RunState.RUNNING

    def shutdown(self, domid: int, reason: ShutdownReason) -> Domain:
        """The guest shut itself down (SCHEDOP_shutdown): it stops running, keeps its memory."""
        domain = self._guest(domid)
        self._stop_clock(domain)
        domain.state = RunState.SHUTDOWN
        domain.shutdown_reason = reason
        return domain

    def destroy(self, domid: int) -> Domain:
        """The domain is gone; its memory returns to the host."""
        domain = self._guest(domid)
        self._stop_clock(domain)
        domain.state = RunState.DYING
        del self.domains[domid]
        return domain

    def set_memory(self, domid: int, memory_kib: int) -> None:
        """The balloon driver reached ``memory_kib`` (what the guest holds now)."""
        domain = self.domain(domid)
        grow = memory_kib - domain.memory_kib
        if grow > self.free_kib:
            memory_kib = domain.memory_kib + self.free_kib  # it gets what there is
        domain.memory_kib = min(memory_kib, domain.maxmem_kib)

    def set_maxmem(self, domid: int, maxmem_kib: int) -> None:
        self.domain(domid).maxmem_kib = maxmem_kib

    def set_vcpus(self, domid: int, vcpus: int) -> None:
        domain = self.domain(domid)
        if not 1 <= vcpus <= domain.max_vcpus:
            raise LabError(f"Requested vcpus ({vcpus}) outside 1..{domain.max_vcpus} "
                           "(maxvcpus)")
        self._stop_clock(domain)
        domain.since = self.clock()
        domain.vcpus = vcpus

    def _guest(self, domid: int) -> Domain:
        if domid == 0:
            raise LabError("Domain 0 cannot be changed this way")
        return self.domain(domid)

    # -- what xl info shows ------------------------------------------------------

    def info(self) -> dict[str, object]:
        return {
            "nr_cpus": self.cpus,
            "total_memory": self.total_kib // 1024,
            "free_memory": self.free_kib // 1024,
            "uptime": self.clock() - self.booted,
        }
