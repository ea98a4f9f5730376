"""A writer hashes large chunks in a thread of its own, one write behind, when chunks come fast.

The digest must be the one a single pass makes, whatever order the threads
run in; a buffer the caller refills is never hashed late; no hashing thread
outlives its writer, however the put ends.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

import async_hashfs._engine as engine_module
from async_hashfs import AsyncHashFS, FileTooLarge, SyncHashFS
from async_hashfs._budget import UploadBudget
from async_hashfs._engine import LAG_CHUNK, LAG_FROM, _Hasher

from .conftest import stored_files, temp_files

MIB = 1 << 20


class Recorder(_Hasher):
    """A hashing thread that counts its jobs, and may take its time over each."""

    __slots__ = ()
    jobs: ClassVar[list[int]] = []
    finished: ClassVar[list[int]] = []
    delay: ClassVar[float] = 0.0
    fail_on: ClassVar[int | None] = None

    def hash(self, data: bytes) -> None:
        Recorder.jobs.append(len(data))
        super().hash(data)

    def __init__(self, digest: Any) -> None:
        super().__init__(digest)
        done = self._done  # the thread waits for its first job: safe to wrap now

        class Counted(threading.Semaphore):
            def release(self, n: int = 1) -> None:
                done.release(n)
                Recorder.finished.append(1)  # after: the writer can see the job done

            def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
                return done.acquire(blocking, timeout)

        self._done = Counted()
        original = self._hash

        class Slow:
            def update(self, data: bytes) -> None:
                time.sleep(Recorder.delay)
                if Recorder.fail_on is not None and len(Recorder.finished) == Recorder.fail_on:
                    raise MemoryError("hashing failed")
                original.update(data)

        self._hash = Slow()


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    Recorder.jobs, Recorder.finished = [], []
    Recorder.delay, Recorder.fail_on = 0.0, None
    monkeypatch.setattr(engine_module, "_Hasher", Recorder)
    return Recorder


def hashing_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hashfs-hash"]


def chunks_of(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start : start + size])
        start += size
    assert start == len(data)
    return chunks


def test_a_source_ahead_of_hashing_overlaps_every_large_chunk(
    root: Path, recorder: type[Recorder]
) -> None:
    # Hashing is the slow side: each write finds the chunk before still being
    # hashed (only two stalls of the writer over 30 ms in a row would not).
    recorder.delay = 0.03
    sizes = [MIB] * 6 + [LAG_CHUNK, 100, LAG_CHUNK - 1, 3 * MIB, 7, MIB]
    data = os.urandom(sum(sizes))
    chunks = chunks_of(data, sizes)
    address = SyncHashFS(root).put(iter(chunks))
    assert address.id == hashlib.sha256(data).hexdigest()
    assert (root / address.relpath).read_bytes() == data
    # Past LAG_FROM (4 MiB) every bytes chunk of LAG_CHUNK or more went to the thread.
    expected = []
    written = 0
    for chunk in chunks:
        if written >= LAG_FROM and len(chunk) >= LAG_CHUNK:
            expected.append(len(chunk))
        written += len(chunk)
    assert recorder.jobs == expected
    assert len(recorder.finished) == len(expected)
    assert hashing_threads() == []


def test_a_source_slower_than_hashing_hashes_inline_and_probes(
    root: Path, recorder: type[Recorder]
) -> None:
    # Each chunk comes only once the thread's last job is done: the source is
    # the slow side, so most large chunks are hashed in the writer's thread.
    data = os.urandom(40 * MIB)
    chunks = chunks_of(data, [MIB] * 40)

    def slow_source() -> Iterator[bytes]:
        for chunk in chunks:
            deadline = time.monotonic() + 30
            while len(recorder.finished) < len(recorder.jobs):
                assert time.monotonic() < deadline, "the hashing thread never finished"
                time.sleep(0.0005)
            yield chunk

    address = SyncHashFS(root).put(slow_source())
    assert address.id == hashlib.sha256(data).hexdigest()
    lagable = 40 - LAG_FROM // MIB  # chunks written past LAG_FROM
    # The first two go to the thread; each is found done when the next comes,
    # so from then on one in eight does, after eight hashed inline (the 11th,
    # 20th and 29th of the 36).
    assert lagable == 36
    assert len(recorder.jobs) == 5
    assert hashing_threads() == []


def test_a_refilled_buffer_is_never_hashed_late(root: Path, recorder: type[Recorder]) -> None:
    recorder.delay = 0.002
    buffer = bytearray(MIB)
    pieces: list[bytes] = []

    def refilled() -> Iterator[Any]:
        for n in range(12):
            buffer[:] = os.urandom(MIB)
            pieces.append(bytes(buffer))
            yield buffer if n % 2 else memoryview(buffer)

    address = SyncHashFS(root).put(refilled())
    data = b"".join(pieces)
    assert address.id == hashlib.sha256(data).hexdigest()
    assert (root / address.relpath).read_bytes() == data
    assert recorder.jobs == []  # not bytes: hashed before write() returned


def test_overlap_false_never_starts_the_thread(root: Path, recorder: type[Recorder]) -> None:
    fs = SyncHashFS(root)
    data = os.urandom(12 * MIB)
    with fs._engine.writer(overlap=False) as writer:
        for chunk in chunks_of(data, [MIB] * 12):
            writer.write(chunk)
        address = writer.commit()
    assert address.id == hashlib.sha256(data).hexdigest()
    assert recorder.jobs == []


class ChargedBody:
    """A request body as the pump sees it: chunks already charged to the budget."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def take_charged(self, budget: UploadBudget) -> list[Any]:
        if not self._chunks:
            return []
        chunk = self._chunks.pop(0)
        await budget.acquire(len(chunk))
        return [chunk]


def test_a_request_body_is_hashed_without_a_second_thread(
    root: Path, recorder: type[Recorder]
) -> None:
    data = os.urandom(12 * MIB)
    fs = AsyncHashFS(root)

    async def main() -> tuple[str, list[int], str]:
        body = await fs.put(ChargedBody(chunks_of(data, [MIB] * 12)))
        jobs = list(recorder.jobs)

        async def generated() -> AsyncIterator[bytes]:
            for chunk in chunks_of(data[::-1], [MIB] * 12):
                yield chunk

        recorder.delay = 0.03
        other = await fs.put(generated())
        return body.id, jobs, other.id

    body_id, body_jobs, other_id = anyio.run(main)
    assert body_id == hashlib.sha256(data).hexdigest()
    assert body_jobs == []
    assert other_id == hashlib.sha256(data[::-1]).hexdigest()
    assert recorder.jobs  # a generator's chunks past 4 MiB: hashed in the thread
    assert set(recorder.jobs) == {MIB}


@pytest.mark.parametrize("end", ["abort", "too-large", "disk-full", "hash-fails"])
def test_no_hashing_thread_or_temp_file_outlives_a_failed_put(
    root: Path, recorder: type[Recorder], monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    recorder.delay = 0.002
    fs = SyncHashFS(root, max_size=10 * MIB if end == "too-large" else None)
    data = os.urandom(16 * MIB)
    if end == "disk-full":
        real = engine_module._write_all
        calls = {"n": 0}

        def filling(fd: int, chunk: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 8:  # past LAG_FROM, with a chunk being hashed
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(fd, chunk)

        monkeypatch.setattr(engine_module, "_write_all", filling)
    if end == "hash-fails":
        recorder.fail_on = 2
    if end == "abort":
        writer = fs._engine.writer()
        for chunk in chunks_of(data, [MIB] * 16):
            writer.write(chunk)
        assert recorder.jobs
        writer.abort()
        writer.abort()
    else:
        raised = {
            "too-large": FileTooLarge,
            "disk-full": OSError,
            "hash-fails": MemoryError,
        }[end]
        with pytest.raises(raised):
            fs.put(iter(chunks_of(data, [MIB] * 16)))
        assert recorder.jobs
    assert hashing_threads() == []
    assert temp_files(root) == []
    assert stored_files(root) == []
