#!/usr/bin/env python
"""What a streamed put costs the event loop: the pump alone, this checkout against ``--baseline``.

Two measurements, each in interleaved rounds (this checkout's pump and the
baseline's take turns in one process, so the machine's load falls on both):

1. the event loop thread's CPU time while ``AsyncHashFS.put()`` stores an
   async iterator of chunks already in memory (1 MiB, 64 KiB and 16 KiB), with
   the store's real writer in its worker thread;
2. how late a task that sleeps 2 ms at a time wakes while ``pump()`` feeds a
   64 MiB multipart body to a ``consume`` that parses it (python-multipart),
   hashes and writes the file part, or that hashes and writes the raw bytes:
   the loop's latency while it shares the GIL with the writer thread.

CPU time is the steadier measure on a shared machine: wall time there is
decided by other processes. Medians of the rounds; the script always exits 0.

Run ``python benchmarks/bench_pump.py --baseline OLD_SRC --dir /dev/shm``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel
import python_multipart

try:
    import async_hashfs
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import async_hashfs

from bench_store import import_baseline

import async_hashfs._budget

MIB = 1 << 20
BOUNDARY = b"----bench-pump"
PROBE = 0.002


def load_baseline(src: str) -> ModuleType:
    """Import the ``async_hashfs`` package in the folder ``src``, and its pump."""
    module = import_baseline(src)
    importlib.import_module(f"{module.__name__}._budget")
    return module


async def chunks_of(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def loop_cpu(fs: Any, chunks: list[bytes]) -> tuple[float, float]:
    """Store ``chunks`` once; return (wall seconds, loop thread CPU seconds)."""
    started, cpu = time.perf_counter(), time.thread_time()
    address = await fs.put(chunks_of(chunks))
    wall, used = time.perf_counter() - started, time.thread_time() - cpu
    await fs.delete(address.id)
    return wall, used


def multipart_body(size: int) -> bytes:
    head = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="f"; '
        b'filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    return head + os.urandom(size) + b"\r\n--" + BOUNDARY + b"--\r\n"


def make_consume(kind: str, path: str) -> tuple[Callable[[list[Any]], None], Callable[[], None]]:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    def on_part_data(data: bytes, start: int, end: int) -> None:
        view = memoryview(data)[start:end]
        digest.update(view)
        os.write(fd, view)

    parser = python_multipart.MultipartParser(BOUNDARY, callbacks={"on_part_data": on_part_data})

    def parse(chunks: list[Any]) -> None:
        for chunk in chunks:
            parser.write(chunk)

    def write(chunks: list[Any]) -> None:
        for chunk in chunks:
            digest.update(chunk)
            os.write(fd, chunk)

    return (parse if kind == "multipart" else write), lambda: os.close(fd)


async def lateness(budget_module: Any, kind: str, chunks: list[bytes], path: str) -> float:
    """Pump ``chunks``; return the 99th percentile of a 2 ms sleeper's lateness, in seconds."""
    late: list[float] = []
    done = False

    async def probe() -> None:
        while not done:
            started = time.perf_counter()
            await anyio.sleep(PROBE)
            late.append(time.perf_counter() - started - PROBE)

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await anyio.lowlevel.checkpoint()  # the loop's own work between messages
            yield chunk

    consume, close = make_consume(kind, path)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(probe)
            budget = budget_module.UploadBudget()
            await budget_module.pump(body(), consume, anyio.to_thread.run_sync, budget)
            done = True
    finally:
        close()
    late.sort()
    return late[int(len(late) * 0.99)] if late else 0.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", metavar="SRC", required=True, help="the code before")
    parser.add_argument("--rounds", type=int, default=10, help="rounds (default 10)")
    parser.add_argument("--size-mib", type=int, default=128, help="put size (default 128)")
    parser.add_argument("--dir", default=os.getcwd(), help="where the stores go (tmpfs best)")
    args = parser.parse_args()
    if args.rounds < 1 or args.size_mib < 1:
        parser.error("--rounds and --size-mib must be at least 1")
    return args


async def main(args: argparse.Namespace) -> None:
    before = load_baseline(args.baseline)
    faces = {"after": async_hashfs, "before": before}
    workspace = tempfile.mkdtemp(prefix="hashfs-pump-", dir=args.dir)
    try:
        data = os.urandom(args.size_mib * MIB)
        print(f"# pump benchmark: {args.size_mib} MiB, {args.rounds} rounds, dir {args.dir}")
        print(f"- load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print()
        print("| case | loop CPU before → after | wall before → after |")
        print("| --- | --- | --- |")
        for size in (MIB, 64 << 10, 16 << 10):
            chunks = [data[i : i + size] for i in range(0, len(data), size)]
            stores = {
                name: module.AsyncHashFS(os.path.join(workspace, f"{name}-{size}"))
                for name, module in faces.items()
            }
            rows: dict[str, list[tuple[float, float]]] = {name: [] for name in faces}
            for round_ in range(args.rounds + 1):  # round 0 warms up
                order = list(faces) if round_ % 2 else list(reversed(faces))
                for name in order:
                    measured = await loop_cpu(stores[name], chunks)
                    if round_:
                        rows[name].append(measured)
            cpu = {n: statistics.median(r[1] for r in rows[n]) * 1e3 for n in faces}
            wall = {n: statistics.median(r[0] for r in rows[n]) * 1e3 for n in faces}
            print(
                f"| put, {size >> 10} KiB chunks in memory | {cpu['before']:.1f} → "
                f"{cpu['after']:.1f} ms | {wall['before']:.0f} → {wall['after']:.0f} ms |"
            )
        body = multipart_body(64 * MIB)
        messages = [body[i : i + (64 << 10)] for i in range(0, len(body), 64 << 10)]
        modules = {"after": async_hashfs._budget, "before": before._budget}
        out = os.path.join(workspace, "consumed")
        for kind in ("raw", "multipart"):
            late: dict[str, list[float]] = {name: [] for name in modules}
            for round_ in range(args.rounds):
                order = list(modules) if round_ % 2 else list(reversed(modules))
                for name in order:
                    late[name].append(await lateness(modules[name], kind, messages, out))
            p99 = {n: statistics.median(late[n]) * 1e3 for n in modules}
            print(
                f"| 64 MiB pumped to a {kind} consume: 2 ms sleeper's p99 lateness | "
                f"{p99['before']:.1f} → {p99['after']:.1f} ms | |"
            )
        print()
        print(f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    anyio.run(main, parse_args())
