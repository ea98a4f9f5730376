"""What both demos keep about an upload: the ``uploads`` table and its JSON.

The store keeps bytes under their hash; this row keeps what a person knows the
file by. Several rows may name one content id: the same bytes uploaded under
two names are two rows and one stored file. ``quart_app`` uses the table
through SQLAlchemy's asyncio ORM, ``flask_app`` through Flask-SQLAlchemy.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from sqlalchemy import DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from async_hashfs import HashAddress


class Base(DeclarativeBase):
    pass


class Upload(Base):
    """One upload: its original name, type, size and time, and the content id it stored."""

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    content_id: Mapped[str] = mapped_column(String(128), index=True)
    relpath: Mapped[str] = mapped_column(String(255))
    #: The tus upload's id: its completion hook may run more than once, one row only.
    upload_id: Mapped[str | None] = mapped_column(String(64), unique=True)

    @classmethod
    def of(
        cls,
        address: HashAddress,
        name: str | None,
        type: str | None,
        size: int,
        upload_id: str | None = None,
    ) -> Upload:
        """The row for ``address`` as the client named and typed it (a type guessed if not)."""
        name = os.path.basename((name or "").replace("\\", "/"))[:255] or address.id[:12]
        return cls(
            name=name,
            type=type or mimetypes.guess_type(name)[0] or "application/octet-stream",
            size=size,
            created=datetime.now(timezone.utc),
            content_id=address.id,
            relpath=address.relpath,
            upload_id=upload_id,
        )

    def as_json(self, url: str) -> dict[str, Any]:
        """The row for the page; ``url`` is the stored file's, downloads add its name."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "size": self.size,
            "created": self.created.replace(tzinfo=timezone.utc).isoformat(),
            "content_id": self.content_id,
            "download_url": f"{url}?download={quote(self.name, safe='')}",
        }

    def as_shown(self, url: str) -> dict[str, Any]:
        """:meth:`as_json`, plus the size and time as the page words them."""
        created = self.created.replace(tzinfo=timezone.utc)
        return {
            **self.as_json(url),
            "size_text": human(self.size),
            "created_text": created.strftime("%Y-%m-%d %H:%M UTC"),
        }


def listing(
    rows: Iterable[Upload], stored: int, url_of: Callable[[Upload], str]
) -> dict[str, Any]:
    """What ``templates/_files.html`` shows: the rows (newest first) and how many there are.

    ``stored`` is how many stored files the rows name; ``url_of(row)`` the URL of a row's file.
    """
    files = [row.as_shown(url_of(row)) for row in rows]
    names = len(files)
    count = (
        f"({names} name{'' if names == 1 else 's'},"
        f" {stored} stored file{'' if stored == 1 else 's'})"
    )
    return {"files": files, "stored": stored, "count_text": count}


def deleted_text(name: str, removed: list[str]) -> str:
    """What the page says after a delete (the script says the same)."""
    return f"Deleted {name}" + ("; its bytes were removed" if removed else "")


def swept_text(removed: list[str]) -> str:
    """What the page says after a clean-up (the script says the same)."""
    return f"Clean-up removed {len(removed)} file{'' if len(removed) == 1 else 's'}"


def missing_text(id: int) -> str:
    """The error for a row that is not there (deleted already, maybe in another tab)."""
    return f"there is no file number {id} (deleted already?)"


def cross_site(headers: Any, host_url: str) -> bool:
    """Whether a form was posted from a page of another site (refused: CSRF).

    Browsers say so in ``Sec-Fetch-Site``; older ones send ``Origin`` with a POST.
    A request with neither (curl, a test client) is not a browser's cross-site one.
    """
    site = headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("Origin")
    return origin is not None and origin != host_url.rstrip("/")


def secret_key() -> bytes:
    """``DEMO_SECRET_KEY``, else a new key at each start (it signs only one-time notices)."""
    key = os.environ.get("DEMO_SECRET_KEY")
    return key.encode() if key else os.urandom(32)


def human(size: float) -> str:
    """Return ``size`` bytes in binary units, as the page shows them: 1536 -> "1.5 KiB"."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.0f} B" if i == 0 else f"{size:.1f} {units[i]}"


def grace_seconds() -> float:
    """``DEMO_SWEEP_GRACE``: how old an unnamed stored file must be before a sweep removes it.

    A file is stored before its row is written (a tus upload's last byte, then
    the hook): the grace keeps a sweep running in between from removing it.
    """
    return float(os.environ.get("DEMO_SWEEP_GRACE", 300))


def store_config(root: str | None, default_root: str) -> dict[str, Any]:
    """The store's settings for a demo: environment variables, else the demo's defaults."""
    return {
        "HASHFS_ROOT_FOLDER": root or os.environ.get("HASHFS_ROOT_FOLDER", default_root),
        "HASHFS_PATH_PREFIX": "/files",
        "HASHFS_MAX_SIZE": int(os.environ.get("HASHFS_MAX_SIZE", 1 << 30)),
        "HASHFS_SERVE": True,  # the extension serves /files/<relpath>?download=<name>
        "HASHFS_TUS_PREFIX": "/tus",  # resumable uploads (tus 1.0), Uppy's Tus plugin
    }


def database_path(database: str | None, root: str) -> str:
    """``DEMO_DATABASE``, else a SQLite file beside (never inside) the store's folder."""
    return os.path.abspath(
        database or os.environ.get("DEMO_DATABASE") or f"{root.rstrip('/')}.sqlite3"
    )


def page_context(config: Any, title: str) -> dict[str, Any]:
    """What ``templates/index.html`` shows: the limits the page checks before sending."""
    max_size = config["HASHFS_MAX_SIZE"]
    return {
        "title": title,
        "max_size": max_size,
        "max_size_text": human(max_size),
        "tus_endpoint": config["HASHFS_TUS_PREFIX"],  # tus creates uploads here
        "grace_text": f"{grace_seconds():g} s",
    }
