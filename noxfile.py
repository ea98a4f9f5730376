"""The one entry point for tests, lint, type checks and benchmarks."""

from __future__ import annotations

import glob
import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]

# Interpreters that pyenv installed but did not put on PATH count as found.
_PYENV = os.path.expanduser(os.environ.get("PYENV_ROOT", "~/.pyenv"))
for _version in PYTHONS:
    for _bin in sorted(glob.glob(os.path.join(_PYENV, "versions", f"{_version}.*", "bin"))):
        os.environ["PATH"] += os.pathsep + _bin


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on every Python found (asyncio and trio)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py", "dev.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check src/ with mypy in strict mode."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and print their ratio tables."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/bench_store.py", *session.posargs)
