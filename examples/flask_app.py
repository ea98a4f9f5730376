"""Demo: the same app on Flask, through ``flask_shim.FlaskHashFS``.

In a checkout, once ``python3 dev.py demo`` (or ``test``) has made ``.venv``,
run ``.venv/bin/python examples/flask_app.py``; with ``async-hashfs[flask]``
installed, ``python examples/flask_app.py``. Then open
http://127.0.0.1:5001/. Settings come from environment variables:
``HASHFS_ROOT_FOLDER`` (default ``./demo-store-flask``, apart from the Quart
demo's) and ``PORT`` (5001).
"""

from __future__ import annotations

import html
import os
from typing import Any

from flask import Flask, redirect, request, url_for

from flask_shim import FlaskHashFS

fs = FlaskHashFS()

PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>async-hashfs demo (Flask)</title>
<h1>async-hashfs demo (Flask)</h1>
<form method="post" action="/upload" enctype="multipart/form-data">
  <input type="file" name="file" multiple> <button>Upload</button>
</form>
<table>
  <tr><th>file</th><th>size</th><th></th></tr>
  {rows}
</table>
"""
ROW = (
    '<tr><td><a href="{url}">{id}</a></td><td>{size}</td>'
    '<td><form method="post" action="/delete/{id}"><button>delete</button></form></td></tr>'
)


def create_app(root: str | None = None) -> Flask:
    """Build the demo app on a store at ``root``."""
    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=root or os.environ.get("HASHFS_ROOT_FOLDER", "demo-store-flask"),
        HASHFS_PATH_PREFIX="/files",
        HASHFS_MAX_SIZE=1 << 30,
        HASHFS_SERVE=True,  # the extension serves /files/<relpath> (ETag, Range, 304)
    )
    fs.init_app(app)

    @app.get("/")
    def index() -> str:
        rows = []
        for path in fs.files():
            address = fs.get(path)
            if address is None:
                continue
            url = fs.url_for(address, external=False)
            rows.append(
                ROW.format(url=html.escape(url), id=address.id, size=os.path.getsize(path))
            )
        return PAGE.format(rows="\n  ".join(rows))

    @app.post("/upload")
    def upload() -> Any:
        request.max_content_length = 1 << 30
        uploads = fs.put_uploads()
        if request.accept_mimetypes.best == "application/json":
            return {
                "files": [
                    {
                        "field": u.name,
                        "id": u.address.id,
                        "filename": u.filename,
                        "size": u.size,
                        "duplicate": u.address.is_duplicate,
                        "url": fs.url_for(u.address),
                    }
                    for _, u in uploads.files.items(multi=True)
                ]
            }
        return redirect(url_for("index"))

    @app.route("/raw", methods=["POST", "PUT"])
    def raw() -> Any:
        request.max_content_length = 1 << 30
        address = fs.put(request.stream, extension=request.args.get("ext"))
        return {
            "id": address.id,
            "relpath": address.relpath,
            "duplicate": address.is_duplicate,
            "url": fs.url_for(address),
        }

    @app.post("/delete/<id>")
    def delete(id: str) -> Any:
        fs.delete(id)
        return redirect(url_for("index"))

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5001")))
