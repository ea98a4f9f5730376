"""The sweep record grows by one key per put while a sweep runs, and every put moves all of it.

A sweep is held after its first page (as a sweep of a large bucket is, early
on: listed_upto is small); N puts of new objects run one after another. Each
put GETs the record and PUTs it back with its key added to ``touched``; the
sweep prunes ``touched`` only as its listing passes those keys. Prints the
record's size and the median put time per block of puts.

    .venv/bin/python attack/record_growth.py [N]
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import obstore

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from async_hashfs import SyncHashFS, _s3_sweep


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    options = json.loads(Path("/tmp/attack3_s3.json").read_text())["options"]
    fs = SyncHashFS(f"s3://hashfs-test/growth-{os.getpid()}-{time.time_ns()}", s3_options=options)
    fs.put(b"one old object")
    engine = fs._engine
    listed, release = threading.Event(), threading.Event()
    real_list = obstore.list

    def listing(target, *args, **kwargs):
        pages = real_list(target, *args, **kwargs)
        if target is not engine.store or kwargs.get("prefix") is not None:
            return pages

        def held():
            for batch in pages:
                listed.set()
                assert release.wait(600)
                yield batch

        return held()

    obstore.list = listing
    result = {}
    sweep = threading.Thread(target=lambda: result.update(r=fs.sweep([], older_than=3600)))
    sweep.start()
    assert listed.wait(60)
    block = max(1, n // 5)
    times: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        fs.put(f"new {i} {time.time_ns()}".encode())
        times.append(time.perf_counter() - t0)
        if (i + 1) % block == 0:
            record, _ = _s3_sweep.read(engine)
            size = len(bytes(obstore.get(engine.store, _s3_sweep.RECORD_KEY).bytes()))
            chunk = sorted(times[-block:])
            print(
                f"after {i + 1:5d} puts: touched={len(record['touched']):5d} record={size:7d} B "
                f"median put of the last {block}: {chunk[len(chunk) // 2] * 1000:.1f} ms"
            )
    release.set()
    sweep.join(120)
    print("sweep:", result.get("r"), "load:", os.getloadavg())


if __name__ == "__main__":
    main()
