"""Where resumable (tus) uploads keep their bytes until they are complete.

The tus protocol (:mod:`._tus`) never touches a disk or a bucket itself: it
calls a :class:`PartialStore`, found with :func:`partial_store` from the
store's engine. A local root keeps partial uploads as files in its temp
folder (:mod:`._tus_local`); an ``s3://`` root as multipart uploads on the
bucket. Every method blocks and must be thread-safe; the async store runs
them in worker threads. Any server process sharing the root may be asked to
resume any upload, so nothing an implementation needs may live only in one
process's memory (a cache is fine, if it can be rebuilt from the storage).

Errors, raised by every implementation alike::

    PartialUploadError
    ├── UploadNotFound   (LookupError)   no upload has this id, or it was terminated
    ├── UploadLocked     (RuntimeError)  another request is appending to it, or finishing it
    ├── OffsetMismatch   (ValueError)    the client's offset is not the upload's
    ├── UploadTooLarge   (ValueError)    bytes past its length or the store's max_size
    └── LengthConflict   (ValueError)    a length declared twice, or below the offset
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._address import HashAddress
from ._engine import GCReport

__all__ = [
    "ID_PATTERN",
    "LengthConflict",
    "OffsetMismatch",
    "PartialAppend",
    "PartialReport",
    "PartialStore",
    "PartialUploadError",
    "UploadInfo",
    "UploadLocked",
    "UploadNotFound",
    "UploadTooLarge",
    "check_append",
    "collect_garbage",
    "extension_of",
    "new_upload_id",
    "partial_store",
]

#: What an upload id looks like: 32 lowercase hex digits (128 random bits).
ID_PATTERN = re.compile(r"[0-9a-f]{32}")


def new_upload_id() -> str:
    """Return a new unguessable upload id: 128 random bits as 32 hex digits."""
    return secrets.token_hex(16)


class PartialUploadError(Exception):
    """Base class of the errors a :class:`PartialStore` raises on purpose."""


class UploadNotFound(PartialUploadError, LookupError):
    """No upload has this id (never created, terminated, or collected after expiry)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no upload {upload_id!r}")
        self.upload_id = upload_id


class UploadLocked(PartialUploadError, RuntimeError):
    """Another request (in this process or another) holds the upload."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload {upload_id!r} is busy with another request")
        self.upload_id = upload_id


class OffsetMismatch(PartialUploadError, ValueError):
    """The client resumed at another offset than the upload's."""

    def __init__(self, upload_id: str, expected: int, given: int) -> None:
        super().__init__(f"upload {upload_id!r} is at offset {expected}, not {given}")
        self.upload_id = upload_id
        self.expected = expected
        self.given = given


class UploadTooLarge(PartialUploadError, ValueError):
    """The bytes would go past the upload's length or the store's ``max_size``."""

    def __init__(self, limit: int, what: str) -> None:
        super().__init__(f"the upload would go past {what} of {limit} bytes")
        self.limit = limit
        self.what = what


class LengthConflict(PartialUploadError, ValueError):
    """A length declared for an upload that has one, or smaller than its offset."""


@dataclass(frozen=True)
class UploadInfo:
    """What a :class:`PartialStore` knows of one upload.

    ``metadata`` is the client's ``Upload-Metadata`` header exactly as sent
    (``""`` for none); the protocol layer decodes it. ``expires`` is a Unix
    time, or ``None`` for never. ``address`` is set once the upload was
    finished: its bytes are then at that content address and nothing of the
    partial upload remains but this record (kept until it expires, so that a
    client that lost the final response can still learn where its file went).
    ``hook_pending`` is true from the finish until :meth:`PartialStore.hook_done`:
    the app's completion hook has not yet run to its end for this upload.
    ``active`` is true while a request holds the upload's lock (bytes are
    arriving): such an upload has not expired, whatever ``expires`` says. (An
    implementation may find it out only for an upload past ``expires``.)
    """

    id: str
    offset: int
    length: int | None
    metadata: str = ""
    expires: float | None = None
    created: float = 0.0
    address: HashAddress | None = None
    hook_pending: bool = False
    active: bool = False

    @property
    def complete(self) -> bool:
        """Whether every byte arrived (the upload can be finished, or was)."""
        return self.length is not None and self.offset == self.length


@dataclass
class PartialReport:
    """What :meth:`PartialStore.collect` removed (or :meth:`PartialStore.stats` counted)."""

    #: Ids of the uploads concerned.
    uploads: list[str] = field(default_factory=list)
    #: The bytes they held.
    bytes: int = 0


class PartialAppend(Protocol):
    """Bytes on their way into one upload, at its offset, under its lock.

    Got from :meth:`PartialStore.open_append`; the lock is held until
    :meth:`commit` or :meth:`abort` (a context manager aborts unless
    committed). Memory held must stay bounded whatever the chunk sizes: an
    implementation that must gather bytes (an S3 part) holds at most one
    part's worth per upload.
    """

    #: The upload's offset when the append began.
    start: int
    #: Bytes written by this append so far.
    written: int

    def write(self, data: Any) -> None:
        """Append one bytes-like chunk, hashing it as it goes.

        Raises:
            UploadTooLarge: the chunk would take the upload past its length
                or the store's ``max_size``; none of it is written.
        """

    def writelines(self, chunks: Iterable[Any]) -> None:
        """Append several chunks in order (as :meth:`write`)."""

    def commit(self, expires: float | None = None, extension: str | None = None) -> UploadInfo:
        """Make every written byte part of the upload and release the lock.

        ``expires`` (a Unix time) replaces the upload's expiry when given.
        Returns the upload as it now is. Durable: a server killed after
        ``commit`` returned resumes at the new offset.

        With ``extension`` (not ``None``), an append that completes the upload
        also finishes it (as :meth:`PartialStore.finish`) before the lock is
        released, so no other request comes between the last byte and the
        content address; the upload returned has its ``address``, whose
        ``is_duplicate`` is exact. If the finish fails, the bytes stay
        committed, the lock is released and the error is raised: the upload
        is complete but not stored, and a later :meth:`PartialStore.finish`
        does it.
        """

    def abort(self, expires: float | None = None) -> UploadInfo:
        """End the append without :meth:`commit` and release the lock; safe twice.

        ``expires`` replaces the upload's expiry when bytes were kept.

        An *atomic* append (see :meth:`PartialStore.open_append`) leaves the
        upload exactly as it was. A plain one keeps the bytes written so far
        (tus asks servers to keep as much as they received), as one killed
        midway must. Returns the upload as it now is.
        """

    def __enter__(self) -> PartialAppend: ...

    def __exit__(self, *exc_info: object) -> None: ...


class PartialStore(Protocol):
    """Partial uploads of one store: create, append, finish into the store, terminate.

    Guarantees every implementation keeps:

    - Ids are :func:`new_upload_id` values, unguessable; a method given an id
      that does not match :data:`ID_PATTERN` raises :class:`UploadNotFound`
      and touches nothing.
    - An upload survives the loss of the process that received it: another
      process on the same root (a restart, another worker, for S3 another
      server) finds it by id, at the offset of its last committed append.
    - One append (or finish, or terminate) at a time per upload, across
      processes: a second one raises :class:`UploadLocked` at once, never
      waits, never interleaves bytes.
    - Bytes are hashed with the store's algorithm as they arrive; a process
      that did not see them (after a restart) re-hashes what is stored once,
      then goes on from there.
    - :meth:`finish` commits into the content address with the store's usual
      guarantees: atomic, race-safe dedupe, ``is_duplicate`` exactly as a
      ``put`` of the same bytes would report it.
    """

    def create(
        self, length: int | None, metadata: str = "", expires: float | None = None
    ) -> UploadInfo:
        """Start a new, empty upload and return it.

        ``length`` is ``None`` when the client defers it.

        Raises:
            UploadTooLarge: ``length`` is past the store's ``max_size``.
        """

    def info(self, upload_id: str) -> UploadInfo:
        """Return the upload as it is now (without waiting for its lock).

        Raises:
            UploadNotFound: no such upload.
        """

    def open_append(
        self,
        upload_id: str,
        offset: int,
        *,
        length: int | None = None,
        atomic: bool = False,
    ) -> PartialAppend:
        """Lock the upload and start appending at ``offset``.

        ``length`` declares the length of an upload created without one.
        An ``atomic`` append keeps either all its bytes (at :meth:`commit`)
        or none (checksummed chunks, bodies of unknown size).

        Raises:
            UploadNotFound: no such upload, or it was finished already.
            UploadLocked: another request holds it.
            OffsetMismatch: ``offset`` is not the upload's offset.
            LengthConflict: ``length`` given for an upload that has one
                (other than the same), or below its offset.
            UploadTooLarge: ``length`` is past the store's ``max_size``.
        """

    def finish(self, upload_id: str, extension: str = "") -> HashAddress:
        """Commit a complete upload into its content address and drop its bytes.

        ``extension`` is normalized. Called again for an upload already
        finished, returns the address it got (with ``is_duplicate=True``):
        idempotent, and safe to race (one finishes, the other gets
        :class:`UploadLocked` or the address). The finished record has
        ``hook_pending`` set.

        Raises:
            UploadNotFound: no such upload.
            UploadLocked: another request holds it.
            LengthConflict: the upload is not complete.
        """

    def refresh(self, address: HashAddress) -> bool:
        """Make the stored file at ``address`` look new, as a duplicate put does.

        Called before the completion hook runs again for an upload finished
        earlier: the app has not recorded the file yet, so a sweep must not
        take it now. Returns ``False`` when the file is gone (a sweep or a
        delete took it while no row named it).
        """

    def hook_done(self, upload_id: str) -> None:
        """Record that the app's completion hook ran to its end for a finished upload.

        Clears ``hook_pending``; nothing happens to an upload not finished
        or gone.
        """

    def terminate(self, upload_id: str) -> None:
        """Remove the upload and its bytes.

        Raises:
            UploadNotFound: no such upload.
            UploadLocked: another request holds it.
        """

    def collect(self, now: float) -> PartialReport:
        """Remove every upload (finished or not) whose expiry is before ``now``.

        An upload complete but not finished (its server died between the last
        byte and the finish, or the finish failed) is finished instead, with
        the extension of its ``filename`` metadata, whatever its expiry: its
        bytes are never lost. Skips uploads whose lock is held. Returns what
        went.
        """

    def stats(self) -> PartialReport:
        """Count the uploads kept (unfinished ones, and their bytes)."""


def extension_of(metadata: str) -> str:
    """The normalized extension of the ``filename`` in ``Upload-Metadata`` (``""``: none)."""
    from ._tus import TusError, decode_metadata  # the protocol layer imports this module
    from ._web import extension_from_filename

    try:
        return extension_from_filename(decode_metadata(metadata).get("filename")) or ""
    except (TusError, ValueError):
        return ""


def partial_store(engine: Any) -> PartialStore:
    """Return the partial uploads of the store ``engine`` works for.

    An engine gives its own with a ``partial_uploads()`` method (the object
    store's does); a local folder keeps them in its temp folder.

    Raises:
        NotImplementedError: the engine's backend keeps no partial uploads.
    """
    own = getattr(engine, "partial_uploads", None)
    if own is not None:
        store: PartialStore = own()
        return store
    if engine.layout.is_url:
        raise NotImplementedError(
            f"resumable uploads are not supported on {engine.layout.root} yet"
        )
    from ._tus_local import LocalPartialStore

    return LocalPartialStore.of(engine)


def collect_garbage(engine: Any, older_than: float | None) -> GCReport:
    """Run ``engine.gc(older_than)`` after removing the store's expired partial uploads.

    What ``gc()`` does on both stores: the removed uploads' ids go to the
    report's ``partial_uploads``, their bytes to ``partial_bytes``; a
    backend without partial uploads has none to remove.
    """
    try:
        removed = partial_store(engine).collect(time.time())
    except NotImplementedError:
        removed = PartialReport()
    report: GCReport = engine.gc(older_than)
    report.partial_uploads.extend(removed.uploads)
    report.partial_bytes += removed.bytes
    return report


def check_append(
    upload_id: str, current: int, known: int | None, offset: int, length: int | None
) -> bool:
    """Check an append at ``offset`` to an upload at ``current`` of length ``known``.

    ``length`` is the length the append declares (``None``: none). Returns
    whether it declares one the upload did not have, to be recorded.

    Raises:
        OffsetMismatch: ``offset`` is not ``current``.
        LengthConflict: ``length`` differs from ``known``, or is below ``current``.
    """
    if offset != current:
        raise OffsetMismatch(upload_id, current, offset)
    if length is None:
        return False
    if known is not None and known != length:
        raise LengthConflict(f"upload {upload_id!r} has a length of {known}, not {length}")
    if length < current:
        raise LengthConflict(f"a length of {length} is below the upload's offset of {current}")
    return known is None
