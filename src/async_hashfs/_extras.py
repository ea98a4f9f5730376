"""Optional dependencies: whether an extra is installed, and the error when it is not."""

from __future__ import annotations

import importlib.util

__all__ = ["available", "missing_extra"]


def available(module: str) -> bool:
    """Return whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(module: str, extra: str, what: str) -> ModuleNotFoundError:
    """The error for ``what`` used without its extra: it says what to install."""
    return ModuleNotFoundError(
        f'{what} needs {module}, which is not installed: pip install "async-hashfs[{extra}]"',
        name=module,
    )
