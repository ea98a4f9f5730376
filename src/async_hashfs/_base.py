"""What the sync and async stores share: configuration and pure path helpers.

Neither store wraps the other; each writes its own I/O methods over the same
:class:`~async_hashfs._engine.Engine` (httpx's ``BaseClient`` pattern).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

from ._engine import Engine
from ._layout import Layout, normalize_extension

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
        ValueError: a bad ``depth``, ``width``, ``algorithm`` or ``max_size``.
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
        """Return the id a path inside the root names.

        Raises:
            ValueError: ``path`` is not inside the root.
        """
        relpath = self.layout.inside(path)
        if relpath is None:
            raise ValueError(
                f"Cannot unshard path. The path {path!r} is not "
                f"a subdirectory of the root directory {self.root!r}"
            )
        return self.layout.unshard(relpath)

    def relpath(self, path: str) -> str:
        """Return ``path`` relative to the root."""
        return os.path.relpath(path, self.root)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.root!r}, depth={self.depth}, width={self.width}, "
            f"algorithm={self.algorithm!r})"
        )
