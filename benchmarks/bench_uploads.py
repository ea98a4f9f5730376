#!/usr/bin/env python
"""Benchmark streamed uploads through a real server: Quart under Hypercorn on loopback.

The server (``upload_server.py``) runs in a subprocess, so its memory is read
from ``/proc/PID/status``; curl is the client, sending a body file made once
(``curl -T``, streamed, with a Content-Length). Each round starts a fresh
server, uploads a small warm-up body to every route, then times, in an order
that rotates from round to round, on the same server process:

- ``put``: a raw body streamed into the store (``await fs.put(request.body)``);
- ``uploads``: the same bytes as a file part of a multipart body
  (``await fs.put_uploads()``);
- ``discard``: the same bytes read and dropped by the same server: the ceiling;
- ``onloop``: a route that hashes and writes each chunk on the event loop
  itself: what one thread can do (it stalls the loop: a limit, not a pattern);
- ``aiofiles``: a route that writes each chunk with aiofiles and hashes it on
  the loop: what users write without us;
- ``quartfiles``: the multipart body through Quart's own
  ``await request.files`` and ``await file.save(path)``, no hashing at all;
- ``local`` (information): the same bytes hashed and written to a file by
  this process, no HTTP: the pace of the disk.

A second fresh server per round has ``HASHFS_FSYNC=True`` and times ``put``
and ``uploads`` again (``--no-fsync`` skips it). During every upload a second
client asks ``/ping`` every 5 ms (the event loop's latency), and a sampler
reads the server's ``VmRSS`` every 10 ms (peak growth over the RSS just
before the upload).

A ratio is anchor median time / contender median time. Targets (issue 14):
put >= 2.0x onloop, >= 1.8x aiofiles, >= 0.7x discard; uploads >= 1.5x
onloop, >= 4x quartfiles, >= 0.5x discard; ping max <= 50 ms during our
routes; RSS growth <= 64 MiB. The script reports; it always exits 0.

Run ``python benchmarks/bench_uploads.py`` (``--quick`` for a smoke run).
The stores and the body files live in a temp folder under ``--dir``,
``$BENCH_DIR`` or the current folder (the server's ``TMPDIR`` too, so Quart's
spooled form files land on the same file system). Traffic goes to 127.0.0.1
only.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench_store import mount_of  # this folder is on sys.path when run as a script

MIB = 1 << 20
HOST = "127.0.0.1"
BLOCK_SIZE = MIB
WARMUP_SIZE = 8 * MIB
PING_EVERY = 0.005
SAMPLE_EVERY = 0.010
BOUNDARY = "bench-" + "5f" * 12
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "upload_server.py")

#: (contender, anchor, minimum ratio): issue 14's targets.
TARGETS = [
    ("put", "onloop", 2.0),
    ("put", "aiofiles", 1.8),
    ("put", "discard", 0.7),
    ("uploads", "onloop", 1.5),
    ("uploads", "quartfiles", 4.0),
    ("uploads", "discard", 0.5),
]
#: Routes of ours: the ping and memory targets apply to them.
OURS = {"put", "uploads"}
#: Routes that take the multipart body.
MULTIPART = {"uploads", "quartfiles"}
PING_TARGET = 0.050
RSS_TARGET = 64 * MIB


# -- the server -----------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """Return the ``Vm*`` fields of ``/proc/PID/status``, in bytes."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("Vm"):
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0]) * 1024
    return fields


class Server:
    """``upload_server.py`` in a subprocess, on a free loopback port."""

    def __init__(self, root: str, *, fsync: bool, tmpdir: str, src: str | None = None) -> None:
        command = [sys.executable, SERVER, "--root", root]
        if fsync:
            command.append("--fsync")
        env = {**os.environ, "TMPDIR": tmpdir}
        if src is not None:  # this async_hashfs comes first on the path
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self.port = self._read_port(timeout=20)

    def _read_port(self, timeout: float) -> int:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        match = re.fullmatch(r"PORT (\d+)\s*", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"the upload server did not start (said {line!r})")
        return int(match.group(1))

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def connection(self, timeout: float = 120.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- the clients ------------------------------------------------------------------


def write_body(path: str, block: bytes, size: int, head: bytes = b"", tail: bytes = b"") -> None:
    """Write ``head``, ``size`` bytes of ``block`` repeated, then ``tail`` to ``path``."""
    assert size % len(block) == 0
    with open(path, "wb") as file:
        file.write(head)
        for _ in range(size // len(block)):
            file.write(block)
        file.write(tail)


def multipart_parts(boundary: str) -> tuple[bytes, bytes]:
    """Return what goes before and after the file's bytes: a text field, then the file."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="title"\r\n\r\nbench\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail


def post(server: Server, path: str, body: str, content_type: str) -> tuple[float, Any]:
    """POST the file ``body`` with curl (streamed, with a Content-Length); (seconds, JSON)."""
    command = ["curl", "--silent", "--show-error", "--request", "POST", "--upload-file", body]
    command += ["--header", f"Content-Type: {content_type}", "--header", "Expect:"]
    command += ["--write-out", "\n%{http_code} %{time_total}", "--max-time", "600"]
    command.append(f"http://{HOST}:{server.port}{path}")
    done = subprocess.run(command, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"curl POST {path}: {done.stderr.decode(errors='replace')}")
    data, _, trailer = done.stdout.rpartition(b"\n")
    status, seconds = trailer.decode().split()
    if status != "200":
        raise RuntimeError(f"POST {path}: {status} {data[:200]!r}")
    return float(seconds), json.loads(data)


def delete(server: Server, id: str) -> None:
    connection = server.connection()
    try:
        connection.request("DELETE", f"/stored/{id}")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"DELETE /stored/{id}: {response.status}")


class Pinger(threading.Thread):
    """Asks ``GET /ping`` every 5 ms on one keep-alive connection, timing each answer."""

    def __init__(self, server: Server) -> None:
        super().__init__(name="pinger", daemon=True)
        self._server = server
        self._done = threading.Event()
        self.latencies: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        connection = self._server.connection(timeout=30)
        try:
            next_at = time.perf_counter()
            while not self._done.is_set():
                started = time.perf_counter()
                connection.request("GET", "/ping")
                response = connection.getresponse()
                response.read()
                self.latencies.append(time.perf_counter() - started)
                next_at = max(next_at + PING_EVERY, time.perf_counter())
                self._done.wait(max(0.0, next_at - time.perf_counter()))
        except BaseException as exc:  # reported by the measuring thread
            self.error = exc
        finally:
            connection.close()

    def finish(self) -> list[float]:
        self._done.set()
        self.join(35)
        if self.error is not None:
            raise RuntimeError(f"the pinger failed: {self.error!r}")
        return self.latencies


class MemorySampler(threading.Thread):
    """Reads the server's ``VmRSS`` every 10 ms and keeps the largest."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self._pid = pid
        self._done = threading.Event()
        self.peak = proc_status(pid)["VmRSS"]

    def run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY):
            rss = proc_status(self._pid).get("VmRSS")
            if rss is None:  # the server exited: measure() reports it
                return
            self.peak = max(self.peak, rss)

    def finish(self) -> int:
        self._done.set()
        self.join(5)
        self.peak = max(self.peak, proc_status(self._pid).get("VmRSS", 0))
        return self.peak


# -- measurement ----------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    rss_growth: int
    pings: list[float]


@dataclass
class Contender:
    key: str
    label: str
    fsync: bool
    #: Sent to the server running ``--baseline``'s code (the code before).
    before: bool = False
    samples: list[Sample] = field(default_factory=list)
    hwm_growth: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def pings(self) -> list[float]:
        return sorted(p for s in self.samples for p in s.pings)

    @property
    def rss_growth(self) -> int:
        return max(s.rss_growth for s in self.samples)


class Bench:
    def __init__(self, base: str, size: int, baseline: str | None = None) -> None:
        self.baseline = baseline
        self.workspace = tempfile.mkdtemp(prefix="hashfs-upload-bench-", dir=base)
        self.tmpdir = os.path.join(self.workspace, "tmp")
        os.mkdir(self.tmpdir)
        self.size = size
        self.block = os.urandom(BLOCK_SIZE)
        digest = hashlib.sha256()
        for _ in range(size // BLOCK_SIZE):
            digest.update(self.block)
        self.expected = digest.hexdigest()
        self._servers = 0
        self.content_type = f"multipart/form-data; boundary={BOUNDARY}"
        self.bodies: dict[tuple[bool, int], str] = {}
        for multi in (False, True):
            for length in (size, WARMUP_SIZE):
                path = os.path.join(self.workspace, f"body-{int(multi)}-{length}.bin")
                head, tail = multipart_parts(BOUNDARY) if multi else (b"", b"")
                write_body(path, self.block, length, head, tail)
                self.bodies[multi, length] = path

    def start_server(self, fsync: bool, before: bool = False) -> Server:
        self._servers += 1
        root = os.path.join(self.workspace, f"store-{self._servers}")
        os.mkdir(root)
        src = self.baseline if before else None
        return Server(root, fsync=fsync, tmpdir=self.tmpdir, src=src)

    def upload(self, server: Server, key: str, size: int) -> tuple[float, str | None]:
        """Send ``size`` bytes the contender's way; check what was stored; remove it."""
        multi = key in MULTIPART
        content_type = self.content_type if multi else "application/octet-stream"
        elapsed, result = post(server, f"/{key}", self.bodies[multi, size], content_type)
        if key in ("discard", "quartfiles"):
            check(result["size"] == size, f"{key} read {result['size']} of {size} bytes")
            if key == "quartfiles":
                check(result["form"] == {"title": ["bench"]}, f"form {result['form']}")
            return elapsed, None
        if key == "uploads":
            check(result["form"] == {"title": ["bench"]}, f"form {result['form']}")
            [stored] = result["files"]
            check(stored["size"] == size, f"stored {stored['size']} of {size} bytes")
            id = stored["id"]
        else:
            check(result.get("size", size) == size, f"{key} read {result.get('size')} bytes")
            id = result["id"]
        if key in OURS:
            delete(server, id)
        return elapsed, id if size == self.size else None

    def write_locally(self) -> float:
        """Hash and write the bytes to a file in the workspace, no HTTP: the disk's pace."""
        path = os.path.join(self.workspace, f"local-{secrets.token_hex(8)}.tmp")
        digest = hashlib.sha256()
        block = memoryview(self.block)
        started = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            for _ in range(self.size // len(block)):
                digest.update(block)
                view = block
                while view:
                    view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        elapsed = time.perf_counter() - started
        os.unlink(path)
        check(digest.hexdigest() == self.expected, "local write: wrong digest")
        return elapsed

    def measure(self, server: Server, contender: Contender) -> Sample:
        if contender.key == "local":
            return Sample(self.write_locally(), 0, [])
        sampler = MemorySampler(server.pid)
        pinger = Pinger(server)
        before = sampler.peak
        sampler.start()
        pinger.start()
        try:
            elapsed, id = self.upload(server, contender.key, self.size)
        finally:
            pings = pinger.finish()
            peak = sampler.finish()
        code = server.process.poll()
        check(code is None, f"the upload server exited with status {code}")
        if id is not None:
            check(id == self.expected, f"{contender.label}: stored id {id} != {self.expected}")
        return Sample(elapsed, peak - before, pings)

    def run_round(self, round_: int, contenders: list[Contender], fsync: bool) -> None:
        mine = [c for c in contenders if c.fsync == fsync]
        shift = round_ % len(mine)
        order = mine[shift:] + mine[:shift]
        servers: dict[bool, Server] = {}
        try:
            for before in sorted({c.before for c in order}):
                servers[before] = self.start_server(fsync, before)
            for contender in order:  # warm-up: imports, first allocations, code paths
                if contender.key != "local":
                    self.upload(servers[contender.before], contender.key, WARMUP_SIZE)
            start_rss = {before: server.status()["VmRSS"] for before, server in servers.items()}
            for contender in order:
                print(f"    {contender.label}", file=sys.stderr, flush=True)
                contender.samples.append(self.measure(servers[contender.before], contender))
            for contender in order:
                server = servers[contender.before]
                hwm = server.status()["VmHWM"] - start_rss[contender.before]
                contender.hwm_growth.append(hwm)
        finally:
            for server in servers.values():
                server.stop()

    def close(self) -> None:
        shutil.rmtree(self.workspace, ignore_errors=True)


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# -- report -------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def render_table(header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [list(header), *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def report(contenders: list[Contender], size: int) -> list[str]:
    """Print the tables; return the missed targets."""
    plain = {c.key: c for c in contenders if not c.fsync and not c.before}
    ceiling = plain["discard"]
    missed: list[str] = []
    header = ["contender", "median", "MiB/s", "vs discard", "ping p99", "ping max"]
    header += ["RSS growth", "HWM growth"]
    rows = []
    for contender in contenders:
        median = contender.median
        ratio = ceiling.median / median
        pings = contender.pings
        served = contender.key != "local"
        ours = contender.key in OURS
        ping_max = pings[-1] if pings else float("nan")
        if ours and not ping_max <= PING_TARGET:
            missed.append(f"{contender.label}: ping max {ping_max * 1000:.1f} ms")
        rss = contender.rss_growth
        hwm = max(contender.hwm_growth)
        if ours and (rss > RSS_TARGET or hwm > RSS_TARGET):
            growth = f"RSS growth {rss / MIB:.1f} MiB, HWM growth {hwm / MIB:.1f} MiB"
            missed.append(f"{contender.label}: {growth}")
        rows.append(
            [
                contender.label,
                f"{median:.2f} s",
                f"{size / MIB / median:,.0f}",
                "(ceiling)" if contender is ceiling else f"{ratio:.2f}x",
                f"{percentile(pings, 0.99) * 1000:.1f} ms" if pings else "-",
                f"{ping_max * 1000:.1f} ms" if pings else "-",
                f"{rss / MIB:.1f} MiB" if served else "-",
                f"{hwm / MIB:.1f} MiB" if served else "-",
            ]
        )
    print("## Results (medians over the rounds)")
    print()
    print(render_table(header, rows))
    print()
    print(
        "vs discard = discard median time / contender median time (the fsync rows are "
        "informative: their ceiling does no fsync). The (info) row hashes and writes the same "
        "bytes to a file in this process, no HTTP: the pace of the disk. "
        "ping: GET /ping every 5 ms during the "
        f"uploads, all rounds pooled (target max <= {PING_TARGET * 1000:.0f} ms on our routes; "
        "the on-loop route stalls the loop by design). RSS growth: "
        "the largest VmRSS sampled every 10 ms during an upload minus VmRSS just before it, "
        "worst round. HWM growth: the server's VmHWM after its measured uploads minus its "
        f"VmRSS before them, worst round, all routes of that server together (targets <= "
        f"{RSS_TARGET // MIB} MiB, for our routes; Quart's own form parsing is not bounded)."
    )
    print()
    rows = []
    for key, anchor, minimum in TARGETS:
        if key not in plain or anchor not in plain:
            continue
        ratio = plain[anchor].median / plain[key].median
        passed = ratio >= minimum
        if not passed:
            missed.append(
                f"{plain[key].label} vs {plain[anchor].label}: {ratio:.2f}x, target {minimum}x"
            )
        rows.append(
            [
                plain[key].label,
                plain[anchor].label,
                f"{ratio:.2f}x",
                f">= {minimum}x",
                verdict(passed),
            ]
        )
    print("## Targets (anchor median time / contender median time)")
    print()
    print(render_table(["contender", "anchor", "ratio", "target", "result"], rows))
    print()
    print("## Rounds (in order run)")
    print()
    for contender in contenders:
        times = ", ".join(f"{s.seconds:.2f} s" for s in contender.samples)
        growth = ", ".join(f"{s.rss_growth / MIB:.1f}" for s in contender.samples)
        print(f"- {contender.label}: {times}; RSS growth MiB: {growth}")
    print()
    return missed


def report_before(contenders: list[Contender]) -> None:
    """Print the targets' ratios for the code before (``--baseline``), same anchors."""
    plain = {c.key: c for c in contenders if not c.fsync and not c.before}
    before = {c.key: c for c in contenders if c.before}
    rows = []
    for key, anchor, minimum in TARGETS:
        if key in before and anchor in plain:
            ratio = plain[anchor].median / before[key].median
            rows.append(
                [before[key].label, plain[anchor].label, f"{ratio:.2f}x", f">= {minimum}x"]
            )
    if rows:
        print("## The same targets, for the code before (--baseline, same rounds)")
        print()
        print(render_table(["contender", "anchor", "ratio", "target"], rows))
        print()


def print_machine(bench_dir: str, args: argparse.Namespace, size: int) -> None:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print("## Machine")
    print()
    print(f"- python: {platform.python_implementation()} {platform.python_version()}")
    print(f"- platform: {platform.platform()}")
    print(f"- cpus: {os.cpu_count()} logical, {usable} usable")
    point, fstype, device = mount_of(bench_dir)
    print(f"- bench dir: {bench_dir} ({fstype} on {device}, mounted at {point})")
    mode = "quick" if args.quick else "full"
    print(f"- load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"- run: {mode}, {args.rounds} rounds, {size // MIB} MiB per upload, "
        f"server: Hypercorn in a subprocess, client: curl on 127.0.0.1"
    )
    print()


# -- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 64 MiB, 1 round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--size-mib", type=int, default=384, help="upload size (default 384)")
    parser.add_argument(
        "--dir",
        default=os.environ.get("BENCH_DIR", os.getcwd()),
        help="where the stores go (default $BENCH_DIR or the current folder)",
    )
    parser.add_argument("--no-fsync", action="store_true", help="skip the fsync server")
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also time put and uploads on a server running the async_hashfs in folder SRC "
        "(the code before), in the same rounds",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
        args.size_mib = min(args.size_mib, 64)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    size = args.size_mib * MIB
    contenders = [
        Contender("put", "put(request.body)", fsync=False),
        Contender("uploads", "put_uploads() multipart", fsync=False),
        Contender("discard", "discard (ceiling)", fsync=False),
        Contender("onloop", "sha256 + os.write on the loop", fsync=False),
        Contender("aiofiles", "aiofiles write, sha256 on the loop", fsync=False),
        Contender("quartfiles", "await request.files + file.save()", fsync=False),
        Contender("local", "sha256 + write, no HTTP (info)", fsync=False),
        Contender("put", "put(request.body), fsync", fsync=True),
        Contender("uploads", "put_uploads(), fsync", fsync=True),
    ]
    if args.baseline:
        contenders += [
            Contender("put", "put(request.body) [before]", fsync=False, before=True),
            Contender("uploads", "put_uploads() multipart [before]", fsync=False, before=True),
        ]
    print("# async-hashfs upload benchmark")
    print()
    print_machine(os.path.abspath(args.dir), args, size)
    started = time.perf_counter()
    bench = Bench(args.dir, size, args.baseline)
    try:
        for round_ in range(args.rounds):
            for fsync in (False,) if args.no_fsync else (False, True):
                print(
                    f"  round {round_ + 1}/{args.rounds}, fsync={fsync}",
                    file=sys.stderr,
                    flush=True,
                )
                bench.run_round(round_, contenders, fsync)
    finally:
        bench.close()
    if args.no_fsync:
        contenders = [c for c in contenders if not c.fsync]
    missed = report(contenders, size)
    report_before(contenders)
    print(f"- load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("## Summary")
    print()
    if missed:
        for line in missed:
            print(f"- MISSED: {line}")
    else:
        print("All targets met.")
    print(f"({time.perf_counter() - started:.0f} s. Benchmarks report; the exit status is 0.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
