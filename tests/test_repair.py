"""repair(): what it moves, what it leaves where it is, and what it says (issue 11).

Item 3: a hard link planted in the store is never adopted nor chmod'ed.
Item 5: a root shared by two layouts is told apart; what repair does about
it is said, in the report, the log and on the command line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from async_hashfs._cli import cli
from async_hashfs._engine import RepairReport
from flask_shim import SyncHashFS

from .conftest import stored_files

DATA = b"stored by one store, found by another\n" * 50
DATA_ID = hashlib.sha256(DATA).hexdigest()
SECRET = b"outside the store, mode 0600"


# -- item 3: hard links --------------------------------------------------------------


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("where", ["planted.txt", "a/b/planted", "address"])
def test_repair_neither_adopts_nor_chmods_a_planted_hard_link(
    root: Path, secret: Path, where: str
) -> None:
    fs = SyncHashFS(root)
    keep = fs.put(DATA)
    if where == "address":  # at an address whose id its bytes do not hash to
        planted = root / fs.layout.relpath(hashlib.sha256(b"x").hexdigest())
    else:
        planted = root / where
    planted.parent.mkdir(parents=True, exist_ok=True)
    os.link(secret, planted)

    report = fs.repair()
    assert report == []
    assert isinstance(report, RepairReport)
    ((path, reason),) = report.refused
    assert path == str(planted)
    assert "2 hard links" in reason and "its mode untouched" in reason
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert planted.read_bytes() == SECRET and planted.stat().st_ino == secret.stat().st_ino
    assert sorted(stored_files(root)) == sorted([keep.relpath, str(planted.relative_to(root))])
    assert fs.get(hashlib.sha256(SECRET).hexdigest()) is None


def test_repair_of_a_store_backed_up_with_hard_links_moves_nothing_shared(
    root: Path, tmp_path: Path
) -> None:
    # cp -al gives every file a second link: a misplaced one is left, and said so.
    fs = SyncHashFS(root)
    placed = fs.put(DATA, "txt")
    misplaced = root / "notes.txt"
    misplaced.write_bytes(b"notes")
    backup = tmp_path / "backup"
    backup.mkdir()
    os.link(placed.abspath, backup / "placed")
    os.link(misplaced, backup / "notes")
    report = fs.repair()
    assert report == [] and [path for path, _ in report.refused] == [str(misplaced)]
    misplaced.chmod(0o600)
    (backup / "notes").unlink()  # the backup went: the file is the store's alone
    ((path, address),) = fs.repair()
    assert path == str(misplaced) and address.id == hashlib.sha256(b"notes").hexdigest()
    assert stat.S_IMODE(os.stat(address.abspath).st_mode) == 0o664


def test_repair_moves_and_chmods_a_file_with_one_link(root: Path) -> None:
    fs = SyncHashFS(root, fmode=0o640)
    misplaced = root / "one.bin"
    misplaced.write_bytes(DATA)
    misplaced.chmod(0o600)
    ((path, address),) = report = fs.repair()
    assert report.refused == [] and report.relaid == []
    assert (path, address.id) == (str(misplaced), DATA_ID)
    assert stat.S_IMODE(os.stat(address.abspath).st_mode) == 0o640
    assert not misplaced.exists()


def test_repair_leaves_a_file_that_changed_since_it_was_hashed(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = SyncHashFS(root)
    misplaced = root / "one.bin"
    misplaced.write_bytes(DATA)
    engine = fs._engine
    real = engine._misplaced

    def then_changed(extensions: bool) -> Any:
        found = list(real(extensions))
        misplaced.write_bytes(b"changed")
        os.utime(misplaced, ns=(0, 0))
        return iter(found)

    monkeypatch.setattr(engine, "_misplaced", then_changed)
    report = fs.repair()
    assert report == [] and report.refused == [(str(misplaced), report.refused[0][1])]
    assert "changed while repair ran" in report.refused[0][1]
    assert misplaced.read_bytes() == b"changed"


# -- item 5: a root shared by two layouts ----------------------------------------------

SHA256 = hashlib.sha256(b"x").hexdigest()
MD5 = hashlib.md5(b"x").hexdigest()


@pytest.mark.parametrize(
    ("relpath", "shape"),
    [
        (f"{SHA256[:2]}/{SHA256[2:4]}/{SHA256[4:]}.txt", (2, 2, ".txt")),
        (f"{SHA256}", (0, 0, "")),
        (f"{SHA256}.tar.gz", (0, 0, ".tar.gz")),
        ("/".join([*MD5[:3], MD5[3:]]), (3, 1, "")),  # another digest length
        ("/".join([*SHA256[:4], SHA256[4:]]) + ".bin", None),  # this layout's own
        (f"{SHA256[:2]}/{SHA256[2:5]}/{SHA256[5:]}", None),  # folders of two widths
        (f"{SHA256[:2]}/{SHA256[2:]}x", None),  # not hex
        (f"{SHA256[:2]}/{SHA256[2:-1]}", None),  # no digest is 63 digits long
        (f"{SHA256}.b@d", None),  # no safe extension
        ("notes.txt", None),
    ],
)
def test_foreign_shapes(relpath: str, shape: tuple[int, int, str] | None) -> None:
    from async_hashfs._layout import Layout

    found = Layout("/store", 4, 1, "sha256").foreign_shape(relpath.replace("/", os.sep))
    assert (None if found is None else (found.depth, found.width, found.extension)) == shape
    if found is not None:
        assert found.id in (SHA256, MD5)
        assert found.describe("sha256").startswith(f"depth {shape[0]}, width {shape[1]}, ")


def two_layouts(root: Path) -> tuple[SyncHashFS, SyncHashFS, Any]:
    ours = SyncHashFS(root)  # depth 4, width 1
    theirs = SyncHashFS(root, depth=2, width=2)
    return ours, theirs, theirs.put(DATA, "txt")


def test_repair_says_it_moves_another_layouts_files(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # HashFS's repair is how a store changes layout (its own suite tests it), so
    # the drop-in moves them too, but says so: in the report and in the log.
    ours, theirs, their_file = two_layouts(root)
    with caplog.at_level(logging.WARNING, logger="async_hashfs"):
        report = ours.repair()
    assert [(path, address.relpath) for path, address in report] == [
        (their_file.abspath, ours.layout.relpath(DATA_ID, ".txt"))
    ]
    ((path, reason),) = report.relaid
    assert path == their_file.abspath
    assert reason == (
        "it sits at a content address of another layout (depth 2, width 2, sha256), "
        "not of this store's (depth 4, width 1, sha256)"
    )
    assert "repair moved 1 files from another layout's content addresses" in caplog.text
    assert theirs.get(DATA_ID) is None


def test_repair_can_refuse_another_layouts_files(root: Path) -> None:
    ours, theirs, their_file = two_layouts(root)
    mine = ours.put(b"ours")
    stray = root / "stray.txt"
    stray.write_bytes(b"misplaced, no layout's")
    report = ours._engine.repair(foreign="refuse")
    assert [path for path, _ in report] == [str(stray)]
    ((path, reason),) = report.refused
    assert path == their_file.abspath
    assert reason.endswith(": left where it is")
    assert theirs.get(DATA_ID) == their_file._replace(is_duplicate=False)
    assert ours.get(mine.id) is not None


def test_repair_tells_another_algorithm_at_the_same_addresses(root: Path) -> None:
    ours = SyncHashFS(root)
    theirs = SyncHashFS(root, algorithm="sha3_256")  # same depth, width and id length
    their_file = theirs.put(DATA)
    corrupt = ours.put(b"ours, then changed")
    Path(corrupt.abspath).write_bytes(b"changed")  # a corrupt file of our own still moves
    report = ours._engine.repair(foreign="refuse")
    assert [path for path, _ in report] == [corrupt.abspath]
    ((path, reason),) = report.refused
    assert path == their_file.abspath
    assert "hash to its address with sha3_256" in reason


def test_the_command_line_refuses_another_layout_unless_told(root: Path) -> None:
    ours, theirs, their_file = two_layouts(root)
    runner = CliRunner()
    refused = runner.invoke(cli, ["--root", str(root), "repair"])
    assert refused.exit_code == 1
    assert f"LEFT  {their_file.relpath}  (it sits at a content address of another layout" in (
        refused.output
    )
    assert "0 files repaired, 1 left where they are" in refused.output
    assert "repair --relayout" in refused.output
    assert theirs.get(DATA_ID) is not None
    as_json = runner.invoke(cli, ["--root", str(root), "repair", "--json"])
    assert as_json.exit_code == 1
    (line,) = as_json.output.splitlines()
    assert json.loads(line)["from"] == their_file.relpath
    moved = runner.invoke(cli, ["--root", str(root), "repair", "--relayout", "--json"])
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.output)["to"] == ours.layout.relpath(DATA_ID, ".txt")
    assert stored_files(root) == [ours.layout.relpath(DATA_ID, ".txt")]


def test_the_command_line_reports_a_planted_hard_link(root: Path, secret: Path) -> None:
    os.link(secret, root / "planted")
    result = CliRunner().invoke(cli, ["--root", str(root), "repair"])
    assert result.exit_code == 1
    assert "LEFT  planted  (it has 2 hard links" in result.output
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_object_store_repair_tells_another_layout(backend: dict[str, Any]) -> None:
    if "s3_options" not in backend:
        pytest.skip("the folder's repair is tested above")
    ours = SyncHashFS(**backend)
    theirs = SyncHashFS(**backend, depth=2, width=2)
    their_file = theirs.put(DATA, "txt")
    report = ours._engine.repair(foreign="refuse")
    assert report == [] and [path for path, _ in report.refused] == [their_file.abspath]
    assert theirs.get(DATA_ID) is not None
    report = ours.repair()
    assert [path for path, _ in report.relaid] == [their_file.abspath]
    assert ours.get(DATA_ID) is not None and theirs.get(DATA_ID) is None
