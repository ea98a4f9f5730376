"""The example apps work: names in SQLite, shared bytes, downloads by name, deletes that sweep."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import flask_app
import quart_app

from async_hashfs import CompletedUpload

EXAMPLES = Path(__file__).parent.parent / "examples"
DATA = os.urandom(300_000)
DATA_ID = hashlib.sha256(DATA).hexdigest()
NAMES = ["report.txt", "résumé 日本語 😀.txt"]
#: RFC 6266's filename* for NAMES[1]: UTF-8, percent-encoded (RFC 8187)
ENCODED = "r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC%E8%AA%9E%20%F0%9F%98%80.txt"


def form(data: bytes, *names: str) -> tuple[bytes, dict[str, str]]:
    """One form field holding ``data`` under each of ``names``, as ``multiple`` sends them."""
    fields = MultiDict([("file", FileStorage(io.BytesIO(data), name)) for name in names])
    boundary, body = encode_multipart(fields)
    return body, {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Accept": "application/json",
    }


def tus_creation(data: bytes, name: str, type: str) -> dict[str, str]:
    """Headers of a tus creation-with-upload request sending all of ``data`` at once."""
    metadata = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in (("filename", name), ("filetype", type))
    )
    return {
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(len(data)),
        "Content-Length": str(len(data)),
        "Upload-Metadata": metadata,
        "Content-Type": "application/offset+octet-stream",
    }


def stored(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and ".hashfs-tmp" not in p.parts]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SWEEP_GRACE", "0")


@pytest.fixture(autouse=True)
def flask_databases_closed(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A Flask demo's engine keeps its SQLite connections pooled for the life of the
    # process; a test's app ends with the test, so close them then (on Python 3.13 an
    # unclosed connection is a ResourceWarning wherever it is collected: a later test).
    made: list[Any] = []
    real = flask_app.create_app

    def create_app(*args: Any, **kwargs: Any) -> Any:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(flask_app, "create_app", create_app)
    yield
    for app in made:
        with app.app_context():
            flask_app.db.engine.dispose()


@pytest.mark.anyio
async def test_quart_example(tmp_path: Path) -> None:
    root = tmp_path / "store"
    app = await anyio.to_thread.run_sync(quart_app.create_app, str(root))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        body, headers = form(DATA, *NAMES)
        files = (await (await client.post("/upload", data=body, headers=headers)).get_json())[
            "files"
        ]
        assert [f["name"] for f in files] == NAMES
        assert {f["content_id"] for f in files} == {DATA_ID}
        listed: Any = await (await client.get("/api/files")).get_json()
        assert sorted(f["name"] for f in listed["files"]) == sorted(NAMES)
        assert listed["stored"] == 1
        assert len(stored(root)) == 1
        first, second = sorted(listed["files"], key=lambda f: f["id"])

        download = await client.get(second["download_url"])
        assert await download.get_data() == DATA
        disposition = download.headers["Content-Disposition"]
        assert disposition.startswith("attachment; ")
        assert disposition.endswith(f"filename*=UTF-8''{ENCODED}")

        assert (await client.delete(f"/api/files/{first['id']}")).status_code == 200
        assert len(stored(root)) == 1  # the other row still names the bytes
        assert await (await client.get(second["download_url"])).get_data() == DATA
        gone = await (await client.delete(f"/api/files/{second['id']}")).get_json()
        assert gone["removed"] == [DATA_ID]
        assert stored(root) == []
        missing = await client.delete(f"/api/files/{second['id']}")
        assert missing.status_code == 404
        assert "no file number" in (await missing.get_json())["error"]
        page = await (await client.get("/")).get_data(as_text=True)
        assert 'name="viewport"' in page
        assert 'data-max-size="1073741824"' in page


def test_flask_example(tmp_path: Path) -> None:
    root = tmp_path / "store"
    client = flask_app.create_app(str(root)).test_client()
    body, headers = form(DATA, *NAMES)
    files = client.post("/upload", data=body, headers=headers).get_json()["files"]
    assert [f["name"] for f in files] == NAMES
    assert {f["content_id"] for f in files} == {DATA_ID}
    listed = client.get("/api/files").get_json()
    assert sorted(f["name"] for f in listed["files"]) == sorted(NAMES)
    assert listed["stored"] == 1
    assert len(stored(root)) == 1
    first, second = sorted(listed["files"], key=lambda f: f["id"])

    download = client.get(second["download_url"])
    assert download.get_data() == DATA
    disposition = download.headers["Content-Disposition"]
    download.close()
    assert disposition.startswith("attachment; ")
    assert disposition.endswith(f"filename*=UTF-8''{ENCODED}")

    assert client.delete(f"/api/files/{first['id']}").status_code == 200
    assert len(stored(root)) == 1
    again = client.get(second["download_url"])
    assert again.get_data() == DATA
    again.close()
    assert client.delete(f"/api/files/{second['id']}").get_json()["removed"] == [DATA_ID]
    assert stored(root) == []
    missing = client.delete(f"/api/files/{second['id']}")
    assert missing.status_code == 404
    assert "no file number" in missing.get_json()["error"]
    page = client.get("/").get_data(as_text=True)
    assert 'name="viewport"' in page
    assert 'data-max-size="1073741824"' in page


@pytest.mark.anyio
async def test_quart_sweep_keeps_young_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_SWEEP_GRACE", "3600")
    root = tmp_path / "store"
    app = await anyio.to_thread.run_sync(quart_app.create_app, str(root))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        body, headers = form(DATA, NAMES[0])
        (row,) = (await (await client.post("/upload", data=body, headers=headers)).get_json())[
            "files"
        ]
        assert (await (await client.delete(f"/api/files/{row['id']}")).get_json())["removed"] == []
        assert len(stored(root)) == 1  # no row names it, but it is younger than the grace


def test_flask_sweep_keeps_young_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_SWEEP_GRACE", "3600")
    root = tmp_path / "store"
    client = flask_app.create_app(str(root)).test_client()
    body, headers = form(DATA, NAMES[0])
    (row,) = client.post("/upload", data=body, headers=headers).get_json()["files"]
    assert client.delete(f"/api/files/{row['id']}").get_json()["removed"] == []
    assert len(stored(root)) == 1


@pytest.mark.anyio
async def test_quart_example_names_a_tus_upload(tmp_path: Path) -> None:
    app = await anyio.to_thread.run_sync(quart_app.create_app, str(tmp_path / "store"))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        headers = tus_creation(DATA, NAMES[1], "text/plain")
        response = await client.post("/tus", data=DATA, headers=headers)
        assert response.status_code == 201, await response.get_data(as_text=True)
        # The hook runs at least once: run again for the same upload, it adds no row.
        upload_id = response.headers["Location"].rsplit("/", 1)[1]
        async with app.app_context():
            address = await quart_app.fs.get(DATA_ID)
            again = CompletedUpload(upload_id, address, {"filename": "other.txt"})
            await quart_app.record_tus_upload(again)
        (row,) = (await (await client.get("/api/files")).get_json())["files"]
    assert (row["name"], row["type"], row["size"]) == (NAMES[1], "text/plain", len(DATA))
    assert row["content_id"] == DATA_ID


def test_flask_example_names_a_tus_upload(tmp_path: Path) -> None:
    app = flask_app.create_app(str(tmp_path / "store"))
    client = app.test_client()
    headers = tus_creation(DATA, NAMES[1], "text/plain")
    response = client.post("/tus", data=DATA, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    upload_id = response.headers["Location"].rsplit("/", 1)[1]
    with app.app_context():
        address = flask_app.fs.get(DATA_ID)
        flask_app.record_tus_upload(CompletedUpload(upload_id, address, {"filename": "x.txt"}))
    (row,) = client.get("/api/files").get_json()["files"]
    assert (row["name"], row["type"], row["size"]) == (NAMES[1], "text/plain", len(DATA))
    assert row["content_id"] == DATA_ID


def test_the_demos_keep_separate_stores_and_databases(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HASHFS_ROOT_FOLDER", raising=False)
    monkeypatch.delenv("DEMO_DATABASE", raising=False)
    quart = quart_app.create_app().config["HASHFS_ROOT_FOLDER"]
    flask = flask_app.create_app()
    assert quart != flask.config["HASHFS_ROOT_FOLDER"]
    assert flask.config["SQLALCHEMY_DATABASE_URI"].endswith("demo-store-flask.sqlite3")


def test_the_vendored_uppy_bundle_matches_its_manifest() -> None:
    """``npm ci && npm run build`` in examples/frontend wrote these bytes, nobody else."""
    vendor = EXAMPLES / "static" / "vendor"
    manifest = json.loads((vendor / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == {"uppy.js", "uppy.css"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name
    lock = json.loads((EXAMPLES / "frontend" / "package-lock.json").read_text())
    wanted = json.loads((EXAMPLES / "frontend" / "package.json").read_text())["dependencies"]
    for package, version in wanted.items():
        assert lock["packages"][f"node_modules/{package}"]["version"] == version
        assert manifest["packages"][package] == version
