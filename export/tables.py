"""Result tables to files and bytes: profile levels, footprints and candles as CSV or Parquet.

:func:`tables` names the tables of a result:

* :class:`~compute.result.ProfileResult` (every profile kind) -> ``levels``
  (``price_low, price_high, volume, buy, sell, delta, trades`` + the kind's columns);
* :class:`~compute.levels.DevelopingResult` -> ``levels`` and ``developing``;
* :class:`~compute.footprint.FootprintResult` -> ``candles``, ``cells``, ``stacked``, ``levels``;
* a pandas DataFrame (candles, trades, ...) -> ``data``.

CSV keeps every float exactly (shortest round-trip text, read back exactly by
:func:`read_table`). Parquet additionally keeps
the dtypes and the result's summary (POC, VAH, VAL, totals, settings) as
``DataFrame.attrs["flowlens"]``, which pandas stores in the file's metadata.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FORMATS", "export_all", "read_table", "summary", "table_bytes", "tables", "to_csv", "to_parquet"]

#: Table formats by file suffix.
FORMATS = ("csv", "parquet")
#: Key of the summary in ``DataFrame.attrs`` (and so in the Parquet metadata).
ATTRS_KEY = "flowlens"


# -- tables -------------------------------------------------------------------------------
def tables(obj) -> dict[str, pd.DataFrame]:
    """The named tables of a result (see the module docstring). Raises TypeError for other objects."""
    from compute.footprint import FootprintResult
    from compute.levels import DevelopingResult
    from compute.result import ProfileResult

    if isinstance(obj, ProfileResult):
        return {"levels": obj.levels}
    if isinstance(obj, DevelopingResult):
        return {"levels": obj.levels, "developing": obj.developing}
    if isinstance(obj, FootprintResult):
        return {"candles": obj.candles, "cells": obj.cells, "stacked": obj.stacked, "levels": obj.levels}
    if isinstance(obj, pd.DataFrame):
        return {"data": obj}
    raise TypeError(f"cannot export {type(obj).__name__}: expected a profile, footprint, developing result or DataFrame")


def _plain(x):
    """JSON-able copy (numpy scalars to Python, NaN to None)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def summary(obj) -> dict | None:
    """The JSON-able summary values of a result (None for a DataFrame)."""
    from compute.footprint import FootprintResult

    if isinstance(obj, FootprintResult):
        d = {k: v for k, v in obj.to_dict().items() if k not in ("candles", "cells", "stacked", "levels")}
        return _plain({"kind": "footprint", **d})
    if hasattr(obj, "summary") and callable(obj.summary):
        return _plain(obj.summary())
    return None


def _table(obj, part: str | None) -> tuple[str, pd.DataFrame]:
    t = tables(obj)
    if part is None:
        part = "cells" if "cells" in t else next(iter(t))
    if part not in t:
        raise ValueError(f"{type(obj).__name__} has no table {part!r}; tables: {sorted(t)}")
    return part, t[part]


def _fmt(path, fmt: str | None) -> str:
    f = (fmt or Path(path).suffix.lstrip(".")).lower()
    if f == "pq":
        f = "parquet"
    if f not in FORMATS:
        raise ValueError(f"unknown table format {f!r} (from {path}); expected one of {FORMATS}")
    return f


def _write(df: pd.DataFrame, target, fmt: str, meta: dict | None) -> None:
    if fmt == "csv":
        df.to_csv(target, index=False)
    else:
        df = df.copy()
        df.attrs = {ATTRS_KEY: meta} if meta is not None else {}
        df.to_parquet(target, index=False, engine="pyarrow")


def to_csv(obj, path, part: str | None = None) -> Path:
    """Write one table of ``obj`` as CSV (header, no index, exact floats); returns the path.

    ``part`` names the table (default: ``cells`` for a footprint, else the first).
    Raises TypeError/ValueError for an unknown object or part.
    """
    _, df = _table(obj, part)
    path = Path(path)
    _write(df, path, "csv", None)
    return path


def to_parquet(obj, path, part: str | None = None, extra: dict | None = None) -> Path:
    """Write one table of ``obj`` as Parquet with the result's summary in ``attrs["flowlens"]``; returns the path.

    ``extra`` (JSON-able) is added to that summary, e.g. ``{"coverage": Coverage.to_dict()}``: the trade-id
    range, gaps and hash of the trades the result was computed from (:mod:`compute.coverage`)."""
    name, df = _table(obj, part)
    path = Path(path)
    _write(df, path, "parquet", _meta(obj, name, extra))
    return path


def _meta(obj, name: str, extra: dict | None) -> dict | None:
    meta = summary(obj)
    if meta is None and not extra:
        return None
    return {**(meta or {}), "table": name, **(extra or {})}


def export_all(obj, folder, stem: str, formats=FORMATS) -> dict[str, Path]:
    """Write every table of ``obj`` in every format as ``folder/<stem>-<table>.<fmt>``; returns ``{"table.fmt": path}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in tables(obj):
        for fmt in formats:
            p = folder / f"{stem}-{name}.{_fmt('x.' + fmt, fmt)}"
            (to_csv if fmt == "csv" else to_parquet)(obj, p, name)
            out[f"{name}.{fmt}"] = p
    return out


def table_bytes(obj, fmt: str = "csv", part: str | None = None, extra: dict | None = None) -> bytes:
    """One table of ``obj`` as CSV or Parquet bytes (for a download button); ``extra`` as :func:`to_parquet`
    (Parquet only: a CSV holds the table alone)."""
    name, df = _table(obj, part)
    f = _fmt("x." + fmt, fmt)
    if f == "csv":
        return df.to_csv(index=False).encode()
    buf = io.BytesIO()
    _write(df, buf, f, _meta(obj, name, extra))
    return buf.getvalue()


def read_table(path) -> pd.DataFrame:
    """Read a table written by this module (CSV with exact floats, or Parquet with its ``attrs``)."""
    path = Path(path)
    if _fmt(path, None) == "csv":
        # pandas >= 3 parses floats round-trip by default (and deprecates the option)
        kw = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
        return pd.read_csv(path, **kw)
    df = pd.read_parquet(path, engine="pyarrow")
    if ATTRS_KEY in df.attrs and isinstance(df.attrs[ATTRS_KEY], str):
        df.attrs[ATTRS_KEY] = json.loads(df.attrs[ATTRS_KEY])
    return df


# -- charts ---------------------------------------------------------------------------------
