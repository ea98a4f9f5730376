"""Each extra is optional: without it the core imports, and its feature says what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Run first in a fresh interpreter: makes ``import MODULE`` fail as if never installed.
BLOCK = """
import sys
from importlib.abc import MetaPathFinder

class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
"""


def run(blocked: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` where the modules named in ``blocked`` (space-separated) are missing."""
    script = f"BLOCKED = {set(blocked.split())!r}\n{BLOCK}\n{textwrap.dedent(code)}"
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("blocked", "code", "extra"),
    [
        ("quart", "from async_hashfs import QuartHashFS", "quart"),
        ("flask", "from flask_shim import FlaskHashFS", "flask"),
        ("obstore", "from flask_shim import SyncHashFS; SyncHashFS('s3://bucket/x')", "s3"),
    ],
)
def test_a_missing_extra_names_what_to_install(blocked: str, code: str, extra: str) -> None:
    result = run(blocked, code)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError:"), result.stderr
    assert f'pip install "async-hashfs[{extra}]"' in last


@pytest.mark.parametrize(
    "code", ["from async_hashfs import QuartHashFS", "from flask_shim import FlaskHashFS"]
)
def test_a_missing_multipart_parser_names_what_to_install(code: str) -> None:
    result = run("python_multipart", code)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: uploads need python-multipart"), result.stderr
    assert 'pip install "async-hashfs[quart]"' in last


def test_star_imports_work_without_the_web_extras() -> None:
    result = run(
        "quart flask obstore",
        """
        from async_hashfs import *
        from flask_shim import *
        assert "QuartHashFS" not in dir() and "FlaskHashFS" not in dir()
        store = SyncHashFS(__import__("tempfile").mkdtemp())
        print(store.put(b"x").id)
        """,
    )
    assert result.returncode == 0, result.stderr
    result = run(
        "flask",
        """
        from flask_shim import *
        assert "FlaskHashFS" not in dir() and "SyncHashFS" in dir()
        """,
    )
    assert result.returncode == 0, result.stderr


def test_star_imports_include_the_extensions_when_installed() -> None:
    result = run(
        "nothing", "from async_hashfs import *\nfrom flask_shim import *\nQuartHashFS, FlaskHashFS"
    )
    assert result.returncode == 0, result.stderr
