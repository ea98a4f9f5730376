#!/usr/bin/env python
"""The server side of ``bench_serving.py``: one app serving a store on loopback.

Run by the benchmark as a subprocess. It binds 127.0.0.1 on a free port,
prints ``PORT <n>`` on stdout once it listens, and stops cleanly on SIGTERM
or SIGINT. Two apps, each with the same routes:

- ``quart``: a Quart app under Hypercorn, one worker (this process);
- ``flask``: a Flask app under gunicorn's sync workers, or, with
  ``--server werkzeug``, Werkzeug's threaded development server.

Routes:

- ``GET/HEAD /files/<relpath>``: our serving route, registered by
  ``QuartHashFS`` / ``FlaskHashFS`` (``HASHFS_SERVE=True``,
  ``HASHFS_PATH_PREFIX="/files"``);
- ``GET/HEAD /send_file/<relpath>``: the framework's own
  ``send_file(abspath, conditional=True)`` of the same stored file, the
  abspath joined to the root with ``safe_join`` as ``send_from_directory``
  does;
- ``GET /ping``: answers at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

try:
    import async_hashfs  # noqa: F401
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from werkzeug.security import safe_join

HOST = "127.0.0.1"
PREFIX = "/files"


def _config(root: str) -> dict[str, Any]:
    return {
        "HASHFS_ROOT_FOLDER": root,
        "HASHFS_SERVE": True,
        "HASHFS_PATH_PREFIX": PREFIX,
    }


def create_quart_app(root: str) -> Any:
    """Return the Quart app serving the store at ``root``."""
    from quart import Quart, abort, send_file

    from async_hashfs import QuartHashFS

    app = Quart(__name__)
    app.config.update(_config(root))
    QuartHashFS(app)

    @app.route("/send_file/<path:relpath>", methods=["GET", "HEAD"])
    async def framework_send_file(relpath: str) -> Any:
        path = safe_join(root, relpath)
        if path is None:
            abort(404)
        return await send_file(path, conditional=True)

    @app.get("/ping")
    async def ping() -> Any:
        return "pong"

    return app


def create_flask_app(root: str) -> Any:
    """Return the Flask app serving the store at ``root``."""
    from flask import Flask, abort, send_file

    from flask_shim import FlaskHashFS

    app = Flask(__name__)
    app.config.update(_config(root))
    FlaskHashFS(app)

    @app.route("/send_file/<path:relpath>", methods=["GET", "HEAD"])
    def framework_send_file(relpath: str) -> Any:
        path = safe_join(root, relpath)
        if path is None:
            abort(404)
        return send_file(path, conditional=True)

    @app.get("/ping")
    def ping() -> Any:
        return "pong"

    return app


def _listen() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HOST, 0))
    listener.listen(1024)  # clients wait in the backlog until the server accepts
    return listener


def _announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def run_hypercorn(app: Any) -> None:
    """Serve ``app`` with Hypercorn in this process (one worker) until a signal."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    listener = _listen()
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.backlog = 1024
    config.accesslog = None
    config.errorlog = logging.getLogger("serving_server")
    config.graceful_timeout = 2.0

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        _announce(port)
        await serve(app, config, shutdown_trigger=stop.wait)

    asyncio.run(main())


def run_gunicorn(app: Any, workers: int) -> None:
    """Serve ``app`` with gunicorn's sync workers until SIGTERM or SIGINT."""
    from gunicorn.app.base import BaseApplication

    listener = _listen()
    port = listener.getsockname()[1]
    fd = listener.detach()
    options = {
        "bind": [f"fd://{fd}"],
        "workers": workers,
        "worker_class": "sync",
        "backlog": 1024,
        "accesslog": None,
        "loglevel": "warning",
        "graceful_timeout": 2,
        "timeout": 60,
    }

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    _announce(port)
    Gunicorn().run()


def run_werkzeug(app: Any) -> None:
    """Serve ``app`` with Werkzeug's threaded server until SIGTERM or SIGINT."""
    import threading

    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    listener = _listen()
    port = listener.getsockname()[1]
    server = make_server(
        HOST, port, app, threaded=True, request_handler=QuietHandler, fd=listener.detach()
    )

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    _announce(port)
    server.serve_forever()
    server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--root", required=True, help="the store's root folder")
    parser.add_argument("--app", choices=["quart", "flask"], required=True)
    parser.add_argument(
        "--server",
        choices=["hypercorn", "gunicorn", "werkzeug"],
        help="default: hypercorn for quart, gunicorn for flask",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    server = args.server or ("hypercorn" if args.app == "quart" else "gunicorn")
    if (args.app == "quart") != (server == "hypercorn"):
        parser.error(f"--app {args.app} cannot run under --server {server}")
    if args.app == "quart":
        run_hypercorn(create_quart_app(args.root))
    elif server == "gunicorn":
        run_gunicorn(create_flask_app(args.root), args.workers)
    else:
        run_werkzeug(create_flask_app(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
