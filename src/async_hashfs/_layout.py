"""Where things live in a store: pure functions over paths, no I/O.

The sharding rule is HashFS's own (``hashfs.utils.shard``) so that the layout
can never drift from the stores HashFS 0.7.2 wrote.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass, field
from functools import cache

from hashfs.utils import shard as _hashfs_shard

from ._exceptions import InvalidExtension

__all__ = [
    "TEMP_DIRNAME",
    "AddressShape",
    "Layout",
    "address_shape",
    "extension_from_filename",
    "is_hex",
    "normalize_extension",
    "split_name",
]

#: Folder under the root that holds files being written. Its name starts with a
#: dot, so it can never collide with a shard folder (hex digits only).
TEMP_DIRNAME = ".hashfs-tmp"

#: Dot-separated tokens of letters, digits and ``_+-`` (``gz``, ``tar.gz``), no leading dot.
_EXTENSION = re.compile(r"[A-Za-z0-9_+\-]{1,32}(?:\.[A-Za-z0-9_+\-]{1,32})*")
#: Longest extension ``put()`` accepts, leading dot excluded.
MAX_EXTENSION = 64
_HEX = frozenset("0123456789abcdef")


def normalize_extension(extension: str | None) -> str:
    """Return ``extension`` as stored on disk: ``""`` or a dot and safe tokens.

    Accepts what HashFS stores, multi-dot included (``"tar.gz"`` and
    ``".tar.gz"`` both give ``".tar.gz"``), as long as it cannot leave its
    folder or confuse a shell or a URL.

    Raises:
        InvalidExtension: when it is not dot-separated tokens of 1-32
            letters, digits or ``_+-`` (at most 64 characters) after an
            optional leading dot.
    """
    if extension is None or extension == "":
        return ""
    if not isinstance(extension, str):
        raise InvalidExtension(extension)
    bare = extension[1:] if extension.startswith(".") else extension
    if len(bare) > MAX_EXTENSION or not _EXTENSION.fullmatch(bare):
        raise InvalidExtension(extension)
    return "." + bare


def extension_from_filename(filename: str | None) -> str | None:
    """Return the lower-cased extension of ``filename`` when it is a safe one, else ``None``."""
    if not filename:
        return None
    suffix = os.path.splitext(filename.replace("\\", "/").rsplit("/", 1)[-1])[1].lower()
    try:
        return normalize_extension(suffix) or None
    except InvalidExtension:
        return None


def is_hex(value: str) -> bool:
    """Return whether ``value`` is a non-empty lowercase hex string, as hex digests are."""
    return bool(value) and _HEX.issuperset(value)


def split_name(relpath: str) -> tuple[str, str]:
    """Split a path relative to the root into its id part and its extension.

    The id part is the shard folders joined with the file name up to its
    first dot; the extension is the rest of the name, dot included
    (``a/b/cdef.tar.gz`` gives ``("abcdef", ".tar.gz")``). A content
    address's id is never split at a later dot, as ``os.path.splitext`` would.
    """
    folders, _, name = relpath.rpartition(os.sep)
    head, dot, extension = name.partition(".")
    return folders.replace(os.sep, "") + head, dot + extension


@cache
def _algorithms_by_length() -> dict[int, tuple[str, ...]]:
    """Hex digest length -> the guaranteed hashlib algorithms with digests that long."""
    found: dict[int, list[str]] = {}
    for name in sorted(hashlib.algorithms_guaranteed):
        size = hashlib.new(name).digest_size
        if size:  # not the shake_* ones
            found.setdefault(size * 2, []).append(name)
    return {length: tuple(names) for length, names in found.items()}


@dataclass(frozen=True)
class AddressShape:
    """A path read as the content address of *some* layout: sharding, id, extension."""

    depth: int
    width: int
    id: str
    extension: str
    #: The hashlib algorithms whose hex digests are as long as ``id``.
    algorithms: tuple[str, ...]

    def describe(self, algorithm: str | None = None) -> str:
        """Name the layout, as in ``depth 2, width 2, sha256``.

        Without ``algorithm`` (the one the bytes were found to hash to the
        id with), the algorithms whose digests are as long as the id.
        """
        if algorithm is None:
            algorithm = f"an id as long as a {', '.join(self.algorithms)} digest"
        return f"depth {self.depth}, width {self.width}, {algorithm}"


def address_shape(relpath: str) -> AddressShape | None:
    """Return how ``relpath`` is laid out when it is a content address of any layout.

    That is: folders all of one width, all hex, then the rest of a hex id
    and an optional safe extension, the whole id as long as the digest of a
    hashlib algorithm (``ab/cd/ef01…`` is depth 2, width 2). ``None`` for
    anything else. Whether the bytes hash to the id is not looked at here.
    """
    *folders, name = relpath.split(os.sep)
    head, dot, extension = name.partition(".")
    if extension and (len(extension) > MAX_EXTENSION or not _EXTENSION.fullmatch(extension)):
        return None
    width = len(folders[0]) if folders else 0
    if not is_hex(head) or any(len(f) != width or not is_hex(f) for f in folders):
        return None
    id = "".join(folders) + head
    algorithms = _algorithms_by_length().get(len(id))
    if algorithms is None:
        return None
    return AddressShape(len(folders), width, id, dot + extension, algorithms)


@cache
def _folder_depth(digest_length: int, depth: int, width: int) -> int:
    return len(_hashfs_shard("0" * digest_length, depth, width)) - 1


def _algorithm_error(algorithm: object, problem: str) -> str:
    fixed = sorted(a for a in hashlib.algorithms_guaranteed if not a.startswith("shake"))
    return (
        f"algorithm {algorithm!r} {problem}: use a hashlib algorithm with a fixed digest "
        f"size ({', '.join(fixed)}, or another of hashlib.algorithms_available)"
    )


@dataclass(frozen=True)
class Layout:
    """The shape of one store: its root, sharding and hash algorithm."""

    root: str
    depth: int
    width: int
    algorithm: str
    digest_length: int = field(init=False)
    _prefix: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.is_url:
            scheme, _, rest = self.root.partition("://")
            bucket = rest.split("/", 1)[0]
            if scheme != "s3" or not bucket or posixpath.normpath("/" + rest) != "/" + rest:
                raise ValueError(f"root must be s3://bucket[/prefix], not {self.root!r}")
        elif not os.path.isabs(self.root) or os.path.normpath(self.root) != self.root:
            raise ValueError(f"root must be an absolute, normalized path, not {self.root!r}")
        for name in ("depth", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
        try:
            digest = hashlib.new(self.algorithm)
        except (TypeError, ValueError) as exc:
            raise ValueError(_algorithm_error(self.algorithm, "unknown")) from exc
        if digest.digest_size == 0:
            raise ValueError(_algorithm_error(self.algorithm, "has no fixed digest size"))
        object.__setattr__(self, "digest_length", digest.digest_size * 2)
        sep = "/" if self.is_url else os.sep
        prefix = self.root if self.root.endswith(sep) else self.root + sep
        object.__setattr__(self, "_prefix", prefix)

    @property
    def is_url(self) -> bool:
        """Whether the root is an object-store URL (``s3://bucket/prefix``), not a folder."""
        return "://" in self.root

    # -- ids -------------------------------------------------------------

    def is_id(self, value: str) -> bool:
        """Return whether ``value`` is a hex digest of this store's algorithm."""
        return len(value) == self.digest_length and is_hex(value)

    def shard(self, id: str) -> list[str]:
        """Split ``id`` into ``depth`` folders of ``width`` characters and the rest."""
        parts: list[str] = _hashfs_shard(id, self.depth, self.width)
        return parts

    @property
    def folder_depth(self) -> int:
        """How many shard folders every content address has: the folders above its file.

        That is ``depth``, unless the folders would use up the whole id: HashFS
        makes no empty file name, so the id's last part (``width`` characters
        or fewer) is the file name instead (md5 at depth 16, width 2 gives 15
        folders and a name of two characters). A width of 0 makes no folders.
        """
        return _folder_depth(self.digest_length, self.depth, self.width)

    def relpath(self, id: str, extension: str = "") -> str:
        """Return the path of ``id`` relative to the root; ``extension`` is normalized."""
        return os.path.join(*self.shard(id)) + extension

    def abspath(self, relpath: str) -> str:
        """Return the absolute path of a relative path built by :meth:`relpath`."""
        return self._prefix + relpath

    def unshard(self, relpath: str) -> str:
        """Return the id a path relative to the root names.

        HashFS's rule (folders and name joined, extension dropped), except
        that the extension starts at the name's first dot, so that
        ``<id>.tar.gz`` names ``<id>``.
        """
        return split_name(relpath)[0]

    def stored_extension(self, relpath: str) -> str:
        """Return the extension a stored file keeps when it moves to its content address.

        A name that starts with an id of this store keeps all it has after
        it (``.tar.gz``); any other name keeps its last suffix only, as
        HashFS does (``photo.v2.jpg`` gives ``.jpg``).
        """
        id, extension = split_name(relpath)
        if self.is_id(id):
            return extension
        return os.path.splitext(relpath.rpartition(os.sep)[2])[1]

    def parse_address(self, relpath: str) -> tuple[str, str] | None:
        """Return ``(id, extension)`` when ``relpath`` is exactly a content address.

        A content address is the shard folders of a valid id followed by an
        optional safe extension; anything else (the temp folder, a misplaced
        file, a traversal) gives ``None``.
        """
        parts = relpath.split(os.sep)
        digest, extension = split_name(relpath)
        if not self.is_id(digest) or parts[:-1] != self.shard(digest)[:-1]:
            return None
        if extension and (
            len(extension) > MAX_EXTENSION + 1 or not _EXTENSION.fullmatch(extension[1:])
        ):
            return None
        return digest, extension

    def describe(self) -> str:
        """Name this layout, as in ``depth 4, width 1, sha256``."""
        return f"depth {self.depth}, width {self.width}, {self.algorithm}"

    def foreign_shape(self, relpath: str) -> AddressShape | None:
        """Return the shape of ``relpath`` when it is a content address of another layout.

        Another layout is another depth, width or digest length: the files
        another store keeps in the same root (or a store kept before its
        settings changed). An address of this layout, or anything that is no
        content address at all, gives ``None``.
        """
        if self.parse_address(relpath) is not None:
            return None
        return address_shape(relpath)

    # -- references ------------------------------------------------------

    def inside(self, path: str) -> str | None:
        """Return ``path`` relative to the root when it lies lexically inside it.

        Paths into the temp folder, paths with NUL bytes and the root itself
        give ``None``. No symlink is looked at here; the engine does that.
        """
        if "\0" in path:
            return None
        if self.is_url:
            if path.startswith(self._prefix):
                path = path[len(self._prefix) :]
            elif "://" in path or path.startswith("/"):
                return None
            relative = posixpath.normpath(path)
            if relative == ".." or relative.startswith("../"):
                return None
            path = self._prefix + ("" if relative == "." else relative)
        else:
            if not os.path.isabs(path):
                path = os.path.join(self.root, path)
            path = os.path.normpath(path)
        if not path.startswith(self._prefix):
            return None
        relpath = path[len(self._prefix) :]
        if not relpath or relpath.split(os.sep, 1)[0] == TEMP_DIRNAME:
            return None
        return relpath

    @property
    def temp_dir(self) -> str:
        """Absolute path of the temp folder."""
        return self._prefix + TEMP_DIRNAME
