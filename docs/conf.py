"""Sphinx configuration of the API reference: ``python -m sphinx -W docs docs/_build/html``.

The pages are made from the docstrings of the installed packages
(``pip install -e ".[dev]"``, as ``python3 dev.py test`` does);
``tests/test_docs.py`` builds them with warnings as errors.
"""

from __future__ import annotations

from async_hashfs import __version__

project = "async-hashfs"
author = "async-hashfs developers"
copyright = "async-hashfs developers"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # fmode=0o664, not 436
autodoc_default_options = {"members": True}
# Docstrings are written for readers of the source: "Raises:" and "Returns:"
# sections (Google style), ``code`` in double backquotes.
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# Every reference must resolve (tests/test_docs.py builds with -n -W), except
# those into other projects: their inventories would need the network.
nitpicky = True
nitpick_ignore_regex = [
    ("py:.*", r"(collections\.abc|os|typing|quart|flask|werkzeug|anyio|aiofiles|hashfs)\..*"),
    # The type variable of AsyncFileOpener (the file class it opens).
    ("py:class", r"async_hashfs\._store\.F"),
]

html_theme = "alabaster"
html_title = f"async-hashfs {release}"
