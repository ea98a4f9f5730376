#!/usr/bin/env python
"""Benchmark a crowd of uploads: the server's memory with many bodies in flight at once.

``--clients`` (200) concurrent raw uploads of ``--size-mib`` (8) MiB each go
through Hypercorn (``upload_server.py``) on 127.0.0.1, into two routes, each
in a fresh server process per round, in an order that rotates from round to
round:

- ``put``: ``await fs.put(request.body)``, within ``HASHFS_UPLOAD_MEMORY``;
- ``discard``: the same bodies read and dropped by the same server (the
  reference: same server, same connections, no store).

The clients run in a separate process (this script with ``--client``),
asyncio sockets, each upload a distinct payload; every answer is checked
(the stored id is the payload's sha256, the discarded size is the body's).
During the crowd a thread of this process asks ``GET /ping`` every 5 ms. Per
route: peak RSS growth (the server's ``VmHWM`` after the crowd minus its
``VmRSS`` just before), RSS kept (``VmRSS`` two seconds after the crowd minus
the same start), ``/ping``'s worst wait and the crowd's wall time.

Targets (issue 11, item 4), each against the discard route of the same
round, on the medians over rounds: peak RSS growth within 96 MiB, RSS kept
within 64 MiB, ``/ping`` worst within 1.5x. The script reports; it always
exits 0.

Run ``python benchmarks/bench_crowd.py`` (3 rounds; ``--quick``: 1 round,
50 clients). The stores live in a temp folder under ``--dir``,
``$BENCH_DIR`` or the current folder. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_uploads import Pinger, proc_status, render_table

MIB = 1 << 20
HOST = "127.0.0.1"
BLOCK = 64 << 10
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "upload_server.py")
#: Seconds the whole crowd may take before the client gives up.
CROWD_TIMEOUT = 600.0
SETTLE = 2.0

PEAK_MARGIN = 96 * MIB
KEPT_MARGIN = 64 * MIB
PING_RATIO = 1.5


# -- payloads ----------------------------------------------------------------------


def block(seed: bytes) -> bytes:
    """The 64 KiB pattern every payload is made of."""
    out = bytearray()
    counter = 0
    while len(out) < BLOCK:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:BLOCK])


def payload_blocks(pattern: bytes, index: int, size: int) -> Any:
    """Yield payload ``index``: ``pattern`` with the upload and block number up front."""
    head = memoryview(pattern)[16:]
    for number in range(size // BLOCK):
        yield index.to_bytes(8, "big") + number.to_bytes(8, "big")
        yield head


def payload_digest(pattern: bytes, index: int, size: int) -> str:
    digest = hashlib.sha256()
    for piece in payload_blocks(pattern, index, size):
        digest.update(piece)
    return digest.hexdigest()


# -- the client process -----------------------------------------------------------------


async def upload(port: int, path: str, pattern: bytes, index: int, size: int) -> list[Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {size}\r\n"
            "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode()
        )
        for piece in payload_blocks(pattern, index, size):
            writer.write(piece)
            await writer.drain()
        status_line = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length)
        return [int(status_line.split()[1]), json.loads(body)]
    finally:
        writer.close()


async def crowd(port: int, path: str, clients: int, size: int, seed: bytes) -> dict[str, Any]:
    pattern = block(seed)
    started = time.perf_counter()

    async def guarded(index: int) -> list[Any]:
        try:
            return await upload(port, path, pattern, index, size)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            return [0, repr(exc)]

    results = await asyncio.wait_for(
        asyncio.gather(*(guarded(i) for i in range(clients))), CROWD_TIMEOUT
    )
    return {"seconds": time.perf_counter() - started, "results": results}


def client_main(args: argparse.Namespace) -> int:
    outcome = asyncio.run(
        crowd(args.port, args.path, args.clients, args.size_mib * MIB, args.seed.encode())
    )
    json.dump(outcome, sys.stdout)
    return 0


# -- the server -------------------------------------------------------------------------


class Server:
    """``upload_server.py`` in a fresh subprocess on a free loopback port."""

    def __init__(self, root: str, upload_memory: int | None) -> None:
        command = [sys.executable, SERVER, "--root", root]
        if upload_memory is not None:
            command += ["--upload-memory", str(upload_memory)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        line = self.process.stdout.readline() if ready else ""
        match = re.fullmatch(r"PORT (\d+)\s*", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"the upload server did not start (said {line!r})")
        self.port = int(match.group(1))

    @property
    def pid(self) -> int:
        return self.process.pid

    def connection(self, timeout: float = 60.0) -> Any:
        import http.client

        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- measurement -------------------------------------------------------------------------


@dataclass
class Route:
    key: str
    label: str
    peak: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    ping: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    start: list[int] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workspace = tempfile.mkdtemp(prefix="hashfs-crowd-bench-", dir=args.dir)
        self.size = args.size_mib * MIB
        self.seed = "crowd"
        pattern = block(self.seed.encode())
        print("  hashing the payloads", file=sys.stderr, flush=True)
        self.digests = [payload_digest(pattern, i, self.size) for i in range(args.clients)]
        self.servers = 0

    def run_crowd(self, server: Server, path: str) -> dict[str, Any]:
        command = [sys.executable, os.path.abspath(__file__), "--client", "--port"]
        command += [str(server.port), "--path", path, "--clients", str(self.args.clients)]
        command += ["--size-mib", str(self.args.size_mib), "--seed", self.seed]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=CROWD_TIMEOUT + 60, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"the client failed: {done.stderr[-2000:]}")
        outcome: dict[str, Any] = json.loads(done.stdout)
        return outcome

    def check(self, route: Route, results: list[Any]) -> None:
        for index, (status, answer) in enumerate(results):
            if status != 200:
                raise AssertionError(f"{route.key} upload {index}: {status} {answer!r}")
            if route.key == "put" and answer["id"] != self.digests[index]:
                raise AssertionError(f"put upload {index}: stored {answer['id']}")
            if route.key == "discard" and answer["size"] != self.size:
                raise AssertionError(f"discard upload {index}: read {answer['size']} bytes")

    def measure(self, route: Route) -> None:
        self.servers += 1
        root = os.path.join(self.workspace, f"store-{self.servers}")
        os.mkdir(root)
        server = Server(root, self.args.upload_memory)
        try:
            for _ in range(2):  # warm-up: imports and first allocations
                conn = server.connection()
                conn.request("POST", f"/{route.key}", body=b"w" * MIB)
                conn.getresponse().read()
                conn.close()
            time.sleep(0.5)
            start = proc_status(server.pid)["VmRSS"]
            pinger = Pinger(server)  # type: ignore[arg-type]
            pinger.start()
            try:
                outcome = self.run_crowd(server, f"/{route.key}")
            finally:
                pings = pinger.finish()
            check_alive = server.process.poll()
            if check_alive is not None:
                raise RuntimeError(f"the server exited with status {check_alive}")
            hwm = proc_status(server.pid)["VmHWM"]
            time.sleep(SETTLE)
            after = proc_status(server.pid)["VmRSS"]
            self.check(route, outcome["results"])
            route.start.append(start)
            route.peak.append(hwm - start)
            route.kept.append(after - start)
            route.ping.append(max(pings) if pings else float("nan"))
            route.seconds.append(outcome["seconds"])
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)

    def close(self) -> None:
        shutil.rmtree(self.workspace, ignore_errors=True)


# -- report ---------------------------------------------------------------------------------


def report(routes: list[Route], args: argparse.Namespace) -> list[str]:
    put, discard = routes
    rows = []
    for route in routes:
        rows.append(
            [
                route.label,
                f"{median(route.peak) / MIB:,.0f} MiB",
                f"{median(route.kept) / MIB:,.0f} MiB",
                f"{median(route.ping) * 1000:,.0f} ms",
                f"{median(route.seconds):.1f} s",
                f"{args.clients * args.size_mib / median(route.seconds):,.0f}",
                f"{median(route.start) / MIB:,.0f} MiB",
            ]
        )
    header = ["route", "peak RSS growth", "RSS kept", "/ping worst", "crowd time", "MiB/s"]
    print("## Results (medians over the rounds)")
    print()
    print(render_table([*header, "RSS at start"], rows))
    print()
    peak_gap = median(put.peak) - median(discard.peak)
    kept_gap = median(put.kept) - median(discard.kept)
    ping_ratio = median(put.ping) / median(discard.ping)
    checks = [
        (
            "peak RSS growth - discard's",
            f"{peak_gap / MIB:+,.0f} MiB",
            "<= 96 MiB",
            peak_gap <= PEAK_MARGIN,
        ),
        (
            "RSS kept - discard's",
            f"{kept_gap / MIB:+,.0f} MiB",
            "<= 64 MiB",
            kept_gap <= KEPT_MARGIN,
        ),
        ("/ping worst / discard's", f"{ping_ratio:.2f}x", "<= 1.5x", ping_ratio <= PING_RATIO),
    ]
    print(
        render_table(
            ["target", "measured", "target", "result"],
            [
                [name, value, target, "PASS" if ok else "FAIL"]
                for name, value, target, ok in checks
            ],
        )
    )
    print()
    print("## Rounds (in order run)")
    print()
    for route in routes:
        cells = ", ".join(
            f"peak +{p / MIB:,.0f} kept +{k / MIB:,.0f} MiB ping {g * 1000:,.0f} ms {s:.1f} s"
            for p, k, g, s in zip(route.peak, route.kept, route.ping, route.seconds, strict=True)
        )
        print(f"- {route.label}: {cells}")
    print()
    return [f"{name}: {value} (target {target})" for name, value, target, ok in checks if not ok]


def filesystem(path: str) -> str:
    try:
        done = subprocess.run(
            ["df", "-T", path], capture_output=True, text=True, timeout=10, check=False
        )
        return done.stdout.splitlines()[-1].split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 50 clients")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--clients", type=int, default=200, help="concurrent uploads (200)")
    parser.add_argument("--size-mib", type=int, default=8, help="MiB per upload (8)")
    parser.add_argument(
        "--upload-memory", type=int, default=None, help="HASHFS_UPLOAD_MEMORY (default: the app's)"
    )
    parser.add_argument(
        "--dir",
        default=os.environ.get("BENCH_DIR", os.getcwd()),
        help="where the stores go (default $BENCH_DIR or the current folder)",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--seed", default="crowd", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.clients = min(args.clients, 50)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client:
        return client_main(args)
    print("# async-hashfs crowd benchmark")
    print()
    bench_dir = os.path.abspath(args.dir)
    print(f"- python: {platform.python_implementation()} {platform.python_version()}")
    print(f"- platform: {platform.platform()}; cpus: {os.cpu_count()}")
    print(f"- bench dir: {bench_dir} ({filesystem(bench_dir)})")
    print(
        f"- run: {args.rounds} rounds, {args.clients} clients x {args.size_mib} MiB, "
        "Hypercorn in a fresh subprocess per route and round, clients in another process"
    )
    print()
    started = time.perf_counter()
    routes = [Route("put", "put(request.body)"), Route("discard", "discard (reference)")]
    bench = Bench(args)
    try:
        for round_ in range(args.rounds):
            order = routes[round_ % 2 :] + routes[: round_ % 2]
            for route in order:
                print(f"  round {round_ + 1}/{args.rounds}: {route.key}", file=sys.stderr)
                bench.measure(route)
    finally:
        bench.close()
    missed = report(routes, args)
    print("## Summary")
    print()
    for line in missed:
        print(f"- MISSED: {line}")
    if not missed:
        print("All targets met.")
    print(f"({time.perf_counter() - started:.0f} s. Benchmarks report; the exit status is 0.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
