"""compute.kinds and compute.query: each kind defined once, every engine of a kind agrees, one query one key.

The engines are compared on real trades (the bundled BTCUSDT recording) by looping over the
registry, so a kind added to it is checked here without a new test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from compute.dask import as_dask
from compute.incremental import ProfileStore
from compute.kinds import KINDS, PROFILE_KINDS, kind
from compute.query import ProfileQuery
from feeds.readers import read_trades

ROOT = Path(__file__).resolve().parents[2]
TICK = 0.01


@pytest.fixture(scope="module")
def hour(recording_path):
    b = read_trades(recording_path)
    return b.time_slice(int(b.time[0]), int(b.time[0]) + 3_600_000)


def _params(k, hour) -> dict:
    """Each kind's query parameters for the hour: 50 ticks a row, or the hour's price range for the grid."""
    if k.rows:
        return {"ticks_per_row": 50}
    if "price_low" in k.params.names():
        return {"price_low": float(hour.price.min()), "price_high": float(hour.price.max()), "width": 60, "height": 40}
    return {}


def _same(a, b) -> None:
    if hasattr(a, "dims"):  # the heat-map (xarray): same grid and filled cells; sums to float rounding
        np.testing.assert_array_equal(a.coords["time"].values, b.coords["time"].values)
        np.testing.assert_array_equal(a.coords["price"].values, b.coords["price"].values)
        np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
        np.testing.assert_allclose(a.values, b.values, rtol=1e-12, atol=1e-9)
    else:  # the rest are exact (integer sums): equal to the last digit
        assert a.to_dict() == b.to_dict()


@pytest.mark.parametrize("name", list(KINDS))
def test_every_engine_of_a_kind_gives_the_same_result(name, hour):
    k = KINDS[name]
    start, end = int(hour.time[0]) + 600_000, int(hour.time[0]) + 3_000_000
    q = ProfileQuery.of(name, start, end, symbol="BTCUSDT", **_params(k, hour))
    want = q.run(hour, TICK)
    if k.incremental is not None:
        store = ProfileStore(TICK, symbol="BTCUSDT")
        store.update(hour)
        _same(k.run_incremental(store, start, end, q.values, hour.time_slice(start, end)), want)
    if k.dask is not None:
        _same(k.run_dask(as_dask(hour.to_frame(), npartitions=4), TICK, start, end, q.values), want)


def test_one_query_one_key_and_clear_refusals():
    a = ProfileQuery.of("tpo", 0, 60_000, symbol="btcusdt", tick=TICK, row_size=0.5)
    b = ProfileQuery.of("tpo", 0, 60_000, symbol="BTCUSDT", ticks_per_row=50, block_ms=None, value_area=0.7)
    assert a == b and a.key() == b.key() and hash(a) == hash(b)
    assert a.key() != a.with_range(0, 120_000).key()
    for params, word in (({"row_size": 0.005}, "whole number of ticks"), ({"block_ms": 0}, "block_ms"),
                         ({"half_life_s": 60}, "half_life_s"), ({"value_area": 0.99}, "value_area")):
        with pytest.raises(ValueError, match=word):
            ProfileQuery.of("tpo", 0, 60_000, tick=TICK, **params)
    with pytest.raises(ValueError, match="kind must be one of"):
        ProfileQuery.of("ichimoku", 0, 1)
    with pytest.raises(ValueError, match="empty range"):
        ProfileQuery.of("volume", 5, 5)


def test_the_page_the_cli_and_the_api_offer_every_profile_kind():
    from cli.compute_cli import build_parser
    from dashboard.settings import MODES, kind_of_mode
    from service.api import VpvrHandler

    assert {kind_of_mode(m) for m in MODES} == set(PROFILE_KINDS)
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    kind_action = next(a for a in sub.choices["profile"]._actions if a.dest == "kind")
    assert tuple(kind_action.choices) == PROFILE_KINDS
    assert "kind" in VpvrHandler.PARAMS and kind("split").profile and not kind("footprint").profile


def _kind_literals(path: Path) -> list[str]:
    """Literal tuples/lists/sets/dicts (and ``in (...)`` tests) naming two or more profile kinds."""
    out = []
    tree = ast.parse(path.read_text())
    skip = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)}
    for n in ast.walk(tree):
        if id(n) in skip:
            continue
        if isinstance(n, ast.Tuple | ast.List | ast.Set):
            elts = n.elts
        elif isinstance(n, ast.Dict):
            elts = [k for k in n.keys if k is not None] + list(n.values)
        else:
            continue
        found = {e.value for e in elts if isinstance(e, ast.Constant) and e.value in PROFILE_KINDS}
        if len(found) >= 2:
            out.append(f"{path.relative_to(ROOT)}:{n.lineno}: {sorted(found)}")
    return out


def test_no_module_lists_the_kinds_but_the_registry():
    """The kind names are listed once, in compute/kinds.py: the API, the CLI, the page, the engines read it."""
    found = []
    skip = {".venv", "tests", "benchmarks", "artifacts", ".git", "data", "notebooks"}
    tops = [p for p in ROOT.iterdir() if p.is_dir() and p.name not in skip and not p.name.startswith(".")]
    for path in sorted([*ROOT.glob("*.py"), *(f for top in tops for f in top.rglob("*.py"))]):
        rel = path.relative_to(ROOT)
        if rel == Path("compute/kinds.py"):
            continue
        found += _kind_literals(path)
    assert not found, "kinds listed outside compute/kinds.py:\n" + "\n".join(found)
