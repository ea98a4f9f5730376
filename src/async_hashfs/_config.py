"""Extension settings and URLs, shared by the Quart and Flask extensions.

The keys, defaults and errors of Flask-HashFS 0.3.0 are kept exactly; the
new keys only add powers. No framework is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from hashfs import HashFS

from ._http import PresenceCache

__all__ = [
    "DEFAULTS",
    "EXTENSION",
    "AppState",
    "ExtensionBase",
    "Settings",
    "app_state",
    "join_url",
    "register",
]

#: Every key the extensions read, with its default.
DEFAULTS: dict[str, Any] = {
    # Flask-HashFS 0.3.0
    "HASHFS_HOST": None,
    "HASHFS_PATH_PREFIX": "",
    "HASHFS_ROOT_FOLDER": None,
    "HASHFS_DEPTH": 4,
    "HASHFS_WIDTH": 1,
    "HASHFS_ALGORITHM": "sha256",
    # async-hashfs
    "HASHFS_MAX_SIZE": None,
    "HASHFS_FSYNC": False,
    "HASHFS_FMODE": 0o664,
    "HASHFS_DMODE": 0o755,
    "HASHFS_SERVE": False,
    "HASHFS_THREADS": None,
    "HASHFS_BODY_BUFFER": 1 << 20,
    "HASHFS_UPLOAD_MEMORY": 32 << 20,
    "HASHFS_VERIFY_ON_READ": False,
    "HASHFS_S3_ENDPOINT": None,
    "HASHFS_S3_REGION": None,
    "HASHFS_S3_ACCESS_KEY_ID": None,
    "HASHFS_S3_SECRET_ACCESS_KEY": None,
    "HASHFS_S3_OPTIONS": None,
    "HASHFS_S3_REDIRECT": False,
    "HASHFS_SENDFILE": None,
    "HASHFS_ACCEL_PREFIX": "/_hashfs/",
}

SENDFILE_HEADERS = {"x-accel-redirect": "X-Accel-Redirect", "x-sendfile": "X-Sendfile"}


@dataclass(frozen=True)
class Settings:
    """The validated ``HASHFS_*`` settings of one app."""

    host: str | None
    path_prefix: str
    root_folder: str
    depth: int
    width: int
    algorithm: str
    max_size: int | None
    fsync: bool
    fmode: int | None
    dmode: int
    serve: bool
    threads: int | None
    body_buffer: int
    upload_memory: int
    sendfile: str | None
    accel_prefix: str
    verify_on_read: bool
    s3_options: dict[str, Any]
    s3_redirect: bool

    @classmethod
    def from_config(cls, config: MutableMapping[str, Any]) -> Settings:
        """Fill in the defaults in ``config`` and read the settings from it.

        Raises:
            ValueError: a missing or invalid value, with Flask-HashFS's messages
                for its own keys.
        """
        for key, value in DEFAULTS.items():
            config.setdefault(key, value)
        prefix = config["HASHFS_PATH_PREFIX"]
        if prefix is None:
            raise ValueError(
                'Missing configuration value for Flask-HashFS: "HASHFS_PATH_PREFIX" must be set'
            )
        if prefix and not prefix.startswith("/"):
            raise ValueError(
                'Invalid configuration value for Flask-HashFS: "HASHFS_PATH_PREFIX" '
                "must start with a leading slash"
            )
        if not config["HASHFS_ROOT_FOLDER"]:
            raise ValueError(
                'Missing configuration value for Flask-HashFS: "HASHFS_ROOT_FOLDER" must be set'
            )
        max_size = config["HASHFS_MAX_SIZE"]
        if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
            raise ValueError(f'"HASHFS_MAX_SIZE" must be a byte count or None, not {max_size!r}')
        buffer = config["HASHFS_BODY_BUFFER"]
        if not isinstance(buffer, int) or buffer < 1:
            raise ValueError(f'"HASHFS_BODY_BUFFER" must be a positive byte count, not {buffer!r}')
        memory = config["HASHFS_UPLOAD_MEMORY"]
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 1:
            raise ValueError(
                f'"HASHFS_UPLOAD_MEMORY" must be a positive byte count, not {memory!r}'
            )
        serve = bool(config["HASHFS_SERVE"])
        if serve and prefix.strip("/") == "":
            raise ValueError(
                '"HASHFS_SERVE" needs a non-empty "HASHFS_PATH_PREFIX" to serve files under'
            )
        sendfile = config["HASHFS_SENDFILE"]
        if sendfile is not None and str(sendfile).lower() not in SENDFILE_HEADERS:
            raise ValueError(
                '"HASHFS_SENDFILE" must be None, "x-accel-redirect" or "x-sendfile", '
                f"not {sendfile!r}"
            )
        accel_prefix = str(config["HASHFS_ACCEL_PREFIX"])
        if not accel_prefix.startswith("/"):
            raise ValueError(f'"HASHFS_ACCEL_PREFIX" must start with "/", not {accel_prefix!r}')
        s3_options = dict(config["HASHFS_S3_OPTIONS"] or {})
        for key in ("endpoint", "region", "access_key_id", "secret_access_key"):
            value = config[f"HASHFS_S3_{key.upper()}"]
            if value is not None:
                s3_options[key] = value
        s3_redirect = bool(config["HASHFS_S3_REDIRECT"])
        if s3_redirect and not str(config["HASHFS_ROOT_FOLDER"]).startswith("s3://"):
            raise ValueError('"HASHFS_S3_REDIRECT" needs an s3:// "HASHFS_ROOT_FOLDER"')
        return cls(
            s3_options=s3_options,
            s3_redirect=s3_redirect,
            verify_on_read=bool(config["HASHFS_VERIFY_ON_READ"]),
            sendfile=None if sendfile is None else str(sendfile).lower(),
            accel_prefix=accel_prefix,
            host=config["HASHFS_HOST"],
            path_prefix=prefix,
            root_folder=str(config["HASHFS_ROOT_FOLDER"]),
            depth=config["HASHFS_DEPTH"],
            width=config["HASHFS_WIDTH"],
            algorithm=config["HASHFS_ALGORITHM"],
            max_size=max_size,
            fsync=bool(config["HASHFS_FSYNC"]),
            fmode=config["HASHFS_FMODE"],
            dmode=config["HASHFS_DMODE"],
            serve=serve,
            threads=config["HASHFS_THREADS"],
            body_buffer=buffer,
            upload_memory=memory,
        )

    def store_options(self) -> dict[str, Any]:
        """Keyword arguments for ``AsyncHashFS`` / ``SyncHashFS``."""
        return {
            "depth": self.depth,
            "width": self.width,
            "algorithm": self.algorithm,
            "fmode": self.fmode,
            "dmode": self.dmode,
            "max_size": self.max_size,
            "fsync": self.fsync,
            **({"s3_options": self.s3_options} if self.root_folder.startswith("s3://") else {}),
        }

    @property
    def serve_rule(self) -> str:
        """The URL rule of the serving route."""
        return self.path_prefix.rstrip("/") + "/<path:relpath>"

    def offload(self, abspath: str, relpath: str) -> tuple[str, str] | None:
        """The header that hands a file to the front server, if one is configured."""
        if self.sendfile is None:
            return None
        if self.sendfile == "x-sendfile":
            return SENDFILE_HEADERS["x-sendfile"], abspath
        return SENDFILE_HEADERS["x-accel-redirect"], join_url(self.accel_prefix, relpath)

    def url_for(self, relpath: str, external: bool, request_host: Callable[[], str]) -> str:
        """Return Flask-HashFS's URL for ``relpath``.

        An ``external`` URL starts with ``HASHFS_HOST``, or else with
        ``request_host()`` (the current request's host URL).
        """
        host = (self.host or request_host()) if external else None
        return join_url(host, "/", self.path_prefix, relpath)


def join_url(*parts: str | None) -> str:
    """Join URL parts with single slashes, as Flask-HashFS does.

    Empty parts are skipped; a leading slash of the first kept part and a
    trailing slash of the last one are kept.
    """
    kept = [part for part in parts if part]
    if not kept:
        return ""
    joined = "/".join(part.strip("/") for part in kept if part.strip("/"))
    if kept[0].startswith("/") and not joined.startswith("/"):
        joined = "/" + joined
    if kept[-1].endswith("/") and not joined.endswith("/"):
        joined += "/"
    return joined


class AppState:
    """What an extension keeps in ``app.extensions["hashfs"]``.

    ``state["client"]`` works as in Flask-HashFS, which stored a dict there.
    """

    __slots__ = ("client", "presence", "settings", "store")

    def __init__(self, settings: Settings, store: Any) -> None:
        self.settings = settings
        self.store = store
        #: Files served moments ago, for revalidations without a disk hop.
        self.presence = PresenceCache()
        #: A ``hashfs.HashFS`` on the same root, for code written for HashFS.
        self.client = HashFS(
            store.root,
            settings.depth,
            settings.width,
            settings.algorithm,
            settings.fmode,
            settings.dmode,
        )

    def __getitem__(self, key: str) -> Any:
        if key == "client":
            return self.client
        raise KeyError(key)


#: The key of an app's state in ``app.extensions``, as Flask-HashFS used.
EXTENSION = "hashfs"


def register(
    app: Any, make_store: Callable[[Settings], Any], serve_view: Callable[..., Any]
) -> AppState:
    """Do what ``init_app`` does alike on Quart and Flask.

    Read the settings, build the store, create its root, keep the state in
    ``app.extensions["hashfs"]``, add the serving route when asked and the
    ``hashfs`` command group.

    Raises:
        RuntimeError: the app already has a hashfs extension.
        ValueError: a missing or invalid ``HASHFS_*`` value.
    """
    from ._cli import app_group

    if EXTENSION in app.extensions:
        raise RuntimeError("A hashfs extension is already registered on this app.")
    settings = Settings.from_config(app.config)
    store = make_store(settings)
    store._engine.makepath(store.root)
    state = AppState(settings, store)
    app.extensions[EXTENSION] = state
    if settings.serve:
        app.add_url_rule(settings.serve_rule, "hashfs_file", serve_view, methods=["GET", "HEAD"])
    app.cli.add_command(app_group(settings))
    return state


def app_state(app: Any, extension_name: str) -> AppState:
    """The state ``register`` kept for ``app``.

    Raises:
        RuntimeError: the extension was never registered on ``app``.
    """
    try:
        state: AppState = app.extensions[EXTENSION]
    except KeyError:
        raise RuntimeError(
            f"{extension_name} is not registered on this app. Did you forget to call 'init_app'?"
        ) from None
    return state


class ExtensionBase:
    """What ``QuartHashFS`` and ``FlaskHashFS`` share that does no I/O.

    Each extension names itself and says how to reach its framework's
    current app; its I/O methods it writes out for itself.
    """

    _name = "hashfs"

    def _current_app(self) -> Any:
        raise NotImplementedError

    @property
    def _state(self) -> AppState:
        return app_state(self._current_app(), self._name)

    @property
    def client(self) -> Any:
        """A ``hashfs.HashFS`` on the same root, for code written for HashFS."""
        return self._state.client

    @property
    def config(self) -> Any:
        """The current app's config."""
        return self._current_app().config

    def __getattr__(self, name: str) -> Any:
        # Other attributes are the app's store's, as Flask-HashFS proxied to HashFS.
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._state.store, name)
