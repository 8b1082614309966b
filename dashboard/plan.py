"""What one refresh shows, gathered before any Bokeh model is touched: :class:`RefreshPlan` and :class:`Planner`.

A refresh has two phases. The :class:`Planner` awaits every shared result the
current view needs (``view.compute(kind, start, end, snapshot=..., **params)`` /
``await view.compute_async(kind, start, end, **params)``: profile, developing
levels, heat-map, footprint) and returns a frozen :class:`RefreshPlan`; the page then
applies the plan to its models in one synchronous document hold. The same plan is
what the download buttons export (:mod:`dashboard.download`), which receive it, and
:meth:`Planner.footprint_of`, instead of reaching into the page.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from compute.grid import auto_row_size
from compute.kinds import KINDS

from .data import derived
from .footprint import footprint_columns
from .profile_bars import profile_columns, tpo_letters
from .settings import MAX_PROFILE_ROWS, DashboardSettings, kind_of_mode

#: Profile rows aimed at when the row size is automatic (chart view / footprint view).
AUTO_ROWS_CHART, AUTO_ROWS_FOOTPRINT = 120, 28
#: Most candles the footprint view computes at once (panned or fixed windows are cut to the last ones).
MAX_FOOTPRINT_CANDLES = 60
#: Heat-map grid: time bins per candle and the most bins on each axis.
HEAT_BINS_PER_CANDLE, HEAT_MAX_COLS, HEAT_MAX_ROWS = 1, 480, 160


@dataclass(frozen=True)
class RefreshPlan:
    """The shared results one refresh shows (and the downloads export); nothing in it is a Bokeh model.

    Times are UTC milliseconds, prices quote currency. Fields left None were not
    computed: no candle in the window (``lo`` None), no trade in it yet (``profiled``
    False), or not asked for (``dev``, ``heat``: off in the settings).
    """

    #: ``"chart"`` (candles + VPVR) or ``"footprint"``.
    view: str
    #: Every candle of the snapshot at the selected interval (columns of :data:`compute.candles.CANDLE_COLUMNS`).
    candles: pd.DataFrame
    #: The visible window ``[start, end)``, whole candles.
    window: tuple[int, int]
    #: What the profile covers ``[start, end)``: the window cut at the last trade (the window when nothing traded).
    range: tuple[int, int]
    #: The symbol's price tick.
    tick: float
    #: The candles inside :attr:`window` (chart view; None in the footprint view).
    vis: pd.DataFrame | None = None
    #: Lowest low and highest high of the visible candles (None: no candle in the window).
    lo: float | None = None
    hi: float | None = None
    #: Height of one profile row (and footprint row).
    row_size: float | None = None
    #: True once the window has trades and the profile was asked for (its result may still be None).
    profiled: bool = False
    #: The profile (:class:`compute.result.ProfileResult`) and its display columns ``(bars, split)``.
    res: object | None = None
    cols: tuple[dict, dict] | None = None
    #: Developing POC/VAH/VAL result (chart view, when on).
    dev: object | None = None
    #: Heat-map aggregate behind the candles (chart view, when on).
    heat: object | None = None
    #: Session profiles of the window (:class:`compute.sessions.SessionsResult`; chart view, when on).
    sessions: object | None = None
    #: VWAP of the window (:class:`compute.vwap.VwapResult`; chart view, when on).
    vwap: object | None = None
    #: Fixed-range volume profiles, ``((start, end), ProfileResult or None)`` each (chart view).
    fixed: tuple = ()
    #: The anchored VWAP from the settings' anchor (chart view, when set).
    anchored: object | None = None
    #: What the profile's range holds (:class:`compute.coverage.Coverage` without its hash: ids, gaps).
    coverage: object | None = None
    #: Footprint result and its display columns (footprint view).
    fp_res: object | None = None
    fp: dict | None = None
    #: What the picture is of, for the PNG's title stamp: symbol, market (``usdm``...) and the data source.
    symbol: str = ""
    market: str = ""
    source: str = ""


class Planner:
    """Turns a snapshot and the viewer's settings into a :class:`RefreshPlan` (computing through the view).

    Parameters
    ----------
    settings : DashboardSettings
    theme : str
        The page's theme (the display columns depend on it).
    registry : engine.view.ViewRegistry
        The process's views (``registry.get(symbol)``), for :meth:`footprint_of`.
    """

    def __init__(self, settings: DashboardSettings, theme: str, registry):
        self.settings = settings
        self.theme = theme
        self.registry = registry
        #: True while a refresh must not await (the first fill): the view's process-local ``compute`` only.
        self.sync = False

    async def compute(self, view, kind: str, start: int, end: int, snap, **params):
        """One shared result: ``view.compute_async`` (Redis-backed, cross-process) when offered, else ``view.compute``."""
        fn = None if self.sync else getattr(view, "compute_async", None)
        if fn is not None:
            return await fn(kind, start, end, snapshot=snap, **params)
        return view.compute(kind, start, end, snapshot=snap, **params)

    def window(self, candles, iv: int, x_range, max_candles: int | None = None) -> tuple[int, int]:
        """The visible window: the live edge, the URL's fixed range, or the chart's ``x_range`` (whole candles)."""
        s = self.settings
        last_open = int(candles["time"].iloc[-1])
        first = int(candles["time"].iloc[0])
        if s.follow:
            end = last_open + iv
            span = s.window_minutes * 60_000 if max_candles is None else max_candles * iv
            return max(end - span, first // iv * iv), end
        if s.range_start is not None:
            start, end = s.range_start // iv * iv, -(-s.range_end // iv) * iv
        else:
            start, end = int(x_range.start // iv * iv), int(-(-x_range.end // iv) * iv)
        if max_candles is not None and end - start > MAX_FOOTPRINT_CANDLES * iv:
            start = end - MAX_FOOTPRINT_CANDLES * iv
        return start, max(end, start + iv)

    def row_size(self, lo: float, hi: float, tick: float, target: int) -> float:
        """The settings' row size (ticks per row, or automatic for about ``target`` rows), coarsened past the limit."""
        s = self.settings
        rs = round(s.row_ticks * tick, 12) if s.row_ticks else auto_row_size(lo, hi, tick, target)
        if (hi - lo) / rs > MAX_PROFILE_ROWS:
            rs = auto_row_size(lo, hi, tick, MAX_PROFILE_ROWS // 2)
        return rs

    def footprint_params(self, row_size: float) -> dict:
        """Parameters of the footprint computation for the viewer's settings (row size in quote currency)."""
        s = self.settings
        return dict(row_size=float(row_size), interval_ms=s.interval_ms, imbalance_ratio=float(s.imbalance_ratio),
                    stacked_min=int(s.stacked_min))

    async def profile(self, view, snap, start: int, end: int, row_size: float):
        """The profile of the settings' mode over ``[start, end)`` and its display columns (both None: no trade)."""
        s = self.settings
        kind = kind_of_mode(s.mode)
        params = {"row_size": float(row_size), "value_area": float(s.value_area),
                  "percentiles": tuple(float(p) for p in s.percentiles)}
        if "half_life_s" in KINDS[kind].params.names():
            params["half_life_s"] = float(s.half_life) if s.half_life > 0 else None
        res = await self.compute(view, kind, start, end, snap, **params)
        mode, width, theme = s.mode, s.max_width, self.theme
        ckey = ("profile_cols", mode, round(width, 4), theme)
        cols = None if res is None else derived(res, ckey, lambda: profile_columns(res, mode, width, theme))
        if cols is not None and res.kind == "tpo":
            letters = derived(res, ("tpo_letters",), lambda: self._letters(res, snap))
            if letters is not None:
                cols = ({**cols[0], "letters": letters}, cols[1])
        return res, cols

    @staticmethod
    def _letters(res, snap) -> list[str] | None:
        """The TPO period letters of each row (None when the snapshot no longer holds the range's trades)."""
        trades = getattr(snap, "trades", None)
        part = trades.time_slice(res.start, res.end) if trades is not None else None
        if part is None or len(part) != res.trades:
            return None
        return tpo_letters(res, part)

    def about(self, view, snap) -> dict:
        """The plan's ``symbol``, ``market`` and ``source`` (empty strings where the view does not say)."""
        store = getattr(view, "store", None)
        meta = getattr(snap, "meta", None) or {}
        return {"symbol": str(self.settings.symbol), "market": str(getattr(store, "market", "") or ""),
                "source": str(meta.get("source", "") or "")}

    async def chart(self, view, snap, candles, tick: float, x_range) -> RefreshPlan:
        """Ranges and every shared result the chart view needs (nothing drawn yet)."""
        return dataclasses.replace(await self._chart(view, snap, candles, tick, x_range), **self.about(view, snap))

    async def footprint(self, view, snap, candles, tick: float, x_range) -> RefreshPlan:
        """The footprint's range, its result and the profile for it (nothing drawn yet)."""
        return dataclasses.replace(await self._footprint(view, snap, candles, tick, x_range),
                                   **self.about(view, snap))

    async def _chart(self, view, snap, candles, tick: float, x_range) -> RefreshPlan:
        s = self.settings
        iv = s.interval_ms
        start, end = self.window(candles, iv, x_range)
        t = candles["time"].to_numpy()
        vis = candles[(t >= start) & (t < end)]
        plan = RefreshPlan("chart", candles, (start, end), (start, end), tick, vis=vis)
        if not len(vis):
            return plan
        lo, hi = float(vis["low"].min()), float(vis["high"].max())
        pend = min(end, int(snap.trades.time[-1]) + 1) if len(snap.trades) else end
        if pend <= start:
            return RefreshPlan("chart", candles, (start, end), (start, end), tick, vis=vis, lo=lo, hi=hi)
        row_size = self.row_size(lo, hi, tick, AUTO_ROWS_CHART)
        res, cols = await self.profile(view, snap, start, pend, row_size)
        dev = heat = None
        if s.developing and res is not None:
            dev = await self.compute(view, "developing", start, pend, snap, row_size=float(row_size),
                                     candle_ms=iv, value_area=float(s.value_area))
        if s.heatmap and res is not None:
            ncols = int(min(max((end - start) // iv * HEAT_BINS_PER_CANDLE, 1), HEAT_MAX_COLS))
            nrows = int(min(max(res.rows // 2, 1), HEAT_MAX_ROWS))
            heat = await self.compute(view, "heatmap", start, pend, snap, price_low=float(res.price_low[0]),
                                      price_high=float(res.price_high[-1]), width=ncols, height=nrows, agg="volume")
        sessions, vwap = await self.sessions(view, snap, start, pend, row_size)
        fixed, anchored = await self.anchored(view, snap, pend, row_size)
        return RefreshPlan("chart", candles, (start, end), (start, pend), tick, vis=vis, lo=lo, hi=hi,
                           row_size=row_size, profiled=True, res=res, cols=cols, dev=dev, heat=heat,
                           sessions=sessions, vwap=vwap, fixed=fixed, anchored=anchored,
                           coverage=self.coverage(view, snap, start, pend))

    @staticmethod
    def coverage(view, snap, start: int, end: int):
        """The id range and gaps of the trades of ``[start, end)`` (None from a view that cannot say)."""
        cov = getattr(view, "coverage", None)
        return cov(start, end, snap, digest=False) if cov is not None else None

    async def anchored(self, view, snap, pend: int, row_size: float) -> tuple:
        """The fixed-range profiles and the anchored VWAP the settings hold (each up to the data's end ``pend``)."""
        s = self.settings
        fixed = []
        for a, b in s.fixed_ranges:
            res = await self.compute(view, "volume", int(a), min(int(b), pend), snap, row_size=float(row_size),
                                     value_area=float(s.value_area)) if a < pend else None
            fixed.append(((int(a), int(b)), res))
        anchored = None
        if s.anchor is not None and s.anchor < pend:
            anchored = await self.compute(view, "vwap", int(s.anchor), pend, snap, bands=(1.0,),
                                          interval_ms=s.interval_ms)
        return tuple(fixed), anchored

    async def sessions(self, view, snap, start: int, end: int, row_size: float) -> tuple:
        """The session profiles and the VWAP of ``[start, end)`` the settings ask for (None where off)."""
        s = self.settings
        length = None if s.sessions == "off" else s.sessions
        sessions = vwap = None
        if length is not None:
            sessions = await self.compute(view, "sessions", start, end, snap, row_size=float(row_size),
                                          value_area=float(s.value_area), session_length=length,
                                          session_start=s.session_start, composite=False)
        if s.vwap:
            vwap = await self.compute(view, "vwap", start, end, snap, bands=(1.0, 2.0), interval_ms=s.interval_ms,
                                      session_length=length, session_start=s.session_start)
        return sessions, vwap

    async def _footprint(self, view, snap, candles, tick: float, x_range) -> RefreshPlan:
        s = self.settings
        iv = s.interval_ms
        start, end = self.window(candles, iv, x_range, max_candles=s.footprint_candles)
        t = candles["time"].to_numpy()
        vis = candles[(t >= start) & (t < end)]
        pend = min(end, int(snap.trades.time[-1]) + 1) if len(snap.trades) else end
        if not len(vis) or pend <= start:
            return RefreshPlan("footprint", candles, (start, end), (start, end), tick)
        lo, hi = float(vis["low"].min()), float(vis["high"].max())
        row_size = self.row_size(lo, hi, tick, AUTO_ROWS_FOOTPRINT)
        res = await self.compute(view, "footprint", start, pend, snap, **self.footprint_params(row_size))
        mode, theme = s.footprint_mode, self.theme
        cols = None if res is None else derived(res, ("fp_cols", mode, theme),
                                                lambda: footprint_columns(res, mode, theme))
        pres, pcols = await self.profile(view, snap, start, pend, row_size)
        return RefreshPlan("footprint", candles, (start, end), (start, pend), tick, lo=lo, hi=hi, row_size=row_size,
                           profiled=True, res=pres, cols=pcols, fp_res=res, fp=cols,
                           coverage=self.coverage(view, snap, start, pend))

    def coverage_of(self, plan: RefreshPlan):
        """The coverage, with its SHA-256, of the trades of a plan's range (for "Open in Jupyter")."""
        view = self.registry.get(self.settings.symbol)
        cov = getattr(view, "coverage", None)
        return cov(*plan.range, view.snapshot, digest=True) if cov is not None else None

    async def footprint_of(self, plan: RefreshPlan):
        """The footprint of a plan's range: the footprint view's own result, else computed (shared per process)
        with the footprint view's row size and settings, without its candle limit. None: no trade in the range."""
        if plan.fp_res is not None:
            return plan.fp_res
        if plan.lo is None or plan.res is None:
            return None
        view = self.registry.get(self.settings.symbol)
        start, end = plan.range
        row_size = self.row_size(plan.lo, plan.hi, plan.tick, AUTO_ROWS_FOOTPRINT)
        return await self.compute(view, "footprint", start, end, view.snapshot, **self.footprint_params(row_size))

