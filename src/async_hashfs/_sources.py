"""Turn whatever ``put()`` is given into chunks of bytes.

Blocking sources (bytes, paths, file objects, iterables) become a context
manager over an iterator of bytes-like chunks, read in the caller's thread
(or one worker thread on the async store). Async sources are recognised here
and read by the async store.
"""

from __future__ import annotations

import errno
import inspect
import io
import os
import stat
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from ._engine import CHUNK_SIZE, source_error
from ._exceptions import InvalidSource

__all__ = [
    "async_chunks",
    "blocking_chunks",
    "close_async_source",
    "is_async_source",
    "settle_chunk",
    "unwrap_async_file",
]

_BYTES_LIKE = (bytes, bytearray, memoryview)


def _file_storage_stream(src: object) -> Any:
    # Werkzeug's and Quart's FileStorage: the bytes are in ``.stream``.
    if hasattr(src, "stream") and hasattr(src, "filename") and hasattr(src, "save"):
        return src.stream
    return None


def unwrap_async_file(src: object) -> Any:
    """Return the blocking file inside an aiofiles or anyio async file, else ``None``."""
    read = getattr(src, "read", None)
    if read is None or not inspect.iscoroutinefunction(read):
        return None
    for attribute in ("wrapped", "_file"):  # anyio.AsyncFile, aiofiles
        inner = getattr(src, attribute, None)
        if inner is not None and hasattr(inner, "read"):
            return inner
    return None


def is_async_source(src: object) -> bool:
    """Return whether ``src`` must be read with ``await`` (and has no blocking inside)."""
    if isinstance(src, (*_BYTES_LIKE, str, os.PathLike)) or _file_storage_stream(src) is not None:
        return False
    read = getattr(src, "read", None)
    if read is not None:
        return inspect.iscoroutinefunction(read) and unwrap_async_file(src) is None
    return hasattr(src, "__aiter__")


def async_chunks(src: Any) -> tuple[Callable[[], Awaitable[Any]], bool]:
    """Return ``(take, reads)`` for an async iterable or an async file without a blocking inside.

    ``await take()`` gives the source's next item as it comes: one
    ``read(CHUNK_SIZE)`` of a file (``reads`` is true; an empty read is the
    end), or the next item of an iterable (an empty item is skipped; the end is
    ``StopAsyncIteration``). Pass each item to :func:`settle_chunk` unless it
    is ``bytes``. No generator wraps the source, so each chunk costs the
    caller one ``await`` of the source's own method.
    """
    read = getattr(src, "read", None)
    if read is not None:
        return partial(read, CHUNK_SIZE), True
    return aiter(src).__anext__, False


def settle_chunk(chunk: object, reads: bool) -> Any:
    """Return a chunk that is not ``bytes`` as something safe to queue for a writer.

    An item of an iterable is copied to ``bytes``: a source that refills one
    buffer must not rewrite what waits to be written. What a file's ``read``
    returns is new each time and kept as it is.

    Raises:
        InvalidSource: ``chunk`` is not bytes-like or ``str``, or is a
            non-contiguous memoryview.
    """
    settled = _as_bytes(chunk)
    if reads or isinstance(settled, bytes):
        return settled
    return bytes(settled)


async def close_async_source(src: object) -> None:
    """Close ``src`` if it is an async generator: its own cleanup runs now, not at collection."""
    if inspect.isasyncgen(src):
        await src.aclose()


def _as_bytes(chunk: object) -> Any:
    if isinstance(chunk, _BYTES_LIKE):
        return _contiguous(chunk)
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    raise InvalidSource(f"put() source yielded {type(chunk).__name__}, expected bytes")


def _contiguous(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """Return ``data``, refusing a memoryview that is not one contiguous run of bytes."""
    if isinstance(data, memoryview) and not data.c_contiguous:
        raise InvalidSource(
            "put() cannot hash a non-contiguous memoryview; pass view.tobytes() instead"
        )
    return data


@contextmanager
def blocking_chunks(src: object) -> Iterator[Iterable[Any]]:
    """Open ``src`` and give an iterator over its bytes.

    A path is opened and closed here. A file object is read from its start and
    put back where it was, as HashFS does; one that cannot seek is read from
    where it is. A text file gives the UTF-8 encoding of what it reads (as
    HashFS stores it), so its newlines and encoding may differ from the bytes
    on disk; a path or a binary file gives the bytes as they are.

    Raises:
        InvalidSource: ``src`` is not something ``put()`` reads: a path that
            is not a regular file (a FIFO, device, socket or folder, refused
            without waiting), a closed file, a text file that cannot be
            decoded, or a non-contiguous memoryview.
    """
    if isinstance(src, _BYTES_LIKE):
        yield (_contiguous(src),)
        return
    if isinstance(src, (str, os.PathLike)):
        with _open_path(src) as file:
            yield _read_chunks(file)
        return
    stream = _file_storage_stream(src)
    if stream is not None:
        src = stream
    inner = unwrap_async_file(src)
    if inner is not None:
        src = inner
    if hasattr(src, "read"):
        if inspect.iscoroutinefunction(src.read):
            raise InvalidSource("an async file needs the async store: await AsyncHashFS.put()")
        if getattr(src, "closed", False) is True:
            raise InvalidSource(f"put() cannot read a closed file: {src!r}")
        with _rewound(src):
            yield _read_chunks(src)
        return
    if hasattr(src, "__aiter__") and not hasattr(src, "__iter__"):
        raise InvalidSource("an async iterable needs the async store: await AsyncHashFS.put()")
    if isinstance(src, Iterable) and not isinstance(src, dict):
        yield map(_as_bytes, src)
        return
    raise source_error(src)


#: Opening a FIFO without O_NONBLOCK waits for a writer; with it, it returns at once.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


@contextmanager
def _open_path(path: str | os.PathLike[str]) -> Iterator[io.FileIO]:
    name = os.fsdecode(path)
    if not hasattr(os, "O_NONBLOCK"):
        # No FIFOs to wait on there, but check the kind before opening all the same.
        try:
            mode = os.stat(path).st_mode
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise InvalidSource(f"{name!r} is not a file") from exc
        if not stat.S_ISREG(mode):
            raise InvalidSource(f"{name!r} is not a regular file")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise InvalidSource(f"{name!r} is not a file") from exc
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO nobody reads
            raise InvalidSource(f"{name!r} is not a regular file") from exc
        raise
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise InvalidSource(f"{name!r} is not a regular file")
    with open(fd, "rb", buffering=0) as file:
        yield file


@contextmanager
def _rewound(file: Any) -> Iterator[None]:
    try:
        seekable = file.seekable()
    except (AttributeError, ValueError, OSError):
        seekable = False
    if not seekable:
        yield
        return
    position = file.tell()
    file.seek(0)
    try:
        yield
    finally:
        file.seek(position)


def _read_chunks(file: Any) -> Iterator[Any]:
    readinto = getattr(file, "readinto", None)
    if readinto is not None and not isinstance(file, io.TextIOBase):
        buffer = bytearray(CHUNK_SIZE)
        view = memoryview(buffer)
        while n := readinto(buffer):
            yield view[:n]
        return
    try:
        while chunk := file.read(CHUNK_SIZE):
            yield _as_bytes(chunk)
    except UnicodeDecodeError as exc:
        encoding = getattr(file, "encoding", None) or "its encoding"
        raise InvalidSource(
            f"put() cannot decode the text file {getattr(file, 'name', file)!r} as "
            f"{encoding} ({exc.reason} at byte {exc.start}); open it in binary mode ('rb') "
            "to store its bytes as they are"
        ) from exc
