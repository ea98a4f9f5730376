"""Quart's request body within the app's upload budget (``BoundedBody``)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from quart import Quart, request

from async_hashfs import QuartHashFS
from async_hashfs._body import BoundedBody
from async_hashfs._budget import UploadBudget

from .conftest import stored_files, temp_files

pytestmark = pytest.mark.anyio

KIB = 1 << 10


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Quart runs on asyncio


class Views:
    """What the app's views saw."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.stalled: list[BoundedBody] = []
        self.puts: list[BoundedBody] = []


def make_app(root: Path, **config: Any) -> tuple[Quart, Views]:
    app = Quart(__name__)
    app.config.update({"HASHFS_ROOT_FOLDER": str(root), "MAX_CONTENT_LENGTH": None, **config})
    fs = QuartHashFS(app)
    views = Views()

    @app.post("/put")
    async def put() -> Any:
        views.puts.append(request.body)  # type: ignore[arg-type]
        return {"id": (await fs.put(request.body)).id}

    @app.post("/uploads")
    async def uploads() -> Any:
        stored = await fs.put_uploads()
        return {"ids": [u.address.id for u in stored.files.values()]}

    @app.post("/stall")
    async def stall() -> Any:
        """Never read the body; answer once released."""
        views.stalled.append(request.body)  # type: ignore[arg-type]
        await views.release.wait()
        return "late", 503

    @app.post("/sip")
    async def sip() -> Any:
        """Read one message, then stall."""
        views.stalled.append(request.body)  # type: ignore[arg-type]
        await request.body.__anext__()  # type: ignore[attr-defined]
        await views.release.wait()
        return "late", 503

    @app.post("/data")
    async def data() -> Any:
        return {"size": len(await request.get_data())}

    return app, views


async def new_app(root: Path, **config: Any) -> tuple[Quart, Views]:
    """Build the app off the loop: init_app resolves and creates the root on disk."""
    return await anyio.to_thread.run_sync(lambda: make_app(root, **config))


def budget_of(app: Quart) -> UploadBudget:
    budget: UploadBudget = app.extensions["hashfs"].store.budget
    return budget


def blocks(seed: int, count: int, size: int) -> list[bytes]:
    return [hashlib.sha256(f"{seed}-{i}".encode()).digest() * (size // 32) for i in range(count)]


def digest(chunks: list[bytes]) -> str:
    return hashlib.sha256(b"".join(chunks)).hexdigest()


async def send(
    app: Quart,
    path: str,
    chunks: list[bytes],
    pause: float = 0.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Stream ``chunks`` as one request body, a message each; return (status, JSON or text)."""
    async with app.test_client().request(path, method="POST", headers=headers) as connection:
        for chunk in chunks:
            await connection.send(chunk)
            await anyio.sleep(pause)
        await connection.send_complete()
    response = await connection.as_response()
    if response.is_json:
        return response.status_code, await response.get_json()
    return response.status_code, await response.get_data()


async def eventually(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds; fail after 10 seconds."""
    for _ in range(1000):
        if condition():
            return
        await anyio.sleep(0.01)
    assert condition()


class Watch:
    """Samples the budget on every loop turn, to catch what ``peak`` would too."""

    def __init__(self, budget: UploadBudget) -> None:
        self.budget = budget
        self.most = 0

    async def run(self, done: Callable[[], bool]) -> None:
        while not done():
            self.most = max(self.most, self.budget.used)
            await anyio.lowlevel.checkpoint()


async def test_many_slow_uploads_hold_no_more_than_the_budget(root: Path) -> None:
    app, views = await new_app(root, HASHFS_UPLOAD_MEMORY=128 * KIB)
    budget = budget_of(app)
    bodies = [blocks(seed, 30, 16 * KIB) for seed in range(32)]
    results: list[tuple[int, Any]] = [(0, None)] * len(bodies)
    watch = Watch(budget)

    async def upload(i: int) -> None:
        results[i] = await send(app, "/put", bodies[i], pause=0.001)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(watch.run, lambda: all(r[1] for r in results))
            for i in range(len(bodies)):
                group.start_soon(upload, i)
    assert results == [(200, {"id": digest(b)}) for b in bodies]
    assert 0 < watch.most <= budget.peak <= 128 * KIB
    assert budget.used == 0 and budget.waiting == 0
    assert all(body.charged == 0 and body.buffered == 0 for body in views.puts)
    assert temp_files(root) == []


async def test_multipart_uploads_share_the_budget(root: Path) -> None:
    app, _ = await new_app(root, HASHFS_UPLOAD_MEMORY=64 * KIB)
    budget = budget_of(app)
    boundary = "crowd-boundary"
    files = [b"".join(blocks(seed, 20, 8 * KIB)) for seed in range(12)]

    def body(data: bytes) -> list[bytes]:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n'
        ).encode()
        whole = head + data + f"\r\n--{boundary}--\r\n".encode()
        return [whole[i : i + 8 * KIB] for i in range(0, len(whole), 8 * KIB)]

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    results: list[Any] = [None] * len(files)

    async def upload(i: int) -> None:
        results[i] = await send(app, "/uploads", body(files[i]), 0.001, headers)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for i in range(len(files)):
                group.start_soon(upload, i)
    assert results == [(200, {"ids": [hashlib.sha256(f).hexdigest()]}) for f in files]
    assert 0 < budget.peak <= 64 * KIB and budget.used == 0


async def test_a_budget_smaller_than_a_message_does_not_deadlock(root: Path) -> None:
    app, _ = await new_app(root, HASHFS_UPLOAD_MEMORY=1000, HASHFS_THREADS=2)
    budget = budget_of(app)
    bodies = [blocks(seed, 16, 32 * KIB) for seed in range(24)]
    results: list[Any] = [None] * len(bodies)

    async def upload(i: int) -> None:
        results[i] = await send(app, "/put", bodies[i])

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for i in range(len(bodies)):
                group.start_soon(upload, i)
    assert results == [(200, {"id": digest(b)}) for b in bodies]
    assert budget.peak == 32 * KIB  # one message at a time, admitted alone
    assert budget.used == 0


async def test_stalled_views_hold_no_budget_and_block_nobody(root: Path) -> None:
    app, views = await new_app(root, HASHFS_UPLOAD_MEMORY=64 * KIB)
    budget = budget_of(app)
    stalled: list[Any] = []

    async def stall(path: str, seed: int) -> None:
        stalled.append(await send(app, path, blocks(seed, 8, 32 * KIB)))

    async with anyio.create_task_group() as group:
        for seed in range(20):
            group.start_soon(stall, "/stall" if seed % 2 else "/sip", seed)
        await eventually(lambda: len(views.stalled) == 20)
        await anyio.sleep(0.2)
        # Twenty views that stopped reading, each sent 256 KiB: none holds any budget.
        assert budget.used == 0
        assert all(body.charged == 0 for body in views.stalled)
        assert all(body.buffered <= 32 * KIB for body in views.stalled)
        bodies = [blocks(100 + seed, 20, 16 * KIB) for seed in range(8)]
        results: list[Any] = [None] * len(bodies)

        async def upload(i: int) -> None:
            results[i] = await send(app, "/put", bodies[i])

        with anyio.fail_after(30):
            async with anyio.create_task_group() as uploads:
                for i in range(len(bodies)):
                    uploads.start_soon(upload, i)
        assert results == [(200, {"id": digest(b)}) for b in bodies]
        views.release.set()
    assert [status for status, _ in stalled] == [503] * 20
    assert budget.used == 0 and budget.waiting == 0


async def test_a_full_budget_pauses_bodies_and_whole_reads_still_go(root: Path) -> None:
    app, views = await new_app(root, HASHFS_UPLOAD_MEMORY=64 * KIB)
    budget = budget_of(app)
    await budget.acquire(64 * KIB)  # someone else holds it all
    chunks = blocks(7, 10, 16 * KIB)
    result: list[Any] = []

    async def upload() -> None:
        result.append(await send(app, "/put", chunks))

    async with anyio.create_task_group() as group:
        group.start_soon(upload)
        await eventually(lambda: bool(views.puts))
        await anyio.sleep(0.2)
        body = views.puts[0]
        assert body.paused and body.buffered == 0 and not result
        # Whole-body reads are Quart's, outside the budget: not starved by it.
        with anyio.fail_after(10):
            status, answer = await send(app, "/data", blocks(8, 20, 16 * KIB))
        assert (status, answer) == (200, {"size": 320 * KIB})
        assert not result
        budget.release(64 * KIB)
    assert result == [(200, {"id": digest(chunks)})]
    assert budget.used == 0


async def test_a_message_larger_than_the_budget_goes_through(root: Path) -> None:
    app, _ = await new_app(root, HASHFS_UPLOAD_MEMORY=10 * KIB)
    chunks = blocks(3, 4, 256 * KIB)
    with anyio.fail_after(20):
        assert await send(app, "/put", chunks) == (200, {"id": digest(chunks)})
    assert budget_of(app).peak == 256 * KIB and budget_of(app).used == 0


async def test_disconnects_give_the_budget_back(root: Path) -> None:
    app, _ = await new_app(root, HASHFS_UPLOAD_MEMORY=96 * KIB)
    budget = budget_of(app)

    async def cut_off(seed: int) -> None:
        async with app.test_client().request("/put", method="POST") as connection:
            for chunk in blocks(seed, 40, 16 * KIB):
                await connection.send(chunk)
                await anyio.sleep(0.001)
            await connection.disconnect()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for seed in range(16):
                group.start_soon(cut_off, seed)
    await eventually(lambda: budget.used == 0)
    assert budget.waiting == 0
    assert stored_files(root) == [] and temp_files(root) == []


async def test_an_answer_before_reading_gives_the_budget_back(root: Path) -> None:
    app, views = await new_app(root, HASHFS_UPLOAD_MEMORY=64 * KIB, MAX_CONTENT_LENGTH=100 * KIB)
    budget = budget_of(app)
    status, _ = await send(app, "/put", blocks(4, 20, 16 * KIB))
    assert status == 413
    views.release.set()
    status, _ = await send(app, "/sip", blocks(5, 20, 16 * KIB))
    assert status == 503
    assert budget.used == 0 and budget.waiting == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [("HASHFS_UPLOAD_MEMORY", 0), ("HASHFS_UPLOAD_MEMORY", "32M"), ("HASHFS_UPLOAD_MEMORY", True)],
)
async def test_upload_memory_must_be_a_positive_byte_count(
    root: Path, key: str, value: Any
) -> None:
    with pytest.raises(ValueError, match="HASHFS_UPLOAD_MEMORY"):
        await new_app(root, **{key: value})


async def test_upload_memory_sets_the_store_budget(root: Path) -> None:
    app, _ = await new_app(root)
    assert budget_of(app).limit == 32 << 20 == app.config["HASHFS_UPLOAD_MEMORY"]
    app, _ = await new_app(root, HASHFS_UPLOAD_MEMORY=5 << 20)
    assert budget_of(app).limit == 5 << 20
