"""The object-storage engine: the same operations as ``Engine``, on S3.

Blocking and thread-safe like the file-system engine, so both stores run it
in worker threads unchanged. Keys are the local layout's relpaths under the
root's prefix (``s3://bucket/prefix/ab/c/d/...``).

Writes keep the invariants: bytes are hashed as they stream; a small file
(up to ``SMALL_OBJECT``) is kept in memory and put at its content key in
one conditional request (``If-None-Match: *``: exactly one writer of the
same bytes wins); a larger one streams as a multipart upload to a temp key
under ``.hashfs-tmp/`` and is copied to its content key once complete, so
nothing is ever visible at a content key before all of it is there. Memory
per put is bounded by the multipart buffer, not by the size.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from typing import IO, Any

import obstore
from hashfs import HashAddress
from obstore.exceptions import AlreadyExistsError, NotFoundError, NotSupportedError
from obstore.store import S3Store

from ._engine import CHUNK_SIZE, Engine, GCReport, check_read_mode
from ._exceptions import CorruptFile, FileTooLarge, NotFound
from ._layout import TEMP_DIRNAME, Layout

__all__ = ["S3Engine"]

#: Files up to this size are buffered and put in one conditional request.
SMALL_OBJECT = 8 << 20
#: Multipart part size, and parts uploaded at once: the memory bound of a large put.
PART_SIZE = 5 << 20
PART_CONCURRENCY = 2
#: gc() keeps younger temp objects: no lock says whether their writer lives.
TEMP_GRACE = 3600.0


def _key(relpath: str) -> str:
    return relpath.replace("\\", "/")


class S3Writer:
    """One object on its way into the store; see :class:`~async_hashfs._engine.BlobWriter`."""

    def __init__(self, engine: S3Engine) -> None:
        self._engine = engine
        self._hash = hashlib.new(engine.layout.algorithm)
        self.size = 0
        self._buffer: list[bytes] = []
        self._stream: Any = None
        self._temp: str | None = None

    def write(self, data: Any) -> None:
        size = self.size + memoryview(data).nbytes
        max_size = self._engine.max_size
        if max_size is not None and size > max_size:
            raise FileTooLarge(max_size)
        self._hash.update(data)
        self.size = size
        if self._stream is not None:
            # A copy: the writer may keep the buffer, and sources reuse theirs.
            self._stream.write(bytes(data))
            return
        self._buffer.append(bytes(data))
        if size > SMALL_OBJECT:
            self._temp = f"{TEMP_DIRNAME}/{uuid.uuid4().hex}.tmp"
            self._stream = obstore.open_writer(
                self._engine.store,
                self._temp,
                buffer_size=PART_SIZE,
                max_concurrency=PART_CONCURRENCY,
            )
            for chunk in self._buffer:
                self._stream.write(chunk)
            self._buffer = []

    def writelines(self, chunks: Iterable[Any]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def commit(self, extension: str = "") -> HashAddress:
        """Make the object visible at its content key (or find it already there)."""
        engine = self._engine
        id = self._hash.hexdigest()
        relpath = engine.layout.relpath(id, extension)
        key = _key(relpath)
        try:
            if self._stream is None:
                is_duplicate = engine._create(key, b"".join(self._buffer))
            else:
                self._stream.close()
                is_duplicate = engine._copy_new(self._temp or "", key)
        finally:
            self.abort()
        return HashAddress(id, relpath, engine.layout.abspath(relpath), is_duplicate)

    def abort(self) -> None:
        """Drop the buffer and any temp object; safe to call more than once."""
        self._buffer = []
        stream, self._stream = self._stream, None
        temp, self._temp = self._temp, None
        if stream is not None:
            with contextlib.suppress(Exception):
                if not stream.closed():
                    stream.close()
        if temp is not None:
            with contextlib.suppress(FileNotFoundError, NotFoundError):
                obstore.delete(self._engine.store, temp)

    def __enter__(self) -> S3Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


class _ObjectReader(io.RawIOBase):
    """A read-only raw file over one object, read with ranged GETs."""

    def __init__(self, store: Any, key: str, size: int) -> None:
        self._store = store
        self._key = key
        self._size = size
        self._position = 0
        self.name = key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._position)
        if want <= 0:
            return 0
        data = obstore.get_range(self._store, self._key, start=self._position, length=want)
        view = memoryview(data)
        buffer[: len(view)] = view
        self._position += len(view)
        return len(view)


class S3Blob:
    """A stored object opened for serving; see :class:`~async_hashfs._engine.StoredBlob`."""

    file = None

    def __init__(
        self, store: Any, relpath: str, id: str, extension: str, size: int, mtime: float
    ) -> None:
        self._store = store
        self.relpath = relpath
        self.id = id
        self.extension = extension
        self.size = size
        self.mtime = mtime
        self.closed = False

    def pread(self, size: int, offset: int) -> bytes:
        if size <= 0 or offset >= self.size:
            return b""
        return bytes(obstore.get_range(self._store, _key(self.relpath), start=offset, length=size))

    def close(self) -> None:
        self.closed = True


class S3Engine:
    """All object-storage work of one store. Every method blocks; all are thread-safe."""

    def __init__(
        self,
        layout: Layout,
        *,
        max_size: int | None = None,
        fsync: bool = False,
        options: Mapping[str, Any] | None = None,
        fmode: int | None = None,
        dmode: int | None = None,
    ) -> None:
        if max_size is not None and (isinstance(max_size, bool) or max_size < 0):
            raise ValueError(f"max_size must be a non-negative integer or None, not {max_size!r}")
        self.layout = layout
        self.max_size = max_size
        self.fsync = fsync  # objects are durable once the request returns
        bucket, _, prefix = layout.root.removeprefix("s3://").partition("/")
        settings = dict(options or {})
        # SeaweedFS, MinIO and AWS take a conditional copy with this header.
        settings.setdefault("copy_if_not_exists", "header:If-None-Match:*")
        client_options = dict(settings.pop("client_options", {}) or {})
        endpoint = settings.get("endpoint")
        if endpoint and str(endpoint).startswith("http://"):
            client_options.setdefault("allow_http", True)
        self.store = S3Store(
            bucket,
            prefix=prefix or None,
            client_options=client_options or None,  # type: ignore[arg-type]
            **settings,
        )

    # -- writing ---------------------------------------------------------

    def writer(self) -> S3Writer:
        return S3Writer(self)

    # The same single pass as on a file system, through this engine's writer.
    put = Engine.put

    def _create(self, key: str, data: bytes) -> bool:
        """Put ``data`` at ``key`` unless taken; return whether it was."""
        try:
            obstore.put(self.store, key, data, mode="create")
        except AlreadyExistsError:
            return True
        return False

    def _copy_new(self, temp: str, key: str) -> bool:
        """Copy ``temp`` to ``key`` unless taken; return whether it was."""
        try:
            obstore.copy(self.store, temp, key, overwrite=False)
        except AlreadyExistsError:
            return True
        except NotSupportedError:
            # No atomic copy-if-absent here: check, then copy. Two racing
            # writers of the same bytes may both report a new object; the
            # object itself is complete either way.
            if self._exists(key):
                return True
            obstore.copy(self.store, temp, key, overwrite=True)
        return False

    def makepath(self, path: str) -> None:
        """Object stores have no folders."""

    def remove_empty(self, folder: str) -> None:
        """Object stores have no folders."""

    # -- reading ---------------------------------------------------------

    def _exists(self, key: str) -> bool:
        try:
            obstore.head(self.store, key)
        except (FileNotFoundError, NotFoundError):
            return False
        return True

    def resolve_relpath(self, ref: object) -> str | None:
        """The key of the object ``ref`` (an id, relpath or s3:// URL) names, or ``None``."""
        if isinstance(ref, bytes):
            ref = ref.decode()
        elif hasattr(ref, "__fspath__"):
            ref = str(ref.__fspath__())
        if not isinstance(ref, str):
            raise TypeError(f"a reference is an id or a path, not {type(ref).__name__}")
        layout = self.layout
        if layout.is_id(ref):
            key = _key(layout.relpath(ref))
            if self._exists(key):
                return key
            folder, _, name = key.rpartition("/")
            # Listing is by folder; the extension variants sit beside the bare key.
            for batch in obstore.list(self.store, prefix=folder or None, chunk_size=100):
                for meta in batch:
                    path = str(meta["path"])
                    if path.rpartition("/")[2].startswith(name + ".") and (
                        layout.parse_address(path) is not None
                    ):
                        return path
            return None
        relpath = layout.inside(ref)
        if relpath is None:
            return None
        return relpath if self._exists(_key(relpath)) else None

    # What only needs resolve_relpath, the layout and hash_file is Engine's own.
    resolve = Engine.resolve
    address = Engine.address
    get = Engine.get
    verify = Engine.verify

    def open(self, ref: object, mode: str = "rb") -> IO[Any]:
        check_read_mode(mode)
        relpath = self.resolve_relpath(ref)
        if relpath is None:
            raise NotFound(ref)
        try:
            size = obstore.head(self.store, relpath)["size"]
        except (FileNotFoundError, NotFoundError) as exc:
            raise NotFound(ref) from exc
        raw = _ObjectReader(self.store, relpath, size)
        binary = io.BufferedReader(raw, CHUNK_SIZE)
        return binary if "b" in mode else io.TextIOWrapper(binary)

    def open_blob(self, relpath: str, verify: bool = False) -> S3Blob | None:
        parsed = self.layout.parse_address(relpath)
        if parsed is None:
            return None
        try:
            meta = obstore.head(self.store, _key(relpath))
        except (FileNotFoundError, NotFoundError):
            return None
        id, extension = parsed
        if verify:
            actual = self.hash_file(relpath)
            if actual != id:
                raise CorruptFile(relpath, actual)
        mtime = meta["last_modified"].timestamp()
        return S3Blob(self.store, relpath, id, extension, meta["size"], mtime)

    def presign(self, relpath: str, expires: float = 300.0) -> str | None:
        """A short-lived URL that GETs the object at content address ``relpath``."""
        if self.layout.parse_address(relpath) is None or not self._exists(_key(relpath)):
            return None
        return obstore.sign(self.store, "GET", _key(relpath), timedelta(seconds=expires))

    def delete(self, ref: object) -> None:
        relpath = self.resolve_relpath(ref)
        if relpath is not None:
            with contextlib.suppress(FileNotFoundError, NotFoundError):
                obstore.delete(self.store, relpath)

    def _objects(self, prefix: str | None = None) -> Iterator[dict[str, Any]]:
        for batch in obstore.list(self.store, prefix=prefix, chunk_size=1000):
            yield from batch

    def _stored(self) -> Iterator[dict[str, Any]]:
        for meta in self._objects():
            if not str(meta["path"]).startswith(TEMP_DIRNAME + "/"):
                yield meta

    def files(self) -> Iterator[str]:
        for meta in self._stored():
            yield self.layout.abspath(meta["path"])

    def folders(self) -> Iterator[str]:
        seen: set[str] = set()
        for meta in self._stored():
            folder = str(meta["path"]).rpartition("/")[0]
            if folder not in seen:
                seen.add(folder)
                yield self.layout.abspath(folder) if folder else self.layout.root

    def sizes(self) -> Iterator[tuple[str, int]]:
        for meta in self._stored():
            yield self.layout.abspath(meta["path"]), int(meta["size"])

    def count(self) -> int:
        return sum(1 for _ in self._stored())

    def size(self) -> int:
        return sum(int(meta["size"]) for meta in self._stored())

    computehash = Engine.computehash

    def hash_file(self, path: str | int, checkpoint: Callable[[], None] | None = None) -> str:
        """The hex digest of the object at ``path`` (an s3:// URL or a relpath)."""
        relpath = self.layout.inside(str(path)) or str(path)
        digest = hashlib.new(self.layout.algorithm)
        for chunk in obstore.get(self.store, _key(relpath)).stream(min_chunk_size=CHUNK_SIZE):
            if checkpoint is not None:
                checkpoint()
            digest.update(chunk)
        return digest.hexdigest()

    def corrupted(self, extensions: bool = True) -> Iterator[tuple[str, HashAddress]]:
        for meta in self._stored():
            relpath = str(meta["path"])
            try:
                id = self.hash_file(relpath)
            except (FileNotFoundError, NotFoundError):
                continue
            extension = self.layout.stored_extension(relpath) if extensions else ""
            expected = self.layout.relpath(id, extension)
            if expected != relpath:
                yield (
                    self.layout.abspath(relpath),
                    HashAddress(id, expected, self.layout.abspath(expected), False),
                )

    def repair(self, extensions: bool = True) -> list[tuple[str, HashAddress]]:
        repaired = []
        for path, address in list(self.corrupted(extensions)):
            old = self.layout.inside(path) or path
            self._copy_new(old, _key(address.relpath))
            obstore.delete(self.store, old)
            repaired.append((path, address))
        return repaired

    def gc(self, older_than: float = 0.0) -> GCReport:
        """Remove temp objects older than ``older_than`` (at least an hour) seconds."""
        report = GCReport()
        cutoff = time.time() - max(older_than, TEMP_GRACE)
        for meta in self._objects(TEMP_DIRNAME + "/"):
            if meta["last_modified"].timestamp() < cutoff:
                with contextlib.suppress(FileNotFoundError, NotFoundError):
                    obstore.delete(self.store, meta["path"])
                    report.temp_files.append(self.layout.abspath(meta["path"]))
                    report.temp_bytes += int(meta["size"])
        return report
