"""The tus 1.0 endpoint through Quart's and Flask's test clients: every rule, every error.

Each test runs on both extensions (``tus`` fixture). Quart's client runs on
an event loop in a portal thread, so the tests read the same for both.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from click.testing import CliRunner
from flask import Flask, abort
from quart import Quart

from async_hashfs import CompletedUpload, SyncHashFS
from async_hashfs import _tus_local as tus_local
from async_hashfs._cli import cli
from async_hashfs._tus_local import LocalPartialStore
from async_hashfs._tus_store import UploadLocked, partial_store
from flask_shim import FlaskHashFS

from ._platform_mask import MASK_VARIABLE
from .conftest import stored_files

V = {"Tus-Resumable": "1.0.0"}
STREAM = {**V, "Content-Type": "application/offset+octet-stream"}
MAX = 1_000_000
DATA = os.urandom(300_000)
DATA_ID = hashlib.sha256(DATA).hexdigest()


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def metadata(**values: str) -> str:
    return ",".join(f"{k} {b64(v.encode())}" for k, v in values.items())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Tus:
    """One app with a tus endpoint at /tus, behind its framework's test client."""

    framework: str
    root: Path
    send: Callable[[str, str, dict[str, str], bytes], Reply]
    app: Any = None
    completed: list[CompletedUpload] = field(default_factory=list)
    allow: dict[str, Any] = field(default_factory=dict)
    #: The completion hook raises this many times before it succeeds.
    hook_failures: int = 0

    def request(
        self, method: str, url: str, headers: dict[str, str] | None = None, data: bytes = b""
    ) -> Reply:
        return self.send(method, url, headers or {}, data)

    def create(self, length: int | None = None, **headers: str) -> str:
        sent = {**V, **headers}
        if length is not None:
            sent["Upload-Length"] = str(length)
        reply = self.request("POST", "/tus", sent)
        assert reply.status == 201, reply
        location = reply.header("Location")
        assert location is not None
        return location

    def patch(self, url: str, offset: int, data: bytes, **headers: str) -> Reply:
        return self.request(
            "PATCH", url, {**STREAM, "Upload-Offset": str(offset), **headers}, data
        )

    def head(self, url: str) -> Reply:
        return self.request("HEAD", url, V)

    def offset(self, url: str) -> int:
        reply = self.head(url)
        assert reply.status == 200, reply
        return int(reply.header("Upload-Offset") or -1)

    @property
    def partials(self) -> LocalPartialStore:
        store = partial_store(SyncHashFS(self.root)._engine)
        assert isinstance(store, LocalPartialStore)
        return store


def _config(root: Path, **config: Any) -> dict[str, Any]:
    return {
        "HASHFS_ROOT_FOLDER": str(root),
        "HASHFS_TUS_PREFIX": "/tus",
        "HASHFS_MAX_SIZE": MAX,
        "HASHFS_HOST": "https://cdn.example",
        "HASHFS_PATH_PREFIX": "/files",
        **config,
    }


def _hooks(fs: Any, tus: Tus) -> None:
    @fs.on_upload_complete
    def completed(upload: CompletedUpload) -> None:
        if tus.hook_failures:
            tus.hook_failures -= 1
            raise RuntimeError("the app's database is down")
        tus.completed.append(upload)

    @fs.authorize_upload
    def authorize(action: str, upload_id: str | None) -> Any:
        answer = tus.allow.get(action, True)
        if isinstance(answer, Exception):
            raise answer
        if answer == 401:
            abort(401)
        return answer


def _reply(status: int, headers: Any, body: bytes) -> Reply:
    return Reply(status, {k.lower(): v for k, v in headers.items()}, body)


def flask_tus(root: Path, **config: Any) -> Tus:
    app = Flask(__name__)
    app.config.update(_config(root, **config))
    fs = FlaskHashFS(app)
    client = app.test_client()

    def send(method: str, url: str, headers: dict[str, str], data: bytes) -> Reply:
        response = client.open(url, method=method, headers=headers, data=data)
        return _reply(response.status_code, response.headers, response.get_data())

    tus = Tus("flask", root, send, app)
    _hooks(fs, tus)
    return tus


def quart_tus(portal: BlockingPortal, root: Path, **config: Any) -> Tus:
    app = Quart(__name__)
    app.config.update(_config(root, **config))
    from async_hashfs import QuartHashFS

    fs = QuartHashFS(app)
    client = app.test_client()

    async def open_(method: str, url: str, headers: dict[str, str], data: bytes) -> Reply:
        if data:  # as a server passes it on; Quart's test client leaves it out
            headers = {**headers, "Content-Length": str(len(data))}
        response = await client.open(url, method=method, headers=headers, data=data)
        return _reply(response.status_code, response.headers, await response.get_data())

    def send(method: str, url: str, headers: dict[str, str], data: bytes) -> Reply:
        return portal.call(functools.partial(open_, method, url, headers, data))

    tus = Tus("quart", root, send, app)
    _hooks(fs, tus)
    return tus


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as portal:
        yield portal


@pytest.fixture(params=["quart", "flask"])
def make_tus(
    request: pytest.FixtureRequest, portal: BlockingPortal, root: Path
) -> Callable[..., Tus]:
    def make(**config: Any) -> Tus:
        if request.param == "quart":
            return quart_tus(portal, root, **config)
        return flask_tus(root, **config)

    return make


@pytest.fixture
def tus(make_tus: Callable[..., Tus]) -> Tus:
    return make_tus()


def partial_names(root: Path) -> list[str]:
    folder = root / ".hashfs-tmp" / "tus"
    return sorted(os.listdir(folder)) if folder.exists() else []


# -- discovery and versions ---------------------------------------------------------


def test_options_advertises_exactly_what_is_supported(tus: Tus) -> None:
    for url in ("/tus", "/tus/" + "0" * 32):
        reply = tus.request("OPTIONS", url)
        assert reply.status == 204
        assert reply.header("Tus-Version") == "1.0.0"
        assert reply.header("Tus-Resumable") == "1.0.0"
        assert reply.header("Tus-Extension") == (
            "creation,creation-with-upload,creation-defer-length,termination,checksum,expiration"
        )
        assert reply.header("Tus-Max-Size") == str(MAX)
        assert set((reply.header("Tus-Checksum-Algorithm") or "").split(",")) >= {
            "sha1",
            "sha256",
        }


def test_no_max_size_means_no_tus_max_size(make_tus: Callable[..., Tus]) -> None:
    tus = make_tus(HASHFS_MAX_SIZE=None)
    assert tus.request("OPTIONS", "/tus").header("Tus-Max-Size") is None


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0", "2.0.0"])
def test_unsupported_version_is_412_and_nothing_happens(tus: Tus, version: str | None) -> None:
    url = tus.create(len(DATA))
    headers = {} if version is None else {"Tus-Resumable": version}
    for method, target, extra in [
        ("POST", "/tus", {"Upload-Length": "5"}),
        ("HEAD", url, {}),
        ("PATCH", url, {"Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}),
        ("DELETE", url, {}),
    ]:
        reply = tus.request(
            method, target, {**headers, **extra}, b"abc" if method == "PATCH" else b""
        )
        assert reply.status == 412, (method, reply)
        assert reply.header("Tus-Version") == "1.0.0"
        assert reply.header("Tus-Resumable") == "1.0.0"
    assert tus.offset(url) == 0
    assert len(partial_names(tus.root)) == 2  # the one upload: bytes and record


# -- creation --------------------------------------------------------------------


def test_create_then_head(tus: Tus) -> None:
    sent = metadata(filename="photo.JPG", filetype="image/jpeg") + ",empty"
    before = time.time()
    reply = tus.request(
        "POST", "/tus", {**V, "Upload-Length": str(len(DATA)), "Upload-Metadata": sent}
    )
    assert reply.status == 201
    assert reply.header("Tus-Resumable") == "1.0.0"
    location = reply.header("Location") or ""
    upload_id = location.rsplit("/", 1)[1]
    assert location == f"/tus/{upload_id}"
    assert len(upload_id) == 32
    int(upload_id, 16)
    expires = email.utils.parsedate_to_datetime(reply.header("Upload-Expires") or "")
    assert before + 24 * 3600 - 5 <= expires.timestamp() <= time.time() + 24 * 3600 + 5
    assert (reply.header("Upload-Expires") or "").endswith(" GMT")
    head = tus.head(location)
    assert head.status == 200
    assert head.header("Upload-Offset") == "0"
    assert head.header("Upload-Length") == str(len(DATA))
    assert head.header("Upload-Defer-Length") is None
    assert head.header("Upload-Metadata") == sent
    assert head.header("Cache-Control") == "no-store"
    assert head.header("Tus-Resumable") == "1.0.0"
    assert head.body == b""


def test_a_created_upload_has_an_empty_body_of_known_length(tus: Tus) -> None:
    reply = tus.request("POST", "/tus", {**V, "Upload-Length": " 5\t"})  # HTTP's whitespace
    assert reply.status == 201
    assert (reply.header("Content-Length"), reply.header("Transfer-Encoding")) == ("0", None)
    assert reply.body == b""


def test_upload_ids_are_random(tus: Tus) -> None:
    ids = {tus.create(1).rsplit("/", 1)[1] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"Upload-Length": "abc"}, "Upload-Length"),
        ({"Upload-Length": "-1"}, "Upload-Length"),
        ({"Upload-Length": "1.5"}, "Upload-Length"),
        ({"Upload-Length": "005"}, "Upload-Length"),
        ({"Upload-Length": "5\xa0"}, "Upload-Length"),
        ({}, "Upload-Length"),
        ({"Upload-Length": "5", "Upload-Defer-Length": "1"}, "Upload-Length"),
        ({"Upload-Defer-Length": "2"}, "Upload-Defer-Length"),
        ({"Upload-Length": "5", "Upload-Metadata": "filename !!notbase64"}, "Upload-Metadata"),
        ({"Upload-Length": "5", "Upload-Metadata": "a YQ==,a YQ=="}, "Upload-Metadata"),
        ({"Upload-Length": "5", "Upload-Metadata": "a b c"}, "Upload-Metadata"),
        ({"Upload-Length": "5", "Upload-Metadata": ",x"}, "Upload-Metadata"),
    ],
)
def test_bad_creation_headers_are_400_naming_them(
    tus: Tus, headers: dict[str, str], named: str
) -> None:
    reply = tus.request("POST", "/tus", {**V, **headers})
    assert reply.status == 400
    assert named.encode() in reply.body
    assert reply.header("Tus-Resumable") == "1.0.0"
    assert partial_names(tus.root) == []


def test_creation_past_max_size_is_413(tus: Tus) -> None:
    reply = tus.request("POST", "/tus", {**V, "Upload-Length": str(MAX + 1)})
    assert reply.status == 413
    assert partial_names(tus.root) == []


def test_empty_upload_is_complete_at_creation(tus: Tus) -> None:
    reply = tus.request("POST", "/tus", {**V, "Upload-Length": "0"})
    assert reply.status == 201
    empty = hashlib.sha256(b"").hexdigest()
    assert reply.header("HashFS-Id") == empty
    assert reply.header("Upload-Offset") == "0"
    assert [u.address.id for u in tus.completed] == [empty]


def test_creation_with_upload(tus: Tus) -> None:
    headers = {**STREAM, "Upload-Length": str(len(DATA))}
    reply = tus.request("POST", "/tus", headers, DATA[:1000])
    assert reply.status == 201
    assert reply.header("Upload-Offset") == "1000"
    url = reply.header("Location") or ""
    assert tus.offset(url) == 1000
    reply = tus.request("POST", "/tus", headers, DATA)
    assert reply.status == 201
    assert reply.header("HashFS-Id") == DATA_ID
    assert reply.header("Location")


def test_creation_with_upload_needs_the_offset_stream_type(tus: Tus) -> None:
    reply = tus.request(
        "POST", "/tus", {**V, "Upload-Length": "3", "Content-Type": "text/plain"}, b"abc"
    )
    assert reply.status == 415
    assert b"Content-Type" in reply.body
    assert partial_names(tus.root) == []


# -- the core: HEAD and PATCH ------------------------------------------------------


def test_upload_in_chunks_stores_the_file(tus: Tus) -> None:
    url = tus.create(
        len(DATA), **{"Upload-Metadata": metadata(filename="a.TXT", filetype="text/x")}
    )
    offset = 0
    for size in (1, 99_999, 100_000, 100_000):
        reply = tus.patch(url, offset, DATA[offset : offset + size])
        assert reply.status == 204, reply
        offset += size
        assert reply.header("Upload-Offset") == str(offset)
        assert reply.header("Tus-Resumable") == "1.0.0"
        if offset < len(DATA):
            assert reply.header("Upload-Expires")
            assert reply.header("HashFS-Id") is None
    relpath = SyncHashFS(tus.root).layout.relpath(DATA_ID, ".txt")
    assert reply.header("HashFS-Id") == DATA_ID
    assert reply.header("HashFS-Relpath") == relpath
    assert reply.header("HashFS-URL") == f"https://cdn.example/files/{relpath}"
    assert reply.header("HashFS-Duplicate") == "0"
    assert (tus.root / relpath).read_bytes() == DATA
    [done] = tus.completed
    assert done.address.id == DATA_ID
    assert not done.address.is_duplicate
    assert done.metadata == {"filename": "a.TXT", "filetype": "text/x"}
    assert (done.filename, done.filetype) == ("a.TXT", "text/x")
    assert done.upload_id == url.rsplit("/", 1)[1]
    # A HEAD of the finished upload still says where it went.
    head = tus.head(url)
    assert head.header("Upload-Offset") == str(len(DATA))
    assert head.header("HashFS-Id") == DATA_ID
    assert head.header("HashFS-URL") == f"https://cdn.example/files/{relpath}"
    # So does a repeated last PATCH (its response was lost), without storing anything again.
    again = tus.patch(url, len(DATA), b"")
    assert again.status == 204
    assert again.header("HashFS-Id") == DATA_ID
    assert len(tus.completed) == 1
    assert stored_files(tus.root) == [relpath]
    assert partial_names(tus.root) == [url.rsplit("/", 1)[1] + ".json"]


def test_a_second_upload_of_the_same_bytes_is_a_duplicate(tus: Tus) -> None:
    for expected in ("0", "1"):
        url = tus.create(len(DATA))
        reply = tus.patch(url, 0, DATA)
        assert reply.header("HashFS-Duplicate") == expected
    assert [u.address.is_duplicate for u in tus.completed] == [False, True]
    assert len(stored_files(tus.root)) == 1


def test_wrong_offset_is_409_and_nothing_is_appended(tus: Tus) -> None:
    url = tus.create(len(DATA))
    assert tus.patch(url, 0, DATA[:10]).status == 204
    for offset in (0, 9, 11, len(DATA)):
        reply = tus.patch(url, offset, DATA[offset : offset + 10])
        assert reply.status == 409
        assert b"Upload-Offset" in reply.body
    assert tus.offset(url) == 10


@pytest.mark.parametrize(
    ("headers", "status", "named"),
    [
        ({"Content-Type": "application/octet-stream"}, 415, "Content-Type"),
        ({"Content-Type": ""}, 415, "Content-Type"),
        ({"Upload-Offset": "x"}, 400, "Upload-Offset"),
        ({"Upload-Offset": "-1"}, 400, "Upload-Offset"),
        ({"Upload-Checksum": "sha1"}, 400, "Upload-Checksum"),
        ({"Upload-Checksum": "crc32 AAAAAA=="}, 400, "Upload-Checksum"),
        ({"Upload-Checksum": "sha1 ***"}, 400, "Upload-Checksum"),
        ({"Upload-Checksum": "sha256 " + b64(b"short")}, 400, "Upload-Checksum"),
        ({"Upload-Length": "ten"}, 400, "Upload-Length"),
    ],
)
def test_bad_patch_headers(tus: Tus, headers: dict[str, str], status: int, named: str) -> None:
    url = tus.create(len(DATA))
    reply = tus.patch(url, 0, DATA[:100], **headers)
    assert reply.status == status
    assert named.encode() in reply.body
    assert reply.header("Tus-Resumable") == "1.0.0"
    assert tus.offset(url) == 0


def test_patch_without_offset_is_400(tus: Tus) -> None:
    url = tus.create(len(DATA))
    reply = tus.request("PATCH", url, STREAM, b"abc")
    assert reply.status == 400
    assert b"Upload-Offset" in reply.body


def test_bytes_past_the_length_are_413_and_nothing_is_appended(tus: Tus) -> None:
    url = tus.create(100)
    assert tus.patch(url, 0, DATA[:50]).status == 204
    reply = tus.patch(url, 50, DATA[:51])
    assert reply.status == 413
    assert tus.offset(url) == 50
    assert tus.patch(url, 50, DATA[:50]).status == 204


def test_bytes_past_max_size_are_413_with_a_deferred_length(tus: Tus) -> None:
    url = tus.create(**{"Upload-Defer-Length": "1"})
    assert tus.patch(url, 0, DATA[:100]).status == 204
    reply = tus.patch(url, 100, os.urandom(MAX))
    assert reply.status == 413
    assert tus.offset(url) == 100


@pytest.mark.parametrize("url", ["/tus/" + "a" * 32, "/tus/nothex", "/tus/" + "A" * 32])
def test_unknown_upload_is_404(tus: Tus, url: str) -> None:
    assert tus.head(url).status == 404
    assert tus.patch(url, 0, b"abc").status == 404
    assert tus.request("DELETE", url, V).status == 404
    assert tus.head(url).header("Upload-Offset") is None


def test_methods_in_the_wrong_place_are_405(tus: Tus) -> None:
    url = tus.create(5)
    assert tus.request("POST", url, {**V, "Upload-Length": "5"}).status == 405
    assert tus.request("PATCH", "/tus", {**STREAM, "Upload-Offset": "0"}, b"a").status == 405
    assert tus.request("HEAD", "/tus", V).status == 405
    assert tus.request("DELETE", "/tus", V).status == 405


# -- extensions ------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5", "sha512"])
def test_checksum_match_and_mismatch(tus: Tus, algorithm: str) -> None:
    url = tus.create(len(DATA))
    chunk = DATA[:1000]
    good = f"{algorithm} {b64(hashlib.new(algorithm, chunk).digest())}"
    bad = f"{algorithm} {b64(hashlib.new(algorithm, chunk + b'x').digest())}"
    reply = tus.patch(url, 0, chunk, **{"Upload-Checksum": bad})
    assert reply.status == 460
    assert b"Upload-Checksum" in reply.body
    assert tus.offset(url) == 0
    assert os.path.getsize(tus.root / ".hashfs-tmp" / "tus" / url.rsplit("/", 1)[1]) == 0
    assert tus.patch(url, 0, chunk, **{"Upload-Checksum": good}).status == 204
    assert tus.offset(url) == 1000
    rest = DATA[1000:]
    reply = tus.patch(
        url,
        1000,
        rest,
        **{"Upload-Checksum": f"{algorithm} {b64(hashlib.new(algorithm, rest).digest())}"},
    )
    assert reply.header("HashFS-Id") == DATA_ID


def test_deferred_length(tus: Tus) -> None:
    reply = tus.request("POST", "/tus", {**V, "Upload-Defer-Length": "1"})
    url = reply.header("Location") or ""
    head = tus.head(url)
    assert head.header("Upload-Defer-Length") == "1"
    assert head.header("Upload-Length") is None
    assert tus.patch(url, 0, DATA[:100]).status == 204
    assert tus.patch(url, 100, DATA[100:200], **{"Upload-Length": "99"}).status == 400
    reply = tus.patch(url, 100, DATA[100:200], **{"Upload-Length": str(len(DATA))})
    assert reply.status == 204
    head = tus.head(url)
    assert head.header("Upload-Length") == str(len(DATA))
    assert head.header("Upload-Defer-Length") is None
    conflict = tus.patch(url, 200, DATA[200:300], **{"Upload-Length": str(len(DATA) + 1)})
    assert conflict.status == 400
    assert b"Upload-Length" in conflict.body
    assert tus.patch(url, 200, DATA[200:]).header("HashFS-Id") == DATA_ID


def test_deferred_length_past_max_size_is_413(tus: Tus) -> None:
    url = tus.create(**{"Upload-Defer-Length": "1"})
    reply = tus.patch(url, 0, b"abc", **{"Upload-Length": str(MAX + 1)})
    assert reply.status == 413
    assert tus.head(url).header("Upload-Defer-Length") == "1"


def test_termination(tus: Tus) -> None:
    url = tus.create(len(DATA))
    tus.patch(url, 0, DATA[:500])
    reply = tus.request("DELETE", url, V)
    assert reply.status == 204
    assert reply.header("Tus-Resumable") == "1.0.0"
    assert tus.head(url).status == 404
    assert tus.patch(url, 500, DATA[500:]).status == 404
    assert tus.request("DELETE", url, V).status == 404
    assert partial_names(tus.root) == []


def test_termination_of_a_finished_upload_keeps_the_file(tus: Tus) -> None:
    url = tus.create(len(DATA))
    tus.patch(url, 0, DATA)
    assert tus.request("DELETE", url, V).status == 204
    assert tus.head(url).status == 404
    assert len(stored_files(tus.root)) == 1


def wait_for_expiry(tus: Tus, url: str) -> None:
    deadline = time.monotonic() + 30
    while tus.head(url).status != 410:
        assert time.monotonic() < deadline, "the upload did not expire"
        time.sleep(0.05)


def test_expired_upload_is_410_then_collected_by_gc(make_tus: Callable[..., Tus]) -> None:
    tus = make_tus(HASHFS_TUS_EXPIRY=1)
    expired = tus.create(len(DATA))
    assert tus.patch(expired, 0, DATA[:1234]).status == 204
    done = tus.create(len(DATA))
    assert tus.patch(done, 0, DATA).status == 204
    wait_for_expiry(tus, expired)
    assert tus.patch(expired, 1234, DATA[1234:]).status == 410
    wait_for_expiry(tus, done)  # a finished upload's record expires as well
    fresh = make_tus(HASHFS_TUS_EXPIRY=3600).create(len(DATA))
    report = SyncHashFS(tus.root).gc()
    ids = sorted(u.rsplit("/", 1)[1] for u in (expired, done))
    assert sorted(report.partial_uploads) == ids
    assert report.partial_bytes == 1234
    assert partial_names(tus.root) == sorted(
        [fresh.rsplit("/", 1)[1], fresh.rsplit("/", 1)[1] + ".json"]
    )
    assert tus.head(expired).status == 404
    assert len(stored_files(tus.root)) == 1  # the finished upload's file stays


def test_an_upload_receiving_bytes_past_its_expiry_is_not_410(
    make_tus: Callable[..., Tus],
) -> None:
    tus = make_tus(HASHFS_TUS_EXPIRY=1)
    url = tus.create(len(DATA))
    upload_id = url.rsplit("/", 1)[1]
    record = tus.root / ".hashfs-tmp" / "tus" / (upload_id + ".json")
    record.write_text(json.dumps({**json.loads(record.read_text()), "expires": time.time() - 5}))
    assert tus.head(url).status == 410
    with tus.partials.open_append(upload_id, 0) as append:  # a long PATCH, bytes arriving
        append.write(DATA[:1000])
        assert tus.head(url).status == 200
        append.commit(time.time() + 60)
    assert tus.offset(url) == 1000


def test_no_expiry(make_tus: Callable[..., Tus]) -> None:
    tus = make_tus(HASHFS_TUS_EXPIRY=None)
    reply = tus.request("POST", "/tus", {**V, "Upload-Length": "10"})
    assert reply.header("Upload-Expires") is None
    assert tus.patch(reply.header("Location") or "", 0, b"12345").header("Upload-Expires") is None
    assert SyncHashFS(tus.root).gc().partial_uploads == []


def test_method_override(tus: Tus) -> None:
    url = tus.create(len(DATA))
    reply = tus.request(
        "POST", url, {**STREAM, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}, DATA
    )
    assert reply.status == 204
    assert reply.header("HashFS-Id") == DATA_ID
    other = tus.create(10)
    assert tus.request("POST", other, {**V, "X-HTTP-Method-Override": "DELETE"}).status == 204
    assert tus.head(other).status == 404


def test_method_override_only_on_post(tus: Tus) -> None:
    url = tus.create(10)
    # A HEAD or OPTIONS that terminates or appends would slip past guards on request.method.
    reply = tus.request("HEAD", url, {**V, "X-HTTP-Method-Override": "DELETE"})
    assert reply.status == 200
    assert tus.offset(url) == 0
    reply = tus.request(
        "OPTIONS", url, {**STREAM, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}
    )
    assert (reply.status, reply.header("Tus-Version")) == (204, "1.0.0")
    assert tus.offset(url) == 0


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("POST", "/tus", [("Upload-Length", "5"), ("Upload-Length", "6")]),
        ("POST", "/tus", [("Upload-Length", "5"), ("Upload-Length", "5")]),
        (
            "POST",
            "/tus",
            [("Upload-Length", "5"), ("Upload-Metadata", "a YQ=="), ("Upload-Metadata", "b Yg==")],
        ),
        ("POST", "/tus", [("Upload-Length", "5"), ("Tus-Resumable", "1.0.0")]),
        ("PATCH", "upload", [("Upload-Offset", "0"), ("Upload-Offset", "2")]),
    ],
)
def test_a_header_given_twice_is_400_naming_it(
    tus: Tus, method: str, target: str, headers: list[tuple[str, str]]
) -> None:
    if tus.framework == "flask" and headers[-1][0] == "Upload-Metadata":
        pytest.skip("WSGI joins repeated headers with commas: two metadata lists read as one")
    url = tus.create(10)
    base = [("Tus-Resumable", "1.0.0")]
    if method == "PATCH":
        base.append(("Content-Type", "application/offset+octet-stream"))
    sent: Any = base + headers
    reply = tus.send(method, url if target == "upload" else target, sent, b"")
    assert reply.status == 400, reply
    assert reply.header("Tus-Resumable") == "1.0.0"
    named = next(n for n, _ in headers if sum(h == n for h, _ in base + headers) > 1)
    assert named.encode() in reply.body
    assert tus.offset(url) == 0


def test_a_refused_patch_declares_no_length(tus: Tus) -> None:
    url = tus.create(**{"Upload-Defer-Length": "1"})
    wrong = {"Upload-Checksum": "sha1 " + b64(hashlib.sha1(b"other").digest())}
    reply = tus.patch(url, 0, DATA[:8], **{"Upload-Length": "8"}, **wrong)
    assert reply.status == 460
    head = tus.head(url)
    assert (head.header("Upload-Defer-Length"), head.header("Upload-Length")) == ("1", None)
    reply = tus.patch(url, 0, DATA[:9], **{"Upload-Length": "9"})
    assert reply.status == 204
    assert reply.header("HashFS-Id") == hashlib.sha256(DATA[:9]).hexdigest()


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/tus"),
        ("PUT", "/tus"),
        ("GET", "upload"),
        ("HEAD", "upload/"),
        ("PATCH", "upload/more"),
        ("DELETE", "/tus/../tus"),
    ],
)
def test_every_answer_under_the_prefix_has_tus_resumable(
    tus: Tus, method: str, target: str
) -> None:
    url = tus.create(10)
    target = target.replace("upload", url)
    reply = tus.request(method, target, {**STREAM, "Upload-Offset": "0"})
    assert reply.status in (404, 405), reply
    assert reply.header("Tus-Resumable") == "1.0.0"
    assert tus.offset(url) == 0


def test_an_authorize_hook_that_raises_is_500_with_tus_resumable(tus: Tus) -> None:
    url = tus.create(10)
    tus.allow["resume"] = RuntimeError("the session store is down")
    reply = tus.head(url)
    assert reply.status == 500
    assert reply.header("Tus-Resumable") == "1.0.0"
    reply = tus.patch(url, 0, b"12345")
    assert (reply.status, reply.header("Tus-Resumable")) == (500, "1.0.0")
    assert b"RuntimeError" in reply.body
    tus.allow.clear()
    assert tus.offset(url) == 0


# -- locks, restarts, hooks --------------------------------------------------------------


def test_a_second_patch_while_one_runs_is_423(tus: Tus) -> None:
    url = tus.create(len(DATA))
    upload_id = url.rsplit("/", 1)[1]
    with tus.partials.open_append(upload_id, 0) as append:
        append.write(DATA[:10])
        reply = tus.patch(url, 0, DATA[:10])
        assert reply.status == 423
        assert tus.request("DELETE", url, V).status == 423
        append.commit()
    assert tus.offset(url) == 10


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from async_hashfs import SyncHashFS
    from async_hashfs._tus_store import UploadLocked, partial_store
    root, upload_id, offset, atomic = sys.argv[1:]
    offset, atomic = int(offset), atomic == "1"
    append = partial_store(SyncHashFS(root)._engine).open_append(upload_id, offset, atomic=atomic)
    append.write(b"x" * 5000)
    print("holding", flush=True)
    time.sleep(60)
    """
)


def _hold(root: Path, upload_id: str, offset: int, atomic: bool) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root), upload_id, str(offset), "1" if atomic else "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    return holder


def _kill(holder: subprocess.Popen[str]) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder.stdout is not None
    holder.stdout.close()


#: Without flock (Windows, or the masked run) uploads are locked only within one process.
needs_flock = pytest.mark.skipif(
    bool(os.environ.get(MASK_VARIABLE)), reason="no flock: locks only within one process"
)


@needs_flock
def test_the_lock_holds_across_processes_and_dies_with_its_holder(tus: Tus) -> None:
    url = tus.create(len(DATA))
    upload_id = url.rsplit("/", 1)[1]
    holder = _hold(tus.root, upload_id, 0, atomic=False)
    try:
        assert tus.patch(url, 0, DATA[:10]).status == 423
        assert tus.patch(url, 5000, DATA[:10]).status == 423
        assert tus.request("DELETE", url, V).status == 423
    finally:
        _kill(holder)
    # Killed midway: what it wrote counts (tus: keep as much as was received).
    assert tus.offset(url) == 5000
    assert tus.patch(url, 5000, DATA[:10]).status == 204


@needs_flock
def test_an_atomic_append_killed_midway_is_rolled_back(tus: Tus) -> None:
    url = tus.create(len(DATA))
    upload_id = url.rsplit("/", 1)[1]
    tus.patch(url, 0, DATA[:100])
    holder = _hold(tus.root, upload_id, 100, atomic=True)
    try:
        assert tus.offset(url) == 100  # the pending bytes do not count
    finally:
        _kill(holder)
    assert tus.offset(url) == 100
    reply = tus.patch(url, 100, DATA[100:])
    assert reply.header("HashFS-Id") == DATA_ID
    assert SyncHashFS(tus.root).verify(DATA_ID)


def test_resume_after_a_restart_rehashes_the_partial_once(
    make_tus: Callable[..., Tus], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_tus()
    url = first.create(len(DATA))
    first.patch(url, 0, DATA[:123_456])
    restarted = make_tus()  # a new app: a new store, no hash kept in memory
    reads: list[int] = []
    real = tus_local._read_at

    def counting(fd: int, view: memoryview, position: int) -> int:
        n = real(fd, view, position)
        reads.append(n)
        return n

    monkeypatch.setattr(tus_local, "_read_at", counting)
    assert restarted.offset(url) == 123_456
    assert restarted.patch(url, 123_456, DATA[123_456:200_000]).status == 204
    assert sum(reads) == 123_456
    reply = restarted.patch(url, 200_000, DATA[200_000:])
    assert sum(reads) == 123_456  # re-hashed once, not again
    assert reply.header("HashFS-Id") == DATA_ID
    assert (restarted.root / (reply.header("HashFS-Relpath") or "")).read_bytes() == DATA


def _complete_but_unstored(tus: Tus, data: bytes = DATA, name: str = "a.txt") -> str:
    """An upload whose server died between its last byte and storing it: its URL."""
    url = tus.create(len(data), **{"Upload-Metadata": metadata(filename=name)})
    upload_id = url.rsplit("/", 1)[1]
    with tus.partials.open_append(upload_id, 0) as append:
        append.write(data)
        assert append.commit().address is None  # committed, not stored (no extension)
    return url


def test_head_stores_a_complete_upload_left_unstored_and_runs_the_hook_once(tus: Tus) -> None:
    url = _complete_but_unstored(tus)
    reply = tus.head(url)
    assert reply.status == 200
    assert reply.header("Upload-Offset") == str(len(DATA))
    assert reply.header("HashFS-Id") == DATA_ID
    assert (reply.header("HashFS-Relpath") or "").endswith(".txt")
    assert SyncHashFS(tus.root).verify(DATA_ID)
    assert [(c.address.id, c.filename) for c in tus.completed] == [(DATA_ID, "a.txt")]
    assert tus.head(url).header("HashFS-Id") == DATA_ID
    assert len(tus.completed) == 1  # not again


def test_head_of_a_complete_upload_another_request_holds_is_423(tus: Tus) -> None:
    url = _complete_but_unstored(tus)
    with tus.partials.open_append(url.rsplit("/", 1)[1], len(DATA)) as holder:
        reply = tus.head(url)  # not a 200 without an address: a client takes that for done
        assert (reply.status, reply.header("Tus-Resumable")) == (423, "1.0.0")
        holder.abort()
    assert tus.head(url).header("HashFS-Id") == DATA_ID


def test_patch_at_the_end_stores_a_complete_upload_left_unstored(tus: Tus) -> None:
    url = _complete_but_unstored(tus)
    assert tus.patch(url, 0, b"").status == 409
    reply = tus.patch(url, len(DATA), b"")
    assert reply.status == 204
    assert reply.header("HashFS-Id") == DATA_ID
    assert len(tus.completed) == 1
    assert tus.patch(url, len(DATA), b"").header("HashFS-Id") == DATA_ID
    assert len(tus.completed) == 1


def test_gc_stores_a_complete_upload_left_unstored_even_past_its_expiry(
    make_tus: Callable[..., Tus],
) -> None:
    tus = make_tus(HASHFS_TUS_EXPIRY=1)
    url = _complete_but_unstored(tus)
    upload_id = url.rsplit("/", 1)[1]
    record = tus.root / ".hashfs-tmp" / "tus" / (upload_id + ".json")
    record.write_text(json.dumps({**json.loads(record.read_text()), "expires": time.time() - 5}))
    report = SyncHashFS(tus.root).gc()
    assert report.partial_uploads == []
    assert SyncHashFS(tus.root).verify(DATA_ID)
    assert stored_files(tus.root)[0].endswith(".txt")
    # The hook had not run: the client's next request runs it.
    assert tus.completed == []
    assert tus.head(url).status == 410  # the finished record is past its expiry


def _block_the_shard(root: Path, id: str) -> Path:
    blocker = root / id[0]
    blocker.write_bytes(b"")  # a file where the first shard folder goes
    return blocker


def test_a_failure_while_storing_is_500_with_tus_headers_and_a_retry_stores_it(
    tus: Tus,
) -> None:
    url = tus.create(len(DATA))
    blocker = _block_the_shard(tus.root, DATA_ID)
    reply = tus.patch(url, 0, DATA)
    assert reply.status == 500
    assert reply.header("Tus-Resumable") == "1.0.0"
    assert b"bytes are kept" in reply.body
    assert tus.completed == []
    head = tus.head(url)  # still blocked: HEAD tries again, and says it failed
    assert (head.status, head.header("Tus-Resumable")) == (500, "1.0.0")
    blocker.unlink()
    reply = tus.patch(url, len(DATA), b"")
    assert (reply.status, reply.header("HashFS-Id")) == (204, DATA_ID)
    assert SyncHashFS(tus.root).verify(DATA_ID)
    assert [c.address.id for c in tus.completed] == [DATA_ID]


def test_a_full_disk_while_storing_is_507_and_the_bytes_stay(
    tus: Tus, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tus.create(len(DATA))
    engine = tus.partials.engine
    real = type(engine).commit_hashed

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(engine), "commit_hashed", full)
    reply = tus.patch(url, 0, DATA)
    assert reply.status == 507
    assert reply.header("Tus-Resumable") == "1.0.0"
    assert b"bytes kept" in reply.body and b"nothing was appended" not in reply.body
    monkeypatch.setattr(type(engine), "commit_hashed", real)
    head = tus.head(url)
    assert (head.header("Upload-Offset"), head.header("HashFS-Id")) == (str(len(DATA)), DATA_ID)
    assert len(tus.completed) == 1


def test_a_disk_full_mid_patch_is_507_and_says_the_bytes_are_kept(
    tus: Tus, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tus.create(len(DATA))
    real = tus_local._write_all

    def fills_up(fd: int, data: Any) -> None:
        real(fd, memoryview(data)[:1000])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tus_local, "_write_all", fills_up)
    reply = tus.patch(url, 0, DATA)
    assert reply.status == 507
    assert reply.header("Tus-Resumable") == "1.0.0"
    assert b"nothing was appended" not in reply.body and b"bytes kept" in reply.body
    monkeypatch.setattr(tus_local, "_write_all", real)
    offset = tus.offset(url)
    assert offset == 1000  # kept, as the answer says
    assert tus.patch(url, offset, DATA[offset:]).header("HashFS-Id") == DATA_ID


def test_a_failing_completion_hook_is_500_and_runs_again_until_it_succeeds(tus: Tus) -> None:
    tus.hook_failures = 2
    url = tus.create(len(DATA))
    reply = tus.patch(url, 0, DATA)
    assert reply.status == 500
    assert reply.header("Tus-Resumable") == "1.0.0"
    assert b"completion hook failed" in reply.body and DATA_ID.encode() in reply.body
    assert reply.header("HashFS-Id") == DATA_ID
    assert SyncHashFS(tus.root).verify(DATA_ID)  # the file is stored all the same
    assert tus.patch(url, len(DATA), b"").status == 500  # the hook ran again, and failed again
    reply = tus.head(url)
    assert (reply.status, reply.header("HashFS-Id")) == (200, DATA_ID)
    assert [c.address.id for c in tus.completed] == [DATA_ID]
    assert tus.head(url).status == 200
    assert tus.patch(url, len(DATA), b"").status == 204
    assert len(tus.completed) == 1  # at least once, and once it succeeded no more


def test_a_hook_run_again_first_makes_its_file_new_or_answers_410(tus: Tus) -> None:
    # The hook failed, so no row names the file: a sweep may take it before the retry.
    fs = SyncHashFS(tus.root)
    tus.hook_failures = 1
    url = tus.create(len(DATA))
    assert tus.patch(url, 0, DATA).status == 500
    address = fs.get(DATA_ID)
    assert address is not None
    old = time.time() - 7200
    os.utime(address.abspath, (old, old))
    assert tus.head(url).status == 200  # the hook ran again, and its file is new again
    assert [c.address.id for c in tus.completed] == [DATA_ID]
    assert os.stat(address.abspath).st_mtime > old + 3600

    tus.hook_failures = 1
    url = tus.create(len(DATA))
    assert tus.patch(url, 0, DATA).status == 500
    fs.delete(DATA_ID)  # swept while no row named it
    reply = tus.head(url)
    assert reply.status == 410 and reply.header("Tus-Resumable") == "1.0.0"
    reply = tus.patch(url, len(DATA), b"")
    assert reply.status == 410 and b"upload it again" in reply.body
    assert [c.address.id for c in tus.completed] == [DATA_ID]  # not run for a file that is gone


def test_an_upload_taken_over_mid_patch_is_423_not_500(
    tus: Tus, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tus.create(len(DATA))

    def lost(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.abort()
        raise UploadLocked(self._id)

    monkeypatch.setattr(tus_local._LocalAppend, "commit", lost)
    reply = tus.patch(url, 0, DATA[:10])
    assert reply.status == 423
    assert reply.header("Tus-Resumable") == "1.0.0"


def test_authorize_hook(tus: Tus) -> None:
    url = tus.create(len(DATA))
    tus.allow.update(create=False, resume=False, terminate=False)
    assert tus.request("POST", "/tus", {**V, "Upload-Length": "5"}).status == 403
    assert tus.head(url).status == 403
    assert tus.patch(url, 0, DATA[:10]).status == 403
    assert tus.request("DELETE", url, V).status == 403
    tus.allow.update(create=401, resume=None)
    assert tus.request("POST", "/tus", {**V, "Upload-Length": "5"}).status == 401
    assert tus.head(url).status == 403  # only True allows
    assert tus.request("OPTIONS", "/tus").status == 204  # discovery needs no permission
    tus.allow.clear()
    assert tus.offset(url) == 0
    assert partial_names(tus.root) == sorted(
        [url.rsplit("/", 1)[1], url.rsplit("/", 1)[1] + ".json"]
    )


def test_cli_stats_and_gc_count_partial_uploads_apart(make_tus: Callable[..., Tus]) -> None:
    tus = make_tus(HASHFS_TUS_EXPIRY=1)
    url = tus.create(len(DATA))
    assert tus.patch(url, 0, DATA[:777]).status == 204
    runner = CliRunner()
    stats = json.loads(runner.invoke(cli, ["--root", str(tus.root), "stats", "--json"]).output)
    assert stats["count"] == 0
    assert stats["partial_uploads"] == {"count": 1, "bytes": 777}
    wait_for_expiry(tus, url)
    result = runner.invoke(cli, ["--root", str(tus.root), "gc"])
    assert "removed 1 expired resumable uploads (777 bytes)" in result.output
    gc = json.loads(runner.invoke(cli, ["--root", str(tus.root), "gc", "--json"]).output)
    assert gc["partial_uploads"] == []


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HASHFS_TUS_PREFIX", "tus"),
        ("HASHFS_TUS_PREFIX", "/"),
        ("HASHFS_TUS_PREFIX", 5),
        ("HASHFS_TUS_PREFIX", "/t us"),
        ("HASHFS_TUS_PREFIX", "/files"),
        ("HASHFS_TUS_EXPIRY", 0),
        ("HASHFS_TUS_EXPIRY", -1),
        ("HASHFS_TUS_EXPIRY", "3600"),
        ("HASHFS_TUS_EXPIRY", True),
        ("HASHFS_TUS_EXPIRY", float("inf")),
        ("HASHFS_TUS_IDLE_TIMEOUT", 0),
        ("HASHFS_TUS_IDLE_TIMEOUT", "60"),
        ("HASHFS_TUS_EXPIRY", float("nan")),
    ],
)
@pytest.mark.parametrize("framework", [Flask, Quart])
def test_bad_tus_settings_name_the_key(root: Path, framework: Any, key: str, value: Any) -> None:
    app = framework(__name__)
    app.config.update(_config(root, HASHFS_SERVE=True), **{key: value})
    extension = FlaskHashFS if framework is Flask else __import__("async_hashfs").QuartHashFS
    with pytest.raises(ValueError, match=key):
        extension(app)


def test_tus_is_off_by_default(root: Path) -> None:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root))
    FlaskHashFS(app)
    assert app.test_client().options("/tus").status_code == 404
    assert not any(r.endpoint.startswith("hashfs_tus") for r in app.url_map.iter_rules())


def test_max_content_length_does_not_cut_tus_bodies(make_tus: Callable[..., Tus]) -> None:
    tus = make_tus(MAX_CONTENT_LENGTH=1000)
    url = tus.create(len(DATA))
    reply = tus.patch(url, 0, DATA)
    assert reply.status == 204
    assert reply.header("HashFS-Id") == DATA_ID


@pytest.mark.parametrize("framework", ["flask", "quart"])
def test_an_app_before_request_can_guard_the_endpoint(
    root: Path, portal: BlockingPortal, framework: str
) -> None:
    tus = flask_tus(root) if framework == "flask" else quart_tus(portal, root)
    app = tus.app

    def guard() -> Any:
        from flask import request as flask_request
        from quart import request as quart_request

        request = flask_request if framework == "flask" else quart_request
        guarded = request.endpoint in ("hashfs_tus", "hashfs_tus_upload")
        if guarded and request.headers.get("Authorization") != "Bearer ok":
            abort(401)
        return None

    app.before_request(guard)
    assert tus.request("POST", "/tus", {**V, "Upload-Length": "5"}).status == 401
    ok = {"Authorization": "Bearer ok"}
    reply = tus.request("POST", "/tus", {**V, **ok, "Upload-Length": "5"})
    assert reply.status == 201
    assert tus.request("HEAD", reply.header("Location") or "", V).status == 401
