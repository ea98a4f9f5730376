"""The ``hashfs`` commands: standalone, under Flask and Quart, and as a subprocess."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from quart import Quart

from async_hashfs import QuartHashFS, SyncHashFS, _cli
from async_hashfs._cli import cli
from async_hashfs._engine import CHUNK_SIZE
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


# -- issue 13: a new user's first commands, help anywhere, one-line errors --------------------


def cli_process(
    *args: str, env: dict[str, str] | None = None, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m async_hashfs ARGS`` as a user would: real exit code, real stderr."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HASHFS_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "async_hashfs", *args],
        capture_output=True,
        input=input,
        env={**clean, **(env or {})},
        timeout=60,
        check=False,
    )


def assert_one_line_error(result: Any, code: int, *words: str) -> None:
    """Exit ``code``, nothing on stdout, and stderr one ``Error: …`` line with ``words``."""
    stderr = result.stderr.decode() if isinstance(result.stderr, bytes) else result.stderr
    assert result.returncode == code, stderr
    assert stderr.startswith("Error: ") and stderr.endswith("\n"), stderr
    assert stderr.count("\n") == 1, stderr
    for word in words:
        assert word in stderr, stderr


def test_put_creates_a_new_store_and_reads_keep_exit_3(tmp_path: Path, files: list[Path]) -> None:
    new = tmp_path / "new" / "store"
    for command in (["ls"], ["get", "0" * 64], ["verify"], ["stats"], ["rm", "0" * 64]):
        assert_one_line_error(cli_process("--root", str(new), *command), 3, "not a folder")
    assert not new.exists()
    put = cli_process("--root", str(new), "put", str(files[0]), "--json")
    assert put.returncode == 0, put.stderr
    id = json.loads(put.stdout)["id"]
    assert stored_files(new) == [json.loads(put.stdout)["relpath"]]
    assert cli_process("--root", str(new), "get", id).stdout == b"alpha"
    verify = cli_process("--root", str(new), "verify")
    assert verify.returncode == 0
    assert verify.stderr == b"1 files checked, 0 mismatched\n"


def test_a_put_that_reads_nothing_creates_nothing(tmp_path: Path) -> None:
    new = tmp_path / "new"
    result = cli_process("--root", str(new), "put", str(tmp_path / "missing.bin"))
    assert_one_line_error(result, 2, "cannot read", "missing.bin")
    assert not new.exists()


def test_put_refuses_a_root_that_is_a_file(tmp_path: Path, files: list[Path]) -> None:
    assert_one_line_error(
        cli_process("--root", str(files[1]), "put", str(files[0])), 3, "not a folder"
    )


@pytest.mark.skipif(not os.path.isdir("/proc/1"), reason="needs Linux's /proc")
def test_a_disk_that_refuses_is_one_line_and_exit_3(files: list[Path]) -> None:
    result = cli_process("--root", "/proc/no-store-here", "put", str(files[0]))
    assert_one_line_error(result, 3, "disk refused", "/proc/no-store-here")


COMMANDS = ["put", "get", "rm", "ls", "stats", "verify", "repair", "gc", "migrate"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
@pytest.mark.parametrize("root", [None, "missing", "file"])
def test_help_works_anywhere(
    command: str | None, root: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HASHFS_ROOT_FOLDER", raising=False)
    args = []
    if root is not None:
        (tmp_path / "file").write_bytes(b"not a store")
        args = ["--root", str(tmp_path / root), "--algorithm", "md7", "--depth", "-1"]
    result = CliRunner().invoke(cli, [*args, *([command] if command else []), "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: async-hashfs {command or ''}".rstrip())
    assert not (tmp_path / "missing").exists()


def test_app_group_help_needs_no_store() -> None:
    app = Flask(__name__)
    app.config["HASHFS_ROOT_FOLDER"] = "/no/such/folder/for/help"
    FlaskHashFS(app)
    shutil.rmtree("/no/such/folder/for/help", ignore_errors=True)
    result = app.test_cli_runner().invoke(args=["hashfs", "put", "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_version() -> None:
    from async_hashfs import __version__

    result = cli_process("--version")
    assert result.returncode == 0
    assert result.stdout.decode() == f"async-hashfs {__version__}\n"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["ls"], 2, ["--root", "HASHFS_ROOT_FOLDER"]),
        (["--root", "{root}", "--algorithm", "md7", "ls"], 2, ["algorithm 'md7'"]),
        (["--root", "{root}", "--depth", "-1", "ls"], 2, ["depth", "-1"]),
        (["--root", "{root}", "--width", "-2", "put", "{file}"], 2, ["width", "-2"]),
        (["--root", "{root}", "--depth", "x", "ls"], 2, ["--depth", "'x'"]),
        (["--root", "{root}", "--no-such-option", "ls"], 2, ["--no-such-option"]),
        (["--root", "{root}", "no-such-command"], 2, ["no-such-command"]),
        (["--root", "{root}", "get"], 2, ["REF"]),
        (["--root", "{root}", "get", "0" * 64], 2, ["no stored file"]),
        (["--root", "{root}", "get", "{id}", "-o", "/no/such/dir/f"], 2, ["/no/such/dir/f"]),
        (["--root", "{root}", "get", "{id}", "-o", "{root}"], 2, ["--output", "directory"]),
        (["--root", "{root}", "rm", "0" * 64, "1" * 64], 2, ["0" * 64, "1" * 64]),
        (["--root", "{root}", "put", "{root}/missing"], 2, ["cannot read", "missing"]),
        (["--root", "{root}", "put", "-e", "../x", "{file}"], 2, ["extension", "../x"]),
        (["--root", "{root}", "verify", "--jobs", "0"], 2, ["--jobs"]),
        (["--root", "{root}", "gc", "--older-than", "-1"], 2, ["--older-than"]),
        (["--root", "{root}", "migrate", "--depth", "1", "--width", "-1"], 2, ["width"]),
        (
            ["--root", "{root}", "migrate", "--depth", "1", "--width", "1", "--algorithm", "md7"],
            2,
            ["md7"],
        ),
        (["--root", "ftp://host/x", "ls"], 2, ["s3://bucket"]),
        (["--root", "{root}/none", "ls"], 3, ["not a folder"]),
    ],
)
def test_every_user_error_is_one_line_with_its_exit_code(
    args: list[str], code: int, words: list[str], root: Path, files: list[Path]
) -> None:
    id = SyncHashFS(root).put(files[0]).id
    values = {"root": str(root), "file": str(files[0]), "id": id}
    result = cli_process(*(arg.format(**values) for arg in args))
    assert_one_line_error(result, code, *words)
    assert result.stdout == b""
    assert stored_files(root) == [SyncHashFS(root).get(id).relpath]  # type: ignore[union-attr]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_get_into_a_full_disk_is_one_line_and_leaves_the_target(root: Path) -> None:
    id = SyncHashFS(root).put(b"x" * 100_000).id
    result = cli_process("--root", str(root), "get", id, "-o", "/dev/full")
    assert_one_line_error(result, 2, "/dev/full", "No space left")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # an existing target is never removed


def test_get_removes_the_partial_file_it_created(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    id = SyncHashFS(root).put(os.urandom(3 * CHUNK_SIZE)).id
    target = tmp_path / "out.bin"
    real_open = open
    writes = 0

    class Failing:
        def __init__(self, file: Any) -> None:
            self.file = file

        def write(self, data: bytes) -> int:
            nonlocal writes
            writes += 1
            if writes == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return int(self.file.write(data))

        def close(self) -> None:
            self.file.close()

    def opener(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        return Failing(real_open(path, mode, *args, **kwargs))

    monkeypatch.setattr(_cli, "open", opener, raising=False)  # the command's open() only
    result = CliRunner().invoke(cli, ["--root", str(root), "get", id, "-o", str(target)])
    assert result.exit_code == 2
    assert "cannot write" in result.output and "No space left" in result.output
    assert not target.exists()


def test_an_s3_root_without_the_extra_is_one_line_and_exit_4() -> None:
    code = (
        "import sys\n"
        "from importlib.abc import MetaPathFinder\n"
        "class Missing(MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'obstore':\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "from async_hashfs._cli import cli\n"
        "cli(['--root', 's3://bucket/prefix', 'ls'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert_one_line_error(result, 4, 'pip install "async-hashfs[s3]"')


def test_an_invalid_s3_endpoint_is_one_line_not_a_panic() -> None:
    pytest.importorskip("obstore")
    result = cli_process(
        "--root", "s3://bucket/prefix", "ls", env={"AWS_ENDPOINT_URL": "not a url"}
    )
    assert_one_line_error(result, 2, "AWS_ENDPOINT_URL", "'not a url'")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")
def test_verify_ends_its_summary_with_a_newline_on_a_terminal(root: Path) -> None:
    import pty

    SyncHashFS(root).put(b"on a terminal")
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "async_hashfs", "--root", str(root), "verify"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert process.wait(60) == 0
    assert output.endswith(b"1 files checked, 0 mismatched\r\n"), output


@pytest.mark.parametrize("framework", ["flask", "quart"])
def test_app_group_errors_are_one_line(framework: str, root: Path) -> None:
    app: Any = Flask(__name__) if framework == "flask" else Quart(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root))
    (FlaskHashFS if framework == "flask" else QuartHashFS)(app)
    result = app.test_cli_runner().invoke(args=["hashfs", "get", "0" * 64])
    assert result.exit_code == 2
    assert result.output == f"Error: no stored file for {'0' * 64!r}\n"


def test_a_reader_that_leaves_gets_exit_141_and_no_traceback(root: Path) -> None:
    id = SyncHashFS(root).put(os.urandom(8 << 20)).id
    with subprocess.Popen(
        [sys.executable, "-m", "async_hashfs", "--root", str(root), "get", id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert len(process.stdout.read(10)) == 10
        process.stdout.close()  # as `… | head -c 10` does
        stderr = process.stderr.read()
        assert process.wait(60) == 141, stderr
    assert stderr == b""


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGINT")
def test_an_interrupt_is_exit_130_not_1(root: Path) -> None:
    # The command line, started once its imports are done (an interrupt any time after
    # that reaches click; one during the imports would be Python's own).
    code = (
        "import sys\n"
        "from async_hashfs._cli import cli\n"
        "sys.stderr.write('ready\\n'); sys.stderr.flush()\n"
        f"cli(['--root', {str(root)!r}, 'put', '-'])\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,  # left open: put waits for the rest of the input
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdin is not None and process.stderr is not None
        process.stdin.write(b"partial")
        process.stdin.flush()
        assert process.stderr.readline() == b"ready\n"
        time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() == b"Aborted!"
    assert stored_files(root) == [] and temp_files(root) == []
