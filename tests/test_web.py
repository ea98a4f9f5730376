"""A multipart upload stores all its files or none, on Quart and on Flask.

The file parts of a request wait in the temp area until its body has ended
well; a request that fails anywhere leaves the store exactly as it found it,
and never removes a file another put stored or was told is there.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from flask import Flask
from flask import request as flask_request
from quart import Quart, request
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from async_hashfs import QuartHashFS
from async_hashfs._engine import Engine
from async_hashfs._layout import Layout
from async_hashfs._web import (
    FormTooLarge,
    InsufficientStorage,
    MalformedUpload,
    MultipartParser,
    PartStart,
    UploadSink,
)
from flask_shim import FlaskHashFS, SyncHashFS

from .conftest import stored_files, temp_files
from .test_flask import chunked

BOUNDARY = "hashfs-test-boundary"
HEADERS = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def part(name: str, data: bytes, filename: str | None = "f.bin") -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"


def form(*parts: bytes, end: bool = True) -> bytes:
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if end else b"")


def files(count: int, size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(count)]


NAMELESS = f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nxx\r\n".encode()

# (body, config, status, text in the message): each body stores some good parts first.
FAILURES: dict[str, tuple[Callable[[], bytes], dict[str, Any], int, str]] = {
    "over MAX_CONTENT_LENGTH": (
        lambda: form(*(part(f"f{i}", d) for i, d in enumerate(files(10, 2 << 20)))),
        {"MAX_CONTENT_LENGTH": 16 << 20},
        413,
        "nothing was stored",
    ),
    "over HASHFS_MAX_SIZE": (
        lambda: form(
            *(part(f"f{i}", d) for i, d in enumerate([*files(5, 1 << 20), b"x" * 4_000_000]))
        ),
        {"HASHFS_MAX_SIZE": 3_000_000},
        413,
        "nothing was stored",
    ),
    "nameless part": (
        lambda: form(*(part(f"f{i}", d) for i, d in enumerate(files(4, 100_000))), NAMELESS),
        {},
        400,
        "nothing was stored",
    ),
    "cut off": (
        lambda: form(*(part(f"f{i}", d) for i, d in enumerate(files(3, 100_000))), end=False),
        {},
        400,
        "nothing was stored",
    ),
    "too many parts": (
        lambda: form(*(part(f"f{i}", str(i).encode()) for i in range(1_001))),
        {},
        413,
        "more than 1000 parts; nothing was stored",
    ),
}


def quart_app(root: Path, config: dict[str, Any]) -> Quart:
    app = Quart(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), **config)
    fs = QuartHashFS(app)

    @app.post("/uploads")
    async def uploads() -> Any:
        stored = await fs.put_uploads()
        return {n: [u.address.id, u.address.is_duplicate] for n, u in stored.files.items()}

    @app.post("/raw")
    async def raw() -> Any:
        return {"id": (await fs.put(request.body)).id}

    return app


def flask_app(root: Path, config: dict[str, Any]) -> Flask:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), **config)
    fs = FlaskHashFS(app)

    @app.post("/uploads")
    def uploads() -> Any:
        stored = fs.put_uploads()
        return {n: [u.address.id, u.address.is_duplicate] for n, u in stored.files.items()}

    @app.post("/raw")
    def raw() -> Any:
        return {"id": fs.put(flask_request.stream).id}

    return app


def stored_before(root: Path) -> bytes:
    """A file stored before the request, whose bytes the failing request also sends."""
    data = b"stored before the request\n"
    SyncHashFS(root).put(data, "bin")
    return data


@pytest.mark.parametrize("case", list(FAILURES))
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_quart_failed_upload_stores_nothing(root: Path, case: str) -> None:
    make_body, config, status, message = FAILURES[case]
    existing = await anyio.to_thread.run_sync(stored_before, root)
    before = stored_files(root)
    body = part("old", existing) + make_body()
    app = await anyio.to_thread.run_sync(quart_app, root, config)
    # Chunked, as a browser streams it: no Content-Length to refuse the body up front.
    async with app.test_client().request("/uploads", method="POST", headers=HEADERS) as conn:
        for start in range(0, len(body), 64 << 10):
            await conn.send(body[start : start + (64 << 10)])
        await conn.send_complete()
    response = await conn.as_response()
    assert response.status_code == status
    assert message in (await response.get_data(as_text=True))
    assert stored_files(root) == before
    assert temp_files(root) == []


@pytest.mark.parametrize("case", list(FAILURES))
def test_flask_failed_upload_stores_nothing(root: Path, case: str) -> None:
    make_body, config, status, message = FAILURES[case]
    existing = stored_before(root)
    before = stored_files(root)
    body = part("old", existing) + make_body()
    client = flask_app(root, config).test_client()
    response = chunked(client, "/uploads", body, headers=HEADERS)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert stored_files(root) == before
    assert temp_files(root) == []


def test_flask_successful_upload_stores_every_part(root: Path) -> None:
    existing = stored_before(root)
    data = files(3, 50_000)
    body = form(part("old", existing), *(part(f"f{i}", d) for i, d in enumerate(data)))
    response = flask_app(root, {}).test_client().post("/uploads", data=body, headers=HEADERS)
    assert response.status_code == 200
    result = response.get_json()
    assert result["old"] == [hashlib.sha256(existing).hexdigest(), True]
    for i, d in enumerate(data):
        assert result[f"f{i}"] == [hashlib.sha256(d).hexdigest(), False]
    assert len(stored_files(root)) == 4
    assert temp_files(root) == []


def sink(root: Path) -> tuple[UploadSink, Engine]:
    engine = Engine(Layout(str(root), 4, 1, "sha256"))
    parser = MultipartParser(HEADERS["Content-Type"])
    return UploadSink(engine, parser), engine


def test_a_put_racing_a_failing_request_keeps_its_file(root: Path) -> None:
    """A concurrent put of bytes the failing request also sent is told the truth and keeps them."""
    upload, _ = sink(root)
    shared = os.urandom(300_000)
    upload.feed([part("a", shared), part("b", os.urandom(1000))])
    # Meanwhile another request stores the same bytes: it is the first to store them.
    address = SyncHashFS(root).put(shared, "bin")
    assert not address.is_duplicate
    with pytest.raises(MalformedUpload):  # the first request then fails ...
        upload.feed([NAMELESS])
    upload.abort()  # ... and is cleaned up as the extensions do
    assert stored_files(root) == [address.relpath]
    assert SyncHashFS(root).verify(address.id)
    assert temp_files(root) == []


def test_parts_are_visible_only_after_the_body_ends(root: Path) -> None:
    upload, _ = sink(root)
    data = os.urandom(100_000)
    upload.feed([form(part("a", data), part("b", b"second"))])
    assert stored_files(root) == []
    uploads = upload.close()
    assert [u.address.id for u in uploads.files.values()] == [
        hashlib.sha256(data).hexdigest(),
        hashlib.sha256(b"second").hexdigest(),
    ]
    assert len(stored_files(root)) == 2


def test_a_disk_error_while_committing_drops_the_rest(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload, _ = sink(root)
    upload.feed([form(part("a", b"first"), part("b", b"second"), part("c", b"third"))])
    real_link = os.link
    calls: list[Any] = []

    def failing_link(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        if len(calls) == 2:
            raise OSError(5, "injected I/O error")
        real_link(*args, **kwargs)

    monkeypatch.setattr(os, "link", failing_link)
    with pytest.raises(OSError, match="injected"):
        upload.close()
    upload.abort()
    # The first part was complete and may be shared already: it stays; the rest is gone.
    first = SyncHashFS(root).get(hashlib.sha256(b"first").hexdigest())
    assert first is not None
    assert stored_files(root) == [first.relpath]
    assert temp_files(root) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real full disk (needs root, as CI has)."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder / "store"
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


FULL_DISK = [
    ("/raw", os.urandom(3 << 20), {}),
    ("/uploads", form(part("a", b"fits"), part("b", os.urandom(3 << 20))), HEADERS),
]


@pytest.mark.parametrize(("path", "body", "headers"), FULL_DISK, ids=["raw", "multipart"])
def test_flask_full_disk_is_507(small_disk: Path, path: str, body: bytes, headers: Any) -> None:
    client = flask_app(small_disk, {"MAX_CONTENT_LENGTH": 1 << 30}).test_client()
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 507
    assert "no space left" in response.get_data(as_text=True)
    assert stored_files(small_disk) == []
    assert temp_files(small_disk) == []


@pytest.mark.parametrize(("path", "body", "headers"), FULL_DISK, ids=["raw", "multipart"])
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_quart_full_disk_is_507(
    small_disk: Path, path: str, body: bytes, headers: Any
) -> None:
    app = await anyio.to_thread.run_sync(quart_app, small_disk, {"MAX_CONTENT_LENGTH": 1 << 30})
    response = await app.test_client().post(path, data=body, headers=headers)
    assert response.status_code == 507
    assert "no space left" in (await response.get_data(as_text=True))
    assert stored_files(small_disk) == []
    assert temp_files(small_disk) == []


def test_a_full_quota_is_507_and_still_an_oserror(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = flask_app(root, {})
    real_write = os.write

    def over_quota(fd: int, data: Any) -> int:
        if len(data) > 100:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", over_quota)
    response = app.test_client().post("/raw", data=b"x" * 1000)
    assert response.status_code == 507
    assert os.strerror(errno.EDQUOT) in response.get_data(as_text=True)
    assert issubclass(InsufficientStorage, OSError)
    assert stored_files(root) == []


def parse(body: bytes, split: int | None = None, **options: Any) -> list[tuple[Any, ...]]:
    """Feed ``body`` to a parser (cut at ``split``, else whole); return (name, filename, bytes)."""
    parser = MultipartParser(HEADERS["Content-Type"], **options)
    pieces = [body] if split is None else [body[:split], body[split:]]
    parts: list[list[Any]] = []
    for event in [e for piece in pieces for e in parser.feed(piece)] + parser.close():
        if isinstance(event, PartStart):
            parts.append([event.name, event.filename, event.content_type, b""])
        else:
            parts[-1][3] += event.data
    return [tuple(p) for p in parts]


TRICKY = [
    # Bytes that look like a boundary, a CR or LF at every edge, an empty text field.
    part("a", b"\r\n--" + BOUNDARY.encode()[:-1] + b"\r\n\r"),
    part("b", b"", None),
    part("c", b"\r\n\r\n"),
    part("d", "naïve.txt".encode(), "naïve ☀.txt"),
]


@pytest.mark.parametrize("options", [{}, {"max_form_memory_size": None, "max_parts": None}])
def test_every_split_of_a_body_gives_the_same_bytes(options: dict[str, Any]) -> None:
    body = b"preamble, ignored\r\n" + form(*TRICKY) + b"epilogue, ignored"
    expected = [
        ("a", "f.bin", None, b"\r\n--" + BOUNDARY.encode()[:-1] + b"\r\n\r"),
        ("b", None, None, b""),
        ("c", "f.bin", None, b"\r\n\r\n"),
        ("d", "naïve ☀.txt", None, "naïve.txt".encode()),
    ]
    assert parse(body, **options) == expected
    for split in range(len(body) + 1):
        assert parse(body, split, **options) == expected, split


def test_an_empty_file_part_without_its_line_break_is_read_as_werkzeug_writes_it() -> None:
    """Werkzeug's encode_multipart (the test clients') writes no CRLF after an empty file."""
    _, body = encode_multipart(
        {"empty": FileStorage(io.BytesIO(b""), "e.bin"), "title": "x"}, BOUNDARY
    )
    for split in range(len(body) + 1):
        assert parse(body, split) == [
            ("empty", "e.bin", "application/octet-stream", b""),
            ("title", None, None, b"x"),
        ], split


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (form(part("a", b"x"), end=False), MalformedUpload, "ended before the closing boundary"),
        (b"--" + BOUNDARY.encode() + b"\r\nNo-Colon\r\n\r\nx\r\n", MalformedUpload, "Malformed"),
        (
            f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
            MalformedUpload,
            "no Content-Disposition",
        ),
        (
            f"--{BOUNDARY}\r\nX-Long: {'y' * 70_000}\r\n\r\n".encode(),
            FormTooLarge,
            "headers are",
        ),
        (form(*(part(f"p{i}", b"") for i in range(3))), FormTooLarge, "more than 2 parts"),
        (form(part("t", b"z" * 20, None)), FormTooLarge, "text fields are larger than 10"),
    ],
    ids=["cut off", "bad header", "no disposition", "long header", "parts", "field"],
)
def test_bad_bodies_are_named(body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse(body, max_parts=2, max_form_memory_size=10)
