"""How a stored file is served over HTTP, written once for Quart and Flask.

Pure functions over request headers and a stored blob's metadata (the
engine opens the blob), plus ``prepare`` to run them in one worker-thread
hop. Stored files never change and
are named by their hash, so the rules are simple and strict (RFC 9110): a
strong ETag of the hash, an immutable year-long cache, preconditions in the
RFC's order (If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since,
then Range with If-Range), single byte ranges, and a suffix range longer
than the file selecting the whole file rather than failing.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timezone
from email.utils import formatdate, parsedate_to_datetime
from typing import Any
from urllib.parse import quote

__all__ = [
    "ACTIVE_TYPES",
    "CONDITIONAL_HEADERS",
    "Prepared",
    "prepare",
    "redirect_plan",
    "CACHE_CONTROL",
    "Plan",
    "content_disposition",
    "content_type",
    "parse_range",
    "plan_response",
    "FileRange",
]

CACHE_CONTROL = "public, max-age=31536000, immutable"
_RANGE_SPEC = re.compile(r"([0-9]{0,18})\s*-\s*([0-9]{0,18})")
#: Bytes read per worker-thread hop when streaming a file.
SERVE_CHUNK = 1 << 20
_NOT_MODIFIED_HEADERS = ("ETag", "Cache-Control", "Last-Modified", "Vary")


#: The request headers :func:`plan_response` reads.
CONDITIONAL_HEADERS = (
    "If-Match",
    "If-Unmodified-Since",
    "If-None-Match",
    "If-Modified-Since",
    "Range",
    "If-Range",
)
#: Bodies up to this size are read whole in the same worker-thread hop.
SMALL_BODY = 64 << 10


@dataclass
class Prepared:
    """A planned answer and its body: bytes in hand, or an open blob to stream."""

    plan: Plan
    body: bytes = b""
    blob: Any = None
    #: What ``observe`` returned for a 304 (see :func:`prepare`).
    witness: Any = None


def prepare(
    engine: Any,
    relpath: str,
    method: str,
    headers: dict[str, str | None],
    download_name: str | None = None,
    offload: tuple[str, str] | None = None,
    verify: bool = False,
    redirect: bool = False,
    head_body: bool = False,
    observe: Callable[[Any], Any] | None = None,
) -> Prepared | None:
    """Open, plan and, for small or empty bodies, read and close: one blocking call.

    With ``redirect`` (an object store), a GET that would get bytes gets a
    307 to a presigned URL instead (see :func:`redirect_plan`). ``headers``
    holds the request's :data:`CONDITIONAL_HEADERS`; ``head_body`` is
    :func:`plan_response`'s. ``None`` when ``relpath`` is not a stored
    content address. The blob is left open only for a body larger than
    :data:`SMALL_BODY`. For a 304, ``observe(blob)`` runs while the blob is
    open and its result is the answer's ``witness``.

    Raises:
        CorruptFile: ``verify`` is on and the bytes no longer hash to the address.
    """
    blob = engine.open_blob(relpath, verify)
    if blob is None:
        return None
    if redirect:
        blob.close()  # nothing read: a HEAD told the size and date
        return Prepared(redirect_plan(engine, method, headers.get, blob, download_name))
    try:
        plan = plan_response(method, headers.get, blob, download_name, offload, head_body)
        if plan.end - plan.start > SMALL_BODY:
            return Prepared(plan, blob=blob)
        body = blob.pread(plan.end - plan.start, plan.start) if plan.has_body else b""
        witness = observe(blob) if observe is not None and plan.status == 304 else None
    except BaseException:
        blob.close()
        raise
    blob.close()
    return Prepared(plan, body, witness=witness)


#: Types a browser runs (script in the bucket's origin): a redirect makes them downloads.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/xsl",
        "application/xslt+xml",
        "application/mathml+xml",
        "text/vtt",
    }
)


def redirect_plan(
    engine: Any,
    method: str,
    header: Callable[[str], str | None],
    served: Any,
    download_name: str | None = None,
) -> Plan:
    """The answer when an object store serves the bytes through a presigned URL.

    Preconditions, HEAD and errors are answered here, with the route's
    headers; a GET that would get bytes gets a 307 to a URL signed with the
    response headers S3 can set (type, disposition, the immutable cache),
    an active type (HTML, SVG, XML) always as a download. The redirect may be
    cached while the URL stays valid. S3 cannot send the CSP and ``nosniff``
    headers.
    """
    plan = plan_response(method, header, served, download_name)
    if method != "GET" or plan.status not in (200, 206):
        plan.start = plan.end = 0
        return plan
    media_type = plan.headers["Content-Type"]
    disposition = plan.headers.get("Content-Disposition")
    if disposition is None and media_type.partition(";")[0].strip() in ACTIVE_TYPES:
        disposition = content_disposition(served.id + served.extension)
    url, max_age = engine.presign(served.relpath, media_type, disposition, CACHE_CONTROL)
    return Plan(
        307,
        {
            "Location": url,
            "Cache-Control": f"private, max-age={max_age}",
        },
    )


class FileRange:
    """A WSGI body: bytes ``[start, end)`` of an open blob, closed by ``close()``.

    The server calls ``close()`` however the response ends, even before the
    first byte, which a generator's ``finally`` would miss.
    """

    def __init__(self, blob: Any, start: int, end: int) -> None:
        self._blob = blob
        self._start = start
        self._end = end

    def __iter__(self) -> Iterator[bytes]:
        position = self._start
        while position < self._end:
            data = self._blob.pread(min(SERVE_CHUNK, self._end - position), position)
            if not data:
                return
            position += len(data)
            yield data

    def close(self) -> None:
        self._blob.close()


def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """Parse a ``Range`` header into half-open byte ranges within ``size``.

    Returns ``None`` when the header is absent or invalid (serve the whole
    file) and ``[]`` when it is valid but no range is satisfiable (416).
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    ranges: list[tuple[int, int]] = []
    for part in spec.split(","):
        match = _RANGE_SPEC.fullmatch(part.strip())
        if match is None:
            return None
        first, last = match.group(1), match.group(2)
        if not first:
            if not last.isdigit():
                return None
            suffix = int(last)
            if suffix > 0 and size > 0:
                ranges.append((max(0, size - suffix), size))
            continue
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        stop = size if not last else int(last) + 1
        if last and stop <= start:
            return None
        if start < size:
            ranges.append((start, min(stop, size)))
    return ranges


def content_disposition(name: str) -> str:
    """Return an ``attachment`` header value for download ``name`` (RFC 6266, RFC 8187)."""
    name = os.path.basename(name.replace("\\", "/"))[:255] or "download"
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%;' else "_" for c in name)
    value = f'attachment; filename="{fallback}"'
    if fallback != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


@dataclass
class Plan:
    """What to answer: a status, headers and the body's byte range ``[start, end)``."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    start: int = 0
    end: int = 0

    @property
    def has_body(self) -> bool:
        return self.end > self.start


def _etags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _weak_match(tags: list[str], etag: str) -> bool:
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


def _date(header: str | None) -> float | None:
    if not header:
        return None
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # RFC 850 and asctime dates are GMT (RFC 9110 5.6.7)
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def plan_response(
    method: str,
    header: Callable[[str], str | None],
    served: Any,
    download_name: str | None = None,
    offload: tuple[str, str] | None = None,
    head_body: bool = False,
) -> Plan:
    """Decide the answer to ``method`` on ``served``; ``header(name)`` reads a request header.

    With ``offload`` (a header name and value, e.g. ``X-Accel-Redirect``), a
    200 or 206 becomes a 200 with that header and no body: the front server
    sends the bytes and answers ranges itself.

    A HEAD gets a GET's headers (Range is for GET only). Its body is empty
    unless ``head_body``: then it is the bytes a GET would send, for stacks
    where the server drops a HEAD's body and the framework trusts the body
    over the headers. ASGI is one: Hypercorn and Uvicorn drop it, and
    Quart's test client rebuilds the response, Content-Length included, from
    the body it received. Werkzeug drops the body of a HEAD itself and keeps
    the headers, so WSGI needs no body.
    """
    etag = f'"{served.id}"'
    last_modified = int(served.mtime)
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "Last-Modified": formatdate(last_modified, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Type": content_type(served.extension),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    }
    if download_name:
        headers["Content-Disposition"] = content_disposition(download_name)
    safe = method in ("GET", "HEAD")

    if_match = header("If-Match")
    if if_match is not None:
        tags = _etags(if_match)
        if "*" not in tags and etag not in tags:  # strong comparison
            return Plan(412, _short(headers))
    else:
        since = _date(header("If-Unmodified-Since"))
        if since is not None and last_modified > since:
            return Plan(412, _short(headers))

    if_none_match = header("If-None-Match")
    if if_none_match is not None:
        if _weak_match(_etags(if_none_match), etag):
            return Plan(304 if safe else 412, _short(headers))
    elif safe:
        since = _date(header("If-Modified-Since"))
        if since is not None and last_modified <= since:
            return Plan(304, _short(headers))

    size = served.size
    if offload is not None:
        headers[offload[0]] = offload[1]
        return Plan(200, headers)
    ranges = parse_range(header("Range"), size) if method == "GET" else None
    if ranges is not None and not _if_range_holds(header("If-Range"), etag, last_modified):
        ranges = None
    if ranges == []:
        headers["Content-Range"] = f"bytes */{size}"
        headers["Content-Length"] = "0"
        return Plan(416, headers)
    if ranges is not None and len(ranges) == 1:
        start, end = ranges[0]
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        headers["Content-Length"] = str(end - start)
        return Plan(206, headers, start, end)
    headers["Content-Length"] = str(size)
    return Plan(200, headers, 0, size if method != "HEAD" or head_body else 0)


def _if_range_holds(value: str | None, etag: str, last_modified: int) -> bool:
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag  # strong comparison; a weak tag never matches
    date = _date(value)
    return date is not None and int(date) == last_modified


def _short(headers: dict[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in _NOT_MODIFIED_HEADERS if name in headers}


#: Media types outside ``text/*`` that are text, besides ``+xml`` and ``+json`` ones.
_TEXTUAL = frozenset(
    {
        "application/ecmascript",
        "application/javascript",
        "application/json",
        "application/sql",
        "application/x-javascript",
        "application/xml",
        "application/xml-dtd",
    }
)


def content_type(extension: str) -> str:
    """Return the Content-Type for a stored extension (may read the system's types once).

    Textual types (``text/*``, JSON, JavaScript, XML, SVG...) say
    ``charset=utf-8``, as Werkzeug's ``send_file`` does, so a browser does
    not guess another encoding.
    """
    if not extension:
        return "application/octet-stream"
    guessed, _ = mimetypes.guess_type("file" + extension, strict=False)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in _TEXTUAL or guessed.endswith(("+xml", "+json")):
        return f"{guessed}; charset=utf-8"
    return guessed
