"""The command line on s3:// roots: endpoints, credentials and errors as a user meets them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

pytest.importorskip("obstore")
pytest.importorskip("botocore")

import obstore

from async_hashfs import SyncHashFS
from async_hashfs._cli import cli


@pytest.fixture
def env(s3_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """A clean AWS_* environment; nothing from the machine leaks in."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "HASHFS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = s3_server.options()
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint"])  # http://, no AWS_ALLOW_HTTP
    monkeypatch.setenv("AWS_REGION", options["region"])
    return dict(options)


def root() -> str:
    return f"s3://hashfs-test/cli-{os.getpid()}-{time.monotonic_ns()}"


def run(root: str, *args: str, input: bytes | None = None) -> Any:
    return CliRunner().invoke(cli, ["--root", root, *args], input=input)


def with_keys(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", env["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env["secret_access_key"])


def test_http_endpoint_from_aws_endpoint_url(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_keys(env, monkeypatch)
    store = root()
    put = run(store, "put", "-", "--json", input=b"over plain http")
    assert put.exit_code == 0, put.output
    assert run(store, "ls").output.strip() == json.loads(put.output)["relpath"]


def test_bad_credentials_are_one_line_and_exit_4(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    result = run(root(), "ls")
    assert result.exit_code == 4, result.output
    assert result.output.count("\n") == 1 and "credentials" in result.output
    assert "Traceback" not in result.output


def test_missing_credentials_are_one_line_and_exit_4(env: dict[str, Any]) -> None:
    result = run(root(), "put", "-", input=b"x")
    assert result.exit_code == 4, result.output
    assert result.output.count("\n") == 1 and "credentials" in result.output


def test_missing_bucket_is_one_line_and_exit_4(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_keys(env, monkeypatch)
    result = run("s3://no-such-bucket-here/x", "ls")
    assert result.exit_code == 4, result.output
    assert result.output.count("\n") == 1 and "bucket" in result.output


def test_credentials_from_an_aws_profile(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[hashfs]\n"
        f"aws_access_key_id = {env['access_key_id']}\n"
        f"aws_secret_access_key = {env['secret_access_key']}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "hashfs")
    store = root()
    data = os.urandom(9 << 20)  # small puts through obstore, large through botocore
    for body in (b"from a profile", data):
        put = run(store, "put", "-", "--json", input=body)
        assert put.exit_code == 0, put.output
        assert run(store, "get", json.loads(put.output)["id"]).stdout_bytes == body


def test_gc_older_than_zero_is_used_as_given(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_keys(env, monkeypatch)
    store = root()
    fs = SyncHashFS(store)
    obstore.put(fs._engine.store, ".hashfs-tmp/left.tmp", b"left")
    kept = json.loads(run(store, "gc", "--json").output)  # S3's default grace: an hour
    assert kept["temp_files"] == []
    removed = json.loads(run(store, "gc", "--older-than", "0", "--json").output)
    assert removed["temp_files"] == [store + "/.hashfs-tmp/left.tmp"]
    assert removed["uploads"] == []
    assert run(store, "gc", "--older-than", "-1").exit_code == 2


@pytest.mark.parametrize("command", [["get", "0" * 64], ["rm", "0" * 64], ["ls"], ["verify"]])
def test_refused_credentials_on_every_command_are_one_line_and_exit_4(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A HEAD refused with a bare 403 (no S3 error code in the body) too (issue 13)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", env["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    result = run(root(), *command)
    assert result.exit_code == 4, result.output
    assert result.output == "Error: the S3 server refused the credentials (HTTP 403)\n"


def test_an_endpoint_that_is_not_a_url_is_one_line_and_exit_2(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with_keys(env, monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:9000")  # no scheme: obstore would panic
    result = run(root(), "ls")
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "'localhost:9000'" in result.output


def test_sweep_while_another_runs_is_exit_5(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from async_hashfs._s3_sweep import RECORD_KEY

    with_keys(env, monkeypatch)
    where = root()
    fs = SyncHashFS(where, s3_options=env)
    fs.put(b"left alone")
    running = {"state": "running", "owner": "elsewhere", "started": time.time()}
    obstore.put(
        fs._engine.store, RECORD_KEY, json.dumps(dict(running, until=time.time() + 600)).encode()
    )
    ids = tmp_path / "ids.txt"
    ids.write_text("")
    result = run(where, "sweep", "--keep", str(ids), "--allow-empty", "--older-than", "0")
    assert result.exit_code == 5, result.output
    assert "another sweep of s3://" in result.output and "is running" in result.output
    assert fs.count() == 1


@pytest.fixture(scope="module")
def strict_server() -> Any:
    """A SeaweedFS that creates no bucket on upload, as AWS, R2 and MinIO."""
    from . import s3server

    server = s3server.start(extra=["-s3.autoCreateBucket=false"])
    yield server
    server.stop()


def test_a_sweep_of_a_missing_bucket_says_so_and_exits_4(
    strict_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    options = strict_server.options()
    fs = SyncHashFS("s3://no-such-bucket-here/app", s3_options=options)
    with pytest.raises(FileNotFoundError):  # not "another sweep runs"
        fs.sweep([], older_than=0)
    for name in list(os.environ):
        if name.startswith(("AWS_", "HASHFS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint"])
    monkeypatch.setenv("AWS_REGION", options["region"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret_access_key"])
    for dry_run in ([], ["--dry-run"]):
        args = ["sweep", "--keep", os.devnull, "--allow-empty", *dry_run]
        result = run("s3://no-such-bucket-here/app", *args)
        assert result.exit_code == 4, result.output
        assert "bucket does not exist" in result.output and "sweep" not in result.output
