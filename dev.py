#!/usr/bin/env python3
"""Run a demo, the tests or nox from a checkout: ``python3 dev.py demo|flask-demo|test|nox``.

``demo`` serves the example Quart app (http://127.0.0.1:5000/), ``flask-demo``
the Flask one (http://127.0.0.1:5001/), each on its own store and SQLite file
in the current folder; ``frontend`` rebuilds the demos' Uppy bundle in
``examples/static/vendor`` with ``npm ci && npm run build`` (needs Node.js and
npm; the committed bundle makes it unneeded otherwise); ``test`` runs pytest on this Python,
``nox`` runs nox (lint, typecheck and the tests on every Python 3.10-3.13
found; arguments go to nox, e.g. ``-s tests-3.12``). ``test`` also runs the
tests too long to repeat on every Python (``HASHFS_BIG_TESTS=1``: the 384 MiB
tus uploads). Creates ``.venv`` with
the project, all its extras and the ``dev`` dependency group (the tools:
pytest, nox, ruff, mypy...) the first time, and again when ``pyproject.toml``
changes, then runs the command in it. Only the standard library is used here,
so a machine with Python is enough: pip is upgraded in ``.venv`` first, to a
release that installs dependency groups (pip >= 25.1).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".async-hashfs-installed"
EXTRAS = ["quart", "flask", "s3"]  # the suite tests every extra


def ensure_venv() -> None:
    """Create the virtual environment and install the project when needed."""
    wanted = hashlib.sha256((HERE / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip>=25.1"], check=True)
    project = f"{HERE}[{','.join(EXTRAS)}]"
    group = f"{HERE / 'pyproject.toml'}:dev"
    subprocess.run([*pip, "install", "-e", project, "--group", group], check=True)
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    commands = {
        "demo": [str(PYTHON), str(HERE / "examples" / "quart_app.py")],
        "flask-demo": [str(PYTHON), str(HERE / "examples" / "flask_app.py")],
        "test": [str(PYTHON), "-m", "pytest"],
        "nox": [str(PYTHON), "-m", "nox", "--noxfile", str(HERE / "noxfile.py")],
    }
    if argv[:1] == ["frontend"]:  # Node.js, not the venv
        frontend = HERE / "examples" / "frontend"
        for command in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "build"]):
            done = subprocess.run(command, cwd=frontend)
            if done.returncode:
                return done.returncode
        return 0
    if not argv or argv[0] not in commands:
        names = "|".join([*commands, "frontend"])
        print(f"usage: python3 dev.py {{{names}}} [args...]", file=sys.stderr)
        return 2
    ensure_venv()
    env = dict(os.environ)
    if argv[0] == "test":
        env.setdefault("HASHFS_BIG_TESTS", "1")
    return subprocess.run([*commands[argv[0]], *argv[1:]], cwd=HERE, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
