"""The only code that touches the disk: blocking, thread-safe, no event loop.

A :class:`BlobWriter` hashes bytes while it writes them to a temp file on the
root's own file system, then commits with one hard link into the content
address: the address holds nothing until the link, and the link is atomic.
Two writers of the same bytes race on the link; the loser sees
``FileExistsError`` and reports a duplicate, so exactly one caller ever gets
``is_duplicate=False``.

Where the OS allows it (Linux, ``O_TMPFILE``) the temp file has no name at
all: it is opened in the root and linked straight into its address, so a
killed writer leaves nothing, and no listing (ours, or an old HashFS's
``files()`` and ``repair()``) can see a file still being written. Elsewhere
it is a named file in the temp folder, locked while its writer lives
(``flock``, where there is one) so that :meth:`Engine.gc` can tell abandoned
ones apart; the temp folder goes away whenever it empties.

Every path in the store is reached one folder at a time, by descriptor and
never through a symlink (:mod:`._folder`), so a folder swapped for a symlink
midway cannot lead a read, listing, link, chmod or delete out of the root.
A folder that a concurrent delete removes as a commit makes it is made
again, with a growing random wait, for as long as that race keeps being lost
(:data:`_RACE_PATIENCE`), not a fixed number of times.

A file with more than one hard link may be the same file as one outside the
store. Its mode is never changed, :meth:`Engine.repair` leaves it where it is
and reports it, and it is read (``open``, serving) only once its bytes were
found to hash to its address.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import importlib
import logging
import os
import random
import re
import secrets
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from queue import SimpleQueue
from types import ModuleType
from typing import IO, Any, Literal

from . import _folder
from ._address import HashAddress
from ._exceptions import CorruptFile, FileTooLarge, InvalidSource, NotFound, ReadOnlyError
from ._folder import Folder, FolderPath
from ._layout import _EXTENSION, _HEX, MAX_EXTENSION, TEMP_DIRNAME, Layout, address_shape
from ._sweep import KeepSet, RemovedCallback, SweepReport

__all__ = [
    "BlobWriter",
    "Engine",
    "GCReport",
    "RepairReport",
    "StoredBlob",
    "check_read_mode",
    "foreign_layout",
]

logger = logging.getLogger("async_hashfs")

#: Read size for files and the unit of work between cancellation checks.
CHUNK_SIZE = 1 << 20
#: A writer hashes ``bytes`` chunks of at least LAG_CHUNK bytes in a thread of its
#: own, one write behind, once LAG_FROM bytes are written (a smaller file is not
#: worth the thread): see :class:`BlobWriter`.
LAG_CHUNK = 256 << 10
LAG_FROM = 4 << 20
#: A writer whose hashing thread was found done with its last chunk this many
#: times in a row hashes in its own thread instead (chunks come slower than
#: they are hashed), but for one chunk in _PROBE_EVERY, to see whether that changed.
_IDLE_SEEN = 2
_PROBE_EVERY = 8
_TEMP_SUFFIX = ".tmp"
#: In the temp name of a file a sweep took: ``<pid>-sweep-<token>-<n>-<relpath>.tmp``,
#: the relpath's separators as ``_SWEPT_SEP`` (in no shard, id or extension).
_SWEPT_MARK = "-sweep-"
_SWEPT_SEP = "~"
#: gc() leaves an empty temp file this young alone (its writer may be about to lock it).
_FRESH = 2.0
#: Without ``flock``, gc() also removes a live process's temp file untouched this long.
_STALE = 24 * 3600.0
_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}
#: What ``open(dir, O_TMPFILE)`` fails with where the file system or kernel lacks it.
_TMPFILE_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL}
#: Seconds a sweep waits for the file system's clock to tick (see Engine.sweep_clock)...
_CLOCK_PATIENCE = 0.05
#: ...restamping its probe this often.
_CLOCK_STEP = 0.0005
#: Seconds a commit goes on remaking folders that concurrent deletes keep removing.
_RACE_PATIENCE = 60.0
#: Attempts made at once after a lost race, before the waits start.
_EAGER_ATTEMPTS = 3
#: The random wait after a lost race grows from up to this (seconds)...
_FIRST_WAIT = 0.0002
#: ...doubling up to this.
_LONGEST_WAIT = 0.02
#: Versions of shared files (more than one link) whose bytes were checked, per engine.
_VOUCHED_MAX = 4096

# Flags and calls some platforms lack (Windows: no fcntl, O_NOFOLLOW,
# O_NONBLOCK or O_DIRECTORY, and O_BINARY is needed; macOS: no O_TMPFILE).
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
#: Opening a stored file: a FIFO swapped in must not block the open.
_READ_FLAGS = os.O_RDONLY | _O_NONBLOCK | _O_BINARY


def _import_fcntl() -> ModuleType | None:
    try:
        return importlib.import_module("fcntl")
    except ImportError:
        return None


_fcntl = _import_fcntl()


def check_read_mode(mode: str) -> None:
    """Raise :class:`ReadOnlyError` unless ``mode`` only reads (``rb``, ``r``, ``rt``)."""
    if (
        not isinstance(mode, str)
        or set(mode) - set("rbt")
        or mode.count("r") != 1
        or ("b" in mode and "t" in mode)
        or len(set(mode)) != len(mode)
    ):
        raise ReadOnlyError(str(mode))


class _LinkUnsupported(Exception):
    """The file system cannot hard-link this file; the caller names it another way."""


class _Patience:
    """Paces the attempts of a step that races concurrent deletes.

    No fixed number of attempts: the first few follow at once, then each
    waits a random time that doubles up to :data:`_LONGEST_WAIT`, so that
    racers fall out of step; only a race lost for :data:`_RACE_PATIENCE`
    seconds on end gives up.
    """

    __slots__ = ("_attempts", "_deadline", "_path")

    def __init__(self, path: str) -> None:
        self._path = path
        self._attempts = 0
        self._deadline: float | None = None

    def wait(self) -> None:
        """Wait before the next attempt.

        Raises:
            FileNotFoundError: the race has been lost for too long.
        """
        self._attempts += 1
        if self._attempts <= _EAGER_ATTEMPTS:
            return
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + _RACE_PATIENCE
        elif now > self._deadline:
            raise FileNotFoundError(
                errno.ENOENT,
                f"folder kept disappearing for {_RACE_PATIENCE:g} s: something removes it "
                f"each time it is made ({self._attempts} attempts)",
                self._path,
            )
        doublings = min(self._attempts - _EAGER_ATTEMPTS, 16)
        time.sleep(random.random() * min(_LONGEST_WAIT, _FIRST_WAIT * 2**doublings))


def _proc_fd(fd: int) -> str:
    """The /proc path that names the file open as ``fd`` (Linux)."""
    return f"/proc/self/fd/{fd}"


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _version(info: os.stat_result) -> tuple[int, int, int, int, int]:
    # A new link, a chmod or a write changes st_ctime: any of them ends a vouching.
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _shared_reason(links: int) -> str:
    return (
        f"it has {links} hard links, so it may be the same file as one outside the store: "
        "left where it is, its mode untouched"
    )


def foreign_layout(
    layout: Layout, relpath: str, id: str, rehash: Callable[[str], str]
) -> str | None:
    """Say why the misplaced file at ``relpath`` belongs to another store, or ``None``.

    ``id`` is what its bytes hash to with ``layout``'s algorithm and
    ``rehash(algorithm)`` what they hash to with another. It belongs to
    another store when it sits at a content address of another layout
    (another depth, width or digest length), or at an address of this
    layout that its bytes hash to with another algorithm of the same digest
    length: the files of a second store sharing the root, or of this one
    before its settings changed.
    """
    shape = layout.foreign_shape(relpath)
    if shape is not None:
        candidates = sorted(shape.algorithms, key=lambda a: a != layout.algorithm)
        found = next(
            (a for a in candidates if (id if a == layout.algorithm else rehash(a)) == shape.id),
            None,
        )
        return (
            f"it sits at a content address of another layout ({shape.describe(found)}), "
            f"not of this store's ({layout.describe()})"
        )
    parsed = layout.parse_address(relpath)
    if parsed is None or parsed[0] == id:
        return None
    shape = address_shape(relpath)
    for algorithm in shape.algorithms if shape is not None else ():
        if algorithm != layout.algorithm and rehash(algorithm) == parsed[0]:
            return (
                f"its bytes hash to its address with {algorithm}: it is at a content "
                f"address of another layout (depth {layout.depth}, width {layout.width}, "
                f"{algorithm}), not of this store's ({layout.describe()})"
            )
    return None


class RepairReport(list[tuple[str, HashAddress]]):
    """What a repair did: the ``(old path, address)`` of each file moved, as HashFS returns.

    ``refused`` holds ``(path, reason)`` for each misplaced file left where
    it is; ``relaid`` the ``(old path, reason)`` of the moved files that sat
    at another layout's content addresses (see :func:`foreign_layout`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[tuple[str, str]] = []
        self.relaid: list[tuple[str, str]] = []

    def log(self, layout: Layout) -> None:
        """Warn, on the ``async_hashfs`` logger, of what a caller may not have expected."""
        if self.relaid:
            logger.warning(
                "repair moved %d files from another layout's content addresses into this "
                "store's (%s); if another store uses that layout in %s, they are gone from it. "
                "The first: %s: %s",
                len(self.relaid),
                layout.describe(),
                layout.root,
                *self.relaid[0],
            )
        if self.refused:
            logger.warning(
                "repair left %d misplaced files where they are. The first: %s: %s",
                len(self.refused),
                *self.refused[0],
            )


class StoredBlob:
    """A stored file opened for serving: read by position, then closed.

    The object-store engine has its own with the same methods, so the
    serving rules never touch a file system themselves.
    """

    __slots__ = ("_lock", "extension", "file", "id", "mtime", "relpath", "size")

    def __init__(
        self, file: IO[bytes], relpath: str, id: str, extension: str, size: int, mtime: float
    ) -> None:
        self.file = file
        self.relpath = relpath
        self.id = id
        self.extension = extension
        self.size = size
        self.mtime = mtime
        self._lock = threading.Lock()

    def pread(self, size: int, offset: int) -> bytes:
        """Return up to ``size`` bytes from ``offset``; safe from several threads."""
        pread = getattr(os, "pread", None)
        if pread is not None:
            data: bytes = pread(self.file.fileno(), size, offset)
            return data
        with self._lock:  # no pread (Windows): the position is shared state
            self.file.seek(offset)
            return self.file.read(size) or b""

    @property
    def closed(self) -> bool:
        return self.file.closed

    def close(self) -> None:
        self.file.close()


@dataclass
class GCReport:
    """What :meth:`Engine.gc` removed."""

    temp_files: list[str] = field(default_factory=list)
    temp_bytes: int = 0
    folders: list[str] = field(default_factory=list)
    #: Incomplete multipart uploads aborted (object stores).
    uploads: list[str] = field(default_factory=list)
    #: Resumable (tus) uploads removed past their expiry, by id, and the bytes they held.
    partial_uploads: list[str] = field(default_factory=list)
    partial_bytes: int = 0


class _Hasher:
    """A thread of one writer's own that hashes what the writer has written, one write behind.

    While it hashes a large chunk, the writer's thread writes the next one:
    on a fast disk hashing is most of a large put, and the two overlap.
    Jobs run in the order given, one at a time (the writer waits for each
    before it gives the next), so the digest is the one a single pass makes.
    A failure to hash is kept: every later :meth:`wait` raises it again.

    Raises:
        RuntimeError: no thread could be started.
    """

    __slots__ = ("_done", "_failure", "_hash", "_jobs", "_pending", "_pid", "_thread")

    def __init__(self, digest: Any) -> None:
        self._hash = digest
        self._jobs: SimpleQueue[bytes | None] = SimpleQueue()
        self._done = threading.Semaphore(0)
        self._pending = False
        self._failure: BaseException | None = None
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="hashfs-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            data = self._jobs.get()
            if data is None:
                return
            try:
                if self._failure is None:
                    self._hash.update(data)
            except BaseException as exc:  # MemoryError: the writer raises it
                self._failure = exc
            finally:
                data = None  # not held while waiting for the next job
                self._done.release()

    def _forked(self) -> bool:
        # A child of fork() has no such thread: what it was hashing is lost.
        return os.getpid() != self._pid

    def hash(self, data: bytes) -> None:
        """Start hashing ``data`` (bytes: nobody can change them meanwhile)."""
        self._jobs.put(data)
        self._pending = True

    def busy(self) -> bool | None:
        """Whether the last job is still being hashed (``None``: none given since last asked)."""
        if not self._pending:
            return None
        if self._done.acquire(blocking=False):
            self._pending = False
            return False
        return True

    def wait(self) -> None:
        """Return once everything given is hashed.

        Raises:
            BaseException: what hashing raised (each time, once it did).
            RuntimeError: called in a child of ``fork()`` while a job ran.
        """
        if self._pending:
            if self._forked():
                self._failure = RuntimeError(
                    "a file being stored was hashing when this process forked: store it again"
                )
            else:
                self._done.acquire()
                self._pending = False
        if self._failure is not None:
            raise self._failure

    def stop(self, wait: bool = True) -> None:
        """End the thread once it has done its last job; ``wait`` for that.

        Told first, so the thread ends even if the wait is interrupted.
        """
        self._jobs.put(None)
        if wait and not self._forked():
            self._thread.join()


class BlobWriter:
    """One file on its way into the store.

    Write bytes with :meth:`write`, then :meth:`commit` it under its hash, or
    :meth:`abort`. Used as a context manager it aborts unless committed, so
    any exception leaves no temp file behind.

    Past :data:`LAG_FROM` bytes (unless made with ``overlap=False``), while
    chunks come faster than they can be hashed, a ``bytes`` chunk of at least
    :data:`LAG_CHUNK` bytes is hashed by a thread of the writer's own while the
    next one is written (:class:`_Hasher`). Where chunks come slower (read off
    the network), hashing here costs no time and a second busy thread would
    only take the GIL from the event loop: once the thread is found idle
    :data:`_IDLE_SEEN` times in a row, only every :data:`_PROBE_EVERY` th
    chunk goes to it, to find out whether the source got ahead. Other chunks (a buffer the caller
    refills) are hashed before :meth:`write` returns.
    """

    __slots__ = ("_engine", "_fd", "_hash", "_hasher", "_idle", "_inline", "_name", "size")

    def __init__(self, engine: Engine, *, overlap: bool = True) -> None:
        self._engine = engine
        self._hash = hashlib.new(engine.layout.algorithm)
        self._hasher: _Hasher | None = None
        #: How many times in a row ``_hasher`` was found done with its last
        #: chunk when the next came; None: never overlap.
        self._idle: int | None = 0 if overlap else None
        #: Large chunks hashed here since the last one given to ``_hasher``.
        self._inline = 0
        self.size = 0
        # ``_name`` (in the temp folder) is None for a temp file without one (O_TMPFILE).
        self._fd, self._name = engine._create_temp()

    def write(self, data: Any) -> None:
        """Hash and write one bytes-like chunk.

        Raises:
            FileTooLarge: when the file would grow past the store's ``max_size``.
        """
        nbytes = memoryview(data).nbytes
        size = self.size + nbytes
        max_size = self._engine.max_size
        if max_size is not None and size > max_size:
            raise FileTooLarge(max_size)
        hasher = self._hasher
        if nbytes >= LAG_CHUNK and type(data) is bytes and self._idle is not None:
            if hasher is None and self.size >= LAG_FROM:
                hasher = self._start_hasher()
            if hasher is not None:
                # Still hashing the chunk before, this one came before it was
                # hashed: overlap. Found done twice in a row, the source is the
                # slower side: hash here, giving the thread a chunk now and then.
                busy = hasher.busy()
                if busy is not None:
                    self._idle = 0 if busy else self._idle + 1
                _write_all(self._fd, data)
                hasher.wait()  # the chunk before is hashed first, in order
                if self._idle < _IDLE_SEEN or self._inline >= _PROBE_EVERY:
                    self._inline = 0
                    hasher.hash(data)
                else:
                    self._inline += 1
                    self._hash.update(data)
                self.size = size
                return
        if hasher is not None:
            hasher.wait()
        self._hash.update(data)
        _write_all(self._fd, data)
        self.size = size

    def _start_hasher(self) -> _Hasher | None:
        try:
            hasher = _Hasher(self._hash)
        except RuntimeError:  # no thread to be had (a limit, or shutting down): hash here
            self._idle = None
            return None
        self._hasher = hasher
        return hasher

    def writelines(self, chunks: Iterable[Any]) -> None:
        """Write several chunks in order, small ones joined up to :data:`CHUNK_SIZE`.

        One hash update and one write per joined run instead of one per
        chunk: each of those lets go of the GIL and must win it back, which
        costs most while the event loop's thread is busy parsing requests.

        Raises:
            FileTooLarge: when the file would grow past the store's ``max_size``.
        """
        run: list[Any] = []
        size = 0
        for chunk in chunks:
            nbytes = memoryview(chunk).nbytes
            if run and size + nbytes > CHUNK_SIZE:
                self.write(run[0] if len(run) == 1 else b"".join(run))
                run, size = [], 0
            run.append(chunk)
            size += nbytes
        if run:
            self.write(run[0] if len(run) == 1 else b"".join(run))

    def commit(self, extension: str = "") -> HashAddress:
        """Link the written bytes into their content address and drop the temp file.

        ``extension`` must already be normalized. Returns the address, with
        ``is_duplicate=True`` when the address already held the file.

        Raises:
            NotADirectoryError: a folder on the way is a symlink or a file.
            FileExistsError: the address is taken by something not a file.
            OSError: the disk failed.
        """
        engine = self._engine
        hasher = self._hasher
        if hasher is not None:
            hasher.wait()  # raises, every time, if hashing failed: no id from a partial hash
            self._hasher = None
            hasher.stop()
        id = self._hash.hexdigest()
        relpath = engine.layout.relpath(id, extension)
        try:
            if engine.fsync:
                os.fsync(self._fd)
            is_duplicate: bool | None = None
            if self._name is None:
                with contextlib.suppress(_LinkUnsupported):
                    is_duplicate = engine._link_file(self._fd, relpath)
            if is_duplicate is None:
                name = self._name if self._name is not None else self._give_name()
                is_duplicate = engine._link_temp(name, self._fd, relpath)
        finally:
            self.abort()
        return HashAddress(id, relpath, engine.layout.abspath(relpath), is_duplicate)

    def _give_name(self) -> str:
        """Copy the nameless temp file into a named one, for file systems that cannot link it.

        Returns the new temp file's name.
        """
        engine = self._engine
        engine._anonymous = False
        fd, name = engine._create_named_temp()
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            while chunk := os.read(self._fd, CHUNK_SIZE):
                _write_all(fd, chunk)
            if engine.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            engine._remove_temp(name)
            raise
        os.close(self._fd)
        self._fd, self._name = fd, name
        return name

    def abort(self) -> None:
        """Close and remove the temp file; safe to call more than once."""
        hasher, self._hasher = self._hasher, None
        try:
            if hasher is not None:
                hasher.stop()
        finally:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                if self._name is not None:
                    self._engine._remove_temp(self._name)

    def __del__(self) -> None:
        # Dropped without commit() or abort(): at least its hashing thread ends.
        hasher = getattr(self, "_hasher", None)
        if hasher is not None:
            hasher.stop(wait=False)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


class Engine:
    """All disk work of one store. Every method blocks; all are thread-safe."""

    def __init__(
        self,
        layout: Layout,
        *,
        fmode: int | None = 0o664,
        dmode: int = 0o755,
        max_size: int | None = None,
        fsync: bool = False,
    ) -> None:
        self.layout = layout
        self.fmode = fmode
        self.dmode = dmode
        self.max_size = max_size
        self.fsync = fsync
        #: Whether nameless temp files work here; ``None`` until the first put finds out.
        self._anonymous: bool | None = None
        #: Whether /proc names open files (asked once: one stat less per put).
        self._proc: bool | None = None
        #: Shared files found to hold the bytes their address names (see _check_bytes).
        self._vouched: OrderedDict[tuple[int, int, int, int, int], None] = OrderedDict()
        self._vouched_lock = threading.Lock()

    # -- writing ---------------------------------------------------------

    def writer(self, *, overlap: bool = True) -> BlobWriter:
        """Start a new temp file (nameless where the OS allows it).

        ``overlap=False``: never hash in a second thread (the caller's source
        is read by a busy event loop, see :class:`BlobWriter`).
        """
        return BlobWriter(self, overlap=overlap)

    def put(
        self,
        chunks: Iterable[Any],
        extension: str = "",
        checkpoint: Callable[[], None] | None = None,
    ) -> HashAddress:
        """Store the bytes of ``chunks`` in one pass; ``extension`` is normalized.

        ``checkpoint`` is called between chunks and may raise to abandon the
        put (the async store passes a cancellation check).
        """
        with self.writer() as writer:
            for chunk in chunks:
                if checkpoint is not None:
                    checkpoint()
                writer.write(chunk)
            return writer.commit(extension)

    def commit_hashed(
        self, fd: int, folder: Folder, name: str, id: str, extension: str = ""
    ) -> HashAddress:
        """Link a finished file whose hash is known into its content address.

        For files written elsewhere than a :class:`BlobWriter` (a resumable
        upload's partial file): ``fd`` is the file open, ``name`` its name in
        ``folder`` (on the root's file system), ``id`` the hex digest of its
        bytes with the store's algorithm (the caller vouches for it), and
        ``extension`` normalized. Commits as a writer does: one atomic link,
        the race between writers of the same bytes decided by the link, so
        ``is_duplicate`` is exact. The file's own name stays; the caller
        removes it. Without hard links the file is renamed instead.

        Raises:
            NotADirectoryError: a folder on the way is a symlink or a file.
            FileExistsError: the address is taken by something not a file.
            OSError: the disk failed.
        """
        relpath = self.layout.relpath(id, extension)
        if self.fsync:
            os.fsync(fd)
        try:
            is_duplicate = self._link_file(fd, relpath, folder, name)
        except _LinkUnsupported:
            is_duplicate = self._rename_into(folder, name, relpath)
        return HashAddress(id, relpath, self.layout.abspath(relpath), is_duplicate)

    def _create_temp(self) -> tuple[int, str | None]:
        """Open a new temp file: ``(fd, None)`` without a name where possible, else named."""
        if self._anonymous is not False:
            fd = self._create_anonymous_temp()
            if fd is not None:
                return fd, None
        return self._create_named_temp()

    def _create_anonymous_temp(self) -> int | None:
        o_tmpfile = getattr(os, "O_TMPFILE", None)
        if o_tmpfile is None:
            self._anonymous = False
            return None
        # In the root: on the root's file system, and never listed.
        flags = o_tmpfile | os.O_RDWR | _O_CLOEXEC
        patience = _Patience(self.layout.root)
        while True:
            try:
                fd = os.open(self.layout.root, flags, 0o600)
                break
            except FileNotFoundError:
                # With the default mode, as HashFS makes it (dmode is for shard folders).
                with contextlib.suppress(FileExistsError):
                    os.makedirs(self.layout.root)
                patience.wait()
            except OSError as exc:
                if exc.errno not in _TMPFILE_UNSUPPORTED:
                    raise
                self._anonymous = False
                return None
        try:
            if self._anonymous is None:
                # The link step names the file through /proc; see that it is there.
                try:
                    os.stat(_proc_fd(fd))
                except OSError:
                    self._anonymous = False
                    os.close(fd)
                    return None
                self._anonymous = True
            if self.fmode is not None:
                os.fchmod(fd, self.fmode)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _temp_folder(self, make: bool = False) -> FolderPath:
        """Open the temp folder (making it with ``make``), never through a symlink."""
        return FolderPath.open(self.layout.root, [TEMP_DIRNAME], self.dmode if make else None)

    def _create_named_temp(self) -> tuple[int, str]:
        name = f"{os.getpid()}-{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY
        patience = _Patience(self.layout.temp_dir)
        while True:
            try:
                with self._temp_folder(make=True) as temp:
                    fd = temp.leaf.open(name, flags, 0o600)
                    path = temp.leaf.join(name)
                break
            except FileNotFoundError:
                # Just removed by a writer that left it empty: make it again.
                patience.wait()
        try:
            if _fcntl is not None:
                # A live writer holds this lock; gc() only removes unlocked temp files.
                # Blocking: gc() may hold it for a moment while it looks.
                _fcntl.flock(fd, _fcntl.LOCK_EX)
            if self.fmode is not None:
                self._set_mode(fd, path, self.fmode)
        except BaseException:
            os.close(fd)
            self._remove_temp(name)
            raise
        return fd, name

    @staticmethod
    def _set_mode(fd: int, path: str, mode: int) -> None:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        else:  # Windows before Python 3.13
            os.chmod(path, mode)

    def _remove_temp(self, name: str) -> None:
        """Remove a named temp file, and the temp folder when that leaves it empty."""
        try:
            temp = self._temp_folder()
        except OSError:
            return
        with temp:
            with contextlib.suppress(FileNotFoundError):
                temp.leaf.unlink(name)
            # Fails while other writers have files there; a writer that finds the
            # folder gone makes it again (see _create_named_temp).
            temp.remove_empty()

    def _link_temp(self, name: str, fd: int, relpath: str) -> bool:
        """Give the named temp file ``name`` (open as ``fd``) the address ``relpath``.

        Returns whether the address was taken already.
        """
        with self._temp_folder() as temp:
            try:
                return self._link_file(fd, relpath, temp.leaf, name)
            except _LinkUnsupported:
                return self._rename_into(temp.leaf, name, relpath)

    def _link_file(
        self, fd: int, relpath: str, folder: Folder | None = None, name: str | None = None
    ) -> bool:
        """Link the file open as ``fd`` into ``relpath`` unless taken; return whether it was.

        Through /proc where there is one, which links exactly that file
        whatever happens to its names meanwhile; elsewhere by its ``name`` in
        ``folder``, once seen to still be that file.

        Raises:
            _LinkUnsupported: the file system has no hard links, or the file
                has neither /proc nor a name to be linked by.
        """
        source = _proc_fd(fd)
        if self._proc is None:
            self._proc = os.path.exists(source)
        if _folder.DIR_FD and self._proc:

            def link_proc(target: Folder, target_name: str) -> None:
                # With dst_dir_fd this is linkat(..., AT_SYMLINK_FOLLOW): it links
                # the file /proc names, not the /proc entry (plain link() gives EXDEV).
                os.link(source, target_name, dst_dir_fd=target.fd, follow_symlinks=True)

            return self._commit(link_proc, relpath, lambda: os.path.exists(source))
        if folder is None or name is None:
            raise _LinkUnsupported
        identity = _identity(os.fstat(fd))

        def is_there() -> bool:
            try:
                return _identity(folder.lstat(name)) == identity
            except FileNotFoundError:
                return False

        def link_name(target: Folder, target_name: str) -> None:
            if not is_there():
                raise FileNotFoundError(
                    errno.ENOENT, "replaced before its link", folder.join(name)
                )
            _folder.link(folder, name, target, target_name)

        return self._commit(link_name, relpath, is_there)

    def _commit(
        self, link: Callable[[Folder, str], None], relpath: str, source_exists: Callable[[], bool]
    ) -> bool:
        """Run ``link(folder, name)`` to give a file the address ``relpath`` unless taken.

        Returns whether ``relpath`` was taken. ``folder`` is the address's
        folder, open; missing folders are made. When a concurrent delete
        removes one midway, it is made again, as long as that takes (see
        :class:`_Patience`). A name that already exists counts only when it
        is a regular file (the bytes are there to be seen).

        Raises:
            _LinkUnsupported: the file system has no hard links.
            NotADirectoryError: a folder on the way is a symlink or a file.
        """
        *names, name = relpath.split(os.sep)
        patience = _Patience(self.layout.abspath(relpath))
        while True:
            try:
                folders = FolderPath.open(self.layout.root, names, self.dmode)
            except FileNotFoundError:
                patience.wait()  # a concurrent delete removed a folder as it was made
                continue
            with folders:
                try:
                    link(folders.leaf, name)
                except FileExistsError:
                    try:
                        mode = folders.leaf.lstat(name).st_mode
                    except FileNotFoundError:
                        patience.wait()  # deleted since: try to take the name again
                        continue
                    if not stat.S_ISREG(mode):
                        raise FileExistsError(
                            errno.EEXIST,
                            "content address is taken by something not a file",
                            self.layout.abspath(relpath),
                        ) from None
                    if not self._refresh_duplicate(folders.leaf, name):
                        patience.wait()  # swept or deleted since: take the name again
                        continue
                    return True
                except FileNotFoundError:
                    if not source_exists():
                        raise
                    patience.wait()  # the folder was removed after it was opened
                    continue
                except OSError as exc:
                    if exc.errno not in _LINK_UNSUPPORTED:
                        raise
                    raise _LinkUnsupported from exc
                if self.fsync:
                    folders.leaf.fsync()
                return False

    def _rename_into(self, folder: Folder, name: str, relpath: str) -> bool:
        """Rename ``folder/name`` to ``relpath`` unless taken; return whether it was.

        For file systems without hard links: not race-free against a second
        writer of the same bytes, but never leaves a partial file.
        """
        *names, target_name = relpath.split(os.sep)
        patience = _Patience(self.layout.abspath(relpath))
        while True:
            try:
                folders = FolderPath.open(self.layout.root, names, self.dmode)
            except FileNotFoundError:
                patience.wait()
                continue
            with folders:
                try:
                    folders.leaf.lstat(target_name)
                except FileNotFoundError:
                    pass
                else:
                    if self._refresh_duplicate(folders.leaf, target_name):
                        return True
                    continue  # swept or deleted since: take the name again
                try:
                    _folder.rename(folder, name, folders.leaf, target_name)
                except FileNotFoundError:
                    folder.lstat(name)  # raises when the file itself is gone
                    patience.wait()
                    continue
                if self.fsync:
                    folders.leaf.fsync()
                return False

    def makepath(self, path: str) -> None:
        """Create folder ``path`` and its parents (``dmode``, as HashFS does).

        Raises:
            NotADirectoryError: something not a folder is in the way.
        """
        patience = _Patience(path)
        while True:
            try:
                os.makedirs(path, self.dmode, exist_ok=True)
                return
            except FileNotFoundError:
                patience.wait()  # a concurrent delete removed a parent midway
            except FileExistsError:
                # One lstat: a concurrent delete may remove the folder between two checks.
                try:
                    mode = os.lstat(path).st_mode
                except FileNotFoundError:
                    patience.wait()  # it was there, then a concurrent delete removed it
                    continue
                if not stat.S_ISDIR(mode):
                    raise NotADirectoryError(errno.ENOTDIR, "expected a folder", path) from None
                patience.wait()  # removed and made again since

    # -- reading ---------------------------------------------------------

    def resolve(self, ref: object) -> str | None:
        """Return the absolute path of the stored file ``ref`` names, or ``None``.

        ``ref`` is an id, a path relative to the root or an absolute path.
        The answer is a regular file inside the root, outside the temp folder,
        reached without following any symlink; anything else is ``None``.
        """
        relpath = self.resolve_relpath(ref)
        return None if relpath is None else self.layout.abspath(relpath)

    def resolve_relpath(self, ref: object) -> str | None:
        """Like :meth:`resolve`, relative to the root."""
        found = self._find(ref)
        if found is None:
            return None
        folders, _, relpath = found
        folders.close()
        return relpath

    def _find(self, ref: object) -> tuple[FolderPath, str, str] | None:
        """Find the stored file ``ref`` names: ``(its folders, open; its name; its relpath)``.

        The caller closes the folders. ``None`` when ``ref`` names no regular
        file reached from the root without a symlink.
        """
        if isinstance(ref, bytes):
            ref = os.fsdecode(ref)
        elif isinstance(ref, os.PathLike):
            ref = os.fspath(ref)
            if isinstance(ref, bytes):
                ref = os.fsdecode(ref)
        if not isinstance(ref, str):
            raise TypeError(f"a reference is an id or a path, not {type(ref).__name__}")
        layout = self.layout
        is_id = layout.is_id(ref)
        if is_id:
            *names, name = layout.shard(ref)
        else:
            relpath = layout.inside(ref)
            if relpath is None:
                return None
            *names, name = relpath.split(os.sep)
        try:
            folders = FolderPath.open(layout.root, names)
        except (OSError, ValueError):
            return None
        try:
            found = self._find_id(folders.leaf, name) if is_id else self._file(folders.leaf, name)
        except BaseException:
            folders.close()
            raise
        if found is None:
            folders.close()
            return None
        return folders, found, os.sep.join([*names, found])

    @staticmethod
    def _find_id(folder: Folder, name: str) -> str | None:
        """The name in ``folder`` of the file with id-part ``name``, extension or none."""
        prefix = name + "."
        found = None
        try:
            with folder.scandir() as entries:
                for entry in entries:
                    entry_name = entry.name
                    if entry_name == name:
                        if entry.is_file(follow_symlinks=False):
                            return name
                    elif (
                        found is None
                        and entry_name.startswith(prefix)
                        and entry.is_file(follow_symlinks=False)
                    ):
                        found = entry_name
        except OSError:
            return None
        return found

    @staticmethod
    def _file(folder: Folder, name: str) -> str | None:
        try:
            return name if stat.S_ISREG(folder.lstat(name).st_mode) else None
        except (OSError, ValueError):
            return None

    def _open_found(self, ref: object) -> tuple[int, os.stat_result, str] | None:
        """Open the stored file ``ref`` names: ``(fd, its stat, its relpath)``, or ``None``."""
        found = self._find(ref)
        if found is None:
            return None
        folders, name, relpath = found
        with folders:
            try:
                fd = folders.leaf.open(name, _READ_FLAGS)
            except OSError:
                return None  # gone, or a symlink by now
        try:
            info = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        return fd, info, relpath

    def _check_bytes(
        self, fd: int, info: os.stat_result, relpath: str, ref: object, verify: bool
    ) -> None:
        """Raise unless the file open as ``fd`` may be read as the stored file ``relpath``.

        With ``verify``, its bytes must hash to its address. A file with more
        than one hard link may be the same file as one outside the store (a
        link planted there): its bytes must hash to its address too, checked
        once per version of the file (device, inode, size, mtime, ctime; a
        new link changes the ctime). A shared file that is no content address
        has nothing to be checked against, and is refused.

        Raises:
            CorruptFile: the bytes do not hash to the address.
            NotFound: a shared file that is not at a content address.
        """
        shared = info.st_nlink > 1
        if not verify and not (shared and not self._is_vouched(info)):
            return
        parsed = self.layout.parse_address(relpath)
        if parsed is None:
            raise NotFound(ref)
        actual = self._hash_fd(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        if actual != parsed[0]:
            raise CorruptFile(relpath, actual)
        if shared:
            with self._vouched_lock:
                self._vouched[_version(info)] = None
                while len(self._vouched) > _VOUCHED_MAX:
                    self._vouched.popitem(last=False)

    def _is_vouched(self, info: os.stat_result) -> bool:
        key = _version(info)
        with self._vouched_lock:
            if key not in self._vouched:
                return False
            self._vouched.move_to_end(key)
            return True

    def address(self, relpath: str) -> HashAddress:
        """Return the address of the stored file at ``relpath``."""
        return HashAddress(
            self.layout.unshard(relpath), relpath, self.layout.abspath(relpath), False
        )

    def get(self, ref: object) -> HashAddress | None:
        """Return the address of ``ref``, or ``None`` when it names no stored file."""
        relpath = self.resolve_relpath(ref)
        return None if relpath is None else self.address(relpath)

    def open(self, ref: object, mode: str = "rb") -> IO[Any]:
        """Open the stored file ``ref`` for reading.

        Raises:
            ReadOnlyError: ``mode`` would write.
            NotFound: no stored file answers to ``ref``, or it has more than
                one hard link and is not at a content address.
            CorruptFile: it has more than one hard link and its bytes do not
                hash to its address.
        """
        check_read_mode(mode)
        opened = self._open_found(ref)
        if opened is None:
            raise NotFound(ref)
        fd, info, relpath = opened
        try:
            self._check_bytes(fd, info, relpath, ref, verify=False)
        except BaseException:
            os.close(fd)
            raise
        return open(fd, mode)

    def open_blob(self, relpath: str, verify: bool = False) -> StoredBlob | None:
        """Open the file at content address ``relpath`` for serving, or ``None``.

        Only exact content addresses qualify: anything else (a misplaced file,
        a folder, the temp folder, a traversal, a symlink) is ``None``.

        Raises:
            CorruptFile: the bytes no longer hash to the address, and
                ``verify`` is on or the file has more than one hard link.
        """
        parsed = self.layout.parse_address(relpath)
        if parsed is None:
            return None
        *names, name = relpath.split(os.sep)
        try:
            with FolderPath.open(self.layout.root, names) as folders:
                fd = folders.leaf.open(name, _READ_FLAGS)
        except (OSError, ValueError):
            return None
        file = os.fdopen(fd, "rb", buffering=0)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                file.close()
                return None
            self._check_bytes(fd, info, relpath, relpath, verify)
        except BaseException:
            file.close()
            raise
        id, extension = parsed
        return StoredBlob(file, relpath, id, extension, info.st_size, info.st_mtime)

    def delete(self, ref: object) -> None:
        """Remove ``ref`` and the folders it leaves empty; no error when missing."""
        found = self._find(ref)
        if found is None:
            return
        folders, name, _ = found
        with folders:
            try:
                folders.leaf.unlink(name)
            except FileNotFoundError:
                return
            folders.remove_empty()

    def remove_empty(self, folder: str) -> None:
        """Remove ``folder`` and its parents while empty, stopping at the root."""
        relpath = self.layout.inside(folder)
        if relpath is None:
            return
        try:
            folders = FolderPath.open(self.layout.root, relpath.split(os.sep))
        except (OSError, ValueError):
            return
        with folders:
            folders.remove_empty()

    def _walk(self) -> Iterator[tuple[Folder, list[str]]]:
        """Yield ``(folder, file names)`` for every folder under the root, depth first.

        Each folder is open while it is yielded. Skips the temp folder, and
        never follows or reports symlinks.
        """
        try:
            root = Folder.open_root(self.layout.root)
        except OSError:
            return
        yield from self._walk_from(root, top=True)

    def _walk_from(self, folder: Folder, top: bool) -> Iterator[tuple[Folder, list[str]]]:
        with folder:
            names: list[str] = []
            subfolders: list[str] = []
            try:
                with folder.scandir() as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            if not (top and entry.name == TEMP_DIRNAME):
                                subfolders.append(entry.name)
                        elif entry.is_file(follow_symlinks=False):
                            names.append(entry.name)
            except (FileNotFoundError, NotADirectoryError):
                return
            yield folder, names
            for name in sorted(subfolders):
                try:
                    child = folder.child(name)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # gone, or a symlink by now
                yield from self._walk_from(child, top=False)

    def walk(self) -> Iterator[tuple[str, list[str]]]:
        """Yield ``(folder, file names)`` for every folder under the root.

        Skips the temp folder, and never follows or reports symlinks.
        """
        for folder, names in self._walk():
            yield folder.path, names

    def files(self) -> Iterator[str]:
        """Yield the absolute path of every stored file."""
        for folder, names in self._walk():
            for name in names:
                yield folder.join(name)

    def folders(self) -> Iterator[str]:
        """Yield every folder that holds files."""
        for folder, names in self._walk():
            if names:
                yield folder.path

    def count(self) -> int:
        """Return how many files the store holds."""
        return sum(len(names) for _, names in self._walk())

    def sizes(self) -> Iterator[tuple[str, int]]:
        """Yield ``(absolute path, size)`` of every stored file."""
        for folder, names in self._walk():
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    yield folder.join(name), folder.lstat(name).st_size

    def size(self) -> int:
        """Return the total size in bytes of the stored files."""
        return sum(size for _, size in self.sizes())

    def computehash(self, chunks: Iterable[Any]) -> str:
        """Return the hex digest of the bytes in ``chunks``."""
        digest = hashlib.new(self.layout.algorithm)
        for chunk in chunks:
            digest.update(chunk)
        return digest.hexdigest()

    def hash_file(self, path: str | int, checkpoint: Callable[[], None] | None = None) -> str:
        """Return the hex digest of the stored file at ``path`` (or open descriptor ``path``).

        A path is reached from the root without following symlinks.

        Raises:
            FileNotFoundError: ``path`` is no regular file in the store.
            NotADirectoryError: a folder on the way is a symlink or a file.
        """
        if isinstance(path, int):
            return self._hash_fd(path, checkpoint)
        relpath = self.layout.inside(path)
        if relpath is None:
            raise FileNotFoundError(errno.ENOENT, "not a path in the store", path)
        *names, name = relpath.split(os.sep)
        with FolderPath.open(self.layout.root, names) as folders:
            fd = folders.leaf.open(name, _READ_FLAGS)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileNotFoundError(errno.ENOENT, "not a regular file", path)
            return self._hash_fd(fd, checkpoint)
        finally:
            os.close(fd)

    def _hash_fd(
        self,
        fd: int,
        checkpoint: Callable[[], None] | None = None,
        algorithm: str | None = None,
    ) -> str:
        """Hash what is left to read of ``fd`` (with the store's algorithm by default)."""
        digest = hashlib.new(algorithm or self.layout.algorithm)
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        with open(fd, "rb", buffering=0, closefd=False) as file:
            while n := file.readinto(buffer):
                if checkpoint is not None:
                    checkpoint()
                digest.update(view[:n])
        return digest.hexdigest()

    def verify(self, ref: object) -> bool:
        """Return whether the bytes of ``ref`` still hash to its address.

        Raises:
            NotFound: no stored file answers to ``ref``.
        """
        relpath = self.resolve_relpath(ref)
        if relpath is None:
            raise NotFound(ref)
        try:
            return self.hash_file(self.layout.abspath(relpath)) == self.layout.unshard(relpath)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise NotFound(ref) from exc

    def _misplaced(
        self, extensions: bool
    ) -> Iterator[tuple[str, HashAddress, os.stat_result, str | None]]:
        """Yield ``(relpath, expected address, stat, foreign)`` for each misplaced file.

        ``foreign`` says why the file belongs to another store sharing the
        root (see :func:`foreign_layout`), or is ``None``. Each file is hashed
        through a descriptor, its folders reached without symlinks.
        """
        layout = self.layout
        for folder, names in self._walk():
            for name in names:
                try:
                    fd = folder.open(name, _READ_FLAGS)
                except OSError:
                    continue  # gone, or a symlink by now
                try:
                    info = os.fstat(fd)
                    relpath = layout.inside(folder.join(name))
                    if not stat.S_ISREG(info.st_mode) or relpath is None:
                        continue
                    id = self._hash_fd(fd)
                    extension = layout.stored_extension(relpath) if extensions else ""
                    expected = layout.relpath(id, extension)
                    if expected == relpath:
                        continue

                    def rehash(algorithm: str, fd: int = fd) -> str:
                        os.lseek(fd, 0, os.SEEK_SET)
                        return self._hash_fd(fd, algorithm=algorithm)

                    foreign = foreign_layout(layout, relpath, id, rehash)
                finally:
                    os.close(fd)
                yield (
                    relpath,
                    HashAddress(id, expected, layout.abspath(expected), False),
                    info,
                    foreign,
                )

    def corrupted(self, extensions: bool = True) -> Iterator[tuple[str, HashAddress]]:
        """Yield ``(path, expected address)`` for each file not at its content address.

        A file named by its id keeps its whole extension (``<id>.tar.gz``);
        any other name its last suffix, as HashFS does.
        """
        for relpath, address, _, _ in self._misplaced(extensions):
            yield self.layout.abspath(relpath), address

    def repair(
        self, extensions: bool = True, foreign: Literal["move", "refuse"] = "move"
    ) -> RepairReport:
        """Move every misplaced file to its content address (dropping it when taken).

        Returns the ``(old path, address)`` pairs that were repaired, as
        HashFS does, in a :class:`RepairReport` that also lists the files left
        where they are, and why (``refused``):

        - a file with more than one hard link (it may be the same file as one
          outside the store): never moved, and its mode never changed;
        - with ``foreign="refuse"``, a file at a content address of another
          layout (see :func:`foreign_layout`). With ``"move"`` (HashFS's
          behaviour: ``repair`` is how HashFS changes a store's layout) such
          files move too, each is listed in ``relaid``, and a warning is logged.

        A moved file gets the store's ``fmode`` once it has one link left.
        """
        report = RepairReport()
        for relpath, address, info, reason in list(self._misplaced(extensions)):
            path = self.layout.abspath(relpath)
            if info.st_nlink > 1:
                report.refused.append((path, _shared_reason(info.st_nlink)))
                continue
            if reason is not None and foreign == "refuse":
                report.refused.append((path, reason + ": left where it is"))
                continue
            moved, note = self.move(relpath, address.relpath, info, self.fmode)
            if moved:
                report.append((path, address))
                if reason is not None:
                    report.relaid.append((path, reason))
            if note is not None:
                report.refused.append((path, note))
        report.log(self.layout)
        return report

    def move(
        self,
        relpath: str,
        target: str,
        seen: os.stat_result | None = None,
        mode: int | None = None,
    ) -> tuple[bool, str | None]:
        """Move the stored file at ``relpath`` to ``target`` (both relative to the root).

        Links exactly the file opened at ``relpath`` (reached without
        symlinks) to ``target``, unless ``target`` is taken, then removes the
        old name; ``seen`` (a stat of it) makes it move only if unchanged
        since. ``mode`` is given to the moved file only while it has one link.

        Returns whether it moved, and why it did not (or why its mode was left).
        """
        changed = "it changed while repair ran: left where it is"
        *names, name = relpath.split(os.sep)
        try:
            folders = FolderPath.open(self.layout.root, names)
        except (OSError, ValueError):
            return False, changed
        with folders:
            try:
                fd = folders.leaf.open(name, _READ_FLAGS)
            except OSError:
                return False, changed
            try:
                now = os.fstat(fd)
                if not stat.S_ISREG(now.st_mode) or (
                    seen is not None and _version(now) != _version(seen)
                ):
                    return False, changed
                try:
                    taken = self._link_file(fd, target, folders.leaf, name)
                except _LinkUnsupported:
                    taken = self._rename_into(folders.leaf, name, target)
                with contextlib.suppress(FileNotFoundError):  # the rename moved it
                    if _identity(folders.leaf.lstat(name)) == _identity(now):
                        folders.leaf.unlink(name)
                note = None
                if not taken and mode is not None:
                    links = os.fstat(fd).st_nlink
                    if links == 1:
                        self._set_mode(fd, self.layout.abspath(target), mode)
                    else:
                        note = f"moved, but {_shared_reason(links)}"
            finally:
                os.close(fd)
            folders.remove_empty()
        return True, note

    def gc(self, older_than: float | None = None) -> GCReport:
        """Remove named temp files no live writer holds, and empty folders.

        A writer holds a lock on its temp file for as long as it lives, so a
        temp file whose lock can be taken was left by a process that died.
        Where there is no ``flock`` (Windows), a temp file goes when the
        process named in it is gone, or when nothing wrote to it for a day.
        Only temp files last modified more than ``older_than`` seconds ago go
        (default 0: the locks protect live writers). Nameless temp files
        (``O_TMPFILE``) need none of this: they vanish with their writer.
        A temp folder that is a symlink is left alone.
        """
        report = GCReport()
        cutoff = time.time() - (older_than or 0.0)
        with (
            contextlib.suppress(FileNotFoundError, NotADirectoryError),
            self._temp_folder() as temp,
        ):
            folder = temp.leaf
            with folder.scandir() as entries:
                names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
            for name in names:
                if _SWEPT_MARK in name:
                    self._restore_swept(folder, name)
                    continue
                if not self._is_abandoned(folder, name, cutoff):
                    continue
                # PermissionError: Windows keeps a file open elsewhere.
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    size = folder.lstat(name).st_size
                    folder.unlink(name)
                    report.temp_files.append(folder.join(name))
                    report.temp_bytes += size
            temp.remove_empty()  # not empty: a writer is at work
        try:
            root = Folder.open_root(self.layout.root)
        except OSError:
            return report
        with root:
            self._prune(root, top=True, removed=report.folders)
        return report

    def _restore_swept(self, folder: Folder, name: str) -> None:
        """Put back a file a sweep took, if the sweep's process died before deciding.

        A sweep renames a file into the temp folder, looks at it again and
        then removes it or puts it back; one killed in between leaves it
        there. It may be a file a put was told is stored, so it goes back to
        its address (to be swept again later if nothing refers to it). A live
        sweep's files are its own to decide.
        """
        pid, _, rest = name.partition(_SWEPT_MARK)
        parts = rest.split("-", 2)
        if _process_alive(pid) or len(parts) != 3 or not parts[2].endswith(_TEMP_SUFFIX):
            return
        relpath = parts[2][: -len(_TEMP_SUFFIX)].replace(_SWEPT_SEP, os.sep)
        if self.layout.parse_address(relpath) is None:
            return  # not a name a sweep wrote
        with contextlib.suppress(FileNotFoundError):
            if self._rename_into(folder, name, relpath):  # its address was filled meanwhile
                folder.unlink(name)

    def _prune(self, folder: Folder, top: bool, removed: list[str]) -> bool:
        """Remove the empty folders under ``folder``, deepest first, into ``removed``.

        Returns whether ``folder`` is left empty.
        """
        empty = True
        subfolders = []
        try:
            with folder.scandir() as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False) and not (
                        top and entry.name == TEMP_DIRNAME
                    ):
                        subfolders.append(entry.name)
                    else:
                        empty = False
        except (FileNotFoundError, NotADirectoryError):
            return False
        for name in sorted(subfolders, reverse=True):
            try:
                child = folder.child(name)
            except (FileNotFoundError, NotADirectoryError):
                empty = False
                continue
            with child:
                child_empty = self._prune(child, top=False, removed=removed)
            if not child_empty:
                empty = False
                continue
            try:
                folder.rmdir(name)
            except OSError:
                empty = False
                continue
            removed.append(folder.join(name))
        return empty

    @staticmethod
    def _is_abandoned(folder: Folder, name: str, cutoff: float) -> bool:
        try:
            fd = folder.open(name, _READ_FLAGS)
        except OSError:
            return False
        pid = name.split("-", 1)[0]
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
                return False
            if _fcntl is None:
                # No locks to ask: the writer's process is gone, or it stalled for a day.
                return time.time() - info.st_mtime > _STALE or not _process_alive(pid)
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            info = os.fstat(fd)
            # Unlocked and empty a moment after creation: maybe a writer that
            # has not taken its lock yet, unless the process named in the file
            # name is gone. Such a file is left for a later gc.
            fresh = info.st_size == 0 and time.time() - info.st_mtime < _FRESH
            return not fresh or not _process_alive(pid)
        finally:
            os.close(fd)

    def sweep(
        self,
        keep: KeepSet,
        cutoff: float,
        dry_run: bool = False,
        on_remove: RemovedCallback | None = None,
        checkpoint: Callable[[], None] | None = None,
    ) -> SweepReport:
        """Remove each stored file whose id is not in ``keep``, modified before ``cutoff``.

        ``cutoff`` is a time (``time.time()`` scale). Only files at content
        addresses of this layout are looked at; the temp folder, misplaced
        and foreign files are left alone. Each file to remove is first
        renamed into the temp folder and looked at again there: a duplicate
        put refreshes the file's mtime (see :meth:`_refresh_duplicate`), so
        one that found it before the rename is seen, and the file goes back
        to its address; one that comes after the rename finds the address
        empty and stores its bytes anew. A sweep killed between the two
        leaves the file in the temp folder, unlocked: :meth:`gc` removes it.
        Shard folders the sweep empties are removed, as :meth:`delete` does.
        ``on_remove`` is called with the address of each file removed;
        ``checkpoint`` between folders (it may raise to stop the sweep; what
        was removed stays removed).
        """
        report = SweepReport(dry_run=dry_run, keep_ids=len(keep))
        try:
            root = Folder.open_root(self.layout.root)
        except (FileNotFoundError, NotADirectoryError):
            return report
        sweep = _LocalSweep(self, keep, cutoff, report, on_remove, checkpoint)
        try:
            with root:
                sweep.folder(root, [], "")
        finally:
            sweep.close()
        return report

    def sweep_clock(self) -> float | None:
        """Return the time now as this file system stamps files, or ``None`` if unknown.

        A sweep's cutoff counts back from this, so that a put that starts
        after the sweep never carries an mtime before it. File systems stamp
        files from a coarse clock that lags ``time.time()`` by up to a tick
        (NFS from the server's clock), so the cutoff is not simply
        ``time.time()``. A probe file in the temp area is stamped until its
        mtime moves to the next tick, which it returns: every file written
        before this call then has an older mtime (``older_than=0`` removes
        it at once), every file written after, this one or later. Where
        the stamp does not move within :data:`_CLOCK_PATIENCE` (a clock of
        whole seconds), the first stamp is returned: files of the same
        second are then left. ``None`` when there is no store yet or the
        probe cannot be written (a read-only store: nothing can be removed).
        """
        try:
            root = Folder.open_root(self.layout.root)
        except OSError:
            return None
        name = f"{os.getpid()}-clock-{secrets.token_hex(6)}{_TEMP_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY
        with root, contextlib.suppress(OSError), self._temp_folder(make=True) as temp:
            fd = temp.leaf.open(name, flags, 0o600)
            try:
                info = os.fstat(fd)
                first = info.st_mtime_ns
                deadline = time.monotonic() + _CLOCK_PATIENCE
                while info.st_mtime_ns == first and time.monotonic() < deadline:
                    time.sleep(_CLOCK_STEP)
                    if os.utime in os.supports_fd:
                        os.utime(fd)
                    else:
                        os.utime(temp.leaf.join(name))
                    info = os.fstat(fd)
            finally:
                os.close(fd)
                with contextlib.suppress(OSError):
                    temp.leaf.unlink(name)
                temp.remove_empty()
            # st_mtime, not st_mtime_ns / 1e9: the sweep compares each file's
            # st_mtime, and the two round differently; a file stamped in the
            # probe's tick must compare equal to it, not older.
            return info.st_mtime
        return None

    @staticmethod
    def _refresh_duplicate(folder: Folder, name: str) -> bool:
        """Set the mtime of the stored file a duplicate put found to now.

        A sweep removes only files older than its grace period: the file a
        put just reported as a duplicate is about to be recorded by the app,
        so it must look new. Returns ``False`` when the file is gone (a
        sweep or delete took it): the put then stores its bytes again. A
        file the process may not touch (another owner) keeps its mtime.
        """
        try:
            if folder.fd is not None and os.utime in os.supports_dir_fd:
                os.utime(name, dir_fd=folder.fd, follow_symlinks=False)
            else:
                os.utime(folder.join(name))
        except FileNotFoundError:
            return False
        except OSError as exc:
            logger.debug("could not refresh the mtime of %s: %s", folder.join(name), exc)
        return True


def _process_alive(pid: str) -> bool:
    """Whether the process ``pid`` (a temp file's name prefix) still runs here."""
    if not pid.isdigit() or os.name == "nt":
        return True  # unknown; on Windows, os.kill(pid, 0) would end the process
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


class _LocalSweep:
    """One sweep's walk of a local store; see :meth:`Engine.sweep`.

    Written for speed: a store of a million files is a million entries and,
    at the default depth, some 70,000 folders. Each folder is listed once
    (its entries' types come with the listing); a file is stat'ed only when
    its id is not kept, and its name parsed against the id its folders
    spell, built one folder at a time.
    """

    def __init__(
        self,
        engine: Engine,
        keep: KeepSet,
        cutoff: float,
        report: SweepReport,
        on_remove: RemovedCallback | None,
        checkpoint: Callable[[], None] | None,
    ) -> None:
        self.engine = engine
        self.layout = engine.layout
        self.keep = keep
        self.cutoff = cutoff
        self.report = report
        self.on_remove = on_remove
        self.checkpoint = checkpoint
        self._temp: FolderPath | None = None
        self._hidden = f"{os.getpid()}{_SWEPT_MARK}{secrets.token_hex(6)}-"
        self._taken = 0
        #: The folders above every stored file (fewer than ``depth`` when they would
        #: use up the id: see :attr:`Layout.folder_depth`).
        self.depth = engine.layout.folder_depth
        self.width = engine.layout.width
        #: How long a file name's id part is, after the shard folders.
        self.head_length = engine.layout.digest_length - self.depth * self.width
        #: Whether a name in a shard folder is that id part and a safe extension...
        self.is_address = _address_name(self.head_length)
        #: ...no longer than this.
        self.longest_name = self.head_length + 1 + MAX_EXTENSION

    def close(self) -> None:
        if self._temp is not None:
            with self._temp:
                self._temp.remove_empty()  # gone when no writer uses it
            self._temp = None

    def folder(self, folder: Folder, names: list[str], prefix: str | None) -> tuple[bool, bool]:
        """Sweep ``folder`` (at ``names`` under the root) and all below it.

        ``prefix`` is the start of an id that the shard folders ``names``
        spell, or ``None`` when they are no shard folders. Returns whether
        the folder is (or, dry, would be) left empty, and whether the sweep
        removed anything from it.
        """
        if self.checkpoint is not None:
            self.checkpoint()
        depth = len(names)
        files: list[os.DirEntry[str]] = []
        subfolders: list[str] = []
        empty = True
        try:
            with folder.scandir() as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        files.append(entry)
                    elif entry.is_dir(follow_symlinks=False):
                        subfolders.append(entry.name)
                    else:
                        empty = False  # a symlink, a FIFO...: never ours to remove
        except (FileNotFoundError, NotADirectoryError):
            return False, False
        removed_any = False
        report = self.report
        if files and (prefix is None or depth != self.depth):
            report.skipped += len(files)
            empty = False
        elif files and prefix is not None:
            keep, cutoff, head_length = self.keep, self.cutoff, self.head_length
            is_address, longest = self.is_address, self.longest_name
            kept = skipped = young = 0
            for entry in files:
                if is_address(entry.name) is None or len(entry.name) > longest:
                    skipped += 1
                    empty = False
                    continue
                id = prefix + entry.name[:head_length]
                if id in keep:
                    kept += 1
                    empty = False
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    removed_any = True  # removed by someone else
                    continue
                if info.st_mtime >= cutoff or not self.remove(folder, names, entry.name, id, info):
                    young += 1
                    empty = False
                    continue
                removed_any = True
            report.kept += kept
            report.skipped += skipped
            report.young += young
        for name in subfolders:
            if depth == 0 and name == TEMP_DIRNAME:
                empty = False
                continue
            child_prefix = None
            if (
                prefix is not None
                and depth < self.depth
                and len(name) == self.width
                and _HEX.issuperset(name)
            ):
                child_prefix = prefix + name
            try:
                child = folder.child(name)
            except (FileNotFoundError, NotADirectoryError):
                empty = False
                continue
            with child:
                child_empty, child_removed = self.folder(child, [*names, name], child_prefix)
            if not child_removed:
                empty = False  # a folder found empty is gc's to remove, not a sweep's
                continue
            removed_any = True
            if not child_empty:
                empty = False
                continue
            if not report.dry_run:
                try:
                    folder.rmdir(name)
                except OSError:  # not empty: a put came meanwhile
                    empty = False
                    continue
            report.folders += 1
        return empty, removed_any

    def remove(
        self, folder: Folder, names: list[str], name: str, id: str, info: os.stat_result
    ) -> bool:
        """Remove the old, unkept file ``name`` (stat'ed as ``info``) unless a put refreshed it.

        Returns whether it is gone (or, dry, would be); ``False`` when a put
        made it new meanwhile.
        """
        report = self.report
        if not report.dry_run:
            taken = self._take(folder, name, names)
            if taken is None:
                return True  # removed by someone else
            if not taken:
                return False
        report.removed += 1
        report.removed_bytes += info.st_size
        if self.on_remove is not None:
            relpath = os.sep.join([*names, name])
            self.on_remove(HashAddress(id, relpath, self.layout.abspath(relpath), False))
        return True

    def _temp_folder(self) -> Folder:
        if self._temp is None:
            self._temp = self.engine._temp_folder(make=True)
        return self._temp.leaf

    def _take(self, folder: Folder, name: str, names: list[str]) -> bool | None:
        """Remove ``name`` from ``folder`` (at ``names``) unless a put refreshed it meanwhile.

        Returns ``True`` when removed, ``False`` when refreshed (it is put
        back), ``None`` when it was gone already.
        """
        self._taken += 1
        # The address rides in the name, so that gc can put the file back if this
        # process dies before it decided (see Engine._restore_swept).
        hidden = f"{self._hidden}{self._taken}-{_SWEPT_SEP.join([*names, name])}{_TEMP_SUFFIX}"
        patience: _Patience | None = None
        while True:
            try:
                temp = self._temp_folder()
            except FileNotFoundError:
                pass  # removed again as it was made, by a writer that left it empty
            else:
                try:
                    _folder.rename(folder, name, temp, hidden)
                    break
                except FileNotFoundError:
                    try:
                        folder.lstat(name)
                    except FileNotFoundError:
                        return None
                # The temp folder was removed by a writer that left it empty: make it again.
                assert self._temp is not None
                self._temp.close()
                self._temp = None
            patience = patience or _Patience(self.layout.temp_dir)
            patience.wait()
        # Now no put can find it: a put that did before has refreshed its mtime.
        try:
            info = temp.lstat(hidden)
        except FileNotFoundError:
            return None
        if info.st_mtime < self.cutoff:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink(hidden)
            return True
        # Back to its address, its folders made again if a delete removed them
        # meanwhile; an address a put filled meanwhile holds the same bytes.
        if self.engine._rename_into(temp, hidden, os.sep.join([*names, name])):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink(hidden)
        return False


@functools.cache
def _address_name(head_length: int) -> Callable[[str], re.Match[str] | None]:
    """The ``fullmatch`` of a file name in a shard folder: ``head_length`` hex digits,
    then optionally a dot and an extension as :data:`_EXTENSION` has it (its
    length is not checked here)."""
    pattern = f"[0-9a-f]{{{head_length}}}(?:\\.(?:{_EXTENSION.pattern}))?"
    return re.compile(pattern).fullmatch


def source_error(src: object) -> InvalidSource:
    """The error for a ``put()`` source of an unsupported kind."""
    return InvalidSource(
        "Object must be a valid file path or a readable object: put() takes bytes, a path, "
        f"a file object, a FileStorage or an iterable of bytes, not {type(src).__name__}"
    )
