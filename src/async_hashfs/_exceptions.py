"""Exceptions raised by the store.

Every exception also subclasses the builtin that code written for HashFS
already catches, so ``except ValueError`` and ``except IOError`` keep working::

    HashFSError
    ├── InvalidExtension     (ValueError)   extension is not made of short safe tokens
    ├── InvalidSource        (ValueError, TypeError)   put() cannot read the source
    ├── InvalidId            (ValueError)   sweep() was asked to keep something not an id
    ├── FileTooLarge         (ValueError)   put() went past max_size
    ├── ReadOnlyError        (ValueError)   open() asked for a write mode
    ├── NotFound             (FileNotFoundError)   no stored file for a reference
    ├── CorruptFile          (OSError)      stored bytes no longer match their address
    └── SweepRunning         (RuntimeError) another sweep of the same S3 store is running
"""

from __future__ import annotations

__all__ = [
    "CorruptFile",
    "FileTooLarge",
    "HashFSError",
    "InvalidExtension",
    "InvalidId",
    "InvalidSource",
    "NotFound",
    "ReadOnlyError",
    "SweepRunning",
]


class HashFSError(Exception):
    """Base class of every error the store raises on purpose."""


class InvalidExtension(HashFSError, ValueError):
    """The extension is not dot-separated tokens of letters, digits or ``_+-``."""

    def __init__(self, extension: object) -> None:
        super().__init__(
            f"invalid extension {extension!r}: use tokens of 1-32 letters, digits, '_', '+' "
            "or '-', separated by single dots ('gz', 'tar.gz'), at most 64 characters, "
            "optionally after one leading dot"
        )
        self.extension = extension


class InvalidSource(HashFSError, ValueError, TypeError):
    """``put()`` was given something it cannot read bytes from."""


class InvalidId(HashFSError, ValueError):
    """An id given to ``sweep()`` to keep is not an id of the store.

    ``index`` is its position among the ids given (0 for the first).
    """

    def __init__(self, id: object, index: int, algorithm: str, length: int) -> None:
        super().__init__(
            f"keep: {id!r} (id number {index + 1}) is not an id of this store: an id is "
            f"the {length}-character lowercase hex {algorithm} digest that HashAddress.id "
            "holds, without extension"
        )
        self.id = id
        self.index = index


class FileTooLarge(HashFSError, ValueError):
    """The source went past the store's ``max_size``; nothing was stored."""

    def __init__(self, max_size: int) -> None:
        super().__init__(f"file is larger than the store's max_size of {max_size} bytes")
        self.max_size = max_size


class ReadOnlyError(HashFSError, ValueError):
    """``open()`` was asked for a mode that could change a stored file."""

    def __init__(self, mode: str) -> None:
        super().__init__(f"invalid mode {mode!r}: stored files are read-only, use 'rb' or 'r'")
        self.mode = mode


class NotFound(HashFSError, FileNotFoundError):
    """No stored file answers to the reference."""

    def __init__(self, ref: object) -> None:
        super().__init__(f"Could not locate file: {ref}")
        self.ref = ref


class CorruptFile(HashFSError, OSError):
    """The bytes of a stored file no longer hash to its address."""

    def __init__(self, relpath: str, actual: str) -> None:
        super().__init__(f"stored file {relpath!r} is corrupt: its bytes hash to {actual}")
        self.relpath = relpath
        self.actual = actual


class SweepRunning(HashFSError, RuntimeError):
    """Another sweep of the same S3 store holds its lease (one sweep runs at a time there).

    Also raised by a sweep that lost its record while it ran: its lease
    lapsed (it stalled), or someone removed or changed ``.hashfs-tmp/sweep.json``.
    The objects it removed before are reported (``on_remove``) all the same.
    """
