"""The one entry point for tests, lint, type checks and benchmarks.

``nox`` (or ``python3 dev.py nox``) runs lint, typecheck, the test suite on
every Python 3.10-3.13 this machine has, on PATH or installed by pyenv, and
``package`` (build, check and smoke-test the wheel on each of them), and says
which Pythons it found. A version the machine does not have is named and left
out; a session asked for by name (``nox -s tests-3.10``) whose interpreter
cannot be found fails rather than being skipped.

Sessions install the project with every extra and the PEP 735 dependency
groups of ``pyproject.toml`` that they need (``test``, ``lint``...).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
HERE = Path(__file__).resolve().parent
PYPROJECT = nox.project.load_toml(HERE / "pyproject.toml")
PROJECT = ".[quart,flask,s3]"  # the suite and mypy need every extra


def groups(*names: str) -> list[str]:
    """The requirements of the dependency groups ``names``, included groups resolved."""
    return [req for name in names for req in nox.project.dependency_groups(PYPROJECT, name)]


nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.download_python = "never"  # this machine's interpreters, nothing fetched


def _interpreter(candidate: str, version: str) -> str | None:
    """Return the program ``candidate`` runs, if it is Python ``version`` (a shim may not be)."""
    try:
        result = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2], sys.executable)"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    reported, _, executable = result.stdout.strip().partition(" ")
    return executable if result.returncode == 0 and reported == version else None


def find_python(version: str) -> str | None:
    """Return a working interpreter for ``version``: ``pythonX.Y`` on PATH, else pyenv's newest."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or "~/.pyenv").expanduser() / "versions"
    installed = [
        path
        for path in pyenv.glob(f"{version}.*/bin/python{version}")
        if re.fullmatch(rf"{re.escape(version)}\.\d+", path.parent.parent.name)
    ]
    installed.sort(key=lambda path: int(path.parent.parent.name.rsplit(".", 1)[1]), reverse=True)
    for candidate in [shutil.which(f"python{version}"), *map(str, installed)]:
        if candidate and (executable := _interpreter(candidate, version)):
            return executable
    return None


def expose(found: dict[str, str]) -> None:
    """Put ``pythonX.Y`` links to the interpreters found first on PATH, for nox to find."""
    links = HERE / ".nox" / "pythons"
    links.mkdir(parents=True, exist_ok=True)
    for stale in links.iterdir():
        stale.unlink()
    for version, executable in found.items():
        (links / f"python{version}").symlink_to(executable)
    os.environ["PATH"] = os.pathsep.join([str(links), os.environ.get("PATH", "")])


FOUND = {version: path for version in PYTHONS if (path := find_python(version))}
MISSING = [version for version in PYTHONS if version not in FOUND]
expose(FOUND)
print(
    "nox > Pythons found: "
    + (", ".join(f"{v} ({p})" for v, p in FOUND.items()) or "none")
    + (f"; not on this machine: {', '.join(MISSING)}" if MISSING else ""),
    file=sys.stderr,
    flush=True,
)
nox.options.sessions = [
    "lint",
    "typecheck",
    *(f"tests-{version}" for version in FOUND),
    "package",
]


def _live_processes_under(prefix: str) -> dict[int, str]:
    """Return the live processes (not zombies) whose program lies under ``prefix``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        command = " ".join(arg.decode(errors="replace") for arg in argv if arg)
        if state != "Z" and argv[0].decode(errors="replace").startswith(prefix):
            found[int(entry.name)] = command
    return found


def fail_on_leftover_processes(session: nox.Session) -> None:
    """Fail the session if a test left a process of this virtualenv running, and stop it."""
    if not os.path.isdir("/proc"):
        return
    prefix = str(Path(session.virtualenv.location).resolve()) + os.sep
    deadline = time.monotonic() + 10
    while (left := _live_processes_under(prefix)) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        listing = "; ".join(f"{pid}: {command}" for pid, command in left.items())
        session.error(f"tests left processes running (now killed): {listing}")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite on one Python (asyncio and trio), then check no process is left."""
    session.install("-e", PROJECT, *groups("test"))
    try:
        session.run("pytest", *session.posargs)
    finally:
        fail_on_leftover_processes(session)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and common bugs with ruff."""
    session.install(*groups("lint"))
    files = ["src", "tests", "benchmarks", "examples", ".ci", "noxfile.py", "dev.py"]
    session.run("ruff", "check", *files)
    session.run("ruff", "format", "--check", *files)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check src/ with mypy in strict mode."""
    session.install("-e", PROJECT, *groups("typecheck"))
    session.run("mypy")


@nox.session
def package(session: nox.Session) -> None:
    """Build the sdist and wheel, check them, and smoke-test the wheel in fresh venvs.

    ``twine check --strict`` (the long description renders on the package
    index), then ``.ci/wheel_smoke.py``: the wheel alone and with each extra
    in turn on every Python found, and once with the lowest versions allowed.
    """
    session.install(*groups("package"))
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), str(HERE))
    session.run("twine", "check", "--strict", *sorted(map(str, dist.iterdir())))
    pythons = [f"{version}={path}" for version, path in FOUND.items()]
    try:
        session.run("python", str(HERE / ".ci" / "wheel_smoke.py"), str(dist), *pythons)
    finally:
        fail_on_leftover_processes(session)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the API reference from the docstrings into docs/_build, warnings as errors.

    The suite builds it too (tests/test_docs.py), so CI checks it on every run.
    """
    session.install("-e", PROJECT, *groups("test"))
    out = str(HERE / "docs" / "_build")
    session.run("python", "-m", "sphinx", "-n", "-W", "--keep-going", "-b", "html", "docs", out)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks and print their ratio tables."""
    session.install("-e", PROJECT, *groups("test"))
    session.run("python", "benchmarks/bench_store.py", *session.posargs)
