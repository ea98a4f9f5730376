"""The serving route, on Quart and on Flask: every rule through each framework."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from flask import Flask
from quart import Quart
from werkzeug.datastructures import Headers

import async_hashfs._quart
from async_hashfs import HashAddress, QuartHashFS, SyncHashFS
from async_hashfs._config import url_for
from async_hashfs._http import SMALL_BODY
from flask_shim import FlaskHashFS

DATA = os.urandom(3 * (1 << 20) + 123)  # more than one serving chunk
DATA_ID = hashlib.sha256(DATA).hexdigest()


class Harness:
    """One app of either framework, with the serving route on."""

    def __init__(self, framework: str, root: Path, **config: Any) -> None:
        self.framework = framework
        settings = {
            "HASHFS_ROOT_FOLDER": str(root),
            "HASHFS_PATH_PREFIX": "/files",
            "HASHFS_SERVE": True,
            **config,
        }
        self.store = SyncHashFS(root)
        if framework == "quart":
            self.app: Any = Quart(__name__)
            self.app.config.update(settings)
            QuartHashFS(self.app)
            self.loop = asyncio.new_event_loop()
        else:
            self.app = Flask(__name__)
            self.app.config.update(settings)
            FlaskHashFS(self.app)
        self.client = self.app.test_client()

    def request(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET"
    ) -> tuple[int, Headers, bytes]:
        if self.framework == "quart":
            return self.loop.run_until_complete(self._asgi(path, headers or {}, method))
        response = self.client.open(path, method=method, headers=headers)
        result = response.status_code, response.headers, response.get_data()
        response.close()
        return result

    async def _asgi(
        self, target: str, headers: dict[str, str], method: str
    ) -> tuple[int, Headers, bytes]:
        # Quart's test client rebuilds responses (and their headers) from the
        # body it got, so read what the app really sends, at the ASGI level.
        path, _, query = target.partition("?")
        messages: list[dict[str, Any]] = [{"type": "http.request", "body": b""}]
        sent: list[dict[str, Any]] = []

        finished = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await finished.wait()  # as a server does once the response is out
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finished.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "extensions": {},
        }
        await self.app(scope, receive, send)
        start = sent[0]
        response_headers = Headers([(k.decode(), v.decode()) for k, v in start["headers"]])
        body = b"".join(m.get("body", b"") for m in sent[1:])
        if method == "HEAD":  # a server would drop it: the file is not read for nothing
            assert body == b""
        return start["status"], response_headers, body

    def url(self, address: HashAddress) -> str:
        return "/files/" + address.relpath

    def close(self) -> None:
        if self.framework == "quart":
            self.loop.close()


@pytest.fixture(params=["quart", "flask"])
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def harness(framework: str, root: Path) -> Iterator[Harness]:
    h = Harness(framework, root)
    yield h
    h.close()


@pytest.fixture
def stored(harness: Harness) -> HashAddress:
    return harness.store.put(DATA, "png")


def test_get_serves_the_file_with_cache_headers(harness: Harness, stored: HashAddress) -> None:
    status, headers, body = harness.request(harness.url(stored))
    assert status == 200
    assert body == DATA
    assert headers["ETag"] == f'"{DATA_ID}"'
    assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Length"] == str(len(DATA))
    assert headers["Content-Type"] == "image/png"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Last-Modified" in headers


def test_no_extension_is_octet_stream(harness: Harness) -> None:
    address = harness.store.put(b"raw bytes")
    status, headers, body = harness.request(harness.url(address))
    assert (status, body) == (200, b"raw bytes")
    assert headers["Content-Type"] == "application/octet-stream"


def test_head(harness: Harness, stored: HashAddress) -> None:
    status, headers, body = harness.request(harness.url(stored), method="HEAD")
    assert status == 200
    assert body == b""
    assert headers["Content-Length"] == str(len(DATA))


@pytest.mark.parametrize("size", [0, 5, SMALL_BODY + 1, len(DATA)])
def test_head_through_the_test_client_reports_the_size(harness: Harness, size: int) -> None:
    address = harness.store.put(DATA[:size], "png")
    url = harness.url(address)
    if harness.framework == "quart":
        response = harness.loop.run_until_complete(harness.app.test_client().head(url))
    else:
        response = harness.client.head(url)
        assert response.get_data() == b""
        response.close()
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(size)
    assert response.headers["ETag"] == f'"{hashlib.sha256(DATA[:size]).hexdigest()}"'


@pytest.mark.parametrize(
    ("extension", "expected"),
    [
        ("txt", "text/plain; charset=utf-8"),
        ("html", "text/html; charset=utf-8"),
        ("json", "application/json; charset=utf-8"),
        ("svg", "image/svg+xml; charset=utf-8"),
        ("png", "image/png"),
    ],
)
def test_textual_files_are_served_as_utf8(harness: Harness, extension: str, expected: str) -> None:
    address = harness.store.put("Grüße ☀".encode(), extension)
    for method in ("GET", "HEAD"):
        status, headers, _ = harness.request(harness.url(address), method=method)
        assert (status, headers["Content-Type"]) == (200, expected)


def test_if_none_match_gives_304_without_body(harness: Harness, stored: HashAddress) -> None:
    for value in (f'"{DATA_ID}"', f'W/"{DATA_ID}"', "*"):
        status, headers, body = harness.request(harness.url(stored), {"If-None-Match": value})
        assert status == 304
        assert body == b""
        assert headers["ETag"] == f'"{DATA_ID}"'
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert "Content-Type" not in headers


def test_if_none_match_wins_over_if_modified_since(harness: Harness, stored: HashAddress) -> None:
    future = "Fri, 01 Jan 2100 00:00:00 GMT"
    status, _, body = harness.request(
        harness.url(stored), {"If-None-Match": '"other"', "If-Modified-Since": future}
    )
    assert (status, body) == (200, DATA)
    status, _, _ = harness.request(harness.url(stored), {"If-Modified-Since": future})
    assert status == 304


def test_if_match_failing_is_412(harness: Harness, stored: HashAddress) -> None:
    status, _, body = harness.request(harness.url(stored), {"If-Match": '"other"'})
    assert (status, body) == (412, b"")
    assert harness.request(harness.url(stored), {"If-Match": f'"{DATA_ID}"'})[0] == 200


@pytest.mark.parametrize(
    ("range_", "status", "span"),
    [
        ("bytes=0-99", 206, (0, 100)),
        ("bytes=1048570-1048580", 206, (1048570, 1048581)),
        ("bytes=-10", 206, (len(DATA) - 10, len(DATA))),
        ("bytes=-99999999", 206, (0, len(DATA))),
        ("bytes=2000000-", 206, (2000000, len(DATA))),
        ("bytes=0-1,4-5", 200, (0, len(DATA))),
    ],
)
def test_ranges(
    harness: Harness, stored: HashAddress, range_: str, status: int, span: Any
) -> None:
    got, headers, body = harness.request(harness.url(stored), {"Range": range_})
    assert got == status
    assert body == DATA[span[0] : span[1]]
    assert headers["Content-Length"] == str(span[1] - span[0])
    if status == 206:
        assert headers["Content-Range"] == f"bytes {span[0]}-{span[1] - 1}/{len(DATA)}"


def test_unsatisfiable_range_is_416(harness: Harness, stored: HashAddress) -> None:
    status, headers, body = harness.request(harness.url(stored), {"Range": f"bytes={len(DATA)}-"})
    assert (status, body) == (416, b"")
    assert headers["Content-Range"] == f"bytes */{len(DATA)}"


def test_if_range(harness: Harness, stored: HashAddress) -> None:
    url = harness.url(stored)
    status, _, body = harness.request(url, {"Range": "bytes=0-9", "If-Range": f'"{DATA_ID}"'})
    assert (status, body) == (206, DATA[:10])
    status, _, body = harness.request(url, {"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert (status, body) == (200, DATA)


def test_download_name(harness: Harness, stored: HashAddress) -> None:
    _, headers, _ = harness.request(harness.url(stored) + "?download=r%C3%A9sum%C3%A9%20v2.png")
    assert headers["Content-Disposition"] == (
        "attachment; filename=\"r_sum_ v2.png\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20v2.png"
    )


def test_only_content_addresses_are_served(
    harness: Harness, stored: HashAddress, root: Path
) -> None:
    Path(root, "stray.png").write_bytes(b"not at its address")
    temp = Path(root, ".hashfs-tmp")
    temp.mkdir(exist_ok=True)
    (temp / "1-x.tmp").write_bytes(b"in flight")
    wrong_ext = stored.relpath[:-4] + ".jpg"
    folder = os.path.dirname(stored.relpath)
    for path in [
        "/files/stray.png",
        "/files/.hashfs-tmp/1-x.tmp",
        "/files/" + folder,
        "/files/" + folder + "/",
        "/files/" + wrong_ext,
        "/files/" + stored.relpath.replace("/", "", 1),
        "/files/../" + stored.relpath,
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/..%2f..%2fetc%2fpasswd",
        "/files/" + stored.relpath + "/..",
        "/files/" + DATA_ID,
        "/files/",
    ]:
        status, _, body = harness.request(path)
        assert status == 404, path
        assert DATA[:100] not in body


def test_symlinked_file_is_not_served(harness: Harness, root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    address = harness.store.put(b"secret")
    os.remove(address.abspath)
    os.symlink(secret, address.abspath)
    assert harness.request(harness.url(address))[0] == 404


def test_a_hard_link_planted_at_an_address_is_not_served(
    harness: Harness, root: Path, tmp_path: Path
) -> None:
    # Issue 11, item 3: a second link says the file may be one from outside the
    # store; its bytes do not hash to the address, so it is refused (and logged).
    secret = tmp_path / "secret"
    secret.write_bytes(b"not the bytes the address names")
    secret.chmod(0o600)
    address = harness.store.put(b"the bytes the address names", "txt")
    os.remove(address.abspath)
    os.link(secret, address.abspath)
    status, _, body = harness.request(harness.url(address))
    assert status == 500
    assert b"not the bytes" not in body


def test_a_file_with_a_second_link_that_hashes_right_is_served(
    harness: Harness, stored: HashAddress, tmp_path: Path
) -> None:
    # A backup made with cp -al gives every stored file a second link.
    os.link(stored.abspath, tmp_path / "backup")
    for _ in range(2):
        status, _, body = harness.request(harness.url(stored))
        assert (status, body == DATA) == (200, True)


@pytest.mark.parametrize(
    ("mode", "header", "value"),
    [
        ("x-accel-redirect", "X-Accel-Redirect", "/internal/{relpath}"),
        ("x-sendfile", "X-Sendfile", "{abspath}"),
    ],
)
def test_offload_to_front_server(
    framework: str, root: Path, mode: str, header: str, value: str
) -> None:
    h = Harness(framework, root, HASHFS_SENDFILE=mode, HASHFS_ACCEL_PREFIX="/internal/")
    try:
        address = h.store.put(DATA, "png")
        status, headers, body = h.request(h.url(address))
        assert (status, body) == (200, b"")
        assert headers[header] == value.format(relpath=address.relpath, abspath=address.abspath)
        assert headers["ETag"] == f'"{DATA_ID}"'
        assert h.request(h.url(address), {"If-None-Match": f'"{DATA_ID}"'})[0] == 304
    finally:
        h.close()


def test_serve_needs_a_prefix(framework: str, root: Path) -> None:
    with pytest.raises(ValueError, match="HASHFS_PATH_PREFIX"):
        Harness(framework, root, HASHFS_PATH_PREFIX="")
    with pytest.raises(ValueError, match="HASHFS_SENDFILE"):
        Harness(framework, root, HASHFS_SENDFILE="nginx")


def test_url_for_points_at_the_route(framework: str, root: Path) -> None:
    h = Harness(framework, root, HASHFS_HOST="https://cdn.example.com")
    try:
        address = h.store.put(DATA, "png")
        url = url_for(h.app.config, address.relpath, True, lambda: "")
        assert url == "https://cdn.example.com" + h.url(address)
        assert h.request(url.removeprefix("https://cdn.example.com"))[2] == DATA
    finally:
        h.close()


def test_revalidation_after_delete_is_404(harness: Harness, stored: HashAddress) -> None:
    url = harness.url(stored)
    etag = {"If-None-Match": f'"{DATA_ID}"'}
    assert harness.request(url)[0] == 200
    assert harness.request(url, etag)[0] == 304
    extension: Any = QuartHashFS() if harness.framework == "quart" else FlaskHashFS()
    if harness.framework == "quart":

        async def delete() -> None:
            async with harness.app.app_context():
                await extension.delete(stored.id)

        harness.loop.run_until_complete(delete())
    else:
        with harness.app.app_context():
            extension.delete(stored.id)
    assert harness.request(url, etag)[0] == 404


def _backdate_folders(root: Path, relpath: str) -> None:
    """Set the mtime of the root and of each folder down to ``relpath`` a minute back.

    The presence cache only trusts folders untouched for a moment, so that a
    change in the same clock tick as its look cannot go unseen.
    """
    old = time.time() - 60
    folder = root
    os.utime(folder, (old, old))
    for name in relpath.split("/")[:-1]:
        folder = folder / name
        os.utime(folder, (old, old))


@pytest.mark.parametrize(
    "change", ["removed", "renamed away", "folder renamed", "deleted by another store"]
)
def test_revalidation_after_an_out_of_band_change_is_404(
    harness: Harness,
    stored: HashAddress,
    root: Path,
    tmp_path: Path,
    change: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another worker, the command line or a person changes the store: the
    # next revalidation must not be a 304 from what this process saw before.
    url = harness.url(stored)
    etag = {"If-None-Match": f'"{DATA_ID}"'}
    _backdate_folders(root, stored.relpath)
    assert harness.request(url, etag)[0] == 304
    if harness.framework == "quart":  # the answer comes from the presence cache, no disk hop
        prepared: list[str] = []
        real = async_hashfs._quart.prepare

        def counting(*args: Any) -> Any:
            prepared.append(args[1])
            return real(*args)

        monkeypatch.setattr(async_hashfs._quart, "prepare", counting)
        assert harness.request(url, etag)[0] == 304
        assert prepared == []
    parts = stored.relpath.split("/")
    if change == "removed":
        os.remove(root / stored.relpath)
    elif change == "renamed away":
        os.rename(root / stored.relpath, tmp_path / "elsewhere")
    elif change == "folder renamed":
        os.rename(root / parts[0] / parts[1], root / parts[0] / "moved")
    else:
        SyncHashFS(root).delete(stored.id)
    assert harness.request(url, etag)[0] == 404
