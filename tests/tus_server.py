"""A tus endpoint in a real server process, for the e2e tests and ``bench_tus.py``.

``python tests/tus_server.py quart ROOT PORT`` serves the Quart app with
Hypercorn; ``gunicorn 'tus_server:flask_from_env()'`` (``TUS_ROOT`` in the
environment) the Flask app. Either way the endpoint is at ``/tus``, and the
completion hook appends one JSON line per finished upload to
``ROOT/../completed.jsonl`` so a test can see it ran, in whichever process.
``POST /put`` stores the raw body with ``fs.put`` (the benchmark's anchor).
``HASHFS_TUS_EXPIRY`` comes from ``TUS_EXPIRY`` when set. For an ``s3://``
root, ``TUS_CONFIG`` holds more settings as JSON (``HASHFS_S3_ENDPOINT``...)
and ``TUS_COMPLETED`` the path of the completion log. With ``TUS_HANG_STORING``
(a path), storing a finished upload into its address blocks forever once it
has touched that file: a test kills the server there, between the last byte
and the address.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def _config(root: str) -> dict[str, Any]:
    expiry = os.environ.get("TUS_EXPIRY")
    return {
        "HASHFS_ROOT_FOLDER": root,
        "HASHFS_TUS_PREFIX": "/tus",
        "HASHFS_PATH_PREFIX": "/files",
        "HASHFS_TUS_EXPIRY": float(expiry) if expiry else 3600,
        "MAX_CONTENT_LENGTH": None,
        **json.loads(os.environ.get("TUS_CONFIG") or "{}"),
    }


def _record(root: str, upload: Any) -> None:
    line = json.dumps(
        {
            "id": upload.address.id,
            "relpath": upload.address.relpath,
            "is_duplicate": upload.address.is_duplicate,
            "metadata": upload.metadata,
            "upload_id": upload.upload_id,
            "pid": os.getpid(),
        }
    )
    path = os.environ.get("TUS_COMPLETED") or Path(root).parent / "completed.jsonl"
    with open(path, "a") as log:
        log.write(line + "\n")


def _hang_storing() -> None:
    marker = os.environ.get("TUS_HANG_STORING")
    if not marker:
        return
    import threading

    from async_hashfs._engine import Engine
    from async_hashfs._s3 import S3Engine

    def hang(*args: Any, **kwargs: Any) -> Any:
        Path(marker).touch()
        threading.Event().wait()

    Engine.commit_hashed = hang  # type: ignore[method-assign]
    S3Engine.commit_copy = hang  # type: ignore[method-assign]
    S3Engine._create = hang  # type: ignore[method-assign]


def quart_app(root: str) -> Any:
    from quart import Quart, request

    from async_hashfs import QuartHashFS

    _hang_storing()
    app = Quart(__name__)
    app.config.update(_config(root))
    fs = QuartHashFS(app)

    @fs.on_upload_complete
    def completed(upload: Any) -> None:  # a plain function: Quart runs it in a thread
        _record(root, upload)

    @app.post("/put")
    async def put() -> Any:
        address = await fs.put(request.body)
        return {"id": address.id}

    return app


def flask_app(root: str) -> Any:
    from flask import Flask, request

    from flask_shim import FlaskHashFS

    _hang_storing()
    app = Flask(__name__)
    app.config.update(_config(root))
    fs = FlaskHashFS(app)

    @fs.on_upload_complete
    def completed(upload: Any) -> None:
        _record(root, upload)

    @app.post("/put")
    def put() -> Any:
        address = fs.put(request.stream)
        return {"id": address.id}

    return app


def flask_from_env() -> Any:
    return flask_app(os.environ["TUS_ROOT"])


def main() -> None:
    import asyncio

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    _, framework, root, port = sys.argv
    assert framework == "quart"
    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.accesslog = None
    config.errorlog = None
    asyncio.run(serve(quart_app(root), config))  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    main()
