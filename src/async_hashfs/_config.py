"""Extension settings and URLs, shared by the Quart and Flask extensions.

The keys, defaults and errors of Flask-HashFS 0.3.0 are kept exactly; the
new keys only add powers. No framework is imported here.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import CapacityLimiter
from hashfs import HashFS

from ._address import HashAddress
from ._presence import PresenceCache

if TYPE_CHECKING:
    from ._tus import TusExchange

__all__ = [
    "DEFAULTS",
    "EXTENSION",
    "AppState",
    "ExtensionBase",
    "SERVE_ENDPOINT",
    "TUS_ENDPOINTS",
    "Settings",
    "app_state",
    "check_host",
    "check_path_prefix",
    "join_url",
    "register",
    "url_for",
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
    "HASHFS_S3_PUBLIC_ENDPOINT": None,
    "HASHFS_SENDFILE": None,
    "HASHFS_ACCEL_PREFIX": "/_hashfs/",
    "HASHFS_TUS_PREFIX": None,
    "HASHFS_TUS_EXPIRY": 24 * 3600,
    "HASHFS_TUS_IDLE_TIMEOUT": 60,
}

SENDFILE_HEADERS = {"x-accel-redirect": "X-Accel-Redirect", "x-sendfile": "X-Sendfile"}
_BOOLEAN = (
    'True or False (a string is not read as a boolean: "false" would mean True; '
    "Flask's config.from_prefixed_env() turns the text false into False)"
)
_MODE = "an int permission mode from 0 to 0o7777 such as {example} (not a string)"


def _invalid(key: str, accepted: str, value: object) -> ValueError:
    return ValueError(f'Invalid configuration value: "{key}" must be {accepted}, not {value!r}')


def _flag(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        raise _invalid(key, _BOOLEAN, value)
    return value


def _integer(config: Mapping[str, Any], key: str, minimum: int, accepted: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid(key, accepted, value)
    return value


def _mode(config: Mapping[str, Any], key: str, example: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o7777:
        raise _invalid(key, _MODE.format(example=example), value)
    return value


def _text(config: Mapping[str, Any], key: str, accepted: str) -> str | None:
    value = config[key]
    if value is not None and not isinstance(value, str):
        raise _invalid(key, accepted, value)
    return value


def _algorithm(config: Mapping[str, Any]) -> tuple[str, int]:
    """Return ``HASHFS_ALGORITHM`` and the length of its hex digests."""
    value = config["HASHFS_ALGORITHM"]
    fixed = sorted(name for name in hashlib.algorithms_guaranteed if not name.startswith("shake_"))
    accepted = f"the name of a hashlib algorithm with a fixed digest size ({', '.join(fixed)})"
    if not isinstance(value, str):
        raise _invalid("HASHFS_ALGORITHM", accepted, value)
    try:
        size = hashlib.new(value).digest_size
    except ValueError:
        raise _invalid("HASHFS_ALGORITHM", accepted, value) from None
    if size == 0:
        raise _invalid("HASHFS_ALGORITHM", accepted, value)
    return value, size * 2


def _tus_settings(
    config: Mapping[str, Any], serve_prefix: str | None
) -> tuple[str | None, float | None, float | None]:
    """Return ``HASHFS_TUS_PREFIX`` (without a trailing slash), ``HASHFS_TUS_EXPIRY`` and
    ``HASHFS_TUS_IDLE_TIMEOUT``."""
    prefix = config["HASHFS_TUS_PREFIX"]
    accepted = 'None, or the URL path of the tus endpoint such as "/tus"'
    if prefix is not None and (
        not isinstance(prefix, str)
        or not prefix.startswith("/")
        or not prefix.strip("/")
        or any(c in prefix for c in "<>?#% \t\n")
    ):
        raise _invalid("HASHFS_TUS_PREFIX", accepted, prefix)
    if prefix is not None:
        prefix = prefix.rstrip("/")
        if serve_prefix is not None and serve_prefix.rstrip("/") == prefix:
            raise ValueError(
                '"HASHFS_TUS_PREFIX" must differ from the "HASHFS_PATH_PREFIX" files are '
                f"served under, not both {prefix!r}"
            )
    expiry = _seconds(
        config,
        "HASHFS_TUS_EXPIRY",
        "None (never) or the seconds an unfinished upload is kept, more than 0",
    )
    idle = _seconds(
        config,
        "HASHFS_TUS_IDLE_TIMEOUT",
        "None (never) or the seconds a PATCH may send nothing, more than 0",
    )
    return prefix, expiry, idle


def _seconds(config: Mapping[str, Any], key: str, accepted: str) -> float | None:
    value = config[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise _invalid(key, accepted, value)
    return float(value)


def check_path_prefix(prefix: object) -> str:
    """Return ``HASHFS_PATH_PREFIX`` once it is valid, with Flask-HashFS's messages.

    Raises:
        ValueError: ``None``, not a string, or not starting with a slash.
    """
    if prefix is None:
        raise ValueError(
            'Missing configuration value for Flask-HashFS: "HASHFS_PATH_PREFIX" must be set'
        )
    if not isinstance(prefix, str):
        raise _invalid("HASHFS_PATH_PREFIX", 'a string starting with "/", or ""', prefix)
    if prefix and not prefix.startswith("/"):
        raise ValueError(
            'Invalid configuration value for Flask-HashFS: "HASHFS_PATH_PREFIX" '
            "must start with a leading slash"
        )
    return prefix


def check_host(host: object) -> str | None:
    """Return ``HASHFS_HOST`` once it is valid.

    Raises:
        ValueError: neither ``None`` nor a string.
    """
    if host is not None and not isinstance(host, str):
        raise _invalid(
            "HASHFS_HOST",
            'None or the URL files are served from, such as "https://cdn.example"',
            host,
        )
    return host


@dataclass(frozen=True)
class Settings:
    """The validated ``HASHFS_*`` settings of one app, read at ``init_app``.

    ``HASHFS_HOST`` and ``HASHFS_PATH_PREFIX`` are also read again at each
    ``url_for`` (see :func:`url_for`), as Flask-HashFS does; ``path_prefix``
    here is where the serving route was put.
    """

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
    threads: int | CapacityLimiter | None
    body_buffer: int
    upload_memory: int
    sendfile: str | None
    accel_prefix: str
    verify_on_read: bool
    s3_options: dict[str, Any]
    s3_redirect: bool
    #: Where the tus endpoint is (``None``: no tus endpoint).
    tus_prefix: str | None = None
    #: Seconds an unfinished tus upload is kept after its last PATCH (``None``: no expiry).
    tus_expiry: float | None = 24 * 3600.0
    #: Seconds a tus PATCH may send nothing before it is ended, its bytes kept (Quart).
    tus_idle_timeout: float | None = 60.0

    @classmethod
    def from_config(cls, config: MutableMapping[str, Any]) -> Settings:
        """Fill in the defaults in ``config`` and check every key the extensions read.

        Booleans must be ``True`` or ``False``: a string such as ``"false"``
        is refused rather than read as true.

        Raises:
            ValueError: a missing or invalid value, naming the key and what it
                accepts; Flask-HashFS's own messages for its own checks.
        """
        for key, value in DEFAULTS.items():
            config.setdefault(key, value)
        check_host(config["HASHFS_HOST"])
        prefix = check_path_prefix(config["HASHFS_PATH_PREFIX"])
        root = config["HASHFS_ROOT_FOLDER"]
        if not root:
            raise ValueError(
                'Missing configuration value for Flask-HashFS: "HASHFS_ROOT_FOLDER" must be set'
            )
        root_folder = os.fspath(root) if isinstance(root, str | os.PathLike) else None
        if not isinstance(root_folder, str):
            raise _invalid("HASHFS_ROOT_FOLDER", "a folder path or an s3://bucket/prefix", root)
        algorithm, digest_length = _algorithm(config)
        depth = _integer(config, "HASHFS_DEPTH", 0, "an int, 0 or more (shard folders)")
        width = _integer(config, "HASHFS_WIDTH", 0, "an int, 0 or more (characters per folder)")
        # Equal is a layout HashFS writes (the id's last part is the file name).
        if depth * width > digest_length:
            raise ValueError(
                'Invalid configuration value: "HASHFS_DEPTH" times "HASHFS_WIDTH" must be '
                f"at most {digest_length}, the length of a {algorithm} id, not "
                f"{depth} * {width}"
            )
        max_size = None
        if config["HASHFS_MAX_SIZE"] is not None:
            max_size = _integer(config, "HASHFS_MAX_SIZE", 0, "a byte count (an int) or None")
        fmode = None
        if config["HASHFS_FMODE"] is not None:
            fmode = _mode(config, "HASHFS_FMODE", "0o664, or None")
        dmode = _mode(config, "HASHFS_DMODE", "0o755")
        threads = config["HASHFS_THREADS"]
        if threads is not None and not isinstance(threads, CapacityLimiter):
            threads = _integer(
                config,
                "HASHFS_THREADS",
                1,
                "a number of worker threads, 1 or more, an anyio.CapacityLimiter, or None",
            )
        buffer = _integer(config, "HASHFS_BODY_BUFFER", 1, "a positive byte count (an int)")
        memory = _integer(config, "HASHFS_UPLOAD_MEMORY", 1, "a positive byte count (an int)")
        serve = _flag(config, "HASHFS_SERVE")
        if serve and prefix.strip("/") == "":
            raise ValueError(
                '"HASHFS_SERVE" needs a non-empty "HASHFS_PATH_PREFIX" to serve files under'
            )
        sendfile = config["HASHFS_SENDFILE"]
        if sendfile is not None and (
            not isinstance(sendfile, str) or sendfile.lower() not in SENDFILE_HEADERS
        ):
            raise _invalid("HASHFS_SENDFILE", 'None, "x-accel-redirect" or "x-sendfile"', sendfile)
        accel_prefix = config["HASHFS_ACCEL_PREFIX"]
        if not isinstance(accel_prefix, str) or not accel_prefix.startswith("/"):
            raise _invalid("HASHFS_ACCEL_PREFIX", 'a URL path starting with "/"', accel_prefix)
        extra = config["HASHFS_S3_OPTIONS"]
        if extra is not None and (
            not isinstance(extra, Mapping) or not all(isinstance(k, str) for k in extra)
        ):
            raise _invalid(
                "HASHFS_S3_OPTIONS", "None or a mapping of obstore S3Store option names", extra
            )
        s3_options = dict(extra or {})
        for key in ("endpoint", "region", "access_key_id", "secret_access_key", "public_endpoint"):
            value = _text(config, f"HASHFS_S3_{key.upper()}", "None or a string")
            if value is not None:
                s3_options[key] = value
        s3_redirect = _flag(config, "HASHFS_S3_REDIRECT")
        if s3_redirect and not root_folder.startswith("s3://"):
            raise ValueError('"HASHFS_S3_REDIRECT" needs an s3:// "HASHFS_ROOT_FOLDER"')
        tus_prefix, tus_expiry, tus_idle = _tus_settings(config, prefix if serve else None)
        return cls(
            tus_prefix=tus_prefix,
            tus_expiry=tus_expiry,
            tus_idle_timeout=tus_idle,
            s3_options=s3_options,
            s3_redirect=s3_redirect,
            verify_on_read=_flag(config, "HASHFS_VERIFY_ON_READ"),
            sendfile=None if sendfile is None else sendfile.lower(),
            accel_prefix=accel_prefix,
            path_prefix=prefix,
            root_folder=root_folder,
            depth=depth,
            width=width,
            algorithm=algorithm,
            max_size=max_size,
            fsync=_flag(config, "HASHFS_FSYNC"),
            fmode=fmode,
            dmode=dmode,
            serve=serve,
            threads=threads,
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

    def serves(self, rule: str | None) -> bool:
        """Whether the serving route's ``rule`` is the one these settings serve.

        A route added by an earlier ``init_app`` with other settings stays in
        the app (Flask cannot remove it); it answers 404.
        """
        return self.serve and rule == self.serve_rule

    def offload(self, abspath: str, relpath: str) -> tuple[str, str] | None:
        """The header that hands a file to the front server, if one is configured."""
        if self.sendfile is None:
            return None
        if self.sendfile == "x-sendfile":
            return SENDFILE_HEADERS["x-sendfile"], abspath
        return SENDFILE_HEADERS["x-accel-redirect"], join_url(self.accel_prefix, relpath)


def url_for(
    config: Mapping[str, Any], relpath: str, external: bool, request_host: Callable[[], str]
) -> str:
    """Return Flask-HashFS's URL for ``relpath``, from the app's config as it is now.

    ``HASHFS_HOST`` and ``HASHFS_PATH_PREFIX`` are read at each call, as
    Flask-HashFS reads them, so changing them after ``init_app`` changes the
    URLs. An ``external`` URL starts with ``HASHFS_HOST``, or else with
    ``request_host()`` (the current request's host URL).

    Raises:
        ValueError: ``HASHFS_HOST`` or ``HASHFS_PATH_PREFIX`` became invalid.
    """
    host = check_host(config.get("HASHFS_HOST"))
    prefix = check_path_prefix(config.get("HASHFS_PATH_PREFIX", ""))
    return join_url((host or request_host()) if external else None, "/", prefix, relpath)


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


class AppState(dict[str, Any]):
    """What an extension keeps in ``app.extensions["hashfs"]``.

    As a dict it is what Flask-HashFS kept there, ``{"client": HashFS(...)}``,
    so code that reads ``app.extensions["hashfs"]["client"]`` (or ``.get``,
    ``in``, ``keys()``) keeps working; the extension's own state is in
    attributes.
    """

    __slots__ = ("presence", "settings", "store", "tus")

    def __init__(self, settings: Settings, store: Any) -> None:
        #: A ``hashfs.HashFS`` on the same root, for code written for HashFS.
        super().__init__(
            client=HashFS(
                store.root,
                settings.depth,
                settings.width,
                settings.algorithm,
                settings.fmode,
                settings.dmode,
            )
        )
        self.settings = settings
        self.store = store
        #: Files answered 304 from the disk, for revalidations without a thread hop.
        self.presence = PresenceCache()
        #: The tus protocol on the store's partial uploads (a ``TusProtocol``), if enabled.
        self.tus: Any = None

    @property
    def client(self) -> Any:
        """``self["client"]``, as Flask-HashFS's ``client`` property reads it."""
        return self["client"]


#: The key of an app's state in ``app.extensions``, as Flask-HashFS used.
EXTENSION = "hashfs"
#: The endpoint of the serving route.
SERVE_ENDPOINT = "hashfs_file"
#: The endpoints of the tus routes: the creation URL, and each upload's URL.
TUS_ENDPOINTS = ("hashfs_tus", "hashfs_tus_upload")
#: Methods the tus routes take: tus's own, and the others HTTP clients send, so that the view
#: answers them (405 with ``Tus-Resumable``) rather than the framework.
_TUS_METHODS = ["OPTIONS", "POST", "HEAD", "PATCH", "DELETE", "GET", "PUT"]


def register(
    app: Any,
    make_store: Callable[[Settings], Any],
    serve_view: Callable[..., Any],
    tus_view: Callable[..., Any] | None = None,
) -> AppState:
    """Do what ``init_app`` does alike on Quart and Flask.

    Read the settings, build the store, create its root, keep the state in
    ``app.extensions["hashfs"]``, add the serving route when asked and the
    ``hashfs`` command group. Called again on the same app (by this or
    another extension instance), it starts over from the app's config as
    Flask-HashFS does: the new state replaces the old one, the route is added
    only if this rule is not there yet, and the command group is replaced.

    Raises:
        ValueError: a missing or invalid ``HASHFS_*`` value.
    """
    from ._cli import app_group

    settings = Settings.from_config(app.config)
    store = make_store(settings)
    store._engine.makepath(store.root)
    state = AppState(settings, store)
    app.extensions[EXTENSION] = state
    if settings.serve and not any(
        rule.endpoint == SERVE_ENDPOINT and rule.rule == settings.serve_rule
        for rule in app.url_map.iter_rules()
    ):
        app.add_url_rule(settings.serve_rule, SERVE_ENDPOINT, serve_view, methods=["GET", "HEAD"])
    if settings.tus_prefix is not None and tus_view is not None:
        _register_tus(app, state, tus_view)
    app.cli.add_command(app_group(settings))
    return state


def _register_tus(app: Any, state: AppState, view: Callable[..., Any]) -> None:
    """Set up the tus endpoint: the protocol on the store's partial uploads, and its routes.

    Raises:
        NotImplementedError: the store's backend keeps no partial uploads.
    """
    from ._tus import TusProtocol
    from ._tus_store import partial_store

    settings = state.settings
    state.tus = TusProtocol(
        partial_store(state.store._engine), settings.max_size, settings.tus_expiry
    )
    prefix = settings.tus_prefix
    rules = {(rule.endpoint, rule.rule) for rule in app.url_map.iter_rules()}
    # ``path``: any URL under the prefix is the view's (an upload id with a slash is its 404).
    upload_rule = f"{prefix}/<path:upload_id>"
    for endpoint, rule in zip(TUS_ENDPOINTS, (prefix, upload_rule), strict=True):
        if (endpoint, rule) not in rules:
            # Every method is the view's: OPTIONS is tus's own, not the framework's.
            app.add_url_rule(
                rule, endpoint, view, methods=_TUS_METHODS, provide_automatic_options=False
            )


def app_state(app: Any, extension_name: str) -> AppState:
    """The state ``register`` kept for ``app``.

    Raises:
        RuntimeError: the extension was never registered on ``app``, or
            another extension replaced its state since.
    """
    state = app.extensions.get(EXTENSION)
    if state is None:
        raise RuntimeError(
            f"{extension_name} is not registered on this app. Did you forget to call 'init_app'?"
        )
    if not isinstance(state, AppState):
        raise RuntimeError(
            f"app.extensions[{EXTENSION!r}] was replaced by another extension "
            f"(Flask-HashFS?); call {extension_name}'s 'init_app' after it."
        )
    return state


class ExtensionBase:
    """What ``QuartHashFS`` and ``FlaskHashFS`` share that does no I/O.

    Each extension names itself and says how to reach its framework's
    current app; its I/O methods it writes out for itself. The store's
    attributes are typed properties here, read from the current app's store.
    """

    _name = "hashfs"
    #: The app's tus hooks (see :meth:`on_upload_complete`, :meth:`authorize_upload`).
    _tus_complete: Callable[[Any], Any] | None = None
    _tus_authorize: Callable[[str, str | None], Any] | None = None

    def _current_app(self) -> Any:
        raise NotImplementedError

    def on_upload_complete(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``func(upload)`` to run when a tus upload is stored (a decorator).

        ``upload`` is a :class:`~async_hashfs.CompletedUpload`: its
        ``address`` (``is_duplicate`` as a put reports it), ``upload_id``
        and the client's decoded ``metadata`` (``upload.filename``,
        ``upload.filetype``), so the app can record them. It runs after the
        file is stored, in the request that sent the last byte; on Quart it
        may be ``async`` (a plain function runs in a worker thread). It runs
        at least once per upload, not exactly once: if it raises (or the
        server dies before it returns), the file stays stored, the client
        gets a 500 naming the file, and the next request that finds the
        upload finished (the client's retry, a ``HEAD``) runs it again, so
        make it idempotent (key the row on ``upload.upload_id``).
        """
        self._tus_complete = func
        return func

    def authorize_upload(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``func(action, upload_id)`` to allow tus requests (a decorator).

        ``action`` is ``"create"`` (``POST``), ``"resume"`` (``HEAD`` and
        ``PATCH``) or ``"terminate"`` (``DELETE``); ``upload_id`` is ``None``
        for ``"create"``. It runs in the request's context (read the session
        or ``request.headers``); the request goes on only if it returns
        ``True``, otherwise the client gets 403 (or the HTTP error it raises,
        such as ``abort(401)``). On Quart it may be ``async``.
        """
        self._tus_authorize = func
        return func

    def _request_host(self) -> str:
        raise NotImplementedError

    def _tus_exchange(
        self,
        request: Any,
        upload_id: str | None,
        passthrough: tuple[type[BaseException], ...],
    ) -> TusExchange | None:
        """The steps of a request to the tus endpoint, or ``None`` when the app has none
        now (a route an earlier ``init_app`` added, with other settings)."""
        from ._tus import TusExchange

        state = self._state
        prefix = state.settings.tus_prefix
        if state.tus is None or prefix is None:
            return None
        return TusExchange(
            state.tus,
            request,
            upload_id,
            prefix,
            self.url_for,
            authorize=self._tus_authorize,
            on_complete=self._tus_complete,
            passthrough=passthrough,
        )

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

    @property
    def root(self) -> str:
        """The store's root, an absolute folder path or an ``s3://`` URL."""
        root: str = self._state.store.root
        return root

    @property
    def depth(self) -> int:
        """The number of shard folders."""
        depth: int = self._state.store.depth
        return depth

    @property
    def width(self) -> int:
        """The characters per shard folder."""
        width: int = self._state.store.width
        return width

    @property
    def algorithm(self) -> str:
        """The hashlib algorithm that names stored files."""
        algorithm: str = self._state.store.algorithm
        return algorithm

    @property
    def fmode(self) -> int | None:
        """Permission bits of stored files, or ``None`` to leave them at ``0o600``."""
        fmode: int | None = self._state.store.fmode
        return fmode

    @property
    def dmode(self) -> int:
        """Permission bits of created folders."""
        dmode: int = self._state.store.dmode
        return dmode

    @property
    def max_size(self) -> int | None:
        """The largest file ``put()`` accepts, in bytes, or ``None``."""
        max_size: int | None = self._state.store.max_size
        return max_size

    @property
    def fsync(self) -> bool:
        """Whether commits are flushed to the disk."""
        fsync: bool = self._state.store.fsync
        return fsync

    def idpath(self, id: str, extension: str | None = "") -> str:
        """Return the absolute path for ``id`` with an optional extension.

        Raises:
            InvalidExtension: ``extension`` is not a safe token.
        """
        path: str = self._state.store.idpath(id, extension)
        return path

    def shard(self, id: str) -> list[str]:
        """Split ``id`` into its shard folders and file name."""
        parts: list[str] = self._state.store.shard(id)
        return parts

    def unshard(self, path: str) -> str:
        """Return the id a path inside the root names.

        Raises:
            ValueError: ``path`` is not inside the root.
        """
        id: str = self._state.store.unshard(path)
        return id

    def url_for(self, relpath: str | HashAddress, external: bool = True) -> str:
        """Return the URL of a stored file, exactly as Flask-HashFS builds it.

        ``HASHFS_HOST`` and ``HASHFS_PATH_PREFIX`` are read from the app's
        config at each call. ``external`` URLs start with ``HASHFS_HOST``, or
        the current request's host URL.

        Raises:
            ValueError: ``HASHFS_HOST`` or ``HASHFS_PATH_PREFIX`` is invalid.
        """
        app = self._current_app()
        app_state(app, self._name)
        if isinstance(relpath, HashAddress):
            relpath = relpath.relpath
        return url_for(app.config, relpath, external, self._request_host)

    if not TYPE_CHECKING:
        # Other attributes are the store's, as Flask-HashFS proxied all of
        # HashFS; hidden from type checkers so a misspelt name is reported.
        def __getattr__(self, name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return getattr(self._state.store, name)
