"""Imports point one way: ``flask_shim`` uses ``async_hashfs``, never the reverse (DESIGN.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest

import async_hashfs

CORE = Path(async_hashfs.__file__).parent
#: Packages the core may not import: the Flask face and Flask itself.
FORBIDDEN = {"flask_shim", "flask"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an ``import`` statement in ``path`` names, anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda path: path.name)
def test_no_core_module_imports_the_flask_face(path: Path) -> None:
    wrong = [
        f"{path.name}:{line}: import {name}"
        for line, name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert wrong == []


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def build():\n    from flask_shim import SyncHashFS\n    import flask.json\n"
    )
    assert imported_modules(sample) == [(2, "flask_shim"), (3, "flask.json")]


def test_the_core_runs_with_flask_shim_missing(tmp_path: Path) -> None:
    """Every core module, the command line and the Quart extension, without ``flask_shim``.

    (Flask itself stays importable: Quart is built on it.)
    """
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        from importlib.abc import MetaPathFinder

        class Missing(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "flask_shim":
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Missing())

        import async_hashfs
        for module in pkgutil.iter_modules(async_hashfs.__path__):
            importlib.import_module("async_hashfs." + module.name)

        from click.testing import CliRunner
        from async_hashfs._cli import cli
        root = {str(tmp_path / "new-store")!r}
        put = CliRunner().invoke(cli, ["--root", root, "put", "-"], input=b"layers")
        assert put.exit_code == 0, put.output
        id = put.output.split()[0]
        assert CliRunner().invoke(cli, ["--root", root, "get", id]).stdout_bytes == b"layers"
        assert CliRunner().invoke(cli, ["--root", root, "verify"]).exit_code == 0

        from quart import Quart
        app = Quart(__name__)
        app.config["HASHFS_ROOT_FOLDER"] = root
        async_hashfs.QuartHashFS(app)
        listed = app.test_cli_runner().invoke(args=["hashfs", "ls"])
        assert listed.exit_code == 0 and listed.output.count("\\n") == 1, listed.output

        assert async_hashfs.SyncHashFS(root).count() == 1
        assert not [name for name in sys.modules if name.startswith("flask_shim")]
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_drop_in_import_is_the_same_class(tmp_path: Path) -> None:
    import flask_shim
    from flask_shim import SyncHashFS

    assert SyncHashFS is flask_shim.SyncHashFS is async_hashfs.SyncHashFS
    assert SyncHashFS.__module__ == "async_hashfs._sync"
    # Code that patches through the drop-in name patches the store everyone uses.
    with mock.patch("flask_shim.SyncHashFS.count", return_value=42):
        assert async_hashfs.SyncHashFS(tmp_path).count() == 42
