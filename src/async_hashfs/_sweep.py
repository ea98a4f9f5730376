"""What a sweep needs besides the disk: the ids to keep, its report, its durations.

A sweep removes every stored file whose id the app no longer refers to and
that is older than a grace period. The ids come from the app (a database
query, streamed); :class:`KeepSet` holds them as raw digests, bucketed by
their first two bytes, so a million sha256 ids take about 51 MiB (32 bytes
each plus the buckets' overhead; a ``set`` of the hex strings takes three
times that) and a lookup scans one short bucket. The
stored files themselves are never collected: the store is walked, or listed,
once, and each file decided as it is met.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from ._address import HashAddress
from ._exceptions import InvalidId
from ._layout import Layout

__all__ = [
    "DEFAULT_GRACE",
    "KeepSet",
    "RemovedCallback",
    "SweepReport",
    "check_grace",
    "parse_duration",
]

#: A sweep leaves alone files modified in the last hour unless told otherwise.
DEFAULT_GRACE = 3600.0

#: Called with the address of each file a sweep removes (or, dry, would remove).
RemovedCallback = Callable[[HashAddress], object]

_BUCKETS = 1 << 16
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class KeepSet:
    """The ids a sweep keeps, each held once as its raw digest.

    Ids are checked as they are added: each must be an id of the store, the
    lowercase hex digest that :attr:`HashAddress.id` holds, without
    extension. Keeping an id keeps every stored file of that id, whatever
    its extension (``<id>``, ``<id>.jpg``).
    """

    __slots__ = ("_buckets", "_layout", "_size", "added", "distinct")

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._size = layout.digest_length // 2
        self._buckets: list[bytearray | None] = [None] * _BUCKETS
        #: How many ids were added (repeats included): the next one's index.
        self.added = 0
        #: How many different ids are held.
        self.distinct = 0

    def add(self, id: object) -> None:
        """Add one id.

        Raises:
            InvalidId: ``id`` is not an id of this store (a ``ValueError``
                naming it and its position among those added).
        """
        index = self.added
        if not isinstance(id, str) or not self._layout.is_id(id):
            raise InvalidId(id, index, self._layout.algorithm, self._layout.digest_length)
        self.added = index + 1
        digest = bytes.fromhex(id)
        key = (digest[0] << 8) | digest[1]
        bucket = self._buckets[key]
        if bucket is None:
            self._buckets[key] = bytearray(digest)
        elif self._holds(bucket, digest):
            return
        else:
            bucket += digest
        self.distinct += 1

    def update(self, ids: object) -> None:
        """Add every id of the iterable ``ids``.

        Raises:
            InvalidId: one of them is not an id of this store.
            TypeError: ``ids`` is not iterable (a single id is refused too:
                it would be read as its characters).
        """
        if isinstance(ids, (str, bytes)):
            raise TypeError("keep is an iterable of ids, not a single id: use [id]")
        try:
            iterator = iter(ids)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(f"keep must be an iterable of ids, not {type(ids).__name__}") from None
        for id in iterator:
            self.add(id)

    def _holds(self, bucket: bytearray, digest: bytes) -> bool:
        size = self._size
        start = bucket.find(digest)
        while start >= 0:
            if start % size == 0:
                return True
            start = bucket.find(digest, start + 1)
        return False

    def __contains__(self, id: str) -> bool:
        """Whether ``id`` (an id of the store, already checked) is kept."""
        digest = bytes.fromhex(id)
        bucket = self._buckets[(digest[0] << 8) | digest[1]]
        if bucket is None:
            return False
        if len(bucket) == self._size:  # most buckets hold one id, up to a million
            return bucket == digest
        return self._holds(bucket, digest)

    def __len__(self) -> int:
        return self.distinct


@dataclass
class SweepReport:
    """What a sweep did (or, with ``dry_run``, would do): counts only.

    The files removed are not listed here, so a sweep of a million files
    answers in constant memory: pass ``on_remove`` to see each of them.
    """

    #: Files removed, or that would be on a dry run, as neither kept nor young.
    removed: int = 0
    #: Their total size in bytes.
    removed_bytes: int = 0
    #: Files left because their id is kept.
    kept: int = 0
    #: Files left, though not kept, because they were modified within the grace
    #: period (an upload the app may not have recorded yet), or during the sweep.
    young: int = 0
    #: Files not at a content address of this store, never touched by a sweep
    #: (misplaced files, another layout's, anything else in the root); on S3
    #: also objects the server listed after a larger key (SeaweedFS lists folder
    #: by folder), left for the next sweep.
    skipped: int = 0
    #: Shard folders removed because the sweep emptied them (object stores have none).
    folders: int = 0
    #: Different ids the app asked to keep.
    keep_ids: int = 0
    #: Whether nothing was removed, only counted.
    dry_run: bool = False


def check_grace(older_than: object) -> float:
    """Return the grace period ``older_than`` (seconds) as a float.

    Raises:
        ValueError: it is not a finite number of seconds >= 0.
    """
    if (
        isinstance(older_than, bool)
        or not isinstance(older_than, (int, float))
        or not math.isfinite(older_than)
        or older_than < 0
    ):
        raise ValueError(f"older_than must be a number of seconds >= 0, not {older_than!r}")
    return float(older_than)


def parse_duration(text: str) -> float:
    """Return the seconds ``text`` names: a number with an optional unit.

    Units are ``s``, ``m`` (minutes), ``h``, ``d`` and ``w``; a bare number
    is seconds (``90``, ``90s``, ``15m``, ``1.5h``, ``7d``).

    Raises:
        ValueError: ``text`` is not such a duration.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: use a number of seconds or a number with a unit "
            "(90s, 15m, 2h, 7d, 1w)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]
