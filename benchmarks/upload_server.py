#!/usr/bin/env python
"""The server side of ``bench_uploads.py``: a Quart app under Hypercorn on loopback.

Run by the benchmark as a subprocess, so that its memory can be read from
``/proc/PID/status``. It binds 127.0.0.1 on a free port, prints ``PORT <n>``
on stdout once it listens, and stops cleanly on SIGTERM or SIGINT.

Routes:

- ``POST /put``: ``await fs.put(request.body)``, the streamed raw upload;
- ``POST /uploads``: ``await fs.put_uploads()``, the streamed multipart upload;
- ``POST /discard``: reads the body and drops it (the ceiling: same server,
  same backpressure, no store);
- ``POST /onloop``: hashes and writes each chunk on the event loop itself
  (the single-thread limit; it stalls the loop, so it is a ceiling for one
  thread, not a pattern to follow);
- ``POST /aiofiles``: writes each chunk with aiofiles and hashes it on the
  loop: what users write without us;
- ``POST /quartfiles``: Quart's own ``await request.files`` and
  ``await file.save(path)``, no hashing at all;
- ``DELETE /stored/<id>``: removes a stored file between measurements;
- ``GET /ping``: answers at once (the event loop's latency).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import secrets
import signal
import socket
import sys
from typing import Any

try:
    from async_hashfs import QuartHashFS
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from async_hashfs import QuartHashFS

import aiofiles
import aiofiles.os
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart, request

HOST = "127.0.0.1"


def create_app(
    root: str,
    *,
    fsync: bool = False,
    body_buffer: int = 1 << 20,
    upload_memory: int = 32 << 20,
) -> Quart:
    """Return the benchmark app, storing under ``root``; request bodies have no size limit."""
    app = Quart(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=root,
        HASHFS_FSYNC=fsync,
        HASHFS_BODY_BUFFER=body_buffer,
        HASHFS_UPLOAD_MEMORY=upload_memory,
        MAX_CONTENT_LENGTH=None,
    )
    fs = QuartHashFS(app)

    @app.post("/put")
    async def put() -> Any:
        address = await fs.put(request.body)
        return {"id": address.id, "is_duplicate": address.is_duplicate}

    @app.post("/uploads")
    async def uploads() -> Any:
        stored = await fs.put_uploads()
        return {
            "files": [
                {"id": upload.address.id, "size": upload.size, "filename": upload.filename}
                for _, upload in stored.files.items(multi=True)
            ],
            "form": stored.form.to_dict(flat=False),
        }

    @app.post("/discard")
    async def discard() -> Any:
        size = 0
        async for chunk in request.body:
            size += len(chunk)
        return {"size": size}

    def scratch_path() -> str:
        # In the root: the same file system as the store's own files.
        return os.path.join(root, f"bench-{secrets.token_hex(8)}.tmp")

    @app.post("/onloop")
    async def onloop() -> Any:
        digest = hashlib.sha256()
        size = 0
        path = scratch_path()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            async for chunk in request.body:
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                size += len(chunk)
        finally:
            os.close(fd)
            os.unlink(path)
        return {"id": digest.hexdigest(), "size": size}

    @app.post("/aiofiles")
    async def with_aiofiles() -> Any:
        digest = hashlib.sha256()
        size = 0
        path = scratch_path()
        try:
            async with aiofiles.open(path, "xb") as file:
                async for chunk in request.body:
                    digest.update(chunk)
                    await file.write(chunk)
                    size += len(chunk)
        finally:
            await aiofiles.os.remove(path)
        return {"id": digest.hexdigest(), "size": size}

    @app.post("/quartfiles")
    async def quartfiles() -> Any:
        files = await request.files
        form = await request.form
        path = scratch_path()
        try:
            await files["file"].save(path)
            size = os.stat(path).st_size
        finally:
            os.unlink(path)
        return {"size": size, "form": form.to_dict(flat=False)}

    @app.delete("/stored/<id>")
    async def delete(id: str) -> Any:
        await fs.delete(id)
        return {"deleted": id}

    @app.get("/ping")
    async def ping() -> Any:
        return "pong"

    return app


async def run(app: Quart, listener: socket.socket) -> None:
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("upload_server")
    config.graceful_timeout = 2.0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the store's root folder")
    parser.add_argument("--fsync", action="store_true", help="HASHFS_FSYNC=True")
    parser.add_argument("--body-buffer", type=int, default=1 << 20, help="HASHFS_BODY_BUFFER")
    parser.add_argument("--upload-memory", type=int, default=32 << 20, help="HASHFS_UPLOAD_MEMORY")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    app = create_app(
        args.root,
        fsync=args.fsync,
        body_buffer=args.body_buffer,
        upload_memory=args.upload_memory,
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(512)  # clients wait in the backlog until Hypercorn accepts
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    asyncio.run(run(app, listener))
    return 0


if __name__ == "__main__":
    sys.exit(main())
