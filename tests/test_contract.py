"""The store's contract, run on every backend: a local folder and S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from typing import Any

import anyio
import pytest

from async_hashfs import AsyncHashFS, FileTooLarge, HashAddress, NotFound, SyncHashFS

SMALL = b"content-addressed\n" * 100
BIG = os.urandom(12 << 20)  # past the S3 engine's in-memory limit: multipart + copy


def new_sync(backend: dict[str, Any], **options: Any) -> SyncHashFS:
    return SyncHashFS(**backend, **options)


def temp_objects(fs: Any) -> list[str]:
    if fs.layout.is_url:
        return [m["path"] for m in fs._engine._objects(".hashfs-tmp/")]
    folder = os.path.join(fs.root, ".hashfs-tmp")
    return os.listdir(folder) if os.path.isdir(folder) else []


@pytest.mark.parametrize("data", [SMALL, BIG], ids=["small", "big"])
def test_put_get_open_delete(backend: dict[str, Any], data: bytes) -> None:
    fs = new_sync(backend)
    address = fs.put(io.BytesIO(data), "bin")
    id = hashlib.sha256(data).hexdigest()
    assert address.id == id
    assert address.relpath == "/".join(fs.shard(id)) + ".bin"
    assert address.abspath == fs.root + "/" + address.relpath
    assert not address.is_duplicate
    assert fs.put(data, "bin") == address._replace(is_duplicate=True)
    for ref in (id, address.relpath, address.abspath):
        assert fs.get(ref) == address
        assert fs.exists(ref)
    with fs.open(id) as file:
        assert file.read() == data
    assert fs.verify(id)
    assert list(fs.files()) == [address.abspath]
    assert (fs.count(), fs.size()) == (1, len(data))
    fs.delete(id)
    assert fs.get(id) is None
    assert fs.count() == 0
    with pytest.raises(NotFound):
        fs.open(id)
    assert temp_objects(fs) == []


def test_hostile_references_find_nothing(backend: dict[str, Any]) -> None:
    fs = new_sync(backend)
    address = fs.put(SMALL)
    for ref in ["../x", "a/../../x", "/etc/passwd", "s3://other/x", ".hashfs-tmp/x", "", "*"]:
        assert fs.get(ref) is None, ref
    assert fs.get(address.id) == address


@pytest.mark.parametrize("data", [SMALL, BIG], ids=["small", "big"])
def test_concurrent_identical_puts_store_one_object(backend: dict[str, Any], data: bytes) -> None:
    if "s3_options" in backend:
        # SeaweedFS's conditional CompleteMultipartUpload is not atomic under a race
        # (tests/test_s3.py says more); its conditional copy is, so it is run in copy mode.
        backend = {**backend, "s3_options": {**backend["s3_options"], "commit": "copy"}}
    fs = new_sync(backend)
    results: list[HashAddress] = []
    barrier = threading.Barrier(8)

    def put() -> None:
        barrier.wait()
        results.append(fs.put(data))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert sum(not r.is_duplicate for r in results) == 1
    assert fs.count() == 1
    assert fs.verify(results[0].id)
    assert temp_objects(fs) == []


@pytest.mark.parametrize("size", [100_000, 10 << 20])
def test_max_size_and_failing_source_store_nothing(backend: dict[str, Any], size: int) -> None:
    fs = new_sync(backend, max_size=size)
    with pytest.raises(FileTooLarge):
        fs.put([os.urandom(size // 2), os.urandom(size // 2 + 1)])

    def broken() -> Any:
        yield os.urandom(size - 1)
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        fs.put(broken())
    assert fs.count() == 0
    assert temp_objects(fs) == []


def test_repair_moves_misplaced_objects(backend: dict[str, Any]) -> None:
    fs = new_sync(backend)
    good = fs.put(SMALL, "txt")
    misplaced = fs.root + "/misplaced.txt"
    if fs.layout.is_url:
        import obstore

        obstore.put(fs._engine.store, "misplaced.txt", b"moved")
    else:
        with open(misplaced, "wb") as file:
            file.write(b"moved")
    found = dict(fs.corrupted())
    assert list(found) == [misplaced]
    assert fs.repair()[0][1].id == hashlib.sha256(b"moved").hexdigest()
    assert fs.get(hashlib.sha256(b"moved").hexdigest()) is not None
    assert fs.get(good.id) == good
    assert fs.count() == 2


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_store_streams_on_both_loops(backend: dict[str, Any]) -> None:
    fs = await anyio.to_thread.run_sync(lambda: AsyncHashFS(**backend))

    async def chunks() -> Any:
        for start in range(0, len(BIG), 1 << 20):
            yield BIG[start : start + (1 << 20)]

    address = await fs.put(chunks(), "bin")
    assert address.id == hashlib.sha256(BIG).hexdigest()
    async with fs.open(address.id) as file:
        assert await file.read(10) == BIG[:10]
    assert [p async for p in fs.files()] == [address.abspath]
    assert await fs.verify(address.relpath)
    assert (await fs.put(BIG, "bin")).is_duplicate
    await fs.delete(address.id)
    assert await fs.count() == 0


def test_command_line_on_each_backend(
    backend: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from click.testing import CliRunner

    from async_hashfs._cli import cli

    options = backend.get("s3_options")
    if options:  # the command line takes an S3 endpoint and keys from AWS_* variables
        monkeypatch.setenv("AWS_ENDPOINT", options["endpoint"])
        monkeypatch.setenv("AWS_REGION", options["region"])
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["access_key_id"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret_access_key"])
        monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    else:
        os.makedirs(backend["root"])
    root = ["--root", backend["root"]]
    runner = CliRunner()
    put = runner.invoke(cli, [*root, "put", "-", "-e", "txt", "--json"], input=SMALL)
    assert put.exit_code == 0, put.output
    id = json.loads(put.output)["id"]
    assert runner.invoke(cli, [*root, "get", id]).stdout_bytes == SMALL
    listing = [
        json.loads(line)
        for line in runner.invoke(cli, [*root, "ls", "--json"]).output.splitlines()
    ]
    assert listing == [
        {"relpath": json.loads(put.output)["relpath"], "id": id, "size": len(SMALL)}
    ]
    stats = json.loads(runner.invoke(cli, [*root, "stats", "--json"]).output)
    assert (stats["count"], stats["bytes"]) == (1, len(SMALL))
    assert runner.invoke(cli, [*root, "verify"]).exit_code == 0
    assert runner.invoke(cli, [*root, "rm", id]).exit_code == 0
    assert runner.invoke(cli, [*root, "ls"]).output == ""
