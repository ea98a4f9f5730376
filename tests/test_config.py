"""``HASHFS_*`` settings: every key is checked at ``init_app``, on both extensions."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from flask import Flask
from quart import Quart

from async_hashfs import QuartHashFS
from flask_shim import FlaskHashFS

EXTENSIONS = pytest.mark.parametrize(
    ("framework", "extension"),
    [(Flask, FlaskHashFS), (Quart, QuartHashFS)],
    ids=["flask", "quart"],
)

THREADS = "a number of worker threads, 1 or more"
MODE = "an int permission mode from 0 to 0o7777"
BOOLEAN = "True or False"

#: (key, bad value, what the message must say the key accepts)
BAD = [
    ("HASHFS_THREADS", 0, THREADS),
    ("HASHFS_THREADS", -2, THREADS),
    ("HASHFS_THREADS", 2.5, THREADS),
    ("HASHFS_THREADS", "4", THREADS),
    ("HASHFS_THREADS", True, THREADS),
    ("HASHFS_FMODE", "664", MODE),
    ("HASHFS_FMODE", "0o664", MODE),
    ("HASHFS_FMODE", 0o10000, MODE),
    ("HASHFS_FMODE", -1, MODE),
    ("HASHFS_FMODE", 436.0, MODE),
    ("HASHFS_FMODE", True, MODE),
    ("HASHFS_DMODE", "755", MODE),
    ("HASHFS_DMODE", None, MODE),
    ("HASHFS_DMODE", 0o17777, MODE),
    ("HASHFS_DEPTH", -1, "an int, 0 or more"),
    ("HASHFS_DEPTH", "4", "an int, 0 or more"),
    ("HASHFS_DEPTH", 2.0, "an int, 0 or more"),
    ("HASHFS_DEPTH", True, "an int, 0 or more"),
    ("HASHFS_WIDTH", -1, "an int, 0 or more"),
    ("HASHFS_WIDTH", None, "an int, 0 or more"),
    ("HASHFS_ALGORITHM", "sha257", "a hashlib algorithm with a fixed digest size"),
    ("HASHFS_ALGORITHM", "shake_128", "a hashlib algorithm with a fixed digest size"),
    ("HASHFS_ALGORITHM", None, "a hashlib algorithm with a fixed digest size"),
    ("HASHFS_MAX_SIZE", True, "a byte count (an int) or None"),
    ("HASHFS_MAX_SIZE", -1, "a byte count (an int) or None"),
    ("HASHFS_MAX_SIZE", "10MB", "a byte count (an int) or None"),
    ("HASHFS_MAX_SIZE", 1e6, "a byte count (an int) or None"),
    ("HASHFS_BODY_BUFFER", 0, "a positive byte count"),
    ("HASHFS_BODY_BUFFER", True, "a positive byte count"),
    ("HASHFS_UPLOAD_MEMORY", 0, "a positive byte count"),
    ("HASHFS_UPLOAD_MEMORY", "32M", "a positive byte count"),
    ("HASHFS_HOST", 8080, "None or the URL files are served from"),
    ("HASHFS_HOST", b"https://cdn.example", "None or the URL files are served from"),
    ("HASHFS_PATH_PREFIX", 5, 'a string starting with "/"'),
    ("HASHFS_ROOT_FOLDER", 5, "a folder path or an s3://bucket/prefix"),
    ("HASHFS_ROOT_FOLDER", b"/tmp/store", "a folder path or an s3://bucket/prefix"),
    ("HASHFS_SENDFILE", "nginx", 'None, "x-accel-redirect" or "x-sendfile"'),
    ("HASHFS_SENDFILE", True, 'None, "x-accel-redirect" or "x-sendfile"'),
    ("HASHFS_ACCEL_PREFIX", "internal/", 'a URL path starting with "/"'),
    ("HASHFS_ACCEL_PREFIX", None, 'a URL path starting with "/"'),
    ("HASHFS_S3_OPTIONS", "endpoint=http://x", "None or a mapping of obstore S3Store option"),
    ("HASHFS_S3_OPTIONS", [("region", "x")], "None or a mapping of obstore S3Store option"),
    ("HASHFS_S3_OPTIONS", {1: "x"}, "None or a mapping of obstore S3Store option"),
    ("HASHFS_S3_ENDPOINT", 9000, "None or a string"),
    ("HASHFS_S3_REGION", ["eu"], "None or a string"),
    ("HASHFS_S3_ACCESS_KEY_ID", 1, "None or a string"),
    ("HASHFS_S3_SECRET_ACCESS_KEY", b"s", "None or a string"),
    *[
        (key, value, BOOLEAN)
        for key in ("HASHFS_FSYNC", "HASHFS_SERVE", "HASHFS_VERIFY_ON_READ", "HASHFS_S3_REDIRECT")
        for value in ("false", "True", 0, 1, None)
    ],
]


def new_app(framework: type[Any], root: Path, **config: Any) -> Any:
    app = framework(__name__)
    app.config.update({"HASHFS_ROOT_FOLDER": str(root), "HASHFS_PATH_PREFIX": "/files", **config})
    return app


@EXTENSIONS
@pytest.mark.parametrize(("key", "value", "accepted"), BAD)
def test_bad_value_is_refused_at_init_app(
    root: Path, framework: type[Any], extension: Any, key: str, value: object, accepted: str
) -> None:
    app = new_app(framework, root, **{key: value})
    with pytest.raises(ValueError, match=re.escape(f'"{key}" must be')) as raised:
        extension(app)
    message = str(raised.value)
    assert accepted in message
    assert message.endswith(f"not {value!r}")
    assert "hashfs" not in app.extensions


@EXTENSIONS
def test_depth_times_width_must_fit_in_the_id(
    root: Path, framework: type[Any], extension: Any
) -> None:
    app = new_app(framework, root, HASHFS_DEPTH=33, HASHFS_WIDTH=2)
    message = re.escape('"HASHFS_DEPTH" times "HASHFS_WIDTH" must be at most 64')
    with pytest.raises(ValueError, match=message):
        extension(app)
    extension(new_app(framework, root, HASHFS_DEPTH=31, HASHFS_WIDTH=2))


@EXTENSIONS
def test_a_layout_whose_folders_use_up_the_id_is_served(
    root: Path, framework: type[Any], extension: Any
) -> None:
    # HashFS 0.7.2 writes such a store: 31 folders, the id's last 2 characters the name.
    hashfs = pytest.importorskip("hashfs")
    address = hashfs.HashFS(str(root), depth=32, width=2).put(io.BytesIO(b"filled"), "txt")
    app = new_app(framework, root, HASHFS_DEPTH=32, HASHFS_WIDTH=2, HASHFS_SERVE=True)
    extension(app)
    url = "/files/" + address.relpath.replace(os.sep, "/")

    if framework is Flask:
        response = app.test_client().get(url)
        assert (response.status_code, response.data) == (200, b"filled")
        return

    async def serve() -> tuple[int, bytes]:
        response = await app.test_client().get(url)
        return response.status_code, await response.get_data()

    assert anyio.run(serve) == (200, b"filled")


@EXTENSIONS
@pytest.mark.parametrize(
    "config",
    [
        {"HASHFS_THREADS": 1},
        {"HASHFS_THREADS": anyio.CapacityLimiter(3)},
        {"HASHFS_FMODE": None},
        {"HASHFS_FMODE": 0o600, "HASHFS_DMODE": 0o700},
        {"HASHFS_DEPTH": 0, "HASHFS_WIDTH": 0},
        {"HASHFS_DEPTH": 2, "HASHFS_WIDTH": 2, "HASHFS_ALGORITHM": "md5"},
        {"HASHFS_MAX_SIZE": 0},
        {"HASHFS_FSYNC": True, "HASHFS_SERVE": True, "HASHFS_VERIFY_ON_READ": True},
        {"HASHFS_HOST": ""},
        {"HASHFS_HOST": "https://cdn.example"},
        {"HASHFS_SENDFILE": "X-Accel-Redirect", "HASHFS_ACCEL_PREFIX": "/internal/"},
        {"HASHFS_S3_OPTIONS": {}, "HASHFS_S3_REGION": "eu-west-1"},
    ],
)
def test_good_values_are_taken(
    root: Path, framework: type[Any], extension: Any, config: dict[str, Any]
) -> None:
    app = new_app(framework, root, **config)
    extension(app)
    settings = app.extensions["hashfs"].settings
    if "HASHFS_THREADS" in config:
        assert settings.threads is config["HASHFS_THREADS"]
    if "HASHFS_FMODE" in config:
        assert settings.fmode == config["HASHFS_FMODE"]


def test_a_path_object_is_a_root(root: Path) -> None:
    app = Flask(__name__)
    app.config["HASHFS_ROOT_FOLDER"] = root
    FlaskHashFS(app)
    assert app.extensions["hashfs"].settings.root_folder == str(root)


def test_threads_bound_the_quart_store(root: Path) -> None:
    app = new_app(Quart, root, HASHFS_THREADS=3)
    QuartHashFS(app)
    assert app.extensions["hashfs"].store.limiter.total_tokens == 3
