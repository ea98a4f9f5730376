"""Demo: a Quart app storing uploads in a local folder store.

Run ``python3 dev.py demo`` (or ``python examples/quart_app.py``) and open
http://127.0.0.1:5000/. Settings come from environment variables:
``HASHFS_ROOT_FOLDER`` (default ``./demo-store``) and ``PORT`` (5000).
"""

from __future__ import annotations

import html
import os
from typing import Any

import anyio
from quart import Quart, redirect, request, url_for

from async_hashfs import QuartHashFS

fs = QuartHashFS()

PAGE = """<!doctype html>
<html lang="en"><meta charset="utf-8"><title>async-hashfs demo</title>
<h1>async-hashfs demo</h1>
<form method="post" action="/upload" enctype="multipart/form-data">
  <input type="file" name="file" multiple> <button>Upload</button>
</form>
<p>Or: <code>curl -T FILE "http://HOST/raw?ext=txt"</code></p>
<table>
  <tr><th>file</th><th>size</th><th></th></tr>
  {rows}
</table>
"""
ROW = (
    '<tr><td><a href="{url}">{id}</a></td><td>{size}</td>'
    '<td><form method="post" action="/delete/{id}"><button>delete</button></form></td></tr>'
)


def create_app(root: str | None = None) -> Quart:
    """Build the demo app on a store at ``root``."""
    app = Quart(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=root or os.environ.get("HASHFS_ROOT_FOLDER", "demo-store"),
        HASHFS_PATH_PREFIX="/files",
        HASHFS_MAX_SIZE=1 << 30,
        HASHFS_SERVE=True,  # the extension serves /files/<relpath> (ETag, Range, 304)
    )
    fs.init_app(app)

    @app.get("/")
    async def index() -> str:
        rows = []
        async for path in fs.files():
            address = await fs.get(path)
            if address is None:
                continue
            size = (await anyio.Path(path).stat()).st_size
            url = fs.url_for(address, external=False)
            rows.append(ROW.format(url=html.escape(url), id=address.id, size=size))
        return PAGE.format(rows="\n  ".join(rows))

    @app.post("/upload")
    async def upload() -> Any:
        request.max_content_length = 1 << 30  # this route takes large files
        uploads = await fs.put_uploads()
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
                    for u in uploads.files.values()
                ]
            }
        return redirect(url_for("index"))

    @app.route("/raw", methods=["POST", "PUT"])
    async def raw() -> Any:
        request.max_content_length = 1 << 30
        address = await fs.put(request.body, extension=request.args.get("ext"))
        return {
            "id": address.id,
            "relpath": address.relpath,
            "duplicate": address.is_duplicate,
            "url": fs.url_for(address),
        }

    @app.post("/delete/<id>")
    async def delete(id: str) -> Any:
        await fs.delete(id)
        return redirect(url_for("index"))

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
