"""What both web extensions share: HTTP errors and multipart upload parsing.

Framework-free (Werkzeug only, which Quart and Flask both bring). The
parser is sans-IO: the Quart and Flask extensions feed it body chunks from
their own request and stream each file part into their own store.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    LengthRequired,
    RequestEntityTooLarge,
)
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import (
    Data,
    Epilogue,
    Field,
    File,
    MultipartDecoder,
    NeedData,
)

from ._address import HashAddress
from ._engine import BlobWriter, Engine
from ._exceptions import FileTooLarge, HashFSError, InvalidExtension
from ._layout import extension_from_filename

__all__ = [
    "BadExtension",
    "BodyTooLarge",
    "ChunkedBodyUnsupported",
    "FormTooLarge",
    "InsufficientStorage",
    "MalformedUpload",
    "MultipartParser",
    "PartData",
    "PartStart",
    "StoredUpload",
    "UploadSink",
    "Uploads",
    "extension_from_filename",
    "web_error",
    "web_errors",
]


logger = logging.getLogger("async_hashfs")
#: Disk errors that mean "no space here" rather than "broken".
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _describe(exc: HTTPException, message: str) -> None:
    # HTTPException.__init__ would call the store error's __init__ without its
    # arguments through the MRO, so set what it sets by hand.
    exc.args = (message,)
    exc.description = message
    exc.response = None


class BodyTooLarge(RequestEntityTooLarge, FileTooLarge):
    """413: the request body or an uploaded file is larger than allowed; nothing was stored."""

    def __init__(self, limit: int, what: str = "request body") -> None:
        FileTooLarge.__init__(self, limit)
        _describe(
            self, f"The {what} is larger than the limit of {limit} bytes; nothing was stored."
        )


class BadExtension(BadRequest, InvalidExtension):
    """400: the extension given for an upload is not a safe token."""

    def __init__(self, extension: object) -> None:
        InvalidExtension.__init__(self, extension)
        _describe(self, str(self.args[0]))


class MalformedUpload(BadRequest, HashFSError):
    """400: the multipart/form-data body cannot be parsed; nothing was stored."""

    def __init__(self, reason: str) -> None:
        BadRequest.__init__(
            self, f"Malformed multipart/form-data body: {reason}; nothing was stored."
        )


class FormTooLarge(RequestEntityTooLarge, HashFSError):
    """413: a multipart form has too many parts, or too large headers or text fields."""

    def __init__(self, reason: str) -> None:
        RequestEntityTooLarge.__init__(self, f"{reason}; nothing was stored.")


class InsufficientStorage(HTTPException, OSError):
    """507: the disk (or the user's quota) is full; nothing was stored.

    Also an ``OSError`` with the original ``errno``, so code that caught the
    disk error before keeps catching it.
    """

    code = 507
    description = "The store has no space left for this upload; nothing was stored."

    def __init__(self, error: OSError) -> None:
        reason = error.strerror or os.strerror(error.errno or errno.ENOSPC)
        _describe(
            self, f"The store has no space left for this upload ({reason}); nothing was stored."
        )
        self.errno = error.errno
        self.strerror = error.strerror
        self.filename = error.filename


class ChunkedBodyUnsupported(LengthRequired, HashFSError):
    """411: the WSGI server passed a chunked body without terminating the input stream."""

    def __init__(self) -> None:
        LengthRequired.__init__(
            self,
            "This server cannot read a chunked request body (it does not set "
            "wsgi.input_terminated); send a Content-Length header.",
        )


@contextmanager
def web_errors() -> Iterator[None]:
    """Re-raise store errors raised inside as their HTTP errors (413, 400, 507)."""
    try:
        yield
    except Exception as exc:
        translated = web_error(exc)
        if translated is exc:
            raise
        raise translated from exc


def web_error(exc: Exception) -> Exception:
    """Return the HTTP error a store error becomes at the web edge (or ``exc`` itself)."""
    if isinstance(exc, FileTooLarge) and not isinstance(exc, RequestEntityTooLarge):
        return BodyTooLarge(exc.max_size, "uploaded file")
    if isinstance(exc, InvalidExtension) and not isinstance(exc, BadRequest):
        return BadExtension(exc.extension)
    if isinstance(exc, OSError) and exc.errno in _FULL and not isinstance(exc, HTTPException):
        logger.warning("upload refused, the store is full: %s", exc)
        return InsufficientStorage(exc)
    return exc


@dataclass(frozen=True)
class StoredUpload:
    """One file part of a multipart upload, stored."""

    name: str
    address: HashAddress
    filename: str
    content_type: str | None
    size: int


@dataclass
class Uploads:
    """What ``put_uploads()`` returns: the stored files and the text fields."""

    files: MultiDict[str, StoredUpload] = field(default_factory=MultiDict)
    form: MultiDict[str, str] = field(default_factory=MultiDict)


@dataclass(frozen=True)
class PartStart:
    """A part begins; ``filename`` is ``None`` for a text field."""

    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True)
class PartData:
    """Bytes of the current part; ``last`` marks its end."""

    data: bytes
    last: bool


_SLICE = 64 << 10


class MultipartParser:
    """Turns a multipart/form-data body, fed in chunks, into part events.

    Wraps Werkzeug's sans-IO ``MultipartDecoder``. Never feeds it a chunk that
    ends inside a possible boundary, which works around a Werkzeug bug that
    can add a stray ``\\r`` to the last part when a chunk ends there.

    Raises:
        MalformedUpload: not multipart/form-data, no boundary, or a body
            that breaks the format or ends early.
        FormTooLarge: more parts, header or text field bytes than allowed.
    """

    def __init__(
        self,
        content_type: str | None,
        *,
        max_form_memory_size: int | None = 500_000,
        max_parts: int | None = 1000,
    ) -> None:
        mimetype, options = parse_options_header(content_type or "")
        if mimetype != "multipart/form-data":
            raise MalformedUpload(f"expected Content-Type multipart/form-data, got {mimetype!r}")
        boundary = options.get("boundary", "")
        if not 1 <= len(boundary) <= 200:
            raise MalformedUpload("the Content-Type header has no valid boundary")
        try:
            encoded = boundary.encode("latin-1")
        except UnicodeEncodeError:
            raise MalformedUpload("the boundary is not latin-1 text") from None
        header_limit = None if max_form_memory_size is None else max(max_form_memory_size, _SLICE)
        self._decoder = MultipartDecoder(encoded, header_limit, max_parts=max_parts)
        self._max_parts = max_parts
        self._header_limit = header_limit
        self._parts = 0
        self._holdback = len(encoded) + 8
        self._carry = b""
        self._field_limit = max_form_memory_size
        self._field_bytes = 0
        self._in_field = False
        self.complete = False

    def feed(self, chunk: bytes) -> list[PartStart | PartData]:
        """Take the next chunk of the body and return the events it completes."""
        data = self._carry + chunk if self._carry else chunk
        cut = len(data)
        window = data[-self._holdback :]
        newline = max(window.rfind(b"\r"), window.rfind(b"\n"))
        if newline >= 0:
            cut = len(data) - len(window) + newline
        self._carry = data[cut:]
        events: list[PartStart | PartData] = []
        for start in range(0, cut, _SLICE):
            self._receive(data[start : min(cut, start + _SLICE)], events)
        return events

    def close(self) -> list[PartStart | PartData]:
        """Mark the end of the body and return the last events.

        Raises:
            MalformedUpload: the body ended before the closing boundary.
        """
        events: list[PartStart | PartData] = []
        if self._carry:
            self._receive(self._carry, events)
            self._carry = b""
        self._receive(None, events)
        if not self.complete:
            raise MalformedUpload("the body ended before the closing boundary")
        return events

    def _receive(self, data: bytes | None, events: list[PartStart | PartData]) -> None:
        decoder = self._decoder
        try:
            decoder.receive_data(data)
            while not self.complete:
                event = decoder.next_event()
                if isinstance(event, NeedData):
                    return
                if isinstance(event, Epilogue):
                    self.complete = True
                elif isinstance(event, File | Field):
                    events.append(self._start(event))
                elif isinstance(event, Data):
                    if self._in_field:
                        self._count_field(len(event.data))
                    events.append(PartData(event.data, not event.more_data))
        except MalformedUpload:
            raise
        except RequestEntityTooLarge as exc:
            if exc.description != RequestEntityTooLarge.description:
                raise
            # Werkzeug's decoder says no more than that a limit was passed.
            if self._max_parts is not None and self._parts >= self._max_parts:
                raise FormTooLarge(f"The form has more than {self._max_parts} parts") from None
            raise FormTooLarge(
                f"A part's headers are longer than {self._header_limit} bytes"
            ) from None
        except ValueError as exc:  # includes UnicodeDecodeError in part headers
            raise MalformedUpload(str(exc).rstrip(".")) from None

    def _start(self, event: File | Field) -> PartStart:
        if not event.name:
            raise MalformedUpload("a part has no name in its Content-Disposition header")
        self._parts += 1
        self._in_field = not isinstance(event, File)
        content_type = event.headers.get("Content-Type")
        filename = event.filename if isinstance(event, File) else None
        return PartStart(event.name, filename, content_type)

    def _count_field(self, size: int) -> None:
        self._field_bytes += size
        if self._field_limit is not None and self._field_bytes > self._field_limit:
            raise FormTooLarge(f"The form's text fields are larger than {self._field_limit} bytes")


class UploadSink:
    """Stores the file parts of a multipart body fed to it in chunks. Blocks.

    The one implementation of ``put_uploads()``: Flask feeds it the body in
    the request's thread; Quart feeds it batches in a worker thread, so
    parsing, hashing and writing all stay off the event loop. Each file
    part streams into its own :class:`BlobWriter`; text fields are collected.

    A request stores all its files or none: the parts stay in the temp area
    until the body has ended well, and only :meth:`close` commits them. A
    body that fails midway (too large, malformed, cut off, too many parts)
    leaves the store as it found it. Deleting afterwards could not: a
    concurrent put of the same bytes may have been told its file is there.
    Each waiting part holds one open file, so ``max_parts`` bounds them.
    """

    def __init__(self, engine: Engine, parser: MultipartParser) -> None:
        self._engine = engine
        self._parser = parser
        self._part: PartStart | None = None
        self._writer: BlobWriter | None = None
        self._field: list[bytes] = []
        self._written: list[tuple[PartStart, BlobWriter]] = []
        self.uploads = Uploads()

    def feed(self, chunks: Iterable[bytes]) -> None:
        """Parse the next chunks of the body, writing the file parts to temp files."""
        for chunk in chunks:
            for event in self._parser.feed(chunk):
                self._handle(event)

    def close(self) -> Uploads:
        """Finish the body, commit every file part and return what was stored.

        Raises:
            MalformedUpload: the body ended early; nothing is stored.
            OSError: the disk failed while committing. Parts committed before
                the failure stay (each is complete, and may already be shared
                with a concurrent put); the rest are dropped.
        """
        for event in self._parser.close():
            self._handle(event)
        written, self._written = self._written, []
        try:
            while written:
                part, writer = written[0]
                size = writer.size
                assert part.filename is not None
                address = writer.commit(extension_from_filename(part.filename) or "")
                written.pop(0)
                self.uploads.files.add(
                    part.name,
                    StoredUpload(part.name, address, part.filename, part.content_type, size),
                )
        finally:
            for _, writer in written:
                writer.abort()
        return self.uploads

    def abort(self) -> None:
        """Drop every file part written so far: the store is left as it was found."""
        pending = [writer for _, writer in self._written]
        self._written = []
        if self._writer is not None:
            pending.append(self._writer)
            self._writer = None
        for writer in pending:
            writer.abort()

    def _handle(self, event: PartStart | PartData) -> None:
        if isinstance(event, PartStart):
            self._part = event
            self._field = []
            if event.filename:  # an empty filename is a file input left empty
                self._writer = self._engine.writer()
            return
        part = self._part
        assert part is not None
        if part.filename is None:
            self._field.append(event.data)
        elif self._writer is not None:
            self._writer.write(event.data)
        if not event.last:
            return
        if part.filename is None:
            self.uploads.form.add(part.name, b"".join(self._field).decode("utf-8", "replace"))
        elif self._writer is not None:
            self._written.append((part, self._writer))
            self._writer = None
