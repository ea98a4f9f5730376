"""``QuartHashFS``: the Quart extension.

Config, ``url_for``, streaming uploads and the app's state live here; the
rules shared with the Flask extension live in ``_config`` and ``_web``.

Quart reads the request body eagerly: a background task appends every ASGI
message to one buffer, however slowly the view consumes it, and its
``MAX_CONTENT_LENGTH`` check only looks at that buffer. ``init_app`` fixes
both for the app with :class:`~async_hashfs._body.BoundedBody`: the body
calls ``receive()`` only while the view waits for bytes, it holds at most
``HASHFS_BODY_BUFFER`` bytes, and all the app's uploads together hold at
most ``HASHFS_UPLOAD_MEMORY`` (so the server stops reading the socket and
TCP pushes back on the clients); the limit counts every byte.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, Literal, overload

import anyio
from quart import Quart, Response, abort, current_app, request
from quart.asgi import ASGIHTTPConnection
from werkzeug.exceptions import HTTPException

from ._address import HashAddress
from ._body import BoundedBody
from ._config import DEFAULTS, EXTENSION, AppState, ExtensionBase, register
from ._engine import GCReport, RepairReport
from ._exceptions import CorruptFile
from ._http import CONDITIONAL_HEADERS, SERVE_CHUNK, prepare
from ._presence import witness
from ._store import AsyncBinaryFile, AsyncFileOpener, AsyncHashFS, AsyncTextFile
from ._sweep import DEFAULT_GRACE, RemovedCallback, SweepReport
from ._tus import NO_BODY_LIMIT, Blocking, FeedBody, TusResponse, TusStep
from ._web import MultipartParser, Uploads, UploadSink, web_errors

__all__ = ["BoundedBody", "QuartHashFS"]

logger = logging.getLogger("async_hashfs")
#: A key only Quart's test client puts in the ASGI scope.
_TEST_CLIENT_SCOPE = "_quart._preserve_context"


class _BoundedConnection(ASGIHTTPConnection):
    """Mixed in before the app's ``asgi_http_class`` by ``init_app``."""

    def _create_request_from_scope(self, send: Any) -> Any:
        req = super()._create_request_from_scope(send)
        # Pinned here so the body can read it without an app context; a view
        # may still change it for its own route.
        config = self.app.config
        req.max_content_length = config["MAX_CONTENT_LENGTH"]

        def limit() -> int | None:
            # Quart falls back to the config only inside an app context, which
            # the receiving task has not: a view setting None means the default.
            value: int | None = req.max_content_length
            return config["MAX_CONTENT_LENGTH"] if value is None else value

        state = self.app.extensions.get(EXTENSION)
        if isinstance(state, AppState):
            body = BoundedBody(
                req.content_length, limit, state.settings.body_buffer, state.store.budget
            )
        else:  # another extension took the key: bounded, without a shared budget
            body = BoundedBody(req.content_length, limit, DEFAULTS["HASHFS_BODY_BUFFER"])
        req.body = self._bounded_body = body  # type: ignore[assignment]
        return req

    async def __call__(self, receive: Any, send: Any) -> None:
        try:
            await super().__call__(receive, send)
        finally:
            body: BoundedBody | None = getattr(self, "_bounded_body", None)
            if body is not None:
                body.close()  # whatever the request still holds of the upload budget

    async def handle_request(self, request: Any, send: Any) -> None:
        body = request.body

        async def send_then_discard(message: Any) -> None:
            # A view may answer before reading the whole body (a 413, a 401).
            # Stop pausing first: with receive() paused, Hypercorn's closing
            # http.disconnect would wait forever for room in its queue.
            if (
                isinstance(body, BoundedBody)
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                body.discard()
            await send(message)

        await super().handle_request(request, send_then_discard)

    async def handle_messages(self, request: Any, receive: Any, *request_task: Any) -> None:
        # Quart 0.22 calls this with (request, receive) and cancels the view
        # itself on return; 0.23 adds the view's task for us to cancel.
        body = request.body
        while True:
            await body.wait_for_space()
            message = await receive()
            if message["type"] == "http.request":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body.set_complete()
            elif message["type"] == "http.disconnect":
                if request_task:
                    body.disconnect()
                    self._disconnected = True
                    request_task[0].cancel()
                # Quart < 0.23 cancels the view once this returns. Failing its body
                # reads here first would race that cancel: on Python 3.10 anyio cannot
                # tell it from its own, and the store's task group swallows it.
                return


class QuartHashFS(ExtensionBase):
    """A content-addressable store for a Quart app, configured by ``HASHFS_*`` keys.

    Use it like Flask-HashFS, with ``await``::

        fs = QuartHashFS(app)

        @app.post("/upload")
        async def upload():
            address = await fs.put(request.body, extension="jpg")
            return {"url": fs.url_for(address.relpath)}

    Each store operation is an ``async`` method here, with hashfs's
    parameter names; ``fs.store`` is the app's :class:`AsyncHashFS`.
    """

    def __init__(self, app: Quart | None = None) -> None:
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Quart) -> None:
        """Read the app's config, create the root folder and register the store.

        Raises:
            ValueError: a missing or invalid ``HASHFS_*`` value.

        Called again on the same app, it starts over from the app's config,
        as Flask-HashFS does.
        """
        register(
            app,
            lambda s: AsyncHashFS(
                s.root_folder,
                **s.store_options(),
                limiter=s.threads,
                upload_memory=s.upload_memory,
            ),
            _serve_file,
            self._tus_view,
        )
        base = app.asgi_http_class
        if not issubclass(base, _BoundedConnection):
            app.asgi_http_class = type(f"Bounded{base.__name__}", (_BoundedConnection, base), {})

    # -- the current app's store ---------------------------------------------

    _name = "QuartHashFS"

    def _current_app(self) -> Any:
        return current_app

    def _request_host(self) -> str:
        return request.host_url

    @property
    def store(self) -> AsyncHashFS:
        """The app's :class:`AsyncHashFS`."""
        store: AsyncHashFS = self._state.store
        return store

    # -- operations: the store's, on the current app, with hashfs's names -------

    async def put(self, file: object, extension: str | None = None) -> HashAddress:
        """Store ``file`` (``request.body``, a ``FileStorage``, bytes, ...) and return its address.

        Raises:
            BodyTooLarge: past ``MAX_CONTENT_LENGTH`` or ``HASHFS_MAX_SIZE`` (413).
            BadExtension: ``extension`` is not a safe token (400).
            InvalidSource: ``file`` cannot be read.
        """
        with web_errors():
            return await self.store.put(file, extension=extension)

    async def get(self, file: object) -> HashAddress | None:
        """Return the address of ``file`` (an id, relpath or abspath), or ``None``."""
        return await self.store.get(file)

    @overload
    def open(
        self, file: object, mode: Literal["rb", "br"] = "rb"
    ) -> AsyncFileOpener[AsyncBinaryFile]: ...
    @overload
    def open(
        self, file: object, mode: Literal["r", "rt", "tr"]
    ) -> AsyncFileOpener[AsyncTextFile]: ...
    @overload
    def open(
        self, file: object, mode: str
    ) -> AsyncFileOpener[AsyncBinaryFile] | AsyncFileOpener[AsyncTextFile]: ...
    def open(
        self, file: object, mode: str = "rb"
    ) -> AsyncFileOpener[AsyncBinaryFile] | AsyncFileOpener[AsyncTextFile]:
        """Open a stored file: ``await fs.open(file)`` or ``async with fs.open(file)``.

        Raises:
            ReadOnlyError: ``mode`` would write (raised at once).
            NotFound: no stored file answers to ``file`` (when awaited).
        """
        return self.store.open(file, mode=mode)

    async def delete(self, file: object) -> None:
        """Remove a stored file and the folders it leaves empty; no error when missing."""
        await self.store.delete(file)
        self._state.presence.forget()

    async def exists(self, file: object) -> bool:
        """Return whether ``file`` names a stored file."""
        return await self.store.exists(file)

    def files(self) -> AsyncIterator[str]:
        """Yield the absolute path of every stored file: ``async for path in fs.files()``."""
        return self.store.files()

    def folders(self) -> AsyncIterator[str]:
        """Yield every folder that holds files."""
        return self.store.folders()

    async def count(self) -> int:
        """Return how many files the store holds."""
        return await self.store.count()

    async def size(self) -> int:
        """Return the total size in bytes of the stored files."""
        return await self.store.size()

    async def computehash(self, stream: object) -> str:
        """Return the hex digest of ``stream`` (any blocking ``put()`` source)."""
        return await self.store.computehash(stream)

    async def verify(self, file: object) -> bool:
        """Return whether the bytes of ``file`` still hash to its address.

        Raises:
            NotFound: no stored file answers to ``file``.
        """
        return await self.store.verify(file)

    def corrupted(self, extensions: bool = True) -> AsyncIterator[tuple[str, HashAddress]]:
        """Yield ``(path, expected address)`` for each file not at its content address."""
        return self.store.corrupted(extensions)

    async def repair(
        self, extensions: bool = True, foreign: Literal["move", "refuse"] = "move"
    ) -> RepairReport:
        """Move misplaced files to their content address; see :meth:`AsyncHashFS.repair`."""
        moved = await self.store.repair(extensions, foreign)
        self._state.presence.forget()
        return moved

    async def remove_empty(self, subpath: str) -> None:
        """Remove folder ``subpath`` and its parents while empty, stopping at the root."""
        await self.store.remove_empty(subpath)

    async def gc(self, older_than: float = 0.0) -> GCReport:
        """Remove temp files of dead writers and empty folders."""
        return await self.store.gc(older_than)

    async def sweep(
        self,
        keep: Iterable[str] | AsyncIterable[str],
        older_than: float = DEFAULT_GRACE,
        *,
        dry_run: bool = False,
        on_remove: RemovedCallback | None = None,
    ) -> SweepReport:
        """Remove stored files whose id is not in ``keep``, older than ``older_than`` seconds.

        ``keep`` streams the ids the app still refers to (a database query);
        see :meth:`AsyncHashFS.sweep`.
        """
        report = await self.store.sweep(keep, older_than, dry_run=dry_run, on_remove=on_remove)
        if report.removed and not dry_run:
            self._state.presence.forget()
        return report

    async def put_uploads(self) -> Uploads:
        """Store every file of the current multipart/form-data request as it arrives.

        Each file part streams straight into the store; the extension comes
        from its filename when that is a safe one. Text fields are collected.

        Raises:
            MalformedUpload: the body is not valid multipart/form-data (400).
            BodyTooLarge: past ``MAX_CONTENT_LENGTH`` or ``HASHFS_MAX_SIZE`` (413).
        """
        parser = MultipartParser(
            request.headers.get("Content-Type"),
            max_form_memory_size=request.max_form_memory_size,
            max_parts=request.max_form_parts,
        )
        store = self.store
        sink = UploadSink(store._engine, parser)
        with web_errors():
            try:
                await store._pump(request.body, sink.feed)
                return await store._run(sink.close)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await store._run(sink.abort)
                raise

    # -- the tus endpoint (HASHFS_TUS_PREFIX) ----------------------------------

    async def _tus_view(self, upload_id: str | None = None) -> Response:
        """The tus endpoint: the creation URL (``upload_id`` None) and each upload's URL."""
        exchange = self._tus_exchange(request, upload_id, (HTTPException,))
        if exchange is None:
            abort(404)
        step = exchange.first()
        while not isinstance(step, TusResponse):
            try:
                result = await self._tus_step(step)
            except BaseException as exc:
                step = exchange.throw(exc)
            else:
                step = exchange.send(result)
        return _tus_response(step)

    async def _tus_step(self, step: TusStep) -> Any:
        """Carry out one step of a tus request (see :class:`~async_hashfs._tus.TusExchange`)."""
        if isinstance(step, Blocking):
            if step.shielded:
                with anyio.CancelScope(shield=True):
                    return await self.store._run(step.func, *step.args)
            return await self.store._run(step.func, *step.args)
        if isinstance(step, FeedBody):
            request.max_content_length = NO_BODY_LIMIT
            idle = self._state.settings.tus_idle_timeout
            body = request.body if idle is None else _idle_bounded(request.body, idle)
            await self.store._pump(body, step.transfer.write)
            return None
        return await current_app.ensure_async(step.hook)(*step.args)


async def _idle_bounded(body: Any, idle: float) -> AsyncIterator[bytes]:
    """The chunks of ``body``, ending with :class:`TimeoutError` once none came for ``idle`` s.

    A client whose network died without closing the connection would hold its
    upload's lock as long as the server keeps the connection (Hypercorn: for
    ever); ended, the PATCH keeps what arrived and lets another take over.
    """
    chunks = body.__aiter__()
    while True:
        with anyio.fail_after(idle):
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
        yield chunk


def _tus_response(response: TusResponse) -> Response:
    if response.body and request.method != "HEAD":
        result = Response(response.body, response.status, response.headers)
        result.headers["Content-Type"] = "text/plain; charset=utf-8"
        return result
    result = Response(_Bytes(b""), response.status, response.headers)
    del result.headers["Content-Type"]
    if request.method != "HEAD" and response.status not in (204, 304):
        result.headers["Content-Length"] = "0"  # an empty body, not an empty chunked one
    return result


async def _serve_file(relpath: str) -> Response:
    """The serving route: a stored file by its content address, with HTTP's file rules.

    Opening, planning and (for a small or empty body) reading and closing
    take one worker-thread hop; a large body streams one hop per MiB. A
    revalidation of a file answered 304 before takes no hop while the
    folders down to it are unchanged (``_presence``).
    """
    state: AppState = current_app.extensions[EXTENSION]
    store: AsyncHashFS = state.store
    settings = state.settings
    rule = request.url_rule
    if not settings.serves(None if rule is None else rule.rule):
        abort(404)  # a route an earlier init_app added, with other settings
    not_modified = state.presence.not_modified(relpath, request.method, request.headers.get)
    if not_modified is not None:
        response = Response(_Bytes(b""), 304, not_modified)
        del response.headers["Content-Type"]
        return response
    headers = {name: request.headers.get(name) for name in CONDITIONAL_HEADERS}
    try:
        prepared = await store._run(
            prepare,
            store._engine,
            relpath,
            request.method,
            headers,
            request.args.get("download"),
            settings.offload(store.layout.abspath(relpath), relpath),
            settings.verify_on_read,
            settings.s3_redirect,
            # A server drops a HEAD's body, so reading the file for it is waste;
            # Quart's test client instead rebuilds Content-Length from the body.
            _TEST_CLIENT_SCOPE in request.scope,
            functools.partial(witness, store.root, relpath),
        )
    except CorruptFile as exc:
        logger.error("refusing to serve a corrupt file: %s", exc)
        abort(500)
    if prepared is None:
        abort(404)
    plan = prepared.plan
    state.presence.seen(relpath, plan.headers, prepared.witness)
    body: Any = (
        _FileBody(store, prepared.blob, plan.start, plan.end)
        if prepared.blob is not None
        else _Bytes(prepared.body)
    )
    response = Response(body, plan.status, plan.headers)
    response.timeout = None  # a large file may take longer than RESPONSE_TIMEOUT
    if "Content-Type" not in plan.headers:
        del response.headers["Content-Type"]
    return response


class _Bytes:
    """A body already in hand (an iterable, so Quart keeps our Content-Length)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> _Bytes:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, b""
        if not data:
            raise StopAsyncIteration
        return data


class _FileBody:
    """Bytes ``[start, end)`` of an open blob, read one worker-thread hop per chunk.

    The last read closes the file in the same hop; Quart calls ``aclose()``
    however the response ends, which closes it when the reads did not finish.
    """

    def __init__(self, store: AsyncHashFS, file: Any, start: int, end: int) -> None:
        self._store = store
        self._file = file
        self._position = start
        self._end = end

    def __aiter__(self) -> _FileBody:
        return self

    def _read(self) -> bytes:
        size = min(SERVE_CHUNK, self._end - self._position)
        data: bytes = self._file.pread(size, self._position)
        self._position += len(data)
        if not data or self._position >= self._end:
            self._file.close()
        return data

    async def __anext__(self) -> bytes:
        if self._file.closed:
            raise StopAsyncIteration
        data: bytes = await self._store._run(self._read, read_only=True)
        if not data:
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        if not self._file.closed:
            with anyio.CancelScope(shield=True):
                await self._store._run(self._file.close)
