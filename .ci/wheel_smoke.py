"""Check a built sdist and wheel, then install the wheel as users will and try it.

``python .ci/wheel_smoke.py DIST VERSION=PYTHON...`` (``nox -s package`` runs it
after ``python -m build`` and ``twine check --strict``):

1. The distribution: one wheel and one sdist; the wheel holds both packages,
   their ``py.typed`` and the license, and no tests; its metadata has the
   extras ``quart``, ``flask`` and ``s3`` and no ``dev``, and a long
   description with no relative link or image (the package index shows
   neither).
2. Per Python given: a fresh venv (no pip in it: this pip installs into it
   with ``--python``), then the wheel alone, then with each extra added in
   turn, running ``wheel_checks.py`` after each step. The order (none, s3,
   flask, quart) is chosen so that no step can borrow a requirement of its
   extra from an earlier one: s3 brings no web package, and Quart requires
   Flask anyway. One venv per Python keeps the run short; the pip cache
   makes the downloads one-time.
3. On the oldest Python: a fresh venv with every extra and each direct
   requirement at the lowest release its declared minimum allows (``>=X.Y``
   becomes ``==X.Y.*``), so a minimum that does not work fails here.

The ``s3`` checks run against a SeaweedFS server started here for the run.
Exits non-zero at the first failure.
"""

from __future__ import annotations

import email.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKS = HERE / "wheel_checks.py"
STAGES = [("", ["core", "no-extras"]), ("s3", ["s3"]), ("flask", ["flask"]), ("quart", ["quart"])]
#: A Markdown link or image whose target is relative, inline or as a reference definition.
RELATIVE_LINK = re.compile(
    r"\]\((?!https?://|mailto:|#)[^)]*\)|^\s{0,3}\[[^\]]+\]:\s*(?!https?://|mailto:|#)\S+",
    re.MULTILINE,
)


def say(message: str) -> None:
    print(f"smoke > {message}", flush=True)


def check_dist(dist: Path) -> tuple[Path, email.message.Message]:
    """Check the sdist and wheel in ``dist``; return the wheel and its metadata."""
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    found = sorted(p.name for p in dist.iterdir())
    assert len(wheels) == 1, found
    assert len(sdists) == 1, found
    wheel = wheels[0]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode())
    for required in ("async_hashfs/__init__.py", "async_hashfs/py.typed", "flask_shim/py.typed"):
        assert required in names, f"{wheel.name} lacks {required}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "no license file"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert extras == {"quart", "flask", "s3"}, extras
    assert metadata["Description-Content-Type"] == "text/markdown"
    description = metadata.get_payload()
    assert isinstance(description, str), "no long description"
    assert len(description) > 500, f"a long description of {len(description)} characters"
    relative = RELATIVE_LINK.findall(description)
    assert not relative, f"relative links in the long description: {relative}"
    with tarfile.open(sdists[0]) as archive:
        members = {Path(*Path(name).parts[1:]).as_posix() for name in archive.getnames()}
    for required in ("pyproject.toml", "README.md", "LICENSE", "src/async_hashfs/__init__.py"):
        assert required in members, f"{sdists[0].name} lacks {required}"
    say(f"{wheel.name}: both packages, py.typed, license; extras {sorted(extras)}")
    say(f"long description: {len(description)} characters, no relative link or image")
    return wheel, metadata


def lowest_constraints(metadata: email.message.Message) -> list[str]:
    """Each direct requirement at the lowest release series its minimum allows."""
    pins = []
    for requirement in metadata.get_all("Requires-Dist") or []:
        match = re.match(r"([A-Za-z0-9_.-]+)\s*(>=|==)\s*([0-9][0-9A-Za-z.]*)", requirement)
        assert match, f"no minimum for {requirement!r}"
        name, operator, version = match.groups()
        pins.append(f"{name}=={version}" if operator == "==" else f"{name}=={version}.*")
    return sorted(set(pins))


class Venv:
    """A fresh venv with no pip of its own: this process's pip installs into it."""

    def __init__(self, folder: Path, python: str) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([python, "-m", "venv", "--without-pip", str(folder)], check=True)
        self.folder = folder
        bin = folder / ("Scripts" if os.name == "nt" else "bin")
        self.python = bin / ("python.exe" if os.name == "nt" else "python")

    def install(self, *requirements: str) -> float:
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(self.python),
                "install",
                "-qq",  # errors only: the log shows the checks
                "--disable-pip-version-check",
                *requirements,
            ],
            check=True,
            env=clean_environment(),
        )
        return time.monotonic() - started

    def check(self, stages: list[str], env: dict[str, str], work: Path) -> None:
        subprocess.run(
            [str(self.python), str(CHECKS), *stages],
            check=True,
            cwd=work,
            env={**clean_environment(), **env},
            timeout=900,
        )

    def versions(self, names: list[str]) -> str:
        code = (
            "import importlib.metadata as m, sys\n"
            "print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
        )
        result = subprocess.run(
            [str(self.python), "-c", code, *names], capture_output=True, text=True, check=True
        )
        return result.stdout.strip()


def clean_environment() -> dict[str, str]:
    """This environment less what would make the venv see the checkout or a store."""
    skip = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "HASHFS_", "AWS_", "SMOKE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def s3_environment(server: object, name: str) -> dict[str, str]:
    options = server.options()  # type: ignore[attr-defined]
    return {
        "AWS_ENDPOINT_URL": options["endpoint"],
        "AWS_REGION": options["region"],
        "AWS_ACCESS_KEY_ID": options["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": options["secret_access_key"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "SMOKE_S3_ROOT": f"s3://hashfs-test/smoke-{name}-{os.getpid()}-{time.time_ns()}",
    }


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not all("=" in arg for arg in argv[1:]):
        print("usage: wheel_smoke.py DIST VERSION=PYTHON...", file=sys.stderr)
        return 2
    dist = Path(argv[0]).resolve()
    pythons = dict(arg.split("=", 1) for arg in argv[1:])
    wheel, metadata = check_dist(dist)
    direct = sorted(
        {
            re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0]
            for r in metadata.get_all("Requires-Dist") or []
        }
    )

    sys.path.insert(0, str(HERE.parent))  # the test suite's S3 server
    from tests import s3server

    server = s3server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="hashfs-wheel-smoke-") as folder:
            scratch = Path(folder)
            for version, python in pythons.items():
                started = time.monotonic()
                venv = Venv(scratch / f"venv-{version}", python)
                for extra, stages in STAGES:
                    took = venv.install(f"{wheel}[{extra}]" if extra else str(wheel))
                    say(
                        f"Python {version}: wheel{f' + [{extra}]' if extra else ''} "
                        f"installed in {took:.1f} s; checking {', '.join(stages)}"
                    )
                    venv.check(stages, s3_environment(server, version), scratch)
                say(f"Python {version}: {venv.versions(direct)}")
                say(f"Python {version}: passed in {time.monotonic() - started:.0f} s")
                shutil.rmtree(venv.folder)

            version, python = next(iter(pythons.items()))
            started = time.monotonic()
            constraints = scratch / "lowest.txt"
            constraints.write_text("\n".join(lowest_constraints(metadata)) + "\n")
            venv = Venv(scratch / "venv-lowest", python)
            took = venv.install(f"{wheel}[quart,flask,s3]", "--constraint", str(constraints))
            say(
                f"Python {version}, lowest allowed versions: installed in {took:.1f} s: "
                f"{venv.versions(direct)}"
            )
            venv.check(["core", "s3", "flask", "quart"], s3_environment(server, "lowest"), scratch)
            say(
                f"Python {version}, lowest allowed versions: passed in "
                f"{time.monotonic() - started:.0f} s"
            )
    finally:
        server.stop()
    say(f"the wheel works on Python {', '.join(pythons)}, one extra at a time")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
