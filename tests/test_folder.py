"""Folders reached one at a time, never through a symlink, by descriptor or by path."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import async_hashfs._folder as folder_module
from async_hashfs._folder import Folder, FolderPath


@pytest.fixture(params=["descriptor", "path"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test by descriptor (POSIX) and by path (as on Windows)."""
    if request.param == "descriptor" and not folder_module.DIR_FD:
        pytest.skip("no dir_fd calls here")
    if request.param == "path":
        monkeypatch.setattr(folder_module, "DIR_FD", False)
    return str(request.param)


def test_the_walk_opens_real_folders(tmp_path: Path, mode: str) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"inside")
    with FolderPath.open(str(tmp_path), ["a", "b"]) as folders:
        assert (folders.leaf.fd is None) == (mode == "path")
        assert folders.leaf.path == str(tmp_path / "a" / "b")
        fd = folders.leaf.open("f", os.O_RDONLY)
        try:
            assert os.read(fd, 100) == b"inside"
        finally:
            os.close(fd)
        assert folders.leaf.lstat("f").st_size == 6
        assert sorted(e.name for e in folders.leaf.scandir()) == ["f"]


def test_the_walk_stops_at_a_symlink_or_a_file(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (tmp_path / "outside" / "b").mkdir(parents=True)
    os.symlink(tmp_path / "outside", root / "link")
    (root / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="a folder on the way is a symlink"):
        FolderPath.open(str(root), ["link", "b"])
    with pytest.raises(NotADirectoryError, match="expected a folder"):
        FolderPath.open(str(root), ["file", "b"])
    with pytest.raises(FileNotFoundError):
        FolderPath.open(str(root), ["a", "missing"])
    with pytest.raises(NotADirectoryError, match="symlink"):  # making folders too
        FolderPath.open(str(root), ["link", "c"], make_mode=0o755)
    assert not (tmp_path / "outside" / "c").exists()


def test_a_symlinked_leaf_is_not_opened(tmp_path: Path, mode: str) -> None:
    (tmp_path / "secret").write_bytes(b"secret")
    os.symlink(tmp_path / "secret", tmp_path / "link")
    # O_NOFOLLOW fails with ELOOP (Linux, macOS) or EMLINK (FreeBSD).
    refused = f"({os.strerror(errno.ELOOP)}|{os.strerror(errno.EMLINK)})"
    with Folder.open_root(str(tmp_path)) as root, pytest.raises(OSError, match=refused):
        os.close(root.open("link", os.O_RDONLY))


def test_missing_folders_are_made_last_with_the_mode(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "new-root"
    old_umask = os.umask(0o022)
    try:
        with FolderPath.open(str(root), ["a", "b"], make_mode=0o700) as folders:
            assert folders.leaf.path == str(root / "a" / "b")
    finally:
        os.umask(old_umask)
    assert (root / "a").stat().st_mode & 0o777 == 0o755  # as os.makedirs (and HashFS)
    assert (root / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_below_a_new_folder_folders_are_made_without_looking_first(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    missed: list[str] = []
    child = Folder.child

    def counting_child(self: Folder, name: str) -> Folder:
        try:
            return child(self, name)
        except FileNotFoundError:
            missed.append(name)
            raise

    monkeypatch.setattr(Folder, "child", counting_child)
    with FolderPath.open(str(tmp_path), ["a", "b", "c", "d"], make_mode=0o755) as folders:
        assert folders.leaf.path == str(tmp_path / "a" / "b" / "c" / "d")
    assert missed == ["b"]  # "c" and "d" are made at once: "b" was just made
    assert (tmp_path / "a" / "b" / "c" / "d").is_dir()


def test_below_a_new_folder_what_another_writer_put_there_is_checked(
    tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "outside").mkdir()
    mkdir = Folder.mkdir

    def planting_mkdir(self: Folder, name: str, mode_: int) -> None:
        # Another writer gets in between each folder's making and the next one's.
        mkdir(self, name, mode_)
        planted = Path(self.join(name))
        if name == "a":
            (planted / "b").mkdir()  # a folder: used as it is
        elif name == "x":
            os.symlink(tmp_path / "outside", planted / "y")  # a symlink: refused

    monkeypatch.setattr(Folder, "mkdir", planting_mkdir)
    with FolderPath.open(str(tmp_path), ["a", "b", "c"], make_mode=0o755) as folders:
        assert folders.leaf.path == str(tmp_path / "a" / "b" / "c")
    with pytest.raises(NotADirectoryError, match="symlink"):
        FolderPath.open(str(tmp_path), ["x", "y", "z"], make_mode=0o755)
    assert list((tmp_path / "outside").iterdir()) == []


def test_remove_empty_goes_up_while_empty_and_never_removes_the_root(
    tmp_path: Path, mode: str
) -> None:
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "keep").write_bytes(b"")
    with FolderPath.open(str(tmp_path), ["a", "b", "c"]) as folders:
        removed = folders.remove_empty()
    assert removed == [str(tmp_path / "a" / "b" / "c"), str(tmp_path / "a" / "b")]
    assert (tmp_path / "a").is_dir()
    (tmp_path / "a" / "keep").unlink()
    with FolderPath.open(str(tmp_path), ["a"]) as folders:
        assert folders.remove_empty() == [str(tmp_path / "a")]
    with FolderPath.open(str(tmp_path), []) as folders:
        assert folders.remove_empty() == []
    assert tmp_path.is_dir()


def test_link_and_rename_work_between_folders(tmp_path: Path, mode: str) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    (tmp_path / "x" / "f").write_bytes(b"data")
    with FolderPath.open(str(tmp_path), ["x"]) as x, FolderPath.open(str(tmp_path), ["y"]) as y:
        folder_module.link(x.leaf, "f", y.leaf, "g")
        folder_module.rename(x.leaf, "f", y.leaf, "h")
    assert not (tmp_path / "x" / "f").exists()
    assert (tmp_path / "y" / "g").stat().st_ino == (tmp_path / "y" / "h").stat().st_ino
