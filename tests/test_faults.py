"""Proof under faults: killed writers, injected OS errors, racing processes.

After every scenario the store is checked whole: each address holds exactly
the bytes its hash names, and once ``gc`` ran no temp file is left.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from async_hashfs import SyncHashFS

from .conftest import stored_files, temp_files

SEED = int(os.environ.get("FAULT_SEED", time.time_ns() % 10_000))


def assert_store_sound(root: Path) -> None:
    """Every stored file is complete and at its address; gc leaves no temp file."""
    fs = SyncHashFS(root)
    fs.gc()
    assert temp_files(root) == []
    for relpath in stored_files(root):
        assert fs.layout.parse_address(relpath) is not None, relpath
        assert fs.verify(relpath), f"{relpath} does not hold the bytes its hash names"


WRITER = textwrap.dedent(
    """
    import os, random, sys, anyio
    from async_hashfs import AsyncHashFS

    root, seed, puts, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    async def chunks(rng):
        for _ in range(size // 65536):
            yield rng.randbytes(65536)
            await anyio.sleep(0.002)  # a client sending, not a local file

    async def main():
        fs = AsyncHashFS(root)
        for n in range(puts):
            await fs.put(chunks(random.Random(seed * 1000 + n)), extension="bin")
            print(n, flush=True)

    anyio.run(main)
    """
)


def test_writers_killed_at_random_points(root: Path, tmp_path: Path) -> None:
    """50 large streamed puts by writers that are SIGKILLed at random moments."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(SEED)
    kills = 0
    for process_number in range(10):  # 10 writers x 5 puts of 8 MiB, about 0.3 s each
        writer = subprocess.Popen(
            [sys.executable, str(script), str(root), str(process_number), "5", str(8 << 20)],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.4 + rng.random() * 1.0)  # past start-up, somewhere in the puts
        if writer.poll() is None:
            writer.send_signal(signal.SIGKILL)
            kills += 1
        writer.wait(30)
        fs = SyncHashFS(root)
        for relpath in stored_files(root):  # sound even before gc
            assert fs.verify(relpath), f"seed {SEED}: {relpath} is partial"
        if hasattr(os, "O_TMPFILE"):  # a killed writer's nameless temp file is gone with it
            assert temp_files(root) == [], f"seed {SEED}"
    assert kills >= 5, f"seed {SEED}: the writers finished before they could be killed"
    assert_store_sound(root)


RACER = textwrap.dedent(
    """
    import sys, threading
    from async_hashfs import SyncHashFS

    fs = SyncHashFS(sys.argv[1])
    payloads = [bytes([n]) * (50_000 + n) for n in range(4)]
    errors = []

    def work(n):
        try:
            for i in range(40):
                data = payloads[(n + i) % 4]
                address = fs.put(data, "bin")
                assert address.relpath.endswith(".bin")
                if (n + i) % 3 == 0:
                    fs.delete(address.id)
        except BaseException as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    print("\\n".join(errors))
    sys.exit(1 if errors else 0)
    """
)


def test_processes_and_threads_put_and_delete_the_same_content(root: Path, tmp_path: Path) -> None:
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    racers = [
        subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    for racer in racers:
        output, _ = racer.communicate(timeout=120)
        assert racer.returncode == 0, output.decode()
    assert_store_sound(root)
    assert len(stored_files(root)) <= 4


FAULTS = [
    ("open", errno.EACCES),  # creating the temp file
    ("write", errno.ENOSPC),  # writing bytes
    ("fsync", errno.EIO),  # flushing before commit
    ("makedirs", errno.EACCES),  # creating the address's folder
    ("link", errno.ENOSPC),  # committing
]


@pytest.mark.parametrize(("call", "code"), FAULTS, ids=[c for c, _ in FAULTS])
@pytest.mark.parametrize("size", [10, 3 << 20])
def test_injected_os_errors_store_nothing(
    root: Path, monkeypatch: pytest.MonkeyPatch, call: str, code: int, size: int
) -> None:
    fs = SyncHashFS(root, fsync=True)
    keep = fs.put(b"already here")
    engine = fs._engine
    engine.__dict__.pop("_tmpfile", None)
    real = getattr(os, call)
    calls = {"n": 0}

    def failing(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, call, failing)
    force_named_temp(engine)
    data = os.urandom(size)
    with pytest.raises(OSError, match=os.strerror(code)) as info:
        fs.put(data)
    assert info.value.errno == code
    assert calls["n"] >= 1
    monkeypatch.setattr(os, call, real)
    assert fs.get(keep.id) == keep
    assert stored_files(root) == [keep.relpath]
    assert temp_files(root) == []
    assert_store_sound(root)
    assert fs.put(data).id  # works again once the disk does


def force_named_temp(engine: object) -> None:
    """Use the portable named-temp-file path, whose every OS call can be injected."""
    if hasattr(engine, "_use_tmpfile"):
        engine._use_tmpfile = False  # type: ignore[attr-defined]
