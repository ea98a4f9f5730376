"""The package version, read by the build (``tool.hatch.version``) and by ``__version__``."""

__version__ = "0.1.0.dev0"
