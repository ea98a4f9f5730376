"""The only code that touches the disk: blocking, thread-safe, no event loop.

A :class:`BlobWriter` hashes bytes while it writes them to a temp file in the
root's own temp folder, then commits with one hard link into the content
address: the address holds nothing until the link, and the link is atomic.
Two writers of the same bytes race on the link; the loser sees
``FileExistsError`` and reports a duplicate, so exactly one caller ever gets
``is_duplicate=False``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from ._address import HashAddress
from ._exceptions import CorruptFile, FileTooLarge, InvalidSource, NotFound, ReadOnlyError
from ._layout import Layout

__all__ = ["BlobWriter", "Engine", "GCReport", "StoredBlob", "check_read_mode"]

#: Read size for files and the unit of work between cancellation checks.
CHUNK_SIZE = 1 << 20
_TEMP_SUFFIX = ".tmp"
#: gc() leaves an empty temp file this young alone (its writer may be about to lock it).
_FRESH = 2.0
_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


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


def _write_all(fd: int, data: Any) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


class StoredBlob:
    """A stored file opened for serving: read by position, then closed.

    The object-store engine has its own with the same methods, so the
    serving rules never touch a file system themselves.
    """

    __slots__ = ("extension", "file", "id", "mtime", "relpath", "size")

    def __init__(
        self, file: IO[bytes], relpath: str, id: str, extension: str, size: int, mtime: float
    ) -> None:
        self.file = file
        self.relpath = relpath
        self.id = id
        self.extension = extension
        self.size = size
        self.mtime = mtime

    def pread(self, size: int, offset: int) -> bytes:
        """Return up to ``size`` bytes from ``offset``."""
        return os.pread(self.file.fileno(), size, offset)

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


class BlobWriter:
    """One file on its way into the store.

    Write bytes with :meth:`write`, then :meth:`commit` it under its hash, or
    :meth:`abort`. Used as a context manager it aborts unless committed, so
    any exception leaves no temp file behind.
    """

    __slots__ = ("_engine", "_fd", "_hash", "_path", "size")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._hash = hashlib.new(engine.layout.algorithm)
        self.size = 0
        self._fd, self._path = engine._create_temp()

    def write(self, data: Any) -> None:
        """Hash and write one bytes-like chunk.

        Raises:
            FileTooLarge: when the file would grow past the store's ``max_size``.
        """
        size = self.size + memoryview(data).nbytes
        max_size = self._engine.max_size
        if max_size is not None and size > max_size:
            raise FileTooLarge(max_size)
        self._hash.update(data)
        _write_all(self._fd, data)
        self.size = size

    def writelines(self, chunks: Iterable[Any]) -> None:
        """Write several chunks in order."""
        for chunk in chunks:
            self.write(chunk)

    def commit(self, extension: str = "") -> HashAddress:
        """Link the written bytes into their content address and drop the temp file.

        ``extension`` must already be normalized. Returns the address, with
        ``is_duplicate=True`` when the address already held the file.
        """
        engine = self._engine
        id = self._hash.hexdigest()
        relpath = engine.layout.relpath(id, extension)
        abspath = engine.layout.abspath(relpath)
        try:
            if engine.fsync:
                os.fsync(self._fd)
            is_duplicate = engine._link(self._path, abspath)
        finally:
            self.abort()
        return HashAddress(id, relpath, abspath, is_duplicate)

    def abort(self) -> None:
        """Close and remove the temp file; safe to call more than once."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)

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
        if max_size is not None and (isinstance(max_size, bool) or max_size < 0):
            raise ValueError(f"max_size must be a non-negative integer or None, not {max_size!r}")
        self.layout = layout
        self.fmode = fmode
        self.dmode = dmode
        self.max_size = max_size
        self.fsync = fsync

    # -- writing ---------------------------------------------------------

    def writer(self) -> BlobWriter:
        """Start a new file in the temp folder."""
        return BlobWriter(self)

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

    def _create_temp(self) -> tuple[int, str]:
        name = f"{os.getpid()}-{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        path = os.path.join(self.layout.temp_dir, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            self.makepath(self.layout.temp_dir)
            fd = os.open(path, flags, 0o600)
        try:
            # A live writer holds this lock; gc() only removes unlocked temp files.
            # Blocking: gc() may hold it for a moment while it looks.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self.fmode is not None:
                os.fchmod(fd, self.fmode)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        return fd, path

    def _link(self, temp: str, abspath: str) -> bool:
        """Give ``temp`` the name ``abspath`` unless taken; return whether it was."""
        folder = os.path.dirname(abspath)
        relpath = self.layout.inside(abspath)
        folders = relpath.split(os.sep)[:-1] if relpath else []
        for _ in range(16):
            if folders and self._folder_is_not_real(folders):
                raise NotADirectoryError(
                    errno.ENOTDIR, "a folder on the way is a symlink, not a folder", folder
                )
            try:
                os.link(temp, abspath)
            except FileExistsError:
                try:
                    mode = os.lstat(abspath).st_mode
                except FileNotFoundError:
                    continue  # deleted since: try to take the name again
                if not stat.S_ISREG(mode):
                    raise FileExistsError(
                        errno.EEXIST, "content address is taken by something not a file", abspath
                    ) from None
                return True
            except FileNotFoundError:
                if not os.path.exists(temp):
                    raise
                # The folder is missing, or a concurrent delete just removed it.
                self.makepath(folder)
                continue
            except OSError as exc:
                if exc.errno not in _LINK_UNSUPPORTED:
                    raise
                return self._rename_into(temp, abspath)
            if self.fsync:
                self._fsync_dir(folder)
            return False
        raise FileNotFoundError(errno.ENOENT, "folder keeps disappearing", folder)

    def _rename_into(self, temp: str, abspath: str) -> bool:
        # For filesystems without hard links: not race-free against a second
        # writer of the same bytes, but never leaves a partial file.
        if os.path.lexists(abspath):
            return True
        self.makepath(os.path.dirname(abspath))
        os.rename(temp, abspath)
        return False

    @staticmethod
    def _fsync_dir(folder: str) -> None:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def makepath(self, path: str) -> None:
        """Create folder ``path`` and its parents (``dmode``, as HashFS does)."""
        for _ in range(16):
            try:
                os.makedirs(path, self.dmode, exist_ok=True)
                return
            except FileNotFoundError:
                continue  # a concurrent delete removed a parent midway
            except FileExistsError:
                # One lstat: a concurrent delete may remove the folder between two checks.
                try:
                    mode = os.lstat(path).st_mode
                except FileNotFoundError:
                    continue  # it was there, then a concurrent delete removed it
                if not stat.S_ISDIR(mode):
                    raise NotADirectoryError(errno.ENOTDIR, "expected a folder", path) from None
                continue  # removed and made again since
        raise FileNotFoundError(errno.ENOENT, "folder keeps disappearing", path)

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
        if isinstance(ref, bytes):
            ref = os.fsdecode(ref)
        elif isinstance(ref, os.PathLike):
            ref = os.fspath(ref)
            if isinstance(ref, bytes):
                ref = os.fsdecode(ref)
        if not isinstance(ref, str):
            raise TypeError(f"a reference is an id or a path, not {type(ref).__name__}")
        layout = self.layout
        if layout.is_id(ref):
            return self._find_id(ref)
        relpath = layout.inside(ref)
        if relpath is None:
            return None
        parts = relpath.split(os.sep)
        if not self._folders_are_real(parts[:-1]):
            return None
        try:
            mode = os.lstat(layout.abspath(relpath)).st_mode
        except (OSError, ValueError):
            return None
        return relpath if stat.S_ISREG(mode) else None

    def _find_id(self, id: str) -> str | None:
        parts = self.layout.shard(id)
        name = parts[-1]
        folders = os.sep.join(parts[:-1])
        prefix = name + "."
        found = None
        try:
            with os.scandir(self.layout.abspath(folders) if folders else self.layout.root) as it:
                for entry in it:
                    entry_name = entry.name
                    if entry_name == name:
                        if entry.is_file(follow_symlinks=False):
                            found = name
                            break
                    elif (
                        found is None
                        and entry_name.startswith(prefix)
                        and entry.is_file(follow_symlinks=False)
                    ):
                        found = entry_name
        except (FileNotFoundError, NotADirectoryError):
            return None
        if found is None or not self._folders_are_real(parts[:-1]):
            return None
        return folders + os.sep + found if folders else found

    def _folder_is_not_real(self, folders: list[str]) -> bool:
        """Whether a folder on the way exists as something else (a symlink); missing is fine."""
        path = self.layout.root
        for folder in folders:
            path = path + os.sep + folder
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return False
            if not stat.S_ISDIR(mode):
                return True
        return False

    def _folders_are_real(self, folders: list[str]) -> bool:
        # Each shard folder must be a real folder, not a symlink out of the root.
        path = self.layout.root
        for folder in folders:
            path = path + os.sep + folder
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    return False
            except OSError:
                return False
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
            NotFound: no stored file answers to ``ref``.
        """
        check_read_mode(mode)
        path = self.resolve(ref)
        if path is None:
            raise NotFound(ref)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError as exc:
            raise NotFound(ref) from exc
        return open(fd, mode)

    def open_blob(self, relpath: str, verify: bool = False) -> StoredBlob | None:
        """Open the file at content address ``relpath`` for serving, or ``None``.

        Only exact content addresses qualify: anything else (a misplaced file,
        a folder, the temp folder, a traversal, a symlink) is ``None``.

        Raises:
            CorruptFile: ``verify`` is on and the bytes no longer hash to the address.
        """
        parsed = self.layout.parse_address(relpath)
        if parsed is None or self.resolve_relpath(relpath) != relpath:
            return None
        try:
            fd = os.open(self.layout.abspath(relpath), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        file = os.fdopen(fd, "rb", buffering=0)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                file.close()
                return None
            id, extension = parsed
            if verify:
                actual = self.hash_file(fd)
                if actual != id:
                    raise CorruptFile(relpath, actual)
                file.seek(0)
        except BaseException:
            file.close()
            raise
        return StoredBlob(file, relpath, id, extension, info.st_size, info.st_mtime)

    def delete(self, ref: object) -> None:
        """Remove ``ref`` and the folders it leaves empty; no error when missing."""
        path = self.resolve(ref)
        if path is None:
            return
        try:
            os.remove(path)
        except FileNotFoundError:
            return
        self.remove_empty(os.path.dirname(path))

    def remove_empty(self, folder: str) -> None:
        """Remove ``folder`` and its parents while empty, stopping at the root."""
        relpath = self.layout.inside(folder)
        if relpath is None or not self._folders_are_real(relpath.split(os.sep)):
            return
        path = self.layout.abspath(relpath)
        while path != self.layout.root:
            try:
                if os.path.islink(path):
                    return
                os.rmdir(path)
            except OSError:
                return
            path = os.path.dirname(path)

    def walk(self) -> Iterator[tuple[str, list[str]]]:
        """Yield ``(folder, file names)`` for every folder under the root.

        Skips the temp folder, and never follows or reports symlinks.
        """
        stack = [self.layout.root]
        while stack:
            folder = stack.pop()
            names: list[str] = []
            subfolders: list[str] = []
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            if folder != self.layout.root or entry.name != os.path.basename(
                                self.layout.temp_dir
                            ):
                                subfolders.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            names.append(entry.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            yield folder, names
            stack.extend(sorted(subfolders, reverse=True))

    def files(self) -> Iterator[str]:
        """Yield the absolute path of every stored file."""
        for folder, names in self.walk():
            for name in names:
                yield os.path.join(folder, name)

    def folders(self) -> Iterator[str]:
        """Yield every folder that holds files."""
        for folder, names in self.walk():
            if names:
                yield folder

    def count(self) -> int:
        """Return how many files the store holds."""
        return sum(len(names) for _, names in self.walk())

    def sizes(self) -> Iterator[tuple[str, int]]:
        """Yield ``(absolute path, size)`` of every stored file."""
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):
                yield path, os.lstat(path).st_size

    def size(self) -> int:
        """Return the total size in bytes of the stored files."""
        total = 0
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(path).st_size
        return total

    def computehash(self, chunks: Iterable[Any]) -> str:
        """Return the hex digest of the bytes in ``chunks``."""
        digest = hashlib.new(self.layout.algorithm)
        for chunk in chunks:
            digest.update(chunk)
        return digest.hexdigest()

    def hash_file(self, path: str | int, checkpoint: Callable[[], None] | None = None) -> str:
        """Return the hex digest of the file at ``path`` (or open descriptor ``path``)."""
        digest = hashlib.new(self.layout.algorithm)
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        with open(path, "rb", buffering=0, closefd=not isinstance(path, int)) as file:
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
        return self.hash_file(self.layout.abspath(relpath)) == self.layout.unshard(relpath)

    def corrupted(self, extensions: bool = True) -> Iterator[tuple[str, HashAddress]]:
        """Yield ``(path, expected address)`` for each file not at its content address."""
        for path in self.files():
            try:
                id = self.hash_file(path)
            except FileNotFoundError:
                continue
            extension = os.path.splitext(path)[1] if extensions else ""
            relpath = self.layout.relpath(id, extension)
            expected = self.layout.abspath(relpath)
            if expected != path:
                yield path, HashAddress(id, relpath, expected, False)

    def repair(self, extensions: bool = True) -> list[tuple[str, HashAddress]]:
        """Move every misplaced file to its content address (dropping it when taken).

        Returns the ``(old path, address)`` pairs that were repaired.
        """
        repaired = []
        for path, address in list(self.corrupted(extensions)):
            self._link(path, address.abspath)
            with contextlib.suppress(FileNotFoundError):  # the rename fallback moved it
                os.remove(path)
            if self.fmode is not None:
                os.chmod(address.abspath, self.fmode)
            self.remove_empty(os.path.dirname(path))
            repaired.append((path, address))
        return repaired

    def gc(self, older_than: float | None = None) -> GCReport:
        """Remove temp files no live writer holds and empty folders.

        A writer holds a lock on its temp file for as long as it lives, so a
        temp file whose lock can be taken was left by a process that died.
        Only temp files last modified more than ``older_than`` seconds ago go
        (default 0: the locks protect live writers).
        """
        report = GCReport()
        cutoff = time.time() - (older_than or 0.0)
        try:
            entries = list(os.scandir(self.layout.temp_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and self._is_abandoned(entry.path, cutoff):
                with contextlib.suppress(FileNotFoundError):
                    size = entry.stat(follow_symlinks=False).st_size
                    os.unlink(entry.path)
                    report.temp_files.append(entry.path)
                    report.temp_bytes += size
        for folder, names in reversed(list(self.walk())):
            if folder != self.layout.root and not names:
                try:
                    os.rmdir(folder)
                except OSError:
                    continue
                report.folders.append(folder)
        return report

    @staticmethod
    def _is_abandoned(path: str, cutoff: float) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return False
        try:
            if os.fstat(fd).st_mtime > cutoff:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            info = os.fstat(fd)
            # Unlocked and empty a moment after creation: maybe a writer that
            # has not taken its lock yet, unless the process named in the file
            # name is gone. Such a file is left for a later gc.
            fresh = info.st_size == 0 and time.time() - info.st_mtime < _FRESH
            return not fresh or not _process_alive(os.path.basename(path).split("-", 1)[0])
        finally:
            os.close(fd)


def _process_alive(pid: str) -> bool:
    """Whether the process ``pid`` (a temp file's name prefix) still runs here."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def source_error(src: object) -> InvalidSource:
    """The error for a ``put()`` source of an unsupported kind."""
    return InvalidSource(
        "Object must be a valid file path or a readable object: put() takes bytes, a path, "
        f"a file object, a FileStorage or an iterable of bytes, not {type(src).__name__}"
    )
