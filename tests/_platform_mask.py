"""A pytest plugin that hides what Windows and macOS lack, before the store is imported.

Importing this module changes nothing. Loaded as a plugin with
``-p tests._platform_mask`` (see :func:`mask_arguments`), it makes ``import
fcntl`` fail, removes ``os.O_TMPFILE`` and ``os.pread`` and empties
``os.supports_dir_fd``, so the store's fallbacks run on Linux: named temp
files without ``flock``, reads without ``pread``, and folders reached by path
rather than by descriptor, as on Windows. ``tests/test_platforms.py`` runs the
store tests this way.
"""

from __future__ import annotations

import os
import sys

import pytest

#: Set in the masked run, so that its own subprocesses mask too.
MASK_VARIABLE = "ASYNC_HASHFS_TEST_MASKED"
#: What the mask takes away.
MASKED = ("fcntl", "os.O_TMPFILE", "os.pread", "os.supports_dir_fd")


def mask_arguments() -> list[str]:
    """The pytest arguments that load this plugin."""
    return ["-p", __name__]


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests() -> None:
    """Mask before ``tests/conftest.py`` (the first to import the store) is loaded."""
    for name in ("async_hashfs", "flask_shim"):
        if name in sys.modules:
            raise RuntimeError(f"{name} was imported before the platform mask")
    sys.modules["fcntl"] = None  # type: ignore[assignment]  # import fcntl now fails
    for name in ("O_TMPFILE", "pread"):
        if hasattr(os, name):
            delattr(os, name)
    os.supports_dir_fd.clear()
    os.environ[MASK_VARIABLE] = "1"
