"""The tus endpoint end to end: ``tuspy`` against Hypercorn (Quart) and gunicorn (Flask).

Each server runs in its own process group on 127.0.0.1, so a test can
SIGKILL the whole server (gunicorn's master and workers together) midway
and start it again on the same port and root, as a crash and a restart do.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from async_hashfs import SyncHashFS

from .conftest import stored_files

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
TESTS = Path(__file__).resolve().parent
V = {"Tus-Resumable": "1.0.0"}
STREAM = {**V, "Content-Type": "application/offset+octet-stream"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class Server:
    """A tus server process (group) on ``root``; ``start`` again after ``kill``."""

    def __init__(self, kind: str, root: Path, **env: str) -> None:
        self.kind = kind
        self.root = root
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent / "src")]),
            "TUS_ROOT": str(root),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root.parent / f"{kind}.log"

    def command(self) -> list[str]:
        if self.kind == "hypercorn":
            return [
                sys.executable,
                str(TESTS / "tus_server.py"),
                "quart",
                str(self.root),
                str(self.port),
            ]
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{HOST}:{self.port}",
            "--workers",
            "2",
            "--timeout",
            "300",
            "--chdir",
            str(TESTS),
            "--log-level",
            "warning",
            "tus_server:flask_from_env()",
        ]

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.options(f"{self.url}/tus", timeout=2).status_code == 204:
                    return
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the server and every process it started."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def completed(self) -> list[dict[str, Any]]:
        path = self.root.parent / "completed.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(params=["hypercorn", "gunicorn"])
def make_server(request: pytest.FixtureRequest, root: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(**env: str) -> Server:
        server = Server(str(request.param), root, **env)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    return make_server()


def random_file(path: Path, size: int, seed: int = 0) -> str:
    """Write ``size`` pseudo-random bytes to ``path``; return their sha256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        left = size
        while left:
            block = rng.randbytes(min(left, 1 << 22))
            digest.update(block)
            file.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


_open_files: list[Any] = []


@pytest.fixture(autouse=True)
def _close_files() -> Iterator[None]:
    yield
    while _open_files:
        _open_files.pop().close()


def uploader(server: Server, path: Path, **options: Any) -> Any:
    """A tuspy uploader of ``path`` (given as a stream we close: tuspy leaves a path's open)."""
    client = tus_client.TusClient(f"{server.url}/tus")
    stream = open(path, "rb")  # noqa: SIM115
    _open_files.append(stream)
    return client.uploader(
        file_stream=stream, metadata={"filename": path.name, "filetype": "x/test"}, **options
    )


def final_headers(upload: Any) -> dict[str, str]:
    return dict(upload.request.response_headers)


def check_stored(server: Server, headers: dict[str, str], digest: str, source: Path) -> None:
    assert headers["hashfs-id"] == digest
    relpath = headers["hashfs-relpath"]
    assert relpath.endswith(".bin")
    assert headers["hashfs-url"] == f"{server.url}/files/{relpath}"
    stored = server.root / relpath
    assert stored.stat().st_size == source.stat().st_size
    assert sha256_of(stored) == digest


#: Set by ``python3 dev.py test``: the 384 MiB uploads run there, once per CI run, rather
#: than on every Python nox tests.
BIG = "HASHFS_BIG_TESTS"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(BIG), reason=f"384 MiB: runs with {BIG}=1 (dev.py test)")
@pytest.mark.timeout(300)
def test_384_mib_upload_with_default_chunking(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    digest = random_file(source, 384 << 20)
    upload = uploader(server, source)  # tuspy's default: the whole file in one PATCH
    upload.upload()
    check_stored(server, final_headers(upload), digest, source)
    [done] = server.completed()
    assert done["id"] == digest
    assert done["metadata"] == {"filename": "big.bin", "filetype": "x/test"}
    assert not done["is_duplicate"]
    assert os.listdir(server.root / ".hashfs-tmp" / "tus") == [
        upload.url.rsplit("/", 1)[1] + ".json"
    ]


def _partial_size(root: Path, upload_id: str) -> int:
    try:
        return (root / ".hashfs-tmp" / "tus" / upload_id).stat().st_size
    except FileNotFoundError:
        return -1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_server_killed_at_random_points_and_resumed(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    size = 96 << 20
    source = tmp_path / "resumed.bin"
    digest = random_file(source, size, seed=1)
    server = make_server()
    rng = random.Random(42)
    upload = uploader(server, source, chunk_size=4 << 20)
    upload.set_url(upload.create_url())
    upload_id = upload.url.rsplit("/", 1)[1]
    offsets = []
    for _ in range(3):  # three kills, then an undisturbed finish
        target = rng.randrange(upload.offset + (1 << 20), upload.offset + (24 << 20))
        failures: list[BaseException] = []

        def run(upload: Any = upload, failures: list[BaseException] = failures) -> None:
            try:
                upload.upload()
            except (TusCommunicationError, TusUploadFailed, OSError) as exc:
                failures.append(exc)
            except Exception as exc:  # requests' own errors
                failures.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 120
        while _partial_size(server.root, upload_id) < target and thread.is_alive():
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert thread.is_alive(), "the upload finished before the kill"
        server.kill()
        thread.join(60)
        assert not thread.is_alive()
        assert failures, "the client did not notice the kill"
        server.start()
        # Resume as a client that lost everything but the upload URL does: HEAD, then PATCH.
        upload = uploader(server, source, chunk_size=4 << 20, url=upload.url)
        offsets.append(upload.offset)
        assert upload.offset >= target  # what arrived before the kill was kept
    upload.upload()
    assert offsets == sorted(offsets)
    check_stored(server, final_headers(upload), digest, source)
    assert [d["id"] for d in server.completed()] == [digest]


def kill_while_storing(server: Server, upload: Any, marker: Path) -> list[BaseException]:
    """Send ``upload`` to a server started with ``TUS_HANG_STORING=marker``; kill the server
    once every byte is in and storing has begun. Returns what the client raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            upload.upload()
        except Exception as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the server never began storing"
        time.sleep(0.01)
    server.kill()
    thread.join(60)
    assert not thread.is_alive()
    return failures


@pytest.mark.timeout(180)
def test_server_killed_between_the_last_byte_and_storing_then_resumed(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    source = tmp_path / "last.bin"
    digest = random_file(source, 3 << 20, seed=5)
    marker = tmp_path / "storing"
    server = make_server(TUS_HANG_STORING=str(marker))
    upload = uploader(server, source)
    upload.set_url(upload.create_url())
    failures = kill_while_storing(server, upload, marker)
    assert failures, "the client did not notice the kill"
    del server.env["TUS_HANG_STORING"]
    server.start()
    # tuspy resumes: its HEAD finds every byte in, so it sends nothing more.
    resumed = uploader(server, source, url=upload.url)
    assert resumed.offset == source.stat().st_size
    resumed.upload()
    reply = httpx.head(resumed.url, headers=V)
    assert reply.status_code == 200
    check_stored(server, {k.lower(): v for k, v in reply.headers.items()}, digest, source)
    assert [(d["id"], d["upload_id"]) for d in server.completed()] == [
        (digest, upload.url.rsplit("/", 1)[1])
    ]
    assert len(server.completed()) == 1  # the hook ran once


@pytest.mark.timeout(180)
def test_concurrent_uploads_of_the_same_file(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "same.bin"
    digest = random_file(source, 8 << 20, seed=2)
    results: list[dict[str, str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upload = uploader(server, source, chunk_size=1 << 20)
            upload.upload()
            results.append(final_headers(upload))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert sorted(h["hashfs-duplicate"] for h in results) == ["0", "1", "1", "1"]
    for headers in results:
        check_stored(server, headers, digest, source)
    assert len(stored_files(server.root)) == 1
    done = server.completed()
    assert [d["is_duplicate"] for d in done].count(False) == 1
    assert len(done) == 4


class _Gate:
    """A request body that sends ``first``, waits to be opened, then sends ``rest``."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first = first
        self.rest = rest
        self.sent = threading.Event()
        self.open = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        self.sent.set()
        assert self.open.wait(60)
        yield self.rest


@pytest.mark.timeout(120)
def test_two_patches_at_once_never_interleave(server: Server, root: Path) -> None:
    data = os.urandom(3 << 20)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        created = client.post("/tus", headers={**V, "Upload-Length": str(len(data))})
        url = created.headers["Location"]
        upload_id = url.rsplit("/", 1)[1]
        gate = _Gate(data[: 1 << 20], data[1 << 20 : 2 << 20])
        first: list[httpx.Response] = []
        headers = {**STREAM, "Upload-Offset": "0", "Content-Length": str(2 << 20)}
        thread = threading.Thread(
            target=lambda: first.append(client.patch(url, content=gate, headers=headers))
        )
        thread.start()
        assert gate.sent.wait(30)
        deadline = time.monotonic() + 30
        while _partial_size(root, upload_id) < 1:  # the first PATCH holds the upload
            assert time.monotonic() < deadline
            time.sleep(0.005)
        for offset in ("0", str(_partial_size(root, upload_id))):
            second = client.patch(
                url, content=data[:1000], headers={**STREAM, "Upload-Offset": offset}
            )
            assert second.status_code in (409, 423), second
        gate.open.set()
        thread.join(60)
        assert first[0].status_code == 204
        assert first[0].headers["Upload-Offset"] == str(2 << 20)
        last = client.patch(
            url, content=data[2 << 20 :], headers={**STREAM, "Upload-Offset": str(2 << 20)}
        )
        assert last.headers["HashFS-Id"] == hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(120)
def test_chunked_body_past_the_length_is_413_with_nothing_appended(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        url = client.post("/tus", headers={**V, "Upload-Length": "100000"}).headers["Location"]
        assert client.patch(url, content=b"a" * 10, headers={**STREAM, "Upload-Offset": "0"})

        def body() -> Iterator[bytes]:  # no Content-Length: sent chunked
            for _ in range(20):
                yield b"b" * 10_000

        reply = client.patch(url, content=body(), headers={**STREAM, "Upload-Offset": "10"})
        assert reply.status_code == 413
        assert client.head(url, headers=V).headers["Upload-Offset"] == "10"


@pytest.mark.timeout(120)
def test_checksums_through_the_server(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "summed.bin"
    digest = random_file(source, 3 << 20, seed=3)
    upload = uploader(server, source, chunk_size=1 << 20, upload_checksum=True)
    upload.upload()
    check_stored(server, final_headers(upload), digest, source)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        url = client.post("/tus", headers={**V, "Upload-Length": "10"}).headers["Location"]
        wrong = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
        reply = client.patch(
            url,
            content=b"0123456789",
            headers={**STREAM, "Upload-Offset": "0", "Upload-Checksum": f"sha1 {wrong}"},
        )
        assert reply.status_code == 460
        assert client.head(url, headers=V).headers["Upload-Offset"] == "0"


@pytest.mark.timeout(120)
def test_termination_through_the_server(server: Server, tmp_path: Path) -> None:
    source = tmp_path / "ended.bin"
    random_file(source, 2 << 20, seed=4)
    upload = uploader(server, source, chunk_size=1 << 20)
    upload.upload(stop_at=1 << 20)
    assert upload.offset == 1 << 20
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.delete(upload.url, headers=V).status_code == 204
        assert client.head(upload.url, headers=V).status_code == 404
    assert os.listdir(server.root / ".hashfs-tmp" / "tus") == []
    with pytest.raises(TusUploadFailed):
        upload.upload()


@pytest.mark.timeout(120)
def test_expired_uploads_are_collected_by_gc(
    make_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = make_server(TUS_EXPIRY="0.5")
    source = tmp_path / "left.bin"
    random_file(source, 2 << 20, seed=5)
    upload = uploader(server, source, chunk_size=1 << 20)
    upload.upload(stop_at=1 << 20)
    expires = httpx.head(upload.url, headers=V).headers["Upload-Expires"]
    assert expires.endswith(" GMT")
    deadline = time.monotonic() + 30
    while httpx.head(upload.url, headers=V).status_code != 410:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    report = SyncHashFS(server.root).gc()
    assert report.partial_uploads == [upload.url.rsplit("/", 1)[1]]
    assert report.partial_bytes == 1 << 20
    assert httpx.head(upload.url, headers=V).status_code == 404
    assert not (server.root / ".hashfs-tmp").exists()


@pytest.mark.timeout(120)
def test_a_stalled_patch_lets_go_of_its_upload_after_the_idle_timeout(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(TUS_CONFIG=json.dumps({"HASHFS_TUS_IDLE_TIMEOUT": 1}))
    if server.kind == "gunicorn":
        pytest.skip("a sync WSGI worker blocks in the read: gunicorn's --timeout applies")
    data = os.urandom(1 << 20)
    url = httpx.post(f"{server.url}/tus", headers={**V, "Upload-Length": str(len(data))}).headers[
        "Location"
    ]
    upload_id = url.rsplit("/", 1)[1]
    # A client whose network dies: 300 kB of the body, then nothing, the connection open.
    stalled = socket.create_connection((HOST, server.port))
    try:
        stalled.sendall(
            (
                f"PATCH {url} HTTP/1.1\r\nHost: {HOST}\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data[:300_000]
        )
        deadline = time.monotonic() + 30
        while _partial_size(server.root, upload_id) < 300_000:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        while True:  # 423 while the stalled PATCH holds it, then it is let go
            reply = httpx.patch(
                f"{server.url}{url}",
                content=data[300_000:],
                headers={**STREAM, "Upload-Offset": "300000"},
            )
            if reply.status_code != 423:
                break
            assert time.monotonic() < deadline, "the stalled PATCH kept the upload"
            time.sleep(0.1)
        assert reply.status_code == 204, reply.text
        assert reply.headers["HashFS-Id"] == hashlib.sha256(data).hexdigest()
    finally:
        stalled.close()


def test_the_creation_answer_is_an_empty_body_of_known_length(server: Server) -> None:
    reply = httpx.post(f"{server.url}/tus", headers={**V, "Upload-Length": "5"})
    assert reply.status_code == 201
    assert reply.headers.get("Content-Length") == "0"
    assert "Transfer-Encoding" not in reply.headers


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chunked", [False, True])
def test_a_client_that_goes_away_keeps_what_it_sent(server: Server, chunked: bool) -> None:
    data = os.urandom(4 << 20)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        url = client.post("/tus", headers={**V, "Upload-Length": str(len(data))}).headers[
            "Location"
        ]
        upload_id = url.rsplit("/", 1)[1]

        def body() -> Iterator[bytes]:
            yield data[: 1 << 20]
            deadline = time.monotonic() + 30
            while _partial_size(server.root, upload_id) < 1 << 20:  # the server has it all
                assert time.monotonic() < deadline
                time.sleep(0.005)
            raise ConnectionAbortedError("the client went away")

        headers = {**STREAM, "Upload-Offset": "0"}
        if not chunked:  # else a body of unknown length: chunked
            headers["Content-Length"] = str(len(data))
        with pytest.raises(ConnectionAbortedError):  # httpx closes the connection
            client.patch(url, content=body(), headers=headers)
    # The server notices, keeps the megabyte and lets go of the upload: a resume works.
    deadline = time.monotonic() + 30
    while True:
        reply = httpx.patch(
            f"{server.url}{url}",
            content=data[1 << 20 :],
            headers={**STREAM, "Upload-Offset": str(1 << 20)},
        )
        if reply.status_code != 423:
            break
        assert time.monotonic() < deadline, "the upload stayed locked"
        time.sleep(0.05)
    assert reply.status_code == 204, reply
    assert reply.headers["HashFS-Id"] == hashlib.sha256(data).hexdigest()
