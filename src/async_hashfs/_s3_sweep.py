"""How a sweep and the puts it races agree on an S3 bucket: one record object.

S3 has no rename and no conditional delete, so a sweep cannot look at an
object again just before it deletes it, as the local sweep does. The sweep
and the puts instead share ``.hashfs-tmp/sweep.json`` under the root, a small
JSON record changed only by conditional PUTs (``If-None-Match: *`` to create,
``If-Match`` its ETag for every change; SeaweedFS, MinIO, AWS and R2 honour
both atomically):

- ``owner``, ``until``, ``state``: the running sweep's token and lease (renewed
  every third of it by a thread of the sweep, lapsed when its process died);
  a sweep that ends leaves the record ``done``, never deletes it;
- ``lease``, ``beat``: the sweep's lease in seconds (its own
  ``sweep_lock_seconds``), and a token every write of the sweep changes
  (puts keep it). A put takes a ``running`` sweep for dead once its
  ``beat`` has not changed for ``lease`` seconds of the put's own monotonic
  clock (``lease`` capped at :data:`LEASE_MOST`, the most
  ``sweep_lock_seconds`` allows): it never compares ``until``, written by
  another host's clock, with its own;
- ``listed_upto``: the largest key of the listing pages already decided.
  S3 lists keys in byte order, but not every server does (SeaweedFS lists
  folder by folder: ``ab/cd/rest/x`` before ``ab/cd/rest.jpg``), so a sweep
  never deletes a key not past the ``listed_upto`` of the pages before its
  own (it counts it skipped; the next sweep looks at it again): for a put,
  ``key <= listed_upto`` means "its page is decided", soundly;
- ``deleting``: the keys of the one batch being deleted now;
- ``touched``: keys past ``listed_upto`` that puts stored meanwhile: the
  sweep leaves them out of the batch of their page.

The sweep, for each listed page with objects to delete, writes ``deleting``
(minus ``touched``) and ``listed_upto`` in one conditional PUT (refused:
a put changed the record; read it again and decide again), sends one
DeleteObjects while its lease holds, then clears ``deleting``.

A put that ends with an object at a content key (a new object, a duplicate
made new, a resumable upload's commit, a completion hook run again) takes
an ETag the record had before its last step (the last this process saw, or
a HEAD) and reads the record after it (a GET). The same ETag and no live
sweep: no sweep ran in between, and the put is done (one small request).
Otherwise (another ETag, a live sweep, or the key in ``deleting``: a sweep
that died just after its DeleteObjects leaves that), :func:`guard` makes
sure the running sweep cannot take the key (waits while the key is in
``deleting``, at most the sweep's lease; adds it to ``touched`` when the
sweep has not decided its page yet), then looks at the key: gone (a batch
took it, or a sweep that ended meanwhile), it stores its bytes again. Only
then is the put told "stored".

Size: ``touched`` holds the keys of the puts that landed, during a sweep,
past ``listed_upto`` (about 71 bytes each with sha256), and loses them as the
listing passes them (each page's decision keeps only keys past the new
``listed_upto``). Early in a sweep of a large bucket nearly every new key is
past it: a sweep of a million objects that takes ten minutes while puts
land at 10 a second ends with a record of about 430 KB, which each such put
reads and writes once. The puts of one process write it one at a time,
each write naming every key queued meanwhile, so none of their conditional
writes loses to another's, and many puts share one write.

Limits: the clocks of the hosts that sweep must agree to well within the
lease (a sweep takes over a record whose ``until`` passed); a sweep
process that freezes for longer than its lease between its last lease check
and its DeleteObjects request may still delete (S3 cannot fence it).
"""

from __future__ import annotations

import contextlib
import errno
import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError

from ._exceptions import SweepRunning
from ._layout import TEMP_DIRNAME

if TYPE_CHECKING:
    from ._s3 import S3Engine

__all__ = [
    "LEASE_LEAST",
    "LEASE_MOST",
    "RECORD_KEY",
    "SWEEP_LEASE",
    "SweepLease",
    "SweepWatch",
    "guard",
    "mark",
]

#: The record's key under the root (in the temp prefix: never listed as a stored file).
RECORD_KEY = f"{TEMP_DIRNAME}/sweep.json"
#: Seconds a sweep's lease lasts unless renewed (the ``sweep_lock_seconds`` option).
SWEEP_LEASE = 30.0
#: The least and the most ``sweep_lock_seconds`` allows. The least keeps the
#: renewals (every third of the lease) from contending with puts on the record;
#: the most bounds how long a put waits for a batch of a sweep whose process died.
LEASE_LEAST = 5.0
LEASE_MOST = 600.0
#: Times a put stores its bytes again before it gives up (each time a new sweep took them).
_RESTORES = 5
#: First and longest wait of a put whose key is being deleted, in seconds.
_WAIT_FIRST = 0.02
_WAIT_MOST = 0.5

#: What :func:`guard` found: the object stayed, was stored again, or is gone.
Outcome = Literal["there", "restored", "gone"]
Record = dict[str, Any]


class SweepWatch:
    """What the puts of one engine keep of the record between them (one per ``S3Engine``).

    Fields, each with what guards it:

    - ``seen``: the record's ETag this process read or wrote last
      (``(None,)``: there was no record), ``None`` before the first look; what
      :func:`mark` returns. No lock: one assignment of a tuple, and any ETag
      the record had at some moment serves :func:`mark` (a late write of an
      older one makes a put read the record again, never skip a look);
    - ``beat``: the beat of a running sweep this process saw first, and when
      (its monotonic clock), for :func:`_left`. No lock: a race at worst
      starts the count again, later (never earlier);
    - ``touching``: held by a put while it adds keys to the record's
      ``touched`` (:func:`_touch`), so this process's writes of it go one at
      a time; it guards ``touched_last``: the record's ETag the last of them
      wrote or read, the keys it wrote, and its round;
    - ``queue``: keys of puts waiting to be named in ``touched`` (one write
      names them all), and ``round``: how many writes took their keys from
      it; both guarded by ``queue_lock``, taken alone or inside ``touching``
      (never the other way round).
    """

    __slots__ = ("beat", "queue", "queue_lock", "round", "seen", "touched_last", "touching")

    def __init__(self) -> None:
        self.seen: tuple[str | None] | None = None
        self.beat: tuple[str, float] | None = None
        self.touching = threading.Lock()
        self.touched_last: tuple[str | None, frozenset[str], int] = (None, frozenset(), 0)
        self.queue: set[str] = set()
        self.round = 0
        self.queue_lock = threading.Lock()


def read(engine: S3Engine) -> tuple[Record | None, str | None]:
    """The record and its ETag, or ``(None, None)`` when no sweep ever ran here.

    A record that is not JSON (cut short, written by hand) reads as ``{}``:
    no live sweep, taken over by the next one.
    """
    try:
        result = obstore.get(engine.store, RECORD_KEY)
        data = bytes(result.bytes())
    except (FileNotFoundError, NotFoundError):
        engine._sweep_watch.seen = (None,)
        return None, None
    etag = str(result.meta["e_tag"])
    engine._sweep_watch.seen = (etag,)
    try:
        record = json.loads(data)
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    return record, etag


def mark(engine: S3Engine) -> str | None:
    """An ETag the record had before now, for a put to compare after its last step.

    The last one this process saw (read or written), else one HEAD; ``None``:
    no record. Any ETag the record had at some moment before the put's last
    step does: ETags never repeat (each write has its own ``rev``), so the
    same ETag after that step means no write came between. While no sweep
    runs the record does not change, and a put costs one GET (:func:`guard`).
    """
    seen = engine._sweep_watch.seen
    if seen is not None:
        return seen[0]
    meta = engine._head(RECORD_KEY)
    etag = None if meta is None else str(meta.get("e_tag"))
    engine._sweep_watch.seen = (etag,)
    return etag


def write(engine: S3Engine, record: Record, etag: str | None) -> str | None:
    """Put ``record`` if the record is still at ``etag`` (``None``: if there is none).

    Returns the new ETag, or ``None`` when refused (the record changed). Each
    write has its own ``rev``, so that a write that landed but whose answer
    was lost (the client retried and was refused) is known for ours.

    Raises:
        FileNotFoundError: the bucket does not exist (a create refused with
            "not found" is no refusal: the error is the server's).
    """
    rev = secrets.token_hex(8)
    data = json.dumps(dict(record, rev=rev), separators=(",", ":")).encode()
    mode: Any = "create" if etag is None else {"e_tag": etag}
    try:
        result = obstore.put(engine.store, RECORD_KEY, data, mode=mode)
    except (PreconditionError, AlreadyExistsError, FileNotFoundError, NotFoundError) as exc:
        if isinstance(exc, (FileNotFoundError, NotFoundError)) and (
            etag is None or _no_bucket(exc)
        ):
            raise
        found, found_etag = read(engine)
        if found is not None and found.get("rev") == rev:
            return found_etag
        return None
    etag = str(result["e_tag"])
    engine._sweep_watch.seen = (etag,)
    return etag


def _no_bucket(exc: BaseException) -> bool:
    from ._s3 import describe_error

    return describe_error(exc) == "the S3 bucket does not exist"


def live(record: Record | None, now: float | None = None) -> bool:
    """Whether ``record`` names a running sweep whose lease has not lapsed."""
    if not record or record.get("state") != "running":
        return False
    try:
        until = float(record["until"])
    except (KeyError, TypeError, ValueError):
        return False
    return until > (time.time() if now is None else now)


def lease_of(record: Record) -> float:
    """The lease the sweep of ``record`` holds, in seconds, within what the option allows."""
    try:
        lease = float(record["lease"])
    except (KeyError, TypeError, ValueError):
        return SWEEP_LEASE
    return min(max(lease, LEASE_LEAST), LEASE_MOST) if lease == lease else LEASE_MOST


def _left(engine: S3Engine, record: Record | None) -> float:
    """Seconds before this process takes the sweep of ``record`` for dead; 0: it is.

    A ``running`` record whose ``beat`` this process has seen unchanged for
    the sweep's lease, on its own monotonic clock, names a dead sweep (a live
    one writes every third of its lease). The first sight of a beat starts
    the count; beats never repeat.
    """
    if not record or record.get("state") != "running":
        return 0.0
    beat = f"{record.get('owner')}/{record.get('beat')}/{record.get('until')}"
    now = time.monotonic()
    watch = engine._sweep_watch
    seen = watch.beat
    if seen is None or seen[0] != beat:
        watch.beat = seen = (beat, now)
    return max(0.0, seen[1] + lease_of(record) - now)


def _when(seconds: object) -> str:
    try:
        moment = datetime.fromtimestamp(float(seconds), timezone.utc)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return "?"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class SweepLease:
    """The record, held by one running sweep: start, change, renew, end.

    Every change goes through :meth:`update`, which renews the lease with the
    same write; a thread renews it every third of the lease meanwhile.
    """

    def __init__(self, engine: S3Engine, lease: float) -> None:
        self.engine = engine
        self.lease = lease
        self.token = secrets.token_hex(8)
        self.record: Record = {}
        self.etag: str | None = None
        self.until = 0.0
        #: Why this sweep lost the record (the error it raises), once it did.
        self.lost: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _where(self) -> str:
        return self.engine.layout.root

    def start(self) -> None:
        """Take the record for this sweep.

        Raises:
            SweepRunning: another sweep holds it (its lease not lapsed).
        """
        for _ in range(8):
            record, etag = read(self.engine)
            if live(record):
                assert record is not None
                raise SweepRunning(
                    f"another sweep of {self._where()} is running (started "
                    f"{_when(record.get('started'))}, its lease runs to "
                    f"{_when(record.get('until'))}): wait for it to end; if its process died, "
                    f"sweep again once its lease lapses ({lease_of(record):g} s, the "
                    '"sweep_lock_seconds" option of the store that sweeps)'
                )
            now = time.time()
            new = {
                "owner": self.token,
                "state": "running",
                "started": now,
                "until": now + self.lease,
                "lease": self.lease,
                "beat": secrets.token_hex(6),
                "listed_upto": "",
                "deleting": [],
                "touched": [],
            }
            written = write(self.engine, new, etag)
            if written is not None:
                self.record, self.etag, self.until = new, written, now + self.lease
                self._renewer = threading.Thread(
                    target=self._renew, name="hashfs-s3-sweep-lease", daemon=True
                )
                self._renewer.start()
                return
        raise SweepRunning(f"the sweep record of {self._where()} kept changing: sweep again")

    def _lost(self, changed: bool = False) -> SweepRunning:
        """The error of a sweep that lost the record: its lease lapsed, or ``changed``."""
        if self.lost is None:
            if changed and time.time() < self.until:
                self.lost = (
                    f"the sweep record {RECORD_KEY} of {self._where()} was removed or changed "
                    "by someone else while this sweep ran (an operator, a lifecycle rule, a "
                    "sweep on a host whose clock runs ahead); it removed nothing more: sweep again"
                )
            else:
                self.lost = (
                    f"this sweep of {self._where()} lost its lease (it stalled past "
                    f"{self.lease:g} s, and another sweep may have taken over); it removed "
                    "nothing more"
                )
        return SweepRunning(self.lost)

    def update(self, change: Callable[[Record], Record]) -> Record:
        """Write ``change(record)`` with the lease renewed; return what was written.

        A write refused because a put changed the record meanwhile is done
        again on the record read anew.

        Raises:
            SweepRunning: the lease lapsed, or another sweep took the record.
        """
        with self._mutex:
            record, etag = self.record, self.etag
            while True:
                if self.lost is not None or time.time() >= self.until:
                    raise self._lost()
                if record.get("owner") != self.token or record.get("state") != "running":
                    raise self._lost(changed=True)
                until = time.time() + self.lease
                new = dict(change(dict(record)), until=until, beat=secrets.token_hex(6))
                new.pop("rev", None)
                written = write(self.engine, new, etag)
                if written is not None:
                    self.record, self.etag, self.until = new, written, until
                    return new
                found, etag = read(self.engine)
                if found is None:
                    raise self._lost(changed=True)
                record = found

    def check(self) -> None:
        """Raise :class:`SweepRunning` unless at least a third of the lease is left."""
        if self.lost is not None or time.time() >= self.until - self.lease / 3:
            raise self._lost()

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.update(lambda record: record)
            except SweepRunning:
                return
            except Exception:
                continue  # the server did not answer: try again, within the lease

    def end(self) -> None:
        """Leave the record ``done`` (puts that look at it see the sweep ended).

        Quiet when that fails (lost lease, no server): the record then reads
        as a dead sweep once its lease lapses, which puts treat the same.
        """
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        with contextlib.suppress(Exception):
            self.update(lambda record: dict(record, state="done", deleting=[], touched=[]))


def _settled(engine: S3Engine, key: str, record: Record | None, etag: str | None) -> str | None:
    """Wait until the running sweep (if any) can no longer take ``key``; the last ETag seen.

    While ``key`` is in the batch being deleted, the record is read again
    (with backoff) until the batch is done or the sweep is dead (see
    :func:`_left`); a key the sweep has not decided yet is added to ``touched``.
    """
    wait = _WAIT_FIRST
    while True:
        left = _left(engine, record)
        if not left:
            return etag
        assert record is not None
        if key in record.get("deleting", ()):
            engine._waiting(key)
            time.sleep(min(wait, left))
            wait = min(wait * 2, _WAIT_MOST)
            record, etag = read(engine)
            continue
        if not _takeable(key, record):
            return etag  # its page decided, or already in ``touched``
        written = _touch(engine, key, record, etag)
        if written is not None:
            return written
        record, etag = read(engine)


def _undecided(engine: S3Engine, key: str, record: Record) -> bool:
    """Whether a running sweep may still take ``key`` in a page it has not decided."""
    return bool(_left(engine, record)) and _takeable(key, record)


def _takeable(key: str, record: Record) -> bool:
    """Whether the sweep of ``record``, if it runs, may still take ``key``.

    Not in the batch being deleted, past ``listed_upto`` (its page not
    decided yet), not in ``touched``.
    """
    return (
        key not in record.get("deleting", ())
        and key > str(record.get("listed_upto", ""))
        and key not in record.get("touched", ())
    )


def _touch(engine: S3Engine, key: str, record: Record, etag: str | None) -> str | None:
    """Add ``key`` to the record's ``touched``; the ETag after, or ``None``: read it again.

    This process's puts write one at a time, each on the record as the last
    left it (no conditional write of theirs loses to another's), and each
    write names every key queued before it (one write for many puts): a put
    whose key a write queued after it named is done.
    """
    watch = engine._sweep_watch
    with watch.queue_lock:
        watch.queue.add(key)
        ticket = watch.round
    with watch.touching:
        last_etag, last_keys, last_round = watch.touched_last
        if last_round > ticket and key in last_keys:
            return last_etag  # named by a write that began after this put queued its key
        if last_etag is not None and last_etag != etag:
            found, etag = read(engine)  # another put of this process wrote since
            watch.touched_last = (etag, frozenset(), last_round)
            if found is None or not _undecided(engine, key, found):
                return None  # the caller reads it again, and decides
            record = found
        with watch.queue_lock:
            keys = frozenset(watch.queue)
            watch.round += 1
            this_round = watch.round
        touched = list(record.get("touched", ()))
        new = sorted(keys - set(touched))
        written = write(engine, dict(record, touched=[*touched, *new]), etag)
        if written is None:
            watch.touched_last = (None, frozenset(), this_round)
            return None
        with watch.queue_lock:
            watch.queue.difference_update(keys)
        watch.touched_last = (written, keys, this_round)
        return written


def guard(
    engine: S3Engine, key: str, before: str | None, restore: Callable[[], object] | None
) -> Outcome:
    """Make sure the object a put just stored at ``key`` stays (see the module's doc).

    ``before`` is :func:`mark` read before the put's last step; ``restore``
    stores the put's bytes at ``key`` again (``None``: a put that has none
    left, told ``"gone"`` instead).

    Raises:
        OSError: sweeps took the bytes again each time they were stored.
    """
    restored = False
    for _ in range(_RESTORES):
        record, etag = read(engine)
        doomed = record is not None and key in record.get("deleting", ())
        if etag == before and not doomed and not _left(engine, record):
            return "restored" if restored else "there"  # no write between, no live sweep
        before = _settled(engine, key, record, etag)
        if engine._head(key) is not None:
            return "restored" if restored else "there"
        if restore is None:
            return "gone"
        restore()
        restored = True
    raise OSError(errno.EAGAIN, "sweeps kept removing the object this put stored again", key)
