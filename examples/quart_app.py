"""Demo: a Quart app storing uploads in a local folder store.

Run ``python3 dev.py demo`` in a checkout (or, once that has made ``.venv``,
``.venv/bin/python examples/quart_app.py``; with ``async-hashfs[quart]``
installed, ``python examples/quart_app.py``) and open
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
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>async-hashfs demo</title>
<style>
  body { font: 15px system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }
  #drop { border: 2px dashed #888; border-radius: 8px; padding: 2rem; text-align: center; }
  #drop.over { background: #eef6ff; border-color: #2a6; }
  ul { list-style: none; padding: 0; }
  .upload progress { width: 16rem; vertical-align: middle; }
  .duplicate .status { color: #a60; } .done .status { color: #2a6; }
  .failed .status { color: #c22; }
  table { border-collapse: collapse; width: 100%; margin-top: 1rem; }
  td, th { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; }
  .hash { font-family: ui-monospace, monospace; font-size: 12px; }
</style>
<h1>async-hashfs demo</h1>
<form id="drop" method="post" action="/upload" enctype="multipart/form-data">
  <p>Drop files here, or <input id="picker" type="file" name="file" multiple></p>
  <noscript><button>Upload</button></noscript>
</form>
<ul id="uploads"></ul>
<h2>Stored files <small id="count"></small></h2>
<table>
  <thead><tr><th>sha256</th><th>ext</th><th>size</th><th></th></tr></thead>
  <tbody id="files">{rows}</tbody>
</table>
<p>Raw uploads work too: <code>curl -T FILE "http://127.0.0.1:5000/raw?ext=txt"</code></p>
<script src="/static/demo.js"></script>
"""
ROW = (
    '<tr><td><a class="hash" href="{url}">{id}</a></td><td>{ext}</td><td>{size}</td>'
    '<td><form method="post" action="/delete/{id}"><button>delete</button></form></td></tr>'
)


async def stored_files() -> list[dict[str, Any]]:
    """Every stored file, for the page and the JSON list."""
    found = []
    async for path in fs.files():
        address = await fs.get(path)
        if address is None:
            continue
        found.append(
            {
                "id": address.id,
                "relpath": address.relpath,
                "extension": os.path.splitext(address.relpath)[1],
                "size": (await anyio.Path(path).stat()).st_size,
                "url": fs.url_for(address, external=False),
            }
        )
    return sorted(found, key=lambda file: file["relpath"])


def create_app(root: str | None = None) -> Quart:
    """Build the demo app on a store at ``root``."""
    app = Quart(__name__, static_folder=os.path.join(os.path.dirname(__file__), "static"))
    app.config.update(
        HASHFS_ROOT_FOLDER=root or os.environ.get("HASHFS_ROOT_FOLDER", "demo-store"),
        HASHFS_PATH_PREFIX="/files",
        HASHFS_MAX_SIZE=1 << 30,
        HASHFS_SERVE=True,  # the extension serves /files/<relpath> (ETag, Range, 304)
    )
    fs.init_app(app)

    @app.get("/")
    async def index() -> str:
        rows = [
            ROW.format(
                url=html.escape(f["url"]),
                id=f["id"],
                ext=html.escape(f["extension"]),
                size=f["size"],
            )
            for f in await stored_files()
        ]
        return PAGE.replace("{rows}", "\n  ".join(rows))

    @app.get("/api/files")
    async def api_files() -> Any:
        return {"files": await stored_files()}

    @app.delete("/api/files/<id>")
    async def api_delete(id: str) -> Any:
        await fs.delete(id)
        return {"deleted": id}

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
                    for _, u in uploads.files.items(multi=True)
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
    # One process on every Quart: 0.23's reloader would run the app in a child
    # process that outlives a SIGTERM sent to this one.
    create_app().run(
        host="127.0.0.1", port=int(os.environ.get("PORT", "5000")), use_reloader=False
    )
