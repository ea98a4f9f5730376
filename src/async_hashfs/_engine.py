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
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
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
#: Without ``flock``, gc() also removes a live process's temp file untouched this long.
_STALE = 24 * 3600.0
_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}
#: What ``open(dir, O_TMPFILE)`` fails with where the file system or kernel lacks it.
_TMPFILE_UNSUPPORTED = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EISDIR, errno.EINVAL}
_RETRIES = 16

# Flags and calls some platforms lack (Windows: no fcntl, O_NOFOLLOW or
# O_DIRECTORY, and O_BINARY is needed; macOS: no O_TMPFILE).
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


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


def _proc_fd(fd: int) -> str:
    """The /proc path that names the file open as ``fd`` (Linux)."""
    return f"/proc/self/fd/{fd}"


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
        # ``_path`` is None for a temp file without a name (O_TMPFILE).
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
            if self._path is None:
                try:
                    is_duplicate = engine._link_anonymous(self._fd, abspath)
                except _LinkUnsupported:
                    is_duplicate = engine._link(self._give_name(), abspath)
            else:
                is_duplicate = engine._link(self._path, abspath)
        finally:
            self.abort()
        return HashAddress(id, relpath, abspath, is_duplicate)

    def _give_name(self) -> str:
        """Copy the nameless temp file into a named one, for file systems that cannot link it.

        Returns the new temp file's path.
        """
        engine = self._engine
        engine._anonymous = False
        fd, path = engine._create_named_temp()
        try:
            os.lseek(self._fd, 0, os.SEEK_SET)
            while chunk := os.read(self._fd, CHUNK_SIZE):
                _write_all(fd, chunk)
            if engine.fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            engine._remove_temp(path)
            raise
        os.close(self._fd)
        self._fd, self._path = fd, path
        return path

    def abort(self) -> None:
        """Close and remove the temp file; safe to call more than once."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._path is not None:
                self._engine._remove_temp(self._path)

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

    # -- writing ---------------------------------------------------------

    def writer(self) -> BlobWriter:
        """Start a new temp file (nameless where the OS allows it)."""
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
        for _ in range(_RETRIES):
            try:
                fd = os.open(self.layout.root, flags, 0o600)
                break
            except FileNotFoundError:
                # With the default mode, as HashFS makes it (dmode is for shard folders).
                with contextlib.suppress(FileExistsError):
                    os.makedirs(self.layout.root)
            except OSError as exc:
                if exc.errno not in _TMPFILE_UNSUPPORTED:
                    raise
                self._anonymous = False
                return None
        else:
            raise FileNotFoundError(errno.ENOENT, "folder keeps disappearing", self.layout.root)
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

    def _create_named_temp(self) -> tuple[int, str]:
        name = f"{os.getpid()}-{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        path = os.path.join(self.layout.temp_dir, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY
        for _ in range(_RETRIES):
            try:
                fd = os.open(path, flags, 0o600)
                break
            except FileNotFoundError:
                # Missing, or just removed by a writer that left it empty.
                self.makepath(self.layout.temp_dir)
        else:
            raise FileNotFoundError(errno.ENOENT, "folder keeps disappearing", path)
        try:
            if _fcntl is not None:
                # A live writer holds this lock; gc() only removes unlocked temp files.
                # Blocking: gc() may hold it for a moment while it looks.
                _fcntl.flock(fd, _fcntl.LOCK_EX)
            if self.fmode is not None:
                if hasattr(os, "fchmod"):
                    os.fchmod(fd, self.fmode)
                else:
                    os.chmod(path, self.fmode)
        except BaseException:
            os.close(fd)
            self._remove_temp(path)
            raise
        return fd, path

    def _remove_temp(self, path: str) -> None:
        """Remove a named temp file, and the temp folder when that leaves it empty."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        # Fails while other writers have files there; a writer that finds the
        # folder gone makes it again (see _create_named_temp).
        with contextlib.suppress(OSError):
            os.rmdir(self.layout.temp_dir)

    def _link(self, temp: str, abspath: str) -> bool:
        """Give ``temp`` the name ``abspath`` unless taken; return whether it was."""

        def link(folder: str, name: str) -> None:
            os.link(temp, abspath)

        try:
            return self._commit(link, temp, abspath)
        except _LinkUnsupported:
            return self._rename_into(temp, abspath)

    def _link_anonymous(self, fd: int, abspath: str) -> bool:
        """Give the nameless temp file ``fd`` the name ``abspath`` unless taken.

        Raises:
            _LinkUnsupported: the file system cannot link it; name it another way.
        """
        source = _proc_fd(fd)

        def link(folder: str, name: str) -> None:
            dir_fd = os.open(folder, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC)
            try:
                # With dst_dir_fd this is linkat(..., AT_SYMLINK_FOLLOW): it links
                # the file /proc names, not the /proc entry (plain link() gives EXDEV).
                os.link(source, name, dst_dir_fd=dir_fd, follow_symlinks=True)
            finally:
                os.close(dir_fd)

        return self._commit(link, source, abspath)

    def _commit(self, link: Callable[[str, str], None], source: str, abspath: str) -> bool:
        """Run ``link(folder, name)`` to make ``source`` ``abspath`` unless taken.

        Returns whether ``abspath`` was taken.

        Makes missing folders and retries when a concurrent delete removes
        one midway. A link that already exists counts only when it is a
        regular file (the bytes are there to be seen).

        Raises:
            _LinkUnsupported: the file system has no hard links.
        """
        folder, name = os.path.split(abspath)
        relpath = self.layout.inside(abspath)
        folders = relpath.split(os.sep)[:-1] if relpath else []
        for _ in range(_RETRIES):
            if folders and self._folder_is_not_real(folders):
                raise NotADirectoryError(
                    errno.ENOTDIR, "a folder on the way is a symlink, not a folder", folder
                )
            try:
                link(folder, name)
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
                if not os.path.exists(source):
                    raise
                # The folder is missing, or a concurrent delete just removed it.
                self.makepath(folder)
                continue
            except OSError as exc:
                if exc.errno not in _LINK_UNSUPPORTED:
                    raise
                raise _LinkUnsupported from exc
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
        if os.name == "nt":
            return  # Windows cannot open a folder to flush it; NTFS journals its names
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
        flags = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
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
            flags = os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
            fd = os.open(self.layout.abspath(relpath), flags)
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
        """Yield ``(path, expected address)`` for each file not at its content address.

        A file named by its id keeps its whole extension (``<id>.tar.gz``);
        any other name its last suffix, as HashFS does.
        """
        for path in self.files():
            try:
                id = self.hash_file(path)
            except FileNotFoundError:
                continue
            extension = ""
            if extensions:
                extension = self.layout.stored_extension(self.layout.inside(path) or path)
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
        """Remove named temp files no live writer holds, and empty folders.

        A writer holds a lock on its temp file for as long as it lives, so a
        temp file whose lock can be taken was left by a process that died.
        Where there is no ``flock`` (Windows), a temp file goes when the
        process named in it is gone, or when nothing wrote to it for a day.
        Only temp files last modified more than ``older_than`` seconds ago go
        (default 0: the locks protect live writers). Nameless temp files
        (``O_TMPFILE``) need none of this: they vanish with their writer.
        """
        report = GCReport()
        cutoff = time.time() - (older_than or 0.0)
        try:
            entries = list(os.scandir(self.layout.temp_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and self._is_abandoned(entry.path, cutoff):
                # PermissionError: Windows keeps a file open elsewhere.
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    size = entry.stat(follow_symlinks=False).st_size
                    os.unlink(entry.path)
                    report.temp_files.append(entry.path)
                    report.temp_bytes += size
        if entries:
            with contextlib.suppress(OSError):  # not empty: a writer is at work
                os.rmdir(self.layout.temp_dir)
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
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except OSError:
            return False
        pid = os.path.basename(path).split("-", 1)[0]
        try:
            info = os.fstat(fd)
            if info.st_mtime > cutoff:
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


def source_error(src: object) -> InvalidSource:
    """The error for a ``put()`` source of an unsupported kind."""
    return InvalidSource(
        "Object must be a valid file path or a readable object: put() takes bytes, a path, "
        f"a file object, a FileStorage or an iterable of bytes, not {type(src).__name__}"
    )
