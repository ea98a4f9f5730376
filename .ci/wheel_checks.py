"""What a new user does right after ``pip install async-hashfs[EXTRA]``, checked in that venv.

Run by ``wheel_smoke.py`` with the venv's own Python, from an empty folder, as
``python wheel_checks.py STAGE...``. Uses the standard library and what the
wheel installed, nothing of the checkout. The stages:

- ``core``: both packages import (from the venv, not the checkout), ``import *``
  works, ``SyncHashFS`` is one class under both names, and the console script
  does a round trip from a root that does not exist yet: put, get, verify;
  ``--version`` and ``--help`` without a store.
- ``no-extras``: with nothing but the wheel, each extra's feature says what to
  install (``pip install "async-hashfs[quart]"``...), and the command line says
  it in one line with exit code 4 for an s3:// root.
- ``s3``: the same round trip on an ``s3://`` root ($SMOKE_S3_ROOT, a live
  server found through the usual AWS_* variables), through the command line.
- ``flask``: a tiny Flask app, the README's pattern (a route that raises
  ``request.max_content_length``, ``fs.put(request.stream)``, ``url_for``, the
  serving route), through Flask's test client.
- ``quart``: the same app on Quart, through Quart's test client.

Each failure raises; the exit code is non-zero and the traceback says where.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPTS = Path(sys.executable).parent
CLI = SCRIPTS / ("async-hashfs.exe" if os.name == "nt" else "async-hashfs")


def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[bytes]:
    """Run the installed console script; fail unless it exits with ``code``."""
    result = subprocess.run([str(CLI), *args], capture_output=True, timeout=300, check=False)
    if result.returncode != code:
        raise AssertionError(
            f"async-hashfs {' '.join(args)} exited {result.returncode}, not {code}:\n"
            f"{result.stderr.decode(errors='replace')}"
        )
    return result


def check_core(work: Path) -> None:
    from importlib.metadata import version

    import async_hashfs
    import flask_shim

    venv = Path(sys.prefix).resolve()
    for module in (async_hashfs, flask_shim):
        assert Path(module.__file__ or "").resolve().is_relative_to(venv), module.__file__
    assert async_hashfs.__version__ == version("async-hashfs")
    assert flask_shim.SyncHashFS is async_hashfs.SyncHashFS
    namespace: dict[str, object] = {}
    exec("from async_hashfs import *\nfrom flask_shim import *", namespace)
    assert "SyncHashFS" in namespace
    assert "AsyncHashFS" in namespace

    assert cli("--version").stdout.decode() == f"async-hashfs {async_hashfs.__version__}\n"
    assert cli("put", "--help").stdout.startswith(b"Usage: async-hashfs put")
    root_round_trip(str(work / "new" / "store"), work)
    assert async_hashfs.SyncHashFS(work / "new" / "store").count() == 1


def root_round_trip(root: str, work: Path) -> None:
    """put, get, verify through the console script, on a root nobody created."""
    data = os.urandom(200_000)
    source = work / "upload.bin"
    source.write_bytes(data)
    if "://" not in root:
        cli("--root", root, "ls", code=3)  # reading keeps exit 3; put creates the store
    put = cli("--root", root, "put", str(source), "--extension", "bin")
    id, relpath = put.stdout.decode().split()
    assert id == hashlib.sha256(data).hexdigest(), put.stdout
    assert relpath.endswith(".bin"), put.stdout
    assert cli("--root", root, "get", id).stdout == data
    copy = work / "copy.bin"
    cli("--root", root, "get", id, "-o", str(copy))
    assert copy.read_bytes() == data
    verify = cli("--root", root, "verify")
    assert verify.stderr == b"1 files checked, 0 mismatched\n", verify.stderr


def check_no_extras(work: Path) -> None:
    import async_hashfs
    import flask_shim

    def hint_for(extra: str, attempt: object) -> None:
        try:
            attempt()  # type: ignore[operator]
        except ModuleNotFoundError as exc:
            message = str(exc)
        else:
            raise AssertionError(f"worked without the {extra} extra")
        assert f'pip install "async-hashfs[{extra}]"' in message, message

    hint_for("quart", lambda: async_hashfs.QuartHashFS)
    hint_for("flask", lambda: flask_shim.FlaskHashFS)
    hint_for("s3", lambda: async_hashfs.SyncHashFS("s3://bucket/prefix"))
    result = cli("--root", "s3://bucket/prefix", "ls", code=4)
    assert result.stderr.count(b"\n") == 1
    assert b"async-hashfs[s3]" in result.stderr


def check_s3(work: Path) -> None:
    root = os.environ["SMOKE_S3_ROOT"]
    root_round_trip(root, work)


def check_flask(work: Path) -> None:
    from flask import Flask, request

    from flask_shim import FlaskHashFS

    app = Flask(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(work / "flask-store"),
        HASHFS_PATH_PREFIX="/files",
        HASHFS_SERVE=True,
    )
    fs = FlaskHashFS(app)

    @app.put("/raw")
    def raw() -> dict[str, str]:
        request.max_content_length = 1 << 30  # needs Flask >= 3.1
        address = fs.put(request.stream, extension=request.args.get("ext"))
        return {"id": address.id, "url": fs.url_for(address)}

    data = os.urandom(300_000)
    client = app.test_client()
    response = client.put("/raw?ext=bin", data=data)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["id"] == hashlib.sha256(data).hexdigest()
    served = client.get(body["url"])
    assert served.status_code == 200
    assert served.get_data() == data


def check_quart(work: Path) -> None:
    from quart import Quart, request

    from async_hashfs import QuartHashFS

    app = Quart(__name__)
    app.config.update(
        HASHFS_ROOT_FOLDER=str(work / "quart-store"),
        HASHFS_PATH_PREFIX="/files",
        HASHFS_SERVE=True,
    )
    fs = QuartHashFS(app)

    @app.put("/raw")
    async def raw() -> dict[str, str]:
        request.max_content_length = 1 << 30
        address = await fs.put(request.body, extension=request.args.get("ext"))
        return {"id": address.id, "url": fs.url_for(address)}

    async def run() -> None:
        data = os.urandom(300_000)
        client = app.test_client()
        response = await client.put("/raw?ext=bin", data=data)
        assert response.status_code == 200, await response.get_data(as_text=True)
        body = await response.get_json()
        assert body["id"] == hashlib.sha256(data).hexdigest()
        served = await client.get(body["url"])
        assert served.status_code == 200
        assert await served.get_data() == data

    asyncio.run(run())


CHECKS = {
    "core": check_core,
    "no-extras": check_no_extras,
    "s3": check_s3,
    "flask": check_flask,
    "quart": check_quart,
}


def main(stages: list[str]) -> int:
    unknown = [stage for stage in stages if stage not in CHECKS]
    if not stages or unknown:
        print(f"usage: wheel_checks.py {{{'|'.join(CHECKS)}}}...", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="hashfs-smoke-") as folder:
        for stage in stages:
            work = Path(folder) / stage
            work.mkdir()
            CHECKS[stage](work)
            print(f"  ok {stage}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
