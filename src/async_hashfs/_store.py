"""``AsyncHashFS``: the store for async code, on asyncio and trio.

Every blocking step runs in a worker thread under the store's
:class:`anyio.CapacityLimiter`; one operation is one thread hop. A put from
an async source pipelines chunks to the writer: while a worker thread hashes
and writes what was queued, the loop reads on; every byte read and not yet
written is charged to the store's :class:`~async_hashfs._budget.UploadBudget`,
shared by all its puts, and reading stops while it is used up, so memory
stays bounded however many puts run at once.
"""

from __future__ import annotations

import os
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

import anyio
import anyio.to_thread
from aiofiles.threadpool.binary import AsyncBufferedReader as _AiofilesBinary
from aiofiles.threadpool.text import AsyncTextIOWrapper as _AiofilesText
from anyio import from_thread

from ._address import HashAddress
from ._base import BaseHashFS
from ._batch import SmallPuts
from ._budget import DEFAULT_UPLOAD_MEMORY, ChargedSource, UploadBudget, pump
from ._engine import Engine, GCReport, RepairReport, check_read_mode
from ._layout import normalize_extension
from ._sources import blocking_chunks, is_async_source
from ._sweep import DEFAULT_GRACE, KeepSet, RemovedCallback, SweepReport
from ._tus_store import collect_garbage

__all__ = ["AsyncBinaryFile", "AsyncFileOpener", "AsyncHashFS", "AsyncTextFile"]

T = TypeVar("T")
F = TypeVar("F", "AsyncBinaryFile", "AsyncTextFile")

_BATCH_ITEMS = 256
#: Ids read from an async iterable before they are checked and added in a worker thread.
_KEEP_BATCH = 4096
#: Bytes-like puts up to this size share thread hops (see ``_batch``).
_SMALL_PUT = 256 << 10


def _small_bytes(src: object) -> bytes | bytearray | memoryview | None:
    """Return ``src`` if it is bytes-like, contiguous and at most ``_SMALL_PUT`` bytes."""
    if isinstance(src, (bytes, bytearray)):
        return src if len(src) <= _SMALL_PUT else None
    if isinstance(src, memoryview) and src.c_contiguous and src.nbytes <= _SMALL_PUT:
        return src
    return None


class _ThreadRunner:
    """Takes the place of the asyncio loop that aiofiles' file objects call into.

    aiofiles runs each file method through ``loop.run_in_executor``; this
    runs it in an anyio worker thread instead, so the same file objects work
    on asyncio and on trio, under the store's limiter.
    """

    __slots__ = ("_limiter",)

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter

    def run_in_executor(self, executor: object, func: Callable[[], T]) -> Any:
        return anyio.to_thread.run_sync(func, limiter=self._limiter)


class AsyncBinaryFile(_AiofilesBinary):
    """An aiofiles binary reader whose calls run in anyio worker threads."""

    if TYPE_CHECKING:
        # aiofiles adds these at run time; typed here so a checker sees ``bytes``
        # whether or not the aiofiles stubs are installed.
        async def read(self, size: int = -1, /) -> bytes: ...
        async def read1(self, size: int = -1, /) -> bytes: ...
        async def readline(self, size: int | None = -1, /) -> bytes: ...
        async def readlines(self, hint: int = -1, /) -> list[bytes]: ...
        async def peek(self, size: int = 0, /) -> bytes: ...
        async def seek(self, offset: int, whence: int = 0, /) -> int: ...
        async def tell(self) -> int: ...
        async def close(self) -> None: ...

    async def __aenter__(self) -> AsyncBinaryFile:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncTextFile(_AiofilesText):
    """An aiofiles text reader whose calls run in anyio worker threads."""

    if TYPE_CHECKING:

        async def read(self, size: int | None = -1, /) -> str: ...
        async def readline(self, size: int = -1, /) -> str: ...
        async def readlines(self, hint: int = -1, /) -> list[str]: ...
        async def seek(self, offset: int, whence: int = 0, /) -> int: ...
        async def tell(self) -> int: ...
        async def close(self) -> None: ...

    async def __aenter__(self) -> AsyncTextFile:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class AsyncFileOpener(Generic[F]):
    """What :meth:`AsyncHashFS.open` returns: await it, or use it with ``async with``.

    Either way the file is opened in a worker thread; ``async with`` also
    closes it.
    """

    __slots__ = ("_file", "_mode", "_ref", "_store", "_wrapper")

    def __init__(self, store: AsyncHashFS, ref: object, mode: str, wrapper: type[F]) -> None:
        self._store = store
        self._ref = ref
        self._mode = mode
        self._wrapper: type[F] = wrapper
        self._file: F | None = None

    async def _open(self) -> F:
        store = self._store
        file: Any = await store._run(store._engine.open, self._ref, self._mode)
        # aiofiles calls ``loop.run_in_executor``: the runner puts that in an anyio thread.
        runner: Any = _ThreadRunner(store.limiter)
        return self._wrapper(file, loop=runner, executor=None)

    def __await__(self) -> Generator[Any, None, F]:
        return self._open().__await__()

    async def __aenter__(self) -> F:
        self._file = await self._open()
        return self._file

    async def __aexit__(self, *exc_info: object) -> None:
        if self._file is not None:
            await self._file.close()


class AsyncHashFS(BaseHashFS):
    """A content-addressable store for async code (asyncio or trio).

    Takes :class:`~async_hashfs.SyncHashFS`'s arguments, plus ``limiter``: an
    :class:`anyio.CapacityLimiter`, or a number of worker threads, that
    bounds how many blocking steps run at once (default: a limiter of the
    store's own with ``min(32, cpu count + 4)`` threads); and
    ``upload_memory``: the bytes that all streamed puts together may hold
    while they wait to be written (default 32 MiB; ``fs.budget`` counts them).

    Raises:
        ValueError: an argument is of the wrong kind or out of range (a
            ``limiter`` of 0 threads would make every operation wait forever;
            ``upload_memory`` must be a positive byte count).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        depth: int = 4,
        width: int = 1,
        algorithm: str = "sha256",
        fmode: int | None = 0o664,
        dmode: int = 0o755,
        *,
        max_size: int | None = None,
        fsync: bool = False,
        s3_options: Mapping[str, Any] | None = None,
        limiter: anyio.CapacityLimiter | int | None = None,
        upload_memory: int = DEFAULT_UPLOAD_MEMORY,
    ) -> None:
        if not (
            limiter is None
            or isinstance(limiter, anyio.CapacityLimiter)
            or (isinstance(limiter, int) and not isinstance(limiter, bool) and limiter >= 1)
        ):
            raise ValueError(
                "limiter must be an anyio.CapacityLimiter, a number of worker threads "
                f"(an integer >= 1) or None, not {limiter!r}"
            )
        super().__init__(
            root,
            depth,
            width,
            algorithm,
            fmode,
            dmode,
            max_size=max_size,
            fsync=fsync,
            s3_options=s3_options,
        )
        if limiter is None:
            limiter = min(32, (os.cpu_count() or 1) + 4)
        if isinstance(limiter, int):
            limiter = anyio.CapacityLimiter(limiter)
        self.limiter: anyio.CapacityLimiter = limiter
        #: What the store's streamed puts hold in memory, all together.
        self.budget = UploadBudget(upload_memory)
        # Only a local folder: object-store puts wait on the network, and must overlap.
        self._small_puts: SmallPuts[HashAddress] | None = None
        if type(self._engine) is Engine:
            self._small_puts = SmallPuts(self._run)

    async def _run(self, func: Callable[..., T], *args: Any, read_only: bool = False) -> T:
        return await anyio.to_thread.run_sync(
            func, *args, limiter=self.limiter, abandon_on_cancel=read_only
        )

    async def _iterate(self, items: Iterator[T], batch: int = _BATCH_ITEMS) -> AsyncIterator[T]:
        def take() -> list[T]:
            return [item for _, item in zip(range(batch), items, strict=False)]

        while chunk := await self._run(take, read_only=True):
            for item in chunk:
                yield item

    # -- writing ---------------------------------------------------------

    async def put(self, src: object, extension: str | None = None) -> HashAddress:
        """Store the bytes of ``src`` under their hash and return the address.

        ``src`` is bytes-like, a path, a binary or text file object, an
        iterable of bytes, an async iterable of bytes (Quart's
        ``request.body``), an async file (aiofiles, anyio) or a Werkzeug or
        Quart ``FileStorage``. A file object is read from its start and put
        back where it was. A path or a binary file is stored byte for byte; a
        text-mode file is stored as the UTF-8 of what it reads, as HashFS does
        (its newlines become ``\\n``, a ``latin-1`` file becomes UTF-8), so its
        id can differ from the path's. ``extension`` may have several dots
        (``"tar.gz"``), as with HashFS.

        Raises:
            InvalidExtension: ``extension`` is not made of safe tokens (nothing read).
            InvalidSource: ``src`` cannot be read (a ``ValueError``): a path that
                is not a regular file (a FIFO, device, socket or folder, refused
                at once), a closed file, a text file that does not decode, a
                non-contiguous memoryview.
            FileTooLarge: ``src`` went past ``max_size``.
            OSError: the disk failed. In every case nothing is stored and no
                temp file is left.
        """
        ext = normalize_extension(extension)
        # Bytes first: an isinstance check against a Protocol costs a small put
        # more than its hashing (37 us on Python 3.11), and bytes are never a stream.
        if self._small_puts is not None:
            data = _small_bytes(src)
            if data is not None:
                return await self._small_puts.put(lambda: self._engine.put((data,), ext))
        if isinstance(src, ChargedSource) or is_async_source(src):
            return await self._put_stream(src, ext)
        return await self._run(self._put_blocking, src, ext)

    def _put_blocking(self, src: object, extension: str) -> HashAddress:
        with blocking_chunks(src) as chunks:
            return self._engine.put(chunks, extension, checkpoint=from_thread.check_cancelled)

    async def _put_stream(self, src: object, extension: str) -> HashAddress:
        # A request body is read by the event loop, slower than one thread hashes
        # it: a second hashing thread would only compete with the loop for the GIL.
        overlap = not isinstance(src, ChargedSource)
        writer = await self._run(partial(self._engine.writer, overlap=overlap))
        try:
            await self._pump(src, writer.writelines, self._engine.max_size)
            return await self._run(writer.commit, extension)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._run(writer.abort)
            raise

    async def _pump(
        self,
        src: object,
        consume: Callable[[list[Any]], object],
        limit: int | None = None,
    ) -> None:
        """Hand the bytes of the async source ``src`` to ``consume`` in worker threads.

        Within the store's upload budget: see :func:`async_hashfs._budget.pump`.
        ``limit`` bounds the total size (:class:`FileTooLarge`, checked as
        bytes arrive).
        """
        await pump(src, consume, self._run, self.budget, limit)

    # -- reading ---------------------------------------------------------

    async def get(self, ref: object) -> HashAddress | None:
        """Return the address of ``ref`` (an id, relpath or abspath), or ``None``."""
        return await self._run(self._engine.get, ref, read_only=True)

    @overload
    def open(
        self, ref: object, mode: Literal["rb", "br"] = "rb"
    ) -> AsyncFileOpener[AsyncBinaryFile]: ...
    @overload
    def open(
        self, ref: object, mode: Literal["r", "rt", "tr"]
    ) -> AsyncFileOpener[AsyncTextFile]: ...
    @overload
    def open(
        self, ref: object, mode: str
    ) -> AsyncFileOpener[AsyncBinaryFile] | AsyncFileOpener[AsyncTextFile]: ...
    def open(
        self, ref: object, mode: str = "rb"
    ) -> AsyncFileOpener[AsyncBinaryFile] | AsyncFileOpener[AsyncTextFile]:
        """Open a stored file for reading: ``await fs.open(ref)`` or ``async with``.

        Gives an aiofiles file (:class:`AsyncBinaryFile`, or
        :class:`AsyncTextFile` for ``"r"``) whose calls run in worker threads.

        Raises:
            ReadOnlyError: ``mode`` would write (raised at once).
            NotFound: no stored file answers to ``ref`` (a ``FileNotFoundError``).
        """
        check_read_mode(mode)
        if "b" in mode:
            return AsyncFileOpener(self, ref, mode, AsyncBinaryFile)
        return AsyncFileOpener(self, ref, mode, AsyncTextFile)

    async def exists(self, ref: object) -> bool:
        """Return whether ``ref`` names a stored file."""
        return await self._run(self._engine.resolve, ref, read_only=True) is not None

    def __contains__(self, ref: object) -> bool:
        raise TypeError("'in' cannot wait for the disk: use 'await fs.exists(ref)'")

    async def delete(self, ref: object) -> None:
        """Remove ``ref`` and the folders it leaves empty; no error when missing."""
        await self._run(self._engine.delete, ref)

    async def files(self) -> AsyncIterator[str]:
        """Yield the absolute path of every stored file, a batch per thread hop."""
        async for path in self._iterate(self._engine.files()):
            yield path

    async def folders(self) -> AsyncIterator[str]:
        """Yield every folder that holds files."""
        async for path in self._iterate(self._engine.folders()):
            yield path

    async def count(self) -> int:
        """Return how many files the store holds."""
        return await self._run(self._engine.count, read_only=True)

    async def size(self) -> int:
        """Return the total size in bytes of the stored files."""
        return await self._run(self._engine.size, read_only=True)

    async def computehash(self, src: object) -> str:
        """Return the hex digest of ``src`` (any blocking ``put()`` source)."""

        def compute() -> str:
            with blocking_chunks(src) as chunks:
                return self._engine.computehash(chunks)

        return await self._run(compute, read_only=True)

    async def verify(self, ref: object) -> bool:
        """Return whether the bytes of ``ref`` still hash to its address.

        Raises:
            NotFound: no stored file answers to ``ref``.
        """
        return await self._run(self._engine.verify, ref, read_only=True)

    async def corrupted(self, extensions: bool = True) -> AsyncIterator[tuple[str, HashAddress]]:
        """Yield ``(path, expected address)`` for each file not at its content address."""
        async for item in self._iterate(self._engine.corrupted(extensions), batch=1):
            yield item

    async def repair(
        self, extensions: bool = True, foreign: Literal["move", "refuse"] = "move"
    ) -> RepairReport:
        """Move misplaced files to their content address; return what moved.

        The answer is a list of ``(old path, address)``, as HashFS returns,
        with ``refused`` (files left where they are, and why) and ``relaid``
        (files moved from another layout's addresses). ``foreign="refuse"``
        leaves files at another layout's addresses where they are.
        """
        return await self._run(self._engine.repair, extensions, foreign)

    async def remove_empty(self, folder: str) -> None:
        """Remove ``folder`` and its parents while empty, stopping at the root."""
        await self._run(self._engine.remove_empty, folder)

    async def gc(self, older_than: float | None = None) -> GCReport:
        """Remove temp files of dead writers, expired resumable uploads and empty folders.

        ``older_than`` (seconds) is used as given; ``None`` is the backend's
        default: 0 on a folder (locks protect live writers), an hour on S3.
        Resumable (tus) uploads go once past their own expiry, counted apart
        in the report's ``partial_uploads`` and ``partial_bytes``.
        """
        return await self._run(collect_garbage, self._engine, older_than)

    async def sweep(
        self,
        keep: Iterable[str] | AsyncIterable[str],
        older_than: float = DEFAULT_GRACE,
        *,
        dry_run: bool = False,
        on_remove: RemovedCallback | None = None,
    ) -> SweepReport:
        """Remove every stored file whose id is not in ``keep`` and older than ``older_than``.

        ``keep`` is an iterable or async iterable of ids (``HashAddress.id``),
        read once: the rows of a database query can stream straight in. A
        blocking iterable is read in a worker thread (a ``sqlite3`` cursor
        then needs ``check_same_thread=False``; an async driver such as
        ``aiosqlite`` needs nothing). See
        :meth:`SyncHashFS.sweep` for the rules; ``on_remove`` is called in a
        worker thread. Cancelling stops the sweep between folders (what was
        removed stays removed).

        Raises:
            InvalidId: an id in ``keep`` is not an id of this store (a
                ``ValueError`` naming it); nothing was removed.
            ValueError: ``older_than`` is not a number of seconds >= 0.
            TypeError: ``keep`` is not an iterable of ids.
            SweepRunning: (S3) another sweep of the store is running, or this
                one lost its record (its lease lapsed, or someone removed or
                changed ``.hashfs-tmp/sweep.json``); a ``RuntimeError``.
        """
        ids, grace = self._begin_sweep(older_than)
        cutoff = await self._run(self._sweep_cutoff, grace)
        if isinstance(keep, AsyncIterable):
            await self._read_keep(keep, ids)
        else:
            await self._run(ids.update, keep)
        return await self._run(
            self._engine.sweep, ids, cutoff, dry_run, on_remove, from_thread.check_cancelled
        )

    async def _read_keep(self, keep: AsyncIterable[str], ids: KeepSet) -> None:
        batch: list[str] = []
        async for id in keep:
            batch.append(id)
            if len(batch) >= _KEEP_BATCH:
                await self._run(ids.update, batch)
                batch = []
        if batch:
            await self._run(ids.update, batch)
