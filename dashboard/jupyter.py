""""Open in Jupyter": a code cell that rebuilds the page's view in a notebook, and proves it used the same trades.

:func:`notebook_cell` writes Python for the research API (:class:`engine.research.LiveData`): it reads the very
trades of the view's range from the server's Redis, checks their hash against the one the page computed
(:func:`compute.coverage.coverage`: same ids, times, prices, quantities and sides), recomputes the view's result
with the same query (kind, row size, value area and the kind's own parameters) and checks its POC, VAH and VAL
against the page's. The Redis URL is read from ``REDIS_URL`` in the notebook: no secret is ever on the page.
"""

from __future__ import annotations

from compute.coverage import Coverage

#: Parameters of a profile result carried over into the cell (those the kind takes).
_CARRIED = ("value_area", "value_area_method")


def notebook_cell(res, symbol: str, market: str, cov: Coverage) -> str:
    """The code cell (text) that rebuilds ``res`` (a ProfileResult the page shows) of ``symbol`` on ``market``.

    ``cov`` is the coverage (with its SHA-256) of the trades of ``[res.start, res.end)`` the page computed from.
    """
    params = [f"row_size={res.row_size!r}", f"tick={res.tick!r}", f"start={int(res.start)}", f"end={int(res.end)}"]
    params += [f"{k}={getattr(res, k)!r}" for k in _CARRIED]
    if res.percentiles:
        params.append(f"percentiles={tuple(float(p) for p in res.percentiles)!r}")
    extra = res.extra or {}
    if res.kind == "recency" and extra.get("half_life_s"):
        params.append(f"half_life_s={float(extra['half_life_s'])!r}")
    if res.kind == "tpo" and extra.get("tpo_block_ms"):
        params.append(f"block_ms={int(extra['tpo_block_ms'])}")
    args = ", ".join(params)
    return f'''# flowlens: the page's {res.kind} profile of {symbol} ({market}), rebuilt from the same trades
import os

from compute.coverage import coverage
from engine.research import LiveData

live = LiveData(os.environ["REDIS_URL"], market={market!r})  # the server's Redis (REDIS_URL: never shown on the page)
trades = live.trades({symbol!r}, since={int(res.start)}, until={int(res.end)})
cov = coverage(trades)
assert cov.sha256 == {cov.sha256!r}, "not the trades the page used (retention passed, or another server)"
res = live.profile({symbol!r}, {res.kind!r}, since={int(res.start)}, until={int(res.end)}, {args})
assert (res.poc, res.vah, res.val) == ({res.poc!r}, {res.vah!r}, {res.val!r})
print(f"{{cov.summary()}}: POC {{res.poc}} VAH {{res.vah}} VAL {{res.val}}, identical to the page")
res.levels
'''
