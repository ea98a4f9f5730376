"""The engine: folder making under concurrent deletes, temp files, platform fallbacks."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from async_hashfs._engine import Engine
from async_hashfs._layout import Layout

from .conftest import stored_files, temp_files


def new_engine(root: Path) -> Engine:
    return Engine(Layout(str(root), 4, 1, "sha256"))


def test_makepath_makes_folders_and_accepts_existing_ones(root: Path) -> None:
    engine = new_engine(root)
    folder = root / "a" / "b" / "c"
    engine.makepath(str(folder))
    engine.makepath(str(folder))
    assert folder.is_dir()


def test_makepath_refuses_a_file_in_the_way(root: Path) -> None:
    engine = new_engine(root)
    (root / "a").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="expected a folder"):
        engine.makepath(str(root / "a"))
    with pytest.raises(NotADirectoryError):
        engine.makepath(str(root / "a" / "b"))


@pytest.mark.parametrize("remade", [False, True])
def test_makepath_retries_when_a_delete_races_it(
    root: Path, monkeypatch: pytest.MonkeyPatch, remade: bool
) -> None:
    # os.makedirs saw the folder, then a concurrent delete removed it (and maybe
    # a concurrent put made it again) before makepath looked: not an error.
    engine = new_engine(root)
    folder = root / "a" / "b"
    real_makedirs = os.makedirs
    calls = 0

    def racing_makedirs(path: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal calls
        if os.fspath(path) == str(folder):  # os.makedirs recurses through here for parents
            calls += 1
            if calls == 1:
                if remade:
                    real_makedirs(path, *args, **kwargs)
                raise FileExistsError(errno.EEXIST, "File exists", path)
        real_makedirs(path, *args, **kwargs)

    monkeypatch.setattr(os, "makedirs", racing_makedirs)
    engine.makepath(str(folder))
    assert calls == 2
    assert folder.is_dir()


# -- regressions found in review ----------------------------------------------


def test_put_refuses_a_symlinked_shard_folder(tmp_path: Path) -> None:
    import hashlib

    from flask_shim import SyncHashFS

    root = tmp_path / "store"
    outside = tmp_path / "outside"
    outside.mkdir()
    fs = SyncHashFS(root)
    data = b"lands outside?"
    first = hashlib.sha256(data).hexdigest()[0]
    root.mkdir()
    os.symlink(outside, root / first)
    with pytest.raises(NotADirectoryError, match="symlink"):
        fs.put(data)
    assert list(outside.rglob("*")) == []
    (outside / "victim").mkdir()
    fs.remove_empty(str(root / first / "victim"))
    assert (outside / "victim").is_dir()


def test_repair_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from flask_shim import SyncHashFS

    fs = SyncHashFS(tmp_path)
    (tmp_path / "one.txt").write_bytes(b"one")
    (tmp_path / "two.txt").write_bytes(b"two")

    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "links not supported")

    monkeypatch.setattr(os, "link", no_links)
    assert len(fs.repair()) == 2
    assert fs.count() == 2
    assert list(fs.corrupted()) == []


def test_gc_leaves_a_fresh_empty_temp_file_alone(tmp_path: Path) -> None:
    from flask_shim import SyncHashFS

    fs = SyncHashFS(tmp_path)
    temp = tmp_path / ".hashfs-tmp"
    temp.mkdir()
    keep = temp / "999999999-keep.tmp"  # keeps the folder from going at the first gc
    keep.write_bytes(b"")
    os.utime(keep, (time.time() + 3600,) * 2)
    fresh = temp / f"{os.getpid()}-fresh.tmp"  # a live process's file, not yet locked
    fresh.write_bytes(b"")
    assert fs.gc().temp_files == []
    os.utime(fresh, (0, 0))
    assert fs.gc().temp_files == [str(fresh)]
    dead = temp / "999999999-dead.tmp"  # no such process: removed at once
    dead.write_bytes(b"")
    assert fs.gc().temp_files == [str(dead)]


# -- temp files: nameless where the OS allows it, named elsewhere ------------------

needs_tmpfile = pytest.mark.skipif(
    not hasattr(os, "O_TMPFILE"), reason="no O_TMPFILE on this platform"
)


def named_temp_files(root: Path) -> list[str]:
    folder = root / ".hashfs-tmp"
    return sorted(os.listdir(folder)) if folder.exists() else []


@needs_tmpfile
def test_a_put_in_progress_has_no_name_anywhere(root: Path) -> None:
    engine = new_engine(root)
    with engine.writer() as writer:
        writer.write(b"in flight")
        assert [str(p) for p in root.rglob("*")] == []  # nothing an old HashFS could list
        assert len(temp_files(root)) == 1  # but it is open in the root
        address = writer.commit(".bin")
    assert address.relpath.endswith(".bin") and not address.is_duplicate
    assert stored_files(root) == [address.relpath]
    assert temp_files(root) == []
    assert engine._anonymous is True


def test_without_o_tmpfile_the_temp_folder_goes_when_it_empties(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    engine = new_engine(root)
    with engine.writer() as writer:
        writer.write(b"in flight")
        assert len(named_temp_files(root)) == 1
        address = writer.commit()
    assert not (root / ".hashfs-tmp").exists()
    with engine.writer() as writer:
        writer.write(b"abandoned")
    assert not (root / ".hashfs-tmp").exists()
    assert stored_files(root) == [address.relpath]


def test_named_temp_file_survives_the_folder_going_before_it_opens(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer removes the empty temp folder between our makepath and open.
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    engine = new_engine(root)
    real_open = os.open
    removed = 0

    def racing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        nonlocal removed
        if ".hashfs-tmp" in str(path) and removed < 3 and os.path.isdir(engine.layout.temp_dir):
            removed += 1
            os.rmdir(engine.layout.temp_dir)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", racing_open)
    with engine.writer() as writer:
        writer.write(b"x")
        writer.commit()
    assert removed == 3


def test_named_temp_files_race_their_folder_safely(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    from flask_shim import SyncHashFS

    fs = SyncHashFS(root)
    errors: list[BaseException] = []
    results = []

    def work(n: int) -> None:
        try:
            for i in range(60):
                results.append(fs.put(b"same" if i % 2 else f"{n}-{i}".encode()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(not r.is_duplicate for r in results if r.id == hashlib.sha256(b"same").hexdigest())
    assert not (root / ".hashfs-tmp").exists()
    assert fs.count() == 8 * 30 + 1


@needs_tmpfile
def test_nameless_temp_file_falls_back_without_proc(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import async_hashfs._engine as engine_module

    monkeypatch.setattr(engine_module, "_proc_fd", lambda fd: f"/no-proc/self/fd/{fd}")
    engine = new_engine(root)
    with engine.writer() as writer:
        writer.write(b"data")
        assert len(named_temp_files(root)) == 1
        address = writer.commit()
    assert engine._anonymous is False
    assert (root / address.relpath).read_bytes() == b"data"
    assert temp_files(root) == []


@needs_tmpfile
@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_nameless_temp_file_on_a_file_system_without_links(
    root: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(code, "links not supported")

    monkeypatch.setattr(os, "link", no_links)
    engine = Engine(Layout(str(root), 4, 1, "sha256"), fmode=0o640)
    data = os.urandom(3 << 20)
    first = engine.put([data])
    assert not first.is_duplicate
    assert engine.put([data]).is_duplicate
    assert (root / first.relpath).read_bytes() == data
    assert stat.S_IMODE(os.stat(first.abspath).st_mode) == 0o640
    assert temp_files(root) == [] and stored_files(root) == [first.relpath]


@needs_tmpfile
def test_nameless_temp_file_gets_fmode_and_the_root_hashfs_mode(tmp_path: Path) -> None:
    root = tmp_path / "new-root"
    engine = Engine(Layout(str(root), 2, 1, "sha256"), fmode=0o604, dmode=0o700)
    address = engine.put([b"x"])
    assert stat.S_IMODE(os.stat(address.abspath).st_mode) == 0o604
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o777 & ~current_umask()
    assert stat.S_IMODE(os.stat(root / address.id[0] / address.id[1]).st_mode) == 0o700


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- platforms: no flock, no pread ---------------------------------------------


def test_gc_without_flock_goes_by_process_and_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import async_hashfs._engine as engine_module

    monkeypatch.setattr(engine_module, "_fcntl", None)
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    engine = new_engine(tmp_path)
    live = engine.writer()
    try:
        live.write(b"still writing")
        temp = tmp_path / ".hashfs-tmp"
        dead = temp / "999999999-dead.tmp"
        dead.write_bytes(b"left by a killed writer")
        stalled = temp / f"{os.getpid()}-stalled.tmp"
        stalled.write_bytes(b"untouched for two days")
        os.utime(stalled, (time.time() - 2 * 86400,) * 2)
        assert sorted(engine.gc().temp_files) == sorted([str(dead), str(stalled)])
        assert len(named_temp_files(tmp_path)) == 1  # the live writer's
        address = live.commit()
    finally:
        live.abort()
    assert (tmp_path / address.relpath).read_bytes() == b"still writing"
    assert named_temp_files(tmp_path) == []


def test_stored_blob_reads_by_position_without_pread(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = new_engine(root)
    data = bytes(range(256)) * 64
    address = engine.put([data], ".bin")
    monkeypatch.delattr(os, "pread", raising=False)
    blob = engine.open_blob(address.relpath)
    assert blob is not None
    try:
        results: list[bool] = []

        def read(offset: int) -> None:
            for _ in range(200):
                results.append(blob.pread(100, offset) == data[offset : offset + 100])

        threads = [threading.Thread(target=read, args=(n * 1000,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(results) and len(results) == 1600
        assert blob.pread(10, len(data) - 4) == data[-4:]
        assert blob.pread(10, len(data) + 5) == b""
    finally:
        blob.close()


# -- issue 11, item 3: files with more than one link ------------------------------


def planted(root: Path, tmp_path: Path) -> tuple[Engine, str, Path]:
    """A store whose address for b"named" holds a hard link to a file outside."""
    engine = new_engine(root)
    address = engine.put([b"named"], ".txt")
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    secret.chmod(0o600)
    os.remove(address.abspath)
    os.link(secret, address.abspath)
    return engine, address.relpath, secret


def test_open_and_open_blob_refuse_a_planted_hard_link(root: Path, tmp_path: Path) -> None:
    from async_hashfs import CorruptFile

    engine, relpath, secret = planted(root, tmp_path)
    id = engine.layout.unshard(relpath)
    for ref in (id, relpath, str(root / relpath)):
        with pytest.raises(
            CorruptFile, match="its bytes hash to " + hashlib.sha256(b"secret").hexdigest()
        ):
            engine.open(ref)
    with pytest.raises(CorruptFile):
        engine.open_blob(relpath)
    with pytest.raises(CorruptFile):
        engine.open_blob(relpath, verify=True)
    assert engine.get(id) is not None  # presence only: nothing is read
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_a_shared_file_elsewhere_than_an_address_is_not_opened(root: Path, tmp_path: Path) -> None:
    from async_hashfs import NotFound

    engine = new_engine(root)
    (tmp_path / "secret").write_bytes(b"secret")
    os.link(tmp_path / "secret", root / "notes.txt")
    with pytest.raises(NotFound):
        engine.open("notes.txt")
    (tmp_path / "secret").unlink()  # the store's own file now
    with engine.open("notes.txt") as file:
        assert file.read() == b"secret"


def test_a_shared_file_is_hashed_once_per_version(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = new_engine(root)
    data = os.urandom(100_000)
    address = engine.put([data])
    hashed = []
    real = engine._hash_fd
    monkeypatch.setattr(
        engine, "_hash_fd", lambda fd, *a, **k: hashed.append(fd) or real(fd, *a, **k)
    )
    for _ in range(3):  # one link: never hashed (verify-on-read is off)
        with engine.open(address.id) as file:
            assert file.read() == data
    assert hashed == []
    os.link(address.abspath, tmp_path / "backup")  # as cp -al does
    for _ in range(3):
        with engine.open(address.id) as file:
            assert file.read() == data
        blob = engine.open_blob(address.relpath)
        assert blob is not None
        assert blob.pread(len(data), 0) == data
        blob.close()
    assert len(hashed) == 1
    time.sleep(0.05)  # past the file system's clock tick
    os.link(address.abspath, tmp_path / "another")  # a new link is a new version (ctime)
    with engine.open(address.id) as file:
        assert file.read() == data
    assert len(hashed) == 2


@pytest.mark.parametrize(
    ("sizes", "writes"),
    [
        ([16 << 10] * 64, 1),  # a MiB of small chunks: one write
        ([16 << 10] * 65, 2),
        ([3 << 20], 1),  # a large chunk as it is
        ([10, 2 << 20, 10, 10], 3),
        ([], 0),
    ],
)
def test_writelines_joins_small_chunks(
    root: Path, monkeypatch: pytest.MonkeyPatch, sizes: list[int], writes: int
) -> None:
    """Each write and hash update lets go of the GIL: a batch of small chunks is one of each."""
    import async_hashfs._engine as engine_module

    chunks = [os.urandom(size) for size in sizes]
    calls: list[int] = []
    write_all = engine_module._write_all

    def counting(fd: int, data: Any) -> None:
        calls.append(memoryview(data).nbytes)
        write_all(fd, data)

    monkeypatch.setattr(engine_module, "_write_all", counting)
    engine = new_engine(root)
    with engine.writer() as writer:
        writer.writelines(chunks)
        address = writer.commit()
    assert (root / address.relpath).read_bytes() == b"".join(chunks)
    assert address.id == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert len(calls) == writes
    assert sum(calls) == sum(sizes)
