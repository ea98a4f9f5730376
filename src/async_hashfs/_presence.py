"""Revalidations answered without a worker-thread hop, and never wrongly.

A stored file never changes, so the one thing a 304 can get wrong is a file
that left its address since it was seen: deleted or moved by this process,
another worker, the command line or a person with ``rm``. When the serving
route answers a 304 from the disk, :func:`witness` (in the same worker-thread
hop) opens the root and each folder down to the file and records their
identity and modification times; any entry added, removed or renamed in one
of them changes its mtime. :class:`PresenceCache` keeps those folder
descriptors, and answers the next revalidation of that address on the event
loop after one ``fstat`` per folder: no path lookup, no disk read, no thread.

Two limits, both on the safe side. A folder modified less than
:data:`SETTLE` seconds before it was looked at is not trusted (a later change
in the same clock tick could leave its mtime as it was), so a revalidation
takes the disk path for a moment after a put next to it. Only the root and
what is below it are watched: a root that is itself swapped for another
folder through a symlink or a renamed parent is not seen. Object stores are
not cached at all: every revalidation asks the bucket.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from typing import Any

from ._http import _etags, _short, _weak_match

__all__ = ["SETTLE", "PresenceCache", "Witness", "witness"]

#: Seconds a folder must have been left unmodified before its mtime is trusted.
#: Above the coarsest common timestamp (FAT's 2 s; ext3 and HFS+ keep 1 s).
SETTLE = 2.0
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_SUPPORTED = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")

#: What identifies a folder's state: device, inode, mtime, ctime, link count.
_Key = tuple[int, int, int, int, int]


def _key(info: os.stat_result) -> _Key:
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_nlink)


class Witness:
    """Open folders from the root down to a served file, and their state when it was there.

    Made by :func:`witness` in a worker thread, handed to
    :meth:`PresenceCache.seen`, which takes the descriptors over; closed
    here if nothing took them.
    """

    __slots__ = ("folders",)

    def __init__(self, folders: list[tuple[str, int, _Key]]) -> None:
        #: ``(folder relpath, descriptor, state)``, from the root (``""``) down.
        self.folders = folders

    def close(self) -> None:
        """Close the descriptors not taken over."""
        folders, self.folders = self.folders, []
        for _, fd, _ in folders:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def witness(root: str, relpath: str, blob: Any, settle: float = SETTLE) -> Witness | None:
    """Record that the open ``blob`` is the file at ``relpath`` under ``root``: blocking.

    Returns ``None`` when that cannot be vouched for: an object store's blob,
    a platform without ``openat``, a folder modified in the last ``settle``
    seconds, or a file at the address that is no longer ``blob``'s. Never
    raises ``OSError``: a revalidation then just takes the disk path.
    """
    if getattr(blob, "file", None) is None or not _SUPPORTED:
        return None
    names = relpath.split("/")
    start = time.time()  # before looking: a change after it gets a later timestamp
    folders: list[tuple[str, int, _Key]] = []
    found = Witness(folders)
    try:
        fd = _open_folder(root, None, "", folders)
        for depth, name in enumerate(names[:-1], 1):
            fd = _open_folder(name, fd, "/".join(names[:depth]), folders)
        if any(start - key[2] / 1e9 < settle for _, _, key in folders):
            found.close()
            return None
        entry = os.stat(names[-1], dir_fd=fd, follow_symlinks=False)
        opened = os.fstat(blob.file.fileno())
    except OSError:
        found.close()
        return None
    same_file = (entry.st_dev, entry.st_ino) == (opened.st_dev, opened.st_ino)
    if not (stat.S_ISREG(entry.st_mode) and same_file):
        found.close()
        return None
    return found


def _open_folder(
    name: str, parent: int | None, relpath: str, folders: list[tuple[str, int, _Key]]
) -> int:
    """Open folder ``name`` in ``parent`` (no symlink below the root); append it to ``folders``."""
    flags = _FOLDER_FLAGS if parent is None else _FOLDER_FLAGS | os.O_NOFOLLOW
    fd = os.open(name, flags, dir_fd=parent)
    try:
        folders.append((relpath, fd, _key(os.fstat(fd))))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fd_budget() -> int:
    """Folder descriptors the cache may hold: an eighth of the soft limit, at most 256."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 64
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(0, min(256, soft // 8))


class PresenceCache:
    """Content addresses answered 304 from the disk, re-checked with ``fstat`` on reuse.

    Used on the event loop only. ``max_folders`` bounds the folder
    descriptors held (default: an eighth of ``RLIMIT_NOFILE``, at most 256),
    ``max_entries`` the addresses; past either, everything is dropped and the
    cache fills again.
    """

    def __init__(self, max_folders: int | None = None, max_entries: int = 4096) -> None:
        self._max_folders = _fd_budget() if max_folders is None else max_folders
        self._max_entries = max_entries
        #: relpath -> (304 headers, ((folder relpath, state when seen), ...))
        self._entries: dict[str, tuple[dict[str, str], tuple[tuple[str, _Key], ...]]] = {}
        #: folder relpath -> (descriptor, device, inode)
        self._folders: dict[str, tuple[int, int, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, relpath: str, headers: dict[str, str], found: Witness | None) -> None:
        """Remember that ``relpath`` was answered with ``headers``, as ``found`` vouches.

        Takes over ``found``'s descriptors; does nothing without a witness.
        """
        if found is None:
            return
        folders, found.folders = found.folders, []
        if (
            len(self._entries) >= self._max_entries
            or len(self._folders) + len(folders) > self._max_folders
        ):
            self.forget()
        if len(folders) > self._max_folders:
            Witness(folders).close()
            return
        chain = []
        for folder, fd, key in folders:
            held = self._folders.get(folder)
            if held is not None and held[1:] == key[:2]:
                os.close(fd)  # the same folder: keep the descriptor already held
            else:
                if held is not None:
                    os.close(held[0])
                self._folders[folder] = (fd, key[0], key[1])
            chain.append((folder, key))
        self._entries[relpath] = (_short(headers), tuple(chain))

    def not_modified(
        self, relpath: str, method: str, header: Callable[[str], str | None]
    ) -> dict[str, str] | None:
        """Return the 304 headers when the request revalidates a file still at its address."""
        entry = self._entries.get(relpath)
        if entry is None or method not in ("GET", "HEAD"):
            return None
        headers, chain = entry
        if_none_match = header("If-None-Match")
        if (
            if_none_match is None
            or header("If-Match") is not None
            or header("If-Unmodified-Since") is not None
            or not _weak_match(_etags(if_none_match), headers["ETag"])
        ):
            return None
        if not self._unchanged(chain):
            del self._entries[relpath]
            return None
        return headers

    def _unchanged(self, chain: tuple[tuple[str, _Key], ...]) -> bool:
        for folder, key in chain:
            held = self._folders.get(folder)
            if held is None:
                return False
            try:
                # fstat of a descriptor already open: no path lookup, no disk read.
                if _key(os.fstat(held[0])) != key:
                    return False
            except OSError:
                return False
        return True

    def forget(self) -> None:
        """Drop every entry and close every folder descriptor."""
        folders, self._folders = self._folders, {}
        self._entries.clear()
        for fd, _, _ in folders.values():
            os.close(fd)

    def __del__(self) -> None:
        self.forget()
