"""What the sync and async stores share: configuration and pure path helpers.

Neither store wraps the other; each writes its own I/O methods over the same
:class:`~async_hashfs._engine.Engine` (httpx's ``BaseClient`` pattern).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, cast

from ._engine import Engine
from ._layout import Layout, is_hex, normalize_extension
from ._sweep import KeepSet, check_grace

__all__ = ["BaseHashFS"]


class BaseHashFS:
    """Configuration of a store at ``root``, with HashFS's constructor.

    Args:
        root: folder of the store; created on the first put.
        depth: number of shard folders.
        width: characters per shard folder.
        algorithm: any :mod:`hashlib` algorithm with a fixed digest size.
        fmode: permission bits of stored files (``None`` leaves ``0o600``).
        dmode: permission bits of created folders (before the umask, as HashFS).
        max_size: largest file ``put()`` accepts, in bytes; ``None`` for no limit.
        fsync: flush file and folder to the disk on every commit.
        s3_options: for an ``s3://bucket/prefix`` root, ``obstore.store.S3Store``
            options (``endpoint``, ``region``, ``access_key_id``,
            ``secret_access_key``...); the usual ``AWS_*`` variables fill in the rest.

    Raises:
        ValueError: an argument is of the wrong kind or out of range; the
            message names it and the values it accepts.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        depth: int = 4,
        width: int = 1,
        algorithm: str = "sha256",
        fmode: int | None = 0o664,
        dmode: int = 0o755,
        *,
        max_size: int | None = None,
        fsync: bool = False,
        s3_options: Mapping[str, Any] | None = None,
    ) -> None:
        _check_mode("fmode", fmode, "0o664", allow_none=True)
        _check_mode("dmode", dmode, "0o755", allow_none=False)
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0
        ):
            raise ValueError(f"max_size must be an integer >= 0 or None, not {max_size!r}")
        if not isinstance(fsync, bool):
            raise ValueError(f"fsync must be True or False, not {fsync!r}")
        if s3_options is not None and not isinstance(s3_options, Mapping):
            raise ValueError(f"s3_options must be a mapping or None, not {s3_options!r}")
        url = os.fspath(root)
        self.root = url.rstrip("/") if "://" in url else os.path.realpath(url)
        self.depth = depth
        self.width = width
        self.algorithm = algorithm
        self.fmode = fmode
        self.dmode = dmode
        self.layout = Layout(self.root, depth, width, algorithm)
        self._engine: Engine
        if self.layout.is_url:
            from ._s3 import S3Engine  # needs the ``s3`` extra (obstore)

            # S3Engine has Engine's methods, duck-typed, on object storage.
            self._engine = cast(
                Engine, S3Engine(self.layout, max_size=max_size, fsync=fsync, options=s3_options)
            )
        else:
            self._engine = Engine(
                self.layout, fmode=fmode, dmode=dmode, max_size=max_size, fsync=fsync
            )

    @property
    def max_size(self) -> int | None:
        """Largest file ``put()`` accepts, in bytes, or ``None``."""
        return self._engine.max_size

    @property
    def fsync(self) -> bool:
        """Whether commits are flushed to the disk."""
        return self._engine.fsync

    def idpath(self, id: str, extension: str | None = "") -> str:
        """Return the absolute path for ``id`` with an optional extension.

        Raises:
            InvalidExtension: ``extension`` is not a safe token.
        """
        return self.layout.abspath(self.layout.relpath(id, normalize_extension(extension)))

    def shard(self, id: str) -> list[str]:
        """Split ``id`` into its shard folders and file name."""
        return self.layout.shard(id)

    def unshard(self, path: str) -> str:
        """Return the id a content address names (``path`` absolute or relative to the root).

        The id is the shard folders and the file name up to its first dot,
        so ``<id>.tar.gz`` gives ``<id>``.

        Raises:
            ValueError: ``path`` is not inside the root, or does not start
                with a hex digest (as HashFS, ``unshard("invalid")``).
        """
        relpath = self.layout.inside(path)
        if relpath is None:
            raise ValueError(
                f"Cannot unshard path. The path {path!r} is not "
                f"a subdirectory of the root directory {self.root!r}"
            )
        id = self.layout.unshard(relpath)
        if not is_hex(id):
            raise ValueError(
                f"Cannot unshard path. The path {path!r} is not a content address: "
                f"{id!r} is not a hex digest"
            )
        return id

    def relpath(self, path: str) -> str:
        """Return ``path`` relative to the root."""
        return os.path.relpath(path, self.root)

    def _begin_sweep(self, older_than: object) -> tuple[KeepSet, float]:
        """An empty set of ids to keep, and the grace period in seconds.

        Raises:
            ValueError: ``older_than`` is not a number of seconds >= 0.
        """
        return KeepSet(self.layout), check_grace(older_than)

    def _sweep_cutoff(self, grace: float) -> float:
        """The sweep's cutoff: files modified before it may go (blocking I/O).

        The grace period counts back from now, taken before the ids are
        read: a file put after ``now - grace`` is left whatever the ids say.
        Locally "now" is read from the store's own file system (see
        :meth:`Engine.sweep_clock`), so that a put that starts after this
        call is never stamped before the cutoff, however coarse its clock.
        """
        now = time.time()
        if not self.layout.is_url:
            stamped = self._engine.sweep_clock()
            if stamped is not None:
                now = min(stamped, time.time())
        return now - grace

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.root!r}, depth={self.depth}, width={self.width}, "
            f"algorithm={self.algorithm!r})"
        )


def _check_mode(name: str, mode: object, example: str, *, allow_none: bool) -> None:
    """Raise ``ValueError`` unless ``mode`` is permission bits (or ``None`` when allowed)."""
    if mode is None and allow_none:
        return
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        accepted = f"an integer from 0 to 0o7777 (such as {example})"
        if allow_none:
            accepted += " or None"
        shown = oct(mode) if isinstance(mode, int) and not isinstance(mode, bool) else repr(mode)
        raise ValueError(f"{name} must be {accepted}, not {shown}")
