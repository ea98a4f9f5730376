"""async-hashfs: a content-addressable file store for async web apps.

``AsyncHashFS`` is the store for async code, ``SyncHashFS`` the same store for
blocking code (a drop-in for ``hashfs.HashFS``), and ``QuartHashFS`` (with the
``quart`` extra) the Quart extension. The Flask extension lives in
:mod:`flask_shim`, which builds on this package and never the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._address import HashAddress
from ._engine import GCReport, RepairReport
from ._exceptions import (
    CorruptFile,
    FileTooLarge,
    HashFSError,
    InvalidExtension,
    InvalidId,
    InvalidSource,
    NotFound,
    ReadOnlyError,
    SweepRunning,
)
from ._extras import available, missing_extra
from ._store import AsyncBinaryFile, AsyncFileOpener, AsyncHashFS, AsyncTextFile
from ._sweep import SweepReport
from ._sync import SyncHashFS
from ._tus import CompletedUpload
from ._version import __version__

__all__ = [
    "__version__",
    "CorruptFile",
    "QuartHashFS",
    "AsyncBinaryFile",
    "AsyncFileOpener",
    "AsyncHashFS",
    "AsyncTextFile",
    "CompletedUpload",
    "FileTooLarge",
    "GCReport",
    "RepairReport",
    "HashAddress",
    "HashFSError",
    "InvalidExtension",
    "InvalidId",
    "InvalidSource",
    "NotFound",
    "ReadOnlyError",
    "SweepReport",
    "SweepRunning",
    "SyncHashFS",
]
if not TYPE_CHECKING and not available("quart"):  # ``import *`` without the extra
    __all__.remove("QuartHashFS")


if TYPE_CHECKING:
    from ._quart import QuartHashFS


def __getattr__(name: str) -> object:
    # QuartHashFS needs the ``quart`` extra: import it only when asked for.
    if name == "QuartHashFS":
        if not available("quart"):
            raise missing_extra("quart", "quart", "QuartHashFS")
        from ._quart import QuartHashFS

        return QuartHashFS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
