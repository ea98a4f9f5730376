"""The PartialStore contract (``_tus_store``), on every backend that keeps partial uploads.

A backend whose engine has no partial uploads yet (``partial_store`` raises
``NotImplementedError``) is skipped; once it has, these tests run on it as
they are.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any

import pytest

from async_hashfs import SyncHashFS
from async_hashfs._tus_store import (
    ID_PATTERN,
    LengthConflict,
    OffsetMismatch,
    PartialStore,
    UploadLocked,
    UploadNotFound,
    UploadTooLarge,
    partial_store,
)

DATA = os.urandom(200_000)
DATA_ID = hashlib.sha256(DATA).hexdigest()


def partials_of(backend: dict[str, Any], **options: Any) -> PartialStore:
    """The partial uploads of a new store object on ``backend`` (a process that just started)."""
    try:
        return partial_store(SyncHashFS(**backend, **options)._engine)
    except NotImplementedError as exc:
        pytest.skip(str(exc))


def append(partials: PartialStore, upload_id: str, offset: int, data: bytes) -> int:
    with partials.open_append(upload_id, offset) as appending:
        appending.write(data)
        return appending.commit().offset


def test_create_and_info(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    expires = time.time() + 60
    created = partials.create(len(DATA), "filename YS50eHQ=", expires)
    assert ID_PATTERN.fullmatch(created.id)
    assert (created.offset, created.length, created.address) == (0, len(DATA), None)
    info = partials_of(backend).info(created.id)
    assert (info.offset, info.length, info.metadata) == (0, len(DATA), "filename YS50eHQ=")
    assert info.expires == pytest.approx(expires)
    assert not info.complete
    assert partials.create(None).length is None
    assert len({partials.create(1).id for _ in range(10)}) == 10


@pytest.mark.parametrize("upload_id", ["0" * 32, "../../etc", "A" * 32, "", "0" * 33])
def test_unknown_or_malformed_ids(backend: dict[str, Any], upload_id: str) -> None:
    partials = partials_of(backend)
    for call in (
        lambda: partials.info(upload_id),
        lambda: partials.open_append(upload_id, 0),
        lambda: partials.finish(upload_id),
        lambda: partials.terminate(upload_id),
    ):
        with pytest.raises(UploadNotFound):
            call()


def test_append_resume_and_finish_in_another_process(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA)).id
    assert append(partials, upload_id, 0, DATA[:70_000]) == 70_000
    restarted = partials_of(backend)  # no hash kept: it re-hashes what is stored
    assert restarted.info(upload_id).offset == 70_000
    assert append(restarted, upload_id, 70_000, DATA[70_000:]) == len(DATA)
    assert restarted.info(upload_id).complete
    address = restarted.finish(upload_id, ".txt")
    assert address.id == DATA_ID
    assert address.relpath.endswith(".txt")
    assert not address.is_duplicate
    store = SyncHashFS(**backend)
    with store.open(DATA_ID) as file:
        assert file.read() == DATA
    assert restarted.info(upload_id).address == address._replace(is_duplicate=True)
    assert restarted.finish(upload_id, ".txt").is_duplicate
    second = partials.create(len(DATA)).id
    append(partials, second, 0, DATA)
    assert partials.finish(second, ".txt").is_duplicate
    assert store.count() == 1


def test_one_append_at_a_time(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA)).id
    with partials.open_append(upload_id, 0) as appending:
        appending.write(DATA[:10])
        for other in (partials, partials_of(backend)):
            with pytest.raises(UploadLocked):
                other.open_append(upload_id, 0)
            with pytest.raises(UploadLocked):
                other.terminate(upload_id)
        appending.commit()
    assert append(partials, upload_id, 10, DATA[10:20]) == 20


def test_wrong_offset(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA)).id
    append(partials, upload_id, 0, DATA[:10])
    for offset in (0, 9, 11):
        with pytest.raises(OffsetMismatch) as caught:
            partials.open_append(upload_id, offset)
        assert (caught.value.expected, caught.value.given) == (10, offset)
    assert partials.info(upload_id).offset == 10


def test_limits(backend: dict[str, Any]) -> None:
    partials = partials_of(backend, max_size=1000)
    with pytest.raises(UploadTooLarge):
        partials.create(1001)
    upload_id = partials.create(100).id
    with partials.open_append(upload_id, 0) as appending:
        appending.write(DATA[:60])
        with pytest.raises(UploadTooLarge):
            appending.write(DATA[:41])
        appending.commit()
    assert partials.info(upload_id).offset == 60
    deferred = partials.create(None).id
    with pytest.raises(UploadTooLarge):
        partials.open_append(deferred, 0, length=1001)
    with partials.open_append(deferred, 0) as appending, pytest.raises(UploadTooLarge):
        appending.write(DATA[:1001])


def test_atomic_and_plain_aborts(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA)).id
    with partials.open_append(upload_id, 0, atomic=True) as appending:
        appending.write(DATA[:500])
        assert partials.info(upload_id).offset == 0  # not counted until committed
        assert appending.abort().offset == 0
    assert partials.info(upload_id).offset == 0
    with partials.open_append(upload_id, 0) as appending:
        appending.write(DATA[:500])
        assert appending.abort().offset == 500  # a plain append keeps what arrived
    assert append(partials, upload_id, 500, DATA[500:]) == len(DATA)
    assert partials.finish(upload_id).id == DATA_ID


def test_deferred_length(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(None).id
    append(partials, upload_id, 0, DATA[:100])
    with pytest.raises(LengthConflict):
        partials.open_append(upload_id, 100, length=99)
    with partials.open_append(upload_id, 100, length=len(DATA)) as appending:
        appending.write(DATA[100:200])
        appending.commit()
    assert partials.info(upload_id).length == len(DATA)
    with pytest.raises(LengthConflict):
        partials.open_append(upload_id, 200, length=len(DATA) + 1)
    with pytest.raises(LengthConflict):
        partials.finish(upload_id)
    append(partials, upload_id, 200, DATA[200:])
    assert partials.finish(upload_id).id == DATA_ID


def test_terminate(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA)).id
    append(partials, upload_id, 0, DATA[:100])
    partials.terminate(upload_id)
    with pytest.raises(UploadNotFound):
        partials.info(upload_id)
    with pytest.raises(UploadNotFound):
        partials.terminate(upload_id)


def test_collect_and_stats(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    now = time.time()
    old = partials.create(len(DATA), expires=now - 1).id
    append(partials, old, 0, DATA[:300])
    kept = partials.create(len(DATA), expires=now + 3600).id
    append(partials, kept, 0, DATA[:200])
    never = partials.create(len(DATA)).id
    stats = partials.stats()
    assert sorted(stats.uploads) == sorted([old, kept, never])
    assert stats.bytes == 500
    report = partials.collect(now)
    assert report.uploads == [old]
    assert report.bytes == 300
    assert sorted(partials.stats().uploads) == sorted([kept, never])
    with pytest.raises(UploadNotFound):
        partials.info(old)


def test_the_last_append_finishes_under_its_own_lock(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA)).id
    append(partials, upload_id, 0, DATA[:1000])
    with partials.open_append(upload_id, 1000) as appending:
        appending.write(DATA[1000:])
        info = appending.commit(extension=".txt")
    assert info.address is not None
    assert (info.address.id, info.address.is_duplicate, info.hook_pending) == (
        DATA_ID,
        False,
        True,
    )
    assert info.address.relpath.endswith(".txt")
    assert partials.info(upload_id).address == info.address._replace(is_duplicate=True)
    # Not complete yet: the extension is not used, nothing is stored.
    other = partials.create(len(DATA)).id
    with partials.open_append(other, 0) as appending:
        appending.write(DATA[:10])
        assert appending.commit(extension=".txt").address is None
    with partials.open_append(other, 10) as appending:
        appending.write(DATA[10:])
        bare = appending.commit(extension="").address
    assert bare is not None
    assert (bare.id, bare.relpath) == (DATA_ID, info.address.relpath[: -len(".txt")])


def test_collect_stores_a_complete_upload_left_unstored(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA), "filename YS50eHQ=", time.time() - 1).id
    assert append(partials, upload_id, 0, DATA) == len(DATA)  # its server died here
    report = partials_of(backend).collect(time.time())
    assert report.uploads == []
    info = partials.info(upload_id)
    assert info.address is not None and info.address.id == DATA_ID
    assert info.address.relpath.endswith(".txt")
    assert info.hook_pending
    with SyncHashFS(**backend).open(DATA_ID) as file:
        assert file.read() == DATA
    partials.hook_done(upload_id)
    assert not partials.info(upload_id).hook_pending
    assert partials.collect(time.time()).uploads == [upload_id]  # now its record expires


def test_finish_marks_the_hook_pending_until_hook_done(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA)).id
    append(partials, upload_id, 0, DATA)
    assert not partials.info(upload_id).hook_pending
    partials.finish(upload_id)
    assert partials_of(backend).info(upload_id).hook_pending
    partials_of(backend).hook_done(upload_id)
    assert not partials.info(upload_id).hook_pending
    partials.finish(upload_id)  # again: the address it got, nothing pending anew
    assert not partials.info(upload_id).hook_pending
    partials.hook_done("0" * 32)  # gone or never there: nothing happens


def test_refresh_makes_the_stored_file_new_or_says_it_is_gone(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA)).id
    append(partials, upload_id, 0, DATA)
    address = partials.finish(upload_id)
    fs = SyncHashFS(**backend)
    # Older than any grace period: a sweep keeping nothing would take it, unless refreshed.
    assert fs.sweep([], older_than=0, dry_run=True).removed == 1
    time.sleep(1.1)  # S3 dates are whole seconds
    assert partials_of(backend).refresh(address)
    assert fs.sweep([], older_than=1, dry_run=True).removed == 0
    fs.delete(address.id)
    assert not partials_of(backend).refresh(address)
    assert not fs.exists(address.id)  # refresh never stores anything


def test_a_length_declared_by_an_append_counts_only_with_it(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(None).id
    with partials.open_append(upload_id, 0, length=len(DATA), atomic=True) as appending:
        appending.write(DATA[:100])
        appending.abort()  # refused (a checksum mismatch): it declared nothing
    assert partials_of(backend).info(upload_id).length is None
    with partials.open_append(upload_id, 0, length=100) as appending:
        appending.write(DATA[:50])
        appending.abort()  # a plain append cut short keeps its bytes, and the length
    info = partials_of(backend).info(upload_id)
    assert (info.offset, info.length) == (50, 100)


def test_an_upload_receiving_bytes_is_active_and_not_collected(backend: dict[str, Any]) -> None:
    partials = partials_of(backend)
    upload_id = partials.create(len(DATA), expires=time.time() - 1).id
    assert not partials_of(backend).info(upload_id).active
    with partials.open_append(upload_id, 0) as appending:
        appending.write(DATA[:100])
        assert partials_of(backend).info(upload_id).active
        assert partials_of(backend).collect(time.time()).uploads == []
        expires = time.time() + 60
        appending.abort(expires)  # cut off: the bytes kept move the expiry
    info = partials_of(backend).info(upload_id)
    assert (info.offset, info.active) == (100, False)
    assert info.expires == pytest.approx(expires)


def test_hashes_kept_in_memory_are_bounded(
    backend: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    partials = partials_of(backend)
    monkeypatch.setattr(sys.modules[type(partials).__module__], "_HASHES_KEPT", 3)
    kept: dict[str, Any] = partials._hashes  # type: ignore[attr-defined]
    ids = [partials.create(len(DATA)).id for _ in range(6)]
    assert len(kept) == 0  # an upload nobody sent bytes to costs nothing
    for upload_id in ids:
        append(partials, upload_id, 0, DATA[:1000])
        assert len(kept) <= 3
    for upload_id in ids:  # the dropped hashes are made again from what is stored
        append(partials, upload_id, 1000, DATA[1000:])
        assert partials.finish(upload_id).id == DATA_ID
