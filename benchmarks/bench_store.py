#!/usr/bin/env python
"""Benchmark the async-hashfs store against HashFS 0.7.2 and a raw single-pass loop.

Three cases, each measured in rounds: in every round each contender runs once
(round-robin, the starting contender rotating from round to round), and the
table reports the median of the rounds.

1. put of a large file from a path (256 MiB; the source is written once);
2. many puts of distinct 1 KiB payloads into a fresh store;
3. get(id) of files stored with an extension.

Every timed section starts after ``gc.collect()``; store creation, payload
generation, checks of the results and deletion of the stored files happen
outside it. A ratio is ``anchor median time / contender median time``: above
1 means the contender is faster. The script always exits 0: it reports, it
does not gate CI.

Run ``python benchmarks/bench_store.py`` (``--quick`` for a smoke run). The
stores live in a temp folder under ``--dir``, ``$BENCH_DIR`` or the current
folder, never in the system temp folder, so source and stores share one
filesystem.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.metadata
import importlib.util
import io
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import anyio
import hashfs
from hashfs.utils import shard

try:
    from async_hashfs import AsyncHashFS, SyncHashFS
except ImportError:  # run from a checkout without an install
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from async_hashfs import AsyncHashFS, SyncHashFS

MIB = 1 << 20
CHUNK_SIZE = 1 << 20
SMALL_SIZE = 1 << 10
IN_FLIGHT = 16
EXTENSION = "jpg"
#: A contender whose rounds spread more than this around the median is flagged.
NOISY = 0.25
#: Contenders others are compared with.
ANCHORS = ("raw", "hashfs", "floor")


# -- measurement --------------------------------------------------------------


@dataclass
class Contender:
    """One way of doing a case's work; ``run(round)`` returns the timed seconds."""

    key: str
    label: str
    run: Callable[[int], float]
    times: list[float] = field(default_factory=list)
    #: CPU seconds of the whole process (every thread) per round, the round's
    #: setup included: what a loaded machine must find cores for.
    cpu: list[float] = field(default_factory=list)
    #: CPU seconds of the event loop's own thread per call, warm-up included
    #: (async contenders only): what the put costs the loop that serves requests.
    loop_cpu: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and self.error is None else None


@dataclass
class Target:
    """``contender`` must be at least ``minimum`` times as fast as ``anchor``."""

    contender: str
    anchor: str
    minimum: float
    #: Shown, not judged: the same comparison for the code before (``--baseline``),
    #: or how close a contender comes to a floor; ``note`` goes in the result column.
    info: bool = False
    note: str = "(before)"


@dataclass
class Case:
    title: str
    unit: str
    work: float
    contenders: list[Contender]
    targets: list[Target]
    #: Run once after the last round (the small case deletes its stores there).
    cleanup: Callable[[], None] | None = None

    def contender(self, key: str) -> Contender:
        return next(c for c in self.contenders if c.key == key)


@dataclass
class Verdict:
    case: Case
    contender: Contender
    anchor: Contender
    minimum: float
    ratio: float | None
    info: bool = False
    note: str = "(before)"

    @property
    def passed(self) -> bool:
        return self.ratio is not None and self.ratio >= self.minimum


def run_case(case: Case, rounds: int, warmup: bool = True) -> None:
    """Run every contender once per round, round-robin; round -1 is a discarded warm-up."""
    count = len(case.contenders)
    first = -1 if warmup else 0
    for round_ in range(first, rounds):
        shift = round_ % count
        order = case.contenders[shift:] + case.contenders[:shift]
        status = "warm-up" if round_ < 0 else f"round {round_ + 1}/{rounds}"
        print(f"  {case.title}: {status}", file=sys.stderr, flush=True)
        for contender in order:
            if contender.error is not None:
                continue
            cpu = time.process_time()
            try:
                elapsed = contender.run(round_)
            except Exception as exc:
                contender.error = f"{type(exc).__name__}: {exc}"
                print(f"  ! {contender.label} failed:", file=sys.stderr)
                traceback.print_exc()
                continue
            if round_ >= 0:
                contender.times.append(elapsed)
                contender.cpu.append(time.process_time() - cpu)


def judge(case: Case) -> list[Verdict]:
    verdicts = []
    for target in case.targets:
        contender = case.contender(target.contender)
        anchor = case.contender(target.anchor)
        ratio = None
        if contender.median is not None and anchor.median is not None:
            ratio = anchor.median / contender.median
        verdicts.append(
            Verdict(case, contender, anchor, target.minimum, ratio, target.info, target.note)
        )
    return verdicts


def start_timer() -> float:
    gc.collect()
    return time.perf_counter()


# -- the code under test ------------------------------------------------------


@dataclass
class Face:
    """One version of the store: this checkout's, or ``--baseline``'s (the code before)."""

    key: str  # prefix of the contender keys
    tag: str  # suffix of the contender labels
    sync: type[SyncHashFS]
    asyncio: type[AsyncHashFS]

    @property
    def before(self) -> bool:
        return bool(self.key)


def load_baseline(src: str) -> Face:
    """The faces of the ``async_hashfs`` package found in the folder ``src``."""
    module = import_baseline(src)
    return Face("before-", " [before]", module.SyncHashFS, module.AsyncHashFS)


def import_baseline(src: str) -> ModuleType:
    """Import the ``async_hashfs`` package found in the folder ``src`` under another name."""
    folder = os.path.join(src, "async_hashfs")
    spec = importlib.util.spec_from_file_location(
        "async_hashfs_baseline",
        os.path.join(folder, "__init__.py"),
        submodule_search_locations=[folder],
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline: no async_hashfs package in {src}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# -- the workspace ------------------------------------------------------------


class Workspace:
    """A temp folder that holds the source file and a fresh store root per run."""

    def __init__(self, base: str) -> None:
        self.path = tempfile.mkdtemp(prefix="hashfs-bench-", dir=base)
        self._count = 0

    def fresh_root(self) -> str:
        self._count += 1
        root = os.path.join(self.path, f"store-{self._count}")
        os.mkdir(root)
        return root

    @staticmethod
    def discard(root: str) -> None:
        shutil.rmtree(root)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def write_random_file(path: str, size: int) -> str:
    """Write ``size`` random bytes to ``path``, 1 MiB at a time; return their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as file:
        remaining = size
        while remaining:
            chunk = os.urandom(min(CHUNK_SIZE, remaining))
            digest.update(chunk)
            file.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def count_stored(root: str) -> int:
    """Count files under ``root``, skipping dot folders (our temp folder)."""
    total = 0
    for _folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        total += sum(1 for name in names if not name.startswith("."))
    return total


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# -- case 1: one large put from a path --------------------------------------


def raw_single_pass(src: str, root: str) -> str:
    """The limit: read 1 MiB, hash it, write it to a temp file in the root, rename."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    temp = os.path.join(root, f".raw-{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
    try:
        with open(src, "rb", buffering=0) as file:
            while n := file.readinto(buffer):
                chunk = view[:n]
                digest.update(chunk)
                while chunk:
                    chunk = chunk[os.write(fd, chunk) :]
    finally:
        os.close(fd)
    id = digest.hexdigest()
    final = os.path.join(root, *shard(id, 4, 1))
    os.makedirs(os.path.dirname(final), exist_ok=True)
    os.rename(temp, final)
    return id


async def file_chunks(path: str) -> AsyncIterator[bytes]:
    """Yield the file at ``path`` in 1 MiB chunks, each read in a worker thread."""
    async with await anyio.open_file(path, "rb") as file:
        while chunk := await file.read(CHUNK_SIZE):
            yield chunk


async def memory_chunks(chunks: list[bytes]) -> AsyncIterator[bytes]:
    """Yield chunks already in memory, as a request body gives them (``bytes``)."""
    for chunk in chunks:
        yield chunk


def large_put_case(workspace: Workspace, size_mib: int, faces: list[Face]) -> Case:
    src = os.path.join(workspace.path, "source.bin")
    print(f"  writing a {size_mib} MiB source file", file=sys.stderr, flush=True)
    expected = write_random_file(src, size_mib * MIB)
    split: dict[int, list[bytes]] = {}  # the in-memory contenders' chunks, made once

    def measure(put: Callable[[str], tuple[float, str]]) -> Callable[[int], float]:
        def run(round_: int) -> float:
            root = workspace.fresh_root()
            check(os.stat(root).st_dev == os.stat(src).st_dev, "source and store differ in fs")
            try:
                elapsed, id = put(root)
                check(id == expected, f"stored id {id} != {expected}")
                check(count_stored(root) == 1, "expected exactly one stored file")
            finally:
                workspace.discard(root)
            return elapsed

        return run

    def raw(root: str) -> tuple[float, str]:
        started = start_timer()
        id = raw_single_pass(src, root)
        return time.perf_counter() - started, id

    def sync_path(face: Face) -> Callable[[str], tuple[float, str]]:
        def put(root: str) -> tuple[float, str]:
            fs = face.sync(root)
            started = start_timer()
            address = fs.put(src)
            return time.perf_counter() - started, address.id

        return put

    def async_put(
        face: Face, source: Callable[[], object], loop_cpu: list[float]
    ) -> Callable[[str], tuple[float, str]]:
        def put(root: str) -> tuple[float, str]:
            async def main() -> tuple[float, str]:
                fs = face.asyncio(root)
                started = start_timer()
                cpu = time.thread_time()
                address = await fs.put(source())
                elapsed = time.perf_counter() - started
                loop_cpu.append(time.thread_time() - cpu)
                return elapsed, address.id

            return anyio.run(main, backend="asyncio")

        return put

    def in_memory(chunk_size: int) -> Callable[[], object]:
        with open(src, "rb") as file:
            split[chunk_size] = list(iter(lambda: file.read(chunk_size), b""))
        return lambda: memory_chunks(split[chunk_size])

    def hashfs_path(root: str) -> tuple[float, str]:
        fs = hashfs.HashFS(root)
        started = start_timer()
        address = fs.put(src)
        return time.perf_counter() - started, address.id

    in_memory_sizes = [("mem1m", "1 MiB", MIB), ("mem64k", "64 KiB", 64 << 10)]
    in_memory_sizes.append(("mem16k", "16 KiB", 16 << 10))
    sources = {n: in_memory(n) for _, _, n in in_memory_sizes}
    contenders = [Contender("raw", "raw single pass (read/sha256/write/rename)", measure(raw))]
    targets = []

    def async_contender(
        face: Face, key: str, label: str, source: Callable[[], object]
    ) -> Contender:
        loop_cpu: list[float] = []
        run = measure(async_put(face, source, loop_cpu))
        label = f"AsyncHashFS.put({label}){face.tag}"
        return Contender(face.key + key, label, run, loop_cpu=loop_cpu)

    for face in faces:
        k, tag = face.key, face.tag
        contenders += [
            Contender(k + "sync", f"SyncHashFS.put(path){tag}", measure(sync_path(face))),
            async_contender(face, "async", "path", lambda: src),
            async_contender(face, "stream", "async iter, 1 MiB", lambda: file_chunks(src)),
        ]
        contenders += [
            async_contender(face, key, f"in memory, {label}", sources[n])
            for key, label, n in in_memory_sizes
        ]
        minimums = {"sync": 0.85, "async": 0.85, "stream": 0.9}
        minimums.update((key, 0.95) for key, _, _ in in_memory_sizes)
        targets += [Target(k + key, "raw", low, face.before) for key, low in minimums.items()]
        targets += [
            Target(k + key, "hashfs", 1.5, face.before) for key in ("sync", "async", "stream")
        ]
    contenders.append(Contender("hashfs", "hashfs.HashFS.put(path)", measure(hashfs_path)))
    return Case(
        title=f"put {size_mib} MiB from a path",
        unit="MiB/s",
        work=size_mib,
        contenders=contenders,
        targets=targets,
    )


# -- case 2: many small puts --------------------------------------------------


def small_puts_case(
    workspace: Workspace, puts: int, rounds: int, faces: list[Face], hashfs_temp: str
) -> Case:
    """``hashfs_temp``: ``"bench"`` gives hashfs.HashFS a temp folder of its own in
    the workspace (as ``TMPDIR`` on the stores' filesystem would), ``"system"``
    leaves it the system temp folder.
    """
    # Distinct payloads per round (round -1 is the warm-up), made before any timing.
    payloads = {
        round_: [os.urandom(SMALL_SIZE) for _ in range(puts)] for round_ in range(-1, rounds)
    }
    # The stores are deleted only after the last round. On ext4 without a journal,
    # every new inode (file or folder) is looked for past the inodes freed in the
    # last 60 s (360 s while their inode table block is unwritten) in its block
    # group, one buffer lookup each: deleting a round's ~6,000 files and folders
    # made the next contender's creations up to 10x slower, by luck of placement.
    # Each put makes about 3 inodes (the file and ~2 folders); where the filesystem
    # has too few free for every round, each round's store goes after its round.
    contenders_count = 2 * len(faces) + 2  # sync and async per face, hashfs, floor
    needed = 3 * puts * (rounds + 1) * contenders_count
    free = os.statvfs(workspace.path).f_favail
    keep = free == 0 or free > 2 * needed  # 0: a filesystem that does not count inodes
    if not keep:
        print(
            f"- small case: {free:,} free inodes, fewer than twice the {needed:,} "
            "needed to keep every round's store: each is deleted after its round, "
            "which slows the next round's creations on ext4 without a journal"
        )
        print()
    kept: list[str] = []
    hashfs_tmp = os.path.join(workspace.path, "hashfs-tmp") if hashfs_temp == "bench" else None
    if hashfs_tmp is not None:
        os.mkdir(hashfs_tmp)

    def cleanup() -> None:
        for root in kept:
            workspace.discard(root)
        if hashfs_tmp is not None:
            shutil.rmtree(hashfs_tmp, ignore_errors=True)

    def measure(put_all: Callable[[str, list[bytes]], float]) -> Callable[[int], float]:
        def run(round_: int) -> float:
            root = workspace.fresh_root()
            kept.append(root)
            elapsed = put_all(root, payloads[round_])
            check(count_stored(root) == puts, f"expected {puts} stored files")
            if not keep:
                workspace.discard(kept.pop())
            return elapsed

        return run

    def sync_loop(face: Face) -> Callable[[str, list[bytes]], float]:
        def put_all(root: str, batch: list[bytes]) -> float:
            fs = face.sync(root)
            put = fs.put
            started = start_timer()
            for data in batch:
                put(data)
            return time.perf_counter() - started

        return put_all

    def async_in_flight(face: Face) -> Callable[[str, list[bytes]], float]:
        def put_all(root: str, batch: list[bytes]) -> float:
            async def main() -> float:
                fs = face.asyncio(root)
                queue = iter(batch)

                async def worker() -> None:
                    for data in queue:
                        await fs.put(data)

                started = start_timer()
                async with anyio.create_task_group() as tg:
                    for _ in range(IN_FLIGHT):
                        tg.start_soon(worker)
                return time.perf_counter() - started

            return anyio.run(main, backend="asyncio")

        return put_all

    def hashfs_loop(root: str, batch: list[bytes]) -> float:
        fs = hashfs.HashFS(root)
        put = fs.put
        system_tmp = tempfile.tempdir
        tempfile.tempdir = hashfs_tmp or system_tmp  # what NamedTemporaryFile uses
        try:
            started = start_timer()
            for data in batch:
                put(io.BytesIO(data))
            return time.perf_counter() - started
        finally:
            tempfile.tempdir = system_tmp

    def floor_loop(root: str, batch: list[bytes]) -> float:
        """The floor: hash, make the folders, create, write, close, rename; nothing else."""
        join, makedirs, open_, write, close, rename = (
            os.path.join,
            os.makedirs,
            os.open,
            os.write,
            os.close,
            os.rename,
        )
        sha256 = hashlib.sha256
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        temp = join(root, "floor.tmp")
        started = start_timer()
        for data in batch:
            id = sha256(data).hexdigest()
            folder = join(root, id[:2], id[2:4], id[4:6])
            makedirs(folder, exist_ok=True)
            fd = open_(temp, flags, 0o664)
            write(fd, data)
            close(fd)
            rename(temp, join(folder, id[6:]))
        return time.perf_counter() - started

    contenders = []
    targets = []
    for face in faces:
        k, tag = face.key, face.tag
        contenders += [
            Contender(k + "sync", f"SyncHashFS.put(bytes) loop{tag}", measure(sync_loop(face))),
            Contender(
                k + "async",
                f"AsyncHashFS.put(bytes), {IN_FLIGHT} in flight{tag}",
                measure(async_in_flight(face)),
            ),
        ]
        targets += [
            Target(k + "sync", "hashfs", 1.3, face.before),
            Target(k + "async", "hashfs", 1.2, face.before),
        ]
    targets.append(Target("sync", "floor", 0, info=True, note="(of floor)"))
    contenders.append(Contender("hashfs", "hashfs.HashFS.put(BytesIO) loop", measure(hashfs_loop)))
    contenders.append(
        Contender("floor", "floor: bare makedirs+create+write+rename loop", measure(floor_loop))
    )
    return Case(
        title=f"{puts} puts of 1 KiB",
        unit="puts/s",
        work=puts,
        contenders=contenders,
        targets=targets,
        cleanup=cleanup,
    )


# -- case 3: get(id) of files stored with an extension -----------------------


def gets_case(workspace: Workspace, gets: int) -> Case:
    root = workspace.fresh_root()
    print(f"  storing {gets} files with extension {EXTENSION!r}", file=sys.stderr, flush=True)
    filler = SyncHashFS(root)
    ids = [filler.put(os.urandom(SMALL_SIZE), EXTENSION).id for _ in range(gets)]
    expected = [os.path.join(*shard(id, 4, 1)) + "." + EXTENSION for id in ids]

    def measure(get: Callable[[str], object]) -> Callable[[int], float]:
        def run(round_: int) -> float:
            found: list[object] = []
            append = found.append
            started = start_timer()
            for id in ids:
                append(get(id))
            elapsed = time.perf_counter() - started
            relpaths = [getattr(address, "relpath", None) for address in found]
            check(relpaths == expected, "get() did not find every stored file")
            return elapsed

        return run

    return Case(
        title=f"get(id) x{gets}, ext .{EXTENSION}",
        unit="gets/s",
        work=gets,
        contenders=[
            Contender("sync", "SyncHashFS.get(id)", measure(SyncHashFS(root).get)),
            Contender("hashfs", "hashfs.HashFS.get(id)", measure(hashfs.HashFS(root).get)),
        ],
        targets=[Target("sync", "hashfs", 3.0)],
    )


# -- report -------------------------------------------------------------------


def mount_of(path: str) -> tuple[str, str, str]:
    """Return ``(mount point, fs type, device)`` holding ``path``, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("?", "unknown", "?")
    longest = -1
    try:
        with open("/proc/self/mounts") as mounts:
            for line in mounts:
                device, point, fstype = line.split()[:3]
                point = point.replace("\\040", " ")
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= longest:
                    best, longest = (point, fstype, device), len(point)
    except OSError:
        pass
    return best


def fs_note(fstype: str, device: str) -> str:
    """Say whether an ext4 has a journal: without one, creating inodes right after
    deleting many is slow (see small_puts_case)."""
    if fstype != "ext4":
        return ""
    try:
        with open(f"/sys/fs/ext4/{os.path.basename(device)}/journal_task") as task:
            journal = task.read().strip()
    except OSError:
        return ""
    return ", no journal" if journal == "<none>" else ", journaled"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def print_machine(bench_dir: str, args: argparse.Namespace) -> None:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    point, fstype, device = mount_of(bench_dir)
    system_temp = tempfile.gettempdir()
    same_fs = os.stat(system_temp).st_dev == os.stat(bench_dir).st_dev
    print("## Machine")
    print(f"- load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(f"- python: {platform.python_implementation()} {platform.python_version()}")
    print(f"- platform: {platform.platform()}")
    print(f"- cpu: {cpu_model()}; {os.cpu_count()} logical, {usable} usable")
    print(f"- bench dir: {bench_dir} on {fstype}{fs_note(fstype, device)} ({device} at {point})")
    print(
        f"- system temp dir (where hashfs.HashFS writes before moving): {system_temp}, "
        f"{'same filesystem' if same_fs else 'OTHER filesystem: HashFS copies each file'}"
        + (
            "; in the small case a folder in the bench dir instead (--hashfs-temp)"
            if args.hashfs_temp == "bench"
            else ""
        )
    )
    print(
        f"- versions: async-hashfs {version('async-hashfs')}, hashfs {version('hashfs')}, "
        f"anyio {version('anyio')}"
    )
    mode = "quick" if args.quick else "full"
    print(
        f"- run: {mode}, {args.rounds} rounds (+1 warm-up), {args.size_mib} MiB, "
        f"{args.puts} puts, {args.gets} gets"
    )
    print()


def format_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    return f"{seconds * 1000:.1f} ms"


def format_rate(rate: float, unit: str) -> str:
    return f"{rate:,.0f} {unit}"


def render_table(header: Sequence[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [list(header), *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def report(cases: list[Case]) -> list[Verdict]:
    header = ["case", "contender", "median time", "median rate", "spread", "median CPU"]
    header.append("loop CPU")
    header += ["vs", "ratio", "target", "result"]
    rows: list[list[str]] = []
    verdicts: list[Verdict] = []
    for case in cases:
        case_verdicts = judge(case)
        verdicts.extend(v for v in case_verdicts if not v.info)
        first_row_of_case = True
        for contender in case.contenders:
            median = contender.median
            if median is None:
                cells = ["-", "-", "-", "-", "-"]
                if contender.error is not None:
                    cells = ["ERROR", contender.error[:40], "-", "-", "-"]
            else:
                spread = (max(contender.times) - min(contender.times)) / median
                cells = [
                    format_time(median),
                    format_rate(case.work / median, case.unit),
                    f"{spread:.0%}",
                    format_time(statistics.median(contender.cpu)),
                    loop_cpu(contender),
                ]
            mine = [v for v in case_verdicts if v.contender is contender]
            comparisons = [
                [
                    v.anchor.key,
                    "-" if v.ratio is None else f"{v.ratio:.3f}x",
                    f">= {v.minimum:g}x" if v.minimum else "-",
                    v.note if v.info else "PASS" if v.passed else "FAIL",
                ]
                for v in mine
            ] or [["(anchor)" if contender.key in ANCHORS else "", "", "", ""]]
            for index, comparison in enumerate(comparisons):
                title = case.title if first_row_of_case else ""
                first_row_of_case = False
                who = [contender.label, *cells] if index == 0 else [""] * (1 + len(cells))
                rows.append([title, *who, *comparison])
    print("## Results (medians)")
    print()
    print(render_table(header, rows))
    print()
    print(
        "ratio = anchor median time / contender median time (above 1: contender faster); "
        "spread = (max - min) / median over the rounds; median CPU = CPU time of the "
        "whole process (all threads) per round, the round's setup included; loop CPU = "
        "CPU time of the event loop's thread during the put (async contenders)."
    )
    print()
    return verdicts


def loop_cpu(contender: Contender) -> str:
    """The median loop-thread CPU time of the measured rounds, or ``""``."""
    measured = contender.loop_cpu[-len(contender.times) :] if contender.times else []
    return format_time(statistics.median(measured)) if measured else ""


def print_rounds(cases: list[Case]) -> None:
    print("## Rounds (in order run)")
    print()
    for case in cases:
        for contender in case.contenders:
            times = ", ".join(format_time(t) for t in contender.times)
            print(f"- {case.title} / {contender.label}: {times}")
    print()


def noisy_run(contender: Contender) -> bool:
    median = contender.median
    return median is not None and (max(contender.times) - min(contender.times)) / median > NOISY


def print_summary(verdicts: list[Verdict], elapsed: float) -> None:
    passed = [v for v in verdicts if v.passed]
    print("## Summary")
    print()
    print(f"{len(passed)}/{len(verdicts)} targets met in {elapsed:.0f} s.")
    for v in verdicts:
        if v.passed:
            continue
        got = "no result" if v.ratio is None else f"{v.ratio:.3f}x"
        print(
            f"- MISSED: {v.case.title}: {v.contender.label} vs {v.anchor.label}: "
            f"{got}, target >= {v.minimum:g}x"
        )
    if len(passed) == len(verdicts):
        print("All targets met.")
    noisy: dict[str, None] = {}  # ordered, without repeats
    for v in verdicts:
        for contender in (v.contender, v.anchor):
            if noisy_run(contender):
                noisy[f"{v.case.title}: {contender.label}"] = None
    if noisy:
        print(
            f"Spread above {NOISY:.0%} (verdicts involving these are shaky; "
            "rerun with more --rounds or on a quieter filesystem):"
        )
        for name in noisy:
            print(f"- {name}")
    print("(Benchmarks report; the exit status is 0 either way.)")


# -- main -----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 32 MiB, 300 puts, 300 gets, 2 rounds",
    )
    parser.add_argument("--rounds", type=int, help="measured rounds per case (default 5, quick 2)")
    parser.add_argument("--size-mib", type=int, help="size of the large put (default 256)")
    parser.add_argument("--puts", type=int, help="small puts per round (default 2000)")
    parser.add_argument("--gets", type=int, help="files to get per round (default 2000)")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print every round's time"
    )
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also time the async_hashfs package in folder SRC (the code before), same rounds",
    )
    parser.add_argument(
        "--cases",
        default="large,small,gets",
        help="which cases to run, comma-separated (default large,small,gets)",
    )
    parser.add_argument(
        "--hashfs-temp",
        choices=("bench", "system"),
        default="bench",
        help="where hashfs.HashFS writes its temp files in the small case: a folder of its "
        "own in the bench dir, as TMPDIR on the stores' filesystem would (default), or the "
        "system temp folder",
    )
    parser.add_argument(
        "--dir",
        default=os.environ.get("BENCH_DIR") or os.getcwd(),
        help="where the temp stores go (default $BENCH_DIR, else the current folder)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    if args.rounds is None:
        args.rounds = 2 if quick else 5
    if args.size_mib is None:
        args.size_mib = 32 if quick else 256
    if args.puts is None:
        args.puts = 300 if quick else 2000
    if args.gets is None:
        args.gets = 300 if quick else 2000
    for name in ("rounds", "size_mib", "puts", "gets"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bench_dir = os.path.realpath(args.dir)
    print("# async-hashfs store benchmark")
    print()
    began = time.perf_counter()
    try:
        workspace = Workspace(bench_dir)
    except OSError as exc:
        print(f"Cannot make a temp folder in {bench_dir}: {exc}. Nothing was measured.")
        return 0
    print_machine(bench_dir, args)
    faces = [Face("", "", SyncHashFS, AsyncHashFS)]
    if args.baseline:
        faces.append(load_baseline(args.baseline))
        print(f"- baseline (rows marked [before]): async_hashfs from {args.baseline}")
        print()
    cases: list[Case] = []
    failures = 0
    builders: list[Callable[[], Case]] = []
    wanted = set(args.cases.split(","))
    if "large" in wanted:
        builders.append(lambda: large_put_case(workspace, args.size_mib, faces))
    if "small" in wanted:
        builders.append(
            lambda: small_puts_case(workspace, args.puts, args.rounds, faces, args.hashfs_temp)
        )
    if "gets" in wanted:
        builders.append(lambda: gets_case(workspace, args.gets))
    try:
        for build in builders:
            try:
                case = build()
            except Exception:
                failures += 1
                print("  ! a case could not be set up:", file=sys.stderr)
                traceback.print_exc()
                continue
            try:
                run_case(case, args.rounds)
            finally:
                if case.cleanup is not None:
                    case.cleanup()
            cases.append(case)
    finally:
        workspace.close()
    verdicts = report(cases)
    if args.verbose:
        print_rounds(cases)
    print_summary(verdicts, time.perf_counter() - began)
    print(f"Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if failures:
        print(f"{failures} case(s) could not be set up; see the errors above.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
