"""The S3 engine's own rules, on a real server (SeaweedFS) unless a rule needs none."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("obstore")
pytest.importorskip("botocore")

import obstore
from botocore.exceptions import ClientError
from obstore.exceptions import AlreadyExistsError

from async_hashfs import FileTooLarge, HashAddress, SyncHashFS
from async_hashfs import _s3 as s3
from async_hashfs._s3 import MAX_OBJECT, MAX_PART, MIB, part_size_for

GIB = 1 << 30
TIB = 1 << 40
BIG = os.urandom(20 * MIB)  # spooled: past the in-memory limit


# -- the part-size rule, up to S3's 5 TiB (no server) ------------------------


def check_plan(size: int, max_parts: int = 10_000, min_part: int = 8 * MIB) -> int:
    part = part_size_for(size, max_parts, min_part)
    count = max(1, -(-size // part))
    last = size - (count - 1) * part
    assert part % MIB == 0
    assert 5 * MIB <= min_part <= part <= MAX_PART
    assert count <= max_parts
    assert 0 <= last <= part  # equal parts, the last one not larger
    assert size == 0 or last > 0
    return part


@pytest.mark.parametrize(
    ("size", "part"),
    [
        (0, 8 * MIB),
        (1, 8 * MIB),
        (8 * MIB + 1, 8 * MIB),
        (80 * GIB, 9 * MIB),  # 80 GiB / 10,000 = 8.19 MiB: rounded up to 9
        (256 * MIB, 8 * MIB),
        (1 * TIB, 105 * MIB),
        (5 * TIB, 525 * MIB),  # S3's largest object in 9,987 parts
    ],
)
def test_part_size_table(size: int, part: int) -> None:
    assert check_plan(size) == part


@given(st.integers(min_value=0, max_value=MAX_OBJECT), st.integers(min_value=1, max_value=10_000))
def test_part_size_rule_holds_to_5_tib(size: int, max_parts: int) -> None:
    if size > max_parts * MAX_PART:
        with pytest.raises(FileTooLarge):
            part_size_for(size, max_parts)
        return
    check_plan(size, max_parts)


def test_past_5_tib_is_refused() -> None:
    with pytest.raises(FileTooLarge):
        part_size_for(MAX_OBJECT + 1)
    with pytest.raises(FileTooLarge):
        part_size_for(3 * MAX_PART + 1, max_parts=3)


# -- a store on the server -----------------------------------------------------


@pytest.fixture
def options(s3_server: Any) -> dict[str, Any]:
    return dict(s3_server.options())


@pytest.fixture
def root(request: pytest.FixtureRequest) -> str:
    name = "".join(c if c.isalnum() else "-" for c in request.node.name)
    return f"s3://hashfs-test/s3-{os.getpid()}-{name}-{time.monotonic_ns()}"


def store(root: str, options: dict[str, Any], **extra: Any) -> SyncHashFS:
    return SyncHashFS(root, s3_options={**options, **extra})


def uploads(fs: SyncHashFS) -> list[str]:
    """Keys of the incomplete multipart uploads under the store's prefix."""
    return [key for key, _, _ in fs._engine._incomplete_uploads()]


def temp_objects(fs: SyncHashFS) -> list[str]:
    return [m["path"] for m in fs._engine._objects(".hashfs-tmp/")]


class Sent:
    """Counts what the botocore client sends: calls by operation and body bytes."""

    def __init__(self, fs: SyncHashFS) -> None:
        self.calls: list[str] = []
        self.parts: list[int] = []
        self.bytes = 0
        self._lock = threading.Lock()
        fs._engine.client.meta.events.register("before-parameter-build.s3", self._call)

    def _call(self, model: Any, params: Any, **_: Any) -> None:
        with self._lock:
            self.calls.append(model.name)
            if model.name == "UploadPart":
                body = params["Body"]
                size = body.getbuffer().nbytes if hasattr(body, "getbuffer") else len(body)
                self.parts.append(size)
                self.bytes += size


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the bodies obstore puts (small objects)."""
    sizes: list[int] = []
    real = obstore.put

    def spy(store: Any, key: str, data: Any, **kwargs: Any) -> Any:
        sizes.append(len(data))
        return real(store, key, data, **kwargs)

    monkeypatch.setattr(obstore, "put", spy)
    return sizes


# -- 1. no silent loss ---------------------------------------------------------


def test_refused_small_put_with_nothing_there_is_retried(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 412 (or 409) while the key is empty is not a duplicate: look, then put again."""
    fs = store(root, options)
    real = obstore.put
    refusals = [AlreadyExistsError("412 Precondition Failed")]

    def refuse_once(*args: Any, **kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(obstore, "put", refuse_once)
    address = fs.put(b"small and refused once")
    assert not address.is_duplicate
    with fs.open(address.id) as file:
        assert file.read() == b"small and refused once"


def test_always_refused_put_raises_instead_of_claiming_a_duplicate(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = store(root, options)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AlreadyExistsError("412 Precondition Failed")

    monkeypatch.setattr(obstore, "put", refuse)
    with pytest.raises(OSError, match="key is empty"):
        fs.put(b"never stored")
    assert fs.count() == 0


@pytest.mark.parametrize("status", [412, 409])
def test_refused_complete_with_nothing_there_is_retried(
    root: str, options: dict[str, Any], status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = store(root, options)
    client = fs._engine.client
    real = client.complete_multipart_upload
    code = "PreconditionFailed" if status == 412 else "ConditionalRequestConflict"
    refusals = [
        ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
            "CompleteMultipartUpload",
        )
    ]

    def refuse_once(**kwargs: Any) -> Any:
        if refusals:
            raise refusals.pop()
        return real(**kwargs)

    monkeypatch.setattr(client, "complete_multipart_upload", refuse_once)
    address = fs.put(BIG)
    assert not address.is_duplicate
    assert fs.verify(address.id)
    assert uploads(fs) == []  # the refused upload was aborted


def test_copy_refused_by_a_condition_that_always_fails_raises(
    root: str, options: dict[str, Any]
) -> None:
    """The issue's reproduction: a source-side condition fails every copy with 412.

    Before, the put returned ``is_duplicate=True`` and the prefix stayed empty.
    """
    fs = store(
        root,
        options,
        commit="copy",
        copy_if_not_exists="header:x-amz-copy-source-if-none-match:*",
    )
    with pytest.raises(OSError, match="key is empty"):
        fs.put(os.urandom(12 * MIB))
    assert fs.count() == 0
    assert temp_objects(fs) == []
    assert uploads(fs) == []


# -- 2. spool, HEAD, one multipart upload to the content key -------------------


def test_duplicate_large_put_sends_zero_bytes(
    root: str, options: dict[str, Any], puts: list[int]
) -> None:
    fs = store(root, options)
    first = fs.put(BIG, "bin")
    sent = Sent(fs)
    again = fs.put(io.BytesIO(BIG), "bin")
    assert again == first._replace(is_duplicate=True)
    # One server-side copy onto itself makes the object new for sweep(); no byte is sent.
    assert sent.calls == ["CopyObject"] and sent.bytes == 0 and puts == []


def test_large_put_goes_straight_to_its_content_key(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = store(root, options)
    copies: list[Any] = []
    monkeypatch.setattr(obstore, "copy", lambda *a, **k: copies.append(a))
    sent = Sent(fs)
    address = fs.put(BIG)
    assert copies == []
    assert sent.calls.count("CreateMultipartUpload") == 1
    assert sent.calls.count("CompleteMultipartUpload") == 1
    assert sorted(sent.parts, reverse=True) == [8 * MIB, 8 * MIB, 4 * MIB]  # sent at once
    assert temp_objects(fs) == [] and uploads(fs) == []
    assert fs.verify(address.id)


def test_part_count_limit_lowered_end_to_end(root: str, options: dict[str, Any]) -> None:
    """With 3 parts allowed, 40 MiB + 1 byte goes in parts of 14 MiB (the rule, for real)."""
    fs = store(root, options, max_parts=3, part_size=5 * MIB)
    data = os.urandom(40 * MIB + 1)
    sent = Sent(fs)
    address = fs.put(data)
    assert sorted(sent.parts, reverse=True) == [14 * MIB, 14 * MIB, 12 * MIB + 1]
    assert address.id == hashlib.sha256(data).hexdigest()
    with fs.open(address.id) as file:
        assert file.read() == data


def test_past_the_part_limit_fails_before_sending(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "MAX_PART", 6 * MIB)
    fs = store(root, options, max_parts=2, part_size=5 * MIB)
    sent = Sent(fs)
    with pytest.raises(FileTooLarge):
        fs.put(iter([os.urandom(6 * MIB), os.urandom(6 * MIB), b"x"]))
    assert sent.calls == []
    assert fs.count() == 0


def race(fs: SyncHashFS, data: bytes, writers: int = 4) -> list[HashAddress]:
    results: list[HashAddress] = []
    barrier = threading.Barrier(writers)

    def put() -> None:
        barrier.wait()
        results.append(fs.put(data))

    threads = [threading.Thread(target=put) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == writers
    return results


def test_racing_large_puts_store_once_and_leave_no_upload(
    root: str, options: dict[str, Any]
) -> None:
    """The default commit: one object, complete, nothing left over.

    Exactly one ``is_duplicate=False`` needs the server's conditional
    CompleteMultipartUpload to be atomic, as AWS documents. SeaweedFS 4.48's
    is not: in 8-way races of completes with ``If-None-Match: *`` on one key,
    8 of 15 rounds had several winners (its conditional PutObject and
    CopyObject had one in every round). Here the bytes are complete and the
    same either way; ``commit="copy"`` below keeps exactly one on SeaweedFS.
    """
    fs = store(root, options)
    results = race(fs, BIG)
    assert {r.id for r in results} == {hashlib.sha256(BIG).hexdigest()}
    assert any(not r.is_duplicate for r in results)
    assert fs.count() == 1 and uploads(fs) == []
    assert fs.verify(results[0].id)


def test_racing_large_puts_in_copy_mode_have_exactly_one_winner(
    root: str, options: dict[str, Any]
) -> None:
    fs = store(root, options, commit="copy")
    results = race(fs, BIG, writers=8)
    assert sum(not r.is_duplicate for r in results) == 1
    assert fs.count() == 1 and uploads(fs) == []
    assert list(fs._engine._objects(".hashfs-tmp/")) == []


def test_copy_mode_and_ranged_copy_past_the_copy_limit(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = store(root, options, commit="copy")
    address = fs.put(BIG)
    assert not address.is_duplicate and fs.verify(address.id)
    assert fs.put(BIG).is_duplicate
    monkeypatch.setattr(s3, "COPY_LIMIT", 6 * MIB)
    sent = Sent(fs)
    other = os.urandom(13 * MIB)
    copied = fs.put(other)
    assert sent.calls.count("UploadPartCopy") == 3  # ranges of at most COPY_LIMIT
    with fs.open(copied.id) as file:
        assert file.read() == other
    assert temp_objects(fs) == [] and uploads(fs) == []


# -- 3. leftovers ----------------------------------------------------------------


def test_failed_upload_is_aborted_never_completed(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = store(root, options)
    client = fs._engine.client
    real = client.upload_part
    sent = Sent(fs)

    def fail_second(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 2:
            raise ConnectionResetError("gone")
        return real(**kwargs)

    monkeypatch.setattr(client, "upload_part", fail_second)
    with pytest.raises(ConnectionResetError):
        fs.put(BIG)
    assert "CompleteMultipartUpload" not in sent.calls
    assert "AbortMultipartUpload" in sent.calls
    assert fs.count() == 0 and uploads(fs) == []


def test_gc_aborts_incomplete_uploads_and_honours_older_than(
    root: str, options: dict[str, Any]
) -> None:
    """A writer killed mid-upload leaves an upload that only gc can see."""
    fs = store(root, options)
    engine = fs._engine
    key = engine._full(fs.layout.relpath("ab" * 32))
    upload = engine.client.create_multipart_upload(Bucket=engine.bucket, Key=key)["UploadId"]
    engine.client.upload_part(
        Bucket=engine.bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * (5 * MIB)
    )
    obstore.put(engine.store, ".hashfs-tmp/left.tmp", b"left")
    assert uploads(fs) == [key]
    kept = fs.gc()  # the default grace: an hour
    assert kept.uploads == [] and kept.temp_files == []
    report = fs.gc(older_than=0)  # used as given
    assert report.uploads == [fs.layout.abspath(fs.layout.relpath("ab" * 32))]
    assert report.temp_files == [fs.root + "/.hashfs-tmp/left.tmp"]
    assert uploads(fs) == [] and temp_objects(fs) == []
    with pytest.raises(ValueError, match="older_than"):
        fs.gc(older_than=-1)


# -- 5. reads ------------------------------------------------------------------


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The obstore reads made, by name."""
    made: list[str] = []
    for name in ("head", "get", "get_range"):
        real = getattr(obstore, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            made.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(obstore, name, spy)
    return made


def test_open_makes_one_head_and_streams_one_get(
    root: str, options: dict[str, Any], requests: list[str]
) -> None:
    fs = store(root, options)
    address = fs.put(BIG)
    requests.clear()
    with fs.open(address.id) as file:
        assert file.read() == BIG
    assert requests == ["head", "get"]
    requests.clear()
    with fs.open(address.relpath) as file:
        file.seek(5 * MIB)
        assert file.read(10) == BIG[5 * MIB : 5 * MIB + 10]
        file.seek(1)
        assert file.read(3) == BIG[1:4]
    assert requests == ["head", "get", "get"]


def test_serving_streams_one_get_per_response(
    root: str, options: dict[str, Any], requests: list[str]
) -> None:
    fs = store(root, options)
    address = fs.put(BIG, "bin")
    requests.clear()
    blob = fs._engine.open_blob(address.relpath)
    assert blob is not None
    data = bytearray()
    while chunk := blob.pread(MIB, len(data)):
        data += chunk
    blob.close()
    assert data == BIG
    assert requests == ["head", "get"]


def test_verify_on_read_hashes_an_object_once(
    root: str, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = store(root, options)
    address = fs.put(BIG, "bin")
    hashed: list[str] = []
    real = fs._engine.hash_file
    monkeypatch.setattr(fs._engine, "hash_file", lambda p, *a: hashed.append(p) or real(p, *a))
    for _ in range(3):
        blob = fs._engine.open_blob(address.relpath, verify=True)
        assert blob is not None and blob.pread(10, 100) == BIG[100:110]
        blob.close()
    assert len(hashed) == 1
