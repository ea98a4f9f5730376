"""Concurrent small puts of a local store share thread hops (asyncio and trio)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from async_hashfs import AsyncHashFS, FileTooLarge
from async_hashfs._batch import DRAINERS, PER_HOP, SmallPuts

from .conftest import stored_files, temp_files

pytestmark = pytest.mark.anyio


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every thread hop taken during the test."""
    taken: list[Any] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        taken.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return taken


async def new_store(root: Path, hops: list[Any] | None = None, **options: Any) -> AsyncHashFS:
    # Made in a thread: making the root is blocking; that hop is not counted.
    fs = await anyio.to_thread.run_sync(lambda: AsyncHashFS(root, **options))
    if hops is not None:
        hops.clear()
    return fs


async def put_all(fs: AsyncHashFS, payloads: list[bytes], results: dict[int, Any]) -> None:
    async def one(index: int) -> None:
        try:
            results[index] = await fs.put(payloads[index])
        except Exception as exc:
            results[index] = exc

    async with anyio.create_task_group() as group:
        for index in range(len(payloads)):
            group.start_soon(one, index)


async def test_concurrent_small_puts_share_thread_hops(root: Path, hops: list[Any]) -> None:
    fs = await new_store(root, hops)
    payloads = [os.urandom(1000 + i) for i in range(40)]
    results: dict[int, Any] = {}
    await put_all(fs, payloads, results)
    for index, data in enumerate(payloads):
        assert results[index].id == hashlib.sha256(data).hexdigest()
        assert not results[index].is_duplicate
    assert len(stored_files(root)) == 40
    assert temp_files(root) == []
    assert len(hops) < 40  # one hop per put before


async def test_one_hop_runs_at_most_per_hop_puts(root: Path, hops: list[Any]) -> None:
    fs = await new_store(root, hops, limiter=1)
    payloads = [os.urandom(100) for _ in range(PER_HOP + 10)]
    results: dict[int, Any] = {}
    async with anyio.create_task_group() as group, fs.limiter:  # puts queue up behind it
        group.start_soon(put_all, fs, payloads, results)
        await anyio.wait_all_tasks_blocked()
    assert len(results) == PER_HOP + 10
    assert len(stored_files(root)) == PER_HOP + 10
    assert len(hops) >= 2  # one hop could have run them all


async def test_the_same_bytes_at_once_are_stored_once(root: Path) -> None:
    fs = await new_store(root)
    results: dict[int, Any] = {}
    await put_all(fs, [b"same bytes"] * 16, results)
    assert sorted(address.is_duplicate for address in results.values()) == [False] + [True] * 15
    assert len(stored_files(root)) == 1


async def test_each_caller_gets_its_own_error(root: Path) -> None:
    fs = await new_store(root, max_size=100)
    payloads = [b"a" * 50, b"b" * 200, b"c" * 100, b"d" * 101]
    results: dict[int, Any] = {}
    await put_all(fs, payloads, results)
    assert results[0].id == hashlib.sha256(payloads[0]).hexdigest()
    assert isinstance(results[1], FileTooLarge)
    assert results[2].id == hashlib.sha256(payloads[2]).hexdigest()
    assert isinstance(results[3], FileTooLarge)
    assert len(stored_files(root)) == 2
    assert temp_files(root) == []


async def test_a_put_cancelled_before_its_hop_stores_nothing(root: Path) -> None:
    """The first caller drains the queue: cancelled while it waits, it hands over."""
    fs = await new_store(root, limiter=1)
    results: dict[str, Any] = {}

    async def put(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            results[name] = await fs.put(name.encode())

    first, second = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as group, fs.limiter:  # no hop can start
        group.start_soon(put, "first", first)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(put, "second", second)
        await anyio.wait_all_tasks_blocked()
        first.cancel()  # the drainer, waiting for a thread
        await anyio.wait_all_tasks_blocked()
    assert list(results) == ["second"]  # the first was withdrawn
    assert results["second"].id == hashlib.sha256(b"second").hexdigest()
    assert stored_files(root) == [results["second"].relpath]
    assert temp_files(root) == []
    assert (await fs.put(b"later")).id == hashlib.sha256(b"later").hexdigest()


async def test_large_bytes_take_their_own_hop(root: Path, hops: list[Any]) -> None:
    fs = await new_store(root, hops)
    data = os.urandom(1 << 20)
    assert (await fs.put(data)).id == hashlib.sha256(data).hexdigest()
    assert [hop.__name__ for hop in hops] == ["_put_blocking"]


async def test_two_hops_drain_at_once() -> None:
    """The disk work of two puts overlaps: two hops may drain the queue together."""
    assert DRAINERS == 2
    both = threading.Barrier(2, timeout=20)  # a single hop would wait here, then break it
    puts: SmallPuts[int] = SmallPuts(anyio.to_thread.run_sync)
    results: list[int] = []

    async def put(value: int) -> None:
        results.append(await puts.put(lambda: both.wait() * 0 + value))

    async with anyio.create_task_group() as group:
        group.start_soon(put, 1)
        group.start_soon(put, 2)
    assert sorted(results) == [1, 2]
