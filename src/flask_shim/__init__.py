"""The Flask face of async-hashfs: ``FlaskHashFS`` (with the ``flask`` extra).

Also re-exports :class:`async_hashfs.SyncHashFS` (the same class) and the
exceptions, so code written for ``hashfs`` and ``flask_hashfs`` changes only
its imports. This package uses :mod:`async_hashfs`; the core never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from async_hashfs._address import HashAddress
from async_hashfs._exceptions import (
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
from async_hashfs._extras import available, missing_extra
from async_hashfs._sync import SyncHashFS
from async_hashfs._version import __version__

__all__ = [
    "__version__",
    "CorruptFile",
    "FlaskHashFS",
    "FileTooLarge",
    "HashAddress",
    "HashFSError",
    "InvalidExtension",
    "InvalidId",
    "InvalidSource",
    "NotFound",
    "ReadOnlyError",
    "SweepRunning",
    "SyncHashFS",
]
if not TYPE_CHECKING and not available("flask"):  # ``import *`` without the extra
    __all__.remove("FlaskHashFS")


if TYPE_CHECKING:
    from ._flask import FlaskHashFS


def __getattr__(name: str) -> object:
    # FlaskHashFS needs the ``flask`` extra: import it only when asked for.
    if name == "FlaskHashFS":
        if not available("flask"):
            raise missing_extra("flask", "flask", "FlaskHashFS")
        from ._flask import FlaskHashFS

        return FlaskHashFS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
