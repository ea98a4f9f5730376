"""Benchmark: ``sweep`` against listing the same store with ``find`` and ``ls -R``.

Stores 100,000 small files (``--quick``: 20,000) with the default layout
(depth 4, width 1), keeps the ids of half of them, and times, in
interleaved rounds over identical copies of the store (made with hard links,
outside the timed sections):

- ``ls -R STORE`` (the issue's anchor: a listing in C that reads no file's
  metadata), ``ls -lR STORE`` (the listing that shows what a sweep needs,
  each file's mtime), ``find STORE -type f``, and ``async-hashfs ls`` (the
  project's own listing, in Python);
- ``xargs rm`` over the paths of the files the sweep removes (a deletion
  floor: removing them in C, no listing, no emptied folders removed);
- ``SyncHashFS.sweep(ids, older_than=0)`` in this process, removing the other
  half, and the same with ``dry_run=True``;
- ``async-hashfs sweep --keep FILE --older-than 0`` as a command.

Target (the issue's): the in-process sweep at least 0.5x the speed of
``ls -R`` (ratio = anchor median / sweep median). ``--rss`` also measures, in child processes,
the peak resident memory of holding 1,000,000 kept ids, against an empty
baseline and a plain ``set`` of the hex strings. Always exits 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from async_hashfs import SyncHashFS


def run_quietly(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def in_process(action: Callable[[], object]) -> float:
    gc.collect()
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def filesystem(path: str) -> str:
    found = subprocess.run(
        ["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=False
    )
    return found.stdout.strip() or "unknown"


def build(store: str, files: int) -> list[str]:
    fs = SyncHashFS(store)
    return [fs.put(f"file {n}".encode()).id for n in range(files)]


def copy(pristine: str, target: str) -> None:
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run(["cp", "-al", pristine, target], check=True)


RSS_CHILD = """
import hashlib, resource, sys
mode = sys.argv[1]
count = int(sys.argv[2])
from async_hashfs._layout import Layout
from async_hashfs._sweep import KeepSet
ids = (hashlib.sha256(str(n).encode()).hexdigest() for n in range(count))
size = 0
if mode == "keepset":
    held = KeepSet(Layout("/nowhere", 4, 1, "sha256"))
    held.update(ids)
    size = sys.getsizeof(held._buckets) + sum(
        sys.getsizeof(bucket) for bucket in held._buckets if bucket is not None
    )
elif mode == "set":
    held = set(ids)
    size = sys.getsizeof(held) + sum(sys.getsizeof(id) for id in held)
else:
    held = sum(1 for _ in ids)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, size)
"""


BASELINE_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from async_hashfs import SyncHashFS
ids = open(sys.argv[3]).read().split()
started = time.perf_counter()
SyncHashFS(sys.argv[2]).sweep(ids, 0)
print(time.perf_counter() - started)
"""


def baseline_sweep(source: str, store: str, keep_file: str) -> float:
    """Sweep ``store`` with the code under ``source`` in a child process: its own timing."""
    found = subprocess.run(
        [sys.executable, "-c", BASELINE_CHILD, source, store, keep_file],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(found.stdout)


def measure_rss(count: int) -> None:
    print(f"\nmemory of {count:,} kept sha256 ids (each in a child process):")
    print(
        "| how | peak RSS (ru_maxrss) | over the baseline | objects (getsizeof) | bytes per id |"
    )
    print("|---|---|---|---|---|")
    base = None
    labels = {
        "baseline": "nothing held (ids generated and counted)",
        "keepset": "KeepSet (sweep's)",
        "set": "set of the hex strings",
    }
    for mode, label in labels.items():
        out = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, mode, str(count)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        peak, size = int(out[0]) * 1024, int(out[1])
        base = peak if base is None else base
        print(
            f"| {label} | {peak / 2**20:.1f} MiB | {(peak - base) / 2**20:.1f} MiB | "
            f"{size / 2**20:.1f} MiB | {size / count:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 files, 2 rounds")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--dir", default=os.environ.get("BENCH_DIR", "."))
    parser.add_argument("--rss", action="store_true", help="also the memory of 1,000,000 ids")
    parser.add_argument("-v", "--verbose", action="store_true", help="every round's times")
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also sweep with the code in SRC (a checkout's src folder), in the same rounds",
    )
    args = parser.parse_args()
    files = args.files or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (2 if args.quick else 5)
    for tool in ("find", "ls", "cp", "xargs", "rm"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed")
    script = str(Path(sys.executable).parent / "async-hashfs")
    workspace = tempfile.mkdtemp(prefix="hashfs-bench-sweep-", dir=args.dir)
    try:
        pristine = os.path.join(workspace, "pristine")
        ids = build(pristine, files)
        kept = ids[::2]
        keep_file = os.path.join(workspace, "keep.txt")
        Path(keep_file).write_text("".join(id + "\n" for id in kept))
        listing = os.path.join(workspace, "listing")
        copy(pristine, listing)
        copies = ["sweep", "dry", "cli", "rm"] + (["baseline"] if args.baseline else [])
        doomed = {name: os.path.join(workspace, name) for name in copies}
        doomed_list = os.path.join(workspace, "doomed.txt")
        probe = SyncHashFS(doomed["rm"])
        Path(doomed_list).write_text(
            "".join(probe.layout.abspath(probe.layout.relpath(id)) + "\n" for id in ids[1::2])
        )

        def sweep(path: str, dry_run: bool) -> Callable[[], object]:
            def action() -> object:
                report = SyncHashFS(path).sweep(kept, 0, dry_run=dry_run)
                assert report.removed == files - len(kept), report
                assert report.kept == len(kept), report
                return report

            return action

        cli_sweep = [script, "--root", doomed["cli"], "sweep", "--keep", keep_file]
        cli_sweep += ["--older-than", "0"]
        contenders: dict[str, Callable[[], float]] = {
            "find -type f": lambda: run_quietly(["find", listing, "-type", "f"]),
            "ls -R": lambda: run_quietly(["ls", "-R", listing]),
            "ls -lR": lambda: run_quietly(["ls", "-lR", listing]),
            "xargs rm (the removed files)": lambda: run_quietly(
                ["xargs", "-a", doomed_list, "rm"]
            ),
            "async-hashfs ls": lambda: run_quietly([script, "--root", listing, "ls"]),
            "sweep (in process)": lambda: in_process(sweep(doomed["sweep"], False)),
            "sweep dry_run (in process)": lambda: in_process(sweep(doomed["dry"], True)),
            "async-hashfs sweep": lambda: run_quietly(cli_sweep),
        }
        if args.baseline:
            source = os.path.abspath(args.baseline)
            contenders["sweep (baseline, child process)"] = lambda: baseline_sweep(
                source, doomed["baseline"], keep_file
            )
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for round_ in range(rounds + 1):  # round 0 warms up and is dropped
            for path in doomed.values():
                copy(pristine, path)
            order = list(contenders)
            shift = round_ % len(order)
            order = order[shift:] + order[:shift]
            for name in order:
                elapsed = contenders[name]()
                if round_:
                    times[name].append(elapsed)
                if args.verbose:
                    print(f"round {round_} {name}: {elapsed:.3f} s", file=sys.stderr)
        load = os.getloadavg()
        print(
            f"sweep of {files:,} files against {len(kept):,} kept ids "
            f"(removes {files - len(kept):,}), {rounds} rounds, filesystem "
            f"{filesystem(workspace)}, {os.cpu_count()} cpus, load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
        )
        medians = {name: statistics.median(values) for name, values in times.items()}
        find, ls_r = medians["find -type f"], medians["ls -R"]
        ours_ls = medians["async-hashfs ls"]
        ls_lr = medians["ls -lR"]
        print(
            "| contender | median | files/s | vs ls -R | vs ls -lR | vs find "
            "| vs async-hashfs ls | target | result |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for name, median in medians.items():
            target = result = ""
            if name == "sweep (in process)":
                target = ">= 0.5x ls -R"
                result = "PASS" if ls_r / median >= 0.5 else "FAIL"
            print(
                f"| {name} | {median:.3f} s | {files / median:,.0f} | {ls_r / median:.2f}x | "
                f"{ls_lr / median:.2f}x | {find / median:.2f}x | {ours_ls / median:.2f}x "
                f"| {target} | {result} |"
            )
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    if args.rss:
        measure_rss(1_000_000)


if __name__ == "__main__":
    main()
