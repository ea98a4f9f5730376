"""Folders of a local store, opened one at a time and never through a symlink.

A path in the store is walked from the root with one directory descriptor
per folder (``openat`` with ``O_DIRECTORY | O_NOFOLLOW``), and the file at
its end is opened, stat'ed, linked, renamed and unlinked relative to the
last one (``openat``, ``fstatat``, ``linkat``, ``renameat``, ``unlinkat``).
No name is ever looked up again from the root once its folder is open, so a
folder swapped for a symlink, however the swap races the walk, stops the
walk there: it can never lead out of the root.

Where the OS has no ``dir_fd`` calls (Windows), the same methods take
paths, and each folder is checked with ``lstat`` on the way. That check and
the call after it are two steps, so a swap between them is not caught
there (creating a symlink on Windows takes an administrator or developer
mode).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence

__all__ = ["DIR_FD", "Folder", "FolderPath", "link", "rename"]

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)

#: Whether folders are walked by descriptor (POSIX) rather than by path (Windows).
DIR_FD = bool(
    _O_DIRECTORY
    and _O_NOFOLLOW
    and {os.open, os.stat, os.mkdir, os.rmdir, os.unlink, os.link, os.rename} <= os.supports_dir_fd
    and os.scandir in os.supports_fd
    and os.stat in os.supports_follow_symlinks
    and os.link in os.supports_follow_symlinks
)

_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
#: What opening a symlink with O_NOFOLLOW gives: ENOTDIR with O_DIRECTORY on
#: Linux, ELOOP on macOS, EMLINK on FreeBSD.
_NOT_FOLLOWED = {errno.ENOTDIR, errno.ELOOP, errno.EMLINK}


class Folder:
    """One open folder: names are looked up in it, never through a symlink.

    ``fd`` is its descriptor, or ``None`` where the OS has no ``dir_fd``
    calls (then ``path`` is used). ``path`` is for messages and for the
    callers' own reports.
    """

    __slots__ = ("fd", "path")

    def __init__(self, fd: int | None, path: str) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open_root(cls, root: str) -> Folder:
        """Open the store's root (itself allowed to be reached through symlinks).

        Raises:
            FileNotFoundError: it does not exist.
            NotADirectoryError: it is not a folder.
        """
        if DIR_FD:
            return cls(os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC), root)
        if not stat.S_ISDIR(os.stat(root).st_mode):  # one look: the root may be in the making
            raise NotADirectoryError(errno.ENOTDIR, "expected a folder", root)
        return cls(None, root)

    def join(self, name: str) -> str:
        """The path of ``name`` in this folder."""
        return self.path + os.sep + name

    def child(self, name: str) -> Folder:
        """Open the folder ``name`` in this one.

        Raises:
            FileNotFoundError: there is nothing by that name.
            NotADirectoryError: it is a symlink, or not a folder.
        """
        if self.fd is not None:
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
            except OSError as exc:
                if exc.errno in _NOT_FOLLOWED:
                    raise self._not_a_folder(name) from None
                raise
            return Folder(fd, self.join(name))
        if not stat.S_ISDIR(os.lstat(self.join(name)).st_mode):
            raise self._not_a_folder(name)
        return Folder(None, self.join(name))

    def make_child(self, name: str, mode: int, new: bool = False) -> tuple[Folder, bool]:
        """Open the folder ``name`` in this one, making it (``mode``) when missing.

        With ``new`` (this folder was just made, so ``name`` is most likely
        missing) the folder is made first rather than looked for first: one
        failed open less per folder a put adds below another new one.

        Returns the folder and whether this call made it.

        Raises:
            FileNotFoundError: it was removed again between its making and
                its opening (a concurrent delete); the caller tries again.
            NotADirectoryError: it is a symlink, or not a folder.
        """
        if not new:
            try:
                return self.child(name), False
            except FileNotFoundError:
                pass
        try:
            self.mkdir(name, mode)
            made = True
        except FileExistsError:
            made = False
        return self.child(name), made

    def _not_a_folder(self, name: str) -> NotADirectoryError:
        try:
            is_link = stat.S_ISLNK(self.lstat(name).st_mode)
        except OSError:
            is_link = False
        if is_link:
            return NotADirectoryError(
                errno.ENOTDIR, "a folder on the way is a symlink, not a folder", self.join(name)
            )
        return NotADirectoryError(errno.ENOTDIR, "expected a folder", self.join(name))

    def open(self, name: str, flags: int, mode: int = 0o777) -> int:
        """``os.open`` the file ``name`` here; a symlink is never followed."""
        flags |= _O_NOFOLLOW | _O_CLOEXEC
        if self.fd is not None:
            return os.open(name, flags, mode, dir_fd=self.fd)
        return os.open(self.join(name), flags, mode)

    def lstat(self, name: str) -> os.stat_result:
        """Stat ``name`` here without following it."""
        if self.fd is not None:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        return os.lstat(self.join(name))

    def mkdir(self, name: str, mode: int) -> None:
        if self.fd is not None:
            os.mkdir(name, mode, dir_fd=self.fd)
        else:
            os.mkdir(self.join(name), mode)

    def rmdir(self, name: str) -> None:
        if self.fd is not None:
            os.rmdir(name, dir_fd=self.fd)
        else:
            os.rmdir(self.join(name))

    def unlink(self, name: str) -> None:
        if self.fd is not None:
            os.unlink(name, dir_fd=self.fd)
        else:
            os.unlink(self.join(name))

    def scandir(self) -> contextlib.AbstractContextManager[Iterator[os.DirEntry[str]]]:
        """List this folder (``DirEntry.is_dir(follow_symlinks=False)`` works by descriptor)."""
        if self.fd is not None:
            return os.scandir(self.fd)
        return os.scandir(self.path)

    def fsync(self) -> None:
        """Flush this folder's names to disk (no-op on Windows, whose NTFS journals them)."""
        if self.fd is not None:
            os.fsync(self.fd)
        elif os.name != "nt":
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def link(source: Folder, name: str, target: Folder, target_name: str) -> None:
    """Hard-link ``source/name`` as ``target/target_name``; a symlink is linked, not followed."""
    if source.fd is not None and target.fd is not None:
        os.link(
            name, target_name, src_dir_fd=source.fd, dst_dir_fd=target.fd, follow_symlinks=False
        )
    else:
        os.link(source.join(name), target.join(target_name))


def rename(source: Folder, name: str, target: Folder, target_name: str) -> None:
    """Rename ``source/name`` to ``target/target_name`` (replacing it where the OS does)."""
    if source.fd is not None and target.fd is not None:
        os.rename(name, target_name, src_dir_fd=source.fd, dst_dir_fd=target.fd)
    else:
        os.rename(source.join(name), target.join(target_name))


class FolderPath:
    """The folders from the root down to one folder of the store, all open.

    ``leaf`` is the last one. Used as a context manager, it closes them all.
    """

    __slots__ = ("folders", "names")

    def __init__(self, folders: list[Folder], names: list[str]) -> None:
        self.folders = folders
        self.names = names

    @classmethod
    def open(cls, root: str, names: Sequence[str], make_mode: int | None = None) -> FolderPath:
        """Open ``root`` and then each of ``names`` inside the one before.

        With ``make_mode``, missing folders are made: the last with that
        mode, the others and the root with the default mode, as
        ``os.makedirs`` (and so HashFS) makes them.

        Raises:
            FileNotFoundError: a folder is missing (or, with ``make_mode``,
                was removed again by a concurrent delete as it was made).
            NotADirectoryError: a folder on the way is a symlink or a file.
        """
        try:
            folder = Folder.open_root(root)
        except FileNotFoundError:
            if make_mode is None:
                raise
            with contextlib.suppress(FileExistsError):
                os.makedirs(root)
            folder = Folder.open_root(root)
        folders = [folder]
        made = False
        try:
            for number, name in enumerate(names, 1):
                if make_mode is None:
                    folder = folder.child(name)
                else:
                    mode = make_mode if number == len(names) else 0o777
                    folder, made = folder.make_child(name, mode, new=made)
                folders.append(folder)
        except BaseException:
            for opened in folders:
                opened.close()
            raise
        return cls(folders, list(names))

    @property
    def leaf(self) -> Folder:
        return self.folders[-1]

    def remove_empty(self) -> list[str]:
        """Remove the folders from the leaf upwards while they are empty, never the root.

        Returns the paths of those removed.
        """
        removed = []
        for parent, name in zip(reversed(self.folders[:-1]), reversed(self.names), strict=True):
            try:
                parent.rmdir(name)
            except OSError:
                break
            removed.append(parent.join(name))
        return removed

    def close(self) -> None:
        for folder in self.folders:
            folder.close()

    def __enter__(self) -> FolderPath:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
