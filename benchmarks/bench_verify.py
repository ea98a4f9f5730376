"""Benchmark: ``async-hashfs verify`` against ``sha256sum`` over the same files.

Stores 1 GiB in 4,000 files (``--quick``: 128 MiB in 500), then times, in
interleaved rounds, ``sha256sum`` over every stored file and
``async-hashfs verify`` over the store, and prints the median ratio
(target: verify at least 0.8x the speed of sha256sum).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from async_hashfs import SyncHashFS


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=os.environ.get("BENCH_DIR", "."))
    args = parser.parse_args()
    files, total = (500, 128 << 20) if args.quick else (4000, 1 << 30)
    size = total // files
    if shutil.which("sha256sum") is None:
        sys.exit("sha256sum is not installed")
    workspace = tempfile.mkdtemp(prefix="hashfs-bench-verify-", dir=args.dir)
    try:
        fs = SyncHashFS(workspace)
        paths = [fs.put(os.urandom(size)).abspath for _ in range(files)]
        script = str(Path(sys.executable).parent / "async-hashfs")
        contenders = {
            "sha256sum": ["sha256sum", *paths],
            "async-hashfs verify": [script, "--root", workspace, "verify", "--quiet"],
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for command in contenders.values():  # warm-up, page cache
            timed(command)
        for round_ in range(args.rounds):
            order = list(contenders)
            if round_ % 2:
                order.reverse()
            for name in order:
                times[name].append(timed(contenders[name]))
        anchor = statistics.median(times["sha256sum"])
        ours = statistics.median(times["async-hashfs verify"])
        ratio = anchor / ours
        print(
            f"verify over {total >> 20} MiB in {files} files, {args.rounds} rounds, "
            f"{os.cpu_count()} cpus"
        )
        print("| contender | median | MiB/s | ratio vs sha256sum | target | result |")
        print("|---|---|---|---|---|---|")
        print(f"| sha256sum | {anchor:.3f} s | {total / anchor / (1 << 20):,.0f} | (anchor) | | |")
        print(
            f"| async-hashfs verify | {ours:.3f} s | {total / ours / (1 << 20):,.0f} | "
            f"{ratio:.2f}x | >= 0.8x | {'PASS' if ratio >= 0.8 else 'FAIL'} |"
        )
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
