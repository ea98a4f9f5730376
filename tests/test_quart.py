from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import anyio
import hashfs
import pytest
from quart import Quart, request
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from async_hashfs import AsyncHashFS, QuartHashFS, SyncHashFS

from .conftest import stored_files, temp_files

pytestmark = pytest.mark.anyio

DATA = os.urandom(200_000)
DATA_ID = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Quart runs on asyncio


async def new_app(root: Path, **config: Any) -> tuple[Quart, QuartHashFS]:
    """Build the app off the loop: init_app resolves and creates the root on disk."""
    return await anyio.to_thread.run_sync(lambda: make_app(root, **config))


def make_app(root: Path, **config: Any) -> tuple[Quart, QuartHashFS]:
    app = Quart(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), HASHFS_PATH_PREFIX="/files", **config)
    fs = QuartHashFS(app)

    @app.post("/raw")
    async def raw() -> Any:
        if "big" in request.args:
            request.max_content_length = 1 << 40
        address = await fs.put(request.body, extension=request.args.get("ext"))
        return {"id": address.id, "url": fs.url_for(address), "dup": address.is_duplicate}

    @app.post("/uploads")
    async def uploads() -> Any:
        stored = await fs.put_uploads()
        return {
            "files": [
                [u.name, u.address.id, u.address.relpath, u.filename, u.content_type, u.size]
                for u in stored.files.values()
            ],
            "form": stored.form.to_dict(flat=False),
        }

    @app.post("/filestorage")
    async def filestorage() -> Any:
        files = await request.files
        address = await fs.put(files["file"], extension="bin")
        return {"id": address.id}

    return app, fs


def multipart(fields: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    boundary, body = encode_multipart(fields)
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def test_put_raw_body_and_url_for(root: Path) -> None:
    app, _ = await new_app(root)
    client = app.test_client()
    response = await client.post("/raw?ext=bin", data=DATA)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["id"] == DATA_ID
    assert (
        body["url"]
        == "http://localhost/files/"
        + hashfs.HashFS(root).idpath(DATA_ID, "bin").split("/store/")[1]
    )
    assert not body["dup"]
    assert (await (await client.post("/raw?ext=bin", data=DATA)).get_json())["dup"]
    assert stored_files(root) == [body["url"].split("/files/")[1]]


async def test_put_uploads_streams_files_and_collects_fields(root: Path) -> None:
    app, _ = await new_app(root)
    body, headers = multipart(
        {
            "photo": FileStorage(io.BytesIO(DATA), "Holiday.JPG", content_type="image/jpeg"),
            "notes": FileStorage(io.BytesIO(b"plain"), "notes.tar.gz*"),
            "empty": FileStorage(io.BytesIO(b""), ""),
            "title": "Sommer ☀",
        }
    )
    response = await app.test_client().post("/uploads", data=body, headers=headers)
    assert response.status_code == 200, await response.get_data()
    result = await response.get_json()
    photo, notes = result["files"]
    assert photo[:2] == ["photo", DATA_ID]
    assert photo[2].endswith(".jpg")
    assert photo[3:] == ["Holiday.JPG", "image/jpeg", len(DATA)]
    assert notes[1] == hashlib.sha256(b"plain").hexdigest()
    assert "." not in os.path.basename(notes[2])  # unsafe extension dropped
    assert result["form"] == {"title": ["Sommer ☀"]}
    assert len(stored_files(root)) == 2


async def test_put_file_storage_from_request_files(root: Path) -> None:
    app, _ = await new_app(root)
    body, headers = multipart({"file": FileStorage(io.BytesIO(DATA), "a.bin")})
    response = await app.test_client().post("/filestorage", data=body, headers=headers)
    assert (await response.get_json())["id"] == DATA_ID


async def stream(
    app: Quart, path: str, chunks: list[bytes], headers: dict[str, str] | None = None
) -> Any:
    async with app.test_client().request(path, method="POST", headers=headers) as connection:
        for chunk in chunks:
            await connection.send(chunk)
        await connection.send_complete()
    return await connection.as_response()


async def test_max_content_length_counts_every_streamed_byte(root: Path) -> None:
    app, _ = await new_app(root, MAX_CONTENT_LENGTH=100_000)
    response = await stream(app, "/raw", [DATA[i : i + 10_000] for i in range(0, 200_000, 10_000)])
    assert response.status_code == 413
    assert b"100000 bytes" in await response.get_data()
    assert stored_files(root) == []
    assert temp_files(root) == []
    exact = await stream(app, "/raw", [DATA[:50_000], DATA[50_000:100_000]])
    assert exact.status_code == 200


async def test_content_length_over_limit_is_413_before_reading(root: Path) -> None:
    app, _ = await new_app(root, MAX_CONTENT_LENGTH=1000)
    response = await app.test_client().post(
        "/raw", data=DATA, headers={"Content-Length": str(len(DATA))}
    )
    assert response.status_code == 413
    assert stored_files(root) == []


async def test_a_route_may_allow_larger_bodies(root: Path) -> None:
    app, _ = await new_app(root, MAX_CONTENT_LENGTH=1000)
    response = await app.test_client().post(
        "/raw?big=1", data=DATA, headers={"Content-Length": str(len(DATA))}
    )
    assert response.status_code == 200
    assert (await response.get_json())["id"] == DATA_ID


async def test_hashfs_max_size_gives_413_and_stores_nothing(root: Path) -> None:
    app, _ = await new_app(root, HASHFS_MAX_SIZE=1000)
    assert (await app.test_client().post("/raw", data=DATA)).status_code == 413
    body, headers = multipart({"f": FileStorage(io.BytesIO(DATA), "a.bin")})
    response = await app.test_client().post("/uploads", data=body, headers=headers)
    assert response.status_code == 413
    assert b"uploaded file" in await response.get_data()
    assert stored_files(root) == []
    assert temp_files(root) == []


async def test_bad_extension_is_400(root: Path) -> None:
    app, _ = await new_app(root)
    response = await app.test_client().post("/raw?ext=../../x", data=DATA)
    assert response.status_code == 400
    assert b"invalid extension" in await response.get_data()
    assert stored_files(root) == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not multipart at all", "multipart/form-data; boundary=xyz"),
        (
            b"--xyz\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n--xyz--\r\n",
            "multipart/form-data; boundary=xyz",
        ),
        (
            b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\ncut short',
            "multipart/form-data; boundary=xyz",
        ),
        (b"whatever", "multipart/form-data"),
        (b"whatever", "application/json"),
    ],
    ids=[
        "no-boundary-in-body",
        "no-disposition",
        "truncated",
        "no-boundary-param",
        "not-multipart",
    ],
)
async def test_malformed_multipart_is_400(root: Path, body: bytes, content_type: str) -> None:
    app, _ = await new_app(root)
    response = await app.test_client().post(
        "/uploads", data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400
    assert b"multipart" in (await response.get_data()).lower()
    assert stored_files(root) == []
    assert temp_files(root) == []


async def test_client_disconnect_mid_upload_leaves_nothing(root: Path) -> None:
    app, _ = await new_app(root)
    async with app.test_client().request("/raw", method="POST") as connection:
        for _ in range(20):
            await connection.send(os.urandom(100_000))
        await connection.disconnect()
    assert connection.status_code is None
    app_store = app.extensions["hashfs"].store
    assert await app_store.count() == 0
    assert temp_files(root) == []


async def test_body_buffer_is_bounded_when_view_is_slow(root: Path) -> None:
    app, _ = await new_app(root, HASHFS_BODY_BUFFER=256 << 10)
    seen: list[int] = []

    @app.post("/slow")
    async def slow() -> Any:
        total = 0
        async for chunk in request.body:
            seen.append(request.body.buffered + len(chunk))
            total += len(chunk)
            await anyio.sleep(0.002)
        return {"total": total}

    response = await stream(app, "/slow", [b"x" * 64_000] * 100)
    assert (await response.get_json())["total"] == 6_400_000
    assert max(seen) <= (256 << 10) + 64_000


async def test_whole_body_reads_still_work(root: Path) -> None:
    app, _ = await new_app(root, MAX_CONTENT_LENGTH=100_000)

    @app.post("/form")
    async def form() -> Any:
        return {"form": (await request.form).to_dict()}

    @app.post("/data")
    async def data() -> Any:
        return {"size": len(await request.get_data())}

    body, headers = multipart({"a": "1", "b": "2"})
    response = await app.test_client().post("/form", data=body, headers=headers)
    assert await response.get_json() == {"form": {"a": "1", "b": "2"}}
    response = await app.test_client().post("/data", data=b"y" * 100_000)
    assert await response.get_json() == {"size": 100_000}
    too_big = await stream(app, "/data", [b"x" * 60_000] * 3)
    assert too_big.status_code == 413


async def test_extension_state_and_proxies(root: Path, tmp_path: Path) -> None:
    app, fs = await new_app(root)
    other = Quart("other")
    other.config.update(HASHFS_ROOT_FOLDER=str(tmp_path / "other"), HASHFS_DEPTH=2)
    await anyio.to_thread.run_sync(fs.init_app, other)
    async with app.app_context():
        assert isinstance(fs.store, AsyncHashFS)
        assert isinstance(fs.client, hashfs.HashFS)
        assert app.extensions["hashfs"]["client"] is fs.client
        assert fs.client.root == fs.store.root == fs.root == str(root)
        assert fs.depth == 4
        address = await fs.put(DATA)
        assert await fs.get(DATA_ID) == address
        assert await fs.exists(DATA_ID)
        async with fs.open(DATA_ID) as file:
            assert await file.read() == DATA
        assert await fs.count() == 1
        assert fs.client.get(DATA_ID) == address
        await fs.delete(DATA_ID)
        assert fs.url_for("a/b.txt", external=False) == "/files/a/b.txt"
    async with other.app_context():
        assert fs.depth == 2
        assert fs.root == str(tmp_path / "other")
    bare = Quart("bare")
    async with bare.app_context():
        with pytest.raises(RuntimeError, match="Did you forget to call 'init_app'"):
            fs.store  # noqa: B018


async def test_hashfs_host_for_cdn_urls(root: Path) -> None:
    app, fs = await new_app(root, HASHFS_HOST="https://cdn.example.com/base/")
    async with app.test_request_context("/"):
        assert fs.url_for("a/b/c.txt") == "https://cdn.example.com/base/files/a/b/c.txt"
        assert fs.url_for("a/b/c.txt", external=False) == "/files/a/b/c.txt"


# -- Flask-HashFS 0.3.0 behaviour, mirrored (issue 10, item 3) --------------------


async def test_hashfs_parameter_names_and_every_operation(root: Path) -> None:
    app, fs = await new_app(root)
    async with app.app_context():
        address = await fs.put(file=io.BytesIO(DATA), extension="bin")
        assert await fs.get(file=address.id) == address
        async with fs.open(file=address.id, mode="rb") as opened:
            assert await opened.read() == DATA
        assert await fs.exists(file=address.relpath)
        assert await fs.verify(file=address.id)
        assert await fs.computehash(stream=io.BytesIO(DATA)) == DATA_ID
        assert await fs.count() == 1
        assert await fs.size() == len(DATA)
        assert [path async for path in fs.files()] == [address.abspath]
        assert [path async for path in fs.folders()] == [os.path.dirname(address.abspath)]
        assert [item async for item in fs.corrupted(extensions=True)] == []
        assert await fs.repair(extensions=True) == []
        assert (await fs.gc(older_than=0.0)).temp_files == []
        assert fs.idpath(id=DATA_ID, extension="bin") == address.abspath
        assert fs.unshard(path=address.abspath) == DATA_ID
        assert fs.shard(DATA_ID)[0] == DATA_ID[0]
        assert (fs.root, fs.depth, fs.width, fs.algorithm) == (str(root), 4, 1, "sha256")
        assert (fs.fmode, fs.dmode, fs.max_size, fs.fsync) == (0o664, 0o755, None, False)
        await fs.delete(file=address.id)
        assert await fs.get(file=address.id) is None
        await anyio.to_thread.run_sync(os.makedirs, root / "a" / "b")
        await fs.remove_empty(subpath=str(root / "a" / "b"))
        assert not await anyio.Path(root / "a").exists()


@pytest.mark.parametrize("external", [True, False])
async def test_url_for_reads_host_and_prefix_at_each_call(root: Path, external: bool) -> None:
    app, fs = await new_app(root)
    async with app.test_request_context("/"):
        before = fs.url_for("a/b.txt", external=external)
        app.config.update(HASHFS_HOST="https://cdn.example.com", HASHFS_PATH_PREFIX="/new")
        after = fs.url_for("a/b.txt", external=external)
        app.config["HASHFS_PATH_PREFIX"] = "new"
        with pytest.raises(ValueError, match="must start with a leading slash"):
            fs.url_for("a/b.txt")
    assert before == ("http://localhost" if external else "") + "/files/a/b.txt"
    assert after == ("https://cdn.example.com" if external else "") + "/new/a/b.txt"


async def test_extension_state_reads_as_flask_hashfs_dict(root: Path) -> None:
    app, fs = await new_app(root)
    state = app.extensions["hashfs"]
    assert isinstance(state, dict)
    assert list(state) == ["client"]
    assert isinstance(state["client"], hashfs.HashFS)
    assert state.get("client") is state["client"]
    async with app.app_context():
        assert fs.client is state["client"]


async def test_init_app_twice_starts_over(root: Path, tmp_path: Path) -> None:
    app, fs = await new_app(root, HASHFS_SERVE=True)
    served = await anyio.to_thread.run_sync(lambda: SyncHashFS(root).put(b"served", "txt"))
    url = f"/files/{served.relpath}"
    assert await (await app.test_client().get(url)).get_data() == b"served"
    app.config.update(HASHFS_ROOT_FOLDER=str(tmp_path / "second"), HASHFS_DEPTH=2)
    await anyio.to_thread.run_sync(fs.init_app, app)
    await anyio.to_thread.run_sync(QuartHashFS().init_app, app)
    rules = [r.rule for r in app.url_map.iter_rules() if r.endpoint == "hashfs_file"]
    assert rules == ["/files/<path:relpath>"]
    assert list(app.cli.commands) == ["hashfs"]
    async with app.app_context():
        assert (fs.root, fs.depth) == (str(tmp_path / "second"), 2)
        assert await fs.get(served.id) is None
        address = await fs.put(b"second", "txt")
    assert (await app.test_client().get(url)).status_code == 404
    second = f"/files/{address.relpath}"
    assert await (await app.test_client().get(second)).get_data() == b"second"
    app.config["HASHFS_SERVE"] = False
    await anyio.to_thread.run_sync(fs.init_app, app)
    assert (await app.test_client().get(second)).status_code == 404
