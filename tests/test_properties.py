"""Property tests: the address is the hash of the bytes, whatever the chunking."""

from __future__ import annotations

import hashlib
import os
import tempfile

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_hashfs import AsyncHashFS, SyncHashFS
from async_hashfs._layout import Layout

from .conftest import temp_files

chunk_lists = st.lists(st.binary(max_size=3000), max_size=20)
_EXTENSION = r"\.?[A-Za-z0-9_+\-]{1,8}(\.[A-Za-z0-9_+\-]{1,4}){0,2}"
extensions = st.one_of(st.none(), st.from_regex(_EXTENSION, fullmatch=True))
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(chunks=chunk_lists, extension=extensions)
def test_sync_put_address_is_hash_and_round_trips(
    chunks: list[bytes], extension: str | None
) -> None:
    data = b"".join(chunks)
    with tempfile.TemporaryDirectory() as root:
        fs = SyncHashFS(root, depth=2, width=2)
        address = fs.put(iter(chunks), extension)
        assert address.id == hashlib.sha256(data).hexdigest()
        with fs.open(address.id) as file:
            assert file.read() == data
        assert fs.put(data, extension).is_duplicate
        assert fs.get(address.relpath) == address
        assert temp_files(root) == []


@fast
@given(chunks=chunk_lists, extension=extensions, backend=st.sampled_from(["asyncio", "trio"]))
def test_async_put_address_is_hash_and_round_trips(
    chunks: list[bytes], extension: str | None, backend: str
) -> None:
    data = b"".join(chunks)

    async def source():  # type: ignore[no-untyped-def]
        for chunk in chunks:
            yield chunk

    async def check(fs: AsyncHashFS) -> None:
        address = await fs.put(source(), extension)
        assert address.id == hashlib.sha256(data).hexdigest()
        async with fs.open(address.id) as file:
            assert await file.read() == data
        assert await fs.verify(address.abspath)

    with tempfile.TemporaryDirectory() as root:
        anyio.run(check, AsyncHashFS(root), backend=backend)


@fast
@given(
    data=st.binary(max_size=64),
    depth=st.integers(0, 8),
    width=st.integers(1, 4),
    algorithm=st.sampled_from(["md5", "sha1", "sha256", "sha512", "blake2s"]),
    extension=extensions,
)
def test_layout_round_trip(
    data: bytes, depth: int, width: int, algorithm: str, extension: str | None
) -> None:
    from async_hashfs._layout import normalize_extension

    layout = Layout("/root", depth, width, algorithm)
    id = hashlib.new(algorithm, data).hexdigest()
    ext = normalize_extension(extension)
    relpath = layout.relpath(id, ext)
    assert layout.unshard(relpath) == id
    assert layout.inside(relpath) == relpath
    assert layout.parse_address(relpath) == (id, ext)


@fast
@given(ref=st.text(alphabet=st.sampled_from("ab./\\\0*?~-"), max_size=30))
def test_inside_never_leaves_the_root(ref: str) -> None:
    relpath = Layout("/root/store", 4, 1, "sha256").inside(ref)
    if relpath is not None:
        full = os.path.normpath(os.path.join("/root/store", relpath))
        assert full.startswith("/root/store/")
        assert not relpath.startswith(".hashfs-tmp")
        assert "\0" not in relpath
