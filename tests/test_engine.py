"""The engine's folder making, under concurrent deletes."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest

from async_hashfs._engine import Engine
from async_hashfs._layout import Layout


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
