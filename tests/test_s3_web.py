"""The web extensions on an S3 root: configuration only, nothing else changes."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import httpx
import pytest
from flask import Flask, request
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from flask_shim import FlaskHashFS

from .test_serving import Harness

DATA = os.urandom(3 << 20)
DATA_ID = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def s3_config(s3_server: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    options = s3_server.options()
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)
    return {
        "HASHFS_ROOT_FOLDER": f"s3://hashfs-test/web-{os.getpid()}-{name}",
        "HASHFS_S3_ENDPOINT": options["endpoint"],
        "HASHFS_S3_REGION": options["region"],
        "HASHFS_S3_ACCESS_KEY_ID": options["access_key_id"],
        "HASHFS_S3_SECRET_ACCESS_KEY": options["secret_access_key"],
    }


def test_flask_uploads_into_s3(s3_config: dict[str, Any]) -> None:
    app = Flask(__name__)
    app.config.update(s3_config, HASHFS_PATH_PREFIX="/files")
    fs = FlaskHashFS(app)

    @app.post("/up")
    def up() -> Any:
        uploads = fs.put_uploads()
        return {name: u.address.abspath for name, u in uploads.files.items()}

    @app.post("/raw")
    def raw() -> Any:
        return {"abspath": fs.put(request.stream, extension="bin").abspath}

    boundary, body = encode_multipart({"f": FileStorage(io.BytesIO(DATA), "a.png")})
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    stored = app.test_client().post("/up", data=body, headers=headers).get_json()
    assert stored["f"].startswith(s3_config["HASHFS_ROOT_FOLDER"] + "/")
    assert stored["f"].endswith(DATA_ID[4:] + ".png")
    streamed = app.test_client().post("/raw", data=DATA).get_json()
    assert streamed["abspath"].endswith(DATA_ID[4:] + ".bin")
    with app.app_context():
        assert fs.count() == 2
        assert fs.verify(DATA_ID)


@pytest.mark.parametrize("framework", ["quart", "flask"])
def test_serving_from_s3(framework: str, s3_config: dict[str, Any], tmp_path: Any) -> None:
    h = Harness(framework, tmp_path / "unused", **s3_config)
    try:
        h.store = h.app.extensions["hashfs"].store
        address = _put(h, DATA)
        url = h.url(address)
        status, headers, body = h.request(url)
        assert (status, body) == (200, DATA)
        assert headers["ETag"] == f'"{DATA_ID}"'
        status, headers, body = h.request(url, {"Range": "bytes=100-199"})
        assert (status, body) == (206, DATA[100:200])
        assert h.request(url, {"If-None-Match": f'"{DATA_ID}"'})[0] == 304
        assert h.request("/files/../" + address.relpath)[0] == 404
    finally:
        h.close()


@pytest.mark.parametrize("framework", ["quart", "flask"])
def test_redirect_to_presigned_url(
    framework: str, s3_config: dict[str, Any], tmp_path: Any
) -> None:
    h = Harness(framework, tmp_path / "unused", HASHFS_S3_REDIRECT=True, **s3_config)
    try:
        h.store = h.app.extensions["hashfs"].store
        address = _put(h, DATA)
        status, headers, _ = h.request(h.url(address))
        assert status == 307
        location = headers["Location"]
        assert location.startswith(s3_config["HASHFS_S3_ENDPOINT"])
        fetched = httpx.get(location, timeout=30)
        assert fetched.status_code == 200
        assert fetched.content == DATA
        # The bucket answers with the route's headers, as far as S3 can set them.
        assert fetched.headers["Content-Type"] == "image/png"
        assert fetched.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        ranged = httpx.get(location, headers={"Range": "bytes=10-19"}, timeout=30)
        assert (ranged.status_code, ranged.content) == (206, DATA[10:20])
        assert h.request(h.url(address).replace(DATA_ID[4:], "0" * 60))[0] == 404
    finally:
        h.close()


@pytest.mark.parametrize("framework", ["quart", "flask"])
def test_redirect_keeps_what_the_route_promises(
    framework: str, s3_config: dict[str, Any], tmp_path: Any
) -> None:
    public = s3_config["HASHFS_S3_ENDPOINT"].replace("127.0.0.1", "localhost")
    h = Harness(
        framework,
        tmp_path / "unused",
        HASHFS_S3_REDIRECT=True,
        HASHFS_S3_PUBLIC_ENDPOINT=public,
        **s3_config,
    )
    try:
        h.store = h.app.extensions["hashfs"].store
        address = _put(h, DATA)
        url = h.url(address)
        # HEAD is answered here (a URL signed for GET would answer HEAD 403).
        status, headers, body = h.request(url, method="HEAD")
        assert (status, body) == (200, b"")
        assert headers["ETag"] == f'"{DATA_ID}"'
        assert headers["Content-Length"] == str(len(DATA))
        assert "Location" not in headers
        # The hash is the ETag: a revalidation is a 304 without a redirect.
        assert h.request(url, {"If-None-Match": f'"{DATA_ID}"'})[0] == 304
        # The redirect is cacheable, and the same while the browser may cache it.
        first = h.request(url)[1]
        second = h.request(url)[1]
        assert first["Location"] == second["Location"]
        assert first["Location"].startswith(public)
        max_age = int(first["Cache-Control"].removeprefix("private, max-age="))
        assert 1700 <= max_age <= 1800
        # ?download= names the file.
        status, headers, _ = h.request(url + "?download=r%C3%A9sum%C3%A9.png")
        fetched = httpx.get(headers["Location"], timeout=30)
        assert fetched.content == DATA
        assert fetched.headers["Content-Disposition"] == (
            "attachment; filename=\"r_sum_.png\"; filename*=UTF-8''r%C3%A9sum%C3%A9.png"
        )
        # An active type is a download from the bucket's origin, never a page.
        page = _put(h, b"<script>alert(document.cookie)</script>", "html")
        status, headers, _ = h.request(h.url(page))
        assert status == 307
        fetched = httpx.get(headers["Location"], timeout=30)
        assert fetched.headers["Content-Disposition"].startswith("attachment;")
        assert fetched.headers["Content-Type"].startswith("text/html")
    finally:
        h.close()


def _put(h: Harness, data: bytes, extension: str = "png") -> Any:
    store = h.store
    if h.framework == "quart":
        return h.loop.run_until_complete(store.put(data, extension))
    return store.put(data, extension)
