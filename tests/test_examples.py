"""The example apps work: upload (form and raw), list, download, delete."""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import flask_app
import quart_app

DATA = os.urandom(300_000)
DATA_ID = hashlib.sha256(DATA).hexdigest()


def form(data: bytes, filename: str) -> tuple[bytes, dict[str, str]]:
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(data), filename)})
    return body, {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Accept": "application/json",
    }


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_quart_example(tmp_path: Path) -> None:
    app = await anyio.to_thread.run_sync(quart_app.create_app, str(tmp_path / "store"))
    client = app.test_client()
    body, headers = form(DATA, "photo.png")
    uploaded: Any = await (await client.post("/upload", data=body, headers=headers)).get_json()
    (stored,) = uploaded["files"]
    assert stored["id"] == DATA_ID
    assert stored["filename"] == "photo.png"
    assert not stored["duplicate"]
    raw = await (await client.put("/raw?ext=png", data=DATA)).get_json()
    assert raw["duplicate"]
    page = await (await client.get("/")).get_data(as_text=True)
    assert DATA_ID in page
    download = await client.get(stored["url"].replace("http://localhost", ""))
    assert await download.get_data() == DATA
    assert (await client.get("/files/../../etc/passwd")).status_code == 404
    await client.post(f"/delete/{DATA_ID}")
    assert DATA_ID not in await (await client.get("/")).get_data(as_text=True)


def test_flask_example(tmp_path: Path) -> None:
    app = flask_app.create_app(str(tmp_path / "store"))
    client = app.test_client()
    body, headers = form(DATA, "photo.png")
    (stored,) = client.post("/upload", data=body, headers=headers).get_json()["files"]
    assert stored["id"] == DATA_ID
    assert client.put("/raw?ext=png", data=DATA).get_json()["duplicate"]
    assert DATA_ID in client.get("/").get_data(as_text=True)
    download = client.get(stored["url"].replace("http://localhost", ""))
    assert download.get_data() == DATA
    download.close()
    client.post(f"/delete/{DATA_ID}")
    assert DATA_ID not in client.get("/").get_data(as_text=True)


def two_files() -> tuple[bytes, dict[str, str], list[str]]:
    """One form field holding two files, as ``<input type="file" multiple>`` sends them."""
    first, second = os.urandom(1000), os.urandom(1000)
    fields = MultiDict(
        [
            ("file", FileStorage(io.BytesIO(first), "a.png")),
            ("file", FileStorage(io.BytesIO(second), "b.png")),
        ]
    )
    boundary, body = encode_multipart(fields)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Accept": "application/json",
    }
    return body, headers, [hashlib.sha256(d).hexdigest() for d in (first, second)]


@pytest.mark.anyio
async def test_quart_example_reports_every_file_of_a_field(tmp_path: Path) -> None:
    app = await anyio.to_thread.run_sync(quart_app.create_app, str(tmp_path / "store"))
    body, headers, ids = two_files()
    response = await app.test_client().post("/upload", data=body, headers=headers)
    files = (await response.get_json())["files"]
    assert [f["id"] for f in files] == ids


def test_flask_example_reports_every_file_of_a_field(tmp_path: Path) -> None:
    app = flask_app.create_app(str(tmp_path / "store"))
    body, headers, ids = two_files()
    files = app.test_client().post("/upload", data=body, headers=headers).get_json()["files"]
    assert [f["id"] for f in files] == ids


def test_the_demos_keep_separate_stores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HASHFS_ROOT_FOLDER", raising=False)
    quart = quart_app.create_app().config["HASHFS_ROOT_FOLDER"]
    flask = flask_app.create_app().config["HASHFS_ROOT_FOLDER"]
    assert quart != flask
