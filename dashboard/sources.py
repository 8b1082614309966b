"""ColumnDataSource helpers shared by the chart, the profile layer and the footprint.

:func:`empty` gives the empty columns a source starts with; :func:`update_source`
is the one way the page changes a source's rows: the whole column dict is
replaced (never patched in place), and nothing is sent when nothing changed.
"""

from __future__ import annotations

import numpy as np
from bokeh.models import ColumnDataSource


def empty(cols) -> dict:
    """Empty columns (one list each) for the column names ``cols``."""
    return {c: [] for c in cols}


def _changed_rows(old, new) -> np.ndarray:
    """Indices of the rows that differ between two equal-length columns (NaN equals NaN)."""
    a, b = np.asarray(old), np.asarray(new)
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        same = (a == b) | (np.isnan(a) & np.isnan(b))
    elif a.dtype.kind in "iub" and b.dtype.kind in "iub":
        same = a == b
    else:
        same = np.asarray(a, dtype=object) == np.asarray(b, dtype=object)
    return np.flatnonzero(~same)


def _own(v):
    """A copy the session's source owns (the given columns may be shared between sessions)."""
    return np.array(v) if isinstance(v, np.ndarray) else list(v)


def update_source(src: ColumnDataSource, data: dict) -> None:
    """Give ``src`` the columns ``data`` as a new dict of its own copies, or send nothing when nothing changed.

    Never a partial update or a row patch: Bokeh serializes a data change when it writes
    the message, from the source's columns *at that time*, so a later in-place change
    (``patch``, ``data.update``) can reach the browser inside an earlier message and leave
    its columns with different lengths (BokehJS "Size mismatch", DataView errors). A dict
    that is replaced whole and never mutated cannot be torn.
    """
    old = src.data
    n_new = len(next(iter(data.values()))) if data else 0
    n_old = len(next(iter(old.values()))) if old else 0
    if n_new == n_old and set(old) == set(data) and not any(len(_changed_rows(old[k], v)) for k, v in data.items()):
        return
    src.data = {k: _own(v) for k, v in data.items()}
