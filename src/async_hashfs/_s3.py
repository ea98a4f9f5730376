"""The object-storage engine: the same operations as ``Engine``, on S3.

Blocking and thread-safe like the file-system engine, so both stores run it
in worker threads unchanged. Keys are the local layout's relpaths under the
root's prefix (``s3://bucket/prefix/ab/c/d/...``).

Writes keep the invariants, and nothing is visible at a content key before
all of its bytes are there:

- bytes are hashed as they arrive; a small file (up to ``SMALL_OBJECT``) is
  kept in memory and put at its content key in one conditional request
  (``If-None-Match: *``);
- a larger one is spooled to an anonymous local temp file while it is
  hashed, so its hash and size are known before anything is sent. One HEAD
  of the content key then finds a duplicate (zero bytes sent); otherwise a
  multipart upload goes straight to the content key, in equal parts sized
  from the known size (:func:`part_size_for`), several in flight, and is
  completed with ``If-None-Match: *``: of racing writers exactly one
  completes, the others get 412 and abort theirs;
- ``commit="copy"`` (servers without a conditional complete) uploads to a
  temp key under ``.hashfs-tmp/`` instead and copies it to the content key
  with a conditional copy (one CopyObject up to 5 GiB, ``UploadPartCopy``
  ranges beyond; the latter is not conditional).

A put reports ``is_duplicate=True`` only after one HEAD of the content key
found an object of the same size there; a refused write with nothing at
the key is retried, then raised.

obstore serves the hot paths (small puts, HEAD, GET, list, delete); botocore,
created on first use, does what obstore cannot: multipart uploads with a
conditional complete, listing and aborting incomplete uploads, and URLs
presigned with response overrides.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import IO, TYPE_CHECKING, Any, Literal

from ._extras import available, missing_extra

if not available("obstore") or not available("botocore"):
    raise missing_extra(
        "obstore" if not available("obstore") else "botocore", "s3", "An s3:// root"
    )

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    NotFoundError,
    NotSupportedError,
    PreconditionError,
)
from obstore.store import S3Store

from . import _s3_sweep
from ._address import HashAddress
from ._engine import (
    CHUNK_SIZE,
    Engine,
    GCReport,
    RepairReport,
    check_read_mode,
    foreign_layout,
)
from ._exceptions import CorruptFile, FileTooLarge, NotFound
from ._layout import TEMP_DIRNAME, Layout
from ._s3_sweep import (
    LEASE_LEAST,
    LEASE_MOST,
    RECORD_KEY,
    SWEEP_LEASE,
    SweepLease,
    SweepWatch,
)
from ._sweep import KeepSet, RemovedCallback, SweepReport
from ._tus_local import TUS_DIRNAME

if TYPE_CHECKING:
    from ._tus_s3 import S3PartialStore

__all__ = ["S3Engine", "StoreUnavailable", "describe_error", "part_size_for"]

MIB = 1 << 20
#: Files up to this size are buffered and put in one conditional request.
SMALL_OBJECT = 8 * MIB
#: The smallest part this engine sends (S3's own floor is 5 MiB, the last part aside).
PART_SIZE = 8 * MIB
#: S3's limits: parts per upload, part size, object size, one CopyObject.
MAX_PARTS = 10_000
MIN_PART = 5 * MIB
MAX_PART = 5 << 30
MAX_OBJECT = 5 << 40
COPY_LIMIT = 5 << 30
#: Parts uploaded at once.
PART_CONCURRENCY = 4
#: Parts up to this size are read into memory; larger ones stream from the spool file.
_PART_IN_MEMORY = 64 * MIB
#: gc() leaves younger temp objects and incomplete uploads alone unless told otherwise.
TEMP_GRACE = 3600.0
#: Lifetime of a presigned URL; a redirect to it is cached for at most half of it.
PRESIGN_EXPIRES = 3600
#: Tries of a conditional write that was refused while nothing was at the key.
_TRIES = 3
_VERIFIED_MAX = 65536
#: Resumable (tus) uploads, which gc() leaves to their own expiry (see ``_tus_s3``).
TUS_PREFIX = f"{TEMP_DIRNAME}/{TUS_DIRNAME}/"
#: A conditional write refused: the key is taken (412) or a write raced it (409).
_REFUSED = ("PreconditionFailed", "ConditionalRequestConflict")

_OWN_OPTIONS = (
    "commit",
    "part_size",
    "max_parts",
    "part_concurrency",
    "spool_dir",
    "public_endpoint",
    "presign_expires",
    "profile",
    "copy_part_size",
    "tus_lock_seconds",
    "sweep_lock_seconds",
)


class StoreUnavailable(OSError):
    """The bucket cannot be used: missing or refused credentials, no such bucket, no server."""


def part_size_for(size: int, max_parts: int = MAX_PARTS, min_part: int = PART_SIZE) -> int:
    """Return the part size of a multipart upload of ``size`` bytes.

    Every part but the last has this size (R2 wants equal parts); it is at
    least ``min_part`` (itself at least S3's 5 MiB), a whole number of MiB,
    and small enough that at most ``max_parts`` parts cover ``size``.

    Raises:
        FileTooLarge: ``size`` is past S3's 5 TiB, or would need parts past 5 GiB.
    """
    if size > MAX_OBJECT:
        raise FileTooLarge(MAX_OBJECT)
    part = max(min_part, MIN_PART, -(-size // max_parts))
    part = -(-part // MIB) * MIB
    if part > MAX_PART:
        raise FileTooLarge(max_parts * MAX_PART)
    return part


def _key(relpath: str) -> str:
    return relpath.replace("\\", "/")


def _error_code(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and S3 error code of a botocore ``ClientError`` (else ``(0, "")``)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0, ""
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return int(status or 0), str(response.get("Error", {}).get("Code", ""))


def describe_error(exc: BaseException) -> str | None:
    """One line naming what keeps a bucket from being used, or ``None`` if it is something else."""
    if isinstance(exc, StoreUnavailable):
        return str(exc)
    text = str(exc)
    name = type(exc).__name__
    status, code = _error_code(exc)
    if name in ("NoCredentialsError", "PartialCredentialsError") or (
        "credential" in text.lower() and "no " in text.lower()
    ):
        return "no S3 credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") or status == 403:
        return f"the S3 server refused the credentials ({code or 'HTTP 403'})"
    if name in ("PermissionDeniedError", "UnauthenticatedError") or "status code: 403" in text:
        # obstore's answer to a 403 without a body (a HEAD): no S3 error code to name.
        return "the S3 server refused the credentials (HTTP 403)"
    if "InvalidAccessKeyId" in text or "SignatureDoesNotMatch" in text or "AccessDenied" in text:
        return "the S3 server refused the credentials"
    if code == "NoSuchBucket" or "NoSuchBucket" in text or "bucket does not exist" in text.lower():
        return "the S3 bucket does not exist"
    if name in ("EndpointConnectionError", "ConnectTimeoutError") or (
        "error sending request" in text.lower() or "connection refused" in text.lower()
    ):
        return f"cannot reach the S3 server: {text.splitlines()[0][:200]}"
    return None


class _BotocoreCredentials:
    """Credentials for obstore from botocore's chain: variables, ``~/.aws`` profiles, roles."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def __call__(self) -> dict[str, Any]:
        credentials = self._session.get_credentials()
        if credentials is None:
            raise StoreUnavailable(
                "no S3 credentials found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile"
            )
        frozen = credentials.get_frozen_credentials()
        refreshing = getattr(credentials, "refresh_needed", None) is not None
        expires = datetime.now(timezone.utc) + timedelta(minutes=5) if refreshing else None
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": expires,
        }


class _FileSlice(io.RawIOBase):
    """``length`` bytes of an open file from ``offset``: one large part's body, not in memory."""

    def __init__(self, fd: int, offset: int, length: int) -> None:
        self._fd = fd
        self._offset = offset
        self._length = length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = min(max(0, base + offset), self._length)
        return self._position

    def tell(self) -> int:
        return self._position

    def __len__(self) -> int:
        return self._length

    def read(self, size: int | None = -1) -> bytes:
        left = self._length - self._position
        want = left if size is None or size < 0 else min(size, left)
        data = _pread_all(self._fd, want, self._offset + self._position)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        data = os.pread(fd, min(size, 64 * MIB), offset)
        if not data:
            raise OSError(errno.EIO, "spool file ended early")
        chunks.append(data)
        size -= len(data)
        offset += len(data)
    return b"".join(chunks) if len(chunks) != 1 else chunks[0]


class S3Writer:
    """One object on its way into the store; see :class:`~async_hashfs._engine.BlobWriter`."""

    def __init__(self, engine: S3Engine) -> None:
        self._engine = engine
        self._hash = hashlib.new(engine.layout.algorithm)
        self.size = 0
        self._buffer: list[bytes] = []
        self._spool: IO[bytes] | None = None

    def write(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        size = self.size + view.nbytes
        engine = self._engine
        if engine.max_size is not None and size > engine.max_size:
            raise FileTooLarge(engine.max_size)
        if size > engine.size_limit:
            raise FileTooLarge(engine.size_limit)
        self._hash.update(view)
        self.size = size
        if self._spool is not None:
            self._spool.write(view)
            return
        self._buffer.append(bytes(view))  # a copy: sources reuse their buffers
        if size > SMALL_OBJECT:
            self._spool = engine.spool()
            self._spool.writelines(self._buffer)
            self._buffer = []

    def writelines(self, chunks: Iterable[Any]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def commit(self, extension: str = "") -> HashAddress:
        """Make the object visible at its content key (or find it already there).

        Returns only once no sweep running can take the object (see
        :func:`~async_hashfs._s3_sweep.guard`): one taken meanwhile is stored again.
        """
        engine = self._engine
        id = self._hash.hexdigest()
        relpath = engine.layout.relpath(id, extension)
        key = _key(relpath)
        try:
            before = _s3_sweep.mark(engine)
            if self._spool is None:
                data = b"".join(self._buffer)

                def store() -> bool:
                    return engine._create(key, data)
            else:
                self._spool.flush()
                fd, size = self._spool.fileno(), self.size

                def store() -> bool:
                    return engine._commit_file(key, fd, size)

            is_duplicate = engine._store_fresh(key, self.size, store)
            if _s3_sweep.guard(engine, key, before, store) == "restored":
                is_duplicate = False
        finally:
            self.abort()
        return HashAddress(id, relpath, engine.layout.abspath(relpath), is_duplicate)

    def abort(self) -> None:
        """Drop the buffer and the spool file; safe to call more than once."""
        self._buffer = []
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()  # anonymous: the system removes it, even after kill -9

    def __enter__(self) -> S3Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.abort()


class _ObjectReader(io.RawIOBase):
    """A read-only raw file over one object: one streamed GET per run of sequential reads."""

    def __init__(self, store: Any, key: str, size: int) -> None:
        self._store = store
        self._key = key
        self._size = size
        self._position = 0
        self._chunks: Iterator[Any] | None = None
        self._pending = memoryview(b"")
        self.name = key

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        position = max(0, base + offset)
        if position != self._position:
            self._drop()
            self._position = position
        return self._position

    def tell(self) -> int:
        return self._position

    def _drop(self) -> None:
        self._chunks = None
        self._pending = memoryview(b"")

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._position)
        if want <= 0:
            return 0
        if not self._pending:
            if self._chunks is None:
                result = obstore.get(
                    self._store, self._key, options={"range": (self._position, self._size)}
                )
                self._chunks = iter(result.stream(min_chunk_size=CHUNK_SIZE))
            try:
                self._pending = memoryview(next(self._chunks)).cast("B")
            except StopIteration:
                self._drop()
                return 0
        count = min(want, len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        self._position += count
        return count

    def close(self) -> None:
        self._drop()
        super().close()


class S3Blob:
    """A stored object opened for serving; see :class:`~async_hashfs._engine.StoredBlob`.

    Sequential reads share one streamed GET; nothing is fetched until the first.
    """

    file = None

    def __init__(
        self, store: Any, relpath: str, id: str, extension: str, size: int, mtime: float
    ) -> None:
        self._reader = _ObjectReader(store, _key(relpath), size)
        self.relpath = relpath
        self.id = id
        self.extension = extension
        self.size = size
        self.mtime = mtime

    @property
    def closed(self) -> bool:
        return self._reader.closed

    def pread(self, size: int, offset: int) -> bytes:
        if size <= 0 or offset >= self.size:
            return b""
        reader = self._reader
        reader.seek(offset)
        buffer = bytearray(min(size, self.size - offset))
        view = memoryview(buffer)
        filled = 0
        while filled < len(buffer):
            count = reader.readinto(view[filled:])
            if not count:
                break
            filled += count
        return bytes(view[:filled])

    def close(self) -> None:
        self._reader.close()


def _env_endpoint() -> str | None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        value = os.environ.get(name)
        if value:
            return value
    return None


def _check_endpoint(endpoint: str) -> None:
    """Raise ``ValueError`` unless ``endpoint`` is an http(s) URL (obstore panics on others)."""
    try:
        parts = urllib.parse.urlsplit(endpoint)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(
            "S3 endpoint (the endpoint option or AWS_ENDPOINT_URL) must be an http:// "
            f"or https:// URL, not {endpoint!r}"
        )


class S3Engine:
    """All object-storage work of one store. Every method blocks; all are thread-safe.

    ``options`` are ``obstore.store.S3Store`` options (``endpoint``,
    ``region``, ``access_key_id``, ``secret_access_key``, ``session_token``,
    ``copy_if_not_exists``...), plus this engine's own:

    - ``commit``: ``"conditional"`` (default; multipart upload to the content
      key, completed with ``If-None-Match: *``) or ``"copy"`` (temp key and
      conditional copy, for servers without a conditional complete);
    - ``part_size`` (smallest part, default 8 MiB), ``max_parts`` (10,000),
      ``part_concurrency`` (parts in flight, 4), ``spool_dir`` (local folder
      for spooled uploads, the system's temp folder by default);
    - ``public_endpoint``: the endpoint put in presigned URLs, for browsers
      that cannot reach ``endpoint``; ``presign_expires`` (seconds, 3600);
    - ``profile``: a ``~/.aws`` profile for credentials and region;
    - ``copy_part_size``: the largest range of one ``UploadPartCopy``
      (default and most 5 GiB, least 5 MiB), for copies done in ranges;
    - ``tus_lock_seconds``: how long a resumable upload stays locked by a
      request whose server stopped renewing the lock (died), 6 by default
      (tus-js-client's retries span 9 s); see :mod:`async_hashfs._tus_s3`;
    - ``sweep_lock_seconds``: the lease of a running sweep (30 by default,
      5 to 600): a sweep whose process died blocks the next one, and puts of
      the keys it was deleting wait this long (the lease of the sweep that
      died, on the put's clock); see :mod:`async_hashfs._s3_sweep`.

    An ``http://`` endpoint (option, ``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT``)
    allows plain HTTP by itself.
    """

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
        self.bucket, _, prefix = layout.root.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/")
        settings = dict(options or {})
        own = {name: settings.pop(name) for name in _OWN_OPTIONS if name in settings}
        self.commit_mode = str(own.get("commit", "conditional"))
        if self.commit_mode not in ("conditional", "copy"):
            raise ValueError(
                f'S3 option "commit" is "conditional" or "copy", not {own["commit"]!r}'
            )
        self.part_size = int(own.get("part_size", PART_SIZE))
        self.max_parts = int(own.get("max_parts", MAX_PARTS))
        self.part_concurrency = int(own.get("part_concurrency", PART_CONCURRENCY))
        if self.part_size < MIN_PART or not 1 <= self.max_parts <= MAX_PARTS:
            raise ValueError("S3 part_size must be >= 5 MiB and max_parts within 1..10000")
        if self.part_concurrency < 1:
            raise ValueError("S3 part_concurrency must be at least 1")
        self.size_limit = min(MAX_OBJECT, self.max_parts * MAX_PART)
        self.spool_dir: str | None = own.get("spool_dir")
        self.presign_expires = int(own.get("presign_expires", PRESIGN_EXPIRES))
        copy_part = own.get("copy_part_size")
        self.copy_part_size: int | None = None if copy_part is None else int(copy_part)
        if self.copy_part_size is not None and not MIN_PART <= self.copy_part_size <= COPY_LIMIT:
            raise ValueError("S3 copy_part_size must be within 5 MiB..5 GiB")
        self.tus_lock_seconds = float(own.get("tus_lock_seconds", 6.0))
        if not 0 < self.tus_lock_seconds < 86400:
            raise ValueError("S3 tus_lock_seconds must be more than 0 and less than a day")
        self.sweep_lock_seconds = float(own.get("sweep_lock_seconds", SWEEP_LEASE))
        if not LEASE_LEAST <= self.sweep_lock_seconds <= LEASE_MOST:
            raise ValueError(
                f"S3 sweep_lock_seconds must be within {LEASE_LEAST:g}..{LEASE_MOST:g} "
                f"seconds, not {own['sweep_lock_seconds']!r}"
            )
        self._profile: str | None = own.get("profile")
        # SeaweedFS, MinIO and AWS take a conditional copy with this header.
        settings.setdefault("copy_if_not_exists", "header:If-None-Match:*")
        endpoint = settings.pop("endpoint", None) or _env_endpoint()
        self.endpoint: str | None = str(endpoint) if endpoint else None
        if self.endpoint is not None:
            _check_endpoint(self.endpoint)
        self.public_endpoint: str | None = own.get("public_endpoint") or self.endpoint
        self._settings = settings
        self._lock = threading.Lock()
        self._store: S3Store | None = None
        self._session: Any = None
        self._client: Any = None
        self._public_client: Any = None
        self._presigned: dict[tuple[str, ...], tuple[str, float]] = {}
        self._verified: dict[str, str] = {}
        self._partials: S3PartialStore | None = None
        #: What this engine's puts keep of the sweep record between them.
        self._sweep_watch = SweepWatch()

    # -- clients, made on first use (botocore reads files and JSON models) -----

    def _botocore_session(self) -> Any:
        if self._session is None:
            import botocore.session  # type: ignore[import-untyped]

            self._session = botocore.session.Session(profile=self._profile)
        return self._session

    @property
    def region(self) -> str:
        region = self._settings.get("region") or self._settings.get("aws_region")
        if not region:
            region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region and self._profile is not None:
            region = self._botocore_session().get_config_variable("region")
        return str(region or "us-east-1")

    def _credentials(self) -> dict[str, Any]:
        names = {
            "aws_access_key_id": ("access_key_id", "aws_access_key_id"),
            "aws_secret_access_key": ("secret_access_key", "aws_secret_access_key"),
            "aws_session_token": ("session_token", "token", "aws_session_token"),
        }
        found = {}
        for target, sources in names.items():
            for source in sources:
                if self._settings.get(source):
                    found[target] = str(self._settings[source])
                    break
        return found

    @property
    def store(self) -> S3Store:
        """The obstore client (small puts, HEAD, GET, list, delete)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._make_store()
        return self._store

    def _make_store(self) -> S3Store:
        settings = dict(self._settings)
        client_options = dict(settings.pop("client_options", {}) or {})
        if self.endpoint:
            settings["endpoint"] = self.endpoint
            if self.endpoint.startswith("http://"):
                client_options.setdefault("allow_http", True)
        settings["region"] = self.region
        extra: dict[str, Any] = {}
        explicit = self._credentials()
        if not explicit and (self._profile is not None or not os.environ.get("AWS_ACCESS_KEY_ID")):
            # No keys given: botocore's chain finds them (profiles, SSO, roles).
            extra["credential_provider"] = _BotocoreCredentials(self._botocore_session())
        return S3Store(
            self.bucket,
            prefix=self.prefix or None,
            client_options=client_options or None,  # type: ignore[arg-type]
            **extra,
            **settings,
        )

    def _make_client(self, endpoint: str | None) -> Any:
        from botocore.config import Config  # type: ignore[import-untyped]

        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if self.endpoint else "auto"},
            max_pool_connections=max(10, self.part_concurrency * 2),
            retries={"mode": "standard"},
            # Checksums only where the API needs them: many S3 servers refuse
            # the CRC headers that are otherwise sent; payloads are signed.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return self._botocore_session().create_client(
            "s3", endpoint_url=endpoint, config=config, **self._credentials()
        )

    @property
    def client(self) -> Any:
        """The botocore client (multipart uploads, presigning)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client(self.endpoint)
        return self._client

    def _presigning_client(self) -> Any:
        if self.public_endpoint == self.endpoint:
            return self.client
        if self._public_client is None:
            with self._lock:
                if self._public_client is None:
                    self._public_client = self._make_client(self.public_endpoint)
        return self._public_client

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    # -- writing ---------------------------------------------------------

    def writer(self, *, overlap: bool = True) -> S3Writer:
        """Start a new object (``overlap``: accepted as :meth:`Engine.writer` does; unused)."""
        return S3Writer(self)

    # The same single pass as on a file system, through this engine's writer.
    put = Engine.put

    def spool(self) -> IO[bytes]:
        """An anonymous local temp file for a large put (gone when closed or killed)."""
        return tempfile.TemporaryFile(dir=self.spool_dir)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(obstore.head(self.store, key))
        except (FileNotFoundError, NotFoundError):
            return None

    def _seen(self, key: str, size: int | None) -> bool:
        """Whether the content key holds an object (of ``size`` bytes): one HEAD."""
        meta = self._head(key)
        if meta is None:
            return False
        if size is not None and int(meta["size"]) != size:
            raise FileExistsError(
                errno.EEXIST,
                f"the content key holds {meta['size']} bytes, not {size}: run verify",
                key,
            )
        return True

    def _create(self, key: str, data: bytes) -> bool:
        """Put ``data`` at ``key`` unless taken; return whether it was (seen there)."""
        for _ in range(_TRIES):
            try:
                obstore.put(self.store, key, data, mode="create")
                return False
            except (AlreadyExistsError, PreconditionError):
                pass  # taken, or a conflicting write (409): look before believing it
            if self._seen(key, len(data)):
                return True
        raise OSError(errno.EAGAIN, "the server refused the write, yet the key is empty", key)

    def _commit_file(self, key: str, fd: int, size: int) -> bool:
        """Store the spooled ``size`` bytes of ``fd`` at ``key``; return whether already there."""
        if self._seen(key, size):
            return True  # a duplicate: not one byte sent
        if self.commit_mode == "copy":
            return self._commit_by_copy(key, fd, size)
        return self._until_stored(
            lambda: self._upload(key, fd, size, conditional=True), key, size, "upload"
        )

    def _until_stored(self, write: Callable[[], bool], key: str, size: int, what: str) -> bool:
        """Try the conditional ``write`` until it lands (``False``: a new object) or
        ``key`` is seen holding ``size`` bytes (``True``: a duplicate).

        Raises:
            OSError: refused every time while nothing was at ``key``.
        """
        for _ in range(_TRIES):
            if write():
                return False
            if self._seen(key, size):
                return True
        raise OSError(errno.EAGAIN, f"the server refused the {what}, yet the key is empty", key)

    def _upload(self, key: str, fd: int, size: int, conditional: bool) -> bool:
        """One multipart upload of ``fd`` to ``key``; ``False`` when refused (412 or 409).

        A failed upload is aborted, never completed: nothing becomes visible.
        """
        client = self.client
        part = part_size_for(size, self.max_parts, self.part_size)
        count = max(1, -(-size // part))
        full = self._full(key)
        upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]

        def send(number: int) -> dict[str, Any]:
            offset = (number - 1) * part
            length = min(part, size - offset)
            body: Any = (
                _pread_all(fd, length, offset)
                if length <= _PART_IN_MEMORY
                else _FileSlice(fd, offset, length)
            )
            answer = client.upload_part(
                Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
            )
            return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            parts = self._in_flight(send, count)
            condition = {"IfNoneMatch": "*"} if conditional else {}
            client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            status, code = _error_code(exc)
            if status in (409, 412) or code in _REFUSED:
                return False
            raise
        return True

    def _in_flight(self, send: Callable[[int], dict[str, Any]], count: int) -> list[Any]:
        """Run ``send(1..count)``, ``part_concurrency`` at a time; stop at the first failure."""
        if count == 1 or self.part_concurrency == 1:
            return [send(number) for number in range(1, count + 1)]
        pool = ThreadPoolExecutor(min(self.part_concurrency, count), "hashfs-s3-part")
        try:
            return list(pool.map(send, range(1, count + 1)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _commit_by_copy(self, key: str, fd: int, size: int) -> bool:
        temp = f"{TEMP_DIRNAME}/{uuid.uuid4().hex}.tmp"
        try:
            if not self._upload(temp, fd, size, conditional=False):
                raise OSError(errno.EIO, "the server refused an unconditional upload", temp)
            return self._copy_new(temp, key, size)
        finally:
            with contextlib.suppress(FileNotFoundError, NotFoundError):
                obstore.delete(self.store, temp)

    def _copy_new(self, source: str, key: str, size: int | None = None) -> bool:
        """Copy ``source`` to ``key`` unless taken; return whether it was (seen there)."""
        if size is not None and size > COPY_LIMIT:
            # Past one CopyObject: copy in ranges. Not conditional; the bytes
            # are complete either way, and racing writers are rare this large.
            if self._seen(key, size):
                return True
            self._copy_in_parts(source, key, size)
            return False
        for _ in range(_TRIES):
            try:
                obstore.copy(self.store, source, key, overwrite=False)
                return False
            except (AlreadyExistsError, PreconditionError):
                pass
            except NotSupportedError:
                # No atomic copy-if-absent here: check, then copy. Two racing
                # writers of the same bytes may both report a new object.
                if self._seen(key, size):
                    return True
                obstore.copy(self.store, source, key, overwrite=True)
                return False
            if self._seen(key, size):
                return True
        raise OSError(errno.EAGAIN, "the server refused the copy, yet the key is empty", key)

    def _copy_in_parts(self, source: str, key: str, size: int, conditional: bool = False) -> bool:
        """Copy ``source`` to ``key`` in ranges (``UploadPartCopy``), with no size ceiling.

        Ranges are at most ``copy_part_size`` (5 GiB). ``conditional``
        completes with ``If-None-Match: *``: returns ``False`` when refused
        (the key is taken or a write raced it), the upload aborted.
        """
        client = self.client
        limit = self.copy_part_size or COPY_LIMIT
        part = min(limit, max(part_size_for(size, self.max_parts, self.part_size), 1 << 30))
        part = max(part, -(-size // self.max_parts))
        count = max(1, -(-size // part))
        full = self._full(key)
        upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]

        def copy(number: int) -> dict[str, Any]:
            start = (number - 1) * part
            end = min(size, start + part) - 1
            answer = client.upload_part_copy(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": self._full(source)},
                CopySourceRange=f"bytes={start}-{end}",
            )
            return {"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]}

        try:
            parts = self._in_flight(copy, count)
            client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **({"IfNoneMatch": "*"} if conditional else {}),
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            status, code = _error_code(exc)
            if conditional and (status in (409, 412) or code in _REFUSED):
                return False
            raise
        return True

    def commit_copy(self, source: str, key: str, size: int) -> bool:
        """Copy the complete temp object ``source`` to the content key ``key``, race-safely.

        The commit of a file whose hash became known only after its bytes
        were on the bucket (a resumable upload). Return whether ``key``
        already held it (``is_duplicate``): one HEAD first, then the same
        conditional write as a large put. With ``commit="conditional"``, a
        copy in ranges completed with ``If-None-Match: *`` (no 5 GiB
        ceiling); with ``commit="copy"``, a conditional CopyObject (ranges
        past 5 GiB). ``source`` stays; the caller removes it.

        Raises:
            FileExistsError: ``key`` holds an object of another size.
            OSError: the server kept refusing while nothing was at ``key``.
        """
        if self._seen(key, size):
            return True
        if self.commit_mode == "copy":
            return self._copy_new(source, key, size)
        return self._until_stored(
            lambda: self._copy_in_parts(source, key, size, conditional=True), key, size, "copy"
        )

    def partial_uploads(self) -> S3PartialStore:
        """The resumable (tus) uploads of this store: multipart uploads on the bucket.

        One :class:`~async_hashfs._tus_s3.S3PartialStore` per engine.
        """
        if self._partials is None:
            from ._tus_s3 import S3PartialStore

            with self._lock:
                if self._partials is None:
                    self._partials = S3PartialStore(self)
        return self._partials

    def makepath(self, path: str) -> None:
        """Object stores have no folders."""

    def remove_empty(self, folder: str) -> None:
        """Object stores have no folders."""

    # -- reading ---------------------------------------------------------

    def _locate(self, ref: object) -> tuple[str, dict[str, Any]] | None:
        """The key and metadata of the object ``ref`` names: one HEAD (a listing for an id
        stored with an extension)."""
        if isinstance(ref, bytes):
            ref = ref.decode()
        elif hasattr(ref, "__fspath__"):
            ref = str(ref.__fspath__())
        if not isinstance(ref, str):
            raise TypeError(f"a reference is an id or a path, not {type(ref).__name__}")
        layout = self.layout
        if layout.is_id(ref):
            key = _key(layout.relpath(ref))
            meta = self._head(key)
            if meta is not None:
                return key, meta
            folder, _, name = key.rpartition("/")
            # Listing is by folder; the extension variants sit beside the bare key.
            for batch in obstore.list(self.store, prefix=folder or None, chunk_size=100):
                for found in batch:
                    path = str(found["path"])
                    if path.rpartition("/")[2].startswith(name + ".") and (
                        layout.parse_address(path) is not None
                    ):
                        return path, dict(found)
            return None
        relpath = layout.inside(ref)
        if relpath is None:
            return None
        meta = self._head(_key(relpath))
        return None if meta is None else (_key(relpath), meta)

    def resolve_relpath(self, ref: object) -> str | None:
        """The key of the object ``ref`` (an id, relpath or s3:// URL) names, or ``None``."""
        located = self._locate(ref)
        return None if located is None else located[0]

    # What only needs resolve_relpath, the layout and hash_file is Engine's own.
    resolve = Engine.resolve
    address = Engine.address
    get = Engine.get
    verify = Engine.verify

    def open(self, ref: object, mode: str = "rb") -> IO[Any]:
        check_read_mode(mode)
        located = self._locate(ref)
        if located is None:
            raise NotFound(ref)
        key, meta = located
        raw = _ObjectReader(self.store, key, int(meta["size"]))
        binary = io.BufferedReader(raw, CHUNK_SIZE)
        return binary if "b" in mode else io.TextIOWrapper(binary)

    def open_blob(self, relpath: str, verify: bool = False) -> S3Blob | None:
        parsed = self.layout.parse_address(relpath)
        if parsed is None:
            return None
        key = _key(relpath)
        meta = self._head(key)
        if meta is None:
            return None
        id, extension = parsed
        if verify:
            self._verify_once(key, id, str(meta.get("e_tag") or meta["last_modified"]))
        mtime = meta["last_modified"].timestamp()
        return S3Blob(self.store, relpath, id, extension, int(meta["size"]), mtime)

    def _verify_once(self, key: str, id: str, version: str) -> None:
        """Hash the object unless this version of it was verified before."""
        if self._verified.get(key) == version:
            return
        actual = self.hash_file(key)
        if actual != id:
            raise CorruptFile(key, actual)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[key] = version

    def presign(
        self,
        relpath: str,
        content_type: str | None = None,
        disposition: str | None = None,
        cache_control: str | None = None,
    ) -> tuple[str, int]:
        """A URL that GETs ``relpath`` with these response headers, and for how long to cache it.

        The same URL is given again for half of its lifetime, so a browser
        that cached the redirect keeps a valid URL; the second number is the
        seconds left of that half.
        """
        overrides = {
            "ResponseContentType": content_type,
            "ResponseContentDisposition": disposition,
            "ResponseCacheControl": cache_control,
        }
        cache_key = (relpath, content_type or "", disposition or "", cache_control or "")
        now = time.time()
        cached = self._presigned.get(cache_key)
        reuse_until = now
        if cached is not None and cached[1] > now + 1:
            url, reuse_until = cached
        else:
            params = {"Bucket": self.bucket, "Key": self._full(_key(relpath))}
            params.update({name: value for name, value in overrides.items() if value})
            url = self._presigning_client().generate_presigned_url(
                "get_object", Params=params, ExpiresIn=self.presign_expires
            )
            reuse_until = now + self.presign_expires / 2
            if len(self._presigned) >= _VERIFIED_MAX:
                self._presigned.clear()
            self._presigned[cache_key] = (url, reuse_until)
        return url, max(0, int(reuse_until - now))

    def delete(self, ref: object) -> None:
        relpath = self.resolve_relpath(ref)
        if relpath is not None:
            with contextlib.suppress(FileNotFoundError, NotFoundError):
                obstore.delete(self.store, relpath)
            self._verified.pop(relpath, None)

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

    def hash_file(
        self,
        path: str | int,
        checkpoint: Callable[[], None] | None = None,
        algorithm: str | None = None,
    ) -> str:
        """The hex digest of the object at ``path`` (an s3:// URL or a relpath).

        With the store's algorithm, unless ``algorithm`` names another.
        """
        relpath = self.layout.inside(str(path)) or str(path)
        digest = hashlib.new(algorithm or self.layout.algorithm)
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

    def repair(
        self, extensions: bool = True, foreign: Literal["move", "refuse"] = "move"
    ) -> RepairReport:
        """Move misplaced objects to their content keys; see :meth:`Engine.repair`."""
        report = RepairReport()
        for path, address in list(self.corrupted(extensions)):
            old = self.layout.inside(path) or path

            def rehash(algorithm: str, old: str = old) -> str:
                return self.hash_file(old, algorithm=algorithm)

            reason = foreign_layout(self.layout, old, address.id, rehash)
            if reason is not None and foreign == "refuse":
                report.refused.append((path, reason + ": left where it is"))
                continue
            meta = self._head(old)
            self._copy_new(old, _key(address.relpath), None if meta is None else meta["size"])
            obstore.delete(self.store, old)
            report.append((path, address))
            if reason is not None:
                report.relaid.append((path, reason))
        report.log(self.layout)
        return report

    def gc(self, older_than: float | None = None) -> GCReport:
        """Remove temp objects and abort incomplete multipart uploads under the prefix.

        Only those older than ``older_than`` seconds go (default: an hour,
        since no lock tells whether their writer lives); the value given is
        used as it is, 0 included. Resumable uploads (under
        ``.hashfs-tmp/tus/``) are not touched: they go when they expire
        (``S3PartialStore.collect``); nor is the sweep record.
        """
        grace = TEMP_GRACE if older_than is None else float(older_than)
        if grace < 0:
            raise ValueError(f"older_than must be 0 or more seconds, not {older_than!r}")
        report = GCReport()
        cutoff = time.time() - grace
        for meta in self._objects(TEMP_DIRNAME + "/"):
            if str(meta["path"]).startswith(TUS_PREFIX) or meta["path"] == RECORD_KEY:
                continue  # a resumable upload; the sweep record (see sweep())
            if meta["last_modified"].timestamp() <= cutoff:
                with contextlib.suppress(FileNotFoundError, NotFoundError):
                    obstore.delete(self.store, meta["path"])
                    report.temp_files.append(self.layout.abspath(meta["path"]))
                    report.temp_bytes += int(meta["size"])
        for key, upload_id, started in self._incomplete_uploads():
            relpath = key[len(self.prefix) + 1 :] if self.prefix else key
            if started <= cutoff and not relpath.startswith(TUS_PREFIX):
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                    report.uploads.append(self.layout.abspath(relpath))
        return report

    def _refresh_duplicate(self, key: str, size: int) -> bool:
        """Make the object at ``key`` look new (its LastModified now) for :meth:`sweep`.

        S3 has no touch: the object is copied onto itself, server side; one
        past a CopyObject's 5 GiB, in ranges (``UploadPartCopy`` of its own
        bytes, completed over it: the same bytes, a new object). A copy onto
        itself must change something, so its metadata is replaced: this
        engine's objects have none (their type comes from their extension
        when served). Returns ``False`` when it is gone (swept or deleted
        since it was seen).
        """
        full = self._full(key)
        try:
            if size > COPY_LIMIT:
                self._copy_in_parts(key, key, size)
                return True
            self.client.copy_object(
                Bucket=self.bucket,
                Key=full,
                CopySource={"Bucket": self.bucket, "Key": full},
                MetadataDirective="REPLACE",
            )
        except Exception as exc:
            status, code = _error_code(exc)
            if status == 404 or code in ("NoSuchKey", "NotFound"):
                return False
            raise
        return True

    # -- sweeping, and the puts that race it (see _s3_sweep) --------------

    def _waiting(self, key: str) -> None:
        """Nothing: called each time a put waits for the batch being deleted, which holds
        ``key`` (tests hold the put there)."""

    def _store_fresh(self, key: str, size: int, store: Callable[[], bool]) -> bool:
        """``store()`` the object at ``key``, making a duplicate look new; whether it was one.

        A duplicate is copied onto itself (:meth:`_refresh_duplicate`); one
        gone meanwhile (swept or deleted since it was seen) is stored again.
        """
        is_duplicate = False
        for _ in range(_TRIES):
            is_duplicate = store()
            if not is_duplicate or self._refresh_duplicate(key, size):
                break
        return is_duplicate

    def sweep(
        self,
        keep: KeepSet,
        cutoff: float,
        dry_run: bool = False,
        on_remove: RemovedCallback | None = None,
        checkpoint: Callable[[], None] | None = None,
    ) -> SweepReport:
        """Delete each object whose id is not in ``keep``, last modified before ``cutoff``.

        See :meth:`Engine.sweep`. The prefix is listed once, a page at a
        time; each page's objects to delete go in one batched request. Only
        content keys of this layout are looked at (never the temp prefix).

        A put racing the sweep never loses its object: the sweep holds the
        record ``.hashfs-tmp/sweep.json`` (:mod:`async_hashfs._s3_sweep`),
        names each batch in it before deleting it, and leaves out the keys
        puts named there meanwhile; a put that finds its key in a batch
        waits for the batch and stores its bytes again. One sweep runs at a
        time (a dry run takes no record and is never refused).

        Raises:
            SweepRunning: another sweep of the store holds the record, or
                this one stalled past its lease and another took over.
        """
        report = SweepReport(dry_run=dry_run, keep_ids=len(keep))
        lease = None if dry_run else SweepLease(self, self.sweep_lock_seconds)
        if lease is not None:
            lease.start()
        try:
            self._sweep_pages(report, lease, keep, cutoff, on_remove, checkpoint)
        finally:
            if lease is not None:
                lease.end()
        return report

    def _sweep_pages(
        self,
        report: SweepReport,
        lease: SweepLease | None,
        keep: KeepSet,
        cutoff: float,
        on_remove: RemovedCallback | None,
        checkpoint: Callable[[], None] | None,
    ) -> None:
        layout = self.layout
        for batch in obstore.list(self.store, chunk_size=1000):
            if checkpoint is not None:
                checkpoint()
            doomed: list[tuple[str, str, int]] = []
            last = ""
            for meta in batch:
                key = str(meta["path"])
                last = max(last, key)
                if key.startswith(TEMP_DIRNAME + "/"):
                    continue
                parsed = layout.parse_address(key)
                if parsed is None:
                    report.skipped += 1
                elif parsed[0] in keep:
                    report.kept += 1
                elif meta["last_modified"].timestamp() >= cutoff:
                    report.young += 1
                else:
                    doomed.append((key, parsed[0], int(meta["size"])))
            if lease is None:
                self._removed(report, doomed, on_remove)
            else:  # every page: the record's list of touched keys stays short
                self._delete_batch(lease, doomed, last, report, on_remove)

    def _removed(
        self,
        report: SweepReport,
        doomed: list[tuple[str, str, int]],
        on_remove: RemovedCallback | None,
    ) -> None:
        """Count and report the objects ``doomed`` (deleted, or would be on a dry run)."""
        for key, id, size in doomed:
            self._verified.pop(key, None)
            report.removed += 1
            report.removed_bytes += size
            if on_remove is not None:
                on_remove(HashAddress(id, key, self.layout.abspath(key), False))

    def _delete_batch(
        self,
        lease: SweepLease,
        doomed: list[tuple[str, str, int]],
        last: str,
        report: SweepReport,
        on_remove: RemovedCallback | None,
    ) -> None:
        """Name the batch in the record, delete it, report it, clear it.

        The batch is reported (``on_remove``, the counts) as soon as it is
        deleted, before the record is cleared, which may fail. Keys a put
        named in ``touched`` are left out (counted young), and so are keys
        not past the ``listed_upto`` of the pages decided before: a put of
        such a key took its page for decided and named it nowhere. S3 lists
        in byte order, but some servers do not (SeaweedFS lists folder by
        folder: ``ab/cd/rest/x`` before ``ab/cd/rest.jpg``); those keys are
        counted skipped, and the next sweep looks at them again.
        """
        keys = [key for key, _, _ in doomed]
        late: list[int] = [0]

        def decide(record: dict[str, Any]) -> dict[str, Any]:
            touched = record.get("touched") or []
            spared = set(touched)
            upto = str(record.get("listed_upto") or "")
            late[0] = sum(1 for key in keys if key <= upto)
            return dict(
                record,
                listed_upto=max(last, upto),
                deleting=[key for key in keys if key not in spared and key > upto],
                touched=[key for key in touched if key > max(last, upto)],
            )

        deleting = set(lease.update(decide)["deleting"])
        report.skipped += late[0]  # listed out of order: the next sweep looks at them
        report.young += len(doomed) - len(deleting) - late[0]  # stored again meanwhile
        if deleting:
            lease.check()
            with contextlib.suppress(FileNotFoundError, NotFoundError):
                obstore.delete(self.store, sorted(deleting))
            self._removed(report, [entry for entry in doomed if entry[0] in deleting], on_remove)
            lease.update(lambda record: dict(record, deleting=[]))

    def _incomplete_uploads(self) -> Iterator[tuple[str, str, float]]:
        """``(key, upload id, start time)`` of every multipart upload under the prefix."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        markers: dict[str, str] = {}
        while True:
            page = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=prefix, **markers)
            for upload in page.get("Uploads", []):
                yield upload["Key"], upload["UploadId"], upload["Initiated"].timestamp()
            if not page.get("IsTruncated"):
                return
            markers = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }
