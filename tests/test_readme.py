"""Every Python block of README.md runs as written, and the apps in it do what it says.

Each block is saved as a file in a temp folder and run there as a program
(``python block.py``, exit 0), and checked by ``ruff check --select F``
(undefined names, unused imports). A block that defines an ``app`` is then
loaded here and driven with its framework's test client: whatever route it
declares stores what it is sent and answers with a URL that serves those
bytes (a ``PUT`` route takes a raw body, a ``POST`` route multipart with a
field name repeated), and a file put through its extension is served at
``fs.url_for()``. The S3 block runs against the test SeaweedFS server, with
its endpoint, region, keys and bucket put in place of the README's.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import runpy
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

README = Path(__file__).parent.parent / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)
#: What the S3 block names, and what the test server answers to instead.
S3_PLACEHOLDERS = {
    "bucket": '"s3://my-bucket/uploads"',
    "endpoint": '"https://s3.example.com"',
    "region": '"eu-west-1"',
    "access_key_id": 'HASHFS_S3_ACCESS_KEY_ID="..."',
    "secret_access_key": 'HASHFS_S3_SECRET_ACCESS_KEY="..."',
}


@dataclass
class Block:
    name: str
    code: str

    @property
    def uses_s3(self) -> bool:
        return "s3://" in self.code

    @property
    def is_tus_client(self) -> bool:
        """A tus client: it needs a server (see test_tus_client_block_uploads_to_the_app)."""
        return "TusClient(" in self.code

    @property
    def defines_app(self) -> bool:
        return re.search(r"^app = ", self.code, re.MULTILINE) is not None


def python_blocks() -> list[Block]:
    """The README's ```` ```python ```` blocks, named after the heading above them."""
    text = README.read_text(encoding="utf-8")
    blocks: list[Block] = []
    counts: dict[str, int] = {}
    for match in _FENCE.finditer(text):
        if match.group(1) != "python":
            continue
        headings = _HEADING.findall(text, 0, match.start())
        section = re.sub(r"\W+", "-", headings[-1].lower()).strip("-") if headings else "top"
        counts[section] = counts.get(section, 0) + 1
        blocks.append(Block(f"{section}-{counts[section]}", match.group(2)))
    return blocks


BLOCKS = python_blocks()


def test_the_readme_has_the_blocks_it_should() -> None:
    names = [block.name for block in BLOCKS]
    assert len(names) >= 5, names
    assert any(block.uses_s3 for block in BLOCKS)
    assert any("Quart(" in block.code for block in BLOCKS)
    assert any("Flask(" in block.code for block in BLOCKS)


def s3_code(code: str, server: Any) -> str:
    """The S3 block with the test server's endpoint, keys and a fresh prefix in place."""
    options = server.options()
    from .s3server import BUCKET

    values = {
        "bucket": f'"s3://{BUCKET}/readme-{uuid.uuid4().hex}"',
        "endpoint": repr(options["endpoint"]),
        "region": repr(options["region"]),
        "access_key_id": f"HASHFS_S3_ACCESS_KEY_ID={options['access_key_id']!r}",
        "secret_access_key": f"HASHFS_S3_SECRET_ACCESS_KEY={options['secret_access_key']!r}",
    }
    for key, placeholder in S3_PLACEHOLDERS.items():
        assert code.count(placeholder) == 1, f"the S3 block no longer has {placeholder}"
        code = code.replace(placeholder, values[key])
    return code


@pytest.fixture(params=BLOCKS, ids=[block.name for block in BLOCKS])
def block(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Block, Path]:
    """A README block saved as ``block.py`` in an empty folder, ready to run."""
    found: Block = request.param
    code = found.code
    if found.uses_s3:
        code = s3_code(code, request.getfixturevalue("s3_server"))
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "block.py"
    path.write_text(code, encoding="utf-8")
    return found, path


def clean_environment() -> dict[str, str]:
    """This environment without S3 credentials, so a block only uses what it says."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}


def test_block_runs_as_a_program(block: tuple[Block, Path]) -> None:
    found, path = block
    if found.is_tus_client:
        return  # run against the README's tus app by test_tus_client_block_uploads_to_the_app
    result = subprocess.run(
        [sys.executable, "-W", "error", path.name],
        cwd=path.parent,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_block_has_no_undefined_or_unused_names(block: tuple[Block, Path]) -> None:
    _, path = block
    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the dev tools)")
    result = subprocess.run(
        [ruff, "check", "--isolated", "--select", "F", "--target-version", "py310", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- driving the apps ------------------------------------------------------------

DATA = os.urandom(200_000)
DATA_ID = hashlib.sha256(DATA).hexdigest()


def load_app(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the block here, in its folder, and return its globals."""
    monkeypatch.chdir(path.parent)
    for name in set(os.environ) - set(clean_environment()):
        monkeypatch.delenv(name)
    return runpy.run_path(str(path), run_name="readme_block")


def path_of(url: str) -> str:
    """The path of a URL the app gave, for its test client."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def multipart() -> tuple[bytes, dict[str, str], dict[str, list[str]]]:
    """A form with one field name used twice; the ids each name should map to."""
    second = os.urandom(1000)
    third = os.urandom(1000)
    fields = MultiDict(
        [
            ("file", FileStorage(io.BytesIO(DATA), "one.png")),
            ("file", FileStorage(io.BytesIO(second), "two.txt")),
            ("other", FileStorage(io.BytesIO(third), "three")),
        ]
    )
    boundary, body = encode_multipart(fields)
    expected = {
        "file": [DATA_ID, hashlib.sha256(second).hexdigest()],
        "other": [hashlib.sha256(third).hexdigest()],
    }
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, expected


def routes(app: Any) -> list[tuple[str, set[str]]]:
    """The app's own routes (not static files, not the extension's serving route)."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in ("static", "hashfs_file", "hashfs_tus", "hashfs_tus_upload"):
            found.append((rule.rule, set(rule.methods or ()) - {"HEAD", "OPTIONS"}))
    return found


async def drive_quart(namespace: dict[str, Any]) -> None:
    app, fs = namespace["app"], namespace["fs"]
    client = app.test_client()

    async def fetch(path: str) -> tuple[int, bytes]:
        response = await client.get(path)
        return response.status_code, await response.get_data()

    for rule, methods in routes(app):
        if methods == {"PUT"}:
            response = await client.put(rule + "?ext=png", data=DATA)
            assert response.status_code == 200, rule
            answer = await response.get_json()
            assert answer["id"] == DATA_ID
            assert await fetch(path_of(answer["url"])) == (200, DATA)
        elif methods == {"POST"}:
            body, headers, expected = multipart()
            response = await client.post(rule, data=body, headers=headers)
            assert response.status_code == 200, rule
            assert await response.get_json() == expected
        else:
            raise AssertionError(f"no check for the README's route {rule} {methods}: add one")
    async with app.app_context():
        address = await fs.put(b"served", extension="txt")
        url = fs.url_for(address, external=False)
    assert await fetch(url) == (200, b"served")


def drive_flask(namespace: dict[str, Any]) -> None:
    app, fs = namespace["app"], namespace["fs"]
    client = app.test_client()

    def fetch(path: str) -> tuple[int, bytes]:
        response = client.get(path)
        try:
            return response.status_code, response.get_data()
        finally:
            response.close()

    for rule, methods in routes(app):
        if methods == {"PUT"}:
            response = client.put(rule + "?ext=png", data=DATA)
            assert response.status_code == 200, rule
            answer = response.get_json()
            assert answer["id"] == DATA_ID
            assert fetch(path_of(answer["url"])) == (200, DATA)
        elif methods == {"POST"}:
            body, headers, expected = multipart()
            response = client.post(rule, data=body, headers=headers)
            assert response.status_code == 200, rule
            assert response.get_json() == expected
        else:
            raise AssertionError(f"no check for the README's route {rule} {methods}: add one")
    with app.app_context():
        address = fs.put(b"served", extension="txt")
        url = fs.url_for(address, external=False)
    assert fetch(url) == (200, b"served")


def test_block_app_does_what_the_readme_says(
    block: tuple[Block, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    found, path = block
    if not found.defines_app:
        return  # not an app: running it was the check
    namespace = load_app(path, monkeypatch)
    from flask import Flask
    from quart import Quart

    app = namespace["app"]
    if isinstance(app, Quart):
        asyncio.run(drive_quart(namespace))
    elif isinstance(app, Flask):
        drive_flask(namespace)
    else:
        raise AssertionError(f"no driver for {type(app)}")


def test_tus_client_block_uploads_to_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The README's tuspy block, run against its tus app under Hypercorn on 127.0.0.1."""
    import httpx

    from .test_e2e import hypercorn_server

    [server_block] = [b for b in BLOCKS if b.defines_app and "HASHFS_TUS_PREFIX" in b.code]
    [client_block] = [b for b in BLOCKS if b.is_tus_client]
    app_path = tmp_path / "app" / "block.py"
    app_path.parent.mkdir()
    app_path.write_text(server_block.code, encoding="utf-8")
    namespace = load_app(app_path, monkeypatch)
    with hypercorn_server(namespace["app"]) as url:
        placeholder = '"http://127.0.0.1:5000/tus"'
        assert client_block.code.count(placeholder) == 1
        client_path = tmp_path / "client" / "block.py"
        client_path.parent.mkdir()
        client_path.write_text(client_block.code.replace(placeholder, repr(f"{url}/tus")))
        result = subprocess.run(
            [sys.executable, "-W", "error", client_path.name],
            cwd=client_path.parent,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        sent = (client_path.parent / "video.mp4").read_bytes()
        stored_url = result.stdout.strip()
        assert stored_url.endswith(".mp4")
        served = httpx.get(url + path_of(stored_url))
        assert served.status_code == 200
        assert served.content == sent
        refused = httpx.post(
            f"{url}/tus",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1", "X-Upload-Token": "revoked"},
        )
        assert refused.status_code == 403
    printed = capfd.readouterr().out
    assert f"{hashlib.sha256(sent).hexdigest()} video.mp4 None " in printed
