"""The presence cache: revalidations without a thread hop, never a 304 for a file gone."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from async_hashfs import HashAddress
from async_hashfs._http import plan_response
from async_hashfs._presence import PresenceCache, Witness, witness
from flask_shim import SyncHashFS

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no openat on Windows")


def backdate(root: Path, relpath: str) -> None:
    """Set the mtime of the root and each folder down to ``relpath`` a minute back."""
    old = time.time() - 60
    folder = root
    os.utime(folder, (old, old))
    for name in relpath.split("/")[:-1]:
        folder = folder / name
        os.utime(folder, (old, old))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.fixture
def store(root: Path) -> SyncHashFS:
    return SyncHashFS(root)


@pytest.fixture
def address(store: SyncHashFS, root: Path) -> HashAddress:
    found = store.put(b"served bytes", "png")
    backdate(root, found.relpath)
    return found


def look(store: SyncHashFS, relpath: str, **options: Any) -> tuple[dict[str, str], Witness | None]:
    """What the serving route's thread hop does for a 304: plan it and witness the file."""
    blob = store._engine.open_blob(relpath)
    assert blob is not None
    try:
        headers = plan_response("GET", {"If-None-Match": "*"}.get, blob).headers
        return headers, witness(str(store.root), relpath, blob, **options)
    finally:
        blob.close()


@pytest.fixture
def cache() -> Iterator[PresenceCache]:
    cache = PresenceCache()
    yield cache
    cache.forget()


def test_answers_revalidations_as_the_disk_path_does(
    store: SyncHashFS, address: HashAddress, cache: PresenceCache
) -> None:
    headers, found = look(store, address.relpath)
    assert found is not None
    cache.seen(address.relpath, headers, found)
    etag = f'"{address.id}"'
    lookup = {"If-None-Match": f'"x", W/{etag}'}
    assert cache.not_modified(address.relpath, "GET", lookup.get) == headers
    assert set(headers) == {"ETag", "Cache-Control", "Last-Modified"}
    assert cache.not_modified(address.relpath, "HEAD", lookup.get) == headers
    assert cache.not_modified(address.relpath, "POST", lookup.get) is None
    assert cache.not_modified("other", "GET", lookup.get) is None
    assert cache.not_modified(address.relpath, "GET", {"If-None-Match": '"x"'}.get) is None
    assert cache.not_modified(address.relpath, "GET", {}.get) is None
    with_if_match = {"If-None-Match": etag, "If-Match": '"x"'}
    assert cache.not_modified(address.relpath, "GET", with_if_match.get) is None  # 412 first
    cache.forget()
    assert cache.not_modified(address.relpath, "GET", lookup.get) is None


def change_remove(root: Path, relpath: str, tmp_path: Path) -> None:
    os.remove(root / relpath)


def change_rename_away(root: Path, relpath: str, tmp_path: Path) -> None:
    os.rename(root / relpath, tmp_path / "elsewhere")


def change_replace(root: Path, relpath: str, tmp_path: Path) -> None:
    # Deleted and put again: the address holds the bytes, but not the file seen.
    shutil.copyfile(root / relpath, tmp_path / "copy")
    os.replace(tmp_path / "copy", root / relpath)


def change_neighbour(root: Path, relpath: str, tmp_path: Path) -> None:
    # Not wrong to keep, but the cache cannot tell: it looks again.
    (root / relpath).with_name("neighbour").write_bytes(b"")


def change_rename_folder(root: Path, relpath: str, tmp_path: Path) -> None:
    top, second = relpath.split("/")[:2]
    os.rename(root / top / second, root / top / "moved")


def change_rename_top(root: Path, relpath: str, tmp_path: Path) -> None:
    top = relpath.split("/")[0]
    os.rename(root / top, root / "moved")


def change_remove_tree(root: Path, relpath: str, tmp_path: Path) -> None:
    shutil.rmtree(root / relpath.split("/")[0])


def change_swap_folder(root: Path, relpath: str, tmp_path: Path) -> None:
    # The leaf folder swapped for a copy: same names, same bytes, other inodes.
    leaf = (root / relpath).parent
    shutil.copytree(leaf, tmp_path / "leaf")
    os.rename(leaf, tmp_path / "old-leaf")
    os.rename(tmp_path / "leaf", leaf)


@pytest.mark.parametrize(
    "change",
    [
        change_remove,
        change_rename_away,
        change_replace,
        change_neighbour,
        change_rename_folder,
        change_rename_top,
        change_remove_tree,
        change_swap_folder,
    ],
)
def test_any_change_on_the_way_to_the_file_is_seen(
    store: SyncHashFS,
    address: HashAddress,
    cache: PresenceCache,
    root: Path,
    tmp_path: Path,
    change: Any,
) -> None:
    headers, found = look(store, address.relpath)
    cache.seen(address.relpath, headers, found)
    lookup = {"If-None-Match": "*"}.get
    assert cache.not_modified(address.relpath, "GET", lookup) == headers
    change(root, address.relpath, tmp_path)
    assert cache.not_modified(address.relpath, "GET", lookup) is None
    assert len(cache) == 0


def test_a_folder_changed_moments_ago_is_not_trusted(store: SyncHashFS, root: Path) -> None:
    # A later change in the same clock tick could leave the mtime as it was.
    address = store.put(b"just stored")
    assert look(store, address.relpath)[1] is None
    backdate(root, address.relpath)
    assert look(store, address.relpath)[1] is not None
    (root / address.relpath).with_name("neighbour").write_bytes(b"")
    assert look(store, address.relpath)[1] is None
    assert look(store, address.relpath, settle=0.0)[1] is not None


def test_no_witness_for_a_file_no_longer_at_its_address(
    store: SyncHashFS, address: HashAddress, root: Path, tmp_path: Path
) -> None:
    blob = store._engine.open_blob(address.relpath)
    assert blob is not None
    try:
        change_replace(root, address.relpath, tmp_path)
        backdate(root, address.relpath)
        assert witness(str(root), address.relpath, blob) is None
        os.remove(root / address.relpath)
        assert witness(str(root), address.relpath, blob) is None
    finally:
        blob.close()


def test_no_witness_through_a_symlinked_folder(
    store: SyncHashFS, address: HashAddress, root: Path, tmp_path: Path
) -> None:
    blob = store._engine.open_blob(address.relpath)
    assert blob is not None
    top = address.relpath.split("/")[0]
    try:
        os.rename(root / top, tmp_path / top)
        os.symlink(tmp_path / top, root / top)
        backdate(tmp_path, address.relpath)
        assert witness(str(root), address.relpath, blob) is None
    finally:
        blob.close()


def test_no_witness_for_an_object_store_blob() -> None:
    class S3LikeBlob:
        file = None

    assert witness("/nowhere", "ab/cd", S3LikeBlob()) is None


def test_seen_without_a_witness_keeps_nothing(cache: PresenceCache) -> None:
    cache.seen("ab/cd", {"ETag": '"abcd"'}, None)
    assert len(cache) == 0


def test_descriptors_are_shared_bounded_and_closed(store: SyncHashFS, root: Path) -> None:
    before = open_fds()
    addresses = [store.put(str(n).encode()) for n in range(40)]
    for address in addresses:
        backdate(root, address.relpath)
    depth = len(addresses[0].relpath.split("/"))  # folders held per file: the root and shards
    cache = PresenceCache(max_folders=3 * depth)
    headers, found = look(store, addresses[0].relpath)
    cache.seen(addresses[0].relpath, headers, found)
    headers, found = look(store, addresses[0].relpath)
    cache.seen(addresses[0].relpath, headers, found)  # seen twice: the same descriptors
    if before:
        assert open_fds() - before == depth
    seen = []
    for address in addresses[1:]:
        headers, found = look(store, address.relpath)
        cache.seen(address.relpath, headers, found)
        seen.append(address.relpath)
        if before:
            assert open_fds() - before <= 3 * depth
    # Past the budget everything was dropped once or more; the last file is still there.
    assert 1 <= len(cache) < len(addresses)
    assert cache.not_modified(seen[-1], "GET", {"If-None-Match": "*"}.get) is not None
    cache.forget()
    if before:
        assert open_fds() == before
    _, found = look(store, addresses[0].relpath)
    assert found is not None
    del found  # an unclaimed witness closes its descriptors
    if before:
        assert open_fds() == before
