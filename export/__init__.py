"""Export at the edge: result tables to CSV/Parquet (:mod:`export.tables`), a chart to PNG or HTML
(:mod:`export.png`, Bokeh + Chromium). The notebooks and the dashboard's download buttons share it;
:mod:`compute` stays pure (no file, no browser).
"""

from __future__ import annotations

from pathlib import Path

from .png import chromium_executable, png_bytes, to_html, to_png
from .tables import FORMATS, _fmt, export_all, read_table, summary, table_bytes, tables, to_csv, to_parquet

__all__ = [
    "FORMATS", "chromium_executable", "export", "export_all", "png_bytes", "read_table", "summary", "table_bytes",
    "tables", "to_csv", "to_html", "to_parquet", "to_png",
]


def export(obj, path, part: str | None = None, **png_kw) -> Path:
    """Write ``obj`` by the suffix of ``path``: ``.csv``, ``.parquet``, ``.png`` (a chart) or ``.html`` (a chart)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return to_png(obj, path, **png_kw)
    if suffix in (".html", ".htm"):
        return to_html(obj, path)
    return (to_csv if _fmt(path, None) == "csv" else to_parquet)(obj, path, part)
