"""Partial (tus) uploads of an ``s3://`` store: multipart uploads on the bucket.

Everything an upload needs lives on the bucket, so that any server sharing
the root (behind a load balancer, or one started after the first died) can
resume it. Upload ``<id>`` is the folder ``.hashfs-tmp/tus/<id>/`` in the
root:

- ``info``: a JSON record: length, metadata, expiry, the multipart upload's
  id and the ETag and size of each committed part, the held tail, the lock,
  and once finished the address the bytes went to. The record is the truth:
  the upload's offset is the size of its committed parts plus its tail;
  parts or tail objects it does not name do not count.
- ``data``: the multipart upload the parts go to, created with the first
  full part; completed into a temp object only when the upload is finished.
- ``<token>.part``: the tail: bytes received but short of a full part (S3
  refuses parts under 5 MiB but the last). Each append that ends short of
  a part adds one such object (small PATCH bodies cost one PUT of their own
  bytes, not a rewrite of the tail); the first full part gathers them.
  Objects are never rewritten: a new one is written, the record switched to
  it, the old one deleted. The process that put a tail keeps its bytes (up
  to 64 MiB of tails in all), so it gathers them without a GET.

Every change of the record is a conditional PUT (``If-Match`` its ETag,
``If-None-Match: *`` to create): of two servers changing one upload, one
wins, the other's write is refused. The lock is a field of the record, taken
by such a write, with a lease (``tus_lock_seconds``) that a thread of its
holder renews every third of it; a second request finds it held and gets
:class:`UploadLocked`; the lock of a server that died lapses after the lease
(by the clocks of the servers, which must agree to well within it). A
holder that lost its lock (it froze past its lease and another took over)
stops before its next write; parts it sent meanwhile are not named by the record, and S3
completes a multipart upload with the parts (and ETags) the record names.
SeaweedFS 4.48 honours ``If-Match`` and ``If-None-Match`` on PutObject
atomically (one winner of 8 racing writers, every round).

The store's hash of the bytes is kept per process, with the ETag of the
record it matches: the server that received every byte so far goes on
hashing; any other (a restart, another server) cannot (a hash state cannot
be saved), and :meth:`S3PartialStore.finish` then hashes the completed temp
object with one streamed GET. The commit into the content address is a
server-side copy (:meth:`~async_hashfs._s3.S3Engine.commit_copy`), after one
HEAD for a duplicate; an upload that never filled a part is put directly
with the small-put path's conditional PUT.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

from . import _s3_sweep
from ._address import HashAddress
from ._engine import CHUNK_SIZE
from ._s3 import (
    _PART_IN_MEMORY,
    TEMP_GRACE,
    TUS_PREFIX,
    S3Engine,
    _error_code,
    _key,
    part_size_for,
)
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

__all__ = ["S3PartialStore"]

_INFO = "info"
_DATA = "data"
_PART = ".part"
#: A tail of more objects than this is gathered into one at the next commit.
_MAX_PIECES = 16
#: Bytes of tail objects a process keeps (the oldest go first), so that the
#: part that gathers them needs no GET when the same server goes on.
_TAILS_KEPT = 64 * 1024 * 1024
#: Hashes of uploads kept per process, the least recently used dropped past this.
_HASHES_KEPT = 1024


class _Refused(Exception):
    """A conditional write of a record was refused: someone else changed it."""


def _offset(record: dict[str, Any]) -> int:
    parts: list[list[Any]] = record["parts"] + record["pieces"]
    return sum(int(size) for _, size in parts)


class _Held:
    """The lock of one upload, held by this process: its record and the record's ETag.

    A thread renews the lease every third of it while the lock is held, so
    a request that waits on its client or on a long copy keeps the upload,
    and a process that dies (or freezes) loses it within one lease.
    """

    def __init__(
        self,
        store: S3PartialStore,
        upload_id: str,
        record: dict[str, Any],
        etag: str,
        lease: float,
    ) -> None:
        self.store = store
        self.id = upload_id
        self.record = record
        self.etag = etag
        self.lease = lease
        self.until = float(record["lock"]["until"])
        self.released = False
        self.lost = False
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._renewer = threading.Thread(
            target=self._renew, name=f"hashfs-tus-lease-{upload_id[:8]}", daemon=True
        )
        self._renewer.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.save()
            except UploadLocked:
                self.lost = True
                return
            except Exception:
                continue  # the server did not answer: try again, within the lease

    def check(self) -> None:
        """Raise :class:`UploadLocked` unless the lock is still ours (before any write)."""
        if self.lost or self.released or time.time() >= self.until:
            raise UploadLocked(self.id)

    def save(self, record: dict[str, Any] | None = None, release: bool = False) -> None:
        """Write ``record`` (else the held one) under the lock, renewing or releasing it.

        Raises:
            UploadLocked: the lock lapsed and another request took the upload.
        """
        with self._mutex:
            if self.released:
                raise UploadLocked(self.id)
            record = dict(self.record if record is None else record)
            until = time.time() + self.lease
            if release:
                record["lock"] = None
                self._stop.set()
            else:
                record["lock"] = dict(self.record["lock"], until=until)
            try:
                self.etag = self.store._write(self.id, record, self.etag)
            except _Refused:
                self.lost = True
                raise UploadLocked(self.id) from None
            self.record = record
            self.until = until
            self.released = release

    def end(self) -> None:
        """Stop renewing, writing nothing (the record is about to be removed)."""
        self._stop.set()
        with self._mutex:
            self.released = True

    def release(self) -> None:
        """Release the lock, leaving the record as it was; quiet if it was lost."""
        self._stop.set()
        if not self.released:
            with contextlib.suppress(UploadLocked):
                self.save(release=True)
            self.released = True


class S3PartialStore:
    """The :class:`~async_hashfs._tus_store.PartialStore` of a store on an S3 bucket.

    Blocking and thread-safe, like its engine; one per engine
    (:meth:`S3Engine.partial_uploads`).
    """

    def __init__(self, engine: S3Engine) -> None:
        self.engine = engine
        self.lock_seconds = engine.tus_lock_seconds
        #: The hashes kept, the most recently used last (at most _HASHES_KEPT).
        self._hashes: OrderedDict[str, tuple[Any, str]] = OrderedDict()
        self._hashes_lock = threading.Lock()
        self._tails: OrderedDict[str, bytes] = OrderedDict()
        self._tails_size = 0
        self._tails_lock = threading.Lock()

    # -- keys and records ------------------------------------------------------

    @staticmethod
    def _checked(upload_id: object) -> str:
        if not isinstance(upload_id, str) or not ID_PATTERN.fullmatch(upload_id):
            raise UploadNotFound(str(upload_id))
        return upload_id

    @staticmethod
    def info_key(upload_id: str) -> str:
        return f"{TUS_PREFIX}{upload_id}/{_INFO}"

    @staticmethod
    def data_key(upload_id: str) -> str:
        """The key of the multipart upload (and, once completed, of the temp object)."""
        return f"{TUS_PREFIX}{upload_id}/{_DATA}"

    @staticmethod
    def piece_key(upload_id: str, token: str) -> str:
        return f"{TUS_PREFIX}{upload_id}/{token}{_PART}"

    def _read(self, upload_id: str) -> tuple[dict[str, Any], str]:
        """The upload's record and its ETag.

        Raises:
            UploadNotFound: no record (or one cut short).
        """
        try:
            result = obstore.get(self.engine.store, self.info_key(upload_id))
            data = bytes(result.bytes())
        except (FileNotFoundError, NotFoundError):
            raise UploadNotFound(upload_id) from None
        try:
            record: dict[str, Any] = json.loads(data)
            if not isinstance(record["parts"], list) or not isinstance(record["pieces"], list):
                raise TypeError(upload_id)
        except (ValueError, KeyError, TypeError):
            raise UploadNotFound(upload_id) from None
        return record, str(result.meta["e_tag"])

    def _write(self, upload_id: str, record: dict[str, Any], etag: str | None) -> str:
        """Put the record if it is still at ``etag`` (``None``: if there is none); its new ETag.

        Each write has its own ``rev``, so that the record's bytes (and ETag)
        never repeat, and so that a write refused on a retry (the client's,
        after a lost answer to a write that did land) is known for ours.

        Raises:
            _Refused: the record changed (or exists) meanwhile.
        """
        rev = secrets.token_hex(8)
        data = json.dumps(dict(record, rev=rev), separators=(",", ":")).encode()
        mode: Any = "create" if etag is None else {"e_tag": etag}
        try:
            result = obstore.put(self.engine.store, self.info_key(upload_id), data, mode=mode)
        except (PreconditionError, AlreadyExistsError, FileNotFoundError, NotFoundError):
            with contextlib.suppress(UploadNotFound):
                found, found_etag = self._read(upload_id)
                if found.get("rev") == rev:
                    return found_etag
            raise _Refused from None
        return str(result["e_tag"])

    def _acquire(self, upload_id: str, lease: float | None = None) -> tuple[_Held, str]:
        """Take the upload's lock; return it and the ETag the record had before.

        Raises:
            UploadNotFound: no such upload.
            UploadLocked: another request holds it (its lease not yet lapsed).
        """
        record, etag = self._read(self._checked(upload_id))
        lock = record.get("lock")
        now = time.time()
        if lock is not None and float(lock["until"]) > now:
            raise UploadLocked(upload_id)
        lease = self.lock_seconds if lease is None else lease
        locked = dict(record, lock={"token": secrets.token_hex(8), "until": now + lease})
        try:
            new_etag = self._write(upload_id, locked, etag)
        except _Refused:
            raise UploadLocked(upload_id) from None
        return _Held(self, upload_id, locked, new_etag, lease), etag

    def _info(self, upload_id: str, record: dict[str, Any]) -> UploadInfo:
        address = record.get("address")
        finished = None
        if address is not None:
            relpath = address["relpath"]
            finished = HashAddress(
                address["id"], relpath, self.engine.layout.abspath(relpath), True
            )
        return UploadInfo(
            id=upload_id,
            offset=record["length"] if finished is not None else _offset(record),
            length=record.get("length"),
            metadata=record.get("metadata", ""),
            expires=record.get("expires"),
            created=record.get("created", 0.0),
            address=finished,
            hook_pending=finished is not None and bool(record.get("hook_pending")),
            active=record.get("lock") is not None and float(record["lock"]["until"]) > time.time(),
        )

    # -- the hash kept in this process -------------------------------------------

    def _kept_hash(self, upload_id: str, etag: str, offset: int) -> Any:
        """The hash of the upload's bytes if this process saw all of them, else ``None``."""
        with self._hashes_lock:
            kept = self._hashes.pop(upload_id, None)
        if kept is not None and kept[1] == etag:
            return kept[0]
        return hashlib.new(self.engine.layout.algorithm) if offset == 0 else None

    def _keep_hash(self, upload_id: str, digest: Any, etag: str) -> None:
        if digest is not None:
            with self._hashes_lock:
                self._hashes[upload_id] = (digest, etag)
                self._hashes.move_to_end(upload_id)
                while len(self._hashes) > _HASHES_KEPT:
                    # The least recently used: its finish hashes the object with a GET.
                    self._hashes.popitem(last=False)

    def _forget_hash(self, upload_id: str) -> None:
        with self._hashes_lock:
            self._hashes.pop(upload_id, None)

    # -- objects -------------------------------------------------------------------

    def _put_tail(self, key: str, data: bytes) -> None:
        """Put a tail object, and keep its bytes for the part that will gather it."""
        obstore.put(self.engine.store, key, data)
        with self._tails_lock:
            self._tails[key] = data
            self._tails_size += len(data)
            while self._tails_size > _TAILS_KEPT:
                self._tails_size -= len(self._tails.popitem(last=False)[1])

    def _get_tail(self, key: str) -> bytes:
        """A tail object's bytes: kept if this process put it (tails never change), else a GET."""
        with self._tails_lock:
            data = self._tails.pop(key, None)
            if data is not None:
                self._tails_size -= len(data)
                return data
        return bytes(obstore.get(self.engine.store, key).bytes())

    def _delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            with self._tails_lock:
                self._tails_size -= len(self._tails.pop(key, b""))
            with contextlib.suppress(FileNotFoundError, NotFoundError):
                obstore.delete(self.engine.store, key)

    def _objects_of(self, upload_id: str) -> list[dict[str, Any]]:
        """Every object of the upload but its record (its data, tails, strays)."""
        return [
            meta
            for meta in self.engine._objects(f"{TUS_PREFIX}{upload_id}/")
            if str(meta["path"]) != self.info_key(upload_id)
        ]

    def _abort_upload(self, multipart_id: str | None, upload_id: str) -> None:
        if multipart_id is None:
            return
        engine = self.engine
        try:
            engine.client.abort_multipart_upload(
                Bucket=engine.bucket,
                Key=engine._full(self.data_key(upload_id)),
                UploadId=multipart_id,
            )
        except Exception as exc:
            if _error_code(exc)[1] not in ("NoSuchUpload", "NoSuchKey"):
                raise

    def _remove(self, upload_id: str, record: dict[str, Any]) -> int:
        """Remove the upload's multipart upload and objects, the record last; its bytes."""
        size = 0 if record.get("address") is not None else _offset(record)
        self._abort_upload(record.get("upload"), upload_id)
        self._delete(str(meta["path"]) for meta in self._objects_of(upload_id))
        self._delete([self.info_key(upload_id)])
        self._forget_hash(upload_id)
        return size

    # -- the PartialStore methods -----------------------------------------------

    @property
    def size_limit(self) -> int:
        """The largest upload: S3's, or ``max_parts`` parts of at most 64 MiB (625 GiB).

        A part is gathered in memory before it is sent, so memory per
        upload stays bounded by one part.
        """
        engine = self.engine
        return min(engine.size_limit, engine.max_parts * _PART_IN_MEMORY)

    def _part_size(self, length: int | None) -> int:
        """Parts of an upload of ``length`` bytes: at least ``part_size``, equal but the last.

        An upload of unknown length gets the parts of one of ``max_size``
        bytes, else the smallest (so ``max_parts`` of them cap its length).
        """
        engine = self.engine
        size = length if length is not None else engine.max_size
        if size is None:
            return engine.part_size
        return part_size_for(min(size, self.size_limit), engine.max_parts, engine.part_size)

    def _check_length(self, length: int | None) -> None:
        max_size = self.engine.max_size
        if length is not None and max_size is not None and length > max_size:
            raise UploadTooLarge(max_size, "the store's max_size")
        if length is not None and length > self.size_limit:
            raise UploadTooLarge(self.size_limit, "the largest resumable upload")

    def create(
        self, length: int | None, metadata: str = "", expires: float | None = None
    ) -> UploadInfo:
        """Start a new, empty upload (see ``PartialStore.create``): one conditional PUT."""
        self._check_length(length)
        upload_id = new_upload_id()
        record: dict[str, Any] = {
            "length": length,
            "metadata": metadata,
            "expires": expires,
            "created": time.time(),
            "part": self._part_size(length),
            "upload": None,
            "parts": [],
            "pieces": [],
            "completed": False,
            "lock": None,
            "address": None,
        }
        self._write(upload_id, record, None)
        # No hash kept yet: the one of no bytes costs nothing to make when the first come.
        return self._info(upload_id, record)

    def info(self, upload_id: str) -> UploadInfo:
        """Return the upload as its record has it (see ``PartialStore.info``): one GET."""
        record, _ = self._read(self._checked(upload_id))
        return self._info(upload_id, record)

    def open_append(
        self,
        upload_id: str,
        offset: int,
        *,
        length: int | None = None,
        atomic: bool = False,
    ) -> PartialAppend:
        """Lock the upload and start appending at ``offset`` (see ``PartialStore``)."""
        held, etag = self._acquire(upload_id)
        try:
            record = held.record
            if record.get("address") is not None:
                raise UploadNotFound(upload_id)  # finished
            current = _offset(record)
            declared = check_append(upload_id, current, record.get("length"), offset, length)
            if declared:
                self._check_length(length)
            digest = self._kept_hash(upload_id, etag, current)
            # A declared length is written with the append's commit: a refused one declares none.
            return _S3Append(self, held, current, digest, atomic, length if declared else None)
        except BaseException:
            held.release()
            raise

    def finish(self, upload_id: str, extension: str = "") -> HashAddress:
        """Commit the complete upload into its content address (see ``PartialStore``).

        The hash is this process's if it saw every byte, else the completed
        temp object is hashed with one streamed GET.
        """
        record, _ = self._read(self._checked(upload_id))
        is_duplicate = True
        if record.get("address") is None:
            held, etag = self._acquire(upload_id)
            record, is_duplicate = self._finish_held(held, etag, extension)
        address = self._info(upload_id, record).address
        assert address is not None
        return HashAddress(address.id, address.relpath, address.abspath, is_duplicate)

    def _finish_held(
        self, held: _Held, etag: str | None, extension: str, digest: Any = None
    ) -> tuple[dict[str, Any], bool]:
        """Finish the upload whose lock ``held`` is, release it, remove what is left.

        ``digest`` is the hash of every byte, if known; else the one kept for
        the record at ``etag``, if any. Returns the finished record and whether
        the address held the bytes already.
        """
        upload_id = held.id
        try:
            multipart = held.record["upload"]
            if digest is None and etag is not None:
                digest = self._kept_hash(upload_id, etag, _offset(held.record))
            record, is_duplicate = self._finish(held, digest, extension)
        finally:
            held.release()
        # The record names the address now: what is left goes (else collect() does).
        with contextlib.suppress(Exception):
            self._abort_upload(multipart, upload_id)  # unless completed
            self._delete(str(meta["path"]) for meta in self._objects_of(upload_id))
        return record, is_duplicate

    def _finish(self, held: _Held, digest: Any, extension: str) -> tuple[dict[str, Any], bool]:
        """Commit under the lock; return the finished record (written, lock released)
        and whether the address held the bytes already.

        Removes nothing: until the record names the address, a finish cut
        short is done again from what is there.
        """
        upload_id, record = held.id, held.record
        if record.get("address") is not None:
            return record, True
        size = _offset(record)
        if record.get("length") != size:
            raise LengthConflict(
                f"upload {upload_id!r} is not complete: {size} of {record.get('length')} bytes"
            )
        engine = self.engine
        before = _s3_sweep.mark(engine)  # before the last step, for the sweep guard
        if record["upload"] is None:
            # Never filled a part: at most one part's bytes, put as a small put is.
            data = b"".join(
                self._get_tail(self.piece_key(upload_id, t)) for t, _ in record["pieces"]
            )
            if digest is None:
                digest = hashlib.new(engine.layout.algorithm, data)
            id = digest.hexdigest()
            relpath = engine.layout.relpath(id, extension)
            key = _key(relpath)

            def store() -> bool:
                return engine._create(key, data)

            is_duplicate = engine._store_fresh(key, size, store)
        else:
            if record["pieces"]:
                # A length declared once the bytes were in: the tail is the last part.
                tail = _S3Append(self, held, size, None, atomic=True)
                tail.send_tail()
            source = self.data_key(upload_id)
            id = "" if digest is None else digest.hexdigest()
            relpath = engine.layout.relpath(id, extension) if id else ""
            key = _key(relpath)

            def complete() -> None:
                if not held.record["completed"]:
                    self._complete(upload_id, held.record)
                    held.save(dict(held.record, completed=True))

            def store() -> bool:
                complete()
                return engine.commit_copy(source, key, size)

            # A duplicate is made new; the parts are dropped with the multipart upload.
            is_duplicate = bool(
                relpath and engine._seen(key, size) and engine._refresh_duplicate(key, size)
            )
            if not is_duplicate:
                if not id:
                    complete()
                    id = engine.hash_file(source, checkpoint=held.check)
                    relpath = engine.layout.relpath(id, extension)
                    key = _key(relpath)
                is_duplicate = engine._store_fresh(key, size, store)
        if _s3_sweep.guard(engine, key, before, store) == "restored":
            is_duplicate = False
        record = held.record
        self._forget_hash(upload_id)
        finished = dict(
            record,
            address={"id": id, "relpath": relpath},
            upload=None,
            parts=[],
            pieces=[],
            completed=False,
            hook_pending=True,
        )
        held.save(finished, release=True)
        return held.record, is_duplicate

    def _complete(self, upload_id: str, record: dict[str, Any]) -> None:
        """Complete the multipart upload into the temp object (done already is fine)."""
        engine = self.engine
        parts = [
            {"PartNumber": number, "ETag": etag}
            for number, (etag, _) in enumerate(record["parts"], start=1)
        ]
        try:
            engine.client.complete_multipart_upload(
                Bucket=engine.bucket,
                Key=engine._full(self.data_key(upload_id)),
                UploadId=record["upload"],
                MultipartUpload={"Parts": parts},
            )
        except Exception as exc:
            # Completed by a finish that died before it wrote so in the record?
            meta = engine._head(self.data_key(upload_id))
            if _error_code(exc)[1] != "NoSuchUpload" or meta is None:
                raise
            if int(meta["size"]) != _offset(record):
                raise

    def refresh(self, address: HashAddress) -> bool:
        """Copy the stored object onto itself (see ``PartialStore.refresh``): a HEAD, a copy.

        ``False`` also when a running sweep was deleting it (see ``_s3_sweep.guard``).
        """
        engine = self.engine
        key = _key(address.relpath)
        before = _s3_sweep.mark(engine)
        meta = engine._head(key)
        if meta is None or not engine._refresh_duplicate(key, int(meta["size"])):
            return False
        return _s3_sweep.guard(engine, key, before, None) == "there"

    def hook_done(self, upload_id: str) -> None:
        """Clear the finished upload's ``hook_pending`` (see ``PartialStore.hook_done``).

        A conditional write; tried again while other writes come between.
        """
        for _ in range(8):
            try:
                record, etag = self._read(self._checked(upload_id))
            except UploadNotFound:
                return
            if record.get("address") is None or not record.get("hook_pending"):
                return
            with contextlib.suppress(_Refused):
                self._write(upload_id, dict(record, hook_pending=False), etag)
                return

    def terminate(self, upload_id: str) -> None:
        """Remove the upload, its multipart upload and its objects (see ``PartialStore``)."""
        held, _ = self._acquire(upload_id)
        try:
            held.end()
            self._remove(upload_id, held.record)
        except BaseException:
            held.release()
            raise

    def _ids(self) -> tuple[set[str], dict[str, list[dict[str, Any]]]]:
        """The ids that have a record, and every object under the tus prefix by id."""
        records: set[str] = set()
        objects: dict[str, list[dict[str, Any]]] = {}
        for meta in self.engine._objects(TUS_PREFIX):
            upload_id, _, name = str(meta["path"])[len(TUS_PREFIX) :].partition("/")
            if not ID_PATTERN.fullmatch(upload_id):
                continue
            if name == _INFO:
                records.add(upload_id)
            else:
                objects.setdefault(upload_id, []).append(meta)
        return records, objects

    def collect(self, now: float) -> PartialReport:
        """Remove the uploads past their expiry (see ``PartialStore.collect``).

        Also what a server killed at the wrong moment left without a record
        (a multipart upload or tail created before its record was written),
        once older than an hour.
        """
        report = PartialReport()
        records, objects = self._ids()
        known = set()
        for upload_id in sorted(records):
            try:
                record, _ = self._read(upload_id)
                known.add(record.get("upload"))
                if record.get("address") is None and record.get("length") == _offset(record):
                    # Complete but not stored (its server died first): store it.
                    held, etag = self._acquire(upload_id)
                    extension = extension_of(record.get("metadata", ""))
                    self._finish_held(held, etag, extension)
                    continue
                expires = record.get("expires")
                if expires is None or expires >= now:
                    continue
                held, _ = self._acquire(upload_id)
            except (UploadNotFound, UploadLocked, LengthConflict):
                continue
            try:
                held.end()
                report.bytes += self._remove(upload_id, held.record)
            except BaseException:
                held.release()
                raise
            report.uploads.append(upload_id)
        cutoff = now - TEMP_GRACE
        for upload_id, metas in objects.items():
            if upload_id not in records and all(
                m["last_modified"].timestamp() <= cutoff for m in metas
            ):
                self._delete(str(m["path"]) for m in metas)
        engine = self.engine
        for key, multipart_id, started in engine._incomplete_uploads():
            relpath = key[len(engine.prefix) + 1 :] if engine.prefix else key
            if relpath.startswith(TUS_PREFIX) and multipart_id not in known and started <= cutoff:
                with contextlib.suppress(Exception):
                    engine.client.abort_multipart_upload(
                        Bucket=engine.bucket, Key=key, UploadId=multipart_id
                    )
        return report

    def stats(self) -> PartialReport:
        """Count the unfinished uploads and their bytes (see ``PartialStore.stats``)."""
        report = PartialReport()
        records, _ = self._ids()
        for upload_id in sorted(records):
            with contextlib.suppress(UploadNotFound):
                record, _ = self._read(upload_id)
                if record.get("address") is None:
                    report.uploads.append(upload_id)
                    report.bytes += _offset(record)
        return report


class _S3Append:
    """Bytes appended to one S3 partial upload under its lock (a ``PartialAppend``).

    Full parts go to the multipart upload as they fill (several small
    appends' tails gathered first); what is short of a part at the end
    becomes one more tail object. Nothing counts until :meth:`commit`
    writes the record.
    """

    def __init__(
        self,
        store: S3PartialStore,
        held: _Held,
        start: int,
        digest: Any,
        atomic: bool,
        declared: int | None = None,
    ) -> None:
        record = held.record
        self._store = store
        self._held = held
        self._id = held.id
        self._digest = digest
        self._atomic = atomic
        self._length: int | None = record.get("length") if declared is None else declared
        self._part_size = int(record["part"])
        self._multipart: str | None = record["upload"]
        self._created_multipart = False
        self._parts: list[list[Any]] = [list(p) for p in record["parts"]]
        self._pieces: list[list[Any]] = [list(p) for p in record["pieces"]]
        self._new_pieces: list[str] = []
        self._buffer = bytearray()
        self._broken = False
        self.start = start
        self.written = 0

    # -- writing ----------------------------------------------------------------

    def _held_bytes(self) -> int:
        return sum(size for _, size in self._pieces)

    def write(self, data: Any) -> None:
        """Append one chunk (see ``PartialAppend.write``)."""
        if self._held.released:
            raise RuntimeError("append already ended")
        view = memoryview(data).cast("B")
        end = self.start + self.written + view.nbytes
        engine = self._store.engine
        if self._length is not None and end > self._length:
            raise UploadTooLarge(self._length, "the upload's length")
        if engine.max_size is not None and end > engine.max_size:
            raise UploadTooLarge(engine.max_size, "the store's max_size")
        limit = min(engine.size_limit, self._part_size * engine.max_parts)
        if end > limit:
            raise UploadTooLarge(limit, "the largest upload of this part size")
        try:
            self._held.check()
            if self._digest is not None:
                self._digest.update(view)
            for start in range(0, view.nbytes, CHUNK_SIZE):
                self._buffer += view[start : start + CHUNK_SIZE]
                while self._held_bytes() + len(self._buffer) >= self._part_size:
                    self._send_part(self._part_size - self._held_bytes())
        except BaseException:
            self._broken = True
            raise
        self.written += view.nbytes

    def writelines(self, chunks: Iterable[Any]) -> None:
        """Append several chunks in order."""
        for chunk in chunks:
            self.write(chunk)

    def _gathered(self, count: int) -> bytes:
        """The tail objects' bytes, then ``count`` bytes of the buffer; the tail is let go."""
        store = self._store
        head = [store._get_tail(store.piece_key(self._id, token)) for token, _ in self._pieces]
        self._pieces = []
        head.append(bytes(self._buffer[:count]))
        del self._buffer[:count]
        return b"".join(head)

    def _send_part(self, count: int) -> None:
        """Send the tail and ``count`` bytes of the buffer as the next part."""
        store = self._store
        engine = store.engine
        if self._multipart is None:
            self._multipart = engine.client.create_multipart_upload(
                Bucket=engine.bucket, Key=engine._full(store.data_key(self._id))
            )["UploadId"]
            self._created_multipart = True
        body = self._gathered(count)
        self._held.check()
        answer = engine.client.upload_part(
            Bucket=engine.bucket,
            Key=engine._full(store.data_key(self._id)),
            UploadId=self._multipart,
            PartNumber=len(self._parts) + 1,
            Body=body,
        )
        self._parts.append([answer["ETag"], len(body)])

    def _keep_tail(self) -> None:
        """Put the buffer's bytes on the bucket as one more tail object."""
        pieces = self._pieces
        count = len(self._buffer)
        if count == 0 and len(pieces) <= _MAX_PIECES:
            return
        if len(pieces) + 1 > _MAX_PIECES:
            data = self._gathered(count)  # gather the tail into one object
        else:
            data = bytes(self._buffer)
            self._buffer = bytearray()
        token = secrets.token_hex(8)
        self._held.check()
        self._store._put_tail(self._store.piece_key(self._id, token), data)
        self._new_pieces.append(token)
        self._pieces.append([token, len(data)])

    def send_tail(self) -> None:
        """Send the tail as the last part and write the record (for a finish)."""
        old = list(self._pieces)
        self._send_part(0)
        self._held.save(self._record())
        self._drop_stale_pieces(old)

    # -- ending -----------------------------------------------------------------

    def _record(self, expires: float | None = None) -> dict[str, Any]:
        record = dict(
            self._held.record,
            length=self._length,
            upload=self._multipart,
            parts=self._parts,
            pieces=self._pieces,
        )
        if expires is not None:
            record["expires"] = expires
        return record

    def _drop_stale_pieces(self, old: Iterable[list[Any]] = ()) -> None:
        kept = {token for token, _ in self._pieces}
        store = self._store
        store._delete(store.piece_key(self._id, t) for t, _ in old if t not in kept)

    def commit(self, expires: float | None = None, extension: str | None = None) -> UploadInfo:
        """Make the written bytes part of the upload (see ``PartialAppend.commit``)."""
        if self._held.released:
            raise RuntimeError("append already ended")
        if self._broken:
            self.abort()
            raise OSError("a write failed; the append cannot be committed")
        old = list(self._held.record["pieces"])
        end = self.start + self.written
        finish = extension is not None and self._length == end
        try:
            if self._length == end and self._multipart is not None:
                # The last bytes: the tail goes out as the last part, of any size.
                if self._held_bytes() or len(self._buffer):
                    self._send_part(len(self._buffer))
            else:
                self._keep_tail()
            self._held.save(self._record(expires), release=not finish)
        except BaseException:
            self._roll_back()
            raise
        finally:
            self._buffer = bytearray()
        store = self._store
        self._drop_stale_pieces(old)
        if not finish:
            store._keep_hash(self._id, self._digest, self._held.etag)
            return store._info(self._id, self._held.record)
        # Finished under the same lock: no request comes between the last byte and the address.
        assert extension is not None
        record, is_duplicate = store._finish_held(self._held, None, extension, self._digest)
        info = store._info(self._id, record)
        assert info.address is not None
        return dataclasses.replace(info, address=info.address._replace(is_duplicate=is_duplicate))

    def _roll_back(self) -> None:
        """Leave the upload as it was: drop what this append made, release the lock."""
        store = self._store
        store._forget_hash(self._id)
        store._delete(store.piece_key(self._id, t) for t in self._new_pieces)
        if self._created_multipart:
            with contextlib.suppress(Exception):
                store._abort_upload(self._multipart, self._id)
        self._buffer = bytearray()
        self._held.release()

    def abort(self, expires: float | None = None) -> UploadInfo:
        """End without commit (see ``PartialAppend.abort``).

        A plain append keeps what it received, as a commit would; an atomic
        one, or one whose write failed, leaves the upload as it was.
        """
        store = self._store
        if self._held.released:
            return store.info(self._id)
        if self._atomic or self._broken:
            self._roll_back()
            return store._info(self._id, self._held.record)
        with contextlib.suppress(Exception):
            return self.commit(expires if self.written else None)
        return store.info(self._id)

    def __enter__(self) -> _S3Append:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


if TYPE_CHECKING:
    _check_store: PartialStore = S3PartialStore(S3Engine.__new__(S3Engine))
    _check_append: type[PartialAppend] = _S3Append
