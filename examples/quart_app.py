"""Demo: a Quart app whose uploads go into a content-addressed store, names into SQLite.

Run ``python3 dev.py demo`` in a checkout (or, once that has made ``.venv``,
``.venv/bin/python examples/quart_app.py``) and open http://127.0.0.1:5000/.

The store keeps bytes under their hash; the app keeps what people know a file
by (name, type, size, time) in SQLite, one row per upload (``demo_files.Upload``),
through SQLAlchemy's asyncio ORM on aiosqlite. The same bytes uploaded under
two names are two rows and one stored file. Deleting a row removes the bytes
only when no row names them any more, through ``sweep``. The page uploads with
Uppy's Dashboard over tus (resumable), from ``static/vendor`` (built from
``frontend/``, no network needed at run time).

Settings come from environment variables: ``HASHFS_ROOT_FOLDER`` (default
``./demo-store``), ``DEMO_DATABASE`` (default: the store's path plus
``.sqlite3``), ``HASHFS_MAX_SIZE`` (bytes per file, default 1 GiB),
``DEMO_SWEEP_GRACE`` (seconds an unnamed stored file is kept, default 300) and
``PORT`` (5000).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
from demo_files import (
    Base,
    Upload,
    cross_site,
    database_path,
    deleted_text,
    grace_seconds,
    listing,
    missing_text,
    page_context,
    secret_key,
    store_config,
    swept_text,
)
from quart import Quart, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from async_hashfs import CompletedUpload, QuartHashFS

HERE = os.path.dirname(os.path.abspath(__file__))
fs = QuartHashFS()


async def record(row: Upload) -> Upload:
    """Write the row of one upload in the current app's database."""
    async with current_app.extensions["demo_sessions"]() as session, session.begin():
        session.add(row)
    return row


@fs.on_upload_complete
async def record_tus_upload(upload: CompletedUpload) -> None:
    """The tus endpoint stored an upload: name it in the database, once.

    The hook runs at least once per upload (again if a request after the last
    byte finds it not done), so a row already written for this upload id stays.
    """
    sessions = current_app.extensions["demo_sessions"]
    async with sessions() as session:
        known = select(Upload.id).where(Upload.upload_id == upload.upload_id)
        if await session.scalar(known) is not None:
            return
    size = (await anyio.Path(upload.address.abspath).stat()).st_size
    row = Upload.of(upload.address, upload.filename, upload.filetype, size, upload.upload_id)
    try:
        await record(row)
    except IntegrityError:  # the same upload's hook, running at the same time, wrote it
        pass


def create_app(root: str | None = None, database: str | None = None) -> Quart:
    """Build the demo app on a store at ``root`` and a SQLite file at ``database``."""
    app = Quart(
        __name__,
        static_folder=os.path.join(HERE, "static"),
        template_folder=os.path.join(HERE, "templates"),
    )
    app.config.update(store_config(root, "demo-store"))
    app.secret_key = secret_key()  # flash() keeps the notice of a form's result in the session
    fs.init_app(app)
    grace = grace_seconds()
    title = "async-hashfs demo (Quart)"
    path = database_path(database, app.config["HASHFS_ROOT_FOLDER"])
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    app.extensions["demo_sessions"] = sessions
    for template in ("base.html", "index.html", "_files.html", "delete.html", "missing.html"):
        app.jinja_env.get_template(template)  # read now, not on the event loop

    @app.before_serving
    async def create_tables() -> None:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)

    @app.after_serving
    async def close_database() -> None:
        await engine.dispose()

    def url_of(row: Upload) -> str:
        return fs.url_for(row.relpath, external=False)

    async def files_now() -> dict[str, Any]:
        """The rows, newest first, and how many stored files they name."""
        async with sessions() as session:
            rows = await session.scalars(
                select(Upload).order_by(Upload.created.desc(), Upload.id.desc())
            )
            stored = await session.scalar(select(func.count(Upload.relpath.distinct()))) or 0
            return listing(rows, stored, url_of)

    async def named_ids(session: AsyncSession) -> AsyncIterator[str]:
        """Every content id a row still names, streamed from the database."""
        async for content_id in await session.stream_scalars(select(Upload.content_id).distinct()):
            yield content_id

    async def sweep() -> list[str]:
        """Remove the stored files no row names, once older than the grace period."""
        removed: list[str] = []
        async with sessions() as session:
            await fs.sweep(
                named_ids(session), older_than=grace, on_remove=lambda a: removed.append(a.id)
            )
        return removed

    async def delete_row(id: int) -> tuple[str, list[str]] | None:
        """Delete row ``id``, then sweep: its name and the ids of the stored files that went
        with it, or ``None`` when there is no such row."""
        async with sessions() as session, session.begin():
            row = await session.get(Upload, id)
            if row is None:
                return None
            name = row.name
            await session.delete(row)
        return name, await sweep()

    async def page(template: str, status: int = 200, **context: Any) -> Any:
        return await render_template(
            template, **page_context(app.config, title), **context
        ), status

    async def missing(id: int) -> Any:
        return await page("missing.html", 404, message=missing_text(id))

    @app.get("/")
    async def index() -> Any:
        return await page("index.html", **await files_now())

    @app.get("/api/files")
    async def api_files() -> Any:
        """The rows as JSON; as the list's HTML for the page's script (``Accept: text/html``)."""
        files = await files_now()
        if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
            return await render_template("_files.html", **files)
        return {"files": files["files"], "stored": files["stored"]}

    @app.delete("/api/files/<int:id>")
    async def api_delete(id: int) -> Any:
        deleted = await delete_row(id)
        if deleted is None:
            return {"error": missing_text(id)}, 404
        return {"deleted": id, "removed": deleted[1]}

    @app.post("/api/sweep")
    async def api_sweep() -> Any:
        return {"removed": await sweep()}

    # The same without JavaScript: a confirmation page, then forms that post.
    @app.get("/uploads/<int:id>/delete")
    async def confirm_delete(id: int) -> Any:
        async with sessions() as session:
            row = await session.get(Upload, id)
        if row is None:
            return await missing(id)
        return await page("delete.html", file=row.as_shown(url_of(row)))

    @app.post("/uploads/<int:id>/delete")
    async def delete_form(id: int) -> Any:
        if cross_site(request.headers, request.host_url):
            abort(403)
        deleted = await delete_row(id)
        if deleted is None:
            return await missing(id)
        await flash(deleted_text(*deleted))
        return redirect(url_for("index"), 303)

    @app.post("/sweep")
    async def sweep_form() -> Any:
        if cross_site(request.headers, request.host_url):
            abort(403)
        await flash(swept_text(await sweep()))
        return redirect(url_for("index"), 303)

    @app.post("/upload")
    async def upload() -> Any:
        """Multipart uploads: the page without JavaScript, ``curl -F file=@NAME``."""
        request.max_content_length = app.config["HASHFS_MAX_SIZE"] + (1 << 20)
        uploads = await fs.put_uploads()
        rows = [
            await record(Upload.of(u.address, u.filename, u.content_type, u.size))
            for _, u in uploads.files.items(multi=True)
        ]
        if request.accept_mimetypes.best == "application/json":
            return {"files": [row.as_json(url_of(row)) for row in rows]}
        return redirect(url_for("index"))

    return app


if __name__ == "__main__":
    # One process on every Quart: 0.23's reloader would run the app in a child
    # process that outlives a SIGTERM sent to this one.
    create_app().run(
        host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), use_reloader=False
    )
