"""The optional parts of flowlens and the pyproject extra that installs each.

``make serve`` (``pip install -e .``) installs what the page, the REST API and ingest need. The research
stack (Dask, ``distributed``) is the ``research`` extra, the PNG export (Playwright) the ``export`` extra;
``make lab`` installs both and ``make test`` everything. A part that needs a missing extra says which one
instead of failing with a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

#: Top-level module -> the extra that installs it.
EXTRAS = {"dask": "research", "distributed": "research", "playwright": "export"}


def hint(module: str, needed_by: str) -> str:
    """The message for a missing ``module``: what needs it and the command that installs its extra."""
    top = module.split(".")[0]
    extra = EXTRAS[top]
    return (f"{needed_by} needs {top}, in flowlens's {extra!r} extra: pip install -e '.[{extra}]' "
            f"(make lab installs the research and export extras)")


def need(module: str, needed_by: str) -> ModuleType:
    """Import ``module`` (a key of :data:`EXTRAS` or a submodule of one) and return it.

    Raises
    ------
    ImportError
        The module is not installed; the message names the extra (:func:`hint`).
    KeyError
        ``module`` belongs to no extra.
    """
    top = module.split(".")[0]
    if top not in EXTRAS:
        raise KeyError(f"{top!r} is in no flowlens extra")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != top:  # the extra is there, something it imports is not
            raise
        raise ImportError(hint(module, needed_by), name=top) from e


def missing(module: str, needed_by: str) -> str | None:
    """:func:`hint` when ``module`` cannot be found, else None (nothing is imported)."""
    try:
        found = importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules (blocked) or a broken spec
        found = False
    return None if found else hint(module, needed_by)
