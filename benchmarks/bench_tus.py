#!/usr/bin/env python
"""Benchmark resumable (tus) uploads through real servers on 127.0.0.1.

The server is ``tests/tus_server.py``: Quart under Hypercorn, or Flask under
gunicorn (2 workers), in its own process group; this process is the client,
``tuspy``. Three measurements, each a ratio against an anchor in the same
run, rounds interleaved (the contender that goes first rotates), medians:

- ``throughput``: a file (384 MiB by default) uploaded through the tus
  endpoint with tuspy's default chunking (the whole file in one PATCH),
  against ``POST /put`` (``await fs.put(request.body)`` on Quart,
  ``fs.put(request.stream)`` on Flask) of the same bytes with the same HTTP
  library (``requests``, the file read into memory inside the timing, as
  tuspy reads its chunk). The stored file is deleted after each upload,
  outside the timing. Target >= 0.9x. An info line times the same tus
  upload sent by hand with ``requests`` (POST, one PATCH), to tell the
  server's share from tuspy's.
- ``resume sent``: the server is SIGKILLed once half the file arrived,
  started again, and tuspy resumes from the URL; the bytes it reads from the
  file to send after the restart are counted. Target: exactly the bytes the
  server did not have (file size minus the offset the HEAD reported).
- ``rehash``: after that restart the server holds no hash of the partial;
  an empty PATCH at its offset makes it hash the partial file once (timed
  from the client), against ``sha256sum`` of the same file (warm cache for
  both). Speed ratio = sha256sum time / rehash time. Target >= 0.8x.

Run ``python benchmarks/bench_tus.py`` (``--quick``: 64 MiB, 2 rounds). The
stores live in a temp folder under ``--dir``, ``$BENCH_DIR`` or the current
folder; the header quotes its filesystem and the load average. The script
reports PASS/FAIL per target and always exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from tusclient import client as tus_client

MIB = 1 << 20
HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
THROUGHPUT_TARGET = 0.9
REHASH_TARGET = 0.8
V = {"Tus-Resumable": "1.0.0"}


class Server:
    """The tus test server (``hypercorn`` or ``gunicorn``) in its own process group."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.root = root
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(TESTS), str(HERE.parent / "src")]),
            "TUS_ROOT": str(self.root),
        }
        if self.kind == "hypercorn":
            command = [sys.executable, str(TESTS / "tus_server.py"), "quart", str(self.root)]
            command.append(str(self.port))
        else:
            command = [sys.executable, "-m", "gunicorn", "--bind", f"{HOST}:{self.port}"]
            command += ["--workers", "2", "--timeout", "600", "--chdir", str(TESTS)]
            command += ["--log-level", "warning", "tus_server:flask_from_env()"]
        self.process = subprocess.Popen(command, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.options(f"{self.url}/tus", timeout=2).status_code == 204:
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} did not start")
            time.sleep(0.1)

    def signal(self, number: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, number)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


class CountingStream:
    """A file that counts the bytes read from it (what tuspy sends)."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "rb")  # noqa: SIM115
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.read_bytes += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def close(self) -> None:
        self.file.close()


def uploader(server: Server, stream: Any, **options: Any) -> Any:
    client = tus_client.TusClient(f"{server.url}/tus")
    return client.uploader(file_stream=stream, metadata={"filename": "bench.bin"}, **options)


def make_source(path: Path, size: int) -> None:
    with open(path, "wb") as file:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            file.write(block)
            left -= len(block)


def delete_stored(root: Path, digest: str) -> None:
    from async_hashfs import SyncHashFS

    SyncHashFS(root).delete(digest)


def time_tus(server: Server, source: Path) -> float:
    stream = CountingStream(source)
    try:
        upload = uploader(server, stream)
        started = time.perf_counter()
        upload.upload()
        return time.perf_counter() - started
    finally:
        stream.close()


def time_tus_raw(server: Server, source: Path) -> float:
    """The same tus upload by hand with ``requests`` (POST, then one PATCH): no tuspy."""
    started = time.perf_counter()
    body = source.read_bytes()
    created = requests.post(f"{server.url}/tus", headers={**V, "Upload-Length": str(len(body))})
    reply = requests.patch(
        server.url + created.headers["Location"],
        data=body,
        headers={**V, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    elapsed = time.perf_counter() - started
    reply.raise_for_status()
    return elapsed


def time_put(server: Server, source: Path) -> float:
    started = time.perf_counter()
    # Read into memory inside the timing, as tuspy reads its chunk.
    reply = requests.post(f"{server.url}/put", data=source.read_bytes())
    elapsed = time.perf_counter() - started
    reply.raise_for_status()
    return elapsed


def throughput(server: Server, source: Path, digest: str, rounds: int) -> dict[str, list[float]]:
    contenders = {"tus": time_tus, "put": time_put, "raw": time_tus_raw}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for timed in contenders.values():  # warm up every path
        timed(server, source)
        delete_stored(server.root, digest)
    names = list(contenders)
    for number in range(rounds):
        for name in names[number % 3 :] + names[: number % 3]:  # who goes first rotates
            times[name].append(contenders[name](server, source))
            delete_stored(server.root, digest)
    return times


def partial_size(root: Path, upload_id: str) -> int:
    try:
        return (root / ".hashfs-tmp" / "tus" / upload_id).stat().st_size
    except FileNotFoundError:
        return -1


def resume(server: Server, source: Path, digest: str, rehash_rounds: int) -> dict[str, Any]:
    """Kill the server at 50%, restart, count what the resume sends; time the re-hash."""
    size = source.stat().st_size
    stream = CountingStream(source)
    upload = uploader(server, stream, chunk_size=8 * MIB)
    upload.set_url(upload.create_url())
    upload_id = upload.url.rsplit("/", 1)[1]

    def run() -> None:
        with contextlib.suppress(Exception):
            upload.upload()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while partial_size(server.root, upload_id) < size // 2:
        time.sleep(0.001)
    server.signal(signal.SIGKILL)
    thread.join(60)
    stream.close()
    partial = server.root / ".hashfs-tmp" / "tus" / upload_id
    offset = partial.stat().st_size
    # The re-hash: a fresh server each time (no hash in memory), an empty PATCH at the offset.
    rehash: list[float] = []
    sha256sum: list[float] = []
    subprocess.run(["sha256sum", str(partial)], check=True, capture_output=True)  # warm
    for number in range(rehash_rounds):
        server.start()
        order = ["server", "sha256sum"] if number % 2 == 0 else ["sha256sum", "server"]
        for name in order:
            started = time.perf_counter()
            if name == "server":
                reply = requests.patch(
                    upload.url,
                    data=b"",
                    headers={
                        **V,
                        "Upload-Offset": str(offset),
                        "Content-Type": "application/offset+octet-stream",
                    },
                )
                rehash.append(time.perf_counter() - started)
                assert reply.status_code == 204, reply.status_code
            else:
                subprocess.run(["sha256sum", str(partial)], check=True, capture_output=True)
                sha256sum.append(time.perf_counter() - started)
        server.signal(signal.SIGKILL)
    server.start()
    stream = CountingStream(source)
    resumed = uploader(server, stream, url=upload.url)
    reported = resumed.offset
    stream.read_bytes = 0
    resumed.upload()
    sent = stream.read_bytes
    stream.close()
    headers = resumed.request.response_headers
    return {
        "size": size,
        "offset": reported,
        "sent": sent,
        "ok": headers.get("hashfs-id") == digest,
        "rehash": rehash,
        "sha256sum": sha256sum,
        "partial": offset,
    }


def filesystem(path: Path) -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(
            ["df", "-T", str(path)], check=True, capture_output=True, text=True
        ).stdout
        return out.splitlines()[-1].split()[1]
    return "unknown"


def run(kind: str, base: Path, size: int, rounds: int) -> None:
    root = base / f"store-{kind}"
    source = base / "source.bin"
    if not source.exists():
        make_source(source, size)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    server = Server(kind, root)
    server.start()
    try:
        times = throughput(server, source, digest, rounds)
        result = resume(server, source, digest, rounds)
    finally:
        server.signal(signal.SIGTERM)
    tus, put = statistics.median(times["tus"]), statistics.median(times["put"])
    ratio = put / tus
    mib = size / MIB
    print(f"\n== {kind}")
    print(
        f"throughput  tus {mib / tus:7.1f} MiB/s  put {mib / put:7.1f} MiB/s  "
        f"ratio {ratio:.2f}x (target >= {THROUGHPUT_TARGET}x) "
        f"{'PASS' if ratio >= THROUGHPUT_TARGET else 'FAIL'}"
    )
    raw = statistics.median(times["raw"])
    print(
        f"  info: tus by hand (requests: POST, one PATCH) {mib / raw:7.1f} MiB/s, {put / raw:.2f}x"
    )
    print(
        f"  seconds: tus {_seconds(times['tus'])}  put {_seconds(times['put'])}  "
        f"by hand {_seconds(times['raw'])}"
    )
    remaining = result["size"] - result["offset"]
    print(
        f"resume      killed at {result['partial']} of {result['size']} bytes; HEAD said "
        f"{result['offset']}; sent after restart {result['sent']} (remaining {remaining}) "
        f"{'PASS' if result['sent'] == remaining and result['ok'] else 'FAIL'}"
    )
    rehash, summed = statistics.median(result["rehash"]), statistics.median(result["sha256sum"])
    speed = summed / rehash
    part = result["partial"] / MIB
    print(
        f"rehash      {part:.0f} MiB: server {part / rehash:7.1f} MiB/s  sha256sum "
        f"{part / summed:7.1f} MiB/s  ratio {speed:.2f}x (target >= {REHASH_TARGET}x) "
        f"{'PASS' if speed >= REHASH_TARGET else 'FAIL'}"
    )


def _seconds(values: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=["hypercorn", "gunicorn", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="64 MiB, 2 rounds")
    parser.add_argument("--dir", default=os.environ.get("BENCH_DIR", "."))
    args = parser.parse_args()
    size = (64 if args.quick else args.size_mib) * MIB
    rounds = 2 if args.quick else args.rounds
    base = Path(tempfile.mkdtemp(prefix="bench-tus-", dir=args.dir))
    try:
        print(
            f"bench_tus: {size // MIB} MiB, {rounds} rounds, Python {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
            f"filesystem {filesystem(base)} at {base}"
        )
        kinds = ["hypercorn", "gunicorn"] if args.server == "both" else [args.server]
        for kind in kinds:
            run(kind, base, size, rounds)
        print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
