"""The serving route through real servers: what a browser gets, headers included.

Quart under Hypercorn, Flask under Werkzeug's server and under gunicorn, all
on 127.0.0.1; the client is httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart
from werkzeug.serving import make_server

from async_hashfs import QuartHashFS, SyncHashFS
from async_hashfs._http import SMALL_BODY
from flask_shim import FlaskHashFS

pytestmark = pytest.mark.e2e

HOST = "127.0.0.1"
DATA = os.urandom(3 * (1 << 20) + 5)
CONFIG = {"HASHFS_PATH_PREFIX": "/files", "HASHFS_SERVE": True}


@contextlib.contextmanager
def hypercorn(root: Path) -> Iterator[str]:
    """Serve a Quart app on ``root`` with Hypercorn in a thread; yield its URL."""
    app = Quart(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), **CONFIG)
    QuartHashFS(app)
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    config = HypercornConfig()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("tests.hypercorn")
    config.graceful_timeout = 1.0
    ready = threading.Event()
    loop: dict[str, Any] = {}

    async def main() -> None:
        loop["loop"], loop["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await serve(app, config, shutdown_trigger=loop["stop"].wait)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        loop["loop"].call_soon_threadsafe(loop["stop"].set)
        thread.join(15)
        assert not thread.is_alive()


def flask_app(root: Path) -> Flask:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), **CONFIG)
    FlaskHashFS(app)
    return app


@contextlib.contextmanager
def werkzeug(root: Path) -> Iterator[str]:
    """Serve a Flask app on ``root`` with Werkzeug's threaded server; yield its URL."""
    server = make_server(HOST, 0, flask_app(root), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(15)


@contextlib.contextmanager
def gunicorn(root: Path) -> Iterator[str]:
    """Serve a Flask app on ``root`` with gunicorn (sync worker, sendfile); yield its URL."""
    module = root.parent / "gunicorn_app.py"
    module.write_text(
        textwrap.dedent(
            f"""
            from tests.test_serving_servers import flask_app
            app = flask_app({str(root)!r})
            """
        )
    )
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{port}", "--workers", "1"]
    command += ["--chdir", str(module.parent), "--log-level", "warning", "gunicorn_app:app"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "gunicorn did not start within 30 s"
            time.sleep(0.1)
        yield f"http://{HOST}:{port}"
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


SERVERS = {"hypercorn": hypercorn, "werkzeug": werkzeug, "gunicorn": gunicorn}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("server", list(SERVERS))
def test_head_and_charset_through_real_servers(root: Path, server: str) -> None:
    store = SyncHashFS(root)
    files = {size: store.put(DATA[:size], "png") for size in (0, 5, SMALL_BODY + 1, len(DATA))}
    text = store.put("Grüße ☀".encode(), "txt")
    with SERVERS[server](root) as url, httpx.Client(base_url=url, trust_env=False) as client:
        for size, address in files.items():
            head = client.head(f"/files/{address.relpath}")
            assert head.status_code == 200
            assert head.headers["Content-Length"] == str(size), (server, size)
            assert head.headers["ETag"] == f'"{hashlib.sha256(DATA[:size]).hexdigest()}"'
            assert head.content == b""
            get = client.get(f"/files/{address.relpath}")
            assert get.content == DATA[:size]
            assert get.headers["Content-Length"] == str(size)
        served = client.get(f"/files/{text.relpath}")
        assert served.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert served.text == "Grüße ☀"
        head = client.head(f"/files/{text.relpath}")
        assert head.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert head.headers["Content-Length"] == str(len("Grüße ☀".encode()))
