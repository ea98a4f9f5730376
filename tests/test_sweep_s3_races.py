"""Races of the S3 sweep's record protocol (issue 16, section 1) that a hostile
review found, each a regression test now: out-of-order listings, a sweep that
dies after its batch delete, a dead sweep's lease on another host's clock,
objects past 5 GiB, the CLI's exit codes and errors, puts of one process
contending for the record. Same tools as ``test_sweep_s3.py``: steps are
held by gates, never by sleeps; SeaweedFS on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

pytest.importorskip("obstore")
pytest.importorskip("botocore")

import obstore

from async_hashfs import SyncHashFS

from .test_sweep_s3 import WAIT, Gate, Running, hold_listing, hold_put, new_fs, relist, stored


@pytest.fixture
def fs(s3_server: Any) -> SyncHashFS:
    return new_fs(s3_server)


def pages_of_one(
    monkeypatch: pytest.MonkeyPatch, fs: SyncHashFS, before: Callable[[str], None]
) -> None:
    """The sweep's listing yields one key a page, calling ``before(key)`` first.

    The listing itself is the server's: only the page size changes (SeaweedFS
    answers a page of 1000 in the same order).
    """

    def one_by_one(pages: Iterable[Any]) -> Iterator[Any]:
        for batch in pages:
            for meta in list(batch):
                before(str(meta["path"]))
                yield [meta]

    relist(monkeypatch, fs, one_by_one)


def test_a_key_listed_after_a_bytewise_larger_one_is_not_lost(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"stored with an extension, next to a foreign folder of its own name"
    first = fs.put(data, "jpg")
    engine: Any = fs._engine
    bare = first.relpath[: -len(".jpg")]
    # Anything under '<shard>/<rest>/' (an app's thumbnail, another tool's file):
    # not a content address, so the sweep skips it, yet its listing position counts.
    obstore.put(engine.store, f"{bare}/thumbnail", b"not ours")
    listed = [str(m["path"]) for b in obstore.list(engine.store) for m in b]
    assert listed.index(f"{bare}/thumbnail") < listed.index(first.relpath)
    assert f"{bare}/thumbnail" > first.relpath  # ... though it is larger, byte for byte

    fetched = Gate()

    def before(key: str) -> None:
        if key == first.relpath:
            fetched()  # the sweep has this page, not yet decided

    pages_of_one(monkeypatch, fs, before)
    sweep = Running(lambda: fs.sweep([], older_than=0))
    fetched.wait()
    again = fs.put(data, "jpg")  # the app uploads it again, then records it
    assert again.is_duplicate
    fetched.open()
    report = sweep.outcome()
    assert stored(fs, first, data), f"told stored, then swept: {report}"
    assert report.removed == 0 and report.skipped == 2  # the thumbnail, and the late key


#: A sweep that dies (SIGKILL's effect) just after its batch delete, before it clears
#: ``deleting``; it waits for ``argv[3]`` to exist before deleting. Its lease renewer
#: is off only to pin the interleaving: a death within a third of the lease of its
#: last write is the same.
DIES_AFTER_DELETE = """
import json, os, sys, time
import obstore
from async_hashfs import SyncHashFS, _s3_sweep

real = obstore.delete

def die_after(store, paths):
    if not isinstance(paths, list):
        return real(store, paths)
    deadline = time.monotonic() + 20
    while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
        time.sleep(0.01)
    real(store, paths)
    os._exit(9)

obstore.delete = die_after
_s3_sweep.SweepLease._renew = lambda self: None
fs = SyncHashFS(sys.argv[1], s3_options=json.loads(sys.argv[2]))
fs.sweep([], older_than=0)
"""


def test_a_put_whose_key_a_dead_sweep_deleted_after_its_last_step_is_not_lost(
    s3_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import _s3_sweep

    lease = 5  # the least allowed
    options = {**s3_server.options(), "sweep_lock_seconds": lease}
    fs = new_fs(s3_server, sweep_lock_seconds=lease)
    data = b"refreshed by a put, then deleted by a sweep that died"
    first = fs.put(data)
    flag = tmp_path / "delete-now"
    sweeper = subprocess.Popen(
        [sys.executable, "-c", DIES_AFTER_DELETE, fs.root, json.dumps(options), str(flag)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        engine: Any = fs._engine
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # the sweep named its batch
            record, _ = _s3_sweep.read(engine)
            if record and record.get("deleting") == [first.relpath]:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the sweep never named its batch")
        putter = SyncHashFS(fs.root, s3_options=options)  # another process's view
        refreshed = Gate()
        hold_put(monkeypatch, putter, "_refresh_duplicate", refreshed)
        put = Running(lambda: putter.put(data))
        refreshed.wait()  # the put's last step is done: the object is new again
        flag.touch()
        assert sweeper.wait(WAIT) == 9  # ... and the batch deleted it anyway
        assert not fs.exists(first.id)
        record, _ = _s3_sweep.read(engine)
        assert record is not None and record["deleting"] == [first.relpath]
        while _s3_sweep.live(record) and time.monotonic() < deadline + WAIT:
            time.sleep(0.05)  # the put is slow to look at the record: the lease lapses
        refreshed.open()
        again = put.outcome()
    finally:
        if sweeper.poll() is None:
            sweeper.kill()
            sweeper.wait()
    assert stored(fs, first, data), f"the put was told {again} yet its object is gone"


def test_a_duplicate_put_of_an_object_past_one_copy_is_new_for_the_next_sweep(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import _s3

    # Stands for 5 GiB: the branch taken is the one an object past one CopyObject takes
    # (ranges of 5 MiB, the least part S3 takes: three here).
    monkeypatch.setattr(_s3, "COPY_LIMIT", _s3.MIN_PART)
    data = os.urandom(2 * _s3.MIN_PART + 4096)
    first = fs.put(data)
    engine: Any = fs._engine
    grace = 1.0
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:  # the object is older than the grace period
        modified = engine._head(first.relpath)["last_modified"].timestamp()
        if time.time() - modified > 2 * grace:
            break
        time.sleep(0.1)
    again = fs.put(data)  # uploaded again: the app records its id next
    assert again.is_duplicate
    after = engine._head(first.relpath)
    assert after["last_modified"].timestamp() > modified and after["size"] == len(data)
    report = fs.sweep([], older_than=grace)  # a sweep that starts before the app's insert
    assert stored(fs, first, data), f"a put told stored a moment ago, swept: {report}"


class _WaitTooLong(Exception):
    pass


def test_a_put_waits_for_a_dead_sweeps_batch_that_sweeps_lease_on_its_own_clock(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import SweepRunning, _s3_sweep

    from .test_sweep_s3 import DIES_BEFORE_DELETE

    data = b"in the batch of a sweep run from a host whose clock runs an hour ahead"
    fs = new_fs(s3_server)  # the app's own lease does not count: the sweep's does
    first = fs.put(data)
    lease = 60
    swept_with = {**s3_server.options(), "sweep_lock_seconds": lease}
    died = subprocess.run(
        [sys.executable, "-c", DIES_BEFORE_DELETE, fs.root, json.dumps(swept_with)],
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert died.returncode == 9
    engine: Any = fs._engine
    record, etag = _s3_sweep.read(engine)
    assert record is not None and record["deleting"] == [first.relpath]
    assert record["lease"] == lease
    # As written by a host whose clock runs an hour ahead of the app's.
    assert _s3_sweep.write(engine, dict(record, until=record["until"] + 3600), etag)
    with pytest.raises(SweepRunning, match=r"its lease lapses \(60 s"):  # the sweep's, not ours
        fs.sweep([], older_than=0)
    waited = [0.0]

    class Clock:
        """time for _s3_sweep: sleeps are counted instead of slept, and move its clock."""

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + waited[0]

        @staticmethod
        def sleep(seconds: float) -> None:
            waited[0] += seconds
            if waited[0] > 2 * lease:
                raise _WaitTooLong(f"the put waited {waited[0]:.1f} s and would wait on")

    monkeypatch.setattr(_s3_sweep, "time", Clock())
    started = Clock.monotonic()
    again = fs.put(data)
    assert again.id == first.id and stored(fs, first, data)
    # The dead sweep's lease, not less (it might have been alive), on the put's clock.
    assert Clock.monotonic() - started >= lease


def test_help_lists_the_exit_code_of_a_sweep_refused() -> None:
    from click.testing import CliRunner

    from async_hashfs._cli import cli

    shown = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert shown.exit_code == 0
    codes = shown.output.split("Exit codes:", 1)[1]
    assert "5 " in codes, codes


def test_a_sweep_whose_record_is_removed_under_it_says_so(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import SweepRunning, _s3_sweep

    from .test_sweep_s3 import hold_delete

    fs.put(b"old")
    deleting = Gate()
    hold_delete(monkeypatch, before=deleting)
    sweep = Running(lambda: fs.sweep([], older_than=0))
    deleting.wait()
    engine: Any = fs._engine
    obstore.delete(engine.store, _s3_sweep.RECORD_KEY)  # an operator's cleanup, a lifecycle rule
    deleting.open()
    with pytest.raises(SweepRunning) as raised:
        sweep.outcome()
    message = str(raised.value)
    assert "sweep.json" in message and "stalled" not in message, message
    assert "removed or changed by someone else" in message


def test_objects_a_failed_sweep_deleted_are_reported(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_hashfs import _s3_sweep

    from .test_sweep_s3 import hold_delete

    old = fs.put(b"deleted by a sweep that then failed")
    deleted = Gate()
    deleted.open()  # never held: only marks that the batch delete was sent
    hold_delete(monkeypatch, after=deleted)
    real_write = _s3_sweep.write

    def write(engine: Any, record: Any, etag: Any) -> Any:
        if deleted.reached.is_set():
            raise ConnectionResetError("the S3 server went away (after obstore's retries)")
        return real_write(engine, record, etag)

    monkeypatch.setattr(_s3_sweep, "write", write)
    reported: list[str] = []
    with pytest.raises(ConnectionResetError):
        fs.sweep([], older_than=0, on_remove=lambda address: reported.append(address.relpath))
    assert not fs.exists(old.id)  # the batch was deleted ...
    assert reported == [old.relpath]  # ... so the app is told which objects went


def test_puts_of_one_process_never_lose_a_record_write_to_each_other(
    fs: SyncHashFS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from async_hashfs import _s3_sweep

    fs.put(b"listed on the first page")
    monkeypatch.setattr(_s3_sweep.SweepLease, "_renew", lambda self: None)  # no writes but puts'
    listed = Gate()
    hold_listing(monkeypatch, fs, listed)
    refused: list[str] = []
    real_write = _s3_sweep.write

    def write(engine: Any, record: Any, etag: Any) -> Any:
        written = real_write(engine, record, etag)
        if written is None:
            refused.append(etag)
        return written

    monkeypatch.setattr(_s3_sweep, "write", write)
    sweep = Running(lambda: fs.sweep([], older_than=0))
    listed.wait()  # the sweep holds its first page: every new key goes in "touched"
    bodies = [f"put {n} by one of eight threads".encode() for n in range(48)]
    with ThreadPoolExecutor(8) as pool:
        addresses = list(pool.map(fs.put, bodies))
    record, _ = _s3_sweep.read(fs._engine)  # type: ignore[attr-defined]
    assert record is not None
    assert sorted(record["touched"]) == sorted(a.relpath for a in addresses)
    assert refused == []  # ... each written once, none refused (no retry storm)
    listed.open()
    sweep.outcome()
    assert all(stored(fs, a, b) for a, b in zip(addresses, bodies, strict=True))


@pytest.mark.parametrize("seconds", [0, 2, 4.9, 601, float("nan")])
def test_a_lease_out_of_range_is_refused_naming_the_option(s3_server: Any, seconds: float) -> None:
    with pytest.raises(ValueError, match=r"sweep_lock_seconds must be within 5\.\.600"):
        new_fs(s3_server, sweep_lock_seconds=seconds)
