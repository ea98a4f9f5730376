"""``SyncHashFS``: the store for blocking code, a drop-in for ``hashfs.HashFS``.

Same constructor, methods and return types as HashFS 0.7.2, on the same disk
layout; every call runs in the caller's thread. Where HashFS would read
outside its root, glob user input or leave a partial file, this refuses.
It needs no web framework, so it lives in the core; ``flask_shim`` re-exports
the same class for the drop-in import ``from flask_shim import SyncHashFS``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO, Literal, TextIO, overload

from ._address import HashAddress
from ._base import BaseHashFS
from ._engine import GCReport, RepairReport
from ._layout import normalize_extension
from ._sources import blocking_chunks
from ._sweep import DEFAULT_GRACE, RemovedCallback, SweepReport
from ._tus_store import collect_garbage

__all__ = ["SyncHashFS"]


class SyncHashFS(BaseHashFS):
    """A content-addressable store for blocking code; see :class:`hashfs.HashFS`."""

    def put(self, file: object, extension: str | None = None) -> HashAddress:
        """Store the bytes of ``file`` under their hash and return the address.

        ``file`` is bytes-like, a path, a binary or text file object, an
        iterable of bytes or a Werkzeug ``FileStorage``. A file object is read
        from its start and put back where it was, as HashFS does. A path or a
        binary file is stored byte for byte; a text-mode file is stored as the
        UTF-8 of what it reads, as HashFS does (its newlines become ``\\n``, a
        ``latin-1`` file becomes UTF-8), so its id can differ from the path's.
        ``extension`` may have several dots (``"tar.gz"``), as with HashFS.

        Raises:
            InvalidExtension: ``extension`` is not made of safe tokens (nothing read).
            InvalidSource: ``file`` cannot be read (a ``ValueError``): a path that
                is not a regular file (a FIFO, device, socket or folder, refused
                at once), a closed file, a text file that does not decode, a
                non-contiguous memoryview.
            FileTooLarge: ``file`` went past ``max_size``.
            OSError: the disk failed. In every case nothing is stored and no
                temp file is left.
        """
        ext = normalize_extension(extension)
        with blocking_chunks(file) as chunks:
            return self._engine.put(chunks, ext)

    def get(self, file: object) -> HashAddress | None:
        """Return the address of ``file`` (an id, relpath or abspath), or ``None``."""
        return self._engine.get(file)

    @overload
    def open(self, file: object, mode: Literal["rb", "br"] = "rb") -> BinaryIO: ...
    @overload
    def open(self, file: object, mode: Literal["r", "rt", "tr"]) -> TextIO: ...
    @overload
    def open(self, file: object, mode: str) -> IO[Any]: ...
    def open(self, file: object, mode: str = "rb") -> IO[Any]:
        """Open a stored file for reading (a ``BufferedReader`` for ``"rb"``).

        Raises:
            ReadOnlyError: ``mode`` would write.
            NotFound: no stored file answers to ``file`` (an ``IOError``).
        """
        return self._engine.open(file, mode)

    def delete(self, file: object) -> None:
        """Remove ``file`` and the folders it leaves empty; no error when missing."""
        self._engine.delete(file)

    def remove_empty(self, subpath: str) -> None:
        """Remove ``subpath`` and its parents while empty, stopping at the root."""
        self._engine.remove_empty(subpath)

    def files(self) -> Iterator[str]:
        """Yield the absolute path of every stored file."""
        return self._engine.files()

    def folders(self) -> Iterator[str]:
        """Yield every folder that holds files."""
        return self._engine.folders()

    def count(self) -> int:
        """Return how many files the store holds."""
        return self._engine.count()

    def size(self) -> int:
        """Return the total size in bytes of the stored files."""
        return self._engine.size()

    def exists(self, file: object) -> bool:
        """Return whether ``file`` names a stored file."""
        return self._engine.resolve(file) is not None

    def haspath(self, path: str) -> bool:
        """Return whether ``path`` is inside the root, symlinks resolved."""
        real = os.path.realpath(path)
        return real.startswith(self.root.rstrip(os.sep) + os.sep)

    def makepath(self, path: str) -> None:
        """Create folder ``path`` with the store's ``dmode``."""
        self._engine.makepath(path)

    def realpath(self, file: object) -> str | None:
        """Return the absolute path of the stored file ``file`` names, or ``None``."""
        return self._engine.resolve(file)

    def computehash(self, stream: object) -> str:
        """Return the hex digest of ``stream`` (any ``put()`` source)."""
        with blocking_chunks(stream) as chunks:
            return self._engine.computehash(chunks)

    def verify(self, file: object) -> bool:
        """Return whether the bytes of ``file`` still hash to its address.

        Raises:
            NotFound: no stored file answers to ``file``.
        """
        return self._engine.verify(file)

    def corrupted(self, extensions: bool = True) -> Iterator[tuple[str, HashAddress]]:
        """Yield ``(path, expected address)`` for each file not at its content address."""
        return self._engine.corrupted(extensions)

    def repair(
        self, extensions: bool = True, foreign: Literal["move", "refuse"] = "move"
    ) -> RepairReport:
        """Move misplaced files to their content address; return what moved.

        The answer is a list of ``(old path, address)``, as HashFS returns,
        with ``refused`` (files left where they are, and why) and ``relaid``
        (files moved from another layout's addresses). ``foreign="refuse"``
        leaves files at another layout's addresses where they are.
        """
        return self._engine.repair(extensions, foreign)

    def gc(self, older_than: float | None = None) -> GCReport:
        """Remove temp files of dead writers, expired resumable uploads and empty folders.

        ``older_than`` (seconds) is used as given; ``None`` is the backend's
        default: 0 on a folder (locks protect live writers), an hour on S3.
        Resumable (tus) uploads go once past their own expiry, counted apart
        in the report's ``partial_uploads`` and ``partial_bytes``.
        """
        return collect_garbage(self._engine, older_than)

    def sweep(
        self,
        keep: Iterable[str],
        older_than: float = DEFAULT_GRACE,
        *,
        dry_run: bool = False,
        on_remove: RemovedCallback | None = None,
    ) -> SweepReport:
        """Remove every stored file whose id is not in ``keep`` and older than ``older_than``.

        ``keep`` is an iterable of ids (``HashAddress.id``: the hex digest,
        no extension), read once, such as the rows of a database query;
        keeping an id keeps its files with any extension. A file modified in
        the last ``older_than`` seconds (default an hour, counted from the
        call) is left, so that an upload the app has not recorded yet
        survives; a duplicate put makes the file it finds new again. Files
        not at a content address, and the temp folder, are never touched.
        With ``dry_run`` nothing is removed and the report is the same.
        ``on_remove`` is called with the address of each file removed. On a folder
        the grace period counts back from the file system's own clock,
        read as the sweep starts, so a put that starts after the call is
        never stamped before the cutoff; ``older_than=0`` removes at once.

        Memory: the ids are held as raw digests (about 53 bytes per
        different sha256 id); the stored files are walked, never collected.

        Raises:
            InvalidId: an id in ``keep`` is not an id of this store (a
                ``ValueError`` naming it); nothing was removed.
            ValueError: ``older_than`` is not a number of seconds >= 0.
            TypeError: ``keep`` is not an iterable of ids.
            SweepRunning: (S3) another sweep of the store is running, or this
                one lost its record (its lease lapsed, or someone removed or
                changed ``.hashfs-tmp/sweep.json``); a ``RuntimeError``.
        """
        ids, grace = self._begin_sweep(older_than)
        cutoff = self._sweep_cutoff(grace)
        ids.update(keep)
        return self._engine.sweep(ids, cutoff, dry_run, on_remove)

    def __contains__(self, file: object) -> bool:
        return self.exists(file)

    def __iter__(self) -> Iterator[str]:
        return self.files()

    def __len__(self) -> int:
        return self.count()
