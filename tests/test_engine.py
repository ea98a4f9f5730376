"""The engine's folder making, under concurrent deletes."""

from __future__ import annotations

import errno
import os
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
