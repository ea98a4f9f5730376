from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import flask_hashfs
import hashfs
import pytest
from flask import Flask, request
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from async_hashfs import SyncHashFS
from flask_shim import FlaskHashFS

from .conftest import stored_files, temp_files

DATA = os.urandom(200_000)
DATA_ID = hashlib.sha256(DATA).hexdigest()


def make_app(root: Path, **config: Any) -> tuple[Flask, FlaskHashFS]:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), HASHFS_PATH_PREFIX="/files", **config)
    fs = FlaskHashFS(app)

    @app.post("/raw")
    def raw() -> Any:
        if "big" in request.args:
            request.max_content_length = 1 << 40
        address = fs.put(request.stream, extension=request.args.get("ext"))
        return {"id": address.id, "url": fs.url_for(address), "dup": address.is_duplicate}

    @app.post("/uploads")
    def uploads() -> Any:
        stored = fs.put_uploads()
        return {
            "files": [
                [u.name, u.address.id, u.address.relpath, u.filename, u.content_type, u.size]
                for u in stored.files.values()
            ],
            "form": stored.form.to_dict(flat=False),
        }

    @app.post("/filestorage")
    def filestorage() -> Any:
        return {"id": fs.put(request.files["file"], extension="bin").id}

    return app, fs


def multipart(fields: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    boundary, body = encode_multipart(fields)
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Trickle(io.RawIOBase):
    """A body that arrives in small reads and cannot seek, as from a socket."""

    def __init__(self, data: bytes, size: int = 7000) -> None:
        self._data = data
        self._size = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size, len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def chunked(client: Any, path: str, data: bytes, terminated: bool = True, **kw: Any) -> Any:
    environ: dict[str, Any] = {"wsgi.input": io.BufferedReader(Trickle(data))}
    if terminated:
        environ["wsgi.input_terminated"] = True
    # The test client would replace a multipart boundary given as a header.
    content_type = kw.pop("headers", {}).get("Content-Type")
    if content_type:
        environ["CONTENT_TYPE"] = content_type
    headers = {"Transfer-Encoding": "chunked"}
    return client.post(path, headers=headers, environ_overrides=environ, **kw)


def test_put_raw_body_and_url_for(root: Path) -> None:
    app, _ = make_app(root)
    client = app.test_client()
    response = client.post("/raw?ext=bin", data=DATA)
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == DATA_ID
    relpath = os.path.relpath(hashfs.HashFS(root).idpath(DATA_ID, "bin"), root)
    assert body["url"] == f"http://localhost/files/{relpath}"
    assert not body["dup"]
    assert client.post("/raw?ext=bin", data=DATA).get_json()["dup"]
    assert stored_files(root) == [relpath]


def test_chunked_raw_body(root: Path) -> None:
    app, _ = make_app(root)
    response = chunked(app.test_client(), "/raw", DATA)
    assert response.status_code == 200
    assert response.get_json()["id"] == DATA_ID


def test_chunked_body_the_server_cannot_pass_on_is_411(root: Path) -> None:
    app, _ = make_app(root)
    response = chunked(app.test_client(), "/raw", DATA, terminated=False)
    assert response.status_code == 411
    assert b"Content-Length" in response.data
    assert stored_files(root) == []


def test_put_uploads_streams_files_and_collects_fields(root: Path) -> None:
    app, _ = make_app(root)
    body, headers = multipart(
        {
            "photo": FileStorage(io.BytesIO(DATA), "Holiday.JPG", content_type="image/jpeg"),
            "notes": FileStorage(io.BytesIO(b"plain"), "notes.tar.gz*"),
            "empty": FileStorage(io.BytesIO(b""), ""),
            "title": "Sommer ☀",
        }
    )
    response = chunked(app.test_client(), "/uploads", body, headers=headers)
    assert response.status_code == 200, response.data
    result = response.get_json()
    photo, notes = result["files"]
    assert photo[:2] == ["photo", DATA_ID]
    assert photo[2].endswith(".jpg")
    assert photo[3:] == ["Holiday.JPG", "image/jpeg", len(DATA)]
    assert notes[1] == hashlib.sha256(b"plain").hexdigest()
    assert "." not in os.path.basename(notes[2])
    assert result["form"] == {"title": ["Sommer ☀"]}
    assert len(stored_files(root)) == 2


def test_put_file_storage_from_request_files(root: Path) -> None:
    app, _ = make_app(root)
    body, headers = multipart({"file": FileStorage(io.BytesIO(DATA), "a.bin")})
    response = app.test_client().post("/filestorage", data=body, headers=headers)
    assert response.get_json()["id"] == DATA_ID


def test_max_content_length_counts_every_streamed_byte(root: Path) -> None:
    app, _ = make_app(root, MAX_CONTENT_LENGTH=100_000)
    response = chunked(app.test_client(), "/raw", DATA)
    assert response.status_code == 413
    assert b"100000 bytes" in response.data
    assert stored_files(root) == []
    assert temp_files(root) == []
    assert chunked(app.test_client(), "/raw", DATA[:100_000]).status_code == 200


def test_content_length_over_limit_is_413(root: Path) -> None:
    app, _ = make_app(root, MAX_CONTENT_LENGTH=1000)
    assert app.test_client().post("/raw", data=DATA).status_code == 413
    assert stored_files(root) == []


def test_a_route_may_allow_larger_bodies(root: Path) -> None:
    app, _ = make_app(root, MAX_CONTENT_LENGTH=1000)
    response = app.test_client().post("/raw?big=1", data=DATA)
    assert response.status_code == 200
    assert response.get_json()["id"] == DATA_ID


def test_hashfs_max_size_gives_413_and_stores_nothing(root: Path) -> None:
    app, _ = make_app(root, HASHFS_MAX_SIZE=1000)
    assert app.test_client().post("/raw", data=DATA).status_code == 413
    body, headers = multipart({"f": FileStorage(io.BytesIO(DATA), "a.bin")})
    response = app.test_client().post("/uploads", data=body, headers=headers)
    assert response.status_code == 413
    assert b"uploaded file" in response.data
    assert stored_files(root) == []
    assert temp_files(root) == []


def test_bad_extension_is_400(root: Path) -> None:
    app, _ = make_app(root)
    response = app.test_client().post("/raw?ext=../../x", data=DATA)
    assert response.status_code == 400
    assert b"invalid extension" in response.data


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"not multipart at all", "multipart/form-data; boundary=xyz"),
        (
            b"--xyz\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n--xyz--\r\n",
            "multipart/form-data; boundary=xyz",
        ),
        (
            b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\ncut short',
            "multipart/form-data; boundary=xyz",
        ),
        (b"whatever", "multipart/form-data"),
        (b"whatever", "application/json"),
    ],
    ids=[
        "no-boundary-in-body",
        "no-disposition",
        "truncated",
        "no-boundary-param",
        "not-multipart",
    ],
)
def test_malformed_multipart_is_400(root: Path, body: bytes, content_type: str) -> None:
    app, _ = make_app(root)
    response = app.test_client().post(
        "/uploads", data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400
    assert b"multipart" in response.data.lower()
    assert stored_files(root) == []
    assert temp_files(root) == []


def test_body_shorter_than_content_length_stores_nothing(root: Path) -> None:
    app, _ = make_app(root)
    response = app.test_client().post(
        "/raw",
        environ_overrides={
            "CONTENT_LENGTH": str(len(DATA)),
            "wsgi.input": io.BufferedReader(Trickle(DATA[:50_000])),
        },
    )
    assert response.status_code == 400
    assert stored_files(root) == []
    assert temp_files(root) == []


def test_extension_state_and_proxies(root: Path, tmp_path: Path) -> None:
    app, fs = make_app(root)
    other = Flask("other")
    other.config.update(HASHFS_ROOT_FOLDER=str(tmp_path / "other"), HASHFS_DEPTH=2)
    fs.init_app(other)
    with app.app_context():
        assert isinstance(fs.store, SyncHashFS)
        assert isinstance(fs.client, hashfs.HashFS)
        assert app.extensions["hashfs"]["client"] is fs.client
        assert fs.client.root == fs.store.root == fs.root == str(root)
        assert fs.depth == 4
        address = fs.put(DATA)
        assert fs.get(DATA_ID) == address
        assert fs.exists(DATA_ID)
        with fs.open(DATA_ID) as file:
            assert file.read() == DATA
        assert fs.count() == 1
        fs.delete(DATA_ID)
        assert fs.url_for("a/b.txt", external=False) == "/files/a/b.txt"
    with other.app_context():
        assert fs.depth == 2
    with (
        Flask("bare").app_context(),
        pytest.raises(RuntimeError, match="forget to call 'init_app'"),
    ):
        fs.store  # noqa: B018


# -- drop-in for Flask-HashFS 0.3.0 ---------------------------------------------


@pytest.mark.parametrize("extension", [FlaskHashFS, flask_hashfs.FlaskHashFS])
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"HASHFS_ROOT_FOLDER": None}, '"HASHFS_ROOT_FOLDER" must be set'),
        ({"HASHFS_PATH_PREFIX": None}, '"HASHFS_PATH_PREFIX" must be set'),
        ({"HASHFS_PATH_PREFIX": "files"}, "must start with a leading slash"),
    ],
)
def test_config_errors_match_flask_hashfs(
    root: Path, extension: Any, config: dict[str, Any], message: str
) -> None:
    app = Flask(__name__)
    app.config.update({"HASHFS_ROOT_FOLDER": str(root), **config})
    with pytest.raises(ValueError, match=message):
        extension(app)


def test_defaults_match_flask_hashfs(root: Path) -> None:
    ours, theirs = Flask("ours"), Flask("theirs")
    for app, extension in ((ours, FlaskHashFS), (theirs, flask_hashfs.FlaskHashFS)):
        app.config["HASHFS_ROOT_FOLDER"] = str(root)
        extension(app)
    for key, value in theirs.config.items():
        if key.startswith("HASHFS_"):
            assert ours.config[key] == value, key


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"HASHFS_PATH_PREFIX": "/files"},
        {"HASHFS_PATH_PREFIX": "/files/"},
        {"HASHFS_HOST": "https://cdn.example.com"},
        {"HASHFS_HOST": "https://cdn.example.com/base/", "HASHFS_PATH_PREFIX": "/files/"},
    ],
)
@pytest.mark.parametrize("relpath", ["a/b/c.txt", "/a/b/", "", "x"])
@pytest.mark.parametrize("external", [True, False])
def test_urls_match_flask_hashfs(
    root: Path, config: dict[str, Any], relpath: str, external: bool
) -> None:
    urls = []
    for extension in (FlaskHashFS, flask_hashfs.FlaskHashFS):
        app = Flask(__name__)
        app.config.update({"HASHFS_ROOT_FOLDER": str(root), **config})
        fs = extension(app)
        with app.test_request_context("/app/page", base_url="http://localhost:5000/app/"):
            urls.append(fs.url_for(relpath, external=external))
    assert urls[0] == urls[1]


def test_swapping_the_import_keeps_an_app_working(root: Path) -> None:
    def build(extension: Any) -> Any:
        app = Flask(__name__)
        app.config.update(HASHFS_ROOT_FOLDER=str(root), HASHFS_PATH_PREFIX="/f")
        fs = extension(app)

        @app.post("/up")
        def up() -> Any:
            address = fs.put(request.files["file"], extension="txt")
            found = fs.get(address.id)
            with fs.open(address.id) as file:
                content = file.read()
            return {"url": fs.url_for(address.relpath), "found": found.relpath, "n": len(content)}

        return app

    results = []
    for extension in (flask_hashfs.FlaskHashFS, FlaskHashFS):
        body, headers = multipart({"file": FileStorage(io.BytesIO(DATA), "x.txt")})
        results.append(
            build(extension).test_client().post("/up", data=body, headers=headers).get_json()
        )
    assert results[0] == results[1]


# -- Flask-HashFS 0.3.0 behaviour (issue 10, item 3) ------------------------------


BOTH = pytest.mark.parametrize(
    "extension", [FlaskHashFS, flask_hashfs.FlaskHashFS], ids=["ours", "flask_hashfs"]
)


@BOTH
def test_hashfs_parameter_names(root: Path, extension: Any) -> None:
    app = Flask(__name__)
    app.config["HASHFS_ROOT_FOLDER"] = str(root)
    fs = extension(app)
    with app.app_context():
        address = fs.put(file=io.BytesIO(DATA), extension="bin")
        assert fs.get(file=address.id) == address
        with fs.open(file=address.id, mode="rb") as opened:
            assert opened.read() == DATA
        assert fs.exists(file=address.relpath)
        assert fs.realpath(file=address.id) == address.abspath
        assert fs.computehash(stream=io.BytesIO(DATA)) == DATA_ID
        assert fs.idpath(id=DATA_ID, extension="bin") == address.abspath
        assert fs.unshard(path=address.abspath) == DATA_ID
        assert fs.relpath(path=address.abspath) == address.relpath
        assert fs.haspath(path=address.abspath)
        assert list(fs.corrupted(extensions=True)) == []
        assert fs.repair(extensions=True) == []
        fs.delete(file=address.id)
        assert fs.get(file=address.id) is None
        fs.makepath(path=str(root / "made"))
        fs.remove_empty(subpath=str(root / "made"))
        assert not (root / "made").exists()


@BOTH
@pytest.mark.parametrize("external", [True, False])
def test_url_for_reads_host_and_prefix_at_each_call(
    root: Path, extension: Any, external: bool
) -> None:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), HASHFS_PATH_PREFIX="/old")
    fs = extension(app)
    with app.test_request_context("/"):
        before = fs.url_for("a/b.txt", external=external)
        app.config.update(HASHFS_HOST="https://cdn.example.com", HASHFS_PATH_PREFIX="/new")
        after = fs.url_for("a/b.txt", external=external)
    assert before == ("http://localhost" if external else "") + "/old/a/b.txt"
    assert after == ("https://cdn.example.com" if external else "") + "/new/a/b.txt"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, '"HASHFS_PATH_PREFIX" must be set'),
        ("files", '"HASHFS_PATH_PREFIX" must start with a leading slash'),
        (3, '"HASHFS_PATH_PREFIX" must be a string'),
    ],
)
def test_url_for_keeps_the_prefix_checks(root: Path, value: object, message: str) -> None:
    app, fs = make_app(root)
    app.config["HASHFS_PATH_PREFIX"] = value
    with app.test_request_context("/"), pytest.raises(ValueError, match=message):
        fs.url_for("a/b.txt")


def test_url_for_before_init_app_says_so(root: Path) -> None:
    with (
        Flask("bare").test_request_context("/"),
        pytest.raises(RuntimeError, match="forget to call 'init_app'"),
    ):
        FlaskHashFS().url_for("a/b.txt")


@BOTH
def test_extension_state_reads_as_flask_hashfs_dict(root: Path, extension: Any) -> None:
    app = Flask(__name__)
    app.config["HASHFS_ROOT_FOLDER"] = str(root)
    fs = extension(app)
    state = app.extensions["hashfs"]
    client = state["client"]
    assert isinstance(state, dict)
    assert isinstance(client, hashfs.HashFS)
    assert list(state) == ["client"]
    assert state.get("client") is client
    assert "client" in state
    assert len(state) == 1
    assert client.root == str(root)
    with app.app_context():
        assert fs.client is client


@BOTH
def test_init_app_twice_starts_over(root: Path, tmp_path: Path, extension: Any) -> None:
    app = Flask(__name__)
    app.config.update(HASHFS_ROOT_FOLDER=str(root), HASHFS_PATH_PREFIX="/files")
    fs = extension(app)
    with app.app_context():
        first = fs.put(io.BytesIO(b"first"))
    app.config.update(HASHFS_ROOT_FOLDER=str(tmp_path / "second"), HASHFS_DEPTH=2)
    fs.init_app(app)
    second = extension()
    second.init_app(app)
    with app.app_context():
        assert fs.client.root == second.client.root == str(tmp_path / "second")
        assert fs.client.depth == second.client.depth == 2
        assert fs.get(first.id) is None
        assert fs.put(io.BytesIO(b"second")).relpath.count("/") == 2


def test_init_app_twice_keeps_one_route_and_one_command_group(root: Path, tmp_path: Path) -> None:
    app, fs = make_app(root, HASHFS_SERVE=True)
    address = SyncHashFS(root).put(b"served", "txt")
    assert app.test_client().get(f"/files/{address.relpath}").data == b"served"
    # After the first request Flask refuses new routes: none is needed.
    fs.init_app(app)
    FlaskHashFS().init_app(app)
    rules = [r.rule for r in app.url_map.iter_rules() if r.endpoint == "hashfs_file"]
    assert rules == ["/files/<path:relpath>"]
    assert list(app.cli.commands) == ["hashfs"]
    assert app.test_client().get(f"/files/{address.relpath}").data == b"served"
    # Serving switched off: the route Flask cannot remove answers 404.
    app.config["HASHFS_SERVE"] = False
    fs.init_app(app)
    assert app.test_client().get(f"/files/{address.relpath}").status_code == 404


def test_init_app_after_flask_hashfs_on_the_same_app(root: Path) -> None:
    app = Flask(__name__)
    app.config["HASHFS_ROOT_FOLDER"] = str(root)
    theirs = flask_hashfs.FlaskHashFS(app)
    ours = FlaskHashFS(app)
    with app.app_context():
        address = ours.put(b"both")
        assert theirs.get(address.id) == address
    flask_hashfs.FlaskHashFS(app)
    with app.app_context(), pytest.raises(RuntimeError, match="replaced by another extension"):
        ours.count()
