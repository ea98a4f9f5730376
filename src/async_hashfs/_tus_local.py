"""Partial (tus) uploads of a local store: files in its temp folder.

Each upload is two files in ``<root>/.hashfs-tmp/tus/``: ``<id>`` holds the
bytes received so far (its size is the upload's offset) and ``<id>.json``
what else the upload needs to resume (length, metadata, expiry, and once
finished the address it went to). Both are found again by id after a
restart, by any process sharing the root.

An append holds an exclusive ``flock`` on the bytes file, taken without
waiting, so a second append (in this process, another worker, another
server on the same disk) is refused at once rather than interleaved. An
*atomic* append first records its start offset in the JSON file; if it
fails, or its process dies, the file is cut back there, by the append
itself or by the next one to take the lock.

The store's hash of the bytes is kept per process, with the offset it
covers. A process that lacks it (after a restart) or whose hash stops short
of the offset (another worker appended since) reads the missing bytes back
from the file, once, before it appends: bytes before the offset never
change, so the hash goes on from where it stopped.

The engine's temp files are not touched: they sit in the temp folder
itself, and the engine's ``gc`` looks at nothing in subfolders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import stat
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import _folder
from ._address import HashAddress
from ._engine import (
    CHUNK_SIZE,
    Engine,
    _fcntl,  # None on Windows: locks only between threads there
    _write_all,
)
from ._folder import Folder, FolderPath
from ._layout import TEMP_DIRNAME
from ._tus_store import (
    ID_PATTERN,
    LengthConflict,
    PartialReport,
    UploadInfo,
    UploadLocked,
    UploadNotFound,
    UploadTooLarge,
    check_append,
    extension_of,
    new_upload_id,
)

if TYPE_CHECKING:
    from ._tus_store import PartialAppend, PartialStore

__all__ = ["TUS_DIRNAME", "LocalPartialStore"]

#: The folder of partial uploads, inside the store's temp folder.
TUS_DIRNAME = "tus"
_INFO_SUFFIX = ".json"
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_ATTEMPTS = 20
#: Hashes of uploads kept per process (about 350 bytes each), the least recently used
#: dropped past this: an abandoned upload costs no memory for ever.
_HASHES_KEPT = 1024


_stores: weakref.WeakKeyDictionary[Engine, LocalPartialStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()
#: Uploads held by a thread of this process (for platforms without flock).
_held: set[tuple[str, str]] = set()
_held_lock = threading.Lock()


def _read_at(fd: int, view: memoryview, position: int) -> int:
    """Read into ``view`` from byte ``position`` of ``fd``; return how many bytes came."""
    os.lseek(fd, position, os.SEEK_SET)
    with open(fd, "rb", buffering=0, closefd=False) as file:
        return file.readinto(view) or 0


class _Hash:
    """The store's hash of an upload's first ``offset`` bytes."""

    __slots__ = ("digest", "offset")

    def __init__(self, digest: Any, offset: int) -> None:
        self.digest = digest
        self.offset = offset


class LocalPartialStore:
    """The :class:`~async_hashfs._tus_store.PartialStore` of a store on a local folder."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: The hashes kept, the most recently used last (at most _HASHES_KEPT).
        self._hashes: OrderedDict[str, _Hash] = OrderedDict()
        self._hashes_lock = threading.Lock()

    @classmethod
    def of(cls, engine: Engine) -> LocalPartialStore:
        """The partial uploads of ``engine``'s store (one object per engine)."""
        with _stores_lock:
            store = _stores.get(engine)
            if store is None:
                store = _stores[engine] = cls(engine)
            return store

    # -- folders and records ----------------------------------------------

    def _folder(self, make: bool = False) -> FolderPath:
        """Open ``.hashfs-tmp/tus`` (making it with ``make``), never through a symlink."""
        return FolderPath.open(
            self.engine.layout.root,
            [TEMP_DIRNAME, TUS_DIRNAME],
            self.engine.dmode if make else None,
        )

    def _folder_of(self, upload_id: str) -> FolderPath:
        """Open the folder of upload ``upload_id``.

        Raises:
            UploadNotFound: the id is malformed, or there is no such folder.
        """
        if not isinstance(upload_id, str) or not ID_PATTERN.fullmatch(upload_id):
            raise UploadNotFound(str(upload_id))
        try:
            return self._folder()
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(upload_id) from None

    @staticmethod
    def _read_record(folder: Folder, upload_id: str) -> dict[str, Any]:
        try:
            fd = folder.open(upload_id + _INFO_SUFFIX, os.O_RDONLY | _O_BINARY)
        except (FileNotFoundError, NotADirectoryError):
            raise UploadNotFound(upload_id) from None
        with open(fd, "rb") as file:
            data = file.read()
        try:
            record: dict[str, Any] = json.loads(data)
        except ValueError:
            raise UploadNotFound(upload_id) from None  # cut short by a crash mid-write
        return record

    def _write_record(self, folder: Folder, upload_id: str, record: dict[str, Any]) -> None:
        """Replace the upload's record in one rename (never half written)."""
        name = upload_id + _INFO_SUFFIX
        temp = f"{name}.{os.getpid()}-{threading.get_ident()}.new"
        fd = folder.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o600)
        try:
            with open(fd, "wb") as file:
                file.write(json.dumps(record, separators=(",", ":")).encode())
                if self.engine.fsync:
                    file.flush()
                    os.fsync(file.fileno())
            _folder.rename(folder, temp, folder, name)
        except BaseException:
            with contextlib.suppress(OSError):
                folder.unlink(temp)
            raise

    def _info(self, upload_id: str, record: dict[str, Any], offset: int) -> UploadInfo:
        address = record.get("address")
        return UploadInfo(
            id=upload_id,
            offset=offset,
            length=record.get("length"),
            metadata=record.get("metadata", ""),
            expires=record.get("expires"),
            created=record.get("created", 0.0),
            hook_pending=bool(record.get("hook_pending")),
            address=None
            if address is None
            else HashAddress(
                address["id"],
                address["relpath"],
                self.engine.layout.abspath(address["relpath"]),
                True,
            ),
        )

    def _check_length(self, length: int | None) -> None:
        max_size = self.engine.max_size
        if length is not None and max_size is not None and length > max_size:
            raise UploadTooLarge(max_size, "the store's max_size")

    # -- the PartialStore methods ----------------------------------------

    def create(
        self, length: int | None, metadata: str = "", expires: float | None = None
    ) -> UploadInfo:
        """Start a new, empty upload (see ``PartialStore.create``)."""
        self._check_length(length)
        upload_id = new_upload_id()
        record = {
            "length": length,
            "metadata": metadata,
            "expires": expires,
            "created": time.time(),
            "pending": None,
            "address": None,
        }
        for attempt in range(_ATTEMPTS):
            try:
                with self._folder(make=True) as folders:
                    folder = folders.leaf
                    fd = folder.open(
                        upload_id, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600
                    )
                    try:
                        if self.engine.fmode is not None and hasattr(os, "fchmod"):
                            os.fchmod(fd, self.engine.fmode)
                        self._write_record(folder, upload_id, record)
                    except BaseException:
                        with contextlib.suppress(OSError):
                            folder.unlink(upload_id)
                        raise
                    finally:
                        os.close(fd)
                break
            except FileNotFoundError:
                # gc removed the empty folder as it was opened: make it again.
                if attempt == _ATTEMPTS - 1:
                    raise
        # No hash kept yet: the one of no bytes costs nothing to make when the first come.
        return self._info(upload_id, record, 0)

    def info(self, upload_id: str) -> UploadInfo:
        """Return the upload as it is now (see ``PartialStore.info``)."""
        with self._folder_of(upload_id) as folders:
            folder = folders.leaf
            record = self._read_record(folder, upload_id)
            if record.get("address") is not None:
                return self._info(upload_id, record, record["length"])
            if record.get("pending") is not None:
                return self._info(upload_id, record, record["pending"])
            try:
                fd = folder.open(upload_id, os.O_RDONLY | _O_BINARY | _O_CLOEXEC)
            except FileNotFoundError:
                raise UploadNotFound(upload_id) from None
            try:
                size = os.fstat(fd).st_size
                # Asked only of an upload past its expiry (the probe is a shared lock,
                # for an instant: an append starting then would be refused).
                expires = record.get("expires")
                active = expires is not None and expires < time.time()
                active = active and self._held_elsewhere(fd, upload_id)
            finally:
                os.close(fd)
            return dataclasses.replace(self._info(upload_id, record, size), active=active)

    def _held_elsewhere(self, fd: int, upload_id: str) -> bool:
        """Whether a request holds the upload's lock (tried, not taken, on ``fd``)."""
        if _fcntl is None:
            with _held_lock:
                return (self.engine.layout.root, upload_id) in _held
        try:
            _fcntl.flock(fd, _fcntl.LOCK_SH | _fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        _fcntl.flock(fd, _fcntl.LOCK_UN)
        return False

    @contextlib.contextmanager
    def _locked(self, upload_id: str) -> Iterator[tuple[FolderPath, int, dict[str, Any]]]:
        """Hold the upload's lock: yield its folders, its bytes file (open) and its record.

        An atomic append cut short is rolled back first. The record says
        ``address`` when the upload was finished (then the fd is -1).

        Raises:
            UploadNotFound: no such upload.
            UploadLocked: another request holds it.
        """
        with self._folder_of(upload_id) as folders:
            folder = folders.leaf
            try:
                fd = folder.open(upload_id, os.O_RDWR | _O_BINARY | _O_CLOEXEC)
            except FileNotFoundError:
                record = self._read_record(folder, upload_id)
                if record.get("address") is None:
                    raise UploadNotFound(upload_id) from None
                yield folders, -1, record
                return
            try:
                key = (self.engine.layout.root, upload_id)
                self._lock(fd, key)
                try:
                    # Removed (terminated, finished, collected) while we opened it?
                    try:
                        same = os.path.samestat(os.fstat(fd), folder.lstat(upload_id))
                    except FileNotFoundError:
                        same = False
                    if not same:
                        record = self._read_record(folder, upload_id)
                        if record.get("address") is None:
                            raise UploadNotFound(upload_id)
                        yield folders, -1, record
                        return
                    record = self._read_record(folder, upload_id)
                    pending = record.get("pending")
                    if pending is not None:
                        os.ftruncate(fd, pending)
                        record["pending"] = None
                        self._write_record(folder, upload_id, record)
                        self._forget_hash(upload_id, beyond=pending)
                    yield folders, fd, record
                finally:
                    self._unlock(fd, key)
            finally:
                os.close(fd)

    @staticmethod
    def _lock(fd: int, key: tuple[str, str]) -> None:
        if _fcntl is not None:
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            except BlockingIOError:
                raise UploadLocked(key[1]) from None
            return
        with _held_lock:
            if key in _held:
                raise UploadLocked(key[1])
            _held.add(key)

    @staticmethod
    def _unlock(fd: int, key: tuple[str, str]) -> None:
        if _fcntl is not None:
            _fcntl.flock(fd, _fcntl.LOCK_UN)
            return
        with _held_lock:
            _held.discard(key)

    def _forget_hash(self, upload_id: str, beyond: int | None = None) -> None:
        """Drop the kept hash (only if it covers more than ``beyond`` bytes, when given)."""
        with self._hashes_lock:
            kept = self._hashes.get(upload_id)
            if kept is not None and (beyond is None or kept.offset > beyond):
                del self._hashes[upload_id]

    def _caught_up_hash(self, upload_id: str, fd: int, offset: int) -> Any:
        """The store's hash of the upload's first ``offset`` bytes (under its lock).

        Reads back from the file only the bytes the kept hash lacks: all of
        them after a restart, none in the process that received them.
        """
        with self._hashes_lock:
            kept = self._hashes.pop(upload_id, None)
        if kept is None or kept.offset > offset:
            kept = _Hash(hashlib.new(self.engine.layout.algorithm), 0)
        position = kept.offset
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while position < offset:
            n = _read_at(fd, view[: min(CHUNK_SIZE, offset - position)], position)
            if n == 0:
                raise OSError(errno.EIO, "partial upload shorter than its offset", upload_id)
            kept.digest.update(view[:n])
            position += n
        kept.offset = position
        return kept.digest

    def _keep_hash(self, upload_id: str, digest: Any, offset: int) -> None:
        with self._hashes_lock:
            self._hashes[upload_id] = _Hash(digest, offset)
            self._hashes.move_to_end(upload_id)
            while len(self._hashes) > _HASHES_KEPT:
                # The least recently used: its upload is re-hashed from disk if it resumes.
                self._hashes.popitem(last=False)

    def open_append(
        self,
        upload_id: str,
        offset: int,
        *,
        length: int | None = None,
        atomic: bool = False,
    ) -> PartialAppend:
        """Lock the upload and start appending at ``offset`` (see ``PartialStore``)."""
        locked = self._locked(upload_id)
        folders, fd, record = locked.__enter__()
        try:
            if fd < 0:
                raise UploadNotFound(upload_id)  # finished
            current = os.fstat(fd).st_size
            if check_append(upload_id, current, record.get("length"), offset, length):
                self._check_length(length)
                # Recorded by the commit (or a plain abort): a refused append declares nothing.
                record["length"] = length
                record["declared"] = True
            digest = self._caught_up_hash(upload_id, fd, current)
            os.lseek(fd, current, os.SEEK_SET)  # this append's own descriptor: writes follow
            if atomic:
                record["pending"] = current
                self._write_record(folders.leaf, upload_id, record)
            return _LocalAppend(self, locked, folders.leaf, fd, record, upload_id, current, digest)
        except BaseException as exc:
            locked.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def finish(self, upload_id: str, extension: str = "") -> HashAddress:
        """Commit the complete upload into its content address (see ``PartialStore``)."""
        with self._locked(upload_id) as (folders, fd, record):
            if fd < 0:
                return self._info(upload_id, record, record["length"]).address  # type: ignore[return-value]
            size = os.fstat(fd).st_size
            if record.get("length") != size:
                raise LengthConflict(
                    f"upload {upload_id!r} is not complete: {size} of {record.get('length')} bytes"
                )
            digest = self._caught_up_hash(upload_id, fd, size)
            return self._finish_locked(folders.leaf, fd, record, upload_id, digest, extension)

    def _finish_locked(
        self,
        folder: Folder,
        fd: int,
        record: dict[str, Any],
        upload_id: str,
        digest: Any,
        extension: str,
    ) -> HashAddress:
        """Link the complete bytes file into its address, record it, drop the file (locked).

        Cut short anywhere, it is done again by the next finish: the link is
        idempotent (a duplicate then), and the bytes file goes only once the
        record names the address.
        """
        address = self.engine.commit_hashed(fd, folder, upload_id, digest.hexdigest(), extension)
        record["address"] = {"id": address.id, "relpath": address.relpath}
        record["hook_pending"] = True
        self._write_record(folder, upload_id, record)
        with contextlib.suppress(FileNotFoundError):
            folder.unlink(upload_id)
        self._forget_hash(upload_id)
        return address

    def refresh(self, address: HashAddress) -> bool:
        """Set the stored file's mtime to now (see ``PartialStore.refresh``)."""
        try:
            os.utime(self.engine.layout.abspath(address.relpath))
        except FileNotFoundError:
            return False
        except OSError:
            pass  # another owner's file: it keeps its mtime, as a duplicate put's does
        return True

    def hook_done(self, upload_id: str) -> None:
        """Clear the finished upload's ``hook_pending`` (see ``PartialStore.hook_done``)."""
        with contextlib.suppress(UploadNotFound), self._folder_of(upload_id) as folders:
            record = self._read_record(folders.leaf, upload_id)
            if record.get("address") is not None and record.get("hook_pending"):
                record["hook_pending"] = False
                self._write_record(folders.leaf, upload_id, record)

    def terminate(self, upload_id: str) -> None:
        """Remove the upload and its bytes (see ``PartialStore.terminate``)."""
        with self._locked(upload_id) as (folders, _, _):
            self._remove(folders.leaf, upload_id)

    def _remove(self, folder: Folder, upload_id: str) -> int:
        """Remove an upload's files (its lock held); return the bytes they held."""
        removed = 0
        for name in (upload_id, upload_id + _INFO_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                removed += folder.lstat(name).st_size if name == upload_id else 0
                folder.unlink(name)
        self._forget_hash(upload_id)
        return removed

    def _ids(self) -> list[str]:
        try:
            folders = self._folder()
        except (FileNotFoundError, NotADirectoryError):
            return []
        with folders, folders.leaf.scandir() as entries:
            return sorted(
                entry.name[: -len(_INFO_SUFFIX)]
                for entry in entries
                if entry.name.endswith(_INFO_SUFFIX)
                and ID_PATTERN.fullmatch(entry.name[: -len(_INFO_SUFFIX)])
                and entry.is_file(follow_symlinks=False)
            )

    def collect(self, now: float) -> PartialReport:
        """Remove the uploads past their expiry (see ``PartialStore.collect``)."""
        report = PartialReport()
        for upload_id in self._ids():
            try:
                with self._locked(upload_id) as (folders, fd, record):
                    if fd >= 0 and record.get("length") == os.fstat(fd).st_size:
                        # Complete but not stored (its server died first): store it.
                        digest = self._caught_up_hash(upload_id, fd, record["length"])
                        extension = extension_of(record.get("metadata", ""))
                        self._finish_locked(folders.leaf, fd, record, upload_id, digest, extension)
                        continue
                    expires = record.get("expires")
                    if expires is None or expires >= now:
                        continue
                    report.bytes += self._remove(folders.leaf, upload_id)
                    report.uploads.append(upload_id)
            except (UploadNotFound, UploadLocked):
                continue
        self._sweep_strays(now)
        return report

    def _sweep_strays(self, now: float) -> None:
        """Remove records' temp files a killed writer left, and the folder once empty."""
        try:
            folders = self._folder()
        except (FileNotFoundError, NotADirectoryError):
            return
        with folders:
            folder = folders.leaf
            with folder.scandir() as entries:
                names = [e.name for e in entries if e.name.endswith(".new")]
            for name in names:
                with contextlib.suppress(OSError):
                    info = folder.lstat(name)
                    if stat.S_ISREG(info.st_mode) and now - info.st_mtime > 60:
                        folder.unlink(name)
            # Fails while uploads remain; a create that finds it gone makes it again.
            folders.remove_empty()

    def stats(self) -> PartialReport:
        """Count the unfinished uploads and their bytes (see ``PartialStore.stats``)."""
        report = PartialReport()
        for upload_id in self._ids():
            with contextlib.suppress(UploadNotFound):
                info = self.info(upload_id)
                if info.address is None:
                    report.uploads.append(upload_id)
                    report.bytes += info.offset
        return report


class _LocalAppend:
    """Bytes appended to one local partial upload under its lock (a ``PartialAppend``)."""

    def __init__(
        self,
        store: LocalPartialStore,
        locked: contextlib.AbstractContextManager[Any],
        folder: Folder,
        fd: int,
        record: dict[str, Any],
        upload_id: str,
        start: int,
        digest: Any,
    ) -> None:
        self._store = store
        self._locked: contextlib.AbstractContextManager[Any] | None = locked
        self._folder = folder
        self._fd = fd
        self._record = record
        self._id = upload_id
        self._atomic = record.get("pending") is not None
        self._digest = digest
        self._length: int | None = record.get("length")
        #: Whether this append declared the length (recorded when it counts).
        self._declared = bool(record.pop("declared", False))
        self.start = start
        self.written = 0
        self._broken = False

    def write(self, data: Any) -> None:
        """Append one chunk (see ``PartialAppend.write``)."""
        size = memoryview(data).nbytes
        end = self.start + self.written + size
        if self._length is not None and end > self._length:
            raise UploadTooLarge(self._length, "the upload's length")
        max_size = self._store.engine.max_size
        if max_size is not None and end > max_size:
            raise UploadTooLarge(max_size, "the store's max_size")
        try:
            _write_all(self._fd, data)
        except BaseException:
            self._broken = True
            raise
        self._digest.update(data)
        self.written += size

    def writelines(self, chunks: Iterable[Any]) -> None:
        """Append several chunks in order."""
        for chunk in chunks:
            self.write(chunk)

    def _release(self) -> None:
        locked, self._locked = self._locked, None
        if locked is not None:
            locked.__exit__(None, None, None)

    def _offset(self) -> int:
        return self.start + self.written

    def commit(self, expires: float | None = None, extension: str | None = None) -> UploadInfo:
        """Make the written bytes part of the upload (see ``PartialAppend.commit``)."""
        if self._locked is None:
            raise RuntimeError("append already ended")
        store = self._store
        try:
            if self._broken:
                raise OSError(errno.EIO, "a write failed; the append cannot be committed")
            if store.engine.fsync:
                os.fsync(self._fd)
            record = self._record
            if self._atomic or expires is not None or self._declared:
                record["pending"] = None
                if expires is not None:
                    record["expires"] = expires
                store._write_record(self._folder, self._id, record)
            info = store._info(self._id, record, self._offset())
            if extension is None or not info.complete:
                store._keep_hash(self._id, self._digest, self._offset())
                return info
            address = store._finish_locked(
                self._folder, self._fd, record, self._id, self._digest, extension
            )
            return dataclasses.replace(info, address=address, hook_pending=True)
        finally:
            self._release()

    def abort(self, expires: float | None = None) -> UploadInfo:
        """End without commit (see ``PartialAppend.abort``)."""
        store = self._store
        if self._locked is None:
            return store.info(self._id)
        try:
            record = self._record
            if self._declared and (self._atomic or self._broken):
                record["length"] = None  # a length declared by a refused append
            if self._atomic:
                os.ftruncate(self._fd, self.start)
                record["pending"] = None
                store._write_record(self._folder, self._id, record)
                offset = self.start
            else:
                offset = os.fstat(self._fd).st_size
                kept = offset > self.start
                if kept and expires is not None:
                    record["expires"] = expires
                if (self._declared and not self._broken) or (kept and expires is not None):
                    store._write_record(self._folder, self._id, record)  # with its bytes
                if not self._broken:
                    store._keep_hash(self._id, self._digest, offset)
            return store._info(self._id, record, offset)
        finally:
            self._release()

    def __enter__(self) -> _LocalAppend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


if TYPE_CHECKING:
    _check_store: PartialStore = LocalPartialStore(Engine.__new__(Engine))
    _check_append: type[PartialAppend] = _LocalAppend
