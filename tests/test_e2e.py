"""End to end: real servers on 127.0.0.1, a real HTTP client, streamed bodies.

Quart apps run under Hypercorn in a thread with its own asyncio loop; Flask
apps under Werkzeug's threaded dev server (Hypercorn's WSGI mode buffers the
whole body first). The client is httpx, driven synchronously from the test,
streaming every body from a generator; disconnects use raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from flask import request as flask_request
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart
from quart import request as quart_request
from werkzeug.serving import make_server

from async_hashfs import HashAddress, QuartHashFS
from async_hashfs._quart import BoundedBody
from flask_shim import FlaskHashFS

from .conftest import stored_files, temp_files

pytestmark = pytest.mark.e2e

MIB = 1 << 20
HOST = "127.0.0.1"
BOUNDARY = "e2e-boundary-7f3a91c2"
#: What a route sets ``request.max_content_length`` to, to lift the limit.
LIFTED = 1 << 30
TIMEOUT = httpx.Timeout(60.0, connect=5.0)
#: Client timeout where a hang is the failure, not a slow machine.
HANG_TIMEOUT = 3.0
#: Chunk sizes the client cycles through: odd sizes cross every internal boundary.
CHUNK_SIZES = (MIB, 65_536 + 7, 300_001, 3, 2 * MIB - 1, 17)


# -- payloads ---------------------------------------------------------------


class Payload:
    """``size`` pseudo-random bytes, produced in chunks and hashed as they go.

    ``sent`` counts the bytes handed to the client so far (read by the server
    thread to see how far the client got ahead of the view).
    """

    def __init__(self, size: int, seed: int, *, tricky: bytes = b"") -> None:
        self.size = size
        self._block = random.Random(seed).randbytes(2 * MIB)
        self._tricky = tricky
        self._hash = hashlib.sha256()
        self.sent = 0

    def chunks(self) -> Iterator[bytes]:
        left = self.size
        for index in range(1 << 30):
            if not left:
                return
            size = min(left, CHUNK_SIZES[index % len(CHUNK_SIZES)])
            # Vary each chunk, and end some with most of a multipart delimiter.
            chunk = index.to_bytes(8, "big") + self._block[8 : max(size, 8)]
            if self._tricky and size > len(self._tricky) + 8:
                chunk = chunk[: size - len(self._tricky)] + self._tricky
            chunk = chunk[:size]
            self._hash.update(chunk)
            self.sent += len(chunk)
            left -= len(chunk)
            yield chunk

    @property
    def digest(self) -> str:
        """The sha256 of the bytes produced so far (all of them once ``chunks()`` ran out)."""
        assert self.sent == self.size, "the payload was not fully sent"
        return self._hash.hexdigest()


def multipart_body(
    fields: Iterable[tuple[str, str]],
    files: Iterable[tuple[str, str, str, Iterable[bytes]]],
    boundary: str = BOUNDARY,
) -> Iterator[bytes]:
    """Yield a multipart/form-data body: text ``fields``, then ``files``.

    A file is ``(name, filename, content type, chunks)``.
    """
    for name, value in fields:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    for name, filename, content_type, chunks in files:
        yield (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
#: Most of a closing delimiter: legal file content that tests the parser's boundary search.
NEAR_DELIMITER = f"\r\n--{BOUNDARY[:-1]}".encode()


def sha256_file(path: str | Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while block := file.read(4 * MIB):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def assert_nothing_stored(root: Path) -> None:
    assert stored_files(root) == []
    assert temp_files(root) == []


# -- servers ------------------------------------------------------------------


@contextlib.contextmanager
def hypercorn_server(app: Any, *, rcvbuf: int | None = None) -> Iterator[str]:
    """Serve ``app`` with Hypercorn on a random loopback port in a thread; yield its URL.

    ``rcvbuf`` fixes the kernel receive buffer of accepted sockets (no autotuning).
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    listener.bind((HOST, 0))
    listener.listen(64)  # connections wait in the backlog until Hypercorn accepts
    port = listener.getsockname()[1]
    config = HypercornConfig()
    config.bind = [f"fd://{listener.detach()}"]  # Hypercorn owns and closes the socket
    config.accesslog = None
    config.errorlog = logging.getLogger("e2e.hypercorn")
    config.graceful_timeout = 1.0

    started = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = stop = asyncio.Event()
        started.set()
        await serve(app, config, shutdown_trigger=stop.wait)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test thread
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=run, name="hypercorn-e2e", daemon=True)
    thread.start()
    assert started.wait(10), "Hypercorn did not start"
    try:
        yield f"http://{HOST}:{port}"
    finally:
        if "stop" in box:
            box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(15)
        assert not thread.is_alive(), "Hypercorn did not stop within 15 s"
        if "error" in box:
            raise box["error"]


@contextlib.contextmanager
def werkzeug_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` with Werkzeug's threaded server on a random loopback port; yield its URL."""
    server = make_server(HOST, 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug-e2e", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(15)
        assert not thread.is_alive(), "Werkzeug did not stop within 15 s"


def http_client(**options: Any) -> httpx.Client:
    # trust_env=False: no proxy from the environment, the request stays on loopback.
    options.setdefault("timeout", TIMEOUT)
    return httpx.Client(trust_env=False, **options)


@pytest.fixture
def serve_quart() -> Iterator[Callable[..., str]]:
    """Start a Hypercorn server for an app and return its URL; all stop at teardown."""
    with contextlib.ExitStack() as servers:
        yield lambda app, **options: servers.enter_context(hypercorn_server(app, **options))


@pytest.fixture
def serve_flask() -> Iterator[Callable[[Flask], str]]:
    """Start a Werkzeug server for an app and return its URL; all stop at teardown."""
    with contextlib.ExitStack() as servers:
        yield lambda app: servers.enter_context(werkzeug_server(app))


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with http_client() as client:
        yield client


# -- apps -------------------------------------------------------------------------


def address_json(address: HashAddress) -> dict[str, Any]:
    return {"id": address.id, "relpath": address.relpath, "is_duplicate": address.is_duplicate}


def uploads_json(uploads: Any) -> dict[str, Any]:
    return {
        "files": [
            {
                "name": upload.name,
                "filename": upload.filename,
                "content_type": upload.content_type,
                "size": upload.size,
                **address_json(upload.address),
            }
            for _, upload in uploads.files.items(multi=True)
        ],
        "form": {key: uploads.form.getlist(key) for key in uploads.form},
    }


class Seen:
    """What the views observed, shared with the test thread."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.finished = threading.Event()
        self.outcome = ""
        self.max_buffered = 0
        self.max_chunk = 0
        self.max_lead = 0
        self.payload: Payload | None = None


def route_limit(request: Any) -> None:
    """Apply the request's ``?max=`` (a byte count) to ``max_content_length``.

    (``None`` would not lift the limit: it means "the app's MAX_CONTENT_LENGTH".)
    """
    value = request.args.get("max")
    if value is not None:
        request.max_content_length = int(value)


async def wait_until_paused(body: Any) -> None:
    """Return once the body stopped asking for bytes and the server had time to fill its queue."""
    assert isinstance(body, BoundedBody)
    for _ in range(500):
        if body.paused:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)


def quart_app(root: Path, **config: Any) -> tuple[Quart, Seen]:
    app = Quart(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), **config)
    fs = QuartHashFS(app)
    seen = Seen()

    @app.post("/raw")
    async def raw() -> Any:
        route_limit(quart_request)
        seen.entered.set()
        if "paused" in quart_request.args:
            await wait_until_paused(quart_request.body)
        try:
            address = await fs.put(quart_request.body, extension=quart_request.args.get("ext"))
        except BaseException as exc:
            seen.outcome = type(exc).__name__
            raise
        else:
            seen.outcome = "stored"
        finally:
            seen.finished.set()
        return address_json(address)

    @app.post("/uploads")
    async def uploads() -> Any:
        route_limit(quart_request)
        return uploads_json(await fs.put_uploads())

    @app.post("/deny")
    async def deny() -> Any:
        """Answer without reading the body, once the server stopped reading it."""
        await wait_until_paused(quart_request.body)
        return "denied", 401

    @app.post("/slow")
    async def slow() -> Any:
        """Store the body while reading it at about 40 MiB/s, noting how much waits."""
        route_limit(quart_request)
        body = quart_request.body
        assert isinstance(body, BoundedBody)

        async def paced() -> Any:
            async for chunk in body:
                seen.max_chunk = max(seen.max_chunk, len(chunk))
                seen.max_buffered = max(seen.max_buffered, body.buffered)
                if seen.payload is not None:
                    consumed = body._consumed
                    seen.max_lead = max(seen.max_lead, seen.payload.sent - consumed)
                yield chunk
                await asyncio.sleep(len(chunk) / (40 * MIB))
                seen.max_buffered = max(seen.max_buffered, body.buffered)

        return address_json(await fs.put(paced()))

    return app, seen


def flask_app(root: Path, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), **config)
    fs = FlaskHashFS(app)

    @app.post("/raw")
    def raw() -> Any:
        route_limit(flask_request)
        return address_json(fs.put(flask_request.stream, extension=flask_request.args.get("ext")))

    @app.post("/uploads")
    def uploads() -> Any:
        route_limit(flask_request)
        return uploads_json(fs.put_uploads())

    return app


def check_stored(root: Path, result: dict[str, Any], digest: str, size: int) -> None:
    assert result["id"] == digest
    assert not result["is_duplicate"]
    assert sha256_file(root / result["relpath"]) == (digest, size)
    assert stored_files(root) == [result["relpath"]]
    assert temp_files(root) == []


# -- Quart through Hypercorn ----------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_quart_raw_upload_64mib(
    root: Path, framing: str, serve_quart: Callable[..., str], client: httpx.Client
) -> None:
    app, _ = quart_app(root)  # MAX_CONTENT_LENGTH stays Quart's 16 MiB: the route lifts it
    payload = Payload(64 * MIB, seed=1)
    headers = {"Content-Length": str(payload.size)} if framing == "content-length" else {}
    url = serve_quart(app)
    response = client.post(
        f"{url}/raw",
        params={"max": LIFTED, "ext": "bin"},
        content=payload.chunks(),
        headers=headers,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["relpath"].endswith(".bin")
    check_stored(root, result, payload.digest, payload.size)


def test_quart_multipart_upload_64mib(
    root: Path, serve_quart: Callable[..., str], client: httpx.Client
) -> None:
    app, _ = quart_app(root)
    payload = Payload(64 * MIB, seed=2, tricky=NEAR_DELIMITER)
    body = multipart_body(
        [("title", "holiday ünïcode"), ("tag", "a"), ("tag", "b")],
        [("photo", "big.JPG", "image/jpeg", payload.chunks())],
    )
    url = serve_quart(app)
    response = client.post(
        f"{url}/uploads",
        params={"max": LIFTED},
        content=body,
        headers={"Content-Type": MULTIPART},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["form"] == {"title": ["holiday ünïcode"], "tag": ["a", "b"]}
    [upload] = result["files"]
    assert upload["name"] == "photo"
    assert upload["filename"] == "big.JPG"
    assert upload["content_type"] == "image/jpeg"
    assert upload["size"] == payload.size
    assert upload["relpath"].endswith(".jpg")
    check_stored(root, upload, payload.digest, payload.size)


def test_quart_multipart_several_files_and_duplicates(
    root: Path, serve_quart: Callable[..., str], client: httpx.Client
) -> None:
    app, _ = quart_app(root)
    first = Payload(3 * MIB, seed=3, tricky=NEAR_DELIMITER)
    again = Payload(3 * MIB, seed=3, tricky=NEAR_DELIMITER)
    body = multipart_body(
        [("note", "")],
        [
            ("files", "a.txt", "text/plain", first.chunks()),
            ("files", "b.txt", "text/plain", again.chunks()),
            ("files", "c", "application/octet-stream", iter([b"x"])),
        ],
    )
    url = serve_quart(app)
    response = client.post(f"{url}/uploads", content=body, headers={"Content-Type": MULTIPART})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["form"] == {"note": [""]}
    a, b, c = result["files"]
    assert a["id"] == b["id"] == first.digest
    assert (a["is_duplicate"], b["is_duplicate"]) == (False, True)
    assert c["id"] == hashlib.sha256(b"x").hexdigest()
    assert c["relpath"].replace("/", "") == c["id"]  # no extension in "c"
    assert stored_files(root) == sorted([a["relpath"], c["relpath"]])
    assert temp_files(root) == []


@pytest.mark.parametrize(
    ("path", "framing", "config"),
    [
        ("/raw", "chunked", {"MAX_CONTENT_LENGTH": 4 * MIB}),
        ("/raw", "content-length", {"MAX_CONTENT_LENGTH": 4 * MIB}),
        ("/uploads", "chunked", {"MAX_CONTENT_LENGTH": 4 * MIB}),
        (f"/raw?max={LIFTED}", "chunked", {"HASHFS_MAX_SIZE": 4 * MIB}),
        (f"/uploads?max={LIFTED}", "chunked", {"HASHFS_MAX_SIZE": 4 * MIB}),
    ],
)
def test_quart_body_over_limit_is_413(
    root: Path, path: str, framing: str, config: dict[str, Any], serve_quart: Callable[..., str]
) -> None:
    app, _ = quart_app(root, **config)
    payload = Payload(64 * MIB, seed=4)
    if path.startswith("/uploads"):
        body = multipart_body([("f", "v")], [("file", "x.bin", "application/x", payload.chunks())])
        headers = {"Content-Type": MULTIPART}
    else:
        body, headers = payload.chunks(), {}
    if framing == "content-length":
        headers["Content-Length"] = str(payload.size)
    url = serve_quart(app)
    with http_client(timeout=HANG_TIMEOUT) as client:
        response = client.post(f"{url}{path}", content=body, headers=headers)
    assert response.status_code == 413
    assert payload.sent < payload.size  # the server stopped reading early
    assert_nothing_stored(root)


def test_quart_view_may_answer_without_reading_the_body(
    root: Path, serve_quart: Callable[..., str]
) -> None:
    app, _ = quart_app(root)
    payload = Payload(32 * MIB, seed=12)
    url = serve_quart(app)
    with http_client(timeout=HANG_TIMEOUT) as client:
        response = client.post(f"{url}/deny", content=payload.chunks())
    assert response.status_code == 401
    assert payload.sent < payload.size
    assert_nothing_stored(root)


def test_quart_body_over_limit_is_413_after_the_server_paused(
    root: Path, serve_quart: Callable[..., str]
) -> None:
    app, _ = quart_app(root, MAX_CONTENT_LENGTH=512 * 1024)
    payload = Payload(32 * MIB, seed=13)
    headers = {"Content-Length": str(payload.size)}
    url = serve_quart(app)
    with http_client(timeout=HANG_TIMEOUT) as client:
        response = client.post(f"{url}/raw?paused=1", content=payload.chunks(), headers=headers)
    assert response.status_code == 413
    assert_nothing_stored(root)


def test_quart_route_may_lift_the_limit_for_a_content_length_body(
    root: Path, serve_quart: Callable[..., str], client: httpx.Client
) -> None:
    app, _ = quart_app(root, MAX_CONTENT_LENGTH=1 * MIB)
    payload = Payload(5 * MIB, seed=5)
    headers = {"Content-Length": str(payload.size)}
    url = serve_quart(app)
    response = client.post(
        f"{url}/raw", params={"max": 8 * MIB}, content=payload.chunks(), headers=headers
    )
    assert response.status_code == 200, response.text
    check_stored(root, response.json(), payload.digest, payload.size)


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_quart_client_disconnect_mid_upload_stores_nothing(
    root: Path, close: str, serve_quart: Callable[..., str]
) -> None:
    app, seen = quart_app(root)
    block = random.Random(6).randbytes(64 * 1024)
    url = serve_quart(app)
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(
            f"POST /raw?max={LIFTED} HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Content-Length: {50 * MIB}\r\n\r\n".encode()
        )
        for _ in range(64):  # 4 MiB of 50
            sock.sendall(block)
        assert seen.entered.wait(10), "the view never ran"
        assert wait_until(lambda: bool(temp_files(root)), 10), "the put never started"
        if close == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert seen.finished.wait(10), "the view was not cancelled after the disconnect"
    assert wait_until(lambda: not temp_files(root), 5), temp_files(root)
    assert seen.outcome == "CancelledError"
    assert_nothing_stored(root)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param(
            MULTIPART,
            [
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; '
                'filename="a.bin"\r\n\r\n'.encode(),
                b"z" * (3 * MIB),
            ],
            id="truncated-in-a-file",
        ),
        pytest.param(
            MULTIPART,
            [
                f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\n"
                f"hello\r\n--{BOUNDARY}--\r\n".encode()
            ],
            id="no-content-disposition",
        ),
        pytest.param(
            MULTIPART,
            [
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; filename="a"\r\n\r\n'
                f"hello\r\n--{BOUNDARY}--\r\n".encode()
            ],
            id="part-without-name",
        ),
        pytest.param(MULTIPART, [b"no boundary anywhere in here"], id="no-parts"),
        pytest.param("multipart/form-data", [b"--x\r\n"], id="no-boundary-parameter"),
        pytest.param("text/plain", [b"hello"], id="not-multipart"),
    ],
)
def test_quart_malformed_multipart_is_400(
    root: Path,
    content_type: str,
    body: list[bytes],
    serve_quart: Callable[..., str],
    client: httpx.Client,
) -> None:
    app, _ = quart_app(root)
    url = serve_quart(app)
    response = client.post(
        f"{url}/uploads?max={LIFTED}",
        content=iter(body),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 400, response.text
    assert_nothing_stored(root)


@pytest.mark.parametrize("buffer", [1 * MIB, 256 * 1024])
def test_quart_slow_view_keeps_the_body_buffer_bounded(
    root: Path, buffer: int, serve_quart: Callable[..., str]
) -> None:
    app, seen = quart_app(root, HASHFS_BODY_BUFFER=buffer)
    payload = Payload(64 * MIB, seed=7)
    seen.payload = payload
    # Fixed socket buffers (no autotuning) so the client's lead is the app's doing.
    small = 256 * 1024
    transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, small)])
    url = serve_quart(app, rcvbuf=small)
    with http_client(transport=transport) as client:
        started = time.monotonic()
        response = client.post(f"{url}/slow?max={LIFTED}", content=payload.chunks())
        elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    check_stored(root, response.json(), payload.digest, payload.size)
    assert elapsed > 1.0  # the view was the bottleneck: 64 MiB at 40 MiB/s
    assert 0 < seen.max_buffered <= buffer + MIB
    assert seen.max_chunk <= buffer + MIB
    # Body buffer, Hypercorn's queue (10 x 64 KiB), stream and kernel buffers: a few MiB.
    assert seen.max_lead <= buffer + 8 * MIB, seen.max_lead


def test_quart_crowd_of_uploads_stays_within_the_upload_budget(
    root: Path, serve_quart: Callable[..., str]
) -> None:
    budget_size = MIB
    app, _ = quart_app(root, HASHFS_UPLOAD_MEMORY=budget_size, MAX_CONTENT_LENGTH=None)
    budget = app.extensions["hashfs"].store.budget
    released = threading.Event()

    @app.post("/stall")
    async def stall() -> Any:
        """Never read the body: it must hold none of the budget meanwhile."""
        await asyncio.get_running_loop().run_in_executor(None, released.wait, 30)
        return "late", 503

    url = serve_quart(app)
    payloads = [Payload(4 * MIB, seed=100 + i) for i in range(24)]
    results: list[Any] = [None] * len(payloads)
    stalled: list[Any] = []

    def upload(i: int) -> None:
        with http_client() as client:
            results[i] = client.post(f"{url}/raw", content=payloads[i].chunks())

    def stall_upload() -> None:
        with http_client() as client:
            try:
                stalled.append(client.post(f"{url}/stall", content=Payload(4 * MIB, 9).chunks()))
            except httpx.HTTPError as exc:  # the server may cut the unread body off
                stalled.append(exc)

    stallers = [threading.Thread(target=stall_upload) for _ in range(4)]
    uploaders = [threading.Thread(target=upload, args=(i,)) for i in range(len(payloads))]
    for thread in stallers + uploaders:
        thread.start()
    for thread in uploaders:
        thread.join(120)
    released.set()
    for thread in stallers:
        thread.join(60)
    assert not any(thread.is_alive() for thread in stallers + uploaders)
    for payload, response in zip(payloads, results, strict=True):
        assert response.status_code == 200, response.text
        assert response.json()["id"] == payload.digest
    assert len(stalled) == 4
    assert 0 < budget.peak <= budget_size
    assert wait_until(lambda: budget.used == 0)
    assert temp_files(root) == []


# -- Flask through Werkzeug ---------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_flask_raw_upload_16mib(
    root: Path, framing: str, serve_flask: Callable[[Flask], str], client: httpx.Client
) -> None:
    app = flask_app(root)
    payload = Payload(16 * MIB, seed=8)
    headers = {"Content-Length": str(payload.size)} if framing == "content-length" else {}
    url = serve_flask(app)
    response = client.post(
        f"{url}/raw", params={"ext": "dat"}, content=payload.chunks(), headers=headers
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["relpath"].endswith(".dat")
    check_stored(root, result, payload.digest, payload.size)


def test_flask_multipart_upload_16mib(
    root: Path, serve_flask: Callable[[Flask], str], client: httpx.Client
) -> None:
    app = flask_app(root)
    payload = Payload(16 * MIB, seed=9, tricky=NEAR_DELIMITER)
    body = multipart_body(
        [("title", "flask")], [("doc", "report.PDF", "application/pdf", payload.chunks())]
    )
    url = serve_flask(app)
    response = client.post(f"{url}/uploads", content=body, headers={"Content-Type": MULTIPART})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["form"] == {"title": ["flask"]}
    [upload] = result["files"]
    assert (upload["name"], upload["filename"]) == ("doc", "report.PDF")
    assert upload["size"] == payload.size
    assert upload["relpath"].endswith(".pdf")
    check_stored(root, upload, payload.digest, payload.size)


def test_flask_chunked_body_over_limit_is_413(
    root: Path, serve_flask: Callable[[Flask], str]
) -> None:
    app = flask_app(root, MAX_CONTENT_LENGTH=4 * MIB)
    payload = Payload(16 * MIB, seed=10)
    url = serve_flask(app)
    with http_client(timeout=HANG_TIMEOUT) as client:
        response = client.post(f"{url}/raw", content=payload.chunks())
    assert response.status_code == 413  # (Werkzeug's server then drains the rest itself)
    assert_nothing_stored(root)


def test_flask_malformed_multipart_is_400(
    root: Path, serve_flask: Callable[[Flask], str], client: httpx.Client
) -> None:
    app = flask_app(root)
    body = [
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'.encode(),
        b"z" * MIB,
    ]
    url = serve_flask(app)
    response = client.post(
        f"{url}/uploads", content=iter(body), headers={"Content-Type": MULTIPART}
    )
    assert response.status_code == 400, response.text
    assert_nothing_stored(root)


def test_payload_digest_matches_hashlib() -> None:
    payload = Payload(3 * MIB + 5, seed=11, tricky=NEAR_DELIMITER)
    data = b"".join(payload.chunks())
    assert len(data) == payload.size
    assert payload.digest == hashlib.sha256(data).hexdigest()
    assert data.count(NEAR_DELIMITER) > 0
