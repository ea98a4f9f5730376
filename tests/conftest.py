from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from async_hashfs import AsyncHashFS, SyncHashFS


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test in which our code blocks a running event loop (invariant 5)."""
    with blockbuster_ctx(["async_hashfs", "flask_shim"]) as bb:
        yield bb


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    path.mkdir()
    return path


@pytest.fixture
def sync_fs(root: Path) -> SyncHashFS:
    return SyncHashFS(root)


@pytest.fixture
def async_fs(root: Path) -> AsyncHashFS:
    return AsyncHashFS(root)


def temp_files(root: Path | str) -> list[str]:
    """Names in the store's temp folder, and nameless temp files open in the root.

    A nameless (``O_TMPFILE``) temp file shows in ``/proc/<pid>/fd`` as
    ``<root>/#<inode> (deleted)``: listed here as ``#<inode> (deleted)``, so
    that "no temp file left" still means something on Linux.
    """
    folder = Path(root, ".hashfs-tmp")
    named = sorted(os.listdir(folder)) if folder.exists() else []
    return named + sorted(open_nameless_files(root))


def open_nameless_files(root: Path | str) -> set[str]:
    """Names of the nameless files any process of ours holds open in ``root``."""
    prefix = os.path.realpath(root) + os.sep + "#"
    found = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefix) and os.sep not in target[len(prefix) :]:
                found.add(target[len(prefix) - 1 :])
    return found


def stored_files(root: Path | str) -> list[str]:
    """Paths relative to the root of every file outside the temp folder."""
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [s for s in subfolders if s != ".hashfs-tmp"]
        found += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(found)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """One SeaweedFS server for the session, started on first use."""
    from . import s3server

    server = s3server.start()
    yield server
    server.stop()


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Constructor arguments of an empty store on each backend.

    The same contract tests run on a folder and on an S3 bucket (a fresh
    prefix per test).
    """
    if request.param == "local":
        return {"root": str(tmp_path / "store")}
    server = request.getfixturevalue("s3_server")
    prefix = f"t-{os.getpid()}-{request.node.name}".replace("[", "-").replace("]", "")
    prefix = "".join(c if c.isalnum() or c in "-_" else "-" for c in prefix)
    return {"root": f"s3://hashfs-test/{prefix}", "s3_options": server.options()}
