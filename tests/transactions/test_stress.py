"""Bank transfers over real sockets: totals hold and no update is lost.

Clients move amounts between K accounts, each transfer a read-modify-write
transaction retried on EAGAIN, and count their transfers in a shared counter
inside the same transaction. Serialisability means the total never changes
and the counter equals the number of transfers that committed.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from functools import partial

import pytest
import trio

from tests.conftest import OurDaemon
from xenstore import errors
from xenstore.aclient import AsyncTransaction, open_client
from xenstore.client import Client, ClientTransaction

ACCOUNTS = 5
START = 100
CLIENTS = 6
TRANSFERS = 40


@pytest.fixture
def bank() -> Iterator[str]:
    daemon = OurDaemon()
    with Client(daemon.socket_path) as xs:
        for i in range(ACCOUNTS):
            xs.write(f"/bank/acct{i}", str(START))
        xs.write("/bank/transfers", "0")
    yield daemon.socket_path
    daemon.stop()


def audit(socket_path: str, committed: int) -> None:
    with Client(socket_path) as xs:
        balances = [int(xs.read(f"/bank/acct{i}")) for i in range(ACCOUNTS)]
        assert sum(balances) == ACCOUNTS * START, balances
        assert all(b >= 0 for b in balances), balances
        assert int(xs.read("/bank/transfers")) == committed


def transfer(t: ClientTransaction, src: int, dst: int, amount: int, tries: list[int]) -> None:
    tries.append(1)
    have = int(t.read(f"/bank/acct{src}"))
    moved = min(have, amount)
    t.write(f"/bank/acct{src}", str(have - moved))
    t.write(f"/bank/acct{dst}", str(int(t.read(f"/bank/acct{dst}")) + moved))
    t.write("/bank/transfers", str(int(t.read("/bank/transfers")) + 1))


async def atransfer(
    t: AsyncTransaction, src: int, dst: int, amount: int, tries: list[int]
) -> None:
    tries.append(1)
    have = int(await t.read(f"/bank/acct{src}"))
    moved = min(have, amount)
    await t.write(f"/bank/acct{src}", str(have - moved))
    await t.write(f"/bank/acct{dst}", str(int(await t.read(f"/bank/acct{dst}")) + moved))
    await t.write("/bank/transfers", str(int(await t.read("/bank/transfers")) + 1))


def test_threads_with_the_blocking_client(bank: str) -> None:
    committed: list[int] = []
    tries: list[int] = []
    failures: list[BaseException] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        try:
            with Client(bank, timeout=30) as xs:
                for _ in range(TRANSFERS):
                    src, dst = rng.sample(range(ACCOUNTS), 2)
                    work = partial(transfer, src=src, dst=dst, amount=rng.randint(1, 30),
                                   tries=tries)
                    xs.retry(work, attempts=1000)
                    committed.append(1)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert len(committed) == CLIENTS * TRANSFERS
    audit(bank, len(committed))
    # They did collide (every transfer reads and writes the shared counter).
    assert len(tries) > len(committed)


async def test_tasks_with_the_trio_client(bank: str) -> None:
    committed: list[int] = []
    tries: list[int] = []

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        async with open_client(bank) as xs:
            for _ in range(TRANSFERS):
                src, dst = rng.sample(range(ACCOUNTS), 2)
                work = partial(atransfer, src=src, dst=dst, amount=rng.randint(1, 30),
                               tries=tries)
                await xs.retry(work, attempts=1000)
                committed.append(1)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for seed in range(CLIENTS):
                nursery.start_soon(client, seed)
    assert len(committed) == CLIENTS * TRANSFERS
    audit(bank, len(committed))
    assert len(tries) > len(committed)


def test_retry_gives_up_after_its_attempts(bank: str) -> None:
    with Client(bank) as xs, Client(bank) as other:
        calls = 0

        def always_collides(t: ClientTransaction) -> None:
            nonlocal calls
            calls += 1
            t.write("/bank/acct0", t.read("/bank/acct0"))
            other.write("/bank/acct0", str(calls))

        slept: list[float] = []
        with pytest.raises(errors.EAGAIN):
            xs.retry(always_collides, attempts=4, sleep=slept.append)
        assert calls == 4
        assert len(slept) == 3 and all(0 <= d <= 0.25 for d in slept)


def test_an_exception_in_the_block_aborts(bank: str) -> None:
    with Client(bank) as xs:
        with pytest.raises(ZeroDivisionError), xs.transaction() as t:
            t.write("/bank/acct0", "1000000")
            _ = 1 / 0
        assert xs.read("/bank/acct0") == str(START).encode()
