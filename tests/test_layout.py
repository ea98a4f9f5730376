from __future__ import annotations

import hashlib
import os

import pytest
from hashfs.utils import shard as hashfs_shard

from async_hashfs import InvalidExtension
from async_hashfs._layout import TEMP_DIRNAME, Layout, normalize_extension, split_name

ID = hashlib.sha256(b"x").hexdigest()


@pytest.mark.parametrize(
    ("extension", "stored"),
    [
        (None, ""),
        ("", ""),
        ("jpg", ".jpg"),
        (".jpg", ".jpg"),
        ("tar-gz", ".tar-gz"),
        ("c++", ".c++"),
        ("A_1", ".A_1"),
        ("x" * 32, "." + "x" * 32),
        ("tar.gz", ".tar.gz"),
        (".tar.gz", ".tar.gz"),
        ("backup.2024-01-01.tar.gz", ".backup.2024-01-01.tar.gz"),
        (".".join(["x" * 32, "y" * 31]), "." + "x" * 32 + "." + "y" * 31),
    ],
)
def test_normalize_extension_accepts_safe_tokens(extension: str | None, stored: str) -> None:
    assert normalize_extension(extension) == stored


@pytest.mark.parametrize(
    "extension",
    [
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "tar..gz",
        "tar.",
        ".tar.",
        "a.b/c",
        "gz/..",
        "a.\0",
        "*",
        "?",
        "[a]",
        "a\0",
        "x" * 33,
        "a." + "x" * 33,
        ".".join(["x" * 32, "y" * 32]),
        " jpg",
        "jpg\n",
        "é",
        "..jpg",
        123,
        b"jpg",
    ],
)
def test_normalize_extension_rejects_everything_else(extension: object) -> None:
    with pytest.raises(InvalidExtension) as info:
        normalize_extension(extension)  # type: ignore[arg-type]
    assert repr(extension) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("depth", "width"), [(0, 1), (1, 1), (4, 1), (3, 2), (2, 5), (8, 8)])
def test_shard_is_hashfs_rule(depth: int, width: int) -> None:
    layout = Layout("/store", depth, width, "sha256")
    assert layout.shard(ID) == hashfs_shard(ID, depth, width)
    assert layout.unshard(layout.relpath(ID, ".png")) == ID
    assert layout.unshard(layout.relpath(ID, ".tar.gz")) == ID


@pytest.mark.parametrize(
    ("depth", "width", "algorithm", "folders"),
    [
        (4, 1, "sha256", 4),
        (0, 2, "md5", 0),
        (4, 0, "md5", 0),
        (15, 2, "md5", 15),
        (16, 2, "md5", 15),
        (40, 2, "md5", 15),
        (11, 3, "md5", 10),
        (1, 32, "md5", 0),
    ],
)
def test_folder_depth_counts_the_folders_above_every_file(
    depth: int, width: int, algorithm: str, folders: int
) -> None:
    layout = Layout("/store", depth, width, algorithm)
    id = hashlib.new(algorithm, b"x").hexdigest()
    relpath = layout.relpath(id, ".png")
    assert layout.folder_depth == folders == relpath.count(os.sep)
    assert layout.parse_address(relpath) == (id, ".png")


@pytest.mark.parametrize(
    ("relpath", "split"),
    [
        ("a/b/cdef", ("abcdef", "")),
        ("a/b/cdef.txt", ("abcdef", ".txt")),
        ("a/b/cdef.tar.gz", ("abcdef", ".tar.gz")),
        ("cdef.tar.gz", ("cdef", ".tar.gz")),
        ("a/b/.hidden", ("ab", ".hidden")),
        ("a/b/cdef.", ("abcdef", ".")),
    ],
)
def test_split_name_cuts_at_the_first_dot(relpath: str, split: tuple[str, str]) -> None:
    assert split_name(relpath.replace("/", os.sep)) == split


def test_stored_extension_keeps_all_after_an_id_and_the_last_suffix_otherwise() -> None:
    layout = Layout("/store", 4, 1, "sha256")
    assert layout.stored_extension(layout.relpath(ID, ".tar.gz")) == ".tar.gz"
    assert layout.stored_extension(ID + ".tar.gz") == ".tar.gz"  # another depth, same id
    assert layout.stored_extension(layout.relpath(ID)) == ""
    assert layout.stored_extension("photo.v2.jpg") == ".jpg"
    assert layout.stored_extension(os.path.join("a", "notes")) == ""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"root": "relative"}, "absolute"),
        ({"root": "/a/../b"}, "normalized"),
        ({"depth": -1}, "depth must be an integer >= 0"),
        ({"width": 1.5}, "width"),
        ({"depth": True}, "depth"),
        ({"algorithm": "nope"}, "algorithm 'nope' unknown: .*sha256"),
        ({"algorithm": "shake_128"}, "fixed digest size"),
    ],
)
def test_layout_rejects_bad_settings(kwargs: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"root": "/store", "depth": 4, "width": 1, "algorithm": "md5"}
    settings.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Layout(**settings)  # type: ignore[arg-type]


def test_is_id_checks_length_and_lowercase_hex() -> None:
    layout = Layout("/store", 4, 1, "sha256")
    assert layout.is_id(ID)
    assert not layout.is_id(ID[:-1])
    assert not layout.is_id(ID.upper())
    assert not layout.is_id(ID[:-1] + "g")
    assert Layout("/store", 4, 1, "md5").is_id(hashlib.md5(b"x").hexdigest())


@pytest.mark.parametrize(
    ("ref", "inside"),
    [
        ("a/b", "a/b"),
        ("/store/a/b", "a/b"),
        ("a/../b", "b"),
        ("./a", "a"),
        ("", None),
        (".", None),
        ("/store", None),
        ("/store/", None),
        ("..", None),
        ("../store/a", "a"),
        ("../other/a", None),
        ("/store2/a", None),
        ("/etc/passwd", None),
        ("a/../../etc", None),
        ("a\0b", None),
        (f"{TEMP_DIRNAME}/x.tmp", None),
        (f"/store/{TEMP_DIRNAME}/x.tmp", None),
        (f"a/../{TEMP_DIRNAME}/x", None),
        (f"a/{TEMP_DIRNAME}/x", f"a/{TEMP_DIRNAME}/x"),
    ],
)
def test_inside_keeps_references_in_the_root(ref: str, inside: str | None) -> None:
    expected = None if inside is None else inside.replace("/", os.sep)
    assert Layout("/store", 4, 1, "sha256").inside(ref) == expected


def test_parse_address_accepts_only_content_addresses() -> None:
    layout = Layout("/store", 4, 1, "sha256")
    relpath = layout.relpath(ID, ".png")
    assert layout.parse_address(relpath) == (ID, ".png")
    assert layout.parse_address(layout.relpath(ID, ".tar.gz")) == (ID, ".tar.gz")
    assert layout.parse_address(layout.relpath(ID) + ".tar..gz") is None
    assert layout.parse_address(layout.relpath(ID) + ".") is None
    assert layout.parse_address(layout.relpath(ID)) == (ID, "")
    assert layout.parse_address(relpath.replace(os.sep, "", 1)) is None
    assert layout.parse_address(layout.relpath(ID[:-1] + "x")) is None
    assert layout.parse_address(layout.relpath(ID) + ".a*b") is None
    assert layout.parse_address(f"{TEMP_DIRNAME}/{ID}") is None
    assert layout.parse_address(ID) is None
    assert Layout("/store", 0, 1, "sha256").parse_address(ID + ".txt") == (ID, ".txt")
