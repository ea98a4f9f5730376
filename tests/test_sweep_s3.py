"""An S3 sweep racing puts (SeaweedFS): no put told "stored" loses its object.

The races are made, not waited for: the sweep is held after it listed a
page (its listing wrapped) or around its batch delete (``obstore.delete``
wrapped), a put after its last step (``_refresh_duplicate`` or ``_create``
wrapped), each until the test lets it go. Objects are old at once:
``older_than=0`` and a cutoff after every put before the sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio
import pytest

pytest.importorskip("obstore")
pytest.importorskip("botocore")

import obstore

from async_hashfs import AsyncHashFS, HashAddress, SyncHashFS

#: Longest any step of these tests waits for another before it fails.
WAIT = 20.0


class Gate:
    """A point one thread reaches and waits at until the test opens it."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.opened = threading.Event()

    def __call__(self) -> None:
        self.reached.set()
        assert self.opened.wait(WAIT), "the test never opened the gate"

    def wait(self) -> None:
        assert self.reached.wait(WAIT), "the gate was never reached"

    def open(self) -> None:
        self.opened.set()


class Running(threading.Thread):
    """``call()`` in a thread; :meth:`outcome` is its result (or raises its error)."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._call = call
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self._call()
        except BaseException as exc:
            self.error = exc

    def outcome(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


def new_fs(server: Any, **options: Any) -> SyncHashFS:
    return SyncHashFS(
        f"s3://hashfs-test/sweep-race-{os.getpid()}-{time.monotonic_ns()}",
        s3_options={**server.options(), **options},
    )


@pytest.fixture
def fs(s3_server: Any) -> SyncHashFS:
    return new_fs(s3_server)


def relist(
    monkeypatch: pytest.MonkeyPatch,
    fs: SyncHashFS | AsyncHashFS,
    repage: Callable[[Iterable[Any]], Iterator[Any]],
) -> None:
    """The sweep's listing of ``fs`` (whole store) comes as ``repage`` makes the server's pages."""
    real = obstore.list
    store = fs._engine.store  # type: ignore[attr-defined]

    def listing(target: Any, *args: Any, **kwargs: Any) -> Any:
        pages = real(target, *args, **kwargs)
        if target is not store or kwargs.get("prefix") is not None:
            return pages
        return repage(pages)

    monkeypatch.setattr(obstore, "list", listing)


def hold_listing(
    monkeypatch: pytest.MonkeyPatch,
    fs: SyncHashFS | AsyncHashFS,
    gate: Callable[[], None],
    page: int = 0,
) -> None:
    """The sweep's listing calls ``gate()`` after each page (of ``page`` objects, if given)."""

    def held(pages: Iterable[Any]) -> Iterator[Any]:
        for batch in pages:
            batch = list(batch)
            size = page or len(batch) or 1
            for start in range(0, len(batch), size):
                gate()
                yield batch[start : start + size]

    relist(monkeypatch, fs, held)


def hold_delete(
    monkeypatch: pytest.MonkeyPatch,
    before: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
) -> None:
    """The sweep's batch delete (``obstore.delete`` of a list) calls these around itself."""
    real = obstore.delete

    def delete(store: Any, paths: Any) -> Any:
        if isinstance(paths, list) and before is not None:
            before()
        result = real(store, paths)
        if isinstance(paths, list) and after is not None:
            after()
        return result

    monkeypatch.setattr(obstore, "delete", delete)


def hold_put(
    monkeypatch: pytest.MonkeyPatch, fs: SyncHashFS, name: str, gate: Callable[[], None]
) -> None:
    """The engine's ``name`` step of a put (``_refresh_duplicate``, ``_create``) calls
    ``gate()`` once, after it is done."""
    engine: Any = fs._engine
    real = getattr(engine, name)
    calls: list[object] = []

    def step(*args: Any) -> Any:
        result = real(*args)
        if not calls:
            calls.append(args)
            gate()
        return result

    monkeypatch.setattr(engine, name, step)


def held_sweep(monkeypatch: pytest.MonkeyPatch, fs: SyncHashFS) -> tuple[Gate, Running]:
    """A sweep of everything old (``older_than=0``), held once it listed the store."""
    listed = Gate()
    hold_listing(monkeypatch, fs, listed)
    sweep = Running(lambda: fs.sweep([], older_than=0))
    listed.wait()
    return listed, sweep


def step_before_the_batch(
    monkeypatch: pytest.MonkeyPatch, fs: SyncHashFS, step: str, put: Callable[[], Any]
) -> tuple[Any, Any]:
    """Run ``put`` with its ``step`` (see :func:`hold_put`) landing after a sweep listed the
    store and before that sweep's batch delete; the put goes on once the sweep ended.

    Returns what the put returned and the sweep's report.
    """
    done = Gate()
    hold_put(monkeypatch, fs, step, done)
    listed, sweep = held_sweep(monkeypatch, fs)
    putting = Running(put)
    done.wait()
    listed.open()
    report = sweep.outcome()
    done.open()
    return putting.outcome(), report


def stored(fs: SyncHashFS, address: HashAddress, data: bytes) -> bool:
    if not fs.exists(address.id):
        return False
    with fs.open(address.id) as file:
        return bool(file.read() == data)


def test_duplicate_put_while_a_page_is_decided_is_kept(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fs.put(b"put again while the sweep decides")
    listed = Gate()
    hold_listing(monkeypatch, fs, listed)
    sweep = Running(lambda: fs.sweep([], older_than=0))
    listed.wait()  # the sweep saw the object old and unkept
    again = fs.put(b"put again while the sweep decides")
    assert again.is_duplicate
    listed.open()
    report = sweep.outcome()
    assert (report.removed, report.young) == (0, 1)
    assert stored(fs, first, b"put again while the sweep decides")


def test_reupload_of_a_deleted_file_while_a_page_is_decided_is_kept(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fs.put(b"deleted, then uploaded again", "txt")
    listed, sweep = held_sweep(monkeypatch, fs)
    fs.delete(first.id)
    again = fs.put(b"deleted, then uploaded again", "txt")
    assert not again.is_duplicate
    listed.open()
    report = sweep.outcome()
    assert report.removed == 0
    assert stored(fs, first, b"deleted, then uploaded again")


def test_put_whose_key_is_being_deleted_stores_it_again(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = fs.put(b"in the batch")
    deleted, put_done, waiting = Gate(), Gate(), Gate()
    hold_delete(monkeypatch, after=deleted)
    hold_put(monkeypatch, fs, "_refresh_duplicate", put_done)
    monkeypatch.setattr(fs._engine, "_waiting", lambda key: waiting(), raising=False)
    listed, sweep = held_sweep(monkeypatch, fs)
    put = Running(lambda: fs.put(b"in the batch"))
    put_done.wait()  # the object is new again, after the sweep saw it old
    listed.open()
    deleted.wait()  # ... and the sweep deleted it anyway
    assert not fs.exists(first.id)
    put_done.open()
    # The put must not return while the batch is still being deleted.
    while not waiting.reached.is_set() and put.is_alive():
        waiting.reached.wait(0.05)
    assert put.is_alive(), "the put returned while its object was gone"
    waiting.open()
    deleted.open()
    again = put.outcome()
    assert not again.is_duplicate  # stored again from the put's own bytes
    assert stored(fs, first, b"in the batch")
    assert sweep.outcome().removed == 1


def test_put_after_a_batch_finds_its_object_gone_and_stores_it_again(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The put's last step lands before the batch, its look at the record after the sweep."""
    first = fs.put(b"refreshed, then swept")
    again, report = step_before_the_batch(
        monkeypatch, fs, "_refresh_duplicate", lambda: fs.put(b"refreshed, then swept")
    )
    assert report.removed == 1 and not again.is_duplicate
    assert stored(fs, first, b"refreshed, then swept")


def test_a_second_sweep_is_refused_while_one_runs(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import SweepRunning

    old = fs.put(b"old")
    deleting = Gate()
    hold_delete(monkeypatch, before=deleting)
    first = Running(lambda: fs.sweep([], older_than=0))
    deleting.wait()
    with pytest.raises(SweepRunning, match=r"another sweep of s3://.* is running"):
        fs.sweep([], older_than=0)
    assert fs.sweep([], older_than=0, dry_run=True).removed == 1  # a dry run is not refused
    deleting.open()
    assert first.outcome().removed == 1
    assert not fs.exists(old.id)
    assert fs.sweep([], older_than=0).removed == 0  # the record says done: a sweep may run


#: A sweep that dies (SIGKILL's effect: no cleanup) just before its batch delete.
DIES_BEFORE_DELETE = """
import json, os, sys
import obstore
from async_hashfs import SyncHashFS

real = obstore.delete

def die(store, paths):
    if isinstance(paths, list):
        os._exit(9)
    return real(store, paths)

obstore.delete = die
fs = SyncHashFS(sys.argv[1], s3_options=json.loads(sys.argv[2]))
fs.sweep([], older_than=0)
"""


def test_a_dead_sweeps_lease_lapses_puts_wait_at_most_that_and_the_next_sweep_takes_over(
    s3_server: Any,
) -> None:
    import json

    from async_hashfs import SweepRunning, _s3_sweep

    options = {**s3_server.options(), "sweep_lock_seconds": 6}
    fs = new_fs(s3_server, sweep_lock_seconds=6)
    first = fs.put(b"in a dead sweep's batch")
    died = subprocess.run(
        [sys.executable, "-c", DIES_BEFORE_DELETE, fs.root, json.dumps(options)],
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert died.returncode == 9
    engine: Any = fs._engine
    record, _ = _s3_sweep.read(engine)
    assert record is not None and record["deleting"] == [first.relpath]
    assert _s3_sweep.live(record)
    with pytest.raises(SweepRunning, match="another sweep"):
        fs.sweep([], older_than=0)
    # A put of a key in the dead batch waits for the lease, then finds its object there.
    again = fs.put(b"in a dead sweep's batch")
    assert again.is_duplicate and not _s3_sweep.live(_s3_sweep.read(engine)[0])
    assert stored(fs, first, b"in a dead sweep's batch")
    report = fs.sweep([], older_than=0)  # takes the dead record over
    assert report.removed == 1
    assert _s3_sweep.read(engine)[0]["state"] == "done"  # type: ignore[index]


def test_gc_leaves_the_sweep_record(fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch) -> None:
    from async_hashfs import _s3_sweep

    fs.put(b"anything")
    fs.sweep([], older_than=0)
    engine: Any = fs._engine
    assert _s3_sweep.read(engine)[0] is not None
    fs.gc(older_than=0)
    assert _s3_sweep.read(engine)[0] is not None
    assert fs.count() == 0  # the record is not a stored file


def test_puts_racing_a_sweep_of_everything_keep_their_objects(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounded: 4 threads x 24 puts (new and duplicates of old objects), a sweep that
    keeps nothing, its listing in pages of 8 that each wait for more puts."""
    olds = [f"old {n}".encode() for n in range(40)]
    for data in olds:
        fs.put(data)
    started = threading.Event()
    done = [0]
    lock = threading.Lock()
    pages = [0]

    def between_pages() -> None:
        started.set()
        pages[0] += 1
        deadline = time.monotonic() + WAIT
        while done[0] < min(pages[0] * 8, 4 * 24) and time.monotonic() < deadline:
            time.sleep(0.002)  # puts run meanwhile: not a synchronisation, only pacing

    hold_listing(monkeypatch, fs, between_pages, page=8)
    results: list[tuple[HashAddress, bytes]] = []

    def putter(worker: int) -> None:
        for n in range(24):
            data = olds[(worker * 7 + n) % len(olds)] if n % 2 else f"new {worker} {n}".encode()
            after_start = started.is_set()
            address = fs.put(data)
            with lock:
                done[0] += 1
                if after_start:
                    results.append((address, data))

    sweep = Running(lambda: fs.sweep([], older_than=0))
    started.wait(WAIT)
    workers = [Running(lambda w=w: putter(w)) for w in range(4)]
    for worker in workers:
        worker.outcome()
    report = sweep.outcome()
    assert report.removed + report.young >= 1
    assert len(results) >= 48
    lost = [data for address, data in results if not stored(fs, address, data)]
    assert lost == []


# -- resumable (tus) uploads ------------------------------------------------------


def tus_upload(fs: SyncHashFS, data: bytes) -> str:
    """A complete resumable upload of ``data`` (under one part), not yet finished."""
    store = fs._engine.partial_uploads()  # type: ignore[attr-defined]
    info = store.create(len(data))
    with store.open_append(info.id, 0) as patch:
        patch.write(data)
        patch.commit()
    return str(info.id)


def test_finishing_a_resumable_duplicate_while_its_object_is_swept_keeps_it(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"uploaded by tus while the sweep deletes it"
    first = fs.put(data)
    upload_id = tus_upload(fs, data)
    partials: Any = fs._engine.partial_uploads()  # type: ignore[attr-defined]
    address, report = step_before_the_batch(
        monkeypatch, fs, "_create", lambda: partials.finish(upload_id)
    )
    assert report.removed == 1 and address.id == first.id
    assert stored(fs, first, data)


def test_a_hook_rerun_refresh_of_a_swept_object_says_it_is_gone(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh copies the object before the batch deletes it: still gone (410)."""
    address = fs.put(b"refreshed for a hook run again")
    partials: Any = fs._engine.partial_uploads()  # type: ignore[attr-defined]
    there, report = step_before_the_batch(
        monkeypatch, fs, "_refresh_duplicate", lambda: partials.refresh(address)
    )
    assert report.removed == 1 and there is False
    assert not fs.exists(address.id)


def test_a_put_while_no_sweep_runs_reads_the_record_once_and_writes_nothing(
    s3_server: Any, fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import _s3_sweep

    fs.put(b"before any sweep")  # no record yet: the same answer before and after
    fs.sweep([], older_than=0)  # leaves the record, done
    other = SyncHashFS(fs.root, s3_options=s3_server.options())  # has never seen the record
    looks: list[str] = []
    for store in (fs, other):
        engine: Any = store._engine
        real_head = engine._head
        monkeypatch.setattr(
            engine, "_head", lambda key, real=real_head: looks.append(f"HEAD {key}") or real(key)
        )
    real_read = _s3_sweep.read
    monkeypatch.setattr(_s3_sweep, "read", lambda e: looks.append("GET record") or real_read(e))
    monkeypatch.setattr(_s3_sweep, "write", None)  # a put that writes the record fails

    fs.put(b"while no sweep runs")
    assert looks == ["GET record"]  # the ETag this process saw last, then one GET
    looks.clear()
    other.put(b"from a process that never saw the record")
    assert looks == [f"HEAD {_s3_sweep.RECORD_KEY}", "GET record"]


async def test_a_cancelled_async_sweep_leaves_the_record_done(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import _s3_sweep

    fs = AsyncHashFS(
        f"s3://hashfs-test/sweep-cancel-{os.getpid()}-{time.monotonic_ns()}",
        s3_options=s3_server.options(),
    )
    old = await fs.put(b"left by a cancelled sweep")
    listed = Gate()
    hold_listing(monkeypatch, fs, listed)

    async def cancel_once_listed(scope: anyio.CancelScope) -> None:
        await anyio.to_thread.run_sync(listed.wait)
        scope.cancel()
        listed.open()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(cancel_once_listed, scope)
            await fs.sweep([], older_than=0)
    assert scope.cancelled_caught
    record, _ = await anyio.to_thread.run_sync(_s3_sweep.read, fs._engine)
    assert record is not None and record["state"] == "done"  # no put waits for its lease
    assert await fs.exists(old.id)
