"""What both web extensions share: HTTP errors and multipart upload parsing.

Framework-free (Werkzeug, which Quart and Flask both bring, and
python-multipart). The parser is sans-IO: the Quart and Flask extensions feed
it body chunks from their own request and stream each file part into their
own store.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

try:
    import python_multipart
    import python_multipart.exceptions
except ModuleNotFoundError as exc:  # installed without the extra that brings it
    raise ModuleNotFoundError(
        "uploads need python-multipart, which is not installed: "
        'pip install "async-hashfs[quart]" (or "async-hashfs[flask]")',
        name="python_multipart",
    ) from exc
from werkzeug.datastructures import Headers, MultiDict
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    LengthRequired,
    RequestEntityTooLarge,
)
from werkzeug.http import parse_options_header

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


#: The least header room a part gets, whatever ``max_form_memory_size`` says.
_MIN_HEADER_ROOM = 64 << 10
#: Headers one part may have (Content-Disposition, Content-Type and a few more).
_MAX_HEADERS = 64


class MultipartParser:
    """Turns a multipart/form-data body, fed in chunks, into part events.

    Wraps python-multipart's streaming parser, which finds boundaries with
    ``bytes.find`` (Werkzeug's sans-IO decoder, with regular expressions, was
    the bottleneck of a large upload). Part headers are read the way
    Werkzeug reads them (UTF-8, ``Content-Disposition`` through
    ``parse_options_header``), so filenames arrive as the client sent them.
    A preamble before the first boundary is skipped, as RFC 2046 asks.

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
        self._header_limit = (
            None if max_form_memory_size is None else max(max_form_memory_size, _MIN_HEADER_ROOM)
        )
        self._parser = python_multipart.MultipartParser(
            encoded,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
            max_header_count=_MAX_HEADERS,
            max_header_size=self._header_limit or (1 << 62),
        )
        self._delimiter = b"--" + encoded
        #: A header block's end followed by a boundary with no line break of its own.
        self._bare = b"\r\n\r\n" + self._delimiter
        self._carry = b""
        self._headers_ended = False
        self._preamble: bytes | None = b""  # ``None`` once the first boundary was found
        self._max_parts = max_parts
        self._parts = 0
        self._header_bytes = 0
        self._name = bytearray()
        self._value = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._field_limit = max_form_memory_size
        self._field_bytes = 0
        self._in_field = False
        self._events: list[PartStart | PartData] = []
        self.complete = False

    def feed(self, chunk: bytes) -> list[PartStart | PartData]:
        """Take the next chunk of the body and return the events it completes."""
        if self._preamble is not None:
            chunk = self._skip_preamble(chunk)
            if not chunk:
                return []
        data = self._carry + chunk if self._carry else chunk
        keep = self._straddling(data)
        if keep:
            self._carry = data[-keep:]
            data = data[:-keep]
        else:
            self._carry = b""
        self._write_bare(data)
        events, self._events = self._events, []
        return events

    def close(self) -> list[PartStart | PartData]:
        """Mark the end of the body and return the last events.

        Raises:
            MalformedUpload: the body ended before the closing boundary.
        """
        if self._carry:
            self._write_bare(self._carry)
            self._carry = b""
        if not self.complete:
            raise MalformedUpload("the body ended before the closing boundary")
        events, self._events = self._events, []
        return events

    def _straddling(self, data: bytes) -> int:
        """How many bytes at the end of ``data`` may begin a bare boundary; held back."""
        bare = self._bare
        at = data.find(b"\r", max(0, len(data) - len(bare) + 1))
        while at >= 0:
            if bare.startswith(data[at:]):
                return len(data) - at
            at = data.find(b"\r", at + 1)
        return 0

    def _write_bare(self, data: bytes) -> None:
        # Werkzeug's encode_multipart (Flask's and Quart's test clients) writes an
        # empty file part with no line break before the next boundary; Werkzeug's
        # parser takes it, python-multipart would read the boundary as data. Where
        # a part's headers end right before a boundary, give it its line break.
        bare = self._bare
        done = 0
        while (found := data.find(bare, done)) >= 0:
            self._write(data[done : found + 2])
            self._headers_ended = False
            self._write(data[found + 2 : found + 4])
            if self._headers_ended:
                self._write(b"\r\n")
            done = found + 4
        self._write(data[done:] if done else data)

    def _skip_preamble(self, chunk: bytes) -> bytes:
        # The first boundary starts the body or a line; what comes before it is dropped.
        assert self._preamble is not None
        data = self._preamble + chunk
        delimiter = self._delimiter
        start = 0
        while (found := data.find(delimiter, start)) >= 0:
            if found == 0 or data[found - 1] in b"\r\n":
                self._preamble = None
                return data[found:]
            start = found + 1
        self._preamble = data[-len(delimiter) :]  # a boundary may straddle the chunks
        return b""

    def _write(self, data: bytes) -> None:
        if self.complete:
            return  # the epilogue: ignored
        try:
            self._parser.write(data)
        except python_multipart.exceptions.MultipartParseError as exc:
            reason = str(exc).split(" (", 1)[0].rstrip(".")
            if reason.startswith("Maximum header"):
                raise FormTooLarge(f"A part's headers are larger than allowed: {reason}") from None
            raise MalformedUpload(reason) from None

    # -- python-multipart's callbacks --------------------------------------------

    def _on_part_begin(self) -> None:
        if self._max_parts is not None and self._parts >= self._max_parts:
            raise FormTooLarge(f"The form has more than {self._max_parts} parts")
        self._parts += 1
        self._headers = []
        self._header_bytes = 0

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_limit is not None and self._header_bytes > self._header_limit:
            raise FormTooLarge(f"A part's headers are longer than {self._header_limit} bytes")

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers.append((bytes(self._name), bytes(self._value)))
        self._name.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        try:
            headers = Headers(
                [
                    (name.decode().strip(" \t"), value.decode().strip(" \t"))
                    for name, value in self._headers
                ]
            )
        except UnicodeDecodeError:
            raise MalformedUpload("a part's headers are not UTF-8") from None
        disposition = headers.get("Content-Disposition")
        if disposition is None:
            raise MalformedUpload("a part has no Content-Disposition header")
        _, extra = parse_options_header(disposition)
        name = extra.get("name")
        if not name:
            raise MalformedUpload("a part has no name in its Content-Disposition header")
        filename = extra.get("filename")
        self._in_field = filename is None
        self._headers_ended = True
        self._events.append(PartStart(name, filename, headers.get("Content-Type")))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        piece = data if start == 0 and end == len(data) else data[start:end]
        if self._in_field:
            self._count_field(len(piece))
        self._events.append(PartData(piece, False))

    def _on_part_end(self) -> None:
        self._events.append(PartData(b"", True))

    def _on_end(self) -> None:
        self.complete = True

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
        self._unwritten: list[bytes] = []  # of the current file part
        self.uploads = Uploads()

    def feed(self, chunks: Iterable[bytes]) -> None:
        """Parse the next chunks of the body, writing the file parts to temp files."""
        for chunk in chunks:
            for event in self._parser.feed(chunk):
                self._handle(event)
        self._flush()

    def _flush(self) -> None:
        # A file part's bytes go to its writer once per batch, joined (see writelines).
        if self._unwritten:
            assert self._writer is not None
            unwritten, self._unwritten = self._unwritten, []
            self._writer.writelines(unwritten)

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
        self._flush()
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
        self._unwritten = []
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
                self._writer = self._engine.writer(overlap=False)  # a request body
            return
        part = self._part
        assert part is not None
        if part.filename is None:
            self._field.append(event.data)
        elif self._writer is not None and event.data:
            self._unwritten.append(event.data)
        if not event.last:
            return
        if part.filename is None:
            self.uploads.form.add(part.name, b"".join(self._field).decode("utf-8", "replace"))
        elif self._writer is not None:
            self._flush()
            self._written.append((part, self._writer))
            self._writer = None
