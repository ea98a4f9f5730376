"""Through a real Hypercorn server on 127.0.0.1: serving rules and a load test.

The load test runs 200 concurrent uploads of mixed sizes, some identical,
while other clients download and ``HEAD`` stored files and one polls a
``/ping`` route. Sizes are capped for CI (``HASHFS_LOAD_MAX_MIB``, default 4;
32 for the full run); counts and time are bounded either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart, request

from async_hashfs import QuartHashFS, SyncHashFS

from .conftest import stored_files, temp_files
from .test_e2e import hypercorn_server

pytestmark = pytest.mark.e2e

UPLOADS = 200
MAX_MIB = int(os.environ.get("HASHFS_LOAD_MAX_MIB", "4"))


def make_app(root: Path) -> Quart:
    app = Quart(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), HASHFS_PATH_PREFIX="/files", HASHFS_SERVE=True)
    fs = QuartHashFS(app)

    @app.put("/raw")
    async def raw() -> Any:
        request.max_content_length = 1 << 30
        address = await fs.put(request.body, extension=request.args.get("ext"))
        return {"id": address.id, "relpath": address.relpath, "dup": address.is_duplicate}

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    return app


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_serving_through_hypercorn(root: Path) -> None:
    data = os.urandom(3 << 20)
    address = SyncHashFS(root).put(data, "png")
    with hypercorn_server(make_app(root)) as base, httpx.Client(base_url=base) as client:
        url = "/files/" + address.relpath
        full = client.get(url)
        assert full.status_code == 200
        assert full.content == data
        etag = full.headers["etag"]
        assert etag == f'"{address.id}"'
        assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert full.headers["content-type"] == "image/png"

        part = client.get(url, headers={"Range": "bytes=1048570-1048589"})
        assert part.status_code == 206
        assert part.content == data[1048570:1048590]
        assert part.headers["content-range"] == f"bytes 1048570-1048589/{len(data)}"

        suffix = client.get(url, headers={"Range": "bytes=-99999999"})
        assert (suffix.status_code, suffix.content) == (206, data)

        cached = client.get(url, headers={"If-None-Match": etag})
        assert cached.status_code == 304
        assert cached.content == b""
        assert cached.headers["etag"] == etag

        head = client.head(url)
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(data))

        assert client.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
        assert client.get("/files/../../../etc/passwd").status_code == 404
        assert client.get("/files/%2e%2e/%2e%2e/etc/passwd").status_code == 404
        assert client.get("/files/" + os.path.dirname(address.relpath)).status_code == 404


def test_load_uploads_downloads_and_pings(root: Path) -> None:
    rng = random.Random(int(os.environ.get("FAULT_SEED", "7")))
    sizes = [1 << 10, 64 << 10, 1 << 20, MAX_MIB << 20]
    distinct = [rng.randbytes(rng.choice(sizes) + n) for n in range(UPLOADS // 2)]
    payloads = [distinct[n % len(distinct)] for n in range(UPLOADS)]  # each twice
    rng.shuffle(payloads)
    seeded = SyncHashFS(root).put(rng.randbytes(2 << 20), "bin")  # for the readers
    fds_before = open_descriptors()

    async def scenario(base: str) -> dict[str, Any]:
        limits = httpx.Limits(max_connections=UPLOADS + 20, max_keepalive_connections=0)
        timeout = httpx.Timeout(120.0)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as client:
            statuses: list[int] = []
            results: list[tuple[bytes, dict[str, Any]]] = []
            pings: list[float] = []
            done = asyncio.Event()

            async def upload(data: bytes) -> None:
                async def body() -> Any:
                    for start in range(0, len(data), 256 << 10):
                        yield data[start : start + (256 << 10)]

                response = await client.put("/raw?ext=bin", content=body())
                statuses.append(response.status_code)
                results.append((data, response.json()))

            async def reader() -> None:
                url = "/files/" + seeded.relpath
                while not done.is_set():
                    got = await client.get(url)
                    head = await client.head(url)
                    statuses.extend([got.status_code, head.status_code])
                    assert hashlib.sha256(got.content).hexdigest() == seeded.id

            async def pinger() -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    response = await client.get("/ping")
                    pings.append(time.perf_counter() - started)
                    statuses.append(response.status_code)
                    await asyncio.sleep(0.005)

            background = [asyncio.create_task(reader()) for _ in range(4)]
            background.append(asyncio.create_task(pinger()))
            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(upload(p) for p in payloads)), 240)
            elapsed = time.perf_counter() - started
            done.set()
            await asyncio.gather(*background)
            return {"statuses": statuses, "results": results, "pings": pings, "s": elapsed}

    with hypercorn_server(make_app(root)) as base:
        outcome = asyncio.run(scenario(base))

    assert all(status < 500 for status in outcome["statuses"]), "a 5xx answer"
    assert all(status == 200 for status in outcome["statuses"])
    results = outcome["results"]
    assert len(results) == UPLOADS
    for data, result in results:
        assert result["id"] == hashlib.sha256(data).hexdigest()
    firsts = [result for _, result in results if not result["dup"]]
    assert len(firsts) == len(distinct), "each distinct payload stored exactly once"
    fs = SyncHashFS(root)
    assert len(stored_files(root)) == len(distinct) + 1
    for relpath in stored_files(root):
        assert fs.verify(relpath)
    assert temp_files(root) == []
    fds_after = open_descriptors()
    assert fds_after <= fds_before + 2, f"descriptor leak: {fds_before} -> {fds_after}"
    pings = sorted(outcome["pings"])
    p99 = pings[int(len(pings) * 0.99) - 1] if pings else float("nan")
    print(
        f"\nload: {UPLOADS} uploads up to {MAX_MIB} MiB in {outcome['s']:.1f} s; "
        f"ping p50 {statistics.median(pings) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {pings[-1] * 1000:.1f} ms over {len(pings)} pings"
    )
