from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module_name", ["async_hashfs", "flask_shim"])
def test_every_name_in_all_exists(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, name


def test_hash_address_is_hashfs_own() -> None:
    import hashfs

    import async_hashfs
    import flask_shim

    assert async_hashfs.HashAddress is hashfs.HashAddress is flask_shim.HashAddress


def test_version_is_the_installed_distribution_version() -> None:
    from importlib.metadata import version

    import async_hashfs
    import flask_shim

    assert async_hashfs.__version__ == flask_shim.__version__ == version("async-hashfs")
