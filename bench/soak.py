#!/usr/bin/env python3
"""Soak: pyxenstored under mixed load for minutes; does it hold steady?

    python3 -m bench.soak [--minutes 10] [--seed N] [--period 60] [--json FILE]

Starts our daemon (with ``--domain-dir``) and three load processes against it: a
toolstack that introduces domains, lets a guest work in each through its socket
and releases them (often while the guest is mid-request); dom0 clients reading,
writing, listing and running transactions; and watchers (a fan-out subtree and
the two special watches). Every period (a minute) it records the daemon's RSS,
open descriptors and CPU, the load's CPU, the operations done, and the answer
time of probe READs from fresh dom0 connections. At the end: a table per period
and the verdict: the last period's RSS, descriptors and median probe at most 10 %
above the first's (the ratios are printed), the daemon alive, ``CONTROL check``
OK, every watch event delivered, no unexpected error, no alarming log line; exit
status 1 if any fails. The daemon it started is stopped by its pid. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from bench.daemons import Processes, python_env, raise_fd_limit, short_tempdir
from xenstore import errors
from xenstore.client import Client, ClientTransaction
from xenstore.protocol import requests
from xenstore.protocol.codec import Framer, encode_parts, join
from xenstore.protocol.ops import Op
from xenstore.testing import spawn

#: The verdict's bound: the last period at most this fraction above the first.
TOLERANCE = 0.10
#: A request unanswered this long means the daemon is wedged (an error, not a wait).
REQUEST_TIMEOUT = 30.0
#: Ceiling on the number of errors whose text is kept (all are counted).
ERROR_SAMPLES = 20
#: Daemon log lines that are findings whatever the load did.
ALARMING = re.compile(r"internal error|Traceback|again|cannot|failed|repair")
#: The load's shape. Rates are per second; every rate is scaled by --load.
GUESTS = 6  # domain slots, each with a guest while introduced
GUEST_RATE, GUEST_BURST = 300.0, 10  # a guest's steps (most send a few requests at once)
GUEST_LIFE = (1.0, 5.0)  # seconds from INTRODUCE to RELEASE, uniform
DOM0_THREADS = 2  # blocking clients (xenstore.client.Client), one request at a time
DOM0_RATE, DOM0_BURST = 400.0, 20  # each one's steps
BULK_RATE, BULK_BATCH = 5000.0, 16  # dom0 requests sent in batches (one raw connection)
FAN_RATE, FAN_BURST = 100.0, 5  # writes below /soak/fan, each an event to every fan watcher
POKE_RATE = 20.0  # the toolstack's writes to a live domain's memory/target
FAN_WATCHERS = 128
SPECIAL_WATCHERS = 8  # on @introduceDomain, and as many on @releaseDomain
DATA_DIRS, DATA_KEYS = 20, 10  # /soak/data/d<i>/k<j>
#: Domids count up from 1 and wrap before the reserved ids, as Xen's do: a domid comes
#: back only after 32,000 domains, so state a released domain leaves behind accumulates
#: (with ids reused every few minutes, such a leak would level off and hide).
DOMID_FIRST, DOMID_SPAN = 1, 32000


# --------------------------------------------------------------------------------------
# Shared pieces of the load processes


class Stats:
    """What a load process did: counters and unexpected errors (a few kept as text)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.errors = 0
        self.samples: list[str] = []

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def error(self, where: str, exc: BaseException | str) -> None:
        if isinstance(exc, str):
            text = exc
        else:  # where in the load it happened: the innermost frames of this file
            frames = [f"{f.name}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)
                      if f.filename == __file__]
            text = f"{type(exc).__name__}: {exc} (at {' < '.join(reversed(frames[-3:]))})"
        with self.lock:
            self.errors += 1
            if len(self.samples) < ERROR_SAMPLES:
                self.samples.append(f"{time.strftime('%H:%M:%S')} {where}: {text}")

    def snapshot(self, **extra: object) -> dict[str, object]:
        with self.lock:
            return {"counts": dict(self.counts), "errors": self.errors,
                    "samples": list(self.samples), **extra}


class Pacer:
    """Paces calls at ``rate`` a second in bursts of ``burst`` back-to-back calls.

    :meth:`wait` is False once ``stop`` is set. Bursts keep the load cheap: on a VM
    a wake-up from idle costs both sides tens of microseconds, so requests spaced
    evenly cost the generator as much CPU as the daemon (60 against 63 µs a READ,
    measured here), while requests in lock step cost it half (9.5 against 20).
    """

    def __init__(self, rate: float, stop: threading.Event, burst: int = 1) -> None:
        self.interval = burst / rate
        self.burst = burst
        self.left = 0
        self.stop = stop
        self.next = time.monotonic()

    def wait(self) -> bool:
        if self.left > 0:
            self.left -= 1
            return not self.stop.is_set()
        self.left = self.burst - 1
        self.next = max(self.next + self.interval, time.monotonic() - 1.0)  # no catch-up storm
        delay = self.next - time.monotonic()
        if delay > 0:
            return not self.stop.wait(delay)
        return not self.stop.is_set()


class Closed(ConnectionError):
    """The daemon closed the connection (expected for a guest whose domain was released)."""


def connect(path: str, timeout: float = REQUEST_TIMEOUT) -> socket.socket:
    """A connected socket; a full accept queue (EAGAIN: the connect of a socket with a
    timeout does not wait) is waited out, as libxenstore's blocking connect does."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)
        except BaseException:
            sock.close()
            raise


class Conn:
    """A raw connection: requests can be pipelined; watch events are counted, not kept."""

    def __init__(self, path: str, timeout: float = REQUEST_TIMEOUT) -> None:
        self.sock = connect(path, timeout)
        self.framer = Framer()
        self.replies: dict[int, tuple[int, bytes]] = {}
        self.events = 0
        self.req_id = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, *reqs: tuple[Op, bytes, int]) -> list[int]:
        """Send requests ``(op, payload, tx_id)`` in one write; their req_ids."""
        ids, data = [], []
        for op, payload, tx in reqs:
            self.req_id += 1
            ids.append(self.req_id)
            data.append(encode_parts(op, self.req_id, tx, payload))
        try:
            self.sock.sendall(b"".join(data))
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise Closed(str(exc)) from None
        return ids

    def feed(self) -> None:
        """Read once (blocking up to the timeout) and file what came."""
        try:
            data = self.sock.recv(1 << 16)
        except ConnectionResetError as exc:
            raise Closed(str(exc)) from None
        if not data:
            raise Closed("closed by the daemon")
        for packet in self.framer.feed(data):
            if packet.op == Op.WATCH_EVENT:
                self.events += 1
            else:
                self.replies[packet.req_id] = (packet.op, packet.payload)

    def reply(self, req_id: int) -> bytes:
        """The payload answering ``req_id``; its error raised."""
        while req_id not in self.replies:
            self.feed()
        op, payload = self.replies.pop(req_id)
        if op == Op.ERROR:
            raise requests.error_of(payload)
        return payload

    def call(self, op: Op, payload: bytes, tx: int = 0) -> bytes:
        return self.reply(self.send((op, payload, tx))[0])

    def pipeline(self, *reqs: tuple[Op, bytes, int],
                 allowed: tuple[type[errors.XenStoreError], ...] = ()) -> list[bytes | None]:
        """Send ``reqs`` in one write, then collect every reply: an error among
        ``allowed`` gives None; any other is raised once all replies are in."""
        results: list[bytes | None] = []
        unexpected: errors.XenStoreError | None = None
        for req_id in self.send(*reqs):
            try:
                results.append(self.reply(req_id))
            except allowed:
                results.append(None)
            except errors.XenStoreError as exc:
                results.append(None)
                unexpected = unexpected or exc
        if unexpected is not None:
            raise unexpected
        return results

    def close(self) -> None:
        self.sock.close()


def read_req(path: str, tx: int = 0) -> tuple[Op, bytes, int]:
    return Op.READ, join(path), tx


def write_req(path: str, value: str, tx: int = 0) -> tuple[Op, bytes, int]:
    return Op.WRITE, requests.write_payload(path, value), tx


@contextmanager
def guarded(stats: Stats, where: str) -> Iterator[None]:
    """Count an unexpected error of one step (the load goes on)."""
    try:
        yield
    except Exception as exc:
        stats.error(where, exc)


# --------------------------------------------------------------------------------------
# The toolstack and its guests


@dataclass
class Slot:
    """One domain slot: the domain living in it now, and its guest's thread's signal."""

    index: int
    domid: int = 0
    live: bool = False
    due: float = 0.0
    introduced: threading.Event = field(default_factory=threading.Event)


class Toolstack:
    """dom0 as a toolstack: introduce a domain, let its guest work, release it, again."""

    def __init__(self, opts: argparse.Namespace, stats: Stats, stop: threading.Event) -> None:
        self.opts = opts
        self.stats = stats
        self.stop = stop
        self.rng = random.Random(opts.seed * 7919 + 1)
        self.dom0 = Client(stream=connect(opts.socket))
        self.slots = [Slot(i) for i in range(GUESTS)]
        self.next_domid = DOMID_FIRST

    def pick_domid(self) -> int:
        used = {s.domid for s in self.slots}
        while True:
            domid = self.next_domid
            self.next_domid = DOMID_FIRST + (domid - DOMID_FIRST + 1) % DOMID_SPAN
            if domid not in used:
                return domid

    def introduce(self, slot: Slot) -> None:
        domid = slot.domid = self.pick_domid()
        home, backend = f"/local/domain/{domid}", f"/local/domain/0/backend/vif/{domid}/0"
        self.dom0.write(home, "")
        self.dom0.set_perms(home, [f"n{domid}", "r0"])
        self.dom0.write(f"{home}/name", f"soak-{domid}")
        self.dom0.write(f"{home}/memory/target", "524288")
        self.dom0.write(f"{home}/device/vif/0/backend", backend)
        self.dom0.write(f"{backend}/frontend", f"{home}/device/vif/0")
        self.dom0.write(f"{backend}/state", "1")
        self.dom0.request(Op.INTRODUCE, join(str(domid), "4096", "1"))
        self.stats.add("introduce")
        slot.live = True
        slot.due = time.monotonic() + self.rng.uniform(*GUEST_LIFE)
        slot.introduced.set()

    def release(self, slot: Slot) -> None:
        domid = slot.domid
        slot.introduced.clear()
        slot.live = False
        if self.rng.random() < 0.5:  # a polite shutdown, else pulled from under the guest
            self.dom0.write(f"/local/domain/{domid}/control/shutdown", "poweroff")
            time.sleep(self.rng.uniform(0.0, 0.1))
        self.dom0.request(Op.RELEASE, join(str(domid)))
        self.stats.add("release")
        self.dom0.rm(f"/local/domain/0/backend/vif/{domid}")
        if self.dom0.exists(f"/local/domain/{domid}"):
            self.stats.error("release", f"/local/domain/{domid} is still there after RELEASE")
        slot.due = time.monotonic() + self.rng.uniform(0.0, 1.0)

    def flash(self) -> None:
        """INTRODUCE, INTRODUCE, RELEASE of a domain with no guest, in one send."""
        domid = str(self.pick_domid())
        conn = Conn(self.opts.socket)
        try:
            intro = (Op.INTRODUCE, join(domid, "4096", "1"), 0)
            ids = conn.send(intro, intro, (Op.RELEASE, join(domid), 0))
            for req_id in ids:
                conn.reply(req_id)
            self.stats.add("flash")
        finally:
            conn.close()

    def poke(self) -> None:
        """Change a live domain's memory target (its guest's transactions read it)."""
        live = [s for s in self.slots if s.live]
        if live:
            slot = self.rng.choice(live)
            self.dom0.write(f"/local/domain/{slot.domid}/memory/target",
                            str(self.rng.randrange(1 << 18, 1 << 20)))
            self.stats.add("poke")

    def run(self) -> None:
        guests = [threading.Thread(target=Guest(self.opts, slot, self.stats, self.stop).run,
                                   name=f"guest{slot.index}", daemon=True) for slot in self.slots]
        for thread in guests:
            thread.start()
        poke_every = 1.0 / (POKE_RATE * self.opts.load)
        next_poke = time.monotonic()
        while not self.stop.is_set():
            slot = min(self.slots, key=lambda s: s.due)
            self.stop.wait(max(0.0, min(slot.due, next_poke) - time.monotonic()))
            if self.stop.is_set():
                break
            with guarded(self.stats, "toolstack"):
                if time.monotonic() >= next_poke:
                    next_poke += poke_every
                    self.poke()
                if time.monotonic() >= slot.due:
                    if slot.live:
                        self.release(slot)
                    else:
                        if self.rng.random() < 0.1:
                            self.flash()
                        self.introduce(slot)
        for slot in self.slots:
            if slot.live:
                with guarded(self.stats, "toolstack at the end"):
                    self.release(slot)
        for thread in guests:
            thread.join(REQUEST_TIMEOUT)


class Guest:
    """A guest on its domain socket: its own nodes, watches, transactions, reads."""

    def __init__(self, opts: argparse.Namespace, slot: Slot, stats: Stats,
                 stop: threading.Event) -> None:
        self.opts = opts
        self.slot = slot
        self.stats = stats
        self.stop = stop
        self.rng = random.Random(opts.seed * 7919 + 100 + slot.index)

    def run(self) -> None:
        while not self.stop.is_set():
            if not self.slot.introduced.wait(0.2):
                continue
            domid = self.slot.domid
            try:
                conn = Conn(os.path.join(self.opts.domain_dir, str(domid)))
            except (FileNotFoundError, ConnectionRefusedError):
                self.stats.add("guest connect raced release")
                self.stop.wait(0.05)
                continue
            except Exception as exc:
                self.stats.error(f"guest {domid} connect", exc)
                self.stop.wait(1.0)
                continue
            self.live(conn, domid)

    def live(self, conn: Conn, domid: int) -> None:
        pacer = Pacer(GUEST_RATE * self.opts.load, self.stop, GUEST_BURST)
        self.stats.add("guest sessions")
        try:
            ids = conn.send(write_req("name", f"guest{domid}"),
                            *(write_req(f"data/k{i}", str(i)) for i in range(DATA_KEYS)),
                            (Op.WATCH, requests.watch_payload("control/shutdown", "sd"), 0),
                            (Op.WATCH, requests.watch_payload("@releaseDomain", "rel"), 0),
                            (Op.WATCH, requests.watch_payload("data", "data"), 0))
            for req_id in ids:
                conn.reply(req_id)
            self.stats.add("guest ops", len(ids))
            while pacer.wait():
                self.step(conn)
            while True:  # the end of the run: the toolstack releases every domain
                conn.feed()
        except Closed as exc:
            # The toolstack clears ``introduced`` before it sends RELEASE: a connection
            # closed while the domain still lives was not closed by a release.
            if self.slot.introduced.is_set() and self.slot.domid == domid:
                self.stats.error(f"guest {domid}", exc)
            else:
                self.stats.add("guest cut by release")
        except Exception as exc:
            if self.slot.introduced.is_set() and self.slot.domid == domid:
                self.stats.error(f"guest {domid}", exc)
            else:
                self.stats.add("guest error after release")
        finally:
            self.stats.add("guest events", conn.events)
            conn.close()

    def step(self, conn: Conn) -> None:
        """A few requests in one send, most of the time: a release may land mid-way."""
        rng = self.rng
        roll = rng.random()
        key = f"data/k{rng.randrange(DATA_KEYS)}"
        if roll < 0.4:
            reqs = [read_req(key), write_req(key, str(rng.randrange(1 << 30))),
                    (Op.DIRECTORY, join("data"), 0), (Op.GET_PERMS, join(key), 0),
                    read_req("data/missing")]
            conn.pipeline(*reqs, allowed=(errors.ENOENT,))
        elif roll < 0.6:
            reqs = [read_req(f"data/k{i}") for i in range(DATA_KEYS)]
            conn.pipeline(*reqs)
        elif roll < 0.8:
            tx = int(conn.call(Op.TRANSACTION_START, b"\0").rstrip(b"\0"))
            reqs = [read_req("memory/target", tx),
                    write_req(f"data/tx{rng.randrange(20)}", "t", tx),
                    write_req("data/k0", "tx", tx), (Op.TRANSACTION_END, b"T\0", tx)]
            done = conn.pipeline(*reqs, allowed=(errors.EAGAIN,))
            self.stats.add("guest commits" if done[-1] is not None else "guest conflicts")
            self.stats.add("guest ops")  # its TRANSACTION_START
        elif roll < 0.9:
            reqs = [read_req(key)]
            conn.call(*reqs[0])
        else:
            reqs = [(Op.GET_DOMAIN_PATH, join(str(self.slot.domid)), 0)]
            conn.call(*reqs[0])
        self.stats.add("guest ops", len(reqs))


# --------------------------------------------------------------------------------------
# dom0 clients and the fan-out writer


def dom0_step(xs: Client, rng: random.Random, stats: Stats) -> None:
    """One request (or transaction) of a dom0 client."""
    d = f"/soak/data/d{rng.randrange(DATA_DIRS)}"
    key = f"{d}/k{rng.randrange(DATA_KEYS)}"
    roll = rng.random()
    if roll < 0.35:
        xs.read(key)
    elif roll < 0.50:
        xs.write(key, str(rng.randrange(1 << 30)))
    elif roll < 0.60:
        xs.directory(d)
    elif roll < 0.65:
        xs.directory("/local/domain")
    elif roll < 0.70:
        xs.directory("/soak/data")
    elif roll < 0.80:
        other = f"{d}/k{rng.randrange(DATA_KEYS)}"

        def move(t: ClientTransaction) -> None:
            t.write(other, t.read(key))

        xs.retry(move)
        stats.add("dom0 commits")
    elif roll < 0.85:
        xs.get_perms(key)
    elif roll < 0.90:
        xs.exists(f"{d}/missing")
    elif roll < 0.95:  # churn: a small subtree removed and made again, in a transaction
        def remake(t: ClientTransaction) -> None:
            if t.exists(f"{d}/tmp"):
                t.rm(f"{d}/tmp")
            for i in range(5):
                t.write(f"{d}/tmp/n{i}", str(i))

        xs.retry(remake)
        stats.add("dom0 commits")
    else:
        xs.set_perms(key, ["n0", f"r{rng.randrange(1, 5)}"])
    stats.add("dom0 ops")


def bulk_step(conn: Conn, rng: random.Random, stats: Stats) -> None:
    """A batch of dom0 requests in one send; now and then a transaction remaking a subtree."""
    d = f"/soak/data/d{rng.randrange(DATA_DIRS)}"
    if rng.random() < 0.1:
        tx = int(conn.call(Op.TRANSACTION_START, b"\0").rstrip(b"\0"))
        reqs = [(Op.RM, join(f"{d}/bulk"), tx),
                *(write_req(f"{d}/bulk/n{i}", str(i), tx) for i in range(BULK_BATCH)),
                (Op.TRANSACTION_END, b"T\0", tx)]
        done = conn.pipeline(*reqs, allowed=(errors.ENOENT, errors.EAGAIN))
        stats.add("dom0 commits" if done[-1] is not None else "dom0 conflicts")
        stats.add("dom0 ops", len(reqs) + 1)
        return
    reqs = []
    for _ in range(BULK_BATCH):
        key = f"{d}/k{rng.randrange(DATA_KEYS)}"
        roll = rng.random()
        if roll < 0.5:
            reqs.append(read_req(key))
        elif roll < 0.7:
            reqs.append(write_req(key, str(rng.randrange(1 << 30))))
        elif roll < 0.8:
            reqs.append((Op.DIRECTORY, join(d), 0))
        elif roll < 0.9:
            reqs.append((Op.GET_PERMS, join(key), 0))
        else:
            reqs.append(read_req(f"{d}/missing"))
    conn.pipeline(*reqs, allowed=(errors.ENOENT,))
    stats.add("dom0 ops", len(reqs))


def run_dom0(opts: argparse.Namespace, stats: Stats, stop: threading.Event) -> dict[str, object]:
    def client(index: int) -> None:
        rng = random.Random(opts.seed * 7919 + 200 + index)
        pacer = Pacer(DOM0_RATE * opts.load, stop, DOM0_BURST)
        with Client(stream=connect(opts.socket)) as xs:
            while pacer.wait():
                with guarded(stats, f"dom0 client {index}"):
                    dom0_step(xs, rng, stats)

    fan_writes = 0

    def fan() -> None:
        """Writes below /soak/fan, a few in one send: each an event to every fan watcher."""
        nonlocal fan_writes
        rng = random.Random(opts.seed * 7919 + 300)
        pacer = Pacer(FAN_RATE * opts.load / FAN_BURST, stop)
        conn = Conn(opts.socket)
        while pacer.wait():
            with guarded(stats, "fan writer"):
                reqs = [write_req(f"/soak/fan/k{rng.randrange(10)}", str(rng.randrange(1 << 30)))
                        for _ in range(FAN_BURST)]
                conn.pipeline(*reqs)
                fan_writes += len(reqs)
                stats.add("fan writes", len(reqs))
        conn.close()

    def bulk() -> None:
        rng = random.Random(opts.seed * 7919 + 400)
        pacer = Pacer(BULK_RATE * opts.load / BULK_BATCH, stop)
        conn = Conn(opts.socket)
        while pacer.wait():
            with guarded(stats, "dom0 bulk"):
                bulk_step(conn, rng, stats)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(DOM0_THREADS)]
    threads += [threading.Thread(target=fan, daemon=True),
                threading.Thread(target=bulk, daemon=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"fan_writes": fan_writes}


# --------------------------------------------------------------------------------------
# Watchers


def run_watchers(opts: argparse.Namespace, stats: Stats,
                 stop: threading.Event) -> dict[str, object]:
    """Many connections, each with one watch, served by one thread with a selector."""
    wanted = ([("/soak/fan", "fan")] * FAN_WATCHERS
              + [("@introduceDomain", "intro")] * SPECIAL_WATCHERS
              + [("@releaseDomain", "rel")] * SPECIAL_WATCHERS)
    sel = selectors.DefaultSelector()
    conns: list[tuple[str, Conn]] = []
    for wpath, token in wanted:
        conn = Conn(opts.socket)
        conn.sock.setblocking(False)
        conn.send((Op.WATCH, requests.watch_payload(wpath, token), 0))
        sel.register(conn, selectors.EVENT_READ, token)
        conns.append((token, conn))
    by_fd = {conn.fileno(): conn for _, conn in conns}
    lost: set[int] = set()
    stopped_at = last_data = 0.0
    while True:
        ready = sel.select(0.5)
        for key, _ in ready:
            conn = by_fd[key.fd]
            before = conn.events
            try:
                conn.feed()
            except BlockingIOError:
                continue
            except Closed:
                stats.error(f"watcher {key.data}", "disconnected by the daemon")
                sel.unregister(conn)
                lost.add(id(conn))
                continue
            stats.add(f"{key.data} events", conn.events - before)
            for op, payload in conn.replies.values():
                if op == Op.ERROR:
                    stats.error(f"watcher {key.data}", payload.decode(errors="replace"))
            conn.replies.clear()
        now = time.monotonic()
        if ready:
            last_data = now
        if stop.is_set():  # drain: end once nothing came for a second (10 s at most)
            stopped_at = stopped_at or now
            if now - last_data > 1.0 or now - stopped_at > 10.0:
                break
    per_token: dict[str, list[int]] = {}
    for token, conn in conns:
        per_token.setdefault(token, []).append(-1 if id(conn) in lost else conn.events)
        conn.close()
    return {"watcher_events": per_token}


# --------------------------------------------------------------------------------------
# A load process: runs one role, reports on stdout, stops when its stdin closes


def worker_main(opts: argparse.Namespace) -> int:
    stats, stop = Stats(), threading.Event()

    def wait_for_eof() -> None:
        with suppress(OSError):  # os.read: no buffer lock to trip over at exit
            while os.read(0, 4096):
                pass
        stop.set()

    def report() -> None:
        while not stop.wait(1.0):
            print(json.dumps(stats.snapshot()), flush=True)

    threading.Thread(target=wait_for_eof, daemon=True).start()
    threading.Thread(target=report, daemon=True).start()
    final: dict[str, object] = {}
    try:
        if opts.worker == "toolstack":
            Toolstack(opts, stats, stop).run()
        elif opts.worker == "dom0":
            final = run_dom0(opts, stats, stop)
        else:
            final = run_watchers(opts, stats, stop)
    except Exception as exc:
        stats.error(f"{opts.worker} (ended)", exc)
    print(json.dumps(stats.snapshot(final=True, **final)), flush=True)
    return 0


# --------------------------------------------------------------------------------------
# The conductor: the daemon, the load processes, the samples, the verdict


@dataclass
class Started:
    """A process this run started; stopped by its pid alone."""

    name: str
    proc: subprocess.Popen[bytes]
    latest: dict[str, Any] = field(default_factory=dict)

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_daemon(python: str, directory: str) -> Started:
    """pyxenstored with guest sockets in ``directory``; returns once it prints its pid."""
    spawned = spawn(os.path.join(directory, "socket"), ["--domain-dir", directory],
                    stderr_path=os.path.join(directory, "stderr"), python=python,
                    env=python_env(), new_session=True)
    return Started("daemon", spawned.process)


def start_worker(python: str, role: str, opts: argparse.Namespace, directory: str) -> Started:
    argv = [python, "-m", "bench.soak", "--worker", role, "--socket",
            os.path.join(directory, "socket"), "--domain-dir", directory,
            "--seed", str(opts.seed), "--load", str(opts.load)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=python_env(), start_new_session=True)
    worker = Started(role, proc)

    def follow() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with suppress(ValueError):
                worker.latest = json.loads(line)

    threading.Thread(target=follow, daemon=True).start()
    return worker


def end_worker(worker: Started, timeout: float = 60.0) -> None:
    """Close its stdin (it stops and reports), wait for it; SIGTERM if it does not end."""
    with suppress(OSError):
        assert worker.proc.stdin is not None
        worker.proc.stdin.close()
    try:
        worker.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.stop()
    time.sleep(0.2)  # its last line reaches the reader thread


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Prober:
    """READs from fresh dom0 connections, evenly spaced; their answer times."""

    def __init__(self, socket_path: str, per_period: int, period: float) -> None:
        self.socket_path = socket_path
        self.interval = period / per_period
        self.times: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            start = time.perf_counter()
            try:
                with Client(stream=connect(self.socket_path)) as xs:
                    xs.read("/soak/probe")
                elapsed = time.perf_counter() - start
                with self.lock:
                    self.times.append(elapsed)
            except Exception as exc:
                with self.lock:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")

    def take(self) -> tuple[list[float], list[str]]:
        with self.lock:
            taken, self.times = self.times, []
            failed, self.failures = self.failures, []
        return taken, failed


def total_ops(workers: list[Started]) -> tuple[int, dict[str, int], int]:
    """Requests done so far by all the load (events received not counted), by kind; errors."""
    counts: dict[str, int] = {}
    errs = 0
    for worker in workers:
        for name, n in worker.latest.get("counts", {}).items():
            counts[name] = counts.get(name, 0) + n
        errs += worker.latest.get("errors", 0)
    ops = sum(counts.get(k, 0) for k in ("guest ops", "dom0 ops", "fan writes", "introduce",
                                        "release", "poke"))
    return ops, counts, errs


def daemon_state(socket_path: str) -> dict[str, int]:
    """What the daemon holds (CONTROL memreport, written to a file beside its socket):
    nodes, saved versions, watches, connections, transactions, domains, tasks..."""
    path = os.path.join(os.path.dirname(socket_path), "memreport")
    try:
        with Client(stream=connect(socket_path)) as xs:
            xs.control("memreport", path)
        with open(path) as f:
            pairs = [line.rsplit(":", 1) for line in f.read().splitlines() if ":" in line]
    except (OSError, errors.XenStoreError):
        return {}
    return {name.strip(): int(value) for name, value in pairs if value.strip().isdigit()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def log_lines(path: str) -> list[str]:
    with open(path, errors="replace") as f:
        return f.read().splitlines()


def measure(opts: argparse.Namespace, daemon: Started, workers: list[Started],
            log_path: str) -> list[dict[str, Any]]:
    """Sample until the end; one record per period (stops early if the daemon dies)."""
    pid = daemon.proc.pid
    prober = Prober(os.path.join(os.path.dirname(log_path), "socket"), opts.probes, opts.period)
    prober.thread.start()
    periods: list[dict[str, Any]] = []
    n_periods = max(1, round(opts.minutes * 60 / opts.period))
    t0 = time.monotonic()
    last_ops, last_errs, last_lines = 0, 0, 0
    gen_pids = {w.name: w.proc.pid for w in workers} | {"conductor": os.getpid()}
    last_cpu = cpu_seconds(pid)
    last_gen = {name: cpu_seconds(p) for name, p in gen_pids.items()}
    try:
        for index in range(n_periods):
            end = t0 + (index + 1) * opts.period
            rss: list[float] = []
            fds: list[int] = []
            while time.monotonic() < end and daemon.proc.poll() is None:
                rss.append(rss_mib(pid))
                fds.append(open_fds(pid))
                time.sleep(min(opts.sample, max(0.0, end - time.monotonic())))
            if daemon.proc.poll() is not None:
                print(f"the daemon died (status {daemon.proc.returncode}) in period "
                      f"{index + 1}", file=sys.stderr)
                break
            cpu = cpu_seconds(pid)
            gen = {name: cpu_seconds(p) for name, p in gen_pids.items()}
            times, failed = prober.take()
            ops, counts, errs = total_ops(workers)
            lines = log_lines(log_path)
            record = {
                "period": index + 1, "end_s": round(time.monotonic() - t0, 1),
                "rss_mib": round(statistics.median(rss), 2), "rss_max_mib": round(max(rss), 2),
                "fds": statistics.median(fds), "fds_max": max(fds),
                "probes": len(times), "probe_failures": failed,
                "probe_p50_ms": round(statistics.median(times) * 1e3, 3) if times else None,
                "probe_p99_ms": round(percentile(times, 0.99) * 1e3, 3) if times else None,
                "probe_max_ms": round(max(times) * 1e3, 3) if times else None,
                "ops": ops - last_ops, "ops_per_s": round((ops - last_ops) / opts.period, 1),
                "daemon_cpu_pct": round(100 * (cpu - last_cpu) / opts.period, 1),
                "load_cpu_pct": round(100 * (sum(gen.values()) - sum(last_gen.values()))
                                      / opts.period, 1),
                "load_cpu_pct_by": {name: round(100 * (gen[name] - last_gen[name])
                                                / opts.period, 1) for name in gen},
                "errors": errs - last_errs, "log_lines": len(lines) - last_lines,
                "counts": counts, "daemon_state": daemon_state(prober.socket_path),
            }
            periods.append(record)
            print(row(record), flush=True)
            last_ops, last_errs, last_lines, last_cpu, last_gen = ops, errs, len(lines), cpu, gen
    finally:
        prober.stop.set()
        prober.thread.join(REQUEST_TIMEOUT)
    return periods


HEADER = ("| min | ops/s | RSS MiB (max) | fds (max) | probe p50 ms | p99 ms | daemon CPU % "
          "| load CPU % | nodes | tasks | errors |\n|---|---|---|---|---|---|---|---|---|---|---|")


def row(r: dict[str, Any]) -> str:
    minute = r["end_s"] / 60
    state = r.get("daemon_state", {})
    return (f"| {minute:.2f} | {r['ops_per_s']:.0f} | {r['rss_mib']:.1f} ({r['rss_max_mib']:.1f}) "
            f"| {r['fds']:.0f} ({r['fds_max']}) | {r['probe_p50_ms']} | {r['probe_p99_ms']} "
            f"| {r['daemon_cpu_pct']} | {r['load_cpu_pct']} | {state.get('nodes', '')} "
            f"| {state.get('tasks', '')} | {r['errors']} |")


def verdict(periods: list[dict[str, Any]], checks: list[tuple[str, bool]]) -> tuple[bool, str]:
    """The ratios last/first and every other check; (passed, text)."""
    lines = []
    ok = True
    if len(periods) >= 2:
        first, last = periods[0], periods[-1]
        for name, key in (("RSS", "rss_mib"), ("fds", "fds"), ("probe p50", "probe_p50_ms")):
            a, b = first[key], last[key]
            ratio = b / a if a and b else float("nan")
            # Growth is what a soak looks for: a last period lower than the first is
            # reported, not failed (noise on a shared machine goes both ways).
            good = ratio <= 1 + TOLERANCE
            ok &= good
            judged = "ok" if abs(ratio - 1) <= TOLERANCE else "lower, ok" if good else "GREW"
            lines.append(f"{name}: first {a}, last {b}, ratio {ratio:.3f}: {judged} "
                         f"(at most {1 + TOLERANCE:.2f})")
    else:
        ok = False
        lines.append("fewer than two periods: nothing to compare")
    for text, good in checks:
        ok &= good
        lines.append(f"{text}: {'ok' if good else 'FAILED'}")
    lines.append("PASS" if ok else "FAIL")
    return ok, "\n".join(lines)


def final_checks(daemon: Started, socket_path: str, workers: list[Started],
                 log_path: str) -> tuple[list[tuple[str, bool]], dict[str, Any]]:
    """After the load: alive, CONTROL check, every fan-out event delivered, no errors."""
    checks: list[tuple[str, bool]] = []
    info: dict[str, Any] = {}
    alive = daemon.proc.poll() is None
    checks.append((f"daemon alive (pid {daemon.proc.pid})", alive))
    if alive:
        try:
            with Client(stream=connect(socket_path)) as xs:
                reply = xs.request(Op.CONTROL, b"check\0")
        except Exception as exc:
            reply = f"{type(exc).__name__}: {exc}".encode()
        info["control_check"] = reply.decode(errors="replace")
        checks.append((f"CONTROL check answered {reply!r}", reply == b"OK\0"))
    by_role = {w.name: w.latest for w in workers}
    fan_writes = by_role.get("dom0", {}).get("fan_writes")
    events = by_role.get("watchers", {}).get("watcher_events", {})
    if fan_writes is not None and events:
        expected = 1 + fan_writes  # the first event on registration, then one per write
        got = events.get("fan", [])
        info["fan"] = {"expected_each": expected, "min": min(got), "max": max(got)}
        checks.append((f"{len(got)} fan watchers each got {expected} events "
                       f"(min {min(got)}, max {max(got)})", set(got) == {expected}))
    else:
        checks.append(("fan-out totals reported", False))
    counts = total_ops(workers)[1]
    for token, key in (("intro", "introduce"), ("rel", "release")):
        # The first event on registration, one per domain, one per flash domain (its
        # second INTRODUCE, with the same page, is quiet).
        expected = 1 + counts.get(key, 0) + counts.get("flash", 0)
        got = events.get(token, [])
        info[token] = {"events": got, "expected_each": expected}
        checks.append((f"{len(got)} watchers of {token} each got {expected} events",
                       bool(got) and set(got) == {expected}))
    errs = [(w.name, w.latest.get("errors", 0), w.latest.get("samples", [])) for w in workers]
    info["errors"] = errs
    checks.append((f"unexpected errors in the load: {sum(e[1] for e in errs)}",
                   all(e[1] == 0 for e in errs)))
    alarming = [line for line in log_lines(log_path) if ALARMING.search(line)]
    info["alarming_log_lines"] = alarming[:50]
    checks.append((f"alarming daemon log lines: {len(alarming)}", not alarming))
    return checks, info


def tree_version() -> str:
    """The commit of the code under test (``-dirty``: with uncommitted changes)."""
    try:
        return subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)),
                               "describe", "--always", "--dirty"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def conductor_main(opts: argparse.Namespace) -> int:
    raise_fd_limit()
    directory = short_tempdir()
    log_path = os.path.join(directory, "stderr")
    socket_path = os.path.join(directory, "socket")
    python = opts.python or sys.executable
    passed = False
    with Processes() as stack:
        daemon = start_daemon(python, directory)
        stack.callback(daemon.stop)
        version = tree_version()
        print(f"soak: pyxenstored pid {daemon.proc.pid} ({version}) in {directory}, seed "
              f"{opts.seed}, {opts.minutes} min in periods of {opts.period:g} s, load "
              f"x{opts.load:g}", flush=True)
        with Client(stream=connect(socket_path)) as xs:
            xs.write("/local/domain/0/name", "Domain-0")  # as on a host: /local/domain exists
            xs.write("/soak/probe", "probe")
            for i in range(10):
                xs.write(f"/soak/fan/k{i}", "0")
            for d in range(DATA_DIRS):
                for k in range(DATA_KEYS):
                    xs.write(f"/soak/data/d{d}/k{k}", str(k))
        workers: list[Started] = []
        for role in ("watchers", "dom0", "toolstack"):
            worker = start_worker(python, role, opts, directory)
            stack.callback(worker.stop)
            workers.append(worker)
            if role == "watchers":
                time.sleep(1.0)  # its watches are registered before the first fan write
        print(HEADER, flush=True)
        periods = measure(opts, daemon, workers, log_path)
        for worker in reversed(workers):  # the writers first, the watchers drain last
            end_worker(worker)
        checks, info = final_checks(daemon, socket_path, workers, log_path)
        passed, text = verdict(periods, checks)
        daemon.stop()
        info["daemon_exit"] = daemon.proc.returncode
        print(f"\n{HEADER}\n" + "\n".join(row(r) for r in periods))
        print(f"\nload totals: {json.dumps(total_ops(workers)[1], sort_keys=True)}")
        for name, _, samples in info["errors"]:
            for sample in samples:
                print(f"error in {name}: {sample}")
        for line in info["alarming_log_lines"]:
            print(f"daemon log: {line}")
        print(f"daemon stopped by SIGTERM, exit status {daemon.proc.returncode}")
        print(text)
        if opts.json:
            with open(opts.json, "w") as f:
                json.dump({"seed": opts.seed, "minutes": opts.minutes, "period_s": opts.period,
                           "version": version,
                           "load": opts.load, "periods": periods, "checks": checks,
                           "passed": passed, "info": info}, f, indent=1)
    if passed:
        shutil.rmtree(directory, ignore_errors=True)
    else:
        print(f"soak: kept {directory} (the daemon's log: {log_path})")
    return 0 if passed else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    p.add_argument("--seed", type=int, default=1, help="seed of the load's choices (default 1)")
    p.add_argument("--period", type=float, default=60.0,
                   help="seconds between records (default 60: a row per minute)")
    p.add_argument("--probes", type=int, default=200, help="probe READs a period (default 200)")
    p.add_argument("--sample", type=float, default=2.0,
                   help="seconds between RSS and descriptor samples (default 2)")
    p.add_argument("--load", type=float, default=1.0, help="scale every rate (default 1)")
    p.add_argument("--json", metavar="FILE", help="write every period's figures as JSON")
    p.add_argument("--python", help="interpreter for the daemon and the load (default: this)")
    # Internal: a load process.
    p.add_argument("--worker", choices=("toolstack", "dom0", "watchers"), help=argparse.SUPPRESS)
    p.add_argument("--socket", help=argparse.SUPPRESS)
    p.add_argument("--domain-dir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.worker:
        return worker_main(opts)
    return conductor_main(opts)


if __name__ == "__main__":
    sys.exit(main())
