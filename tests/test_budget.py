"""The upload memory budget, and the store's streamed puts within it (asyncio and trio)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from async_hashfs import AsyncHashFS, FileTooLarge
from async_hashfs._budget import (
    BATCH,
    DEFAULT_UPLOAD_MEMORY,
    PER_PUT,
    RELEASE_EVERY,
    UploadBudget,
    pump,
)

from .conftest import stored_files, temp_files

pytestmark = pytest.mark.anyio

KIB = 1 << 10


# -- the budget ------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "1", None])
def test_budget_must_be_a_positive_byte_count(limit: Any) -> None:
    with pytest.raises(ValueError, match="positive byte count"):
        UploadBudget(limit)


@pytest.mark.parametrize("limit", [0, -5, False, 2.0])
def test_store_rejects_a_bad_upload_memory(root: Path, limit: Any) -> None:
    with pytest.raises(ValueError, match="upload_memory"):
        AsyncHashFS(root, upload_memory=limit)


def test_store_has_a_budget_of_32_mib_by_default(root: Path) -> None:
    assert DEFAULT_UPLOAD_MEMORY == 32 << 20
    assert AsyncHashFS(root).budget.limit == 32 << 20
    assert AsyncHashFS(root, upload_memory=1234).budget.limit == 1234


def test_budget_grants_in_order_and_admits_anything_when_empty() -> None:
    budget = UploadBudget(100)
    granted: list[str] = []
    assert budget.try_acquire(60)
    big = budget.enqueue(500, lambda: granted.append("big"))
    small = budget.enqueue(10, lambda: granted.append("small"))
    assert not big.granted and not small.granted
    assert not budget.try_acquire(10)  # no overtaking the queue
    budget.release(60)
    # Larger than the whole budget: admitted alone, once nothing is charged.
    assert granted == ["big"] and budget.used == 500
    budget.withdraw(big)
    assert granted == ["big", "small"] and budget.used == 10
    budget.withdraw(small)
    assert budget.used == 0 and budget.peak == 500 and budget.waiting == 0


def test_withdrawing_the_head_lets_the_next_in() -> None:
    budget = UploadBudget(100)
    assert budget.try_acquire(50)
    head = budget.enqueue(80, lambda: None)
    after = budget.enqueue(40, lambda: None)
    assert not after.granted
    budget.withdraw(head)
    assert after.granted and budget.used == 90


async def test_acquire_waits_and_a_cancelled_waiter_takes_nothing() -> None:
    budget = UploadBudget(100)
    await budget.acquire(100)
    with anyio.move_on_after(0.05):
        await budget.acquire(1)
    assert budget.waiting == 0 and budget.used == 100
    done = anyio.Event()

    async def wait() -> None:
        await budget.acquire(30)
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        assert budget.waiting == 1
        budget.release(100)
        with anyio.fail_after(5):
            await done.wait()
    assert budget.used == 30


# -- streamed puts -------------------------------------------------------------------


async def new_store(root: Path, **options: Any) -> AsyncHashFS:
    """Build the store off the loop: the constructor resolves the root on disk."""
    return await anyio.to_thread.run_sync(lambda: AsyncHashFS(root, **options))


def blocks(seed: int, count: int, size: int) -> list[bytes]:
    return [hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32) for i in range(count)]


async def slowly(chunks: list[bytes], pause: float = 0.001) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await anyio.sleep(pause)
        yield chunk


async def put_all(fs: AsyncHashFS, sources: list[list[bytes]], pause: float) -> list[str]:
    ids: list[str] = [""] * len(sources)

    async def put(i: int) -> None:
        ids[i] = (await fs.put(slowly(sources[i], pause))).id

    async with anyio.create_task_group() as group:
        for i in range(len(sources)):
            group.start_soon(put, i)
    return ids


def digest(chunks: list[bytes]) -> str:
    return hashlib.sha256(b"".join(chunks)).hexdigest()


async def test_many_slow_puts_stay_within_the_budget(root: Path) -> None:
    fs = await new_store(root, upload_memory=256 * KIB)
    sources = [blocks(seed, 24, 16 * KIB) for seed in range(40)]
    with anyio.fail_after(60):
        ids = await put_all(fs, sources, pause=0.001)
    assert ids == [digest(chunks) for chunks in sources]
    assert 0 < fs.budget.peak <= 256 * KIB
    assert fs.budget.used == 0 and fs.budget.waiting == 0
    assert temp_files(root) == []


async def test_a_budget_smaller_than_one_chunk_does_not_deadlock(root: Path) -> None:
    fs = await new_store(root, upload_memory=1000, limiter=2)
    sources = [blocks(seed, 12, 64 * KIB) for seed in range(24)]
    with anyio.fail_after(60):
        ids = await put_all(fs, sources, pause=0)
    assert ids == [digest(chunks) for chunks in sources]
    assert fs.budget.peak == 64 * KIB  # one chunk at a time, admitted alone
    assert fs.budget.used == 0


async def test_cancelled_puts_give_their_budget_back(root: Path) -> None:
    fs = await new_store(root, upload_memory=128 * KIB)
    sources = [blocks(seed, 1000, 16 * KIB) for seed in range(10)]
    with anyio.move_on_after(0.3) as scope:
        await put_all(fs, sources, pause=0.0005)
    assert scope.cancelled_caught
    assert fs.budget.used == 0 and fs.budget.waiting == 0
    assert stored_files(root) == [] and temp_files(root) == []


async def test_a_failed_put_gives_its_budget_back(root: Path) -> None:
    fs = await new_store(root, max_size=100 * KIB, upload_memory=64 * KIB)
    with pytest.raises(FileTooLarge):
        await fs.put(slowly(blocks(1, 20, 16 * KIB), 0))

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise OSError("the source broke")

    with pytest.raises(OSError, match="the source broke"):
        await fs.put(broken())
    assert fs.budget.used == 0 and fs.budget.waiting == 0
    assert stored_files(root) == [] and temp_files(root) == []


async def test_a_mutable_chunk_is_copied_before_it_waits(root: Path) -> None:
    fs = await new_store(root, upload_memory=64 * KIB)
    buffer = bytearray(16 * KIB)
    expected = hashlib.sha256()

    async def refilled() -> AsyncIterator[bytearray]:
        for i in range(50):
            buffer[:] = bytes([i]) * len(buffer)
            expected.update(buffer)
            yield buffer

    address = await fs.put(refilled())
    assert address.id == expected.hexdigest()
    assert await anyio.to_thread.run_sync(os.path.getsize, address.abspath) == 50 * len(buffer)
    assert fs.budget.used == 0


async def test_one_put_holds_at_most_its_share(root: Path) -> None:
    fs = await new_store(root, upload_memory=64 << 20)
    chunks = blocks(9, 96, 256 * KIB)  # 24 MiB from a source faster than the disk
    assert (await fs.put(slowly(chunks, 0))).id == digest(chunks)
    assert 0 < fs.budget.peak <= PER_PUT + 256 * KIB
    assert fs.budget.used == 0


# -- the pump: wakes, hops and releases ------------------------------------------


class Recorder:
    """A ``consume`` and a ``run`` for :func:`pump`: what each call got, and how many hops."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.hops = 0
        self.hop_over = anyio.Event()

    def consume(self, chunks: list[Any]) -> None:
        self.batches.append([bytes(chunk) for chunk in chunks])

    async def run(self, func: Callable[[], None]) -> None:
        await anyio.to_thread.run_sync(func)
        self.hops += 1
        self.hop_over.set()
        self.hop_over = anyio.Event()

    def written(self) -> bytes:
        return b"".join(b"".join(batch) for batch in self.batches)


def stops_at(call: int, until: threading.Event, entered: threading.Event | None = None) -> Any:
    """A ``consume`` whose ``call``-th call sets ``entered``, then waits for ``until``."""
    calls = 0

    def consume(chunks: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == call:
            if entered is not None:
                entered.set()
            assert until.wait(10), "the pump never let this call go on"

    return consume


async def in_memory(chunks: list[bytes]) -> AsyncIterator[bytes]:
    """A source faster than any writer."""
    for chunk in chunks:
        yield chunk


async def test_a_writer_that_waits_is_woken_for_every_chunk() -> None:
    # The source hands over each chunk only once the one before is written, so
    # the writer waits for a wake before every chunk: a wake lost would hang.
    budget = UploadBudget()
    recorder = Recorder()
    chunks = blocks(3, 20, 16 * KIB)

    async def one_at_a_time() -> AsyncIterator[bytes]:
        for i, chunk in enumerate(chunks):
            while len(recorder.written()) < i * len(chunk):
                await recorder.hop_over.wait()
            yield chunk

    with anyio.fail_after(20):
        await pump(one_at_a_time(), recorder.consume, recorder.run, budget)
    assert recorder.written() == b"".join(chunks)
    assert recorder.hops == len(chunks)  # one hop each: the writer was idle every time
    assert budget.used == 0


async def test_chunks_that_come_during_a_hop_ride_along_without_a_wake() -> None:
    # The first hop's thread stays in ``consume`` until three more chunks have
    # been queued behind it; they must be written by that hop or the next.
    budget = UploadBudget()
    queued_behind = threading.Event()
    batches: list[list[bytes]] = []

    def consume(chunks: list[Any]) -> None:
        if not batches:
            assert queued_behind.wait(10), "the pump stopped while the writer was busy"
        batches.append(list(chunks))

    chunks = blocks(4, 8, 16 * KIB)

    async def source() -> AsyncIterator[bytes]:
        for i, chunk in enumerate(chunks):
            if i == 4:
                queued_behind.set()
            yield chunk
            await anyio.lowlevel.checkpoint()  # let the writer start its hop at once

    with anyio.fail_after(20):
        await pump(source(), consume, anyio.to_thread.run_sync, budget)
    assert b"".join(b"".join(batch) for batch in batches) == b"".join(chunks)
    assert len(batches) < len(chunks)  # chunks queued during the hop went in one batch
    assert budget.used == 0


async def test_a_long_hop_releases_what_it_wrote_as_it_goes() -> None:
    # A source faster than the writer fills PER_PUT, and one hop writes it a
    # BATCH at a time. While that hop's thread is still writing, what it has
    # written (RELEASE_EVERY) must be released already, so the source is read
    # on meanwhile.
    budget = UploadBudget(64 << 20)
    mid_hop = threading.Event()  # a hop writes on after RELEASE_EVERY bytes
    go_on = threading.Event()
    hops: list[int] = []

    def consume(chunks: list[Any]) -> None:
        hops[-1] += 1
        if hops[-1] == RELEASE_EVERY // BATCH + 1 and not mid_hop.is_set():
            mid_hop.set()
            assert go_on.wait(10)

    async def run(func: Callable[[], None]) -> None:
        hops.append(0)
        await anyio.to_thread.run_sync(func)

    produced = 0
    progressed = anyio.Event()

    async def fast() -> AsyncIterator[bytes]:
        nonlocal produced, progressed
        for chunk in blocks(5, 2 * PER_PUT // BATCH, BATCH):
            produced += 1
            progressed.set()
            progressed = anyio.Event()
            yield chunk

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(pump, fast(), consume, run, budget)
            try:
                assert await anyio.to_thread.run_sync(mid_hop.wait, 10), "no hop wrote on"
                while produced <= PER_PUT // BATCH:  # more than fits without a release
                    await progressed.wait()
            finally:
                go_on.set()
    assert budget.used == 0 and budget.peak <= PER_PUT + BATCH


async def test_a_hop_that_fails_midway_gives_everything_back() -> None:
    budget = UploadBudget(64 << 20)
    calls = 0

    def consume(chunks: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # two batches written (and released during the hop), then a failure
            raise OSError("the disk broke")

    chunks = blocks(6, 3 * PER_PUT // BATCH, BATCH)
    with anyio.fail_after(20), pytest.raises(OSError, match="the disk broke"):
        await pump(in_memory(chunks), consume, anyio.to_thread.run_sync, budget)
    for _ in range(10):  # any release the thread asked for arrives, and changes nothing
        await anyio.lowlevel.checkpoint()
    assert calls == 3 and budget.used == 0 and budget.waiting == 0


async def test_a_put_cancelled_during_a_long_hop_gives_everything_back() -> None:
    budget = UploadBudget(64 << 20)
    in_hop = threading.Event()
    hop_may_go_on = threading.Event()
    consume = stops_at(2, hop_may_go_on, in_hop)

    async def endless() -> AsyncIterator[bytes]:
        chunk = b"\x01" * BATCH
        while True:
            yield chunk

    async def cancel_in_the_hop(scope: anyio.CancelScope) -> None:
        await anyio.to_thread.run_sync(in_hop.wait)
        scope.cancel()
        hop_may_go_on.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            with anyio.CancelScope() as scope:
                group.start_soon(cancel_in_the_hop, scope)
                await pump(endless(), consume, anyio.to_thread.run_sync, budget)
        for _ in range(10):
            await anyio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    assert budget.used == 0 and budget.waiting == 0


async def test_a_hop_releases_at_once_what_another_upload_waits_for() -> None:
    # Another upload waits for budget that this put's writer holds: the hop
    # has its first batch released without waiting for RELEASE_EVERY bytes.
    budget = UploadBudget(PER_PUT + BATCH)
    other_waits = threading.Event()
    other_granted = threading.Event()
    calls = 0

    def consume(chunks: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the other upload queues up while this batch is written
            assert other_waits.wait(10)
        if calls == 2:
            assert other_granted.wait(10), "the waiting upload got nothing during the hop"

    async def other() -> None:
        while budget.used < PER_PUT:  # this put holds its share: now ask for more
            await anyio.lowlevel.checkpoint()
        granted = anyio.Event()
        ticket = budget.enqueue(2 * BATCH, granted.set)
        other_waits.set()
        await granted.wait()
        other_granted.set()
        budget.withdraw(ticket)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            group.start_soon(other)
            chunks = blocks(8, 2 * PER_PUT // BATCH, BATCH)
            await pump(in_memory(chunks), consume, anyio.to_thread.run_sync, budget)
    assert other_granted.is_set() and budget.used == 0
