"""Demo: the same app on Flask, through ``flask_shim.FlaskHashFS`` and Flask-SQLAlchemy.

Run ``python3 dev.py flask-demo`` in a checkout (or, once that has made
``.venv``, ``.venv/bin/python examples/flask_app.py``) and open
http://127.0.0.1:5001/. It matches the Quart demo (``quart_app.py``) feature
for feature, on the same table (``demo_files.Upload``) and the same page: bytes
in the store under their hash, one row per upload in SQLite, downloads under
the original name, deletes that leave shared bytes, uploads with Uppy over tus.
Settings come from the same environment variables, with their own defaults:
``HASHFS_ROOT_FOLDER`` (``./demo-store-flask``), ``DEMO_DATABASE`` (the
store's path plus ``.sqlite3``), ``HASHFS_MAX_SIZE``, ``DEMO_SWEEP_GRACE`` and
``PORT`` (5001).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

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
from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from async_hashfs import CompletedUpload
from flask_shim import FlaskHashFS

HERE = os.path.dirname(os.path.abspath(__file__))
fs = FlaskHashFS()
db = SQLAlchemy(metadata=Base.metadata)  # the shared table, on Flask-SQLAlchemy's session


def record(row: Upload) -> Upload:
    """Write the row of one upload."""
    db.session.add(row)
    db.session.commit()
    return row


@fs.on_upload_complete
def record_tus_upload(upload: CompletedUpload) -> None:
    """The tus endpoint stored an upload: name it in the database, once.

    The hook runs at least once per upload (again if a request after the last
    byte finds it not done), so a row already written for this upload id stays.
    """
    known = select(Upload.id).where(Upload.upload_id == upload.upload_id)
    if db.session.scalar(known) is not None:
        return
    size = os.path.getsize(upload.address.abspath)
    row = Upload.of(upload.address, upload.filename, upload.filetype, size, upload.upload_id)
    try:
        record(row)
    except IntegrityError:  # the same upload's hook, running at the same time, wrote it
        db.session.rollback()


def create_app(root: str | None = None, database: str | None = None) -> Flask:
    """Build the demo app on a store at ``root`` and a SQLite file at ``database``."""
    app = Flask(
        __name__,
        static_folder=os.path.join(HERE, "static"),
        template_folder=os.path.join(HERE, "templates"),
    )
    app.config.update(store_config(root, "demo-store-flask"))
    path = database_path(database, app.config["HASHFS_ROOT_FOLDER"])
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{path}"
    app.secret_key = secret_key()  # flash() keeps the notice of a form's result in the session
    fs.init_app(app)
    db.init_app(app)
    grace = grace_seconds()
    title = "async-hashfs demo (Flask)"
    with app.app_context():
        db.create_all()

    def url_of(row: Upload) -> str:
        return fs.url_for(row.relpath, external=False)

    def files_now() -> dict[str, Any]:
        """The rows, newest first, and how many stored files they name."""
        rows = db.session.scalars(select(Upload).order_by(Upload.created.desc(), Upload.id.desc()))
        stored = db.session.scalar(select(func.count(Upload.relpath.distinct()))) or 0
        return listing(rows, stored, url_of)

    def named_ids() -> Iterator[str]:
        """Every content id a row still names, streamed from the database."""
        query = select(Upload.content_id).distinct().execution_options(yield_per=1000)
        yield from db.session.scalars(query)

    def sweep() -> list[str]:
        """Remove the stored files no row names, once older than the grace period."""
        removed: list[str] = []
        fs.sweep(named_ids(), older_than=grace, on_remove=lambda a: removed.append(a.id))
        return removed

    def delete_row(row: Upload) -> list[str]:
        """Delete a row, then sweep: the ids of the stored files that went with it."""
        db.session.delete(row)
        db.session.commit()
        return sweep()

    def page(template: str, status: int = 200, **context: Any) -> Any:
        return render_template(template, **page_context(app.config, title), **context), status

    def missing(id: int) -> Any:
        return page("missing.html", 404, message=missing_text(id))

    @app.get("/")
    def index() -> Any:
        return page("index.html", **files_now())

    @app.get("/api/files")
    def api_files() -> Any:
        """The rows as JSON; as the list's HTML for the page's script (``Accept: text/html``)."""
        files = files_now()
        if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
            return render_template("_files.html", **files)
        return {"files": files["files"], "stored": files["stored"]}

    @app.delete("/api/files/<int:id>")
    def api_delete(id: int) -> Any:
        row = db.session.get(Upload, id)
        if row is None:
            return {"error": missing_text(id)}, 404
        return {"deleted": id, "removed": delete_row(row)}

    @app.post("/api/sweep")
    def api_sweep() -> Any:
        return {"removed": sweep()}

    # The same without JavaScript: a confirmation page, then forms that post.
    @app.get("/uploads/<int:id>/delete")
    def confirm_delete(id: int) -> Any:
        row = db.session.get(Upload, id)
        if row is None:
            return missing(id)
        return page("delete.html", file=row.as_shown(url_of(row)))

    @app.post("/uploads/<int:id>/delete")
    def delete_form(id: int) -> Any:
        if cross_site(request.headers, request.host_url):
            abort(403)
        row = db.session.get(Upload, id)
        if row is None:
            return missing(id)
        name = row.name
        flash(deleted_text(name, delete_row(row)))
        return redirect(url_for("index"), 303)

    @app.post("/sweep")
    def sweep_form() -> Any:
        if cross_site(request.headers, request.host_url):
            abort(403)
        flash(swept_text(sweep()))
        return redirect(url_for("index"), 303)

    @app.post("/upload")
    def upload() -> Any:
        """Multipart uploads: the page without JavaScript, ``curl -F file=@NAME``."""
        request.max_content_length = app.config["HASHFS_MAX_SIZE"] + (1 << 20)
        uploads = fs.put_uploads()
        rows = [
            record(Upload.of(u.address, u.filename, u.content_type, u.size))
            for _, u in uploads.files.items(multi=True)
        ]
        if request.accept_mimetypes.best == "application/json":
            return {"files": [row.as_json(url_of(row)) for row in rows]}
        return redirect(url_for("index"))

    return app


if __name__ == "__main__":
    create_app().run(
        host="127.0.0.1", port=int(os.environ.get("PORT", "5001")), use_reloader=False
    )
