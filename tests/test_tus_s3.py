"""Resumable (tus) uploads on an s3:// root, on a real server (SeaweedFS).

Partial uploads are multipart uploads on the bucket with their record and
held tail beside them, so a second store object on the same root (another
app server) resumes what the first received. Parts here are S3's 5 MiB
minimum, to keep the bytes sent small.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("obstore")
pytest.importorskip("botocore")

import httpx
import obstore
from anyio.from_thread import BlockingPortal, start_blocking_portal
from click.testing import CliRunner
from obstore.exceptions import PreconditionError

from async_hashfs import SyncHashFS
from async_hashfs._cli import cli
from async_hashfs._s3 import MIB, TUS_PREFIX
from async_hashfs._tus_s3 import S3PartialStore
from async_hashfs._tus_store import (
    LengthConflict,
    OffsetMismatch,
    UploadLocked,
    UploadNotFound,
    UploadTooLarge,
    partial_store,
)

from .test_tus import Tus, V, b64, flask_tus, metadata, quart_tus
from .test_tus_e2e import (
    STREAM,
    TESTS,
    Server,
    _close_files,  # noqa: F401 - closes the files uploader() opened
    _Gate,
    final_headers,
    kill_while_storing,
    random_file,
    uploader,
)

PART = 5 * MIB
DATA = os.urandom(10 * MIB + 12345)  # two full parts and a short last one
SMALLER = DATA[: 6 * MIB]  # a part and a tail
DATA_ID = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def root(request: pytest.FixtureRequest) -> str:
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)
    return f"s3://hashfs-test/tus-{os.getpid()}-{name}-{time.monotonic_ns()}"


@pytest.fixture
def options(s3_server: Any) -> dict[str, Any]:
    return {**s3_server.options(), "part_size": PART}


@pytest.fixture(autouse=True)
def _locks_released() -> Iterator[None]:
    """Every lock taken in a test is released by its end: no lease is renewed on."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("hashfs-tus-lease-"):
            thread.join(10)
            assert not thread.is_alive(), f"{thread.name} still renews a lock"


@pytest.fixture
def tail_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keys of the tail objects read back from the bucket."""
    keys: list[str] = []
    real = obstore.get

    def get(store: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        if key.endswith(".part"):
            keys.append(key)
        return real(store, key, *args, **kwargs)

    monkeypatch.setattr(obstore, "get", get)
    return keys


def server(root: str, options: dict[str, Any], **extra: Any) -> SyncHashFS:
    """A store on the root, as one app server has it (its own clients and memory)."""
    return SyncHashFS(root, s3_options={**options, **extra})


def partials(fs: SyncHashFS) -> S3PartialStore:
    store = partial_store(fs._engine)
    assert isinstance(store, S3PartialStore)
    return store


class Calls:
    """The S3 operations a store's botocore client sends, by name (with their parameters)."""

    def __init__(self, fs: SyncHashFS) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        fs._engine.client.meta.events.register("before-parameter-build.s3", self._call)

    def _call(self, model: Any, params: Any, **_: Any) -> None:
        with self._lock:
            self.sent.append((model.name, dict(params)))

    def count(self, name: str) -> int:
        return sum(1 for sent, _ in self.sent if sent == name)

    def params(self, name: str) -> list[dict[str, Any]]:
        return [params for sent, params in self.sent if sent == name]


def tus_objects(fs: SyncHashFS) -> list[str]:
    return sorted(str(m["path"]) for m in fs._engine._objects(TUS_PREFIX))


def tus_uploads(fs: SyncHashFS) -> list[str]:
    return [key for key, _, _ in fs._engine._incomplete_uploads()]


def append(fs: SyncHashFS, upload_id: str, offset: int, data: bytes, **kwargs: Any) -> Any:
    """One PATCH: lock, write in 64 KiB chunks, commit."""
    with partials(fs).open_append(upload_id, offset, **kwargs) as patch:
        for start in range(0, len(data), 65536):
            patch.write(data[start : start + 65536])
        return patch.commit()


def read_back(fs: SyncHashFS, id: str) -> bytes:
    with fs.open(id) as file:
        return bytes(file.read())


# -- a whole upload -----------------------------------------------------------------


def test_upload_in_patches_lands_at_its_content_key(
    root: str, options: dict[str, Any], tail_reads: list[str]
) -> None:
    fs = server(root, options)
    store = partials(fs)
    calls = Calls(fs)
    info = store.create(len(DATA), "filename ZS5iaW4=")
    assert info.offset == 0 and info.length == len(DATA) and info.address is None
    offset = 0
    for size in (3 * MIB, 4 * MIB, len(DATA) - 7 * MIB):
        info = append(fs, info.id, offset, DATA[offset : offset + size])
        offset += size
        assert info.offset == offset == store.info(info.id).offset
    assert info.complete
    address = store.finish(info.id, ".bin")
    assert address.id == DATA_ID and not address.is_duplicate
    assert address.relpath.endswith(".bin")
    assert read_back(fs, DATA_ID) == DATA
    # The server kept the hash (no GET of the temp object) and the tail it gathered.
    assert calls.count("UploadPart") == 3
    assert tail_reads == []
    assert [p["IfNoneMatch"] for p in calls.params("CompleteMultipartUpload")[1:]] == ["*"]
    # Nothing left but the record, which says where the bytes went.
    assert tus_objects(fs) == [f"{TUS_PREFIX}{info.id}/info"]
    assert tus_uploads(fs) == []
    done = store.info(info.id)
    assert done.address is not None and done.address.id == DATA_ID and done.complete
    again = store.finish(info.id, ".bin")
    assert again.id == DATA_ID and again.is_duplicate
    with pytest.raises(UploadNotFound):
        store.open_append(info.id, len(DATA))
    assert store.stats().uploads == []


def test_small_upload_is_one_conditional_put(root: str, options: dict[str, Any]) -> None:
    fs = server(root, options)
    store = partials(fs)
    calls = Calls(fs)
    small = b"a small file, under one part"
    info = store.create(len(small))
    append(fs, info.id, 0, small[:10])
    append(fs, info.id, 10, small[10:])
    address = store.finish(info.id)
    assert address.id == hashlib.sha256(small).hexdigest() and not address.is_duplicate
    assert read_back(fs, address.id) == small
    assert calls.count("CreateMultipartUpload") == 0
    assert tus_objects(fs) == [f"{TUS_PREFIX}{info.id}/info"]
    empty = store.create(0)
    assert store.finish(empty.id).id == hashlib.sha256(b"").hexdigest()


# -- small PATCH bodies are held on the bucket until a part is full -------------------


def test_small_patches_are_held_until_a_part_is_full_and_any_server_resumes(
    root: str, options: dict[str, Any], tail_reads: list[str]
) -> None:
    first = server(root, options)
    calls = Calls(first)
    info = partials(first).create(len(DATA))
    step = 1 * MIB + 1
    offset = 0
    for _ in range(4):  # 4 MiB and 4 bytes: short of a part
        append(first, info.id, offset, DATA[offset : offset + step])
        offset += step
    assert calls.count("UploadPart") == 0
    tails = [k for k in tus_objects(first) if k.endswith(".part")]
    assert len(tails) == 4  # each PATCH put only its own bytes
    # A second server, which never saw a byte, finds the upload where the first left it.
    second = server(root, options)
    second_calls = Calls(second)
    store = partials(second)
    assert store.info(info.id).offset == offset
    with pytest.raises(OffsetMismatch):
        store.open_append(info.id, offset - 1)
    append(second, info.id, offset, DATA[offset : offset + step])  # fills the first part
    offset += step
    assert len(tail_reads) == 4  # read back from the bucket: the second never had them
    assert second_calls.count("UploadPart") == 1
    assert second_calls.params("UploadPart")[0]["PartNumber"] == 1
    # The gathered tail went; the 5 bytes past the part are the new one.
    assert len([k for k in tus_objects(second) if k.endswith(".part")]) == 1
    append(first, info.id, offset, DATA[offset:])  # and back to the first server
    hashed: list[str] = []
    real = first._engine.hash_file

    def spy(path: Any, *args: Any, **kwargs: Any) -> str:
        hashed.append(str(path))
        return real(path, *args, **kwargs)

    first._engine.hash_file = spy  # type: ignore[method-assign]
    address = partials(first).finish(info.id)
    assert address.id == DATA_ID and not address.is_duplicate
    assert hashed == [f"{TUS_PREFIX}{info.id}/data"]  # the hash was lost: one streamed GET
    assert read_back(second, DATA_ID) == DATA
    assert tus_objects(first) == [f"{TUS_PREFIX}{info.id}/info"] and tus_uploads(first) == []


def test_many_tiny_patches_keep_the_tail_in_few_objects(
    root: str, options: dict[str, Any]
) -> None:
    fs = server(root, options)
    store = partials(fs)
    data = os.urandom(40 * 1000)
    info = store.create(len(data))
    for offset in range(0, len(data), 1000):
        append(fs, info.id, offset, data[offset : offset + 1000])
        assert len([k for k in tus_objects(fs) if k.endswith(".part")]) <= 17
    assert store.finish(info.id).id == hashlib.sha256(data).hexdigest()
    assert read_back(fs, hashlib.sha256(data).hexdigest()) == data


# -- the commit: a copy in ranges, conditional ------------------------------------------


@pytest.mark.parametrize("same_server", [True, False])
def test_commit_is_a_ranged_copy_completed_with_if_none_match(
    root: str, options: dict[str, Any], same_server: bool
) -> None:
    first = server(root, options, copy_part_size=PART)
    info = partials(first).create(len(DATA))
    append(first, info.id, 0, DATA)
    finisher = first if same_server else server(root, options, copy_part_size=PART)
    calls = Calls(finisher)
    address = partials(finisher).finish(info.id, ".bin")
    assert address.id == DATA_ID and not address.is_duplicate
    ranges = [p["CopySourceRange"] for p in calls.params("UploadPartCopy")]
    assert ranges == [
        f"bytes=0-{PART - 1}",
        f"bytes={PART}-{2 * PART - 1}",
        f"bytes={2 * PART}-{len(DATA) - 1}",
    ]
    completes = calls.params("CompleteMultipartUpload")
    assert "IfNoneMatch" not in completes[0]  # the temp object: ours alone
    assert completes[-1]["IfNoneMatch"] == "*"
    assert completes[-1]["Key"].endswith(address.relpath)
    assert read_back(first, DATA_ID) == DATA
    assert tus_uploads(first) == [] and tus_objects(first) == [f"{TUS_PREFIX}{info.id}/info"]


def test_copy_mode_commits_with_a_conditional_copy(root: str, options: dict[str, Any]) -> None:
    fs = server(root, options, commit="copy")
    calls = Calls(fs)
    info = partials(fs).create(len(DATA))
    append(fs, info.id, 0, DATA)
    assert not partials(fs).finish(info.id).is_duplicate
    assert calls.count("UploadPartCopy") == 0  # one CopyObject (obstore), under 5 GiB
    assert read_back(fs, DATA_ID) == DATA


# -- dedupe -----------------------------------------------------------------------------


@pytest.mark.parametrize("same_server", [True, False])
def test_upload_of_stored_bytes_is_a_duplicate_and_leaves_nothing(
    root: str, options: dict[str, Any], same_server: bool
) -> None:
    fs = server(root, options)
    assert not fs.put(DATA).is_duplicate
    info = partials(fs).create(len(DATA))
    append(fs, info.id, 0, DATA)
    finisher = fs if same_server else server(root, options)
    calls = Calls(finisher)
    address = partials(finisher).finish(info.id)
    assert address.id == DATA_ID and address.is_duplicate
    assert calls.count("UploadPartCopy") == 0
    # With the hash known no complete at all; without, only the temp object's.
    assert calls.count("CompleteMultipartUpload") == (0 if same_server else 1)
    assert fs.count() == 1
    assert tus_uploads(fs) == [] and tus_objects(fs) == [f"{TUS_PREFIX}{info.id}/info"]


def test_racing_finishes_in_copy_mode_have_exactly_one_winner(
    root: str, options: dict[str, Any]
) -> None:
    servers = [server(root, options, commit="copy") for _ in range(4)]
    ids = []
    for fs in servers:
        info = partials(fs).create(len(SMALLER))
        append(fs, info.id, 0, SMALLER)
        ids.append(info.id)
    results: list[Any] = []
    barrier = threading.Barrier(len(servers))

    def finish(fs: SyncHashFS, upload_id: str) -> None:
        barrier.wait()
        results.append(partials(fs).finish(upload_id))

    threads = [
        threading.Thread(target=finish, args=pair) for pair in zip(servers, ids, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4 and {r.id for r in results} == {hashlib.sha256(SMALLER).hexdigest()}
    assert sum(not r.is_duplicate for r in results) == 1
    assert servers[0].count() == 1 and tus_uploads(servers[0]) == []


@pytest.mark.parametrize("cut", ["hash_file", "_forget_hash"])
def test_finish_cut_short_is_done_again_by_another_server(
    root: str, options: dict[str, Any], cut: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server dies once the temp object is complete, or once it is copied to its key."""
    first = server(root, options)
    store = partials(first)
    info = store.create(len(DATA))
    append(first, info.id, 0, DATA)
    store._forget_hash(info.id)  # as after a restart: the temp object is hashed
    target = first._engine if cut == "hash_file" else store
    real = getattr(target, cut)

    def dies(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise KeyboardInterrupt  # the process is gone here

    monkeypatch.setattr(target, cut, dies)
    with pytest.raises(KeyboardInterrupt):
        store.finish(info.id)
    second = server(root, options)
    address = partials(second).finish(info.id)
    assert address.id == DATA_ID and address.is_duplicate == (cut == "_forget_hash")
    assert read_back(second, DATA_ID) == DATA
    assert second.count() == 1
    assert tus_uploads(second) == [] and tus_objects(second) == [f"{TUS_PREFIX}{info.id}/info"]


# -- one request at a time, across servers ----------------------------------------------


def test_second_patch_from_another_server_is_refused_never_interleaved(
    root: str, options: dict[str, Any]
) -> None:
    first, second = server(root, options), server(root, options)
    info = partials(first).create(len(DATA))
    patch = partials(first).open_append(info.id, 0)
    patch.write(DATA[: 6 * MIB])  # a part is on the bucket already
    with pytest.raises(UploadLocked):
        partials(second).open_append(info.id, 0)
    with pytest.raises(UploadLocked):
        partials(second).terminate(info.id)
    assert partials(second).info(info.id).offset == 0  # nothing counts before commit
    assert patch.commit().offset == 6 * MIB
    append(second, info.id, 6 * MIB, DATA[6 * MIB :])
    assert partials(second).finish(info.id).id == DATA_ID
    assert read_back(first, DATA_ID) == DATA


def test_racing_patches_from_eight_servers_lock_once(root: str, options: dict[str, Any]) -> None:
    """The lock is a conditional PUT (If-Match): SeaweedFS lets exactly one of them land."""
    servers = [server(root, options) for _ in range(8)]
    info = partials(servers[0]).create(len(DATA))
    for offset in range(3):
        won, refused = race_to_lock(servers, info.id, offset)
        assert len(won) == 1 and len(refused) == 7
        won[0].write(b"x")
        assert won[0].commit().offset == offset + 1


def race_to_lock(
    servers: list[SyncHashFS], upload_id: str, offset: int
) -> tuple[list[Any], list[UploadLocked]]:
    """Every server opens an append at once: the appends opened, and the refusals."""
    barrier = threading.Barrier(len(servers))
    won: list[Any] = []
    refused: list[UploadLocked] = []

    def patch(fs: SyncHashFS) -> None:
        barrier.wait()
        try:
            won.append(partials(fs).open_append(upload_id, offset))
        except UploadLocked as exc:
            refused.append(exc)

    threads = [threading.Thread(target=patch, args=(fs,)) for fs in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return won, refused


def test_lock_of_a_dead_server_lapses_and_its_late_bytes_never_count(
    root: str, options: dict[str, Any]
) -> None:
    first = server(root, options, tus_lock_seconds=1.0)
    second = server(root, options, tus_lock_seconds=1.0)
    info = partials(first).create(len(DATA))
    append(first, info.id, 0, DATA[:MIB])
    stalled = partials(first).open_append(info.id, MIB)
    stalled.write(os.urandom(MIB))  # bytes the client will send again
    stalled._held._stop.set()  # type: ignore[attr-defined]  # the process froze: no renewals
    deadline = time.monotonic() + 30
    while True:
        try:
            resumed = partials(second).open_append(info.id, MIB)
            break
        except UploadLocked:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    resumed.write(DATA[MIB : 6 * MIB])
    # The frozen request wakes: its lease is gone, so nothing it does counts.
    with pytest.raises(UploadLocked):
        stalled.write(os.urandom(5 * MIB))
    with pytest.raises((UploadLocked, OSError)):
        stalled.commit()
    assert resumed.commit().offset == 6 * MIB
    append(second, info.id, 6 * MIB, DATA[6 * MIB :])
    address = partials(first).finish(info.id)
    assert address.id == DATA_ID
    assert read_back(first, DATA_ID) == DATA


def test_a_live_holder_keeps_its_lock_past_the_lease(root: str, options: dict[str, Any]) -> None:
    first = server(root, options, tus_lock_seconds=1.0)
    second = server(root, options, tus_lock_seconds=1.0)
    info = partials(first).create(len(DATA))
    patch = partials(first).open_append(info.id, 0)  # its client is slow: no bytes yet
    leases = []
    deadline = time.monotonic() + 30
    while len(set(leases)) < 4:  # renewed three times: three leases gone by
        leases.append(partials(first)._read(info.id)[0]["lock"]["until"])
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(UploadLocked):
        partials(second).open_append(info.id, 0)
    patch.write(DATA[:100])
    assert patch.commit().offset == 100
    assert partials(first)._read(info.id)[0]["lock"] is None


# -- appends that end early -------------------------------------------------------------


def test_atomic_append_aborted_leaves_the_upload_as_it_was(
    root: str, options: dict[str, Any]
) -> None:
    fs = server(root, options)
    store = partials(fs)
    info = store.create(len(DATA))
    append(fs, info.id, 0, DATA[:MIB])
    before = tus_objects(fs)
    with store.open_append(info.id, MIB, atomic=True) as patch:
        patch.write(DATA[MIB : 7 * MIB])  # a part and a tail's worth
        patch.write(DATA[7 * MIB : 7 * MIB + 100])
    assert store.info(info.id).offset == MIB
    assert tus_objects(fs) == before
    assert tus_uploads(fs) == []  # the multipart upload it began is gone
    append(fs, info.id, MIB, DATA[MIB:])
    assert store.finish(info.id).id == DATA_ID


def test_plain_append_aborted_keeps_what_it_received(root: str, options: dict[str, Any]) -> None:
    fs = server(root, options)
    store = partials(fs)
    info = store.create(len(DATA))
    with store.open_append(info.id, 0) as patch:
        patch.write(DATA[: 6 * MIB])
        # the client went away here: no commit
    assert store.info(info.id).offset == 6 * MIB
    append(fs, info.id, 6 * MIB, DATA[6 * MIB :])
    assert store.finish(info.id).id == DATA_ID
    assert read_back(fs, DATA_ID) == DATA


def test_bytes_past_the_length_or_max_size_are_refused(root: str, s3_server: Any) -> None:
    options = {**s3_server.options(), "part_size": PART}
    fs = SyncHashFS(root, max_size=len(DATA), s3_options=options)
    store = partials(fs)
    with pytest.raises(UploadTooLarge):
        store.create(len(DATA) + 1)
    info = store.create(10)
    with store.open_append(info.id, 0) as patch, pytest.raises(UploadTooLarge):
        patch.write(b"x" * 11)
    assert store.info(info.id).offset == 0
    deferred = store.create(None)
    append(fs, deferred.id, 0, b"12345")
    with pytest.raises(LengthConflict):
        store.open_append(deferred.id, 5, length=4)
    with pytest.raises(UploadTooLarge):
        store.open_append(deferred.id, 5, length=len(DATA) + 1)
    done = append(fs, deferred.id, 5, b"678", length=8)
    assert done.complete and done.length == 8
    assert read_back(fs, store.finish(deferred.id).id) == b"12345678"
    with pytest.raises(LengthConflict):
        store.finish(info.id)
    for bad in ("nope", "0" * 31, "../" + "0" * 32):
        with pytest.raises(UploadNotFound):
            store.info(bad)


def test_deferred_length_declared_after_the_last_part(root: str, options: dict[str, Any]) -> None:
    fs = server(root, options)
    store = partials(fs)
    info = store.create(None)
    append(fs, info.id, 0, DATA)  # two parts sent, a tail held: the end is not known
    done = append(fs, info.id, len(DATA), b"", length=len(DATA))
    assert done.complete
    address = partials(server(root, options)).finish(info.id)
    assert address.id == DATA_ID and read_back(fs, DATA_ID) == DATA


# -- termination, expiry, gc ------------------------------------------------------------


def test_terminate_removes_the_multipart_upload_and_every_object(
    root: str, options: dict[str, Any]
) -> None:
    fs = server(root, options)
    info = partials(fs).create(len(DATA))
    append(fs, info.id, 0, DATA[: 6 * MIB])
    assert tus_uploads(fs) and len(tus_objects(fs)) == 2  # record and tail
    partials(server(root, options)).terminate(info.id)
    assert tus_uploads(fs) == [] and tus_objects(fs) == []
    with pytest.raises(UploadNotFound):
        partials(fs).info(info.id)
    with pytest.raises(UploadNotFound):
        partials(fs).terminate(info.id)


def test_expired_uploads_are_collected_and_gc_leaves_live_ones(
    root: str, options: dict[str, Any]
) -> None:
    fs = server(root, options)
    store = partials(fs)
    now = time.time()
    old = store.create(len(DATA), expires=now + 100)
    append(fs, old.id, 0, DATA[: 6 * MIB])
    finished = store.create(3, expires=now + 100)
    append(fs, finished.id, 0, b"abc")
    store.finish(finished.id)
    live = store.create(len(DATA), expires=now + 10_000)
    append(fs, live.id, 0, DATA[:MIB])
    busy = store.create(5, expires=now + 100)
    held = store.open_append(busy.id, 0)
    # The engine's own gc never touches resumable uploads, whatever their age.
    fs._engine.gc(older_than=0)
    assert len(tus_uploads(fs)) == 1 and store.info(old.id).offset == 6 * MIB
    assert sorted(store.stats().uploads) == sorted([old.id, live.id, busy.id])
    assert store.stats().bytes == 7 * MIB
    report = store.collect(now + 1000)
    assert sorted(report.uploads) == sorted([old.id, finished.id])
    assert report.bytes == 6 * MIB
    assert tus_uploads(fs) == []
    assert {k.split("/")[-2] for k in tus_objects(fs)} == {live.id, busy.id}
    held.abort()
    assert store.collect(now + 1000).uploads == [busy.id]


def test_cli_stats_and_gc_on_the_bucket(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = server(root, options)
    store = partials(fs)
    expired = store.create(len(DATA), expires=time.time() - 1)
    append(fs, expired.id, 0, DATA[: 6 * MIB])
    live = store.create(len(DATA), expires=time.time() + 3600)
    append(fs, live.id, 0, DATA[: 6 * MIB])
    for name, value in [
        ("AWS_ENDPOINT_URL", options["endpoint"]),
        ("AWS_REGION", options["region"]),
        ("AWS_ACCESS_KEY_ID", options["access_key_id"]),
        ("AWS_SECRET_ACCESS_KEY", options["secret_access_key"]),
    ]:
        monkeypatch.setenv(name, value)
    stats = CliRunner().invoke(cli, ["--root", root, "stats", "--json"])
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.output)["partial_uploads"] == {"count": 2, "bytes": 12 * MIB}
    gc = CliRunner().invoke(cli, ["--root", root, "gc", "--older-than", "0", "--json"])
    assert gc.exit_code == 0, gc.output
    report = json.loads(gc.output)
    assert report["partial_uploads"] == [expired.id]
    assert report["partial_bytes"] == 6 * MIB
    assert report["uploads"] == []  # gc(0) leaves the live upload's multipart upload
    assert store.info(live.id).offset == 6 * MIB and len(tus_uploads(fs)) == 1
    with pytest.raises(UploadNotFound):
        store.info(expired.id)


def test_stray_objects_without_a_record_go_after_an_hour(
    root: str, options: dict[str, Any]
) -> None:
    """A server killed between creating a multipart upload or tail and writing the record."""
    fs = server(root, options)
    engine = fs._engine
    stray = "f" * 32
    obstore.put(engine.store, f"{TUS_PREFIX}{stray}/0123456789abcdef.part", b"tail")
    engine.client.create_multipart_upload(
        Bucket=engine.bucket, Key=engine._full(f"{TUS_PREFIX}{stray}/data")
    )
    store = partials(fs)
    store.collect(time.time())
    assert len(tus_objects(fs)) == 1 and len(tus_uploads(fs)) == 1  # young: maybe alive
    store.collect(time.time() + 7200)
    assert tus_objects(fs) == [] and tus_uploads(fs) == []


# -- through the tus endpoint ------------------------------------------------------------


def web_config(options: dict[str, Any], root: str, **s3: Any) -> dict[str, Any]:
    """The app settings of a tus endpoint on the s3:// root (no size limit)."""
    own = {k: v for k, v in options.items() if k not in ("endpoint", "region")}
    own.pop("access_key_id")
    own.pop("secret_access_key")
    return {
        "HASHFS_ROOT_FOLDER": root,
        "HASHFS_MAX_SIZE": None,
        "HASHFS_S3_ENDPOINT": options["endpoint"],
        "HASHFS_S3_REGION": options["region"],
        "HASHFS_S3_ACCESS_KEY_ID": options["access_key_id"],
        "HASHFS_S3_SECRET_ACCESS_KEY": options["secret_access_key"],
        "HASHFS_S3_OPTIONS": {**own, **s3},
    }


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as portal:
        yield portal


@pytest.mark.parametrize("framework", ["quart", "flask"])
def test_upload_through_the_endpoint_resumed_by_a_second_app(
    root: str, options: dict[str, Any], portal: BlockingPortal, framework: str
) -> None:
    config = web_config(options, root)

    def app() -> Tus:
        if framework == "quart":
            return quart_tus(portal, root, **config)  # type: ignore[arg-type]
        return flask_tus(root, **config)  # type: ignore[arg-type]

    first, second = app(), app()  # two app servers on one bucket
    url = first.create(len(DATA), **{"Upload-Metadata": metadata(filename="big.bin")})
    assert first.patch(url, 0, DATA[:MIB]).status == 204
    chunk = DATA[MIB : 2 * MIB]
    digest = base64.b64encode(hashlib.sha1(chunk).digest()).decode()
    wrong = first.patch(url, MIB, chunk, **{"Upload-Checksum": "sha1 " + b64(b"x" * 20)})
    assert wrong.status == 460  # not appended
    assert first.offset(url) == MIB
    reply = first.patch(url, MIB, chunk, **{"Upload-Checksum": "sha1 " + digest})
    assert reply.status == 204 and reply.header("Upload-Offset") == str(2 * MIB)
    # The rest through the second server, which saw none of it.
    assert second.offset(url) == 2 * MIB
    assert second.patch(url, 2 * MIB, DATA[2 * MIB : 8 * MIB]).status == 204
    done = second.patch(url, 8 * MIB, DATA[8 * MIB :])
    assert done.status == 204
    assert done.header("HashFS-Id") == DATA_ID
    assert done.header("HashFS-Duplicate") == "0"
    assert (done.header("HashFS-Relpath") or "").endswith(".bin")
    [upload] = second.completed
    assert upload.address.id == DATA_ID and upload.metadata == {"filename": "big.bin"}
    fs = server(root, options)
    assert read_back(fs, DATA_ID) == DATA
    assert tus_uploads(fs) == []
    assert first.head(url).header("Upload-Offset") == str(len(DATA))
    # Termination through either server removes the multipart upload and every object.
    other = first.create(len(DATA))
    assert first.patch(other, 0, DATA[: 6 * MIB]).status == 204
    assert tus_uploads(fs) != []
    assert second.request("DELETE", other, V).status == 204
    assert tus_uploads(fs) == []
    assert first.head(other).status in (404, 410)
    assert not [k for k in tus_objects(fs) if other.rsplit("/", 1)[1] in k]


def test_patch_while_another_server_holds_the_upload_is_423(
    root: str, options: dict[str, Any]
) -> None:
    tus = flask_tus(root, **web_config(options, root))  # type: ignore[arg-type]
    url = tus.create(len(DATA))
    held = partials(server(root, options)).open_append(url.rsplit("/", 1)[1], 0)
    reply = tus.patch(url, 0, DATA[:MIB])
    assert reply.status in (409, 423)
    held.write(DATA[:100])
    held.commit()
    assert tus.patch(url, 0, DATA[:MIB]).status == 409  # the offset moved on
    assert tus.patch(url, 100, DATA[100:MIB]).status == 204


# -- a server killed mid-PATCH, the upload resumed through another -----------------------


class AppServer(Server):
    """The tus app (Quart on Hypercorn) in its own process, on the s3:// root."""

    def __init__(self, root: str, folder: Path, config: dict[str, Any]) -> None:
        folder.mkdir(exist_ok=True)
        super().__init__(
            "hypercorn",
            folder / "store",  # for the log and completion files beside it
            TUS_CONFIG=json.dumps(config),
            TUS_COMPLETED=str(folder / "completed.jsonl"),
        )
        self.s3_root = root

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(TESTS / "tus_server.py"),
            "quart",
            self.s3_root,
            str(self.port),
        ]


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_server_killed_mid_patch_and_resumed_through_a_second_one(
    root: str, options: dict[str, Any], tmp_path: Path
) -> None:
    config = web_config(options, root, tus_lock_seconds=2)
    source = tmp_path / "resumed.bin"
    digest = random_file(source, 14 * MIB, seed=7)
    data = source.read_bytes()
    fs = server(root, options)
    first = AppServer(root, tmp_path, config)
    second = AppServer(root, tmp_path, config)
    try:
        first.start()
        upload = uploader(first, source, chunk_size=2 * MIB)
        upload.upload(stop_at=6 * MIB)  # a part on the bucket, 1 MiB held as a tail
        upload_id = upload.url.rsplit("/", 1)[1]
        assert partials(fs).info(upload_id).offset == 6 * MIB
        # A PATCH that fills the next part, then hangs: the server dies holding the lock.
        gate = _Gate(data[6 * MIB : 11 * MIB], data[11 * MIB :])
        headers = {**STREAM, "Upload-Offset": str(6 * MIB), "Content-Length": str(8 * MIB)}
        client = httpx.Client(timeout=60)
        thread = threading.Thread(target=_send, args=(client, upload.url, gate, headers))
        thread.start()
        assert gate.sent.wait(30)
        deadline = time.monotonic() + 30
        while len(parts_sent(fs, upload_id)) < 2:  # part 2 sent, not yet in the record
            assert time.monotonic() < deadline
            time.sleep(0.02)
        record = partials(fs)._read(upload_id)[0]
        assert record["lock"] is not None and len(record["parts"]) == 1
        first.kill()
        gate.open.set()
        thread.join(60)
        client.close()
        # Another app process, which never saw a byte, resumes from the URL's id.
        second.start()
        resumed = uploader(
            second,
            source,
            chunk_size=2 * MIB,
            url=f"{second.url}/tus/{upload_id}",
            retries=20,
            retry_delay=1,  # the dead server's lock lapses after 2 s
        )
        assert resumed.offset == 6 * MIB  # the killed PATCH counted for nothing
        resumed.upload()
        done = final_headers(resumed)
        assert done["hashfs-id"] == digest and done["hashfs-duplicate"] == "0"
        assert read_back(fs, digest) == data
        [completed] = second.completed()
        assert completed["id"] == digest and completed["upload_id"] == upload_id
        assert tus_uploads(fs) == [] and tus_objects(fs) == [f"{TUS_PREFIX}{upload_id}/info"]
    finally:
        first.stop()
        second.stop()


def _send(client: httpx.Client, url: str, body: Any, headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        client.patch(url, content=body, headers=headers)


def parts_sent(fs: SyncHashFS, upload_id: str) -> list[int]:
    """Part numbers on the upload's multipart upload (whether its record names them or not)."""
    record = partials(fs)._read(upload_id)[0]
    engine = fs._engine
    listed = engine.client.list_parts(
        Bucket=engine.bucket,
        Key=engine._full(f"{TUS_PREFIX}{upload_id}/data"),
        UploadId=record["upload"],
    )
    return sorted({part["PartNumber"] for part in listed.get("Parts", [])})


def test_record_writes_whose_answers_were_lost_still_count(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conditional PUT that landed, its answer lost, is refused when retried: still ours."""
    fs = server(root, options)
    store = partials(fs)
    info = store.create(len(DATA))
    real = obstore.put

    def put_then_refuse(target: Any, key: str, data: Any, **kwargs: Any) -> Any:
        result = real(target, key, data, **kwargs)
        if key.endswith("/info") and isinstance(kwargs.get("mode"), dict):
            raise PreconditionError("412: the retry of a write that landed")
        return result

    monkeypatch.setattr(obstore, "put", put_then_refuse)
    append(fs, info.id, 0, DATA[: 7 * MIB])  # lock, a part, a tail, commit
    monkeypatch.setattr(obstore, "put", real)
    assert store.info(info.id).offset == 7 * MIB
    append(fs, info.id, 7 * MIB, DATA[7 * MIB :])
    assert store.finish(info.id).id == DATA_ID
    assert read_back(fs, DATA_ID) == DATA


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_server_killed_between_the_last_byte_and_storing_then_resumed_elsewhere(
    root: str, options: dict[str, Any], tmp_path: Path
) -> None:
    config = web_config(options, root, tus_lock_seconds=2)
    source = tmp_path / "last.bin"
    digest = random_file(source, 7 * MIB, seed=9)  # a part and a tail: stored by a copy
    fs = server(root, options)
    marker = tmp_path / "storing"
    first = AppServer(root, tmp_path, config)
    first.env["TUS_HANG_STORING"] = str(marker)
    second = AppServer(root, tmp_path, config)
    try:
        first.start()
        upload = uploader(first, source)
        upload.set_url(upload.create_url())
        upload_id = upload.url.rsplit("/", 1)[1]
        kill_while_storing(first, upload, marker)
        deadline = time.monotonic() + 60
        record = partials(fs)._read(upload_id)[0]
        assert record["address"] is None and partials(fs).info(upload_id).complete
        lock = record["lock"]
        while lock is not None and lock["until"] > time.time():  # the dead server's lease
            assert time.monotonic() < deadline  # lapses (2 s)
            time.sleep(0.1)
        second.start()
        resumed = uploader(second, source, url=f"{second.url}/tus/{upload_id}")
        assert resumed.offset == 7 * MIB  # every byte in: tuspy sends nothing more
        reply = httpx.head(f"{second.url}/tus/{upload_id}", headers=V)
        assert reply.headers["HashFS-Id"] == digest
        assert read_back(fs, digest) == source.read_bytes()
        assert [(c["id"], c["upload_id"]) for c in second.completed()] == [(digest, upload_id)]
    finally:
        first.stop()
        second.stop()
