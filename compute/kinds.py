"""The registry of result kinds: each kind is defined here once, and only here.

A :class:`Kind` says what a result is (its parameters, as a :mod:`param` class with
bounds and docs) and how each engine computes it:

* ``compute(trades, tick, start, end, **p)`` — the in-memory function of :mod:`compute`
  on the trades of ``[start, end)`` (a :class:`~compute.batch.TradeBatch` or DataFrame);
* ``incremental(store, start, end, **p)`` — the same result from the pre-summed buckets of
  a :class:`compute.incremental.ProfileStore` (identical bit for bit), or None when the
  kind needs the raw trades;
* ``dask`` — the name of the function of :mod:`compute.dask` that gives the same result
  over a Dask DataFrame (imported only when asked for: Dask is a research extra).

``p`` are the engine functions' keyword arguments (``row_size`` in quote currency and the
kind's own ones, named as in those functions). A :class:`compute.query.ProfileQuery`
holds the kind's parameters with the row size as an integer number of ticks; it turns them
into ``p`` for a given tick (:meth:`Kind.engine_params`).

Every list of kinds elsewhere (the REST API, the CLI, the page's modes, the research
client, the Dask dispatcher, the incremental store, the shared cache) is read from
:data:`KINDS` (``PROFILE_KINDS`` for those that return a
:class:`~compute.result.ProfileResult`).

The additive kinds follow datashader's partial → combine → finalize shape: a partition of
trades is reduced to per-row integer sums (:func:`compute.result.bin_rows`), sums of
partitions add exactly (integer addition is order-free), and the summary (POC, value area,
percentiles) is taken once from the total (:func:`compute.result.build_result`). The
incremental store keeps those partials per bucket and block; Dask keeps them per partition.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import param

from .footprint import footprint
from .grid import ticks_per_row
from .heatmap import AGGS, heatmap
from .levels import developing_levels
from .profile import volume_profile
from .result import DEFAULT_PERCENTILES, VA_METHODS, VALUE_AREA_MAX, VALUE_AREA_MIN, check_percentiles
from .sessions import SESSION_LENGTHS, parse_session_start, session_profiles, sessions_from_store
from .split import split_profile
from .timeweighted import recency_profile, tpo_profile
from .vwap import DEFAULT_BANDS, vwap

__all__ = ["KINDS", "PROFILE_KINDS", "Kind", "KindParams", "kind", "row_price"]

#: Largest row size in ticks a query may ask for.
MAX_TICKS_PER_ROW = 10**9


def row_price(ticks_per_row: int, tick: float) -> float:
    """Row size in quote currency of ``ticks_per_row`` ticks of ``tick`` (rounded to 12 decimals, so
    ``3 × 0.1`` is ``0.3``). Prices are made only here, at the edge of the engines."""
    return round(int(ticks_per_row) * float(tick), 12)


class KindParams(param.Parameterized):
    """Parameters of a kind. Subclasses add the kind's own; the names are the engine functions' names.

    :meth:`validated` checks values against the bounds and returns them normalised, so two
    queries that mean the same thing (a default given or left out) hold the same values.
    """

    @classmethod
    @functools.cache  # noqa: B019 - one entry per class; a class's parameters do not change
    def names(cls) -> tuple[str, ...]:
        """The parameter names, sorted (``name`` excluded)."""
        return tuple(sorted(n for n in cls.param if n != "name"))

    @classmethod
    def validated(cls, **values) -> dict[str, Any]:
        """All parameters, defaults filled in, checked against their bounds.

        Raises
        ------
        ValueError
            An unknown parameter, or a value out of bounds or of the wrong type.
        """
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; this kind takes {', '.join(cls.names())}")
        values = {k: list(v) if isinstance(v, tuple) and isinstance(cls.param[k], param.List) else v
                  for k, v in values.items()}
        try:
            p = cls(**values)
        except (TypeError, ValueError) as e:
            raise ValueError(str(e)) from None
        out = {n: getattr(p, n) for n in cls.names()}
        return cls.normalise(out)

    @classmethod
    def normalise(cls, values: dict) -> dict:
        """Turn validated values into hashable, canonical ones: lists become tuples, numbers of a
        :class:`param.Number` (not Integer) floats (override to add checks)."""
        out = {}
        for k, v in values.items():
            p = cls.param[k]
            if isinstance(v, list):
                v = tuple(v)
            elif v is not None and isinstance(p, param.Number) and not isinstance(p, param.Integer):
                v = float(v)
            out[k] = v
        return out


class RowParams(KindParams):
    """The row grid every price-binned kind shares."""

    ticks_per_row = param.Integer(default=1, bounds=(1, MAX_TICKS_PER_ROW),
                                  doc="Row size as a whole number of ticks (row size = ticks_per_row × tick).")


class ProfileParams(RowParams):
    """A volume profile's value area and percentile lines (definitions in :mod:`compute.result`)."""

    value_area = param.Number(default=0.7, bounds=(VALUE_AREA_MIN, VALUE_AREA_MAX),
                              doc="Fraction of the volume inside the value area.")
    value_area_method = param.Selector(default="single", objects=list(VA_METHODS),
                                       doc="single (CBOT: one row at a time) or dual (Dalton: two rows at a time).")
    percentiles = param.List(default=list(DEFAULT_PERCENTILES), bounds=(0, 20),
                             doc="Percentile lines of the cumulative volume, each in [0, 1].")

    @classmethod
    def normalise(cls, values: dict) -> dict:
        values = super().normalise(values)
        values["percentiles"] = check_percentiles(values["percentiles"])
        return values


class RecencyParams(ProfileParams):
    """Recency weighting ``qty · 2^(-age / half_life)`` (:func:`compute.timeweighted.recency_profile`)."""

    half_life_s = param.Number(default=None, allow_None=True, bounds=(0.001, 30 * 86400),
                               doc="Half-life in seconds; None = a quarter of the range.")


class TpoParams(ProfileParams):
    """TPO block length (:func:`compute.timeweighted.tpo_profile`)."""

    block_ms = param.Integer(default=None, allow_None=True, bounds=(1, 7 * 86_400_000),
                             doc="TPO period in ms; None = automatic (at most 60 blocks in the range).")


class DevelopingParams(ProfileParams):
    """Developing POC/VAH/VAL sampled at each candle close (:func:`compute.levels.developing_levels`)."""

    candle_ms = param.Integer(default=60_000, bounds=(1, 7 * 86_400_000), doc="Candle length (ms).")


class FootprintParams(RowParams):
    """Footprint candles (:func:`compute.footprint.footprint`; definitions in its module docstring)."""

    interval_ms = param.Integer(default=60_000, bounds=(1, 7 * 86_400_000), doc="Candle length (ms).")
    imbalance_ratio = param.Number(default=3.0, bounds=(1.0, 1e6), doc="Diagonal imbalance ratio (3.0 = 300 %).")
    ignore_zeros = param.Boolean(default=True, doc="A zero on the compared side creates no imbalance.")
    min_volume = param.Number(default=0.0, bounds=(0.0, None), doc="Least volume (base asset) of an imbalanced side.")
    stacked_min = param.Integer(default=3, bounds=(1, 1000), doc="Imbalanced rows of one side that form a stack.")
    gap_ms = param.Integer(default=None, allow_None=True, bounds=(1, None), doc="CVD gap rule; None = any empty candle.")


class HeatmapParams(KindParams):
    """A price × time grid (:func:`compute.heatmap.heatmap`); it has no row grid of its own."""

    price_low = param.Number(default=None, allow_None=True, doc="Lowest price of the grid (quote currency).")
    price_high = param.Number(default=None, allow_None=True, doc="Highest price of the grid (quote currency).")
    width = param.Integer(default=600, bounds=(1, 4096), doc="Columns (time bins).")
    height = param.Integer(default=300, bounds=(1, 4096), doc="Rows (price bins).")
    agg = param.Selector(default="volume", objects=list(AGGS), doc="What a cell sums: volume, delta or count.")

    @classmethod
    def normalise(cls, values: dict) -> dict:
        values = super().normalise(values)
        lo, hi = values["price_low"], values["price_high"]
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"price_low < price_high (finite) are required, got {lo!r}, {hi!r}")
        return values


class SessionParams(ProfileParams):
    """Sessions of one length aligned on a time of day (:func:`compute.sessions.session_profiles`)."""

    session_length = param.Selector(default="1d", objects=list(SESSION_LENGTHS),
                                    doc="Session length: 1h 2h 4h 6h 8h 12h 1d 1w (weeks start on Monday).")
    session_start = param.String(default="00:00", doc="Time of day (HH:MM UTC) at which a session starts.")
    composite = param.Boolean(default=True, doc="Also give the composite profile of the whole range.")

    @classmethod
    def normalise(cls, values: dict) -> dict:
        values = super().normalise(values)
        parse_session_start(values["session_start"])  # raises ValueError with the rule
        return values


class VwapParams(KindParams):
    """VWAP bands and sampling (:func:`compute.vwap.vwap`); anchored at the range's start, or per session."""

    bands = param.List(default=list(DEFAULT_BANDS), bounds=(0, 6), doc="Band multipliers k (σ), each in (0, 10].")
    interval_ms = param.Integer(default=60_000, bounds=(1000, 7 * 86_400_000), doc="Sampling interval of the series (ms).")
    session_length = param.Selector(default=None, objects=[None, *SESSION_LENGTHS], allow_None=True,
                                    doc="None: anchored VWAP; a session length: the session VWAP, reset at each session.")
    session_start = param.String(default="00:00", doc="Time of day (HH:MM UTC) at which a session starts.")

    @classmethod
    def normalise(cls, values: dict) -> dict:
        values = super().normalise(values)
        bands = []
        for k in values["bands"]:
            if isinstance(k, bool) or not isinstance(k, int | float) or not (0 < float(k) <= 10):
                raise ValueError(f"bands must be numbers in (0, 10], got {list(values['bands'])}")
            bands.append(float(k))
        values["bands"] = tuple(sorted(set(bands)))
        parse_session_start(values["session_start"])
        return values


@dataclass(frozen=True)
class Kind:
    """One result kind: its parameters and how each engine computes it (see the module docstring).

    ``label`` is the short name a page shows. ``profile`` is True for kinds that return a :class:`~compute.result.ProfileResult` (the
    choices of the REST API's and the CLI's ``kind``). ``axis_is_range`` is True when the
    result's time axis is the whole asked range even past the last trade (the heat-map);
    the others cover the trades' range only.
    """

    name: str
    label: str
    doc: str
    params: type[KindParams]
    compute: Callable[..., Any]
    incremental: Callable[..., Any] | None = None
    dask: str | None = None
    profile: bool = True
    axis_is_range: bool = False
    rows: bool = True
    #: The incremental engine also reads the range's trades (as ``trades=``).
    reads_trades: bool = False

    def validated(self, **values) -> dict[str, Any]:
        """The kind's parameters checked and normalised (:meth:`KindParams.validated`). Raises ValueError."""
        return self.params.validated(**values)

    def engine_params(self, values: dict, tick: float) -> dict[str, Any]:
        """Keyword arguments of the engine functions for validated ``values``: the row size in quote
        currency for ``tick`` replaces ``ticks_per_row``."""
        p = dict(values)
        if "ticks_per_row" in p:
            p["row_size"] = row_price(p.pop("ticks_per_row"), tick)
        return p

    def run(self, trades, tick: float, start: int, end: int, values: dict):
        """The in-memory result on ``trades`` in ``[start, end)`` (UTC ms)."""
        return self.compute(trades, tick, int(start), int(end), **self.engine_params(values, tick))

    def run_incremental(self, store, start: int, end: int, values: dict, trades=None):
        """The result from a :class:`~compute.incremental.ProfileStore` (None if this kind has no such engine).

        ``trades`` (those of ``[start, end)``) are handed to an engine that also reads them (:attr:`reads_trades`:
        the sessions' naked POCs); raises ValueError when such an engine gets none."""
        if self.incremental is None:
            return None
        p = self.engine_params(values, store.tick)
        if self.reads_trades:
            if trades is None:
                raise ValueError(f"the incremental engine of kind {self.name!r} also reads the range's trades")
            p["trades"] = trades
        return self.incremental(store, int(start), int(end), **p)

    def run_dask(self, ddf, tick: float, start: int | None, end: int | None, values: dict, **dask_kw):
        """The result over a Dask (or pandas) DataFrame with the kind's Dask engine, equal to :meth:`run` on
        ``ddf.compute()``. ``dask_kw``: ``symbol``, ``client``, ``progress`` (see :mod:`compute.dask`)."""
        fn, p = self.dask_function(), self.engine_params(values, tick)
        if self.rows:
            return fn(ddf, tick, start=start, end=end, **p, **dask_kw)
        return fn(ddf, start=start, end=end, **p, **dask_kw)  # a price x time grid needs no tick

    def dask_function(self) -> Callable[..., Any]:
        """The :mod:`compute.dask` function of this kind. Raises ValueError when it has none, ImportError
        without Dask."""
        if self.dask is None:
            raise ValueError(f"kind {self.name!r} has no Dask engine")
        return getattr(importlib.import_module("compute.dask"), self.dask)


def _ranged(func):
    def call(trades, tick, start, end, **p):
        return func(trades, tick=tick, start=start, end=end, **p)
    call.__doc__ = func.__doc__
    return call


def _heatmap(trades, tick, start, end, **p):
    return heatmap(trades, start=start, end=end, **p)


def _store(method: str):
    def call(store, start, end, **p):
        return getattr(store, method)(start, end, **p)
    call.__name__ = f"ProfileStore.{method}"
    return call


_ENTRIES = (
    Kind("volume", "volume", "Volume profile (VPVR): volume per row, POC, VAH/VAL, buy/sell split and delta.",
         ProfileParams, _ranged(volume_profile), _store("volume_profile"), "volume_profile"),
    Kind("recency", "recency (time-weighted)", "Recency-weighted volume profile: each trade weighs qty · 2^(-age / half_life).",
         RecencyParams, _ranged(recency_profile), _store("recency_profile"), "recency_profile"),
    Kind("tpo", "TPO count", "TPO profile: the number of periods (blocks) in which each row traded.",
         TpoParams, _ranged(tpo_profile), _store("tpo_profile"), "tpo_profile"),
    Kind("split", "split: 1st half | 2nd half", "Split profile: the first half of the range against the second, on one row grid.",
         ProfileParams, _ranged(split_profile), _store("split_profile"), "split_profile"),
    Kind("developing", "developing POC/VAH/VAL", "Developing POC, VAH and VAL at each candle close.",
         DevelopingParams, _ranged(developing_levels), _store("developing"), "developing_levels", profile=False),
    Kind("footprint", "footprint", "Footprint candles: bid/ask volume per row and candle, imbalances, stacks, CVD.",
         FootprintParams, _ranged(footprint), None, "footprint", profile=False),
    Kind("sessions", "session profiles", "Session volume profiles (with naked-POC state and prior-session levels) "
         "and the composite of the range.", SessionParams, _ranged(session_profiles), sessions_from_store, None,
         profile=False, reads_trades=True),
    Kind("vwap", "VWAP", "Anchored or session VWAP with standard-deviation bands.",
         VwapParams, _ranged(vwap), None, None, profile=False, rows=False),
    Kind("heatmap", "heat-map", "Heat-map: volume, delta or trade count on a price × time grid (datashader).",
         HeatmapParams, _heatmap, None, "heatmap", profile=False, axis_is_range=True, rows=False),
)

#: Every kind by name, in the order the page and the docs list them.
KINDS: dict[str, Kind] = {k.name: k for k in _ENTRIES}

#: Names of the kinds that return a :class:`~compute.result.ProfileResult`.
PROFILE_KINDS: tuple[str, ...] = tuple(k.name for k in _ENTRIES if k.profile)


def kind(name: str) -> Kind:
    """The registry entry of ``name``. Raises ValueError (naming the kinds) for an unknown one."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {name!r}") from None


def ticks_for(row_size: float, tick: float) -> int:
    """``row_size`` (quote currency) as a whole number of ticks (:func:`compute.grid.ticks_per_row`)."""
    return ticks_per_row(row_size, tick)
