"""HashFS 0.7.2's own test suite, run on ``flask_shim.SyncHashFS``.

The suite is not copied here: it is taken from the hashfs 0.7.2 sdist, fetched
from the package index at test time (and cached), with ``hashfs.HashFS(``
swapped for ``flask_shim.SyncHashFS(``, and run by pytest in a subprocess.
Without the index the test is skipped and says so.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from ._platform_mask import MASK_VARIABLE, mask_arguments

VERSION = "0.7.2"
SDIST = f"hashfs-{VERSION}.tar.gz"
#: sha256 of the sdist on PyPI: a changed download fails, never runs.
SDIST_SHA256 = "b0986e66eb8500a7e963c0555731fec6b723e6a08e4ad228d29ad3dbf9428bf5"
SUITE = f"hashfs-{VERSION}/tests/test_hashfs.py"
TESTS = 35
CACHE = Path(tempfile.gettempdir(), "async-hashfs-test-cache")
ROOT = Path(__file__).resolve().parent.parent


def hashfs_sdist() -> Path:
    """The cached sdist, downloaded with pip the first time; skips when the index is away."""
    sdist = CACHE / SDIST
    if not sdist.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-binary", ":all:"]
        command += ["--no-deps", "--disable-pip-version-check", "-q", "-d", str(CACHE)]
        try:
            result = subprocess.run(
                [*command, f"hashfs=={VERSION}"], capture_output=True, text=True, timeout=180
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"the package index did not answer pip download hashfs=={VERSION}")
        if result.returncode != 0 or not sdist.exists():
            pytest.skip(
                f"could not download the hashfs {VERSION} sdist from the package index: "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        sdist.unlink()
        pytest.fail(f"{sdist} has sha256 {digest}, expected {SDIST_SHA256}; removed it")
    return sdist


def test_hashfs_suite_passes_on_sync_hashfs(tmp_path: Path) -> None:
    with tarfile.open(hashfs_sdist()) as archive:
        member = archive.extractfile(SUITE)
        assert member is not None
        suite = member.read().decode()
    assert suite.count("hashfs.HashFS(") >= 3
    suite = "import flask_shim\n" + suite.replace("hashfs.HashFS(", "flask_shim.SyncHashFS(")
    (tmp_path / "test_hashfs.py").write_text(suite)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of our settings
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if os.environ.get(MASK_VARIABLE):
        command += mask_arguments()
    result = subprocess.run(
        [*command, "test_hashfs.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert re.search(rf"\b{TESTS} passed\b", result.stdout), result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
