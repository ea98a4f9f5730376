from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiofiles
import aiofiles.threadpool.binary
import anyio
import anyio.lowlevel
import hashfs
import pytest
from werkzeug.datastructures import FileStorage

from async_hashfs import (
    AsyncBinaryFile,
    AsyncHashFS,
    AsyncTextFile,
    FileTooLarge,
    HashAddress,
    InvalidExtension,
    InvalidSource,
    NotFound,
    ReadOnlyError,
)

from .conftest import stored_files, temp_files

pytestmark = pytest.mark.anyio

DATA = os.urandom(300_000)
DATA_ID = hashlib.sha256(DATA).hexdigest()


async def new_store(root: Path, **options: object) -> AsyncHashFS:
    """Build a store off the event loop: the constructor resolves the root on disk."""
    return await anyio.to_thread.run_sync(lambda: AsyncHashFS(root, **options))  # type: ignore[arg-type]


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await anyio.lowlevel.checkpoint()


async def test_put_bytes_get_open_delete(async_fs: AsyncHashFS) -> None:
    address = await async_fs.put(DATA, "bin")
    assert address == HashAddress(
        DATA_ID, async_fs.layout.relpath(DATA_ID, ".bin"), async_fs.idpath(DATA_ID, "bin"), False
    )
    assert (await async_fs.put(DATA, ".bin")).is_duplicate
    assert await async_fs.get(DATA_ID) == address
    assert await async_fs.exists(address.relpath)
    async with async_fs.open(address.id) as file:
        assert isinstance(file, AsyncBinaryFile)
        assert isinstance(file, aiofiles.threadpool.binary.AsyncBufferedReader)
        assert await file.read(10) == DATA[:10]
        assert await file.read() == DATA[10:]
    await async_fs.delete(address.abspath)
    assert await async_fs.get(DATA_ID) is None
    assert stored_files(async_fs.root) == []


async def test_open_awaited_and_text_mode(async_fs: AsyncHashFS) -> None:
    address = await async_fs.put("héllo\nwörld\n".encode())
    file = await async_fs.open(address.id, "r")
    assert isinstance(file, AsyncTextFile)
    assert [line async for line in file] == ["héllo\n", "wörld\n"]
    await file.close()
    assert file.closed


async def test_open_errors(async_fs: AsyncHashFS) -> None:
    with pytest.raises(NotFound):
        await async_fs.open(DATA_ID)
    with pytest.raises(FileNotFoundError):
        async with async_fs.open("../../etc/passwd"):
            pass  # pragma: no cover
    with pytest.raises(ReadOnlyError):
        async_fs.open(DATA_ID, "wb")  # type: ignore[call-overload]


@pytest.mark.parametrize("chunk_size", [1, 1000, 65_536, 1 << 20])
async def test_put_async_iterable(async_fs: AsyncHashFS, chunk_size: int) -> None:
    data = DATA[:5000] if chunk_size == 1 else DATA
    address = await async_fs.put(chunked(data, chunk_size), "dat")
    assert address.id == hashlib.sha256(data).hexdigest()
    assert Path(address.abspath).read_bytes() == data
    assert temp_files(async_fs.root) == []


async def test_put_async_files(async_fs: AsyncHashFS, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(DATA)
    async with await anyio.open_file(source, "rb") as anyio_file:
        await anyio_file.seek(123)
        assert (await async_fs.put(anyio_file)).id == DATA_ID
        assert await anyio_file.tell() == 123

    class ReadOnly:  # an async file with nothing blocking inside
        def __init__(self) -> None:
            self._data = io.BytesIO(DATA)

        async def read(self, size: int = -1) -> bytes:
            return self._data.read(size)

    assert (await async_fs.put(ReadOnly())).id == DATA_ID


async def test_put_aiofiles_file(
    async_fs: AsyncHashFS, tmp_path: Path, anyio_backend: str
) -> None:
    if anyio_backend != "asyncio":
        pytest.skip("aiofiles.open() itself needs asyncio")
    source = tmp_path / "source.bin"
    source.write_bytes(DATA)
    async with aiofiles.open(source, "rb") as file:
        assert (await async_fs.put(file, "bin")).id == DATA_ID


async def test_put_async_sources_of_every_chunk_kind(async_fs: AsyncHashFS) -> None:
    # Read by the pump without a generator around them: each kind of chunk
    # is still taken as before, and empty ones are skipped.
    class Items:  # an async iterator that is not a generator
        def __init__(self, items: list[object]) -> None:
            self._items = iter(items)

        def __aiter__(self) -> Items:
            return self

        async def __anext__(self) -> object:
            try:
                return next(self._items)
            except StopIteration:
                raise StopAsyncIteration from None

    items: list[object] = [b"", DATA[:10], "é", bytearray(DATA[10:1000]), b""]
    items += [memoryview(DATA)[1000:], b""]
    expected = DATA[:10] + "é".encode() + DATA[10:]
    address = await async_fs.put(Items(items))
    assert address.id == hashlib.sha256(expected).hexdigest()

    class ReadsViews:  # an async file whose reads are bytearrays and memoryviews
        def __init__(self) -> None:
            self._data = io.BytesIO(DATA)
            self.sizes: list[int] = []

        async def read(self, size: int = -1) -> object:
            self.sizes.append(size)
            chunk = self._data.read(size)
            return memoryview(chunk) if len(self.sizes) % 2 else bytearray(chunk)

    source = ReadsViews()
    assert (await async_fs.put(source)).id == DATA_ID
    assert set(source.sizes) == {1 << 20}  # CHUNK_SIZE


async def test_a_failed_put_closes_its_async_generator_at_once(async_fs: AsyncHashFS) -> None:
    events: list[str] = []

    async def source() -> AsyncIterator[object]:
        try:
            yield b"fine"
            yield 7
            yield b"never"
        finally:
            events.append("closed")

    with pytest.raises(InvalidSource, match="yielded int"):
        await async_fs.put(source())
    assert events == ["closed"]  # before put() raised, not at collection
    assert stored_files(async_fs.root) == [] and temp_files(async_fs.root) == []


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: DATA,
        lambda tmp: bytearray(DATA),
        lambda tmp: io.BytesIO(DATA),
        lambda tmp: [DATA[:1000], DATA[1000:]],
        lambda tmp: FileStorage(io.BytesIO(DATA), filename="a.bin"),
        lambda tmp: _write(tmp / "src", DATA),
        lambda tmp: str(_write(tmp / "src", DATA)),
    ],
    ids=["bytes", "bytearray", "BytesIO", "list", "FileStorage", "Path", "str"],
)
async def test_put_blocking_sources(async_fs: AsyncHashFS, tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    assert (await async_fs.put(make(tmp_path))).id == DATA_ID


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_put_rejects_bad_input_and_leaves_nothing(async_fs: AsyncHashFS) -> None:
    with pytest.raises(InvalidExtension):
        await async_fs.put(DATA, "../../x")
    with pytest.raises(InvalidSource, match="int"):
        await async_fs.put(42)

    async def yields_int() -> AsyncIterator[object]:
        yield b"fine"
        yield 7

    with pytest.raises(InvalidSource, match="yielded int"):
        await async_fs.put(yields_int())
    with pytest.raises(InvalidSource, match="not a file"):
        await async_fs.put("/definitely/not/here")
    assert stored_files(async_fs.root) == []
    assert temp_files(async_fs.root) == []


async def test_max_size_while_streaming(root: Path) -> None:
    fs = await new_store(root, max_size=100_000)
    with pytest.raises(FileTooLarge):
        await fs.put(chunked(DATA, 10_000))
    with pytest.raises(FileTooLarge):
        await fs.put(DATA)
    assert (await fs.put(chunked(DATA[:100_000], 7_000))).id
    assert await fs.count() == 1
    assert temp_files(root) == []


async def test_source_failing_midway_stores_nothing(async_fs: AsyncHashFS) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (3 << 20)
        await anyio.sleep(0.01)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError, match="client went away"):
        await async_fs.put(broken())
    assert stored_files(async_fs.root) == []
    assert temp_files(async_fs.root) == []


async def test_disk_error_in_writer_propagates(
    async_fs: AsyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import _engine

    real_write = _engine._write_all
    calls = 0

    def failing_write(fd: int, data: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(28, "No space left on device")
        real_write(fd, data)

    monkeypatch.setattr(_engine, "_write_all", failing_write)
    with pytest.raises(OSError, match="No space left"):
        await async_fs.put(chunked(DATA * 10, 200_000))
    assert stored_files(async_fs.root) == []
    assert temp_files(async_fs.root) == []


async def test_cancel_midstream_stores_nothing(async_fs: AsyncHashFS) -> None:
    started = anyio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"z" * 100_000
            started.set()
            await anyio.sleep(0.001)

    async with anyio.create_task_group() as tg:
        tg.start_soon(async_fs.put, endless())
        await started.wait()
        await anyio.sleep(0.05)
        assert temp_files(async_fs.root) != []
        tg.cancel_scope.cancel()
    assert stored_files(async_fs.root) == []
    assert temp_files(async_fs.root) == []


async def test_cancel_during_big_blocking_put(async_fs: AsyncHashFS, tmp_path: Path) -> None:
    source = tmp_path / "big"
    with open(source, "wb") as file:
        for _ in range(64):
            file.write(os.urandom(1 << 20))
    with anyio.move_on_after(0.02) as scope:
        await async_fs.put(source)
    assert scope.cancelled_caught
    assert stored_files(async_fs.root) == []
    assert temp_files(async_fs.root) == []


async def test_64_concurrent_puts_of_same_bytes(async_fs: AsyncHashFS) -> None:
    results: list[HashAddress] = []

    async def put() -> None:
        results.append(await async_fs.put(chunked(DATA, 50_000), "bin"))

    async with anyio.create_task_group() as tg:
        for _ in range(64):
            tg.start_soon(put)
    assert len(results) == 64
    assert sum(not r.is_duplicate for r in results) == 1
    assert stored_files(async_fs.root) == [results[0].relpath]
    assert temp_files(async_fs.root) == []


async def test_64_concurrent_distinct_puts(async_fs: AsyncHashFS) -> None:
    payloads = [os.urandom(20_000 + n) for n in range(64)]
    results: dict[int, HashAddress] = {}

    async def put(n: int) -> None:
        source = payloads[n] if n % 2 else chunked(payloads[n], 4096)
        results[n] = await async_fs.put(source)

    async with anyio.create_task_group() as tg:
        for n in range(64):
            tg.start_soon(put, n)
    assert await async_fs.count() == 64
    for n, address in results.items():
        assert address.id == hashlib.sha256(payloads[n]).hexdigest()
        assert await async_fs.verify(address.id)


async def test_walking_and_maintenance(async_fs: AsyncHashFS) -> None:
    addresses = [await async_fs.put(os.urandom(100), "x") for _ in range(10)]
    files = [path async for path in async_fs.files()]
    assert sorted(files) == sorted(a.abspath for a in addresses)
    folders = [path async for path in async_fs.folders()]
    assert sorted(folders) == sorted({os.path.dirname(a.abspath) for a in addresses})
    assert await async_fs.count() == 10
    assert await async_fs.size() == 1000
    assert await async_fs.computehash(DATA) == DATA_ID

    Path(async_fs.root, "stray.x").write_bytes(DATA)
    assert [path async for path, _ in async_fs.corrupted()] == [
        os.path.join(async_fs.root, "stray.x")
    ]
    repaired = await async_fs.repair()
    assert [a.id for _, a in repaired] == [DATA_ID]
    assert await async_fs.verify(DATA_ID)
    Path(async_fs.root, ".hashfs-tmp").mkdir()
    Path(async_fs.root, ".hashfs-tmp", "999999999-dead.tmp").write_bytes(b"x")
    report = await async_fs.gc()
    assert len(report.temp_files) == 1
    with pytest.raises(TypeError, match=r"await fs\.exists"):
        DATA_ID in async_fs  # noqa: B015


async def test_reads_what_hashfs_wrote(root: Path) -> None:
    theirs = hashfs.HashFS(root, depth=3, width=2)
    written = theirs.put(io.BytesIO(DATA), "jpg")
    ours = await new_store(root, depth=3, width=2)
    assert await ours.get(written.id) == written
    assert (await ours.put(DATA, "jpg")).is_duplicate


async def test_limiter_bounds_worker_threads(root: Path) -> None:
    fs = await new_store(root, limiter=2)
    assert fs.limiter.total_tokens == 2
    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(fs.put, os.urandom(1000 + n))
    assert await fs.count() == 20
    shared = anyio.CapacityLimiter(3)
    assert (await new_store(root, limiter=shared)).limiter is shared


async def test_source_that_reuses_its_buffer(async_fs: AsyncHashFS) -> None:
    buffer = bytearray(65536)
    pieces = []

    async def refilling() -> AsyncIterator[bytearray]:
        for n in range(64):
            buffer[:] = bytes([n]) * 65536
            pieces.append(bytes(buffer))
            yield buffer

    address = await async_fs.put(refilling())
    assert address.id == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert await async_fs.verify(address.id)


# -- issue 10 ----------------------------------------------------------------------


async def test_reads_multi_dot_names_hashfs_wrote_and_keeps_them(root: Path) -> None:
    written = hashfs.HashFS(root).put(io.BytesIO(DATA), "tar.gz")
    ours = await new_store(root)
    for ref in (written.id, written.relpath, written.abspath):
        assert await ours.get(ref) == written
        assert await ours.exists(ref)
        assert await ours.verify(ref)
        async with ours.open(ref) as file:
            assert await file.read() == DATA
    assert [item async for item in ours.corrupted()] == []
    assert await ours.repair() == []
    again = await ours.put(DATA, ".tar.gz")
    assert again == written._replace(is_duplicate=True)


@pytest.mark.parametrize("limiter", [0, -1, True, 1.5, "4"])
async def test_limiter_refuses_what_would_hang(root: Path, limiter: object) -> None:
    with pytest.raises(ValueError, match=r"limiter must be .* \(an integer >= 1\) or None"):
        await new_store(root, limiter=limiter)


async def test_put_refuses_a_fifo_at_once(async_fs: AsyncHashFS, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def unblock() -> None:
        # Frees a worker thread stuck opening the FIFO, should the check fail.
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    timer = threading.Timer(5, unblock)
    timer.start()
    try:
        with anyio.fail_after(4):
            with pytest.raises(InvalidSource, match="not a regular file"):
                await async_fs.put(fifo)
            with pytest.raises(InvalidSource, match="not a regular file"):
                await async_fs.computehash(str(fifo))
    finally:
        timer.cancel()
    assert stored_files(async_fs.root) == [] and temp_files(async_fs.root) == []


async def test_put_refuses_closed_undecodable_and_strided_sources(
    async_fs: AsyncHashFS, tmp_path: Path
) -> None:
    closed = io.BytesIO(DATA)
    closed.close()
    latin = tmp_path / "latin"
    latin.write_bytes("Grüße".encode("latin-1"))

    async def strided() -> AsyncIterator[memoryview]:
        yield memoryview(DATA)[::3]

    with open(latin, encoding="utf-8") as text:
        for src, message in [
            (closed, "closed file"),
            (text, "cannot decode"),
            (memoryview(DATA)[::2], "non-contiguous"),
            (strided(), "non-contiguous"),
        ]:
            with pytest.raises(InvalidSource, match=message):
                await async_fs.put(src)
    assert stored_files(async_fs.root) == [] and temp_files(async_fs.root) == []
