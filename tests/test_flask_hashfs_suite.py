"""Flask-HashFS 0.3.0's own test suite, run on ``flask_shim.FlaskHashFS``.

The suite comes from the flask-hashfs 0.3.0 sdist, fetched from the package
index at test time (and cached), never copied into this repository. It is
pointed at our extension by text replacement and run by pytest in a
subprocess; every one of its tests must pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

REQUIREMENT = "flask-hashfs==0.3.0"
SDIST = "Flask-HashFS-0.3.0.tar.gz"
SUITE = "Flask-HashFS-0.3.0/tests/test_flask_hashfs.py"
#: How many tests the 0.3.0 suite has, so a suite that silently shrank fails.
SUITE_SIZE = 18

#: (old, new, how many times old occurs) applied to the suite's source.
REPLACEMENTS = [
    # The extension under test.
    ("from flask_hashfs import FlaskHashFS", "from flask_shim import FlaskHashFS", 1),
    # The suite checks that each call reaches the store class with the same
    # arguments; FlaskHashFS's store class is SyncHashFS, the drop-in for HashFS.
    ("mock.patch('hashfs.HashFS.", "mock.patch('flask_shim.SyncHashFS.", 4),
    # The 'mock' backport is not a dependency: the standard library's is the same.
    ("import mock\n", "from unittest import mock\n", 1),
    # Removed in pytest 8; 'fixture' has supported yield since pytest 3.
    ("@pytest.yield_fixture", "@pytest.fixture", 1),
]


def cache_dir() -> Path:
    folder = os.environ.get("ASYNC_HASHFS_SDIST_CACHE")
    return Path(folder) if folder else Path(tempfile.gettempdir(), "async-hashfs-sdists")


def fetch_sdist() -> Path:
    """Return the cached sdist, downloading it first; skip when the index is unreachable."""
    folder = cache_dir()
    sdist = folder / SDIST
    if sdist.exists():
        return sdist
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
    try:
        result = subprocess.run(
            [*command, "--disable-pip-version-check", REQUIREMENT, "-d", str(folder)],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"package index unreachable: pip download {REQUIREMENT} timed out")
    if result.returncode != 0 or not sdist.exists():
        last = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        pytest.skip(f"package index unreachable: pip download {REQUIREMENT} failed: {last}")
    return sdist


def adapted_suite(sdist: Path) -> str:
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(SUITE)
        assert member is not None, f"{SUITE} is not a file in {sdist}"
        source = member.read().decode("utf-8")
    for old, new, count in REPLACEMENTS:
        assert source.count(old) == count, f"expected {count} x {old!r} in {SUITE}"
        source = source.replace(old, new)
    return source


@pytest.mark.timeout(300)
def test_flask_hashfs_suite_passes_on_flask_shim(tmp_path: Path) -> None:
    suite = tmp_path / "test_flask_hashfs.py"
    suite.write_text(adapted_suite(fetch_sdist()))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "report.xml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            str(tmp_path / "pytest.ini"),
            f"--junitxml={report}",
            str(suite),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    totals = ElementTree.parse(report).getroot().find("testsuite")
    assert totals is not None, output
    counts = {key: int(totals.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": SUITE_SIZE, "failures": 0, "errors": 0, "skipped": 0}, output
