"""The framework-free HTTP rules for serving stored files."""

from __future__ import annotations

import io
import mimetypes
from email.utils import formatdate

import pytest
from werkzeug.utils import get_content_type

from async_hashfs._engine import StoredBlob
from async_hashfs._http import (
    CACHE_CONTROL,
    content_disposition,
    content_type,
    parse_range,
    plan_response,
)

ID = "ab" * 32
ETAG = f'"{ID}"'
MTIME = 1_700_000_000
LAST_MODIFIED = formatdate(MTIME, usegmt=True)
EARLIER = formatdate(MTIME - 3600, usegmt=True)
LATER = formatdate(MTIME + 3600, usegmt=True)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 1000, None),
        ("", 1000, None),
        ("bytes=0-99", 1000, [(0, 100)]),
        ("bytes=0-0", 1000, [(0, 1)]),
        ("bytes=500-", 1000, [(500, 1000)]),
        ("bytes=900-5000", 1000, [(900, 1000)]),
        ("bytes=-100", 1000, [(900, 1000)]),
        ("bytes=-5000", 1000, [(0, 1000)]),  # longer suffix: the whole file, not 416
        ("bytes=1000-", 1000, []),
        ("bytes=1000-2000", 1000, []),
        ("bytes=-0", 1000, []),
        ("bytes=0-1, 5-6", 1000, [(0, 2), (5, 7)]),
        ("bytes = 0-1", 1000, [(0, 2)]),
        ("BYTES=0-1", 1000, [(0, 2)]),
        ("bytes=5-2", 1000, None),
        ("bytes=a-b", 1000, None),
        ("bytes=-", 1000, None),
        ("bytes=0", 1000, None),
        ("items=0-1", 1000, None),
        ("bytes=", 1000, None),
        ("bytes=-1", 0, []),
    ],
)
def test_parse_range(header: str | None, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        ("../../etc/passwd", 'attachment; filename="passwd"'),
        ("a\\b.txt", 'attachment; filename="b.txt"'),
        (
            'ré"s;%.txt',
            "attachment; filename=\"r__s__.txt\"; filename*=UTF-8''r%C3%A9%22s%3B%25.txt",
        ),
        (
            "line\r\nX-Evil: 1",
            "attachment; filename=\"line__X-Evil: 1\"; filename*=UTF-8''line%0D%0AX-Evil%3A%201",
        ),
        ("", 'attachment; filename="download"'),
    ],
)
def test_content_disposition_is_safely_encoded(name: str, expected: str) -> None:
    value = content_disposition(name)
    assert value == expected
    assert "\r" not in value
    assert "\n" not in value


def served(size: int = 1000, extension: str = ".png") -> StoredBlob:
    return StoredBlob(io.BytesIO(), "rel", ID, extension, size, MTIME + 0.5)  # type: ignore[arg-type]


def plan(method: str = "GET", **headers: str):  # type: ignore[no-untyped-def]
    lookup = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    return plan_response(method, lambda name: lookup.get(name.lower()), served())


def test_plain_get_headers() -> None:
    result = plan()
    assert (result.status, result.start, result.end) == (200, 0, 1000)
    assert result.headers["ETag"] == ETAG
    assert result.headers["Cache-Control"] == CACHE_CONTROL
    assert result.headers["Accept-Ranges"] == "bytes"
    assert result.headers["Content-Length"] == "1000"
    assert result.headers["Content-Type"] == "image/png"
    assert result.headers["X-Content-Type-Options"] == "nosniff"
    assert result.headers["Last-Modified"] == LAST_MODIFIED
    assert "Content-Disposition" not in result.headers


def test_head_has_length_but_no_body() -> None:
    result = plan("HEAD")
    assert result.status == 200
    assert result.headers["Content-Length"] == "1000"
    assert not result.has_body


def test_head_with_body_plans_what_get_sends() -> None:
    get = plan_response("GET", lambda name: None, served())
    head = plan_response("HEAD", lambda name: None, served(), head_body=True)
    assert (head.status, head.headers, head.start, head.end) == (200, get.headers, 0, 1000)
    ranged = plan_response("HEAD", {"Range": "bytes=0-1"}.get, served(), head_body=True)
    assert (ranged.status, ranged.start, ranged.end) == (200, 0, 1000)


@pytest.mark.parametrize(
    ("extension", "textual"),
    [
        (".txt", True),
        (".html", True),
        (".css", True),
        (".csv", True),
        (".md", True),
        (".js", True),
        (".mjs", True),
        (".json", True),
        (".xml", True),
        (".svg", True),
        (".xhtml", True),
        (".webmanifest", True),
        (".png", False),
        (".jpg", False),
        (".pdf", False),
        (".zip", False),
        (".wasm", False),
    ],
)
def test_textual_types_say_utf8(extension: str, textual: bool) -> None:
    guessed = mimetypes.guess_type("file" + extension, strict=False)[0]
    if guessed is None:
        pytest.skip(f"this system has no media type for {extension}")
    expected = f"{guessed}; charset=utf-8" if textual else guessed
    assert content_type(extension) == expected


@pytest.mark.parametrize("extension", [".txt", ".html", ".css", ".js", ".xml", ".svg", ".png"])
def test_content_type_matches_werkzeug_send_file(extension: str) -> None:
    guessed = mimetypes.guess_type("file" + extension, strict=False)[0]
    if guessed is None:
        pytest.skip(f"this system has no media type for {extension}")
    assert content_type(extension) == get_content_type(guessed, "utf-8")


@pytest.mark.parametrize("extension", ["", ".gz", ".no-such-type"])
def test_unknown_types_are_octet_stream(extension: str) -> None:
    assert content_type(extension) == "application/octet-stream"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"If-None-Match": ETAG}, 304),
        ({"If-None-Match": f"W/{ETAG}"}, 304),  # weak comparison
        ({"If-None-Match": f'"other", {ETAG}'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-Modified-Since": LAST_MODIFIED}, 304),
        ({"If-Modified-Since": LATER}, 304),
        ({"If-Modified-Since": EARLIER}, 200),
        ({"If-Modified-Since": "garbage"}, 200),
        # If-None-Match wins over If-Modified-Since, both ways
        ({"If-None-Match": '"other"', "If-Modified-Since": LATER}, 200),
        ({"If-None-Match": ETAG, "If-Modified-Since": EARLIER}, 304),
        ({"If-Match": ETAG}, 200),
        ({"If-Match": "*"}, 200),
        ({"If-Match": '"other"'}, 412),
        ({"If-Match": f"W/{ETAG}"}, 412),  # strong comparison
        ({"If-Unmodified-Since": EARLIER}, 412),
        ({"If-Unmodified-Since": LATER}, 200),
        ({"If-Match": ETAG, "If-Unmodified-Since": EARLIER}, 200),  # If-Match wins
        ({"If-Match": '"other"', "If-None-Match": ETAG}, 412),
    ],
)
def test_preconditions_in_rfc_order(headers: dict[str, str], status: int) -> None:
    assert plan(**headers).status == status


def test_not_modified_keeps_only_validators_and_cache_headers() -> None:
    result = plan(If_None_Match=ETAG)
    assert result.headers == {
        "ETag": ETAG,
        "Cache-Control": CACHE_CONTROL,
        "Last-Modified": LAST_MODIFIED,
    }
    assert not result.has_body


def test_if_none_match_on_unsafe_method_is_412() -> None:
    assert plan("POST", If_None_Match=ETAG).status == 412


@pytest.mark.parametrize(
    ("headers", "status", "span", "content_range"),
    [
        ({"Range": "bytes=0-99"}, 206, (0, 100), "bytes 0-99/1000"),
        ({"Range": "bytes=-5000"}, 206, (0, 1000), "bytes 0-999/1000"),
        ({"Range": "bytes=990-"}, 206, (990, 1000), "bytes 990-999/1000"),
        ({"Range": "bytes=1000-"}, 416, (0, 0), "bytes */1000"),
        ({"Range": "bytes=0-1,5-6"}, 200, (0, 1000), None),  # multi-range: whole file
        ({"Range": "bytes=x"}, 200, (0, 1000), None),
        ({"Range": "bytes=0-99", "If-Range": ETAG}, 206, (0, 100), "bytes 0-99/1000"),
        ({"Range": "bytes=0-99", "If-Range": '"other"'}, 200, (0, 1000), None),
        ({"Range": "bytes=0-99", "If-Range": f"W/{ETAG}"}, 200, (0, 1000), None),
        ({"Range": "bytes=0-99", "If-Range": LAST_MODIFIED}, 206, (0, 100), "bytes 0-99/1000"),
        ({"Range": "bytes=0-99", "If-Range": EARLIER}, 200, (0, 1000), None),
    ],
)
def test_ranges(
    headers: dict[str, str], status: int, span: tuple[int, int], content_range: str | None
) -> None:
    result = plan(**{k.replace("-", "_"): v for k, v in headers.items()})
    assert result.status == status
    assert (result.start, result.end) == span
    assert result.headers.get("Content-Range") == content_range
    assert result.headers["Content-Length"] == str(span[1] - span[0])


def test_range_is_ignored_on_head() -> None:
    assert plan("HEAD", Range="bytes=0-1").status == 200


def test_download_name_and_offload() -> None:
    result = plan_response(
        "GET", lambda name: None, served(), "photo.png", ("X-Accel-Redirect", "/_hashfs/rel")
    )
    assert result.status == 200
    assert result.headers["X-Accel-Redirect"] == "/_hashfs/rel"
    assert result.headers["Content-Disposition"] == 'attachment; filename="photo.png"'
    assert not result.has_body
    assert "Content-Length" not in result.headers


@pytest.mark.parametrize(
    "header", ["bytes=\u00b2-", "bytes=" + "1" * 5000 + "-", "bytes=0-\u00b9"]
)
def test_range_with_odd_digits_is_ignored(header: str) -> None:
    assert parse_range(header, 1000) is None


def test_rfc850_and_asctime_dates_are_gmt() -> None:
    from async_hashfs._http import _date

    imf = _date("Sun, 06 Nov 1994 08:49:37 GMT")
    assert _date("Sunday, 06-Nov-94 08:49:37 GMT") == imf
    assert _date("Sun Nov  6 08:49:37 1994") == imf
