"""How often the sweep's conditional writes lose to puts, and how big the record gets.

Bounded load: N_OLD objects (all kept, so the sweep only decides pages), the
sweep's listing re-chunked into pages of PAGE keys, THREADS x PUTS puts of new
objects while it runs. Prints the sweep's refused writes, the puts' refused
writes, the largest record seen and the sweep's outcome.

    .venv/bin/python attack/cas_contention.py [lease_seconds]
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

N_OLD, PAGE, THREADS, PUTS, PACE = 600, 20, 8, 60, 0.1


def main() -> None:
    lease = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    options = json.loads(Path("/tmp/attack3_s3.json").read_text())["options"]
    root = f"s3://hashfs-test/cas-{os.getpid()}-{time.time_ns()}"
    fs = SyncHashFS(root, s3_options={**options, "sweep_lock_seconds": lease})
    ids = [fs.put(f"old {n}".encode()).id for n in range(N_OLD)]
    engine = fs._engine
    stats = {
        "sweep_refused": 0,
        "sweep_writes": 0,
        "put_refused": 0,
        "put_writes": 0,
        "max_record": 0,
    }
    real_write = _s3_sweep.write
    lock = threading.Lock()
    sweeper: list[int] = []

    def write(engine_: object, record: dict, etag: object) -> object:
        result = real_write(engine_, record, etag)
        mine = threading.get_ident() in sweeper or threading.current_thread().name.startswith(
            "hashfs-s3-sweep"
        )
        with lock:
            kind = "sweep" if mine else "put"
            stats[f"{kind}_writes"] += 1
            if result is None:
                stats[f"{kind}_refused"] += 1
            stats["max_record"] = max(stats["max_record"], len(json.dumps(record)))
        return result

    _s3_sweep.write = write
    real_list = obstore.list
    started = threading.Event()
    finished = threading.Event()

    def listing(target, *args, **kwargs):
        pages = real_list(target, *args, **kwargs)
        if target is not engine.store or kwargs.get("prefix") is not None:
            return pages

        def small():
            for batch in pages:
                batch = list(batch)
                for start in range(0, len(batch), PAGE):
                    started.set()
                    time.sleep(PACE)  # pacing only: a slower listing, as of a big bucket
                    yield batch[start : start + PAGE]

        return small()

    obstore.list = listing
    outcome: dict = {}

    def run_sweep() -> None:
        sweeper.append(threading.get_ident())
        t0 = time.monotonic()
        try:
            outcome["report"] = fs.sweep(ids, older_than=0)
        except Exception as exc:
            outcome["error"] = repr(exc)
        outcome["seconds"] = time.monotonic() - t0
        finished.set()

    put_times: list[float] = []

    def putter(worker: int) -> None:
        started.wait(30)
        for n in range(PUTS):
            if finished.is_set():
                return
            t0 = time.monotonic()
            fs.put(f"new {worker} {n} {time.time_ns()}".encode())
            with lock:
                put_times.append(time.monotonic() - t0)

    threads = [threading.Thread(target=run_sweep)] + [
        threading.Thread(target=putter, args=(w,)) for w in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    put_times.sort()
    print(
        json.dumps(
            {
                **stats,
                **outcome,
                "report": str(outcome.get("report")),
                "puts": len(put_times),
                "put_median_s": round(put_times[len(put_times) // 2], 4) if put_times else None,
                "put_max_s": round(put_times[-1], 3) if put_times else None,
                "load": os.getloadavg(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
