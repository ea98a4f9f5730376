"""``python -m async_hashfs``: the ``async-hashfs`` command line."""

from ._cli import cli

if __name__ == "__main__":
    cli()
