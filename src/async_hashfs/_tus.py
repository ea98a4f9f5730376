"""The tus 1.0 resumable upload protocol, without a framework.

Both extensions route their tus endpoint here: :func:`parse` turns a
request's method and headers into a :class:`TusCall` (no I/O), and
:class:`TusProtocol` carries it out against a
:class:`~async_hashfs._tus_store.PartialStore`, in blocking steps the Quart
extension runs in worker threads and the Flask extension in its own thread.
A call that sends bytes (``PATCH``, a ``POST`` with a body) becomes a
:class:`Transfer`: the extension feeds it the body in chunks, then hands it
back to :meth:`TusProtocol.complete`, which commits, checks the checksum,
and once the last byte is there commits the upload into its content
address, all in one step.

Supported: the core protocol and the extensions ``creation``,
``creation-with-upload``, ``creation-defer-length``, ``termination``,
``checksum`` (``sha1``, ``sha256``, ``sha512``, ``md5``) and
``expiration``. Every response carries ``Tus-Resumable: 1.0.0`` and
``Cache-Control: no-store``. The response that finishes an upload (and a
``HEAD`` of a finished one) also carries the stored file's address:
``HashFS-Id``, ``HashFS-Relpath`` and ``HashFS-URL`` (see :data:`ID_HEADER`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import errno
import hashlib
import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from ._address import HashAddress
from ._exceptions import FileTooLarge
from ._tus_store import (
    ID_PATTERN,
    LengthConflict,
    OffsetMismatch,
    PartialAppend,
    PartialStore,
    PartialUploadError,
    UploadInfo,
    UploadLocked,
    UploadNotFound,
    UploadTooLarge,
    extension_of,
)

_log = logging.getLogger("async_hashfs.tus")

__all__ = [
    "ACTIONS",
    "CHECKSUM_ALGORITHMS",
    "DUPLICATE_HEADER",
    "EXTENSIONS",
    "ID_HEADER",
    "NO_BODY_LIMIT",
    "RELPATH_HEADER",
    "TUS_VERSION",
    "URL_HEADER",
    "Blocking",
    "CallHook",
    "CompletedUpload",
    "FeedBody",
    "Outcome",
    "Transfer",
    "TusCall",
    "TusError",
    "TusExchange",
    "TusProtocol",
    "TusResponse",
    "TusStep",
    "call_from_request",
    "decode_metadata",
    "http_date",
    "parse",
    "refused",
]

TUS_VERSION = "1.0.0"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "checksum",
    "expiration",
)
#: ``Upload-Checksum`` algorithms, by their tus names.
CHECKSUM_ALGORITHMS: dict[str, str] = {
    "sha1": "sha1",
    "sha256": "sha256",
    "sha512": "sha512",
    "md5": "md5",
}
#: On the response that finishes an upload: the stored file's id (its hash).
ID_HEADER = "HashFS-Id"
#: ...its path relative to the store's root (what ``fs.url_for`` takes).
RELPATH_HEADER = "HashFS-Relpath"
#: ...its URL, as ``fs.url_for`` gives it.
URL_HEADER = "HashFS-URL"
#: ...and ``1`` when the store held the same bytes already, else ``0``.
DUPLICATE_HEADER = "HashFS-Duplicate"
OFFSET_STREAM = "application/offset+octet-stream"

_DIGITS = re.compile(r"[0-9]{1,19}")
_METADATA_KEY = re.compile(r"[!-+\--~]+")  # printable ASCII without space and comma
_METHODS = {"OPTIONS", "HEAD", "POST", "PATCH", "DELETE"}
_FULL = {errno.ENOSPC, errno.EDQUOT} if hasattr(errno, "EDQUOT") else {errno.ENOSPC}


@dataclass
class TusResponse:
    """What the extension sends back: a status, headers and a short text body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class TusError(Exception):
    """A request the protocol refuses: its status, a message naming what was wrong."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> TusResponse:
        return TusResponse(self.status, self.headers, self.message + "\n")


def _bad(header: str, problem: str) -> TusError:
    return TusError(400, f"{header}: {problem}")


def _integer(headers: Callable[[str], str | None], name: str) -> int | None:
    value = headers(name)
    if value is None:
        return None
    value = value.strip(" \t")  # HTTP's own whitespace only (not NBSP and the like)
    if not _DIGITS.fullmatch(value):
        raise _bad(name, f"must be a non-negative integer, not {value!r}")
    if len(value) > 1 and value.startswith("0"):
        raise _bad(name, f"must be a non-negative integer without leading zeros, not {value!r}")
    return int(value)


def decode_metadata(header: str) -> dict[str, str]:
    """Decode an ``Upload-Metadata`` header into ``{key: value}``.

    Values are Base64 of UTF-8 text (undecodable bytes become U+FFFD); a
    key without a value maps to ``""``.

    Raises:
        TusError: 400 naming ``Upload-Metadata``: an empty or repeated key, a
            key with spaces or non-ASCII characters, a value not Base64.
    """
    result: dict[str, str] = {}
    if not header.strip():
        return result
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise _bad("Upload-Metadata", f"{pair.strip()!r} is not 'key base64value'")
        key = parts[0]
        if not _METADATA_KEY.fullmatch(key):
            raise _bad("Upload-Metadata", f"key {key!r} must be printable ASCII")
        if key in result:
            raise _bad("Upload-Metadata", f"key {key!r} is given twice")
        value = parts[1] if len(parts) == 2 else ""
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _bad("Upload-Metadata", f"the value of {key!r} is not Base64") from None
        result[key] = decoded.decode("utf-8", "replace")
    return result


def _checksum(headers: Callable[[str], str | None]) -> tuple[str, bytes] | None:
    value = headers("Upload-Checksum")
    if value is None:
        return None
    parts = value.strip().split(" ")
    if len(parts) != 2:
        raise _bad("Upload-Checksum", "must be '<algorithm> <base64 digest>'")
    name, encoded = parts
    algorithm = CHECKSUM_ALGORITHMS.get(name)
    if algorithm is None:
        raise _bad(
            "Upload-Checksum",
            f"unsupported algorithm {name!r} (supported: {', '.join(CHECKSUM_ALGORITHMS)})",
        )
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("Upload-Checksum", "the digest is not Base64") from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise _bad(
            "Upload-Checksum", f"a {name} digest has {hashlib.new(algorithm).digest_size} bytes"
        )
    return algorithm, digest


@dataclass(frozen=True)
class TusCall:
    """One tus request, its headers checked (see :func:`parse`)."""

    method: str
    upload_id: str | None
    offset: int | None = None
    length: int | None = None
    defer_length: bool = False
    metadata: str = ""
    checksum: tuple[str, bytes] | None = None
    content_length: int | None = None
    has_body: bool = False
    #: The creation URL (an absolute path); an upload's URL is this plus ``/<id>``.
    base: str = ""

    def location(self, upload_id: str) -> str:
        """The URL of upload ``upload_id`` (relative to the host, as tus allows)."""
        return f"{self.base}/{upload_id}"


def parse(
    method: str,
    upload_id: str | None,
    headers: Callable[[str], str | None],
    content_length: int | None,
    chunked: bool = False,
    base: str = "",
) -> TusCall:
    """Check a tus request's method and headers; no I/O.

    ``upload_id`` is ``None`` on the creation URL, ``base``. ``headers(name)``
    returns a header or ``None``. ``X-HTTP-Method-Override`` replaces ``method``
    ``POST`` (and no other).

    Raises:
        TusError: 412 for a missing or unsupported ``Tus-Resumable``
            (``OPTIONS`` excepted), 405 for a method the URL does not take,
            415 for a body of another type, 400 naming any malformed header,
            404 for an upload id that cannot exist.
    """
    override = headers("X-HTTP-Method-Override")
    if override is not None and method == "POST":
        # Only on POST: a HEAD or OPTIONS that appends or terminates would slip past
        # guards keyed on the request's method.
        method = override.strip().upper()
    if method not in _METHODS:
        raise TusError(405, f"{method} is not a tus method", {"Allow": _allow(upload_id)})
    if method == "OPTIONS":
        return TusCall(method, upload_id, base=base)
    version = headers("Tus-Resumable")
    if version is None or version.strip() != TUS_VERSION:
        raise TusError(
            412,
            f"Tus-Resumable: this server speaks tus {TUS_VERSION}, not {version!r}",
            {"Tus-Version": TUS_VERSION},
        )
    if (upload_id is None) != (method == "POST"):
        raise TusError(405, f"{method} is not allowed here", {"Allow": _allow(upload_id)})
    if upload_id is not None and not ID_PATTERN.fullmatch(upload_id):
        raise TusError(404, "no such upload")
    has_body = chunked or bool(content_length)
    if method in ("POST", "PATCH") and (has_body or method == "PATCH"):
        content_type = (headers("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != OFFSET_STREAM:
            raise TusError(415, f"Content-Type: bytes of an upload are sent as {OFFSET_STREAM}")
    checksum = _checksum(headers) if method in ("POST", "PATCH") else None
    if method == "POST":
        length = _integer(headers, "Upload-Length")
        defer = headers("Upload-Defer-Length")
        if defer is not None and defer.strip() != "1":
            raise _bad("Upload-Defer-Length", f"must be 1, not {defer!r}")
        if (length is None) == (defer is None):
            raise _bad(
                "Upload-Length",
                "send either Upload-Length or Upload-Defer-Length: 1"
                if length is None
                else "not with Upload-Defer-Length",
            )
        metadata = headers("Upload-Metadata") or ""
        decode_metadata(metadata)
        return TusCall(
            method,
            None,
            offset=0,
            length=length,
            defer_length=defer is not None,
            metadata=metadata.strip(),
            checksum=checksum,
            content_length=content_length,
            has_body=has_body,
            base=base,
        )
    if method == "PATCH":
        offset = _integer(headers, "Upload-Offset")
        if offset is None:
            raise _bad("Upload-Offset", "a PATCH must say where its bytes go")
        return TusCall(
            method,
            upload_id,
            offset=offset,
            length=_integer(headers, "Upload-Length"),
            checksum=checksum,
            content_length=content_length,
            has_body=has_body,
            base=base,
        )
    return TusCall(method, upload_id, base=base)


def _allow(upload_id: str | None) -> str:
    return "OPTIONS, POST" if upload_id is None else "OPTIONS, HEAD, PATCH, DELETE"


def http_date(timestamp: float) -> str:
    """An RFC 9110 date (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return formatdate(timestamp, usegmt=True)


@dataclass(frozen=True)
class CompletedUpload:
    """A finished upload, as the app's completion hook receives it."""

    #: The tus upload id (the last part of its upload URL).
    upload_id: str
    #: The stored file's address (``is_duplicate`` as a put of the same bytes reports it).
    address: HashAddress
    #: The client's ``Upload-Metadata``, decoded, such as ``filename`` and ``filetype``.
    metadata: dict[str, str]

    @property
    def filename(self) -> str | None:
        """The client's ``filename`` metadata, if it sent one."""
        return self.metadata.get("filename")

    @property
    def filetype(self) -> str | None:
        """The client's ``filetype`` metadata (a media type), if it sent one."""
        return self.metadata.get("filetype")


@dataclass
class Outcome:
    """What a tus call ended in: the response, and the upload it finished, if any."""

    response: TusResponse
    completed: CompletedUpload | None = None


class Transfer:
    """A request body on its way into an upload: fed by the extension, then completed."""

    def __init__(self, call: TusCall, info: UploadInfo, append: PartialAppend) -> None:
        self.call = call
        self.info = info
        self.append = append
        self._checksum = None if call.checksum is None else hashlib.new(call.checksum[0])

    def write(self, chunks: Iterable[Any]) -> None:
        """Append chunks of the body (blocking; in a worker thread on Quart).

        Raises:
            UploadTooLarge: past the upload's length or the store's max_size.
        """
        checksum = self._checksum
        for chunk in chunks:
            self.append.write(chunk)
            if checksum is not None:
                checksum.update(chunk)

    def checksum_matches(self) -> bool:
        call = self.call
        return call.checksum is None or (
            self._checksum is not None and self._checksum.digest() == call.checksum[1]
        )


class TusProtocol:
    """Carries out tus calls on a store's partial uploads (blocking; thread-safe).

    Args:
        partials: the store's partial uploads.
        max_size: the largest upload, in bytes (``Tus-Max-Size``), or ``None``.
        expiry: seconds an unfinished upload is kept after its creation or the
            last PATCH that brought bytes (an upload receiving bytes does not
            expire), or ``None`` to keep it until it is finished or terminated.
    """

    def __init__(self, partials: PartialStore, max_size: int | None, expiry: float | None) -> None:
        self.partials = partials
        self.max_size = max_size
        self.expiry = expiry

    # -- headers -------------------------------------------------------------

    @staticmethod
    def base_headers() -> dict[str, str]:
        """Headers of every tus response."""
        return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}

    def respond(self, status: int, headers: Mapping[str, str] | None = None) -> TusResponse:
        return TusResponse(status, {**self.base_headers(), **(headers or {})})

    def error(self, exc: TusError) -> TusResponse:
        response = exc.response()
        response.headers = {**self.base_headers(), **response.headers}
        return response

    def failed(self, exc: BaseException) -> TusResponse:
        """The 500 for an unexpected error (logged), with the tus headers."""
        _log.error("tus request failed", exc_info=exc)
        return self.error(TusError(500, f"internal error ({type(exc).__name__})"))

    def hook_failed(self, completed: CompletedUpload, exc: BaseException) -> TusResponse:
        """The 500 for a completion hook that raised (logged): it runs again on the
        next HEAD or PATCH of the upload."""
        _log.error("the tus completion hook failed for %s", completed.upload_id, exc_info=exc)
        return self.error(
            TusError(
                500,
                f"the file was stored as {completed.address.id}, but the app's completion"
                f" hook failed ({type(exc).__name__}); HEAD or PATCH the upload again to"
                " retry it",
                self._address_headers(completed.address),
            )
        )

    def _expires(self) -> float | None:
        return None if self.expiry is None else time.time() + self.expiry

    def _state_headers(self, info: UploadInfo) -> dict[str, str]:
        headers = {"Upload-Offset": str(info.offset)}
        if info.expires is not None and info.address is None:
            headers["Upload-Expires"] = http_date(info.expires)
        return headers

    @staticmethod
    def _address_headers(address: HashAddress, fresh: bool = False) -> dict[str, str]:
        """Where a finished upload went; with ``fresh`` (the request that stored it), whether
        the store had the bytes already."""
        headers = {ID_HEADER: address.id, RELPATH_HEADER: address.relpath.replace("\\", "/")}
        if fresh:
            headers[DUPLICATE_HEADER] = "1" if address.is_duplicate else "0"
        return headers

    # -- calls without a body --------------------------------------------------

    def options(self) -> TusResponse:
        headers = {
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": ",".join(EXTENSIONS),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        }
        if self.max_size is not None:
            headers["Tus-Max-Size"] = str(self.max_size)
        return self.respond(204, headers)

    def _info(self, upload_id: str) -> UploadInfo:
        """The upload, unless gone (404) or expired (410)."""
        try:
            info = self.partials.info(upload_id)
        except UploadNotFound:
            raise TusError(404, "no such upload") from None
        # A complete upload not yet stored is stored whatever its expiry: its bytes are all there.
        unstored = info.complete and info.address is None
        # Bytes arriving now (a long PATCH) keep an upload alive; its commit moves the expiry.
        if (
            info.expires is not None
            and info.expires < time.time()
            and not unstored
            and not info.active
        ):
            raise TusError(410, "this upload expired")
        return info

    def _stored(self, info: UploadInfo) -> tuple[UploadInfo, CompletedUpload | None]:
        """Store a complete upload not yet stored (its server died first, or storing
        failed); return it as it now is, and the upload whose completion hook is due.

        Raises:
            UploadLocked: another request holds it (appending, or storing it).
            TusError: 507 or 500, storing failed; the bytes are kept.
        """
        completed = None
        if info.address is None and info.complete:
            with self._storing():
                address = self.partials.finish(info.id, extension_of(info.metadata))
            info = dataclasses.replace(info, address=address, hook_pending=True)
        elif info.address is not None and info.hook_pending:
            # Stored by an earlier request whose hook failed: the app has no row for it,
            # so a sweep may have taken it since, or may take it before the hook runs.
            with self._storing():
                there = self.partials.refresh(info.address)
            if not there:
                raise TusError(
                    410,
                    "this upload's file was removed before the app recorded it (a cleanup"
                    " of unreferenced files took it); upload it again",
                )
        if info.address is not None and info.hook_pending:
            completed = CompletedUpload(info.id, info.address, decode_metadata(info.metadata))
        return info, completed

    @staticmethod
    @contextlib.contextmanager
    def _storing() -> Iterator[None]:
        """Turn a failure to store a complete upload into a 507 or a 500 (bytes kept)."""
        try:
            yield
        except PartialUploadError:
            raise
        except OSError as exc:
            if exc.errno in _FULL:
                raise TusError(
                    507,
                    "the store has no space left to store this upload; its bytes are kept:"
                    " HEAD or PATCH it again later to store it",
                ) from exc
            _log.exception("storing a finished tus upload failed")
            raise TusError(
                500,
                "storing this upload failed; its bytes are kept: HEAD or PATCH it again"
                " later to store it",
            ) from exc

    def hook_done(self, upload_id: str) -> None:
        """Record that the completion hook ran to its end for this finished upload."""
        self.partials.hook_done(upload_id)

    def cut_off(self, transfer: Transfer) -> None:
        """End a transfer cut short (the client went away or stalled): keep what arrived,
        moving the upload's expiry as a commit does, unless the body is checksummed (then
        all of it or nothing). A body of unknown length (chunked) is atomic only so that
        one past the upload's length appends nothing; cut short, its bytes are kept too
        (tus: keep as much of the data as possible)."""
        append = transfer.append
        if transfer.call.checksum is None:
            try:
                append.commit(self._expires())
                return
            except Exception:
                _log.warning("keeping the bytes of a cut-off PATCH failed", exc_info=True)
        append.abort(self._expires())

    def head(self, call: TusCall) -> Outcome:
        assert call.upload_id is not None
        info = self._info(call.upload_id)
        try:
            info, completed = self._stored(info)
        except UploadLocked:
            # Complete, and another request holds it (storing it, or a dead server's lease
            # on s3): not a 200 without an address, which a client takes for done.
            raise TusError(423, "the upload is being stored by another request") from None
        headers = self._state_headers(info)
        if info.length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(info.length)
        if info.metadata:
            headers["Upload-Metadata"] = info.metadata
        if info.address is not None:
            headers.update(self._address_headers(info.address))
        return Outcome(self.respond(200, headers), completed)

    def delete(self, call: TusCall) -> Outcome:
        assert call.upload_id is not None
        try:
            self.partials.terminate(call.upload_id)
        except UploadNotFound:
            raise TusError(404, "no such upload") from None
        except UploadLocked:
            raise TusError(423, "the upload is busy with another request") from None
        return Outcome(self.respond(204))

    # -- calls that may carry bytes ------------------------------------------------

    def start(self, call: TusCall) -> Outcome | Transfer:
        """Carry out ``call`` up to its body: a :class:`Transfer` to feed, or the outcome.

        Raises:
            TusError: the call is refused; nothing changed.
        """
        try:
            if call.method == "OPTIONS":
                return Outcome(self.options())
            if call.method == "HEAD":
                return self.head(call)
            if call.method == "DELETE":
                return self.delete(call)
            if call.method == "POST":
                return self._create(call)
            return self._patch(call)
        except OSError as exc:
            if exc.errno in _FULL:
                raise TusError(507, "the store has no space left for this upload") from exc
            raise

    def _check_fits(self, call: TusCall, offset: int, length: int | None) -> None:
        """413 when the body would go past the length or max_size (nothing read yet)."""
        end = offset + (call.content_length or 0)
        if length is not None and end > length:
            raise TusError(
                413, f"the body ends at byte {end}, past the upload's length of {length}"
            )
        if self.max_size is not None and end > self.max_size:
            raise TusError(413, f"the body ends past the largest upload, {self.max_size} bytes")

    def _create(self, call: TusCall) -> Outcome | Transfer:
        if call.length is not None and self.max_size is not None and call.length > self.max_size:
            raise TusError(
                413, f"Upload-Length: {call.length} is past the largest upload, {self.max_size}"
            )
        self._check_fits(call, 0, call.length)
        info = self.partials.create(call.length, call.metadata, self._expires())
        if call.has_body:
            return self._open(call, info, 0, None)
        if info.complete:  # Upload-Length: 0
            return self._finish(call, info, 201)
        return Outcome(self._created(call, info))

    def _created(self, call: TusCall, info: UploadInfo) -> TusResponse:
        headers = self._state_headers(info)
        headers["Location"] = call.location(info.id)
        return self.respond(201, headers)

    def _patch(self, call: TusCall) -> Outcome | Transfer:
        assert call.upload_id is not None
        assert call.offset is not None
        info = self._info(call.upload_id)
        if info.complete:  # finished (or to be stored now): tell the client where it went
            if call.offset != info.offset:
                raise TusError(409, f"Upload-Offset: the upload is at {info.offset}")
            self._check_fits(call, info.offset, info.length)
            try:
                info, completed = self._stored(info)
            except UploadLocked:
                raise TusError(423, "the upload is busy with another request") from None
            assert info.address is not None
            headers = self._state_headers(info)
            headers.update(self._address_headers(info.address))
            return Outcome(self.respond(204, headers), completed)
        # The offset is checked under the upload's lock (open_append): a PATCH
        # racing another one gets 423 rather than a 409 from a moving offset.
        length = info.length if info.length is not None else call.length
        if call.length is not None and info.length is not None and call.length != info.length:
            raise _bad("Upload-Length", f"the upload's length is {info.length} already")
        if call.length is not None and call.length < call.offset:
            raise _bad("Upload-Length", f"below the Upload-Offset of {call.offset}")
        if length is not None and self.max_size is not None and length > self.max_size:
            raise TusError(413, f"Upload-Length: {length} is past the largest upload")
        self._check_fits(call, call.offset, length)
        return self._open(call, info, call.offset, call.length)

    def _open(self, call: TusCall, info: UploadInfo, offset: int, length: int | None) -> Transfer:
        try:
            append = self.partials.open_append(
                info.id,
                offset,
                length=length,
                # Checksummed or of unknown size: all of it or none of it.
                atomic=call.checksum is not None or call.content_length is None,
            )
        except UploadNotFound:
            raise TusError(404, "no such upload") from None
        except UploadLocked:
            raise TusError(423, "the upload is busy with another request") from None
        except OffsetMismatch as exc:
            raise TusError(
                409, f"Upload-Offset: the upload is at {exc.expected}, not {exc.given}"
            ) from None
        except LengthConflict as exc:
            raise _bad("Upload-Length", str(exc)) from None
        except UploadTooLarge as exc:
            raise TusError(413, str(exc)) from None
        return Transfer(call, info, append)

    def complete(self, transfer: Transfer, failure: BaseException | None) -> Outcome:
        """End a transfer: commit its bytes (or not), and finish the upload if complete.

        ``failure`` is what went wrong while the body was read, if anything:
        a size error gets its 413 (nothing appended); anything else (the
        client went away) keeps what arrived, and is re-raised by the caller.

        Raises:
            TusError: 460 for a checksum mismatch, 413 past a limit (nothing
                appended either way), 507 for a full disk.
        """
        append = transfer.append
        if failure is not None:
            if isinstance(failure, (UploadTooLarge, FileTooLarge)):
                append.abort()
                raise TusError(413, f"{failure}; nothing was appended")
            self.cut_off(transfer)
            if isinstance(failure, UploadLocked):
                raise TusError(423, "the upload was taken over by another request") from None
            if isinstance(failure, TimeoutError):
                raise TusError(
                    408, "no bytes came for too long; HEAD the upload for the bytes kept"
                ) from None
            if isinstance(failure, OSError) and failure.errno in _FULL:
                raise TusError(
                    507, "the store has no space left; HEAD the upload for the bytes kept"
                )
            raise failure
        if not transfer.checksum_matches():
            append.abort()
            raise TusError(460, "Upload-Checksum: the body does not match; nothing was appended")
        try:
            with self._storing():
                info = append.commit(self._expires(), extension_of(transfer.info.metadata))
        except UploadLocked:
            raise TusError(423, "the upload was taken over by another request") from None
        except TusError as exc:
            if exc.status == 507:  # the disk filled before the bytes were committed?
                exc.message = (
                    "the store has no space left; HEAD the upload for the bytes kept,"
                    " and PATCH again later to go on or to store it"
                )
            raise
        status = 201 if transfer.call.method == "POST" else 204
        if info.address is not None:
            return self._finished(transfer.call, info, info.address, status)
        if status == 201:
            return Outcome(self._created(transfer.call, info))
        return Outcome(self.respond(204, self._state_headers(info)))

    def _finish(self, call: TusCall, info: UploadInfo, status: int) -> Outcome:
        """Store an upload complete at its creation (``Upload-Length: 0``)."""
        try:
            with self._storing():
                address = self.partials.finish(info.id, extension_of(info.metadata))
        except UploadLocked:
            raise TusError(423, "the upload is busy with another request") from None
        return self._finished(call, info, address, status)

    def _finished(
        self, call: TusCall, info: UploadInfo, address: HashAddress, status: int
    ) -> Outcome:
        headers = {"Upload-Offset": str(info.offset), **self._address_headers(address, True)}
        if status == 201:
            headers["Location"] = call.location(info.id)
        metadata = decode_metadata(info.metadata)
        return Outcome(self.respond(status, headers), CompletedUpload(info.id, address, metadata))


# -- one request to the endpoint, as steps an extension carries out ------------------


@dataclass(frozen=True)
class Blocking:
    """Step: call ``func(*args)``, blocking (a worker thread on Quart); give back its result.

    ``shielded``: it ends what the request began, so it runs even when the
    request is being cancelled.
    """

    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    shielded: bool = False


@dataclass(frozen=True)
class CallHook:
    """Step: call the app's ``hook(*args)`` (on Quart maybe ``async``); give back its result."""

    hook: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(frozen=True)
class FeedBody:
    """Step: feed the request body to ``transfer.write`` in chunks, to its end; give back None.

    The framework's own body limit (``MAX_CONTENT_LENGTH``) is lifted to
    :data:`NO_BODY_LIMIT` first: the upload's length and the store's
    ``max_size`` bound the body, checked as it arrives.
    """

    transfer: Transfer


#: The body limit a :class:`FeedBody` step sets on the request (none, in effect).
NO_BODY_LIMIT = 1 << 62


#: What :class:`TusExchange` asks the extension to do next.
TusStep = Blocking | CallHook | FeedBody


@dataclass(eq=False)
class TusExchange:
    """One request to the tus endpoint, as steps for the extension to carry out (no I/O).

    The endpoint's rules live here once, for both extensions: the app's
    authorize hook and its 403, the call, the body, the stored file's URL,
    the completion hook at least once (``hook_done`` only after it
    returned) and the mapping of errors to responses. An extension carries
    out each step its own way (``await`` on Quart) and hands back what came
    of it, until the exchange answers with the response::

        step = exchange.first()
        while not isinstance(step, TusResponse):
            try:
                result = carry_out(step)
            except BaseException as exc:
                step = exchange.throw(exc)
            else:
                step = exchange.send(result)

    A step that raised goes back in with :meth:`throw`: a :class:`TusError`
    becomes its response, an exception of the ``passthrough`` types (the
    framework's HTTP errors, such as an ``abort(401)`` in the authorize
    hook) is raised again, any other ``Exception`` becomes a logged 500,
    and anything else (a cancellation) is raised again, after a transfer
    cut short has kept what arrived.

    Args:
        protocol: the app's tus protocol.
        request, upload_id, prefix: the request, as :func:`call_from_request` takes it.
        url_for: the URL of a stored file, from its relpath (``HashFS-URL``).
        authorize, on_complete: the app's authorize and completion hooks, if any.
        passthrough: the framework's exceptions that carry their own answer.
    """

    protocol: TusProtocol
    request: Any
    upload_id: str | None
    prefix: str
    url_for: Callable[[str], str]
    authorize: Callable[[str, str | None], Any] | None
    on_complete: Callable[[CompletedUpload], Any] | None
    passthrough: tuple[type[BaseException], ...] = ()
    _steps: Generator[TusStep, Any, TusResponse] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._steps = self._run()

    def first(self) -> TusStep | TusResponse:
        """The first step."""
        return self.send(None)

    def send(self, result: Any) -> TusStep | TusResponse:
        """Hand back what the last step gave; return the next step, or the response."""
        try:
            return self._steps.send(result)
        except StopIteration as done:
            response: TusResponse = done.value
            return response

    def throw(self, exc: BaseException) -> TusStep | TusResponse:
        """Hand back what the last step raised; return the next step, or the response.

        Raises:
            BaseException: ``exc`` again, when it is not the exchange's to answer.
        """
        try:
            return self._steps.throw(exc)
        except StopIteration as done:
            response: TusResponse = done.value
            return response

    def _run(self) -> Generator[TusStep, Any, TusResponse]:
        protocol = self.protocol
        try:
            call = call_from_request(self.request, self.upload_id, self.prefix)
            action = ACTIONS.get(call.method)
            if action is not None and self.authorize is not None:
                error = refused((yield CallHook(self.authorize, (action, self.upload_id))))
                if error is not None:
                    raise error
            started = yield Blocking(protocol.start, (call,))
            outcome: Outcome = (
                (yield from self._transfer(started)) if isinstance(started, Transfer) else started
            )
            headers = outcome.response.headers
            if RELPATH_HEADER in headers:
                headers[URL_HEADER] = self.url_for(headers[RELPATH_HEADER])
            completed = outcome.completed
            if completed is not None:
                # At least once: until it returns, every request that sees the upload runs it.
                if self.on_complete is not None:
                    try:
                        yield CallHook(self.on_complete, (completed,))
                    except Exception as exc:
                        return protocol.hook_failed(completed, exc)
                yield Blocking(protocol.hook_done, (completed.upload_id,))
            return outcome.response
        except TusError as exc:
            return protocol.error(exc)
        except self.passthrough:
            raise  # the app's own answer (an abort in a hook)
        except Exception as exc:
            return protocol.failed(exc)

    def _transfer(self, transfer: Transfer) -> Generator[TusStep, Any, Outcome]:
        """Feed the body to ``transfer``, then complete it (keeping what arrived)."""
        failure: Exception | None = None
        try:
            yield FeedBody(transfer)
        except Exception as exc:
            failure = exc
        except BaseException:  # cancelled: the client went away; keep what arrived
            yield Blocking(self.protocol.cut_off, (transfer,), shielded=True)
            raise
        outcome: Outcome = yield Blocking(
            self.protocol.complete, (transfer, failure), shielded=True
        )
        return outcome


#: Headers a tus request gives once at most.
_SINGLE_HEADERS = (
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Offset",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Checksum",
    "X-HTTP-Method-Override",
    "Content-Type",
)

#: ...and those whose value never has a comma.
_NO_COMMA = frozenset(_SINGLE_HEADERS) - {"Upload-Metadata", "Content-Type"}

#: What each method does to an upload, as the app's authorize hook is told.
ACTIONS = {"POST": "create", "HEAD": "resume", "PATCH": "resume", "DELETE": "terminate"}


def call_from_request(request: Any, upload_id: str | None, prefix: str) -> TusCall:
    """:func:`parse` a Quart or Flask request to the tus endpoint at ``prefix``.

    Raises:
        TusError: see :func:`parse`.
    """
    headers = request.headers
    for name in _SINGLE_HEADERS:
        values = headers.getlist(name)
        # A WSGI server joins a repeated header with commas, which none of these has.
        if len(values) > 1 or (values and name in _NO_COMMA and "," in values[0]):
            raise _bad(name, "given more than once")
    chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
    return parse(
        request.method,
        upload_id,
        headers.get,
        request.content_length,
        chunked=chunked,
        base=(request.script_root or "").rstrip("/") + prefix,
    )


def refused(allowed: object) -> TusError | None:
    """The 403 for an authorize hook's answer, or ``None`` when it allowed the request."""
    if allowed is True:
        return None
    return TusError(403, "this upload is not allowed")
