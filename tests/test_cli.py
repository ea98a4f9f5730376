"""The ``hashfs`` commands: standalone, under Flask and Quart, and as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from quart import Quart

from async_hashfs import QuartHashFS, SyncHashFS
from async_hashfs._cli import cli
from flask_shim import FlaskHashFS

from .conftest import stored_files, temp_files


def run(root: Path, *args: str, input: bytes | None = None, **options: str) -> Any:
    extra = [f"--{k}={v}" for k, v in options.items()]
    return CliRunner().invoke(cli, ["--root", str(root), *extra, *args], input=input)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    paths = []
    for n, data in enumerate([b"alpha", b"beta" * 1000, os.urandom(300_000)]):
        path = tmp_path / f"f{n}.bin"
        path.write_bytes(data)
        paths.append(path)
    return paths


def test_put_get_ls_rm(root: Path, files: list[Path], tmp_path: Path) -> None:
    result = run(root, "put", *map(str, files), "--extension", "bin")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    ids = [line.split()[0] for line in lines]
    assert ids == [hashlib.sha256(p.read_bytes()).hexdigest() for p in files]
    assert all(line.split()[1].endswith(".bin") for line in lines)

    piped = run(root, "put", "-", "--json", input=b"from stdin")
    assert json.loads(piped.output)["id"] == hashlib.sha256(b"from stdin").hexdigest()

    got = run(root, "get", ids[0])
    assert got.exit_code == 0
    assert got.stdout_bytes == b"alpha"
    out = tmp_path / "out.bin"
    assert run(root, "get", ids[2], "-o", str(out)).exit_code == 0
    assert out.read_bytes() == files[2].read_bytes()

    listing = run(root, "ls").output.splitlines()
    assert sorted(listing) == stored_files(root)
    long = [json.loads(line) for line in run(root, "ls", "--json").output.splitlines()]
    assert {item["id"] for item in long} >= set(ids)
    assert sorted(item["size"] for item in long) == sorted([5, 4000, 300_000, 10])

    assert run(root, "rm", ids[0], ids[1]).exit_code == 0
    assert len(stored_files(root)) == 2
    missing = run(root, "rm", ids[0])
    assert missing.exit_code == 2
    assert "no stored file" in missing.output


def test_errors_and_exit_codes(root: Path, tmp_path: Path) -> None:
    assert run(tmp_path / "nope", "ls").exit_code == 3
    unreadable = run(root, "put", str(tmp_path / "missing.bin"))
    assert unreadable.exit_code == 2
    assert "cannot read" in unreadable.output
    bad = run(root, "get", "0" * 64)
    assert bad.exit_code == 2
    assert "no stored file" in bad.output
    assert run(root, "put", "-", "-e", "../x", input=b"x").exit_code == 2
    assert stored_files(root) == []


def test_stats(root: Path, files: list[Path]) -> None:
    run(root, "put", str(files[0]), str(files[1]), "-e", "txt")
    run(root, "put", str(files[2]))
    data = json.loads(run(root, "stats", "--json").output)
    assert data["count"] == 3
    assert data["bytes"] == 5 + 4000 + 300_000
    assert data["by_extension"][".txt"] == {"files": 2, "bytes": 4005}
    assert data["by_extension"]["(none)"] == {"files": 1, "bytes": 300_000}
    assert data["largest"][0]["bytes"] == 300_000
    assert "files     3" in run(root, "stats").output


def test_verify_finds_corruption_and_serving_refuses_it(root: Path, files: list[Path]) -> None:
    run(root, "put", *map(str, files), "-e", "bin")
    assert run(root, "verify", "--jobs", "2").exit_code == 0
    fs = SyncHashFS(root)
    victim = fs.get(hashlib.sha256(b"alpha").hexdigest())
    assert victim is not None
    os.chmod(victim.abspath, 0o644)
    Path(victim.abspath).write_bytes(b"alpHa")
    result = run(root, "verify", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["checked"] == 3
    assert [item["relpath"] for item in report["mismatched"]] == [victim.relpath]

    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(root),
        HASHFS_PATH_PREFIX="/files",
        HASHFS_SERVE=True,
        HASHFS_VERIFY_ON_READ=True,
    )
    FlaskHashFS(app)
    client = app.test_client()
    assert client.get("/files/" + victim.relpath).status_code == 500
    healthy = fs.get(hashlib.sha256(b"beta" * 1000).hexdigest())
    assert healthy is not None
    with client.get("/files/" + healthy.relpath) as response:
        assert response.data == b"beta" * 1000


def test_repair_reports_moves(root: Path) -> None:
    Path(root, "misplaced.txt").write_bytes(b"lost")
    result = run(root, "repair", "--json")
    assert result.exit_code == 0
    (move,) = [json.loads(line) for line in result.output.splitlines()]
    assert move["from"] == "misplaced.txt"
    assert move["id"] == hashlib.sha256(b"lost").hexdigest()
    assert stored_files(root) == [move["to"]]


def test_gc(root: Path) -> None:
    temp = root / ".hashfs-tmp"
    temp.mkdir()
    (temp / "1-dead.tmp").write_bytes(b"partial")
    (root / "a" / "b").mkdir(parents=True)
    recent = json.loads(run(root, "gc", "--older-than", "3600", "--json").output)
    assert recent["temp_files"] == []
    assert len(recent["folders"]) == 2
    data = json.loads(run(root, "gc", "--json").output)
    assert len(data["temp_files"]) == 1
    assert data["temp_bytes"] == 7
    assert temp_files(root) == []


def test_migrate_to_new_layout(root: Path, files: list[Path]) -> None:
    run(root, "put", *map(str, files), "-e", "bin")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    result = run(root, "migrate", "--depth", "2", "--width", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["moved"] == 3
    new = SyncHashFS(root, depth=2, width=2)
    for path, id in before.items():
        address = new.get(id)
        assert address is not None
        assert address.relpath == f"{id[:2]}/{id[2:4]}/{id[4:]}.bin"
        assert Path(address.abspath).read_bytes() == path.read_bytes()
    assert run(root, "verify", depth="2", width="2").exit_code == 0
    again = run(root, "migrate", "--depth", "2", "--width", "2", "--json")
    assert json.loads(again.output)["moved"] == 0


def test_migrate_to_new_algorithm(root: Path, files: list[Path]) -> None:
    run(root, "put", *map(str, files))
    result = run(root, "migrate", "--depth", "3", "--width", "1", "--algorithm", "md5")
    assert result.exit_code == 0, result.output
    new = SyncHashFS(root, depth=3, algorithm="md5")
    for path in files:
        assert new.get(hashlib.md5(path.read_bytes()).hexdigest()) is not None
    assert new.count() == 3
    assert run(root, "verify", depth="3", algorithm="md5").exit_code == 0


def test_interrupted_migrate_resumes_and_loses_nothing(root: Path) -> None:
    fs = SyncHashFS(root)
    contents = {fs.put(os.urandom(64 + n)).id for n in range(600)}
    command = [
        sys.executable,
        "-m",
        "async_hashfs",
        "--root",
        str(root),
        "migrate",
        "--depth",
        "1",
        "--width",
        "3",
        "--quiet",
    ]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until it has started moving files
        if any(len(p.split(os.sep)[0]) == 3 for p in stored_files(root)):
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    layouts = {len(p.split(os.sep)[0]) for p in stored_files(root)}
    assert layouts == {1, 3}, "the kill should land midway"
    # Every file still has at least one name, at its old or its new address.
    found = {p.split(".")[0].replace(os.sep, "") for p in stored_files(root)}
    assert found == contents
    subprocess.run(command, check=True, timeout=120)
    new = SyncHashFS(root, depth=1, width=3)
    assert {new.layout.unshard(p) for p in stored_files(root)} == contents
    assert all(len(p.split(os.sep)[0]) == 3 for p in stored_files(root))
    for path in new.files():
        assert new.verify(path)


def test_console_script_and_module(root: Path, files: list[Path]) -> None:
    script = Path(sys.executable).parent / "async-hashfs"
    put = subprocess.run(
        [str(script), "--root", str(root), "put", str(files[0]), "--json"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    id = json.loads(put.stdout)["id"]
    got = subprocess.run(
        [sys.executable, "-m", "async_hashfs", "--root", str(root), "get", id],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert got.stdout == b"alpha"
    missing = subprocess.run(
        [sys.executable, "-m", "async_hashfs", "--root", str(root / "nope"), "ls"],
        capture_output=True,
        timeout=60,
    )
    assert missing.returncode == 3
    assert b"not a folder" in missing.stderr


@pytest.mark.parametrize("framework", ["flask", "quart"])
def test_app_cli_uses_the_configured_store(framework: str, root: Path, files: list[Path]) -> None:
    app: Any = Flask(__name__) if framework == "flask" else Quart(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), HASHFS_DEPTH=2, HASHFS_WIDTH=2)
    (FlaskHashFS if framework == "flask" else QuartHashFS)(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["hashfs", "put", str(files[0]), "--json"])
    assert result.exit_code == 0, result.output
    id = json.loads(result.output)["id"]
    assert json.loads(result.output)["relpath"] == f"{id[:2]}/{id[2:4]}/{id[4:]}"
    assert runner.invoke(args=["hashfs", "verify"]).exit_code == 0
    assert runner.invoke(args=["hashfs", "get", id]).stdout_bytes == b"alpha"


def test_migrate_to_new_algorithm_twice_loses_nothing(root: Path, files: list[Path]) -> None:
    run(root, "put", *map(str, files))
    args = ["migrate", "--depth", "2", "--width", "2", "--algorithm", "sha512"]
    assert run(root, *args).exit_code == 0
    again = run(root, *args, "--json")
    assert again.exit_code == 0
    assert json.loads(again.output)["moved"] == 0
    assert SyncHashFS(root, depth=2, width=2, algorithm="sha512").count() == 3


# -- issue 10 ----------------------------------------------------------------------


def test_verify_repair_and_migrate_keep_multi_dot_names_hashfs_wrote(root: Path) -> None:
    import io

    import hashfs

    written = hashfs.HashFS(root).put(io.BytesIO(b"archive"), "tar.gz")
    result = run(root, "verify", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"checked": 1, "mismatched": []}
    assert run(root, "repair", "--json").output == ""
    assert stored_files(root) == [written.relpath]
    stats = json.loads(run(root, "stats", "--json").output)
    assert list(stats["by_extension"]) == [".tar.gz"]
    moved = run(root, "migrate", "--depth", "1", "--width", "2", "--algorithm", "md5")
    assert moved.exit_code == 0, moved.output
    md5 = hashlib.md5(b"archive").hexdigest()
    assert stored_files(root) == [f"{md5[:2]}/{md5[2:]}.tar.gz"]


def test_put_refuses_a_fifo_without_waiting(root: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "async_hashfs", "--root", str(root), "put", str(fifo)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:  # pragma: no cover - the bug this guards against
        pytest.fail("async-hashfs put waited on a FIFO")
    assert result.returncode == 2, result.stderr
    assert "not a regular file" in result.stderr
    assert stored_files(root) == [] and temp_files(root) == []
