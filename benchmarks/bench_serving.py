#!/usr/bin/env python
"""Benchmark the serving route through real servers on loopback, against the frameworks' own.

The servers (``serving_server.py``) run in subprocesses and serve one store
made here: a 4 KiB and a 1 MiB file. Both servers run for the whole
benchmark; this process drives the load:

- Quart under Hypercorn (one worker): our route (``/files/<relpath>``,
  registered by ``QuartHashFS`` with ``HASHFS_SERVE=True``) against a route
  doing Quart's ``await send_file(abspath, conditional=True)`` of the same
  file; and our 304 answers (``If-None-Match`` with our ETag) against an
  empty ``/ping`` route, the floor of any route;
- Flask under gunicorn's sync workers (or Werkzeug's threaded server when
  gunicorn is missing): our route (``FlaskHashFS``) against Flask's
  ``send_file(abspath, conditional=True)``.

The load generator is ``wrk`` when it is installed (its ``done()`` hook
reports requests, bytes and errors), else an asyncio client with keep-alive
connections in this process. Every response is checked once before timing
(status, length, body hash, ETag, 304, a range), and during timing the bytes
per response must match the expected body, with no errors.

Rounds are interleaved: each round runs every measurement once, starting one
further along each round, after one discarded warm-up pass. The tables show
median requests per second and ratios against targets: ours / send_file
>= 1.0x for 4 KiB and >= 2x for 1 MiB on Quart, 304 / ``/ping`` >= 0.9x, ours /
send_file >= 1.0x on Flask. The script reports; it always exits 0.

Run ``python benchmarks/bench_serving.py`` (``--quick`` for a smoke run).
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import importlib.metadata
import importlib.util
import os
import platform
import re
import resource
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

try:
    from async_hashfs import SyncHashFS
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from async_hashfs import SyncHashFS

KIB = 1 << 10
MIB = 1 << 20
HOST = "127.0.0.1"
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serving_server.py")
#: A response's headers may add at most this many bytes to its body.
HEADER_BUDGET = 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

WRK_SCRIPT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\\n",
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# -- the store and the servers ----------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    name: str
    size: int
    id: str
    relpath: str


def make_store(root: str) -> dict[str, StoredFile]:
    """Store a 4 KiB and a 1 MiB file of random bytes under ``root``."""
    store = SyncHashFS(root)
    files = {}
    for name, size in (("4k", 4 * KIB), ("1m", MIB)):
        address = store.put(os.urandom(size), "bin")
        relpath = address.relpath.replace(os.sep, "/")
        files[name] = StoredFile(name, size, address.id, relpath)
    return files


class Server:
    """One ``serving_server.py`` subprocess."""

    def __init__(self, app: str, root: str, workdir: str, extra: Sequence[str] = ()) -> None:
        self.app = app
        self._stderr = open(os.path.join(workdir, f"{app}-server.log"), "w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--app", app, "--root", root, *extra],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.port = 0

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Read the port the server printed, then wait until it answers ``/ping``."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        match = re.fullmatch(r"PORT (\d+)\s*", line)
        if not match:
            raise RuntimeError(f"the {self.app} server did not start:\n{self.log()}")
        self.port = int(match.group(1))
        while True:
            try:
                status, _, _ = fetch(self.port, "/ping")
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the {self.app} server does not answer:\n{self.log()}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and every process under it."""
        return sum(_cpu_ticks(pid) for pid in _tree(self.proc.pid)) / CLOCK_TICKS

    def log(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as file:
            text = file.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after the command name


def _cpu_ticks(pid: int) -> int:
    fields = _proc_stat(pid)
    return int(fields[11]) + int(fields[12]) if fields else 0  # utime + stime


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (gunicorn's workers)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _proc_stat(int(name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def fetch(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One GET on a fresh connection: status, headers (lower-cased names), body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


# -- what is measured -------------------------------------------------------


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    app: str
    path: str
    body_size: int
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    label: str
    contender: str
    anchor: str
    target: float | None


def make_cases(files: dict[str, StoredFile], etag: str) -> list[Case]:
    small, large = files["4k"], files["1m"]
    cases = []
    for app, framework in (("quart", "Quart"), ("flask", "Flask")):
        for file, size_label in ((small, "4 KiB"), (large, "1 MiB")):
            for route, who in (("files", "ours"), ("send_file", "send_file")):
                cases.append(
                    Case(
                        f"{app}-{route}-{file.name}",
                        f"{framework} {who} {size_label} 200",
                        app,
                        f"/{route}/{file.relpath}",
                        file.size,
                    )
                )
    cases.append(
        Case(
            "quart-files-4k-304",
            "Quart ours 4 KiB 304",
            "quart",
            f"/files/{small.relpath}",
            0,
            {"If-None-Match": etag},
        )
    )
    cases.append(Case("quart-ping", "Quart /ping (the floor of any route)", "quart", "/ping", 4))
    return cases


COMPARISONS = [
    Comparison("Quart 4 KiB: ours / send_file", "quart-files-4k", "quart-send_file-4k", 1.0),
    Comparison("Quart 1 MiB: ours / send_file", "quart-files-1m", "quart-send_file-1m", 2.0),
    Comparison("Quart 4 KiB: ours 304 / empty /ping", "quart-files-4k-304", "quart-ping", 0.9),
    Comparison("Quart 4 KiB: ours 304 / ours 200", "quart-files-4k-304", "quart-files-4k", None),
    Comparison("Flask 4 KiB: ours / send_file", "flask-files-4k", "flask-send_file-4k", 1.0),
    Comparison("Flask 1 MiB: ours / send_file", "flask-files-1m", "flask-send_file-1m", 1.0),
]


def verify(servers: dict[str, Server], files: dict[str, StoredFile]) -> list[str]:
    """Check every route once; return what is wrong (nothing when all is well)."""
    problems = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    for app, server in servers.items():
        for file in files.values():
            for route in ("files", "send_file"):
                where = f"{app} /{route}/ {file.name}"
                status, headers, body = fetch(server.port, f"/{route}/{file.relpath}")
                expect(status == 200, f"{where}: status {status}, expected 200")
                expect(
                    headers.get("content-length") == str(file.size) and len(body) == file.size,
                    f"{where}: length {headers.get('content-length')}/{len(body)}",
                )
                expect(hashlib.sha256(body).hexdigest() == file.id, f"{where}: wrong bytes")
                etag = headers.get("etag")
                expect(etag is not None, f"{where}: no ETag")
                if etag is None:
                    continue
                if route == "files":
                    expect(etag == f'"{file.id}"', f"{where}: ETag {etag}")
                status, _, body = fetch(
                    server.port, f"/{route}/{file.relpath}", {"If-None-Match": etag}
                )
                expect(status == 304 and body == b"", f"{where}: If-None-Match gave {status}")
                status, headers, body = fetch(
                    server.port, f"/{route}/{file.relpath}", {"Range": "bytes=100-199"}
                )
                expect(status == 206 and len(body) == 100, f"{where}: Range gave {status}")
    return problems


# -- load generators ----------------------------------------------------------


@dataclass
class Sample:
    rate: float  # responses per second
    requests: int
    bytes: int
    errors: int
    client_cpu: float  # seconds
    server_cpu: float  # seconds
    seconds: float


class Wrk:
    """``wrk`` with a ``done()`` hook that prints its summary."""

    def __init__(self, workdir: str, threads: int, connections: int) -> None:
        self.script = os.path.join(workdir, "summary.lua")
        with open(self.script, "w") as file:
            file.write(WRK_SCRIPT)
        self.threads = threads
        self.connections = connections

    @staticmethod
    def available() -> bool:
        return shutil.which("wrk") is not None

    def describe(self) -> str:
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
        name = version.splitlines()[0].split(" Copyright")[0] if version else "wrk"
        return f"{name}, {self.threads} threads, {self.connections} keep-alive connections"

    def run(self, url: str, headers: dict[str, str], duration: int) -> tuple[int, int, int, float]:
        """Return requests, bytes, errors and seconds."""
        command = ["wrk", f"-t{self.threads}", f"-c{self.connections}", f"-d{duration}s"]
        command += ["--timeout", "10s", "-s", self.script]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        result = subprocess.run([*command, url], capture_output=True, text=True, check=False)
        line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()}")
        micros, requests, size, *errors = (int(x) for x in line.split()[1:])
        return requests, size, sum(errors), micros / 1e6


class PythonLoad:
    """An asyncio client: ``connections`` keep-alive connections, one request in flight each."""

    def __init__(self, connections: int) -> None:
        self.connections = connections

    def describe(self) -> str:
        return f"asyncio client in the benchmark process, {self.connections} connections"

    def run(self, url: str, headers: dict[str, str], duration: int) -> tuple[int, int, int, float]:
        match = re.fullmatch(r"http://([^/:]+):(\d+)(/.*)", url)
        assert match is not None
        host, port, path = match.group(1), int(match.group(2)), match.group(3)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        return asyncio.run(self._run(host, port, request, duration))

    async def _run(
        self, host: str, port: int, request: bytes, duration: int
    ) -> tuple[int, int, int, float]:
        totals = [0, 0, 0]  # requests, bytes, errors
        start = time.perf_counter()
        deadline = start + duration
        tasks = [
            asyncio.create_task(_client(host, port, request, deadline, totals))
            for _ in range(self.connections)
        ]
        done, pending = await asyncio.wait(tasks, timeout=duration + 30)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception() is not None:
                totals[2] += 1
        return totals[0], totals[1], totals[2], duration


async def _client(
    host: str, port: int, request: bytes, deadline: float, totals: list[int]
) -> None:
    writer = None
    try:
        while time.perf_counter() < deadline:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            remaining = length
            while remaining:
                chunk = await reader.read(min(remaining, 256 * KIB))
                if not chunk:
                    raise ConnectionError("the server closed the connection mid-body")
                remaining -= len(chunk)
            if time.perf_counter() <= deadline:
                totals[0] += 1
                totals[1] += len(head) + length
                totals[2] += status >= 400
            if close:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


def measure(
    load: Wrk | PythonLoad, server: Server, case: Case, duration: int, in_process: bool
) -> Sample:
    url = f"http://{HOST}:{server.port}{case.path}"
    usage = resource.RUSAGE_SELF if in_process else resource.RUSAGE_CHILDREN
    before = resource.getrusage(usage)
    server_before = server.cpu_seconds()
    requests, size, errors, seconds = load.run(url, case.headers, duration)
    server_cpu = server.cpu_seconds() - server_before
    after = resource.getrusage(usage)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # wrk also counts the bytes of the responses still in flight at the end.
    in_flight = load.connections if isinstance(load, Wrk) else 0
    low, high = (
        requests * case.body_size,
        (requests + in_flight) * (case.body_size + HEADER_BUDGET),
    )
    if requests and not low <= size <= high:
        errors += requests  # the answers were not the expected size
    rate = requests / seconds if seconds else 0.0
    return Sample(rate, requests, size, errors, client_cpu, server_cpu, seconds)


# -- the report ----------------------------------------------------------------


def _versions() -> str:
    names = ["quart", "hypercorn", "flask", "werkzeug", "gunicorn"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def report(
    cases: list[Case],
    samples: dict[str, list[Sample]],
    header: list[str],
    verbose: bool,
) -> None:
    print("# Serving benchmark: our route vs the frameworks' send_file\n")
    for line in header:
        print(f"- {line}")
    print("\n## Requests per second (medians)\n")
    columns = "| measurement | req/s | min | max | server CPU | client CPU | errors |"
    print(columns)
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    medians = {}
    for case in cases:
        runs = samples[case.key]
        rates = [s.rate for s in runs]
        medians[case.key] = statistics.median(rates)
        server = statistics.median(s.server_cpu / s.seconds for s in runs)
        client = statistics.median(s.client_cpu / s.seconds for s in runs)
        errors = sum(s.errors for s in runs)
        print(
            f"| {case.label} | {_rate(medians[case.key])} | {_rate(min(rates))} "
            f"| {_rate(max(rates))} | {server:.0%} | {client:.0%} | {errors} |"
        )
        if verbose:
            print(f"|   rounds | {' / '.join(_rate(r) for r in rates)} | | | | | |")

    print("\n## Ratios\n")
    print("| comparison | ours req/s | reference req/s | ratio | target | result |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    passed = failed = 0
    for comparison in COMPARISONS:
        ours, reference = medians[comparison.contender], medians[comparison.anchor]
        ratio = ours / reference if reference else float("inf")
        errors = sum(
            s.errors for key in (comparison.contender, comparison.anchor) for s in samples[key]
        )
        if comparison.target is None:
            target, result = "-", "info"
        else:
            target = f">= {comparison.target:g}x"
            ok = ratio >= comparison.target and errors == 0
            result = "PASS" if ok else ("FAIL (errors)" if errors else "FAIL")
            passed += ok
            failed += not ok
        print(
            f"| {comparison.label} | {_rate(ours)} | {_rate(reference)} | {ratio:.2f}x "
            f"| {target} | {result} |"
        )
    print(f"\n{passed} of {passed + failed} targets met.")


# -- main --------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 1 s")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 3; --quick 2)")
    parser.add_argument("--duration", type=int, help="seconds per measurement (default 5)")
    parser.add_argument("--connections", type=int, default=16, help="client connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--flask-server",
        choices=["auto", "gunicorn", "werkzeug"],
        default="auto",
        help="gunicorn (sync workers) when installed, else Werkzeug's threaded server",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--dir", help="where the temp store goes (default $BENCH_DIR or .)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every round")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 3)
    duration = args.duration or (1 if args.quick else 5)
    warmup = min(duration, 2)

    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if Wrk.available() else "python"
    flask_server = args.flask_server
    if flask_server == "auto":
        has_gunicorn = importlib.util.find_spec("gunicorn") is not None
        flask_server = "gunicorn" if has_gunicorn else "werkzeug"

    base = args.dir or os.environ.get("BENCH_DIR") or os.getcwd()
    workdir = tempfile.mkdtemp(prefix="hashfs-serving-bench-", dir=base)
    servers: dict[str, Server] = {}
    try:
        files = make_store(os.path.join(workdir, "store"))
        root = os.path.join(workdir, "store")
        load: Wrk | PythonLoad = (
            Wrk(workdir, args.threads, args.connections)
            if loadgen == "wrk"
            else PythonLoad(args.connections)
        )
        servers["quart"] = Server("quart", root, workdir)
        servers["flask"] = Server(
            "flask", root, workdir, ["--server", flask_server, "--workers", str(args.workers)]
        )
        for server in servers.values():
            server.wait_ready()

        problems = verify(servers, files)
        if problems:
            print("Verification failed; nothing timed:")
            for problem in problems:
                print(f"- {problem}")
            return 0

        cases = make_cases(files, f'"{files["4k"].id}"')

        def run(case: Case, seconds: int) -> Sample:
            return measure(load, servers[case.app], case, seconds, loadgen == "python")

        progress = sys.stderr
        print(f"warm-up: {len(cases)} x {warmup} s", file=progress, flush=True)
        for case in cases:
            run(case, warmup)
        samples: dict[str, list[Sample]] = {case.key: [] for case in cases}
        for index in range(rounds):
            start = index % len(cases)
            order = cases[start:] + cases[:start]
            print(
                f"round {index + 1}/{rounds}: {len(order)} x {duration} s",
                file=progress,
                flush=True,
            )
            for case in order:
                samples[case.key].append(run(case, duration))

        flask_desc = (
            f"gunicorn, {args.workers} sync workers (no keep-alive: one connection per request)"
            if flask_server == "gunicorn"
            else "Werkzeug's threaded make_server"
        )
        header = [
            f"{platform.platform()}, {os.cpu_count()} CPUs, load average at the end "
            + " ".join(f"{x:.2f}" for x in os.getloadavg()),
            f"Python {platform.python_version()}; {_versions()}",
            "Quart app: Hypercorn, 1 worker (asyncio, h11)",
            f"Flask app: {flask_desc}",
            f"load: {load.describe()}, {duration} s per measurement",
            f"{rounds} rounds, interleaved, starting one further along each round, after a "
            f"{warmup} s warm-up pass; medians",
            "server CPU = the server's processes' CPU time / wall time (100% = one core); "
            "client CPU likewise for the load generator",
        ]
        report(cases, samples, header, args.verbose)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
