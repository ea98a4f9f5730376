"""``sweep(keep, older_than)``: removing what the app no longer refers to, and nothing else.

Files are made old with ``os.utime`` (local) rather than by waiting; on S3,
where an object's date cannot be set, the grace period is 0 or an hour.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import hashfs
import pytest
from click.testing import CliRunner
from flask import Flask
from quart import Quart

from async_hashfs import (
    AsyncHashFS,
    HashAddress,
    InvalidId,
    QuartHashFS,
    SweepReport,
    SyncHashFS,
    _base,
    _engine,
)
from async_hashfs._cli import cli
from async_hashfs._layout import Layout
from async_hashfs._sweep import KeepSet, parse_duration
from flask_shim import FlaskHashFS

from .conftest import stored_files, temp_files

HOUR = 3600.0


def age(fs: object, *addresses: HashAddress, seconds: float = 2 * HOUR) -> None:
    """Make stored files look ``seconds`` old."""
    then = time.time() - seconds
    for address in addresses:
        os.utime(address.abspath, (then, then))


def put_many(fs: SyncHashFS, count: int, extension: str | None = None) -> list[HashAddress]:
    return [fs.put(f"file {n}".encode(), extension) for n in range(count)]


# -- the rules, on a local store ----------------------------------------------


def test_removes_what_is_not_kept_and_old(sync_fs: SyncHashFS, root: Path) -> None:
    kept = put_many(sync_fs, 5)
    old = [sync_fs.put(f"old {n}".encode()) for n in range(4)]
    young = [sync_fs.put(f"young {n}".encode()) for n in range(3)]
    age(sync_fs, *kept, *old)
    seen: list[HashAddress] = []

    report = sync_fs.sweep((a.id for a in kept), older_than=HOUR, on_remove=seen.append)

    assert isinstance(report, SweepReport)
    assert (report.removed, report.kept, report.young, report.skipped) == (4, 5, 3, 0)
    assert report.removed_bytes == sum(len(f"old {n}") for n in range(4))
    assert report.keep_ids == 5 and not report.dry_run
    assert sorted(a.relpath for a in seen) == sorted(a.relpath for a in old)
    assert all(isinstance(a, HashAddress) and not a.is_duplicate for a in seen)
    assert sorted(stored_files(root)) == sorted(a.relpath for a in kept + young)
    assert temp_files(root) == []
    for address in old:  # their shard folders went with them, the root stayed
        assert not os.path.exists(os.path.dirname(address.abspath))
    assert root.is_dir()


def test_an_id_keeps_every_extension(sync_fs: SyncHashFS, root: Path) -> None:
    plain = sync_fs.put(b"same bytes")
    jpg = sync_fs.put(b"same bytes", "jpg")
    tgz = sync_fs.put(b"same bytes", "tar.gz")
    other = sync_fs.put(b"other bytes", "jpg")
    age(sync_fs, plain, jpg, tgz, other)
    report = sync_fs.sweep([plain.id], older_than=0)
    assert (report.removed, report.kept) == (1, 3)
    assert sorted(stored_files(root)) == sorted([plain.relpath, jpg.relpath, tgz.relpath])


def test_dry_run_reports_the_same_and_removes_nothing(sync_fs: SyncHashFS, root: Path) -> None:
    addresses = put_many(sync_fs, 30, "txt")
    age(sync_fs, *addresses)
    before = stored_files(root)
    seen: list[str] = []
    dry = sync_fs.sweep([a.id for a in addresses[:10]], 60, dry_run=True, on_remove=seen.append)
    assert stored_files(root) == before
    assert dry.dry_run and dry.removed == 20 and dry.folders > 0
    real_seen: list[str] = []
    real = sync_fs.sweep([a.id for a in addresses[:10]], 60, on_remove=real_seen.append)
    assert {**vars(real), "dry_run": True} == vars(dry)
    assert sorted(real_seen) == sorted(seen)
    assert sorted(stored_files(root)) == sorted(a.relpath for a in addresses[:10])


def test_removes_only_the_folders_it_empties(sync_fs: SyncHashFS, root: Path) -> None:
    address = sync_fs.put(b"alone")
    age(sync_fs, address)
    other = "0" if address.id[0] != "0" else "1"
    empty = root / other / "f" / "f" / "f"
    empty.mkdir(parents=True)  # already empty: gc's to remove, not a sweep's
    report = sync_fs.sweep([], 60)
    assert report.removed == 1 and report.folders == 4
    assert empty.is_dir()
    assert not (root / address.relpath.split(os.sep)[0]).exists()


def test_never_touches_the_temp_area_or_foreign_files(sync_fs: SyncHashFS, root: Path) -> None:
    address = sync_fs.put(b"stored")
    id = address.id
    foreign = {
        "misplaced": root / "a" / "b" / "c" / "d" / "not-a-hash",
        "other layout": root / id[:2] / id[2:4] / id[4:],
        "wide folder": root / "00" / "0" / "0" / "0" / id[4:],
        "bad extension": root / Path(address.relpath + ".bad ext"),
        "top level": root / "notes.txt",
        "deeper": root / Path(*id[:4]) / "x" / id,
    }
    for path in foreign.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
    temp = root / ".hashfs-tmp" / "123-abc.tmp"
    temp.parent.mkdir()
    temp.write_bytes(b"a writer's")
    link = root / Path(*id[:4]) / (id[4:] + ".lnk")
    link.symlink_to(root / "notes.txt")
    then = time.time() - 2 * HOUR
    for path in [*foreign.values(), temp, Path(address.abspath)]:
        os.utime(path, (then, then))

    report = sync_fs.sweep([], 60)

    assert (report.removed, report.skipped) == (1, len(foreign))
    assert all(path.read_bytes() == b"not ours" for path in foreign.values())
    assert temp.read_bytes() == b"a writer's"
    assert link.is_symlink()
    assert not os.path.exists(address.abspath)


@pytest.mark.parametrize(
    ("bad", "index"),
    [
        ("nothex" * 10 + "abcd", 1),
        ("A" * 64, 1),  # ids are lowercase, as HashAddress.id
        ("a" * 63, 1),
        ("a" * 64 + ".jpg", 1),  # an id, not a file name
        (" " + "a" * 63, 1),
        (b"a" * 64, 1),
        (None, 1),
    ],
)
def test_a_malformed_id_is_named_and_nothing_is_removed(
    sync_fs: SyncHashFS, root: Path, bad: object, index: int
) -> None:
    address = sync_fs.put(b"x")
    age(sync_fs, address)
    with pytest.raises(InvalidId) as caught:
        sync_fs.sweep([address.id, bad], 0)  # type: ignore[list-item]
    assert isinstance(caught.value, ValueError)
    assert repr(bad) in str(caught.value) and "id number 2" in str(caught.value)
    assert caught.value.index == index and caught.value.id == bad
    assert stored_files(root) == [address.relpath]


def test_bad_arguments(sync_fs: SyncHashFS) -> None:
    address = sync_fs.put(b"x")
    with pytest.raises(TypeError, match="single id"):
        sync_fs.sweep(address.id)
    with pytest.raises(TypeError, match="iterable"):
        sync_fs.sweep(42)  # type: ignore[arg-type]
    for older_than in (-1, float("nan"), float("inf"), "1h", True):
        with pytest.raises(ValueError, match="older_than"):
            sync_fs.sweep([], older_than)  # type: ignore[arg-type]
    assert sync_fs.exists(address.id)


def test_a_missing_root_is_an_empty_sweep(tmp_path: Path) -> None:
    report = SyncHashFS(tmp_path / "never").sweep([], 0)
    assert report == SweepReport()
    assert not (tmp_path / "never").exists()


def test_other_layouts(tmp_path: Path) -> None:
    for depth, width, algorithm in [(0, 1, "sha256"), (2, 2, "md5"), (3, 3, "sha1")]:
        fs = SyncHashFS(tmp_path / f"{depth}-{width}", depth, width, algorithm)
        kept, gone = fs.put(b"kept", "txt"), fs.put(b"gone")
        age(fs, kept, gone)
        report = fs.sweep([kept.id], 60)
        assert (report.removed, report.kept, report.skipped) == (1, 1, 0)
        assert fs.exists(kept.id) and not fs.exists(gone.id)


@pytest.mark.parametrize(
    ("depth", "width", "algorithm"),
    [(16, 2, "md5"), (20, 2, "md5"), (11, 3, "md5"), (4, 0, "sha1")],
    ids=["fills-the-digest", "beyond-the-digest", "short-last-part", "width-0"],
)
def test_a_layout_whose_folders_use_up_the_id(
    tmp_path: Path, depth: int, width: int, algorithm: str
) -> None:
    """HashFS 0.7.2 makes the id's last part the file name there (md5, 16 x 2: 15 folders)."""
    theirs = hashfs.HashFS(str(tmp_path), depth=depth, width=width, algorithm=algorithm)
    kept = theirs.put(io.BytesIO(b"kept"), extension=".txt")
    gone = [theirs.put(io.BytesIO(b"gone")), theirs.put(io.BytesIO(b"gone too"), ".tar.gz")]
    fs = SyncHashFS(tmp_path, depth, width, algorithm)
    assert fs.get(kept.id).relpath == kept.relpath  # type: ignore[union-attr]
    age(fs, kept, *gone)
    removed: list[HashAddress] = []
    report = fs.sweep([kept.id], 60, on_remove=removed.append)
    assert (report.removed, report.kept, report.skipped) == (2, 1, 0)
    assert sorted(a.relpath for a in removed) == sorted(a.relpath for a in gone)
    assert [a.id for a in removed] == [fs.unshard(a.abspath) for a in removed]
    assert fs.verify(kept.id) and not any(fs.exists(a.id) for a in gone)
    assert sorted(fs.files()) == [kept.abspath]
    assert list(fs.corrupted()) == []


def test_the_fast_address_check_agrees_with_the_layout(sync_fs: SyncHashFS, root: Path) -> None:
    """Every name in a shard folder is a content address for sweep iff parse_address says so."""
    address = sync_fs.put(b"x")
    folder = Path(address.abspath).parent
    names = [
        address.relpath.rsplit(os.sep, 1)[1] + suffix
        for suffix in ["", ".a", ".tar.gz", ".", "..a", ".a.", ".a b", ".é", "." + "a" * 33]
    ] + ["0" * 60, "g" * 60, "0" * 59 + ".txt", "0" * 61]
    for name in names:
        (folder / name).write_bytes(b"x")
    for name in names:
        os.utime(folder / name, (0, 0))
    layout = sync_fs.layout
    expected = {
        n
        for n in names
        if layout.parse_address(os.path.relpath(folder / n, root)) is not None
        and layout.unshard(os.path.relpath(folder / n, root)) != address.id
    }
    removed: list[HashAddress] = []
    sync_fs.sweep([address.id], 0, on_remove=removed.append)
    assert {Path(a.abspath).name for a in removed} == expected


# -- races with puts ----------------------------------------------------------


def test_a_duplicate_put_makes_an_old_file_new(sync_fs: SyncHashFS) -> None:
    """The app is about to record the id a duplicate put returned: no sweep may take it."""
    first = sync_fs.put(b"uploaded again")
    age(sync_fs, first)
    again = sync_fs.put(b"uploaded again")
    assert again.is_duplicate
    report = sync_fs.sweep([], older_than=60)
    assert (report.removed, report.young) == (0, 1)
    assert sync_fs.exists(first.id)


def test_a_put_between_look_and_removal_keeps_the_file(
    sync_fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A duplicate put lands after the sweep judged the file old, before it moved it."""
    address = sync_fs.put(b"contested")
    age(sync_fs, address)
    real_rename = _engine._folder.rename
    duplicates: list[HashAddress] = []

    def put_first(source: Any, name: str, target: Any, target_name: str) -> None:
        if name == os.path.basename(address.abspath) and not duplicates:
            duplicates.append(sync_fs.put(b"contested"))
        real_rename(source, name, target, target_name)

    monkeypatch.setattr(_engine._folder, "rename", put_first)
    report = sync_fs.sweep([], older_than=60)
    assert duplicates and duplicates[0].is_duplicate
    assert (report.removed, report.young) == (0, 1)
    assert sync_fs.verify(address.id)
    assert temp_files(sync_fs.root) == []


def test_a_put_after_the_move_stores_its_bytes_again(
    sync_fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = sync_fs.put(b"contested")
    age(sync_fs, address)
    real_rename = _engine._folder.rename
    puts: list[HashAddress] = []

    def put_after(source: Any, name: str, target: Any, target_name: str) -> None:
        real_rename(source, name, target, target_name)
        if name == os.path.basename(address.abspath) and not puts:
            puts.append(sync_fs.put(b"contested"))

    monkeypatch.setattr(_engine._folder, "rename", put_after)
    report = sync_fs.sweep([], older_than=60)
    assert puts and not puts[0].is_duplicate
    assert report.removed == 1  # the old file; the new one is at the address
    assert sync_fs.verify(address.id)
    assert temp_files(sync_fs.root) == []


def test_the_temp_folder_removed_midway_is_made_again(
    sync_fs: SyncHashFS, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that empties the temp area removes it, while a sweep moves files through it."""
    addresses = put_many(sync_fs, 3)
    age(sync_fs, *addresses)
    real_rename = _engine._folder.rename
    renames: list[str] = []

    def writer_removes_the_temp_folder(source: Any, name: str, target: Any, new: str) -> None:
        renames.append(name)
        if len(renames) == 2:
            os.rmdir(root / ".hashfs-tmp")  # empty between two of the sweep's files
        real_rename(source, name, target, new)

    monkeypatch.setattr(_engine._folder, "rename", writer_removes_the_temp_folder)
    report = sync_fs.sweep([], older_than=60)
    assert report.removed == 3 and len(renames) == 4  # the second file was tried twice
    assert stored_files(root) == [] and temp_files(root) == []


def test_the_temp_folder_removed_as_the_sweep_makes_it(
    sync_fs: SyncHashFS, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer empties and removes the temp folder between the sweep's mkdir and open."""
    addresses = put_many(sync_fs, 3)
    age(sync_fs, *addresses)
    real = _engine._LocalSweep._temp_folder
    calls: list[int] = []

    def removed_as_made(self: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory", ".hashfs-tmp")
        return real(self)

    monkeypatch.setattr(_engine._LocalSweep, "_temp_folder", removed_as_made)
    report = sync_fs.sweep([], older_than=60)
    assert report.removed == 3 and len(calls) > 1
    assert stored_files(root) == [] and temp_files(root) == []


def test_concurrent_duplicate_puts_never_lose_their_file(sync_fs: SyncHashFS) -> None:
    """Sweeps and duplicate puts of old files in two threads: every put's file survives."""
    data = [f"shared {n}".encode() for n in range(40)]
    addresses = [sync_fs.put(d) for d in data]

    def sweeper(stop: threading.Event, errors: list[BaseException]) -> None:
        try:
            while not stop.is_set():
                sync_fs.sweep([], older_than=60)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for _ in range(10):  # bounded rounds
        age(sync_fs, *(sync_fs.put(d) for d in data))
        stop = threading.Event()
        errors: list[BaseException] = []
        thread = threading.Thread(target=sweeper, args=(stop, errors))
        thread.start()
        try:
            returned = [sync_fs.put(d) for d in data]
        finally:
            stop.set()
            thread.join()
        assert not errors
        for address in returned:  # each put's bytes are stored, and young now
            assert sync_fs.verify(address.id)
    assert {a.id for a in addresses} == {sync_fs.unshard(p) for p in sync_fs.files()}
    assert temp_files(sync_fs.root) == []


def test_a_delete_emptying_the_folder_meanwhile(
    sync_fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A put brings the file back while a delete removed its folder: it is made again."""
    address = sync_fs.put(b"back")
    neighbour = sync_fs.put(b"neighbour")
    age(sync_fs, address)
    # Both in one folder: make the neighbour share it.
    folder = Path(address.abspath).parent
    shared = folder / ("f" * len(Path(address.abspath).name))
    os.replace(neighbour.abspath, shared)
    real_rename = _engine._folder.rename
    done: list[str] = []

    def refresh_then_delete(source: Any, name: str, target: Any, target_name: str) -> None:
        real_rename(source, name, target, target_name)
        if target_name.endswith(".tmp") and not done:
            done.append(name)
            then = time.time()
            os.utime(os.path.join(target.path, target_name), (then, then))
            sync_fs.delete(str(shared))  # the folder empties and goes

    monkeypatch.setattr(_engine._folder, "rename", refresh_then_delete)
    report = sync_fs.sweep([sync_fs.unshard(str(shared))], older_than=60)
    assert done and report.removed == 0 and report.young == 1
    assert sync_fs.verify(address.id)


# -- the clock ----------------------------------------------------------------


@pytest.fixture
def clock_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """``time.time()`` an hour ahead of the clock the file system stamps files with.

    The kernel stamps files from a coarse clock that lags ``time.time()`` by
    up to a tick (NFS: the server's clock): this makes the lag large enough
    to see, without waiting for a tick.
    """
    real = time.time
    monkeypatch.setattr(_base.time, "time", lambda: real() + HOUR)


def test_a_put_after_the_sweep_began_is_never_stamped_before_its_cutoff(
    sync_fs: SyncHashFS, clock_ahead: None
) -> None:
    old = sync_fs.put(b"old")
    age(sync_fs, old, seconds=3 * HOUR)
    during: list[HashAddress] = []

    def rows() -> Iterator[str]:  # a query still streaming while an upload lands
        during.append(sync_fs.put(b"uploaded during the sweep"))
        yield from ()

    report = sync_fs.sweep(rows(), older_than=60)
    assert (report.removed, report.young) == (1, 1)
    assert sync_fs.exists(during[0].id) and not sync_fs.exists(old.id)
    assert temp_files(sync_fs.root) == []


async def test_async_a_put_after_the_sweep_began_is_left(
    async_fs: AsyncHashFS, clock_ahead: None
) -> None:
    during: list[HashAddress] = []

    async def rows() -> AsyncIterator[str]:
        during.append(await async_fs.put(b"uploaded during the sweep"))
        for id in ():
            yield id

    report = await async_fs.sweep(rows(), older_than=60)
    assert (report.removed, report.young) == (0, 1)
    assert await async_fs.exists(during[0].id)


def test_older_than_0_removes_at_once(sync_fs: SyncHashFS) -> None:
    """Files put just before the sweep, in the same tick of the file system's clock, go."""
    put_many(sync_fs, 5)
    report = sync_fs.sweep([], older_than=0)
    assert (report.removed, report.young) == (5, 0)
    assert stored_files(sync_fs.root) == [] and temp_files(sync_fs.root) == []


def test_a_store_that_cannot_be_written_sweeps_on_the_process_clock(
    sync_fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = sync_fs.put(b"x")
    age(sync_fs, address)

    def refuse(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "read-only")

    monkeypatch.setattr(sync_fs._engine, "_temp_folder", refuse)
    report = sync_fs.sweep([], older_than=60, dry_run=True)
    assert report.removed == 1 and sync_fs.exists(address.id)


# -- the async store ----------------------------------------------------------


async def test_async_sweep_takes_async_and_blocking_iterables(
    async_fs: AsyncHashFS, root: Path
) -> None:
    sync = await anyio.to_thread.run_sync(SyncHashFS, root)
    addresses = await anyio.to_thread.run_sync(lambda: put_many(sync, 12))
    await anyio.to_thread.run_sync(lambda: age(sync, *addresses))

    async def rows() -> AsyncIterator[str]:
        for address in addresses[:4]:
            await anyio.lowlevel.checkpoint()
            yield address.id

    removed: list[HashAddress] = []
    report = await async_fs.sweep(rows(), 60, dry_run=True, on_remove=removed.append)
    assert (report.removed, report.kept, report.dry_run) == (8, 4, True)
    assert await async_fs.count() == 12
    report = await async_fs.sweep([a.id for a in addresses[:6]], older_than=60)
    assert (report.removed, report.kept) == (6, 6)
    assert {a.relpath for a in removed} >= {a.relpath for a in addresses[6:]}
    assert sorted(await anyio.to_thread.run_sync(stored_files, root)) == sorted(
        a.relpath for a in addresses[:6]
    )


async def test_async_sweep_names_a_malformed_id(async_fs: AsyncHashFS) -> None:
    address = await async_fs.put(b"x")

    async def rows() -> AsyncIterator[str]:
        for n in range(5000):  # past one batch
            yield hashlib.sha256(str(n).encode()).hexdigest()
        yield "not-an-id"

    with pytest.raises(InvalidId, match="'not-an-id' \\(id number 5001\\)"):
        await async_fs.sweep(rows(), 0)
    assert await async_fs.exists(address.id)
    with pytest.raises(TypeError):
        await async_fs.sweep(address.id, 0)


async def test_async_sweep_stops_when_cancelled(async_fs: AsyncHashFS, root: Path) -> None:
    sync = await anyio.to_thread.run_sync(SyncHashFS, root)
    addresses = await anyio.to_thread.run_sync(lambda: put_many(sync, 40))
    await anyio.to_thread.run_sync(lambda: age(sync, *addresses))
    removed: list[HashAddress] = []
    with anyio.CancelScope() as scope:

        def cancel_at_first(address: HashAddress) -> None:
            removed.append(address)
            if len(removed) == 1:
                anyio.from_thread.run_sync(scope.cancel)

        await async_fs.sweep([], 60, on_remove=cancel_at_first)
    assert scope.cancelled_caught
    left = await async_fs.count()
    assert left == 40 - len(removed) and 0 < left < 40
    assert await anyio.to_thread.run_sync(temp_files, root) == []


# -- the keep set and durations ----------------------------------------------


def test_keep_set_holds_each_id_once(tmp_path: Path) -> None:
    keep = KeepSet(Layout(str(tmp_path), 4, 1, "sha256"))
    ids = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(3000)]
    keep.update(ids + ids[:100])
    assert len(keep) == 3000 and keep.added == 3100
    assert all(id in keep for id in ids)
    others = [hashlib.sha256(f"o{n}".encode()).hexdigest() for n in range(3000)]
    assert not any(id in keep for id in others)
    # A digest found in a bucket at an offset that is not a record's start is no match.
    a = bytes([1, 2] + [0] * 14 + [1, 2] + [7] * 14)
    b = bytes([1, 2] + [9] * 30)
    keep.update([a.hex(), b.hex()])
    straddling = (a + b)[16:48]
    assert straddling[:2] == a[:2] and straddling in a + b
    assert a.hex() in keep and b.hex() in keep
    assert straddling.hex() not in keep


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1.5h", 5400),
        ("7d", 604800),
        ("1w", 604800),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "-1", "1x", "1 h 2", "1e3", "1h30m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# -- the command line ---------------------------------------------------------


def sweep_cli(root: Path, *args: str, input: bytes | None = None) -> Any:
    return CliRunner().invoke(cli, ["--root", str(root), "sweep", *args], input=input)


def test_cli_sweep(sync_fs: SyncHashFS, root: Path, tmp_path: Path) -> None:
    addresses = put_many(sync_fs, 6, "txt")
    age(sync_fs, *addresses)
    keep = tmp_path / "keep.txt"
    keep.write_text("".join(a.id + "\n" for a in addresses[:2]))

    dry = sweep_cli(root, "--keep", str(keep), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert sorted(dry.stdout.splitlines()) == sorted(a.relpath for a in addresses[2:])
    assert "would remove 4 files" in dry.stderr
    assert sync_fs.count() == 6

    young = sweep_cli(root, "--keep", str(keep), "--older-than", "3h", "--json")
    assert young.exit_code == 0
    assert json.loads(young.stdout)["summary"]["young"] == 4

    crlf = keep.read_bytes().replace(b"\n", b"\r\n")
    piped = sweep_cli(root, "--keep", "-", "--json", input=crlf)
    assert piped.exit_code == 0, piped.output
    lines = [json.loads(line) for line in piped.stdout.splitlines()]
    assert sorted(line["removed"] for line in lines[:-1]) == sorted(
        a.relpath for a in addresses[2:]
    )
    assert lines[-1]["summary"]["removed"] == 4 and lines[-1]["summary"]["kept"] == 2
    assert sorted(stored_files(root)) == sorted(a.relpath for a in addresses[:2])


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"%s\nnot-an-id\n", 2),
        (b"%s\n\n", 2),  # an empty line is no id either
        (b"%s\n" + "é".encode() * 32 + b"\n", 2),
        (b"%s.txt\n", 1),
    ],
)
def test_cli_sweep_names_the_bad_line(
    sync_fs: SyncHashFS, root: Path, tmp_path: Path, content: bytes, line: int
) -> None:
    address = sync_fs.put(b"x")
    age(sync_fs, address)
    keep = tmp_path / "keep.txt"
    keep.write_bytes(content.replace(b"%s", address.id.encode()))
    result = sweep_cli(root, "--keep", str(keep), "--older-than", "0")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: --keep {str(keep)!r}, line {line}: ")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
    assert sync_fs.exists(address.id)
    stdin = sweep_cli(root, "--keep", "-", input=keep.read_bytes())
    assert stdin.exit_code == 2 and f"--keep standard input, line {line}: " in stdin.stderr


def test_cli_sweep_errors(root: Path, tmp_path: Path) -> None:
    missing = sweep_cli(root, "--keep", str(tmp_path / "none"))
    assert missing.exit_code == 2 and "none" in missing.stderr
    (tmp_path / "keep").write_text("")
    bad = sweep_cli(root, "--keep", str(tmp_path / "keep"), "--older-than", "soon")
    assert bad.exit_code == 2 and "--older-than: 'soon' is not a duration" in bad.stderr
    no_store = sweep_cli(tmp_path / "nowhere", "--keep", str(tmp_path / "keep"))
    assert no_store.exit_code == 3
    required = sweep_cli(root)
    assert required.exit_code == 2 and "--keep" in required.stderr


def test_cli_sweep_refuses_an_empty_keep(sync_fs: SyncHashFS, root: Path, tmp_path: Path) -> None:
    # `failing-query | async-hashfs sweep --keep -` gives an empty list: removing every
    # file then would be the worst way to find out the query failed.
    address = sync_fs.put(b"x")
    age(sync_fs, address)
    (tmp_path / "keep").write_text("")
    for args, stdin in ((["--keep", str(tmp_path / "keep")], None), (["--keep", "-"], b"")):
        refused = sweep_cli(root, *args, "--older-than", "0", input=stdin)
        assert refused.exit_code == 2, refused.output
        assert "holds no id" in refused.stderr and "--allow-empty" in refused.stderr
        assert sync_fs.exists(address.id)
    allowed = sweep_cli(root, "--keep", "-", "--older-than", "0", "--allow-empty", input=b"")
    assert allowed.exit_code == 0, allowed.output
    assert not sync_fs.exists(address.id)


@pytest.mark.parametrize("framework", ["flask", "quart"])
def test_app_cli_sweeps_the_configured_store(framework: str, root: Path, tmp_path: Path) -> None:
    app: Any = Flask(__name__) if framework == "flask" else Quart(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), HASHFS_DEPTH=2, HASHFS_WIDTH=2)
    (FlaskHashFS if framework == "flask" else QuartHashFS)(app)
    fs = SyncHashFS(root, depth=2, width=2)
    kept, gone = fs.put(b"kept"), fs.put(b"gone")
    age(fs, kept, gone)
    result = app.test_cli_runner().invoke(
        args=["hashfs", "sweep", "--keep", "-", "--older-than", "1m"], input=kept.id + "\n"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [gone.relpath]
    assert fs.exists(kept.id) and not fs.exists(gone.id)


# -- the extensions -----------------------------------------------------------


def test_flask_extension_sweeps(root: Path) -> None:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root))
    fs = FlaskHashFS(app)
    with app.app_context():
        kept, gone = fs.put(b"kept"), fs.put(b"gone", extension="txt")
        age(fs.store, kept, gone)
        report = fs.sweep(keep=[kept.id], older_than=60, dry_run=False)
        assert (report.removed, report.kept) == (1, 1)
        assert fs.exists(kept.id) and not fs.exists(gone.id)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_quart_extension_sweeps(root: Path) -> None:
    def make() -> tuple[Quart, QuartHashFS]:
        app = Quart(__name__)
        app.config.update(HASHFS_ROOT_FOLDER=str(root))
        return app, QuartHashFS(app)

    app, fs = await anyio.to_thread.run_sync(make)
    async with app.app_context():
        kept, gone = await fs.put(b"kept"), await fs.put(b"gone", extension="txt")
        await anyio.to_thread.run_sync(lambda: age(fs.store, kept, gone))

        async def rows() -> AsyncIterator[str]:
            yield kept.id

        report = await fs.sweep(rows(), older_than=60)
        assert (report.removed, report.kept) == (1, 1)
        assert await fs.exists(kept.id) and not await fs.exists(gone.id)


# -- S3 -----------------------------------------------------------------------


@pytest.fixture
def s3_fs(s3_server: Any) -> SyncHashFS:
    pytest.importorskip("obstore")
    return SyncHashFS(
        f"s3://hashfs-test/sweep-{os.getpid()}-{time.monotonic_ns()}",
        s3_options=s3_server.options(),
    )


def test_s3_sweep(s3_fs: SyncHashFS) -> None:
    import obstore

    engine: Any = s3_fs._engine
    kept = [s3_fs.put(f"kept {n}".encode(), "txt") for n in range(3)]
    gone = [s3_fs.put(f"gone {n}".encode()) for n in range(4)]
    obstore.put(engine.store, "a/b/not-an-address", b"foreign")
    obstore.put(engine.store, ".hashfs-tmp/upload.tmp", b"a writer's")

    young = s3_fs.sweep([a.id for a in kept])  # everything is younger than an hour
    assert (young.removed, young.kept, young.young, young.skipped) == (0, 3, 4, 1)

    removed: list[HashAddress] = []
    dry = s3_fs.sweep([a.id for a in kept], 0, dry_run=True, on_remove=removed.append)
    assert (dry.removed, dry.kept, dry.skipped) == (4, 3, 1)
    assert s3_fs.count() == 8

    report = s3_fs.sweep([a.id for a in kept], 0)
    assert (report.removed, report.kept, report.skipped, report.folders) == (4, 3, 1, 0)
    assert report.removed_bytes == sum(len(f"gone {n}") for n in range(4))
    assert sorted(a.relpath for a in removed) == sorted(a.relpath for a in gone)
    assert all(not s3_fs.exists(a.id) for a in gone)
    assert all(s3_fs.exists(a.id) for a in kept)
    assert bytes(obstore.get(engine.store, "a/b/not-an-address").bytes()) == b"foreign"
    assert bytes(obstore.get(engine.store, ".hashfs-tmp/upload.tmp").bytes()) == b"a writer's"
    with pytest.raises(InvalidId):
        s3_fs.sweep(["nope"], 0)


def test_s3_duplicate_put_makes_the_object_new(s3_fs: SyncHashFS) -> None:
    first = s3_fs.put(b"uploaded again")
    engine: Any = s3_fs._engine
    stored = engine._head(first.relpath)["last_modified"].timestamp()
    deadline = time.monotonic() + 10
    while time.time() < stored + 2.2 and time.monotonic() < deadline:  # LastModified: seconds
        time.sleep(0.05)
    again = s3_fs.put(b"uploaded again")
    assert again.is_duplicate
    assert engine._head(first.relpath)["last_modified"].timestamp() > stored
    report = s3_fs.sweep([], older_than=1.5)
    assert (report.removed, report.young) == (0, 1)
    assert s3_fs.exists(first.id)


def test_s3_duplicate_of_a_swept_object_is_stored_again(
    s3_fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object goes between the put's look and its refresh: the put stores it again."""
    import obstore

    first = s3_fs.put(b"contested")
    engine: Any = s3_fs._engine
    real = engine._refresh_duplicate
    calls: list[str] = []

    def swept_first(key: str, size: int) -> bool:
        if not calls:
            obstore.delete(engine.store, key)
        calls.append(key)
        return bool(real(key, size))

    monkeypatch.setattr(engine, "_refresh_duplicate", swept_first)
    again = s3_fs.put(b"contested")
    assert len(calls) == 1 and not again.is_duplicate
    assert s3_fs.verify(first.id)


async def test_async_s3_sweep(s3_server: Any) -> None:
    pytest.importorskip("obstore")
    fs = AsyncHashFS(
        f"s3://hashfs-test/sweep-async-{os.getpid()}-{time.monotonic_ns()}",
        s3_options=s3_server.options(),
    )
    kept, gone = await fs.put(b"kept"), await fs.put(b"gone")

    async def rows() -> AsyncIterator[str]:
        yield kept.id

    report = await fs.sweep(rows(), 0)
    assert (report.removed, report.kept) == (1, 1)
    assert await fs.exists(kept.id) and not await fs.exists(gone.id)


# -- a sweep that dies between taking a file and deciding ----------------------

#: Takes the one stored file into the temp folder as a sweep does, then dies
#: (SIGKILL's effect: no cleanup) before it can look at it again.
DIES_MID_SWEEP = """
import os, sys
import async_hashfs._engine as engine
from async_hashfs import SyncHashFS

real_rename = engine._folder.rename

def rename_then_die(*args):
    real_rename(*args)
    os._exit(9)

engine._folder.rename = rename_then_die
SyncHashFS(sys.argv[1]).sweep([], older_than=0)
"""


def test_gc_puts_back_what_a_dead_sweep_took(sync_fs: SyncHashFS, root: Path) -> None:
    # The file may be one a put was just told is stored (the sweep would have
    # found it refreshed and put it back): gc must not remove it as debris.
    import subprocess
    import sys

    address = sync_fs.put(b"taken by a sweep that died", "txt")
    age(sync_fs, address)
    died = subprocess.run([sys.executable, "-c", DIES_MID_SWEEP, str(root)], check=False)
    assert died.returncode == 9
    assert not sync_fs.exists(address.id) and len(temp_files(root)) == 1
    sync_fs.gc()
    assert sync_fs.exists(address.id)
    with sync_fs.open(address.id) as stored:
        assert stored.read() == b"taken by a sweep that died"
    assert temp_files(root) == []


def test_gc_leaves_a_live_sweeps_files_alone(sync_fs: SyncHashFS, root: Path) -> None:
    import async_hashfs._engine as engine

    address = sync_fs.put(b"a live sweep decides", "txt")
    temp = root / ".hashfs-tmp"
    temp.mkdir(exist_ok=True)
    hidden = (
        f"{os.getpid()}{engine._SWEPT_MARK}0123456789ab-1-"
        f"{address.relpath.replace(os.sep, engine._SWEPT_SEP)}{engine._TEMP_SUFFIX}"
    )
    os.rename(address.abspath, temp / hidden)
    sync_fs.gc()
    assert (temp / hidden).exists() and not sync_fs.exists(address.id)
