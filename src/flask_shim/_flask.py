"""``FlaskHashFS``: the Flask extension, a drop-in for ``flask_hashfs.FlaskHashFS``.

It mirrors :class:`async_hashfs.QuartHashFS` method for method, without
``await``; the rules both share live in ``async_hashfs._config`` and
``async_hashfs._web``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO, Literal, TextIO, overload

from flask import Flask, Response, abort, current_app, request
from werkzeug.exceptions import ClientDisconnected, HTTPException
from werkzeug.wsgi import wrap_file

from async_hashfs._address import HashAddress
from async_hashfs._config import EXTENSION, AppState, ExtensionBase, register
from async_hashfs._engine import GCReport, RepairReport
from async_hashfs._exceptions import CorruptFile
from async_hashfs._http import CONDITIONAL_HEADERS, SERVE_CHUNK, FileRange, prepare
from async_hashfs._sweep import DEFAULT_GRACE, RemovedCallback, SweepReport
from async_hashfs._sync import SyncHashFS
from async_hashfs._tus import NO_BODY_LIMIT, Blocking, FeedBody, TusResponse, TusStep
from async_hashfs._web import (
    BodyTooLarge,
    ChunkedBodyUnsupported,
    MultipartParser,
    Uploads,
    UploadSink,
    web_errors,
)

__all__ = ["FlaskHashFS"]

logger = logging.getLogger("async_hashfs")
_CHUNK = 1 << 20


class FlaskHashFS(ExtensionBase):
    """A content-addressable store for a Flask app, configured by ``HASHFS_*`` keys.

    A drop-in for Flask-HashFS: same config keys, errors and URLs, and the
    store's operations with hashfs's parameter names, on the app's
    :class:`~async_hashfs.SyncHashFS` (``fs.store``).
    """

    def __init__(self, app: Flask | None = None) -> None:
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read the app's config, create the root folder and register the store.

        Raises:
            ValueError: a missing or invalid ``HASHFS_*`` value.

        Called again on the same app, it starts over from the app's config,
        as Flask-HashFS does.
        """
        register(
            app,
            lambda s: SyncHashFS(s.root_folder, **s.store_options()),
            _serve_file,
            self._tus_view,
        )

    # -- the current app's store ---------------------------------------------

    _name = "FlaskHashFS"

    def _current_app(self) -> Any:
        return current_app

    def _request_host(self) -> str:
        return request.host_url

    @property
    def store(self) -> SyncHashFS:
        """The app's :class:`~async_hashfs.SyncHashFS`."""
        store: SyncHashFS = self._state.store
        return store

    # -- operations: the store's, on the current app, with hashfs's names -------

    def put(self, file: object, extension: str | None = None) -> HashAddress:
        """Store ``file`` (``request.stream``, a ``FileStorage``, bytes...) and return its address.

        ``request.stream`` is read straight from the server, chunked bodies
        included, counting every byte against ``MAX_CONTENT_LENGTH``.

        Raises:
            BodyTooLarge: past ``MAX_CONTENT_LENGTH`` or ``HASHFS_MAX_SIZE`` (413).
            BadExtension: ``extension`` is not a safe token (400).
            ChunkedBodyUnsupported: a chunked body the server cannot pass on (411).
            InvalidSource: ``file`` cannot be read.
        """
        if _is_request_stream(file):
            file = request_body()
        with web_errors():
            return self.store.put(file, extension=extension)

    def get(self, file: object) -> HashAddress | None:
        """Return the address of ``file`` (an id, relpath or abspath), or ``None``."""
        return self.store.get(file)

    @overload
    def open(self, file: object, mode: Literal["rb", "br"] = "rb") -> BinaryIO: ...
    @overload
    def open(self, file: object, mode: Literal["r", "rt", "tr"]) -> TextIO: ...
    @overload
    def open(self, file: object, mode: str) -> IO[Any]: ...
    def open(self, file: object, mode: str = "rb") -> IO[Any]:
        """Open a stored file for reading (a ``BufferedReader`` for ``"rb"``).

        Raises:
            ReadOnlyError: ``mode`` would write.
            NotFound: no stored file answers to ``file`` (an ``IOError``).
        """
        return self.store.open(file, mode=mode)

    def delete(self, file: object) -> None:
        """Remove a stored file and the folders it leaves empty; no error when missing."""
        self.store.delete(file)
        self._state.presence.forget()

    def exists(self, file: object) -> bool:
        """Return whether ``file`` names a stored file."""
        return self.store.exists(file)

    def files(self) -> Iterator[str]:
        """Yield the absolute path of every stored file."""
        return self.store.files()

    def folders(self) -> Iterator[str]:
        """Yield every folder that holds files."""
        return self.store.folders()

    def count(self) -> int:
        """Return how many files the store holds."""
        return self.store.count()

    def size(self) -> int:
        """Return the total size in bytes of the stored files."""
        return self.store.size()

    def computehash(self, stream: object) -> str:
        """Return the hex digest of ``stream`` (any ``put()`` source)."""
        return self.store.computehash(stream)

    def verify(self, file: object) -> bool:
        """Return whether the bytes of ``file`` still hash to its address.

        Raises:
            NotFound: no stored file answers to ``file``.
        """
        return self.store.verify(file)

    def corrupted(self, extensions: bool = True) -> Iterator[tuple[str, HashAddress]]:
        """Yield ``(path, expected address)`` for each file not at its content address."""
        return self.store.corrupted(extensions)

    def repair(
        self, extensions: bool = True, foreign: Literal["move", "refuse"] = "move"
    ) -> RepairReport:
        """Move misplaced files to their address; see :meth:`async_hashfs.SyncHashFS.repair`."""
        moved = self.store.repair(extensions, foreign)
        self._state.presence.forget()
        return moved

    def remove_empty(self, subpath: str) -> None:
        """Remove folder ``subpath`` and its parents while empty, stopping at the root."""
        self.store.remove_empty(subpath)

    def gc(self, older_than: float = 0.0) -> GCReport:
        """Remove temp files of dead writers and empty folders."""
        return self.store.gc(older_than)

    def sweep(
        self,
        keep: Iterable[str],
        older_than: float = DEFAULT_GRACE,
        *,
        dry_run: bool = False,
        on_remove: RemovedCallback | None = None,
    ) -> SweepReport:
        """Remove stored files whose id is not in ``keep``, older than ``older_than`` seconds.

        ``keep`` streams the ids the app still refers to (a database query);
        see :meth:`async_hashfs.SyncHashFS.sweep`.
        """
        report = self.store.sweep(keep, older_than, dry_run=dry_run, on_remove=on_remove)
        if report.removed and not dry_run:
            self._state.presence.forget()
        return report

    def relpath(self, path: str) -> str:
        """Return ``path`` relative to the root."""
        return self.store.relpath(path)

    def realpath(self, file: object) -> str | None:
        """Return the absolute path of the stored file ``file`` names, or ``None``."""
        return self.store.realpath(file)

    def haspath(self, path: str) -> bool:
        """Return whether ``path`` is inside the root, symlinks resolved."""
        return self.store.haspath(path)

    def makepath(self, path: str) -> None:
        """Create folder ``path`` with the store's ``dmode``."""
        self.store.makepath(path)

    def put_uploads(self) -> Uploads:
        """Store every file of the current multipart/form-data request as it arrives.

        Raises:
            MalformedUpload: the body is not valid multipart/form-data (400).
            BodyTooLarge: past ``MAX_CONTENT_LENGTH`` or ``HASHFS_MAX_SIZE`` (413).
        """
        parser = MultipartParser(
            request.headers.get("Content-Type"),
            max_form_memory_size=request.max_form_memory_size,
            max_parts=request.max_form_parts,
        )
        sink = UploadSink(self.store._engine, parser)
        with web_errors():
            try:
                for chunk in request_body():
                    sink.feed((chunk,))
                return sink.close()
            except BaseException:
                sink.abort()
                raise

    # -- the tus endpoint (HASHFS_TUS_PREFIX) ----------------------------------

    def _tus_view(self, upload_id: str | None = None) -> Response:
        """The tus endpoint: the creation URL (``upload_id`` None) and each upload's URL."""
        exchange = self._tus_exchange(request, upload_id, (HTTPException,))
        if exchange is None:
            abort(404)
        step = exchange.first()
        while not isinstance(step, TusResponse):
            try:
                result = self._tus_step(step)
            except BaseException as exc:
                step = exchange.throw(exc)
            else:
                step = exchange.send(result)
        return _tus_response(step)

    def _tus_step(self, step: TusStep) -> Any:
        """Carry out one step of a tus request (see :class:`~async_hashfs._tus.TusExchange`)."""
        if isinstance(step, Blocking):
            return step.func(*step.args)
        if isinstance(step, FeedBody):
            request.max_content_length = NO_BODY_LIMIT
            for chunk in request_body():
                step.transfer.write((chunk,))
            return None
        return step.hook(*step.args)


def _tus_response(response: TusResponse) -> Response:
    body = response.body if request.method != "HEAD" else ""
    result = Response(body, response.status, response.headers)
    if body:
        result.headers["Content-Type"] = "text/plain; charset=utf-8"
    else:
        del result.headers["Content-Type"]
    return result


def _serve_file(relpath: str) -> Response:
    """The serving route: a stored file by its content address, with HTTP's file rules."""
    state: AppState = current_app.extensions[EXTENSION]
    store: SyncHashFS = state.store
    settings = state.settings
    rule = request.url_rule
    if not settings.serves(None if rule is None else rule.rule):
        abort(404)  # a route an earlier init_app added, with other settings
    try:
        prepared = prepare(
            store._engine,
            relpath,
            request.method,
            {name: request.headers.get(name) for name in CONDITIONAL_HEADERS},
            request.args.get("download"),
            settings.offload(store.layout.abspath(relpath), relpath),
            settings.verify_on_read,
            settings.s3_redirect,
        )
    except CorruptFile as exc:
        logger.error("refusing to serve a corrupt file: %s", exc)
        abort(500)
    if prepared is None:
        abort(404)
    plan = prepared.plan
    blob = prepared.blob
    body: Any = [prepared.body] if prepared.body else []
    if blob is not None and plan.status == 200 and getattr(blob, "file", None) is not None:
        # The server's wsgi.file_wrapper may send it with sendfile (gunicorn does).
        body = wrap_file(request.environ, blob.file, SERVE_CHUNK)
    elif blob is not None:
        body = FileRange(blob, plan.start, plan.end)
    response = Response(body, plan.status, plan.headers, direct_passthrough=True)
    if "Content-Type" not in plan.headers:
        del response.headers["Content-Type"]
    return response


def _is_request_stream(src: object) -> bool:
    if not request:
        return False
    # ``stream`` is a cached property: it is in __dict__ once the view took it.
    stream = vars(request._get_current_object()).get("stream")  # type: ignore[attr-defined]
    return stream is not None and src is stream


def request_body() -> Iterator[bytes]:
    """Yield the current request's body from the WSGI server, in chunks.

    Counts every byte against ``request.max_content_length``; reads chunked
    bodies when the server terminates the stream (``wsgi.input_terminated``).

    Raises:
        BodyTooLarge: more bytes than ``request.max_content_length`` (413).
        ChunkedBodyUnsupported: chunked, and the server cannot pass it on (411).
        ClientDisconnected: the body ended before its Content-Length (400).
    """
    environ = request.environ
    limit = request.max_content_length
    length = request.content_length
    if limit is not None and length is not None and length > limit:
        raise BodyTooLarge(limit)
    stream = environ["wsgi.input"]
    remaining: int | None = length
    if environ.get("wsgi.input_terminated"):
        remaining = None
    elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        raise ChunkedBodyUnsupported()
    elif length is None:
        return iter(())
    return _read(stream, remaining, limit)


def _read(stream: Any, remaining: int | None, limit: int | None) -> Iterator[bytes]:
    total = 0
    while remaining is None or remaining > 0:
        data = stream.read(_CHUNK if remaining is None else min(_CHUNK, remaining))
        if not data:
            if remaining:
                raise ClientDisconnected()
            return
        total += len(data)
        if limit is not None and total > limit:
            raise BodyTooLarge(limit)
        if remaining is not None:
            remaining -= len(data)
        yield data
