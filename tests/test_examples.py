"""The example apps work: names in SQLite, shared bytes, downloads by name, deletes that sweep."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import start_blocking_portal
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))

import flask_app
import quart_app

from async_hashfs import CompletedUpload, SyncHashFS

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


# -- the page without JavaScript ----------------------------------------------------------


@dataclass
class Page:
    status: int
    location: str | None
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()


@dataclass
class Demo:
    """A demo app behind its framework's test client (cookies kept), called alike on both."""

    root: Path
    send: Callable[[str, str, bytes, dict[str, str]], Page]

    def get(self, url: str, **headers: str) -> Page:
        return self.send("GET", url, b"", headers)

    def post(self, url: str, body: bytes = b"", **headers: str) -> Page:
        return self.send("POST", url, body, headers)

    def upload(self, data: bytes, *names: str) -> None:
        """Post the page's no-script form, as a browser does (no JSON asked for)."""
        body, headers = form(data, *names)
        del headers["Accept"]
        sent = self.post("/upload", body, **headers)
        assert (sent.status, sent.location) == (302, "/"), sent


@pytest.fixture(params=["quart", "flask"])
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Demo]:
    root = tmp_path / "store"
    if request.param == "flask":
        client = flask_app.create_app(str(root)).test_client()

        def send_flask(method: str, url: str, body: bytes, headers: dict[str, str]) -> Page:
            with client.open(url, method=method, data=body, headers=headers) as response:
                return Page(
                    response.status_code,
                    response.headers.get("Location"),
                    response.get_data(),
                )

        yield Demo(root, send_flask)
        return
    with start_blocking_portal("asyncio") as portal:
        app = quart_app.create_app(str(root))
        with portal.wrap_async_context_manager(app.test_app()) as test_app:
            quart_client = test_app.test_client()

            async def open_(method: str, url: str, body: bytes, headers: dict[str, str]) -> Page:
                response = await quart_client.open(url, method=method, data=body, headers=headers)
                body = await response.get_data()
                return Page(response.status_code, response.headers.get("Location"), body)

            def send_quart(method: str, url: str, body: bytes, headers: dict[str, str]) -> Page:
                return portal.call(open_, method, url, body, headers)

            yield Demo(root, send_quart)


class Listed(HTMLParser):
    """The stored-files rows of a page as a browser reads them (entities decoded).

    Each row: its ``id``, the name link's ``name`` (text), ``href`` and ``download``,
    the copy button's ``copy`` label, the delete link's ``delete`` URL and ``meta`` text.
    """

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.count = ""
        self._open: list[tuple[str, str | None]] = []  # (tag, what its text is) in a row
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        classes = a.get("class", "").split()
        if a.get("id") == "count":
            self._open = [(tag, "count")]
            return
        if tag == "li" and "data-id" in a:
            self.rows.append({"id": a["data-id"], "name": "", "meta": ""})
            self._open = []
        if not self.rows or tag == "li":
            return
        row = self.rows[-1]
        key = None
        if tag == "a" and "name" in classes:
            row.update(href=a["href"], download=a["download"])
            key = "name"
        elif tag == "a" and "delete" in classes:
            row["delete"] = a["href"]
        elif tag == "button" and "copy" in classes:
            row["copy"] = a["aria-label"]
        elif tag == "span" and "meta" in classes:
            key = "meta"
        self._open.append((tag, key))

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1][0] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for _, key in self._open:
            if key == "count":
                self.count += data
            elif key is not None:
                self.rows[-1][key] += data


ODD = "a<b>&amp;\"c'.txt"  # markup in a name is text, in the page and in its links


def test_the_page_lists_the_stored_files_without_javascript(demo: Demo) -> None:
    demo.upload(DATA, *NAMES)
    other = b"other bytes"
    # Through tus: a multipart filename cannot hold a double quote the way browsers send it.
    created = demo.post("/tus", other, **tus_creation(other, ODD, "text/plain"))
    assert created.status == 201, created
    page = demo.get("/")
    assert page.status == 200
    listed = Listed(page.text)
    assert listed.count == "(3 names, 2 stored files)"
    newest, *shared = listed.rows
    assert [row["name"] for row in listed.rows] == [ODD, NAMES[1], NAMES[0]]
    assert [row["download"] for row in listed.rows] == [ODD, NAMES[1], NAMES[0]]
    assert shared[0]["href"].endswith(f"?download={ENCODED}")
    assert newest["href"].endswith("?download=a%3Cb%3E%26amp%3B%22c%27.txt")
    assert "<b>" not in page.text and "a&lt;b&gt;&amp;amp;&#34;c&#39;.txt" in page.text
    assert newest["copy"] == f"Copy link to {ODD}"
    assert re.fullmatch(
        r"11 B · text/plain · \d{4}-\d\d-\d\d \d\d:\d\d UTC", " ".join(newest["meta"].split())
    )
    assert " ".join(shared[0]["meta"].split()).startswith("293.0 KiB · text/plain · ")
    assert {row["delete"] for row in listed.rows} == {
        f"/uploads/{row['id']}/delete" for row in listed.rows
    }
    assert demo.get(shared[0]["href"]).body == DATA
    assert demo.get(newest["href"]).body == other
    # The script draws the list again from the same template: the page holds it as served.
    fragment = demo.get("/api/files", Accept="text/html")
    assert fragment.text.strip() in page.text
    assert Listed(fragment.text).rows == listed.rows


def test_a_delete_without_javascript_asks_first_then_posts(demo: Demo) -> None:
    demo.upload(DATA, *NAMES)
    rows = {row["name"]: row for row in Listed(demo.get("/").text).rows}
    asked = demo.get(rows[NAMES[1]]["delete"])
    assert asked.status == 200
    assert f'Delete <span class="name">{NAMES[1]}</span>?' in asked.text
    action = f'<form method="post" action="{rows[NAMES[1]]["delete"]}"'
    assert action in asked.text
    assert len(stored(demo.root)) == 1 and len(Listed(demo.get("/").text).rows) == 2  # only asked

    done = demo.post(rows[NAMES[1]]["delete"])
    assert (done.status, done.location) == (303, "/")
    page = demo.get("/")
    assert [row["name"] for row in Listed(page.text).rows] == [NAMES[0]]
    assert f'<p class="notice">Deleted {NAMES[1]}</p>' in page.text
    assert len(stored(demo.root)) == 1  # the other name still uses the bytes
    assert "Deleted" not in demo.get("/").text  # said once

    again = demo.post(rows[NAMES[1]]["delete"])
    assert again.status == 404
    assert f"there is no file number {rows[NAMES[1]]['id']} (deleted already?)" in again.text
    assert demo.get(rows[NAMES[1]]["delete"]).status == 404

    demo.post(rows[NAMES[0]]["delete"])
    page = demo.get("/")
    assert f"Deleted {NAMES[0]}; its bytes were removed" in page.text
    assert '<li class="empty">Nothing stored yet.</li>' in page.text
    assert Listed(page.text).count == "(0 names, 0 stored files)"
    assert stored(demo.root) == []


def test_the_clean_up_works_without_javascript(demo: Demo) -> None:
    SyncHashFS(demo.root).put(b"stored behind the app's back")
    done = demo.post("/sweep")
    assert (done.status, done.location) == (303, "/")
    assert '<p class="notice">Clean-up removed 1 file</p>' in demo.get("/").text
    assert stored(demo.root) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://elsewhere.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"},
    ],
)
def test_a_form_posted_from_another_site_changes_nothing(
    demo: Demo, headers: dict[str, str]
) -> None:
    demo.upload(DATA, NAMES[0])
    SyncHashFS(demo.root).put(b"not named")
    (row,) = Listed(demo.get("/").text).rows
    assert demo.post(row["delete"], **headers).status == 403
    assert demo.post("/sweep", **headers).status == 403
    assert len(Listed(demo.get("/").text).rows) == 1
    assert len(stored(demo.root)) == 2
    same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert demo.post(row["delete"], **same).status == 303
