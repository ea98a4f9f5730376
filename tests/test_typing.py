"""The public API is typed: mypy --strict reports a user's mistakes with it.

Each snippet line that ends in ``# E`` must get exactly one error and no
other line may get one, so a return type that decays to ``Any`` fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hashfs
import pytest

from async_hashfs import AsyncHashFS, HashAddress, SyncHashFS

SNIPPET = """
from async_hashfs import AsyncBinaryFile, AsyncHashFS, SyncHashFS
from flask_shim import SyncHashFS as DropIn

same: type[SyncHashFS] = DropIn  # the drop-in import is the same class to mypy
count: str = DropIn("/tmp").count()  # E


def use_sync(fs: SyncHashFS, mode: str) -> None:
    address = fs.put(b"data", "txt")
    address.no_such_field  # E
    n: int = address.id  # E
    ok: bool = address.is_duplicate
    with fs.open(address.id) as binary:
        s: str = binary.read()  # E
    with fs.open(address.id, "r") as text:
        b: bytes = text.read()  # E
    with fs.open(address.id, mode) as either:
        either.read()
    found = fs.get("ref")
    found.relpath  # E
    if found is not None:
        path: str = found.abspath
    total: str = fs.count()  # E


async def use_async(fs: AsyncHashFS) -> None:
    address = await fs.put(b"data")
    m: int = address.relpath  # E
    async with fs.open(address.id) as binary:
        s: str = await binary.read()  # E
    async with fs.open(address.id, "r") as text:
        b: bytes = await text.read()  # E
        line: str = await text.readline()
    opened: AsyncBinaryFile = await fs.open(address.id)
    x: str = await opened.read()  # E
    await opened.close()
    c: str = await fs.count()  # E
    fs.put(b"more").id  # E
    exists: bool = await fs.exists("ref")
    async for path in fs.files():
        n: int = path  # E
"""


def marked_lines(source: str) -> set[int]:
    return {n for n, line in enumerate(source.splitlines(), 1) if line.endswith("# E")}


def run_mypy(tmp_path: Path, source: str) -> str:
    (tmp_path / "snippet.py").write_text(source)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "snippet.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_mypy_strict_reports_each_mistake_and_nothing_else(tmp_path: Path) -> None:
    output = run_mypy(tmp_path, SNIPPET)
    errors: dict[int, list[str]] = {}
    for line in output.splitlines():
        parts = line.split(":", 3)
        if len(parts) == 4 and parts[0] == "snippet.py" and parts[2].strip() == "error":
            errors.setdefault(int(parts[1]), []).append(parts[3])
    assert set(errors) == marked_lines(SNIPPET), output


def test_address_is_hashfs_own_class(tmp_path: Path) -> None:
    address = SyncHashFS(tmp_path).put(b"data")
    assert HashAddress is hashfs.HashAddress
    assert isinstance(address, hashfs.HashAddress)
    assert AsyncHashFS.open.__doc__
