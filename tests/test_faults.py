"""Proof under faults: killed writers, injected OS errors, racing processes.

After every scenario the store is checked whole: each address holds exactly
the bytes its hash names, and once ``gc`` ran no temp file is left.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from async_hashfs import NotFound, SyncHashFS
from async_hashfs._engine import Engine
from async_hashfs._folder import DIR_FD

from .conftest import stored_files, temp_files

SEED = int(os.environ.get("FAULT_SEED", time.time_ns() % 10_000))
DATA = os.urandom(300_000)


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
    ("mkdir", errno.EACCES),  # creating the address's folder
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


def force_named_temp(engine: Engine) -> None:
    """Use the portable named-temp-file path, whose every OS call can be injected."""
    engine._anonymous = False


# -- issue 11, item 2: a shard folder swapped for a symlink, racing every reference --

#: Swaps two names atomically (renameat2 RENAME_EXCHANGE), as fast as it can,
#: for the given seconds, then leaves them as they were.
FLIPPER = textwrap.dedent(
    """
    import ctypes, os, sys, time

    libc = ctypes.CDLL(None, use_errno=True)
    a, b, seconds = sys.argv[1].encode(), sys.argv[2].encode(), float(sys.argv[3])

    def exchange():
        if libc.renameat2(-100, a, -100, b, 2) != 0:  # AT_FDCWD, RENAME_EXCHANGE
            sys.exit("renameat2: " + os.strerror(ctypes.get_errno()))

    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    swaps = 0
    while time.monotonic() < deadline:
        exchange()
        swaps += 1
    if swaps % 2:
        exchange()
    print(swaps, flush=True)
    """
)
#: How long each operation races the swaps.
RACE_SECONDS = 1.5
SECRET = b"outside the store: never read, listed, changed or deleted"
EVIL = b"only outside the store"


def renameat2_available() -> bool:
    if sys.platform != "linux":
        return False
    import ctypes

    return hasattr(ctypes.CDLL(None), "renameat2")


needs_swaps = pytest.mark.skipif(
    not renameat2_available() or not DIR_FD,
    reason="swaps folders with Linux's renameat2; the folder walk by descriptor is POSIX's",
)


def id_starting_with(first: str, seed: bytes) -> bytes:
    """Bytes whose sha256 starts with ``first``."""
    n = 0
    while not hashlib.sha256(seed + str(n).encode()).hexdigest().startswith(first):
        n += 1
    return seed + str(n).encode()


class SwapScene:
    """A store whose first shard folder is swapped, over and over, for a symlink.

    The symlink leads to a folder outside the root that holds a file at the
    same path as a stored one (``twin``, other bytes) and one more that only
    exists there (``evil``).
    """

    def __init__(self, tmp_path: Path, root: Path) -> None:
        self.root = root
        self.fs = SyncHashFS(root)
        self.stored = self.fs.put(DATA, "bin")
        self.first = self.stored.relpath.split(os.sep)[0]
        # Keeps the first folder from emptying when the stored file is deleted.
        self.fs.put(id_starting_with(self.first, b"keeper"))
        self.outside = tmp_path / "outside"
        self.twin = self.outside / os.path.relpath(self.stored.relpath, self.first)
        self.twin.parent.mkdir(parents=True)
        self.twin.write_bytes(SECRET)
        self.twin.chmod(0o600)
        evil_bytes = id_starting_with(self.first, EVIL)
        self.evil_id = hashlib.sha256(evil_bytes).hexdigest()
        self.evil_relpath = self.fs.layout.relpath(self.evil_id, ".bin")
        evil = self.outside / os.path.relpath(self.evil_relpath, self.first)
        evil.parent.mkdir(parents=True, exist_ok=True)
        evil.write_bytes(evil_bytes)
        evil.chmod(0o600)
        self.secret_ids = {hashlib.sha256(SECRET).hexdigest(), self.evil_id}
        self.outside_before = self.outside_state()
        self.link = tmp_path / "swap"
        os.symlink(self.outside, self.link)
        self.script = tmp_path / "flipper.py"
        self.script.write_text(FLIPPER)

    def outside_state(self) -> dict[str, tuple[bytes, int, int]]:
        """Every file outside: its bytes, mode and inode."""
        state = {}
        for path in sorted(self.outside.rglob("*")):
            if path.is_file():
                info = path.stat()
                state[str(path)] = (path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_ino)
        return state

    def race(self, operation: Callable[[], None]) -> int:
        """Run ``operation`` again and again while the swaps go on; return how many times."""
        folder, link = str(self.root / self.first), str(self.link)
        flipper = subprocess.Popen(
            [sys.executable, str(self.script), folder, link, str(RACE_SECONDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert flipper.stdout is not None
        assert flipper.stdout.readline().strip() == "ready"
        runs = 0
        try:
            while flipper.poll() is None:
                operation()
                runs += 1
        finally:
            output, _ = flipper.communicate(timeout=30)
        assert flipper.returncode == 0, output
        assert int(output) > 100, "the folder was hardly swapped"
        assert (self.root / self.first).is_dir() and not (self.root / self.first).is_symlink()
        assert self.outside_state() == self.outside_before, "a file outside the root changed"
        return runs


@pytest.fixture
def scene(tmp_path: Path, root: Path) -> SwapScene:
    return SwapScene(tmp_path, root)


def expect_not_found(call: Callable[[], object]) -> None:
    with pytest.raises(NotFound):
        call()


@needs_swaps
def test_swaps_never_lead_get_exists_or_listings_outside(scene: SwapScene) -> None:
    fs = scene.fs

    def operation() -> None:
        assert fs.get(scene.evil_id) is None
        assert not fs.exists(scene.evil_relpath)
        assert fs.get(scene.stored.id) in (None, scene.stored)
        listed = {
            fs.layout.unshard(p)
            for p in fs.files()
            if fs.layout.parse_address(os.path.relpath(p, fs.root)) is not None
        }
        assert not listed & scene.secret_ids
        assert fs.count() <= 2

    assert scene.race(operation) > 10


@needs_swaps
def test_swaps_never_lead_open_or_verify_outside(scene: SwapScene) -> None:
    fs = scene.fs

    def operation() -> None:
        try:
            with fs.open(scene.stored.id) as file:
                assert file.read() == DATA
        except NotFound:
            pass
        try:
            assert fs.verify(scene.stored.relpath) is True
        except NotFound:
            pass
        expect_not_found(lambda: fs.open(scene.evil_id))
        expect_not_found(lambda: fs.verify(scene.evil_id))

    assert scene.race(operation) > 10


@needs_swaps
def test_swaps_never_lead_the_engine_serving_outside(scene: SwapScene) -> None:
    engine = scene.fs._engine

    def operation() -> None:
        blob = engine.open_blob(scene.stored.relpath)
        if blob is not None:
            try:
                assert blob.pread(len(DATA) + 1, 0) == DATA
            finally:
                blob.close()
        assert engine.open_blob(scene.evil_relpath) is None

    assert scene.race(operation) > 10


@needs_swaps
def test_swaps_never_lead_flask_serving_outside(scene: SwapScene) -> None:
    from flask import Flask

    from flask_shim import FlaskHashFS

    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(scene.root), HASHFS_PATH_PREFIX="/files", HASHFS_SERVE=True
    )
    FlaskHashFS(app)
    client = app.test_client()
    served = []

    def operation() -> None:
        response = client.get("/files/" + scene.stored.relpath)
        assert response.status_code in (200, 404)
        if response.status_code == 200:
            assert response.get_data() == DATA
            served.append(1)
        response.close()
        response = client.get("/files/" + scene.evil_relpath)
        assert response.status_code == 404
        response.close()

    assert scene.race(operation) > 10
    assert served, "the stored file was never served"


@needs_swaps
def test_swaps_never_lead_delete_or_put_outside(scene: SwapScene) -> None:
    fs = scene.fs

    def operation() -> None:
        fs.delete(scene.evil_id)
        fs.delete(scene.evil_relpath)
        fs.delete(scene.stored.id)
        try:
            fs.put(DATA, "bin")
        except NotADirectoryError:
            pass  # the folder was a symlink as the put committed

    scene.race(operation)
    assert fs.put(DATA, "bin").relpath == scene.stored.relpath
    assert Path(scene.stored.abspath).read_bytes() == DATA
    assert_store_sound(scene.root)


@needs_swaps
def test_swaps_never_lead_repair_outside(scene: SwapScene) -> None:
    fs = scene.fs

    def operation() -> None:
        report = fs.repair()
        assert not {address.id for _, address in report} & scene.secret_ids
        assert not {address.id for _, address in fs.corrupted()} & scene.secret_ids

    scene.race(operation)
    for path in fs.files():
        assert Path(path).read_bytes() != SECRET
    assert fs.get(scene.stored.id) == scene.stored
    assert_store_sound(scene.root)


# -- issue 11, item 5: a put racing the delete of the same bytes -----------------------


@pytest.mark.parametrize("temp", ["nameless", "named"])
def test_put_outlasts_deletes_removing_its_folder_again_and_again(
    root: Path, monkeypatch: pytest.MonkeyPatch, temp: str
) -> None:
    # A delete's remove_empty takes the new folders away between their making and
    # the link, 40 times over (the engine used to give up after 16).
    fs = SyncHashFS(root)
    if temp == "named":
        force_named_temp(fs._engine)
    folder = os.path.dirname(
        fs.layout.abspath(fs.layout.relpath(hashlib.sha256(DATA).hexdigest()))
    )
    real_link = os.link
    removed = 0

    def racing_link(*args: object, **kwargs: object) -> None:
        nonlocal removed
        if removed < 40 and os.path.isdir(folder):
            removed += 1
            fs.remove_empty(folder)
        real_link(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", racing_link)
    address = fs.put(DATA)
    assert removed == 40
    assert not address.is_duplicate
    assert Path(address.abspath).read_bytes() == DATA
    assert temp_files(root) == []


def test_put_gives_up_only_when_the_race_lasts(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import async_hashfs._engine as engine_module

    monkeypatch.setattr(engine_module, "_RACE_PATIENCE", 0.3)
    fs = SyncHashFS(root)
    folder = os.path.dirname(
        fs.layout.abspath(fs.layout.relpath(hashlib.sha256(DATA).hexdigest()))
    )
    real_link = os.link
    attempts = 0

    def racing_link(*args: object, **kwargs: object) -> None:
        nonlocal attempts
        attempts += 1
        fs.remove_empty(folder)
        real_link(*args, **kwargs)  # type: ignore[arg-type]

    # The engine's clock moves only when it sleeps, so how many attempts fit in its
    # patience does not depend on how loaded the machine is.
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    fake_time = types.SimpleNamespace(**vars(time))
    fake_time.monotonic, fake_time.sleep = (lambda: clock[0]), sleep
    monkeypatch.setattr(engine_module, "time", fake_time)
    monkeypatch.setattr(os, "link", racing_link)
    with pytest.raises(FileNotFoundError, match=r"folder kept disappearing for 0\.3 s"):
        fs.put(DATA)
    assert clock[0] >= 0.3
    assert attempts > 16
    assert temp_files(root) == [] and stored_files(root) == []


#: Puts and deletes the same bytes from 16 threads until the deadline; prints
#: how many puts, how many errors, and the first errors.
CROWD = textwrap.dedent(
    """
    import sys, threading, time
    from flask_shim import SyncHashFS

    fs = SyncHashFS(sys.argv[1])
    deadline = time.monotonic() + float(sys.argv[2])
    errors, puts = [], [0]

    def work():
        while time.monotonic() < deadline:
            try:
                address = fs.put(b"the same bytes" * 100, "bin")
                puts[0] += 1
                fs.delete(address.id)
            except BaseException as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(puts[0], len(errors), *errors[:5], sep="\\n")
    """
)


#: Keeps one CPU busy for the given seconds.
BUSY = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end: pass"
)


def test_puts_and_deletes_of_the_same_bytes_under_cpu_contention(
    root: Path, tmp_path: Path
) -> None:
    # As the issue measured: two busy loops beside, puts and deletes racing.
    script = tmp_path / "crowd.py"
    script.write_text(CROWD)
    seconds = 3.0
    busy = [
        subprocess.Popen([sys.executable, "-c", BUSY, str(seconds)], stdout=subprocess.DEVNULL)
        for _ in range(2)
    ]
    crowd = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        results = [process.communicate(timeout=120)[0].splitlines() for process in crowd]
    finally:
        for process in busy:
            process.kill()
            process.wait()
    for puts, failed, *errors in results:
        assert int(puts) > 50
        assert int(failed) == 0, errors
    assert_store_sound(root)
