"""The blocking face of async-hashfs: ``SyncHashFS`` and, with Flask, ``FlaskHashFS``."""

from __future__ import annotations

from hashfs import HashAddress

from async_hashfs._exceptions import (
    FileTooLarge,
    HashFSError,
    InvalidExtension,
    InvalidSource,
    NotFound,
    ReadOnlyError,
)

from ._store import SyncHashFS

__all__ = [
    "FileTooLarge",
    "HashAddress",
    "HashFSError",
    "InvalidExtension",
    "InvalidSource",
    "NotFound",
    "ReadOnlyError",
    "SyncHashFS",
]
