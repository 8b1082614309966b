"""The notebooks are stored with their outputs, from one clean top-to-bottom run (``make notebooks``).

A researcher browsing ``notebooks/`` sees the tables and charts without running anything; ``make test``
still executes every notebook (nbval), this only checks what is stored in git.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 5, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_with_the_outputs_of_one_clean_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    # one run, top to bottom, every cell once: 1, 2, ..., n
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: execution counts {counts}; run `make notebooks`"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], f"{path.name} was stored with an error"
    # every notebook draws at least one chart (a Bokeh document in an HTML output)
    charts = [o for o in outputs if "bokeh" in str(o.get("data", {}).get("text/html", "")).lower()]
    assert charts, f"{path.name} has no stored chart"
    text = "".join(str(o) for o in outputs)
    assert "Traceback" not in text
    assert "/work/" not in text and "/home/" not in text, f"{path.name} shows a local path"
