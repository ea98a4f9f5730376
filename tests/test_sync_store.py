from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import hashfs
import pytest
from werkzeug.datastructures import FileStorage

from async_hashfs import (
    FileTooLarge,
    HashAddress,
    InvalidExtension,
    InvalidSource,
    NotFound,
    ReadOnlyError,
    SyncHashFS,
)

from .conftest import stored_files, temp_files

DATA = b"the quick brown fox jumps over the lazy dog\n" * 100
DATA_ID = hashlib.sha256(DATA).hexdigest()


# -- interoperability with hashfs 0.7.2 ------------------------------------

LAYOUTS = [
    (4, 1, "sha256"),
    (0, 1, "sha256"),
    (3, 2, "md5"),
    (2, 3, "sha1"),
    (6, 1, "blake2b"),
]


@pytest.mark.parametrize(("depth", "width", "algorithm"), LAYOUTS)
@pytest.mark.parametrize("extension", [None, "jpg", ".png"])
def test_hashfs_store_reads_back_through_ours(
    root: Path, depth: int, width: int, algorithm: str, extension: str | None
) -> None:
    theirs = hashfs.HashFS(root, depth=depth, width=width, algorithm=algorithm)
    ours = SyncHashFS(root, depth=depth, width=width, algorithm=algorithm)
    written = theirs.put(io.BytesIO(DATA), extension)

    for ref in (written.id, written.relpath, written.abspath):
        assert ours.get(ref) == written
        assert ours.exists(ref) and ref in ours
        with ours.open(ref) as file:
            assert file.read() == DATA
    again = ours.put(io.BytesIO(DATA), extension)
    assert again == written._replace(is_duplicate=True)
    assert list(ours.files()) == list(theirs.files())
    assert list(ours.folders()) == list(theirs.folders())
    assert (ours.count(), ours.size(), len(ours)) == (theirs.count(), theirs.size(), len(theirs))
    assert ours.verify(written.id)


@pytest.mark.parametrize(("depth", "width", "algorithm"), LAYOUTS)
@pytest.mark.parametrize("extension", [None, "txt"])
def test_our_store_reads_back_through_hashfs(
    root: Path, depth: int, width: int, algorithm: str, extension: str | None
) -> None:
    theirs = hashfs.HashFS(root, depth=depth, width=width, algorithm=algorithm)
    ours = SyncHashFS(root, depth=depth, width=width, algorithm=algorithm)
    written = ours.put(DATA, extension)

    assert written.id == hashlib.new(algorithm, DATA).hexdigest()
    assert not written.is_duplicate
    for ref in (written.id, written.relpath, written.abspath):
        assert theirs.get(ref) == written
        with theirs.open(ref) as file:
            assert file.read() == DATA
    assert theirs.put(io.BytesIO(DATA), extension) == written._replace(is_duplicate=True)
    assert list(theirs.corrupted()) == []
    assert theirs.count() == 1


def test_files_and_folders_have_hashfs_modes(root: Path) -> None:
    ours = SyncHashFS(root / "ours", fmode=0o640, dmode=0o750)
    theirs = hashfs.HashFS(root / "theirs", fmode=0o640, dmode=0o750)
    mine = ours.put(DATA, "bin")
    other = theirs.put(io.BytesIO(DATA), "bin")
    assert mine.relpath == other.relpath
    assert stat.S_IMODE(os.stat(mine.abspath).st_mode) == 0o640
    for a, b in zip(
        Path(mine.abspath).relative_to(root / "ours").parents,
        Path(other.abspath).relative_to(root / "theirs").parents,
        strict=True,
    ):
        assert os.stat(root / "ours" / a).st_mode == os.stat(root / "theirs" / b).st_mode


def test_same_api_as_hashfs() -> None:
    theirs = {n for n in dir(hashfs.HashFS) if not n.startswith("_")}
    ours = {n for n in dir(SyncHashFS) if not n.startswith("_")}
    assert theirs <= ours
    for name in ("__contains__", "__iter__", "__len__"):
        assert hasattr(SyncHashFS, name)


def test_constructor_attributes_match_hashfs(root: Path) -> None:
    ours = SyncHashFS(root, depth=3, width=2, algorithm="md5", fmode=0o600, dmode=0o700)
    theirs = hashfs.HashFS(root, depth=3, width=2, algorithm="md5", fmode=0o600, dmode=0o700)
    for name in ("root", "depth", "width", "algorithm", "fmode", "dmode"):
        assert getattr(ours, name) == getattr(theirs, name)
    for id in (DATA_ID, "abc"):
        assert ours.shard(id) == theirs.shard(id)
    assert ours.idpath(DATA_ID, "jpg") == theirs.idpath(DATA_ID, "jpg")
    path = ours.idpath(DATA_ID, ".jpg")
    assert ours.unshard(path) == theirs.unshard(path)
    assert ours.relpath(path) == theirs.relpath(path)
    assert ours.haspath(path) and not ours.haspath("/elsewhere")
    assert ours.computehash(io.BytesIO(DATA)) == theirs.computehash(
        hashfs.hashfs.Stream(io.BytesIO(DATA))
    )


# -- put sources ------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: DATA,
        lambda tmp: bytearray(DATA),
        lambda tmp: memoryview(DATA),
        lambda tmp: io.BytesIO(DATA),
        lambda tmp: io.BufferedReader(io.BytesIO(DATA)),
        lambda tmp: io.StringIO(DATA.decode()),
        lambda tmp: [DATA[:10], DATA[10:500], b"", DATA[500:]],
        lambda tmp: (DATA[i : i + 7] for i in range(0, len(DATA), 7)),
        lambda tmp: FileStorage(io.BytesIO(DATA), filename="fox.txt"),
        lambda tmp: _write(tmp / "src.bin", DATA),
        lambda tmp: str(_write(tmp / "src.bin", DATA)),
        lambda tmp: _opened(tmp / "src.bin", "rb"),
        lambda tmp: _opened(tmp / "src.txt", "r"),
    ],
    ids=[
        "bytes",
        "bytearray",
        "memoryview",
        "BytesIO",
        "BufferedReader",
        "StringIO",
        "list",
        "generator",
        "FileStorage",
        "Path",
        "str-path",
        "binary-file",
        "text-file",
    ],
)
def test_put_reads_every_kind_of_source(sync_fs: SyncHashFS, tmp_path: Path, make) -> None:  # type: ignore[no-untyped-def]
    address = sync_fs.put(make(tmp_path), "txt")
    assert address.id == DATA_ID
    assert Path(address.abspath).read_bytes() == DATA
    assert temp_files(sync_fs.root) == []


_OPENED: list[io.IOBase] = []


@pytest.fixture(autouse=True)
def _close_opened() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def _opened(path: Path, mode: str) -> io.IOBase:
    _write(path, DATA)
    file = open(path, mode, encoding=None if "b" in mode else "utf-8")  # noqa: SIM115
    _OPENED.append(file)
    return file


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_put_reads_a_file_from_its_start_and_restores_position(sync_fs: SyncHashFS) -> None:
    file = io.BytesIO(DATA)
    file.seek(17)
    assert sync_fs.put(file).id == DATA_ID
    assert file.tell() == 17


def test_put_reads_an_unseekable_stream_from_where_it_is(sync_fs: SyncHashFS) -> None:
    read, write = os.pipe()
    with os.fdopen(write, "wb") as w:
        w.write(DATA)
    with os.fdopen(read, "rb") as r:
        assert sync_fs.put(r).id == DATA_ID


@pytest.mark.parametrize(
    ("src", "message"),
    [
        (12, "int"),
        (None, "NoneType"),
        ({"a": b"b"}, "dict"),
        ([b"ok", 3], "yielded int"),
    ],
)
def test_put_rejects_what_it_cannot_read(sync_fs: SyncHashFS, src: object, message: str) -> None:
    with pytest.raises(InvalidSource, match=message) as info:
        sync_fs.put(src)
    assert isinstance(info.value, ValueError)
    assert stored_files(sync_fs.root) == [] and temp_files(sync_fs.root) == []


def test_put_rejects_a_path_that_is_not_a_file(sync_fs: SyncHashFS, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a file"):
        sync_fs.put(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a"):
        sync_fs.put(tmp_path)
    assert stored_files(sync_fs.root) == []


@pytest.mark.parametrize("extension", ["../x", "a/b", "*", "x" * 40, ".", "tar..gz", "gz/.."])
def test_put_rejects_bad_extension_before_reading(sync_fs: SyncHashFS, extension: str) -> None:
    def never() -> object:
        raise AssertionError("source was read")
        yield b""  # pragma: no cover

    with pytest.raises(InvalidExtension):
        sync_fs.put(never(), extension)
    assert not Path(sync_fs.root, ".hashfs-tmp").exists()


def test_max_size_stops_the_put_and_leaves_nothing(root: Path) -> None:
    fs = SyncHashFS(root, max_size=1000)
    assert fs.put(b"x" * 1000).id
    with pytest.raises(FileTooLarge, match="1000 bytes"):
        fs.put([b"y" * 600, b"y" * 600])
    assert isinstance(FileTooLarge(1), ValueError)
    assert fs.count() == 1 and temp_files(root) == []


def test_source_failing_midway_stores_nothing(sync_fs: SyncHashFS) -> None:
    def broken():  # type: ignore[no-untyped-def]
        yield b"a" * 100_000
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        sync_fs.put(broken())
    assert stored_files(sync_fs.root) == [] and temp_files(sync_fs.root) == []


def test_fsync_option_stores_the_same(root: Path) -> None:
    fs = SyncHashFS(root, fsync=True)
    assert fs.fsync
    assert Path(fs.put(DATA).abspath).read_bytes() == DATA


def test_put_with_and_without_extension_are_separate_files(sync_fs: SyncHashFS) -> None:
    plain = sync_fs.put(DATA)
    with_ext = sync_fs.put(DATA, "txt")
    assert not plain.is_duplicate and not with_ext.is_duplicate
    assert sync_fs.get(DATA_ID) == plain
    sync_fs.delete(plain.relpath)
    assert sync_fs.get(DATA_ID) == with_ext


# -- reading, deleting, walking ----------------------------------------------


def test_get_and_open_missing(sync_fs: SyncHashFS) -> None:
    assert sync_fs.get(DATA_ID) is None
    assert not sync_fs.exists(DATA_ID) and DATA_ID not in sync_fs
    with pytest.raises(NotFound, match="Could not locate file") as info:
        sync_fs.open(DATA_ID)
    assert isinstance(info.value, IOError)


def test_open_returns_buffered_reader_or_text(sync_fs: SyncHashFS) -> None:
    address = sync_fs.put(DATA)
    with sync_fs.open(address.id) as binary:
        assert isinstance(binary, io.BufferedReader)
        assert binary.read() == DATA
    with sync_fs.open(address.id, "r") as text:
        assert text.read() == DATA.decode()


@pytest.mark.parametrize("mode", ["w", "wb", "a", "ab", "r+", "rb+", "x", "rw", "rr", "", "rbt"])
def test_open_refuses_write_modes(sync_fs: SyncHashFS, mode: str) -> None:
    address = sync_fs.put(DATA)
    with pytest.raises(ReadOnlyError):
        sync_fs.open(address.id, mode)
    assert Path(address.abspath).read_bytes() == DATA


def test_delete_removes_file_and_empty_folders(sync_fs: SyncHashFS) -> None:
    keep = sync_fs.put(b"keep")
    gone = sync_fs.put(DATA, "txt")
    sync_fs.delete(gone.id)
    assert not os.path.exists(gone.abspath)
    assert not os.path.exists(os.path.join(sync_fs.root, gone.relpath.split(os.sep)[0]))
    assert sync_fs.get(keep.id) == keep
    sync_fs.delete(gone.id)  # missing: no error
    sync_fs.delete("../../etc/passwd")
    assert sync_fs.count() == 1


def test_walk_skips_temp_folder_and_symlinks(sync_fs: SyncHashFS, tmp_path: Path) -> None:
    address = sync_fs.put(DATA)
    temp = Path(sync_fs.root, ".hashfs-tmp")
    temp.mkdir(exist_ok=True)
    (temp / "1-leftover.tmp").write_bytes(b"partial")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    os.symlink(outside, Path(sync_fs.root, "f"))
    os.symlink(outside / "secret", Path(sync_fs.root, "link"))
    assert list(sync_fs.files()) == [address.abspath] == list(sync_fs)
    assert list(sync_fs.folders()) == [os.path.dirname(address.abspath)]
    assert (sync_fs.count(), sync_fs.size(), len(sync_fs)) == (1, len(DATA), 1)
    assert sync_fs.repair() == []


def test_corrupted_and_repair(sync_fs: SyncHashFS) -> None:
    good = sync_fs.put(DATA, "txt")
    misplaced = Path(sync_fs.root, "misplaced.txt")
    misplaced.write_bytes(b"moved")
    duplicate = Path(sync_fs.root, "dupe.txt")
    duplicate.write_bytes(DATA)
    moved_id = hashlib.sha256(b"moved").hexdigest()

    found = dict(sync_fs.corrupted())
    assert set(found) == {str(misplaced), str(duplicate)}
    assert found[str(misplaced)].id == moved_id

    repaired = sync_fs.repair()
    assert {path for path, _ in repaired} == {str(misplaced), str(duplicate)}
    assert not misplaced.exists() and not duplicate.exists()
    assert Path(sync_fs.idpath(moved_id, "txt")).read_bytes() == b"moved"
    assert stat.S_IMODE(os.stat(sync_fs.idpath(moved_id, "txt")).st_mode) == 0o664
    assert Path(good.abspath).read_bytes() == DATA
    assert list(sync_fs.corrupted()) == []


def test_verify_detects_changed_bytes(sync_fs: SyncHashFS) -> None:
    address = sync_fs.put(DATA)
    assert sync_fs.verify(address.id)
    os.chmod(address.abspath, 0o644)
    Path(address.abspath).write_bytes(b"tampered")
    assert not sync_fs.verify(address.relpath)
    with pytest.raises(NotFound):
        sync_fs.verify("0" * 64)


def test_gc_removes_abandoned_temp_files_and_empty_folders(sync_fs: SyncHashFS) -> None:
    address = sync_fs.put(DATA)
    temp = Path(sync_fs.root, ".hashfs-tmp")
    temp.mkdir()
    (temp / "999999999-dead.tmp").write_bytes(b"left by a killed writer")
    Path(sync_fs.root, "a", "b").mkdir(parents=True)
    live = sync_fs._engine.writer()
    try:
        report = sync_fs.gc()
        assert report.temp_files == [str(temp / "999999999-dead.tmp")]
        assert report.temp_bytes == len(b"left by a killed writer")
        assert sorted(report.folders) == [
            os.path.join(sync_fs.root, "a"),
            os.path.join(sync_fs.root, "a", "b"),
        ]
        assert len(temp_files(sync_fs.root)) == 1  # the live writer's file stays
    finally:
        live.abort()
    assert temp_files(sync_fs.root) == []
    assert sync_fs.get(address.id) == address


def test_gc_older_than_keeps_recent_temp_files(sync_fs: SyncHashFS) -> None:
    temp = Path(sync_fs.root, ".hashfs-tmp")
    temp.mkdir()
    (temp / "1-recent.tmp").write_bytes(b"x")
    assert sync_fs.gc(older_than=3600).temp_files == []
    assert temp_files(sync_fs.root) == ["1-recent.tmp"]


# -- hostile references ---------------------------------------------------------


def test_references_never_leave_the_root(root: Path, tmp_path: Path) -> None:
    fs = SyncHashFS(root)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    address = fs.put(DATA)
    folder = os.path.dirname(address.abspath)
    os.symlink(secret, os.path.join(folder, DATA_ID[4:] + ".txt"))  # leaf symlink
    outside = tmp_path / "outside"
    evil = hashlib.sha256(b"evil").hexdigest()
    Path(outside, *fs.shard(evil)[1:-1]).mkdir(parents=True)
    Path(outside, *fs.shard(evil)[1:]).write_bytes(b"not stored here")
    os.symlink(outside, os.path.join(root, evil[0]))  # shard folder symlink
    temp = Path(root, ".hashfs-tmp")
    temp.mkdir(exist_ok=True)
    (temp / "x.tmp").write_bytes(b"in flight")

    hostile = [
        str(secret),
        "../secret.txt",
        os.path.relpath(secret, Path.cwd()),
        f"{root}/../secret.txt",
        evil,
        os.path.join(*fs.shard(evil)),
        DATA_ID[:4] + "*",
        os.path.join(*fs.shard(DATA_ID)[:-1], "*"),
        os.path.join(*fs.shard(DATA_ID)[:-1]),
        ".hashfs-tmp/x.tmp",
        str(temp / "x.tmp"),
        "a\0b",
        "",
        ".",
        str(root),
        os.path.join(*fs.shard(DATA_ID)[:-1], DATA_ID[4:] + ".txt"),
    ]
    for ref in hostile:
        assert fs.get(ref) is None, ref
        assert not fs.exists(ref), ref
        assert fs.realpath(ref) is None, ref
        with pytest.raises(NotFound):
            fs.open(ref)
        fs.delete(ref)
    assert secret.read_bytes() == b"secret"
    assert (temp / "x.tmp").exists()
    assert fs.get(DATA_ID) == address


def test_reference_must_be_str_or_path(sync_fs: SyncHashFS) -> None:
    with pytest.raises(TypeError, match="not int"):
        sync_fs.get(3)
    address = sync_fs.put(DATA)
    assert sync_fs.get(Path(address.abspath)) == address
    assert sync_fs.get(address.relpath.encode()) == address


# -- concurrency ----------------------------------------------------------------


def test_threads_putting_same_bytes_store_one_file(sync_fs: SyncHashFS) -> None:
    barrier = threading.Barrier(64)
    results: list[HashAddress] = []

    def put() -> None:
        barrier.wait()
        results.append(sync_fs.put(DATA))

    threads = [threading.Thread(target=put) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 64
    assert sum(not r.is_duplicate for r in results) == 1
    assert stored_files(sync_fs.root) == [results[0].relpath]
    assert temp_files(sync_fs.root) == []


def test_puts_and_deletes_of_same_bytes_race_safely(sync_fs: SyncHashFS) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(50):
                address = sync_fs.put(DATA)
                sync_fs.delete(address.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert temp_files(sync_fs.root) == []
    for path in sync_fs.files():
        assert sync_fs.verify(path)


# -- issue 10: what HashFS stores, read and kept as it is ------------------------


@pytest.mark.parametrize("extension", ["tar.gz", ".tar.gz", "backup.2024-01-01.tar.gz"])
def test_multi_dot_names_hashfs_wrote_read_verify_and_stay(root: Path, extension: str) -> None:
    theirs = hashfs.HashFS(root)
    written = theirs.put(io.BytesIO(DATA), extension)
    assert written.relpath.endswith("." + extension.lstrip("."))
    ours = SyncHashFS(root)
    for ref in (written.id, written.relpath, written.abspath):
        assert ours.get(ref) == written
        assert ours.exists(ref)
        with ours.open(ref) as file:
            assert file.read() == DATA
        assert ours.verify(ref)
    assert ours.unshard(written.abspath) == written.id
    assert list(ours.corrupted()) == []
    assert ours.repair() == []
    assert stored_files(root) == [written.relpath]
    assert ours.layout.parse_address(written.relpath) == (written.id, "." + extension.lstrip("."))


@pytest.mark.parametrize("extension", ["tar.gz", ".tar.gz", "a.b.c"])
def test_put_accepts_multi_dot_extensions_with_hashfs_relpath(root: Path, extension: str) -> None:
    ours = SyncHashFS(root / "ours").put(DATA, extension)
    theirs = hashfs.HashFS(root / "theirs").put(io.BytesIO(DATA), extension)
    assert (ours.id, ours.relpath) == (theirs.id, theirs.relpath)


def test_repair_keeps_a_multi_dot_extension_when_the_layout_changes(root: Path) -> None:
    written = hashfs.HashFS(root).put(io.BytesIO(DATA), "tar.gz")
    ((path, address),) = SyncHashFS(root, depth=1).repair()
    assert path == written.abspath
    assert address.relpath == os.path.join(DATA_ID[0], DATA_ID[1:] + ".tar.gz")
    assert Path(address.abspath).read_bytes() == DATA


def test_unshard_refuses_what_is_no_content_address(sync_fs: SyncHashFS) -> None:
    address = sync_fs.put(DATA, "tar.gz")
    assert sync_fs.unshard(address.abspath) == DATA_ID
    assert sync_fs.unshard(address.relpath) == DATA_ID
    for path in ("invalid", os.path.join(sync_fs.root, "notes.txt"), "/elsewhere/" + DATA_ID):
        with pytest.raises(ValueError, match="Cannot unshard path"):
            sync_fs.unshard(path)


def test_put_then_delete_leaves_the_root_empty(sync_fs: SyncHashFS) -> None:
    address = sync_fs.put(DATA)
    sync_fs.delete(address.id)
    assert os.listdir(sync_fs.root) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fmode": "664"}, r"fmode must be an integer from 0 to 0o7777 .* or None, not '664'"),
        ({"fmode": 0o10000}, r"fmode must be .*, not 0o10000"),
        ({"fmode": -1}, "fmode must be"),
        ({"fmode": 1.5}, "fmode must be"),
        ({"fmode": True}, "fmode must be"),
        ({"dmode": None}, r"dmode must be an integer from 0 to 0o7777 \(such as 0o755\), not No"),
        ({"dmode": "755"}, "dmode must be"),
        ({"depth": -1}, "depth must be an integer >= 0, not -1"),
        ({"depth": "4"}, "depth must be an integer >= 0"),
        ({"width": 0.5}, "width must be an integer >= 0"),
        ({"algorithm": "sha257"}, "algorithm 'sha257' unknown: .*sha256"),
        ({"algorithm": None}, "algorithm None unknown"),
        ({"algorithm": "shake_256"}, "algorithm 'shake_256' has no fixed digest size"),
        ({"max_size": -1}, r"max_size must be an integer >= 0 or None, not -1"),
        ({"max_size": "10MB"}, "max_size must be"),
        ({"max_size": 1.5}, "max_size must be"),
        ({"fsync": "yes"}, "fsync must be True or False, not 'yes'"),
        ({"fsync": 1}, "fsync must be True or False"),
        ({"s3_options": "endpoint"}, "s3_options must be a mapping or None"),
    ],
)
def test_constructor_refuses_bad_arguments_at_once(
    root: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SyncHashFS(root, **options)  # type: ignore[arg-type]
    assert os.listdir(root) == []


def test_constructor_accepts_hashfs_arguments(root: Path) -> None:
    for fmode in (None, 0, 0o7777, 0o600):
        assert SyncHashFS(root, fmode=fmode).fmode == fmode
    assert SyncHashFS(root, 0, 0, "md5", 0o644, 0o700, max_size=0, fsync=True).max_size == 0


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def _run_within(seconds: float, func: object, *args: object) -> BaseException | None:
    """Run ``func(*args)`` in a thread; fail if it is still running after ``seconds``."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            func(*args)  # type: ignore[operator]
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        # Free a put blocked opening a FIFO, then report it.
        for arg in args:
            if isinstance(arg, Path) and stat.S_ISFIFO(os.stat(arg).st_mode):
                os.close(os.open(arg, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"{func} blocked for more than {seconds} s")
    return outcome[0]


def test_put_refuses_a_fifo_at_once(sync_fs: SyncHashFS, tmp_path: Path) -> None:
    fifo = _fifo(tmp_path)
    for call in (sync_fs.put, sync_fs.computehash):
        error = _run_within(5, call, fifo)
        assert isinstance(error, InvalidSource), error
        assert "not a regular file" in str(error)
    assert stored_files(sync_fs.root) == [] and temp_files(sync_fs.root) == []


def test_put_refuses_devices_sockets_and_folders(sync_fs: SyncHashFS, tmp_path: Path) -> None:
    import socket

    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        for path in (Path("/dev/null"), sock_path, tmp_path, str(tmp_path)):
            with pytest.raises(InvalidSource, match="not a"):
                sync_fs.put(path)
    assert stored_files(sync_fs.root) == [] and temp_files(sync_fs.root) == []


def test_put_refuses_a_closed_file(sync_fs: SyncHashFS, tmp_path: Path) -> None:
    closed = io.BytesIO(DATA)
    closed.close()
    path = tmp_path / "data"
    path.write_bytes(DATA)
    with open(path, "rb") as file:
        pass
    for src in (closed, file):
        with pytest.raises(InvalidSource, match="closed file"):
            sync_fs.put(src)
    assert stored_files(sync_fs.root) == [] and temp_files(sync_fs.root) == []


def test_put_refuses_an_undecodable_text_file(sync_fs: SyncHashFS, tmp_path: Path) -> None:
    path = tmp_path / "latin"
    path.write_bytes(b"ok " * 1000 + "Grüße".encode("latin-1"))
    with (
        open(path, encoding="utf-8") as file,
        pytest.raises(InvalidSource, match=r"cannot decode .* as utf-8.*'rb'") as info,
    ):
        sync_fs.put(file)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)
    assert stored_files(sync_fs.root) == [] and temp_files(sync_fs.root) == []


def test_put_refuses_a_non_contiguous_memoryview(sync_fs: SyncHashFS) -> None:
    strided = memoryview(DATA)[::2]
    for src in (strided, [b"head", strided]):
        with pytest.raises(InvalidSource, match="non-contiguous memoryview"):
            sync_fs.put(src)
    assert stored_files(sync_fs.root) == [] and temp_files(sync_fs.root) == []
    assert sync_fs.put(memoryview(DATA)[::1]).id == DATA_ID


def test_text_file_is_stored_as_the_utf8_of_what_it_reads(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "text"
    path.write_bytes("line one\r\nGrüße\r\n".encode("latin-1"))
    ours = SyncHashFS(root / "ours")
    theirs = hashfs.HashFS(root / "theirs")
    with open(path, encoding="latin-1") as file:
        address = ours.put(file)
        assert address.id == theirs.put(file).id
    assert Path(address.abspath).read_bytes() == "line one\nGrüße\n".encode()
    assert ours.put(path).id == hashlib.sha256(path.read_bytes()).hexdigest() != address.id
