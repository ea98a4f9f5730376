"""The API reference builds from the docstrings, every warning an error, and misses no name.

``python -m sphinx -n -W docs docs/_build/html`` builds it by hand; Sphinx
comes with the ``dev`` extra.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import async_hashfs
import flask_shim

DOCS = Path(__file__).parent.parent / "docs"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML reference, built once for this module."""
    out = tmp_path_factory.mktemp("docs") / "html"
    # -n: every cross-reference must resolve; -W: any warning fails the build.
    options = ["-n", "-W", "--keep-going", "-q", "-b", "html"]
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", *options, str(DOCS), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_reference_builds_without_warnings(built: Path) -> None:
    assert (built / "index.html").exists()
    assert (built / "api.html").exists()


@pytest.mark.parametrize("module", [async_hashfs, flask_shim], ids=lambda m: m.__name__)
def test_every_public_name_is_in_the_reference(built: Path, module: ModuleType) -> None:
    html = (built / "api.html").read_text(encoding="utf-8")
    documented = set(re.findall(r'id="(?:async_hashfs|flask_shim)\.(\w+)"', html))
    public = {name for name in module.__all__ if not name.startswith("_")}
    assert public - documented == set()
