"""Regressions a hostile review of the streamed-put pump and the sweep's clock found.

Each failed before its fix: a source's cleanup cut short by the pump's own
cancel, a source's KeyboardInterrupt wrapped in an exception group, bytes
written between two reads of the hop's count left charged to the budget, and
a file stamped in the sweep probe's tick compared older than the cutoff.
"""

from __future__ import annotations

import dis
import errno
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from blockbuster import BlockBuster

from async_hashfs import AsyncHashFS, FileTooLarge, SyncHashFS, _budget, _engine
from async_hashfs._budget import UploadBudget


@pytest.fixture
def capped_fs(root: Path) -> AsyncHashFS:
    return AsyncHashFS(root, max_size=50_000)


def _source(cleaned: list[str], chunks: int, size: int) -> AsyncIterator[bytes]:
    """An async generator whose cleanup awaits (closes a connection, say)."""

    async def gen() -> AsyncIterator[bytes]:
        try:
            for _ in range(chunks):
                yield b"x" * size
        finally:
            await anyio.lowlevel.checkpoint()  # any await: an aclose() of a response, a cursor...
            cleaned.append("done")

    return gen()


@pytest.mark.anyio
async def test_source_cleanup_runs_after_file_too_large(capped_fs: AsyncHashFS) -> None:
    fs = capped_fs
    cleaned: list[str] = []
    with pytest.raises(FileTooLarge):
        await fs.put(_source(cleaned, 100, 10_000))
    assert fs.budget.used == 0
    assert cleaned == ["done"]


@pytest.mark.anyio
async def test_source_cleanup_runs_after_disk_full(
    async_fs: AsyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = async_fs
    written = 0
    real_write = os.write

    def full(fd: int, data: Any) -> int:
        nonlocal written
        written += 1
        if written > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    cleaned: list[str] = []
    with pytest.raises(OSError, match="No space"):
        await fs.put(_source(cleaned, 2000, 65_536))
    monkeypatch.undo()
    assert fs.budget.used == 0
    assert cleaned == ["done"]


@pytest.mark.anyio
async def test_source_keyboard_interrupt_propagates_as_itself(async_fs: AsyncHashFS) -> None:
    async def interrupted() -> AsyncIterator[bytes]:
        yield b"a" * 100_000
        raise KeyboardInterrupt

    raised: BaseException | None = None
    try:
        await async_fs.put(interrupted())
    except BaseException as exc:
        raised = exc
    assert async_fs.budget.used == 0
    assert type(raised) is KeyboardInterrupt, repr(raised)


def _mtime_that_rounds_down(path: Path) -> int:
    """A nanosecond stamp ``ns`` (10 s ago) for which ``os.stat().st_mtime < ns / 1e9``.

    ``st_mtime`` is ``sec + nsec * 1e-9``; ``sweep_clock`` returns ``ns / 1e9``:
    the two roundings differ for about one stamp in four (one in eight below).
    """
    ns = time.time_ns() - 10 * 10**9
    for candidate in range(ns, ns + 100_000, 997):
        os.utime(path, ns=(candidate, candidate))
        if os.stat(path).st_mtime < candidate / 1e9:
            return candidate
    raise AssertionError("no stamp rounds down")  # pragma: no cover


def test_sweep_keeps_a_put_stamped_in_the_probes_tick(
    sync_fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = sync_fs
    address = fs.put(b"put after the sweep read its clock")
    path = Path(address.abspath)
    tick = _mtime_that_rounds_down(path)
    # On a file system with a coarse clock (ext4/xfs before Linux 6.13's multigrain
    # stamps, NFS), the probe's next stamp and a put made right after it share one
    # tick. Here the file system's clock is made to give that tick to the probe
    # (a tick whose float rounds the other way); the real sweep_clock runs.
    real_utime = os.utime

    def coarse_clock(target: Any, times: Any = None, **kwargs: Any) -> None:
        if times is None and "ns" not in kwargs:
            kwargs["ns"] = (tick, tick)
        real_utime(target, times, **kwargs)

    monkeypatch.setattr(os, "utime", coarse_clock)
    report = fs.sweep([], older_than=0)
    # "a put that starts after the call is never stamped before the cutoff"
    assert path.exists(), report


@pytest.fixture(autouse=True)
def _no_leftovers(root: Path) -> Iterator[None]:
    yield
    temp = root / ".hashfs-tmp"
    assert not temp.exists() or not os.listdir(temp)


class _RecordingBudget(UploadBudget):
    __slots__ = ("releases",)

    def __init__(self) -> None:
        super().__init__()
        self.releases: list[int] = []

    def release(self, size: int) -> None:
        self.releases.append(size)
        super().release(size)


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="on 3.10 a trace function writes its frame's snapshot of closure cells back after "
    "each call (PyFrame_LocalsToFast), which itself reverts the count the hop's thread raised",
)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_settle_releases_what_the_thread_wrote_between_its_reads(
    monkeypatch: pytest.MonkeyPatch, blockbuster: BlockBuster
) -> None:
    blockbuster.deactivate()  # the tracer below holds the loop on purpose
    chunk = 64 << 10
    # One chunk a batch, a settle after each batch while more is queued.
    monkeypatch.setattr(_budget, "BATCH", chunk)
    monkeypatch.setattr(_budget, "RELEASE_EVERY", chunk)
    budget = _RecordingBudget()
    yielded = 0
    enough = threading.Event()  # ten chunks queued before the hop writes
    size_read = threading.Event()  # the loop's settle() has computed its size
    third = threading.Event()  # the thread wrote batch 2 and took batch 3
    calls = 0

    def consume(chunks: list[Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            enough.wait(10)
        elif calls == 2:
            size_read.wait(10)
        elif calls == 3:
            third.set()

    async def source() -> AsyncIterator[bytes]:
        nonlocal yielded
        for _ in range(30):
            yielded += 1
            if yielded == 10:
                enough.set()
            yield bytes(chunk)

    # The GIL may switch threads between any two bytecodes (Python 3.10 checks
    # at nearly every one; free-threaded builds need no switch): a tracer on the
    # loop's thread makes that switch happen where it matters, once.
    settle = next(
        code
        for code in _budget.pump.__code__.co_consts
        if isinstance(code, CodeType) and code.co_name == "settle"
    )
    # The line that records what was settled (``settled = ...``), after the size is read.
    stores = [
        ins.offset
        for ins in dis.get_instructions(settle)
        if ins.opname == "STORE_DEREF" and ins.argval == "settled"
    ]
    line = max(
        number
        for start, end, number in settle.co_lines()
        if number is not None and any(start <= offset < end for offset in stores)
    )

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and frame.f_lineno == line and not size_read.is_set():
            size_read.set()
            third.wait(10)
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_name == "settle" and frame.f_code.co_filename == _budget.__file__:
            return local
        return None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        await _budget.pump(source(), consume, anyio.to_thread.run_sync, budget)
    finally:
        sys.settrace(previous)
    assert third.is_set()  # the interleaving happened
    # All 30 chunks were written: the writer released them all, so the final
    # "taken from the source, never written" release gives back nothing.
    assert budget.releases[-1] == 0, budget.releases


def test_put_told_stored_during_a_sweep_keeps_its_file_within_the_grace(
    sync_fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README: a put told "stored" keeps its file while sweeps run, given a grace period
    # longer than a put takes from its last write to its link (older_than=0 asks for none).
    at_link = threading.Event()
    go = threading.Event()
    real_link = _engine.Engine._link_file
    real_clock = _engine.Engine.sweep_clock
    waited = False

    def slow_link(self: _engine.Engine, *args: Any, **kwargs: Any) -> bool:
        nonlocal waited
        if not waited:  # the put's own link: its bytes are written, it is about to commit
            waited = True
            at_link.set()
            go.wait(10)
        return real_link(self, *args, **kwargs)

    addresses: list[Any] = []
    put = threading.Thread(target=lambda: addresses.append(sync_fs.put(b"in flight")))

    def clock_then_put_returns(self: _engine.Engine) -> float | None:
        stamp = real_clock(self)
        go.set()
        put.join(10)  # the put returns "stored" while the sweep runs
        return stamp

    monkeypatch.setattr(_engine.Engine, "_link_file", slow_link)
    monkeypatch.setattr(_engine.Engine, "sweep_clock", clock_then_put_returns)
    put.start()
    assert at_link.wait(10)
    report = sync_fs.sweep([], older_than=1)
    assert addresses, "the put did not return"
    assert Path(addresses[0].abspath).exists(), report
