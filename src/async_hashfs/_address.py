"""``HashAddress``: HashFS's own class, with the field types a checker can read.

At run time this is ``hashfs.HashAddress`` itself, so ``isinstance(address,
hashfs.HashAddress)`` holds and code written for HashFS keeps working. hashfs
ships no types, so a type checker is shown a named tuple of the same fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

__all__ = ["HashAddress"]

if TYPE_CHECKING:

    class HashAddress(NamedTuple):
        """Where a stored file lives: its id, paths and whether it was already stored."""

        id: str
        relpath: str
        abspath: str
        is_duplicate: bool = False

else:
    from hashfs import HashAddress
