"""The extensions are typed: mypy --strict reports a user's mistakes with them.

``FlaskHashFS`` and ``QuartHashFS`` once proxied the store through
``__getattr__``, so ``fs.count()`` and ``fs.root`` were ``Any``. Each line of
the snippet that ends in ``# E`` must get an error and no other line may;
the snippet without those lines must pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SNIPPET = """
from async_hashfs import AsyncBinaryFile, AsyncTextFile, HashAddress, QuartHashFS
from flask_shim import FlaskHashFS


def use_flask(fs: FlaskHashFS) -> None:
    root: str = fs.root
    n: int = fs.root  # E
    depth: int = fs.depth + fs.width
    fmode: int = fs.fmode  # E
    count: int = fs.count()
    total: str = fs.size()  # E
    address = fs.put(file=b"data", extension="txt")
    address.no_such_field  # E
    found = fs.get(file=address.id)
    found.relpath  # E
    if found is not None:
        relpath: str = found.relpath
    with fs.open(file=address.id, mode="rb") as binary:
        data: bytes = binary.read()
        text: str = binary.read()  # E
    with fs.open(address.id, mode="r") as opened:
        line: str = opened.readline()
        raw: bytes = opened.read()  # E
    for path in fs.files():
        print(path)
        number: int = path  # E
    exists: bool = fs.exists(file="ref")
    fs.delete(file=address.id)
    fs.put(src=b"data")  # E
    fs.no_such_method()  # E
    url: str = fs.url_for(address)
    bad_url: bytes = fs.url_for(address.relpath)  # E
    for moved, expected in fs.repair(extensions=True):
        print(moved, expected.id)
    verified: bool = fs.verify(file=address.id)
    id: str = fs.unshard(fs.idpath(address.id, "txt"))


async def use_quart(qfs: QuartHashFS) -> None:
    count: int = await qfs.count()
    c: str = await qfs.count()  # E
    qfs.count() + 1  # E
    root: str = qfs.root
    r: int = qfs.root  # E
    address: HashAddress = await qfs.put(file=b"data", extension="txt")
    m: int = address.relpath  # E
    unawaited: HashAddress = qfs.put(b"data")  # E
    found = await qfs.get(file=address.id)
    if found is not None:
        print(found.abspath)
    async with qfs.open(file=address.id) as binary:
        data: bytes = await binary.read()
        s: str = await binary.read()  # E
    async with qfs.open(address.id, mode="r") as text:
        t: str = await text.read()
    opened: AsyncBinaryFile = await qfs.open(address.id)
    await opened.close()
    wrong: AsyncTextFile = await qfs.open(address.id)  # E
    async for path in qfs.files():
        print(path)
        p: int = path  # E
    list(qfs.files())  # E
    async for moved, expected in qfs.corrupted():
        print(moved, expected.id)
    exists: bool = await qfs.exists(file="ref")
    await qfs.delete(file=address.id)
    qfs.no_such_method()  # E
    verified: bool = await qfs.verify(address.id)
    url: str = qfs.url_for(address)
"""


def marked_lines(source: str) -> set[int]:
    return {n for n, line in enumerate(source.splitlines(), 1) if line.endswith("# E")}


def mypy_errors(folder: Path, source: str) -> tuple[dict[int, list[str]], str]:
    folder.mkdir()
    (folder / "snippet.py").write_text(source)
    command = [sys.executable, "-m", "mypy", "--strict", "--no-error-summary"]
    result = subprocess.run(
        [*command, "--cache-dir", str(folder / ".mypy_cache"), "snippet.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    errors: dict[int, list[str]] = {}
    for line in output.splitlines():
        parts = line.split(":", 3)
        if len(parts) == 4 and parts[0] == "snippet.py" and parts[2].strip() == "error":
            errors.setdefault(int(parts[1]), []).append(parts[3])
    assert result.returncode in (0, 1), output  # 2 is a crash or bad usage
    return errors, output


@pytest.mark.timeout(600)
def test_mypy_strict_reports_each_mistake_with_an_extension(tmp_path: Path) -> None:
    errors, output = mypy_errors(tmp_path / "mistakes", SNIPPET)
    assert set(errors) == marked_lines(SNIPPET), output


@pytest.mark.timeout(600)
def test_correct_use_of_the_extensions_passes_mypy_strict(tmp_path: Path) -> None:
    correct = "\n".join(line for line in SNIPPET.splitlines() if not line.endswith("# E"))
    errors, output = mypy_errors(tmp_path / "correct", correct + "\n")
    assert errors == {}, output
