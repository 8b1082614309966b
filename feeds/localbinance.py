"""LocalBinance: a loopback server that speaks Binance's real market-data protocol.

It lets the whole product (WebSocket client, gap filler, recorder, backfill,
dashboard) run and be tested with no network. Everything it serves comes from
**real recorded Binance data** (``../shared/data/binance/`` or the bundled
``assets/recordings``):

* raw ``aggTrade`` frames (cryptofeed recordings) are sent **verbatim**;
* recorded ``trade`` frames (hftbacktest recordings) are re-encoded as aggTrade
  frames with ``a = f = l = t`` (trade id), same ``p``, ``q``, ``T``, ``E``, ``m``;
* trades dumps (``id,price,qty,quote_qty,time,is_buyer_maker``), tardis trade
  exports and data.binance.vision aggTrades CSV/zip files become aggTrade frames
  too (``E = T`` when the source has no event time).

Insurance-fund prints (``"X":"INSURANCE_FUND"`` trades) are kept so trade ids stay
contiguous, although Binance's real aggTrade stream leaves them out (reference d3).

No real liquidation (``forceOrder``) recording exists. Unless a loaded file holds
real ``forceOrder`` frames for a symbol, liquidation frames are produced by
:func:`synthetic_liquidations_at_real_trades`: Binance's documented forceOrder
format, placed at the price, quantity and time of real recorded trades, at most one
per symbol per ``liquidation_every_s`` seconds (>= 1 s, as Binance's 1000 ms
snapshot rule, reference d4). They are synthetic and named so.

Served on one port (``127.0.0.1``, port 0 by default):

WebSocket (reference d1/d2)
    ``/market/stream?streams=a/b`` and ``/market/ws/a/b`` (routed USD-M paths),
    ``/stream?streams=`` and ``/ws/<stream>`` (COIN-M / spot layout). Combined
    mode wraps payloads as ``{"stream":"btcusdt@aggTrade","data":{...}}``.
    ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/``SET_PROPERTY``/
    ``GET_PROPERTY`` answer ``{"result":...,"id":N}``. In ``usdm`` mode the
    **unrouted legacy** paths ``/stream`` and ``/ws`` (and ``/public``) acknowledge
    subscriptions but deliver no aggTrade or forceOrder (the silent failure since
    2026-04-23). Streams: ``<sym>@aggTrade``, ``<sym>@forceOrder``, ``!forceOrder@arr``.
    ``/_usdm``, ``/_coinm`` and ``/_spot`` prefixes select another market's WS
    layout on the same port (see :attr:`LocalBinance.ws_bases`).
REST
    ``GET /fapi/v1/aggTrades`` (USD-M data), ``/dapi/v1/aggTrades`` (COIN-M),
    ``/api/v3/aggTrades`` (spot) with ``symbol, fromId, startTime, endTime, limit``;
    header ``X-MBX-USED-WEIGHT-1M``; ``/ping`` and ``/time`` on each prefix.
data.binance.vision layout
    ``/data/futures/um/daily/aggTrades/{SYM}/{SYM}-aggTrades-YYYY-MM-DD.zip`` and
    ``.zip.CHECKSUM`` (``"<sha256 hex>  <name>"``), also ``futures/cm``, ``spot`` and
    ``monthly``; HTTP ``Range`` supported (206).

Exchange time model: each symbol is an "exchange" that starts playing its trades
when the first connection subscribes to one of its streams (or at start-up with
``clock_start="now"``). Trades "happen" at ``speed`` times exchange time
(``speed=0``: as fast as the subscribers read). REST only returns trades that have
already happened, so a client that misses frames can fill them from REST.

Use::

    async with LocalBinance(data=[path]) as srv:       # tests
        srv.ws_base, srv.rest_base, srv.vision_base
        srv.faults.drop_after_frames = 100               # knobs change while running

    srv = LocalBinance.start_in_thread(data=[path])     # sync code
    ...; srv.stop()

CLI: ``python -m feeds local-server --port 0 --data FILE`` prints the base URLs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hashlib
import io
import logging
import math
import os
import re
import threading
import time
import zipfile
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import param
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

MARKETS = ("usdm", "coinm", "spot")
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The recording shipped with the repository (69 239 real USD-M BTCUSDT trades, 2020-02-22 00-12 UTC).
BUNDLED_RECORDING = REPO_ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
#: The shared real-data folder (read-only); override with ``FLOWLENS_SHARED_DATA``.
SHARED_DATA = Path(os.environ.get("FLOWLENS_SHARED_DATA", str(REPO_ROOT.parent / "shared" / "data" / "binance")))

#: REST path prefix -> market whose data it serves.
REST_PREFIX = {"/fapi/v1": "usdm", "/dapi/v1": "coinm", "/api/v3": "spot"}
#: Request weight of one aggTrades call and the per-minute weight limit, per market.
AGGTRADES_WEIGHT = {"usdm": 20, "coinm": 20, "spot": 4}
WEIGHT_LIMIT_1M = {"usdm": 2400, "coinm": 2400, "spot": 6000}
#: data.binance.vision folder per market.
VISION_DIR = {"usdm": "futures/um", "coinm": "futures/cm", "spot": "spot"}
VISION_MARKET = {v: k for k, v in VISION_DIR.items()}
#: USD-M / COIN-M aggTrades dump header (7 columns, reference d6).
VISION_FUTURES_HEADER = "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"
#: Spot dumps switched to microsecond timestamps on this day (reference d6).
SPOT_MICROS_FROM = dt.date(2025, 1, 1)

LIQUIDATION_MODE = "synthetic_liquidations_at_real_trades"

_VISION_ZIPS: dict[tuple, bytes] = {}  # built archives, shared by server instances (same data -> same bytes)
_EVENT_RE = re.compile(rb'"e"\s*:\s*"(aggTrade|trade|forceOrder)"')
_SYM_FROM_NAME = re.compile(r"^([A-Z0-9_]+)-(aggTrades|trades)-")

_BINANCE_451_MSG = (
    "Service unavailable from a restricted location according to 'b. Eligibility' in "
    "https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error."
)


# ======================================================================================
# Recorded data
# ======================================================================================
@dataclass(eq=False)
class TradeTable:
    """Real recorded trades of one symbol on one market, as aggTrade fields.

    All arrays have shape (N,), sorted by aggregate trade id ``a`` (unique).

    Attributes
    ----------
    market : str
        ``"usdm"``, ``"coinm"`` or ``"spot"``.
    symbol : str
        Upper-case symbol, e.g. ``"BTCUSDT"``.
    a, f, l : ndarray int64
        Aggregate trade id, first and last trade id (``a = f = l = t`` for sources
        that hold single trades).
    T, E : ndarray int64
        Trade time and event time, UTC ms (``E = T`` when the source has no event time).
    m : ndarray bool
        Buyer is maker (True = taker sell).
    p, q : ndarray object
        Price (quote currency) and quantity (base asset, contracts on COIN-M) as the
        exact decimal strings of the source.
    M : ndarray bool or None
        Spot "best price match" flag (spot only).
    raw : ndarray object or None
        Verbatim aggTrade payload text where the source had a real aggTrade frame, else None.
    liq : list of dict
        Real forceOrder payloads found in the source (``{"E":..,"o":{..},"raw":text}``).
    sources : list of str
        File names the rows came from.
    """

    market: str
    symbol: str
    a: np.ndarray
    f: np.ndarray
    l: np.ndarray  # noqa: E741 (Binance's field name)
    T: np.ndarray
    E: np.ndarray
    m: np.ndarray
    p: np.ndarray
    q: np.ndarray
    M: np.ndarray | None = None
    raw: np.ndarray | None = None
    liq: list = field(default_factory=list)
    sources: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.a)

    def take(self, index) -> TradeTable:
        """Rows selected by slice, mask or sorted index array (liquidations kept only if all rows are)."""
        sub = {k: getattr(self, k)[index] for k in ("a", "f", "l", "T", "E", "m", "p", "q")}
        return TradeTable(self.market, self.symbol, **sub, M=None if self.M is None else self.M[index],
                          raw=None if self.raw is None else self.raw[index],
                          liq=list(self.liq) if len(sub["a"]) == len(self) else [], sources=list(self.sources))

    def days(self) -> list[dt.date]:
        """UTC dates that hold at least one trade."""
        if not len(self):
            return []
        d = np.unique(self.T // 86_400_000)
        return [dt.date(1970, 1, 1) + dt.timedelta(days=int(x)) for x in d]


def _infer_market(name: str, default: str | None = None) -> str | None:
    toks = set(re.split(r"[-_.\s/]+", name.lower()))
    if toks & {"usdm", "um", "fapi"} or "binance-futures" in name.lower():
        return "usdm"
    if toks & {"cm", "coinm", "dapi", "delivery"} or "binance-delivery" in name.lower():
        return "coinm"
    if "spot" in toks:
        return "spot"
    if "futures" in toks:
        return "usdm"
    return default


def _open_text_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            data = b"".join(zf.read(n) for n in zf.namelist() if not n.endswith("/"))
    return data.splitlines()


def _payload_text(frame: str, data: dict) -> str | None:
    """Cut the verbatim ``data`` payload out of an envelope's text (None if not exact)."""
    i = frame.find('"data":')
    if i < 0 or not frame.endswith("}"):
        return None
    cand = frame[i + 7 : -1].strip()
    try:
        return cand if orjson.loads(cand) == data else None
    except orjson.JSONDecodeError:
        return None


def _frames_to_tables(lines: list[bytes], name: str, market: str | None) -> list[TradeTable]:
    """Parse recorded WebSocket frame lines (hftbacktest, cryptofeed raw, JSON lines)."""
    rows: dict[tuple[str, str], list] = {}
    liqs: dict[tuple[str, str], list] = {}
    for line in lines:
        mt = _EVENT_RE.search(line)
        if mt is None:
            continue
        j = line.find(b"{")
        text = line[j:].decode().strip()
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        data = obj.get("data", obj) if isinstance(obj, dict) else None
        if not isinstance(data, dict):
            continue
        ev = data.get("e")
        raw = _payload_text(text, data) if "data" in obj else text
        if ev == "forceOrder":
            o = data.get("o", {})
            sym = str(o.get("s", "")).upper()
            mk = market or _infer_market(name) or ("coinm" if "_" in sym else "usdm")
            liqs.setdefault((mk, sym), []).append({"E": int(data["E"]), "o": o, "raw": raw})
            continue
        sym = str(data.get("s", "")).upper()
        mk = market or _infer_market(name) or ("spot" if "M" in data else "coinm" if "_" in sym else "usdm")
        if ev == "aggTrade":
            a, f, l_ = int(data["a"]), int(data["f"]), int(data["l"])
        else:  # trade: a = f = l = t
            a = f = l_ = int(data["t"])
            raw = None
        rows.setdefault((mk, sym), []).append(
            (a, f, l_, int(data["T"]), int(data.get("E", data["T"])), bool(data["m"]), str(data["p"]), str(data["q"]),
             bool(data.get("M", True)), raw)
        )
    out = []
    for key in set(rows) | set(liqs):
        mk, sym = key
        r = rows.get(key, [])
        cols = list(zip(*r, strict=True)) if r else [()] * 10
        raw = np.array(cols[9], dtype=object)
        out.append(
            TradeTable(
                mk, sym,
                np.array(cols[0], np.int64), np.array(cols[1], np.int64), np.array(cols[2], np.int64),
                np.array(cols[3], np.int64), np.array(cols[4], np.int64), np.array(cols[5], bool),
                np.array(cols[6], dtype=object), np.array(cols[7], dtype=object),
                np.array(cols[8], bool) if mk == "spot" else None,
                raw if any(x is not None for x in raw) else None,
                liqs.get(key, []), [name],
            )
        )
    return out


def _to_ms(t: np.ndarray) -> np.ndarray:
    t = np.asarray(t, dtype=np.int64)
    if len(t) and t.max() >= 10**15:  # microseconds (spot dumps from 2025, tardis)
        return t // 1000
    return t


def _bool_col(s: pd.Series) -> np.ndarray:
    return s.astype(str).str.strip().str.lower().isin(("true", "1")).to_numpy()


def _csv_to_tables(lines: list[bytes], name: str, market: str | None) -> list[TradeTable]:
    """Parse a trades dump, an aggTrades dump (vision) or a tardis trades CSV."""
    first = lines[0].decode().strip()
    body = b"\n".join(lines)
    has_header = not first.split(",")[0].strip().lstrip("-").isdigit()
    ncols = len(first.split(","))
    df = pd.read_csv(io.BytesIO(body), header=0 if has_header else None, dtype=str)
    cols = [c.strip().lower() for c in df.columns] if has_header else None
    mname = _SYM_FROM_NAME.match(Path(name).name)
    if cols and cols[:3] == ["exchange", "symbol", "timestamp"]:  # tardis
        mk = market or {"binance-futures": "usdm", "binance-delivery": "coinm", "binance": "spot"}.get(
            str(df.iloc[0, 0]), "usdm")
        out = []
        for sym, g in df.groupby("symbol", sort=False):
            t = _to_ms(g["timestamp"].astype(np.int64).to_numpy())
            ids = g["id"].astype(np.int64).to_numpy()
            out.append(TradeTable(mk, str(sym).upper(), ids, ids.copy(), ids.copy(), t, t.copy(),
                                  (g["side"] == "sell").to_numpy(), g["price"].to_numpy(object),
                                  g["amount"].to_numpy(object), np.ones(len(g), bool) if mk == "spot" else None,
                                  sources=[name]))
        return out
    if mname is None:
        raise ValueError(f"{name}: cannot tell the symbol (expected '<SYMBOL>-trades-…' or '<SYMBOL>-aggTrades-…')")
    sym, kind = mname.group(1), mname.group(2)
    mk = market or _infer_market(name) or ("spot" if (not has_header and ncols == 8) else "usdm")
    v = df.to_numpy(dtype=object)
    if kind == "aggTrades":  # agg_trade_id,price,quantity,first,last,time,is_buyer_maker[,best_match]
        a = v[:, 0].astype(np.int64)
        f, l_ = v[:, 3].astype(np.int64), v[:, 4].astype(np.int64)
        t = _to_ms(v[:, 5].astype(np.int64))
        m = _bool_col(df.iloc[:, 6])
        M = _bool_col(df.iloc[:, 7]) if v.shape[1] > 7 else np.ones(len(a), bool)
    else:  # trades dump: id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]
        a = v[:, 0].astype(np.int64)
        f, l_ = a.copy(), a.copy()
        t = _to_ms(v[:, 4].astype(np.int64))
        m = _bool_col(df.iloc[:, 5])
        M = _bool_col(df.iloc[:, 6]) if v.shape[1] > 6 else np.ones(len(a), bool)
    p = np.array([str(x).strip() for x in v[:, 1]], dtype=object)
    q = np.array([str(x).strip() for x in v[:, 2]], dtype=object)
    return [TradeTable(mk, sym, a, f, l_, t, t.copy(), m, p, q, M if mk == "spot" else None, sources=[name])]


@lru_cache(maxsize=32)
def _load_cached(path: str, market: str | None, mtime: float) -> tuple[TradeTable, ...]:
    p = Path(path)
    lines = _open_text_lines(p)
    lines = [x for x in lines if x.strip()]
    if not lines:
        return ()
    head = lines[0].lstrip()
    if head.startswith(b"{") or re.match(rb"^\d+(\.\d+)?:? \{", head) or re.match(rb"^(wss?|https?)://", head):
        return tuple(_frames_to_tables(lines, p.name, market))
    return tuple(_csv_to_tables(lines, p.name, market))


def load_recording(path: str | os.PathLike, market: str | None = None) -> list[TradeTable]:
    """Read one real recording into per-symbol :class:`TradeTable` objects.

    Formats are detected from the content: hftbacktest lines ``<recv ts> <frame>``,
    cryptofeed raw ``<epoch>: <frame>``, JSON lines of envelopes or payloads (only
    ``aggTrade``, ``trade`` and ``forceOrder`` events are kept), Binance trades dumps,
    data.binance.vision aggTrades CSV/zip (header or not, ms or µs) and tardis trade
    CSVs; plain, ``.gz`` or ``.zip``.

    Parameters
    ----------
    path : path-like
        The file.
    market : {"usdm", "coinm", "spot"}, optional
        Force the market; by default it comes from the file name (``usdm``/``um``,
        ``cm``/``coinm``, ``spot``) or the content.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a CSV's symbol cannot be determined.
    """
    p = Path(path).resolve()
    if market is not None and market not in MARKETS:
        raise ValueError(f"market must be one of {MARKETS}, not {market!r}")
    return list(_load_cached(str(p), market, p.stat().st_mtime))


def merge_tables(tables: Iterable[TradeTable]) -> dict[tuple[str, str], TradeTable]:
    """Merge tables per (market, symbol): sort by aggregate id, drop repeated ids (first kept)."""
    groups: dict[tuple[str, str], list[TradeTable]] = {}
    for t in tables:
        groups.setdefault((t.market, t.symbol), []).append(t)
    out = {}
    for key, ts in groups.items():
        a = np.concatenate([t.a for t in ts])
        order = np.argsort(a, kind="stable")
        if len(order):
            order = order[np.r_[True, np.diff(a[order]) != 0]]
        if len(ts) == 1 and len(order) == len(a) and np.all(order == np.arange(len(a))):
            out[key] = ts[0]
            continue

        def cat(name, ts=ts, order=order):
            return np.concatenate([getattr(t, name) for t in ts])[order]

        raw = np.concatenate([t.raw if t.raw is not None else np.full(len(t), None, dtype=object) for t in ts])[order]
        out[key] = TradeTable(
            key[0], key[1], a[order], cat("f"), cat("l"), cat("T"), cat("E"), cat("m"), cat("p"), cat("q"),
            cat("M") if all(t.M is not None for t in ts) else None,
            raw if any(x is not None for x in raw) else None,
            [x for t in ts for x in t.liq], [s for t in ts for s in t.sources],
        )
    return out


def default_data_files() -> list[Path]:
    """The bundled recording (always present in the repository)."""
    return [BUNDLED_RECORDING]


def synthetic_liquidations_at_real_trades(table: TradeTable, every_s: float = 5.0) -> np.ndarray:
    """Indices of real trades that stand in for liquidations (SYNTHETIC).

    No real forceOrder recording exists, so liquidation frames are placed on real
    trades: in each window of ``every_s`` seconds of trade time ``T`` the trade with the
    largest quantity (first on ties) is taken. The liquidated order has the taker's
    side (``m`` true: taker sold -> ``"S":"SELL"``, a long was liquidated), the trade's
    price as ``p`` and ``ap`` and its quantity as ``q``/``l``/``z``.

    Parameters
    ----------
    table : TradeTable
    every_s : float
        Window in seconds, at least 1 (Binance pushes at most one liquidation per
        symbol per 1000 ms, reference d4).

    Returns
    -------
    ndarray, shape (K,), int64
        Sorted trade indices into ``table``.
    """
    if every_s < 1:
        raise ValueError("every_s must be >= 1 (at most one liquidation per symbol per second)")
    if not len(table):
        return np.empty(0, np.int64)
    win = table.T // int(every_s * 1000)
    qty = table.q.astype(np.float64)
    order = np.lexsort((-qty, win))  # by window, then largest qty first
    first = np.r_[True, np.diff(win[order]) != 0]
    return np.sort(order[first]).astype(np.int64)


# ======================================================================================
# Knobs
# ======================================================================================
class Faults(param.Parameterized):
    """Fault injection knobs of :class:`LocalBinance`; every one may be changed while running."""

    drop_after_frames = param.Integer(None, bounds=(1, None), allow_None=True, doc=(
        "Drop each WebSocket connection after it has sent this many data frames (None: never)."))
    drop_mode = param.Selector(default="abort", objects=["abort", "close"], doc=(
        "How a connection is dropped: 'abort' cuts TCP with no close frame, 'close' sends close code 1011."))
    send_pings = param.Boolean(True, doc="Server sends ping frames every ping_interval.")
    answer_pings = param.Boolean(True, doc="Server answers the client's ping frames with pongs.")
    garbage_every = param.Integer(0, bounds=(0, None), doc=(
        "After every N-th data frame, also send one garbage frame (non-JSON, wrong types, unknown event, "
        "binary, empty; kinds rotate). 0: off."))
    truncate_every = param.Integer(0, bounds=(0, None), doc=(
        "Before every N-th data frame, also send a truncated copy of it (the real frame follows). 0: off."))
    duplicate_every = param.Integer(0, bounds=(0, None), doc="Send every N-th data frame twice. 0: off.")
    reorder_every = param.Integer(0, bounds=(0, None), doc=(
        "Hold every N-th data frame and send it after the next one (or after 0.3 s). 0: off."))
    skip_ids = param.List([], doc=(
        "Aggregate trade id ranges never sent on the WebSocket (REST still serves them): items (lo, hi) or "
        "(symbol, lo, hi), inclusive."))
    silent_streams = param.List([], doc=(
        "Stream names acknowledged on SUBSCRIBE but never delivered ('*' = all), e.g. ['btcusdt@aggTrade']."))
    max_lifetime = param.Number(24 * 3600.0, bounds=(0.01, None), doc=(
        "Seconds after which the server closes a WebSocket connection (Binance's 24 h cut)."))
    rest_fail_next = param.Integer(0, bounds=(-1, None), doc=(
        "The next K REST calls (aggTrades, ping, time) fail with rest_fail_status; -1: all of them."))
    rest_fail_status = param.Integer(429, bounds=(400, 599), doc="Status of injected REST failures (429, 451, 5xx).")
    rest_retry_after = param.Integer(1, bounds=(0, None), doc="Retry-After header (s) on injected 429/418/5xx.")
    vision_corrupt_files = param.List([], doc=(
        "data.binance.vision zip names served with one byte flipped (their CHECKSUM stays the true one)."))
    vision_cut_after_bytes = param.Integer(0, bounds=(0, None), doc=(
        "Cut the next vision_cut_next zip downloads after this many body bytes (0: off)."))
    vision_cut_next = param.Integer(0, bounds=(-1, None), doc="How many zip downloads to cut; -1: all.")
    vision_fail_next = param.Integer(0, bounds=(-1, None), doc=(
        "The next K data.binance.vision requests answer vision_fail_status with Retry-After; -1: all."))
    vision_fail_status = param.Integer(503, bounds=(400, 599), doc="Status of injected vision failures.")

    def reset(self) -> None:
        """Turn every fault off (defaults)."""
        for name, p in self.param.objects("existing").items():
            if name != "name":
                setattr(self, name, p.default if not isinstance(p.default, list) else [])


# ======================================================================================
# Per-symbol exchange clock
# ======================================================================================
@dataclass(slots=True)
class _Frame:
    stream: str  # canonical stream name, e.g. "btcusdt@aggTrade"
    payload: str  # raw payload text
    agg_id: int  # aggregate id, -1 for non-trade frames
    symbol: str
    _combined: str | None = None

    def text(self, combined: bool) -> str:
        if not combined:
            return self.payload
        if self._combined is None:
            self._combined = '{"stream":"' + self.stream + '","data":' + self.payload + "}"
        return self._combined


class _SymbolFeed:
    """Plays one TradeTable as a live exchange (see the module docstring)."""

    LOOP_GAP_MS = 1000
    MAX_GAP_MS = 60_000

    def __init__(self, server: LocalBinance, table: TradeTable):
        self.srv = server
        self.t = table
        self.sym_l = table.symbol.lower()
        self.agg_stream = f"{self.sym_l}@aggTrade"
        self.liq_stream = f"{self.sym_l}@forceOrder"
        n = len(table)
        self.n = n
        # liquidation events: (E, T, payload fields) ordered after the trade they follow
        liq_after, self.liq_fields = self._liquidations(table)
        kinds = np.r_[np.zeros(n, np.int8), np.ones(len(liq_after), np.int8)]
        idx = np.r_[np.arange(n), np.arange(len(liq_after))]
        pos = np.r_[np.arange(n) * 2.0, liq_after * 2.0 + 1.0]
        order = np.argsort(pos, kind="stable")
        self.ev_kind, self.ev_idx = kinds[order], idx[order]
        ev_e = np.r_[table.E, np.array([x["E"] for x in self.liq_fields], np.int64)][order] if len(order) else np.empty(0)
        d = np.diff(ev_e.astype(np.int64), prepend=ev_e[:1].astype(np.int64)) if len(ev_e) else np.empty(0, np.int64)
        d = np.clip(d, 0, self.MAX_GAP_MS)
        self.ev_sched = np.cumsum(d).astype(np.float64)  # ms from first event
        self.ev_trades_before = np.r_[0, np.cumsum(self.ev_kind == 0)].astype(np.int64)
        self.ne = len(self.ev_kind)
        self.span_sched = (self.ev_sched[-1] if self.ne else 0.0) + self.LOOP_GAP_MS
        self.span_a = int(table.a[-1] - table.a[0] + 1) if n else 1
        self.span_id = int(max(table.l.max(), table.a.max()) - min(table.f.min(), table.a.min()) + 1) if n else 1
        self.span_t = int(table.T[-1] - table.T[0] + self.LOOP_GAP_MS) if n else self.LOOP_GAP_MS
        self.v = 0  # next event (virtual index, wraps when looping)
        self.published = 0  # trades that have happened (virtual count)
        self.off_ms = 0  # retime offset
        self.started = False
        self.finished = asyncio.Event()
        self.changed = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.wall0 = 0.0
        self.sched0 = 0.0

    # -- liquidations ---------------------------------------------------------------
    def _liquidations(self, t: TradeTable):
        fields = []
        if t.liq:  # real forceOrder frames: keep them verbatim
            liq_e = np.array([x["E"] for x in t.liq], np.int64)
            after = np.searchsorted(t.E, liq_e, side="right") - 1
            for x in t.liq:
                fields.append({"E": x["E"], "o": dict(x["o"]), "raw": x["raw"]})
            return np.asarray(after, np.float64), fields
        if self.srv.liquidations != LIQUIDATION_MODE or t.market == "spot" or not len(t):
            return np.empty(0), []
        idx = synthetic_liquidations_at_real_trades(t, self.srv.liquidation_every_s)
        for i in idx:
            o = {"s": t.symbol}
            if t.market == "coinm":
                o["ps"] = t.symbol.split("_")[0]
            side = "SELL" if t.m[i] else "BUY"
            o.update({"S": side, "o": "LIMIT", "f": "IOC", "q": t.q[i], "p": t.p[i], "ap": t.p[i], "X": "FILLED",
                      "l": t.q[i], "z": t.q[i], "T": int(t.T[i])})
            fields.append({"E": int(t.E[i]), "o": o, "raw": None})
        return idx.astype(np.float64), fields

    # -- encoding -------------------------------------------------------------------
    def agg_payload(self, i: int, k: int) -> str:
        t = self.t
        off = self.off_ms + k * self.span_t
        if t.raw is not None and k == 0 and off == 0 and t.raw[i] is not None:
            return t.raw[i]
        ida = k * self.span_a
        idf = k * self.span_id
        s = (f'{{"e":"aggTrade","E":{int(t.E[i]) + off},"a":{int(t.a[i]) + ida},"s":"{t.symbol}",'
             f'"p":"{t.p[i]}","q":"{t.q[i]}","f":{int(t.f[i]) + idf},"l":{int(t.l[i]) + idf},'
             f'"T":{int(t.T[i]) + off},"m":{"true" if t.m[i] else "false"}')
        if t.M is not None:
            s += f',"M":{"true" if t.M[i] else "false"}'
        return s + "}"

    def liq_payload(self, j: int, k: int) -> str:
        x = self.liq_fields[j]
        off = self.off_ms + k * self.span_t
        if x["raw"] is not None and off == 0:
            return x["raw"]
        o = dict(x["o"])
        o["T"] = int(o["T"]) + off
        return orjson.dumps({"e": "forceOrder", "E": int(x["E"]) + off, "o": o}).decode()

    def rest_rows(self, v0: int, v1: int) -> list[bytes]:
        """JSON objects of trades with virtual trade indices v0..v1-1 (REST layout)."""
        t = self.t
        out = []
        for v in range(v0, v1):
            k, i = divmod(v, self.n)
            off = self.off_ms + k * self.span_t
            idf = k * self.span_id
            s = (f'{{"a":{int(t.a[i]) + k * self.span_a},"p":"{t.p[i]}","q":"{t.q[i]}","f":{int(t.f[i]) + idf},'
                 f'"l":{int(t.l[i]) + idf},"T":{int(t.T[i]) + off},"m":{"true" if t.m[i] else "false"}')
            if t.M is not None:
                s += f',"M":{"true" if t.M[i] else "false"}'
            out.append((s + "}").encode())
        return out

    def trade_id_at(self, v: int) -> int:
        k, i = divmod(v, self.n)
        return int(self.t.a[i]) + k * self.span_a

    def trade_time_at(self, v: int) -> int:
        k, i = divmod(v, self.n)
        return int(self.t.T[i]) + self.off_ms + k * self.span_t

    def vindex_of_id(self, agg_id: int) -> int:
        """Virtual trade index of the first trade with id >= agg_id."""
        a = self.t.a
        if not self.n:
            return 0
        k = 0
        if self.srv.loop and agg_id > a[-1]:
            k = (agg_id - int(a[0])) // self.span_a
        i = int(np.searchsorted(a, agg_id - k * self.span_a, side="left"))
        return k * self.n + i

    def vindex_of_time(self, t_ms: int) -> int:
        """Virtual trade index of the first trade with T >= t_ms."""
        T = self.t.T
        if not self.n:
            return 0
        t0 = t_ms - self.off_ms
        k = 0
        if self.srv.loop and t0 > T[-1]:
            k = (t0 - int(T[0])) // self.span_t
        i = int(np.searchsorted(T, t0 - k * self.span_t, side="left"))
        return k * self.n + i

    # -- clock ----------------------------------------------------------------------
    def sched_of(self, v: int) -> float:
        k, j = divmod(v, self.ne)
        return k * self.span_sched + float(self.ev_sched[j])

    def sched_now(self) -> float:
        sp = self.srv.speed
        if sp <= 0:
            return math.inf
        return self.sched0 + (time.monotonic() - self.wall0) * 1000.0 * sp

    def rebase(self, old_speed: float) -> None:
        now = time.monotonic()
        if old_speed <= 0:
            self.sched0 = self.sched_of(self.v) if self.ne else 0.0
        else:
            self.sched0 = self.sched0 + (now - self.wall0) * 1000.0 * old_speed
        self.wall0 = now
        self.changed.set()

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        if self.srv.retime and self.n:
            self.off_ms = int(time.time() * 1000) - int(self.t.T[0])
        self.wall0 = time.monotonic()
        self.sched0 = self.sched_of(self.v) if self.ne else 0.0
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"localbinance-{self.t.market}-{self.sym_l}")

    def preplay(self, n_trades: int | None) -> None:
        """Let the first n trades (all if None) happen at once, unseen on the WebSocket."""
        target = self.n if n_trades is None else int(n_trades)
        while self.v < (self.ne if not self.srv.loop else math.inf) and self.published < target:
            k, j = divmod(self.v, self.ne)
            if self.ev_kind[j] == 0:
                self.published += 1
            self.v += 1
        self.sched0 = self.sched_of(self.v) if self.ne else 0.0
        self.wall0 = time.monotonic()
        self.changed.set()

    def _done(self) -> bool:
        return not self.srv.loop and self.v >= self.ne

    async def _run(self) -> None:
        srv = self.srv
        try:
            while not self._done():
                if not self.ne:
                    break
                fast = srv.speed <= 0
                pause = srv.pause_when_idle if srv.pause_when_idle is not None else fast
                if pause and not srv._has_listeners(self):
                    self.changed.clear()
                    try:
                        await asyncio.wait_for(self.changed.wait(), 0.05)
                    except TimeoutError:
                        pass
                    continue
                now = self.sched_now()
                sent = 0
                chunk = min(512, srv.fast_backlog) if fast else 512
                while not self._done() and sent < chunk and self.sched_of(self.v) <= now:
                    self._publish_event(self.v)
                    self.v += 1
                    sent += 1
                if fast:
                    while srv._max_backlog(self) > srv.fast_backlog and srv.speed <= 0:
                        await asyncio.sleep(0.002)
                    await asyncio.sleep(0)
                    continue
                if sent:
                    await asyncio.sleep(0)
                    continue
                wait_ms = (self.sched_of(self.v) - now) / max(srv.speed, 1e-9) if not self._done() else 0
                self.changed.clear()
                try:
                    await asyncio.wait_for(self.changed.wait(), min(max(wait_ms / 1000.0, 0.0005), 0.05))
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception:  # pragma: no cover - a bug here must be visible, not fatal
            log.exception("localbinance feed %s crashed", self.agg_stream)
        self.finished.set()

    def _publish_event(self, v: int) -> None:
        k, j = divmod(v, self.ne)
        i = int(self.ev_idx[j])
        if self.ev_kind[j] == 0:
            fr = _Frame(self.agg_stream, self.agg_payload(i, k), self.trade_id_at(k * self.n + i), self.t.symbol)
            self.published += 1
            self.srv._deliver(self.t.market, self.agg_stream, fr)
        else:
            fr = _Frame(self.liq_stream, self.liq_payload(i, k), -1, self.t.symbol)
            self.srv._deliver(self.t.market, self.liq_stream, fr)
            self.srv._deliver(self.t.market, "!forceOrder@arr", _Frame("!forceOrder@arr", fr.payload, -1, self.t.symbol))


# ======================================================================================
# Connections
# ======================================================================================
_GARBAGE = (
    "not json at all",
    '{"stream":"%s","data":',
    '{"stream":"%s","data":null}',
    '{"stream":"%s","data":{"e":"aggTrade","E":"x","a":"not-a-number","s":7,"p":null,"q":[],"m":"maybe"}}',
    '{"stream":"%s","data":{"e":"unknownEvent","E":1}}',
    "[1,2,3]",
    b"\x00\xffbinary-garbage",
    "",
)


class _Conn:
    """One WebSocket connection's state (exposed for tests through ``srv.connections``)."""

    def __init__(self, srv: LocalBinance, ws: web.WebSocketResponse, request: web.Request, market: str,
                 combined: bool, routed: bool):
        self.srv, self.ws, self.request = srv, ws, request
        self.market, self.combined, self.routed = market, combined, routed
        self.path = request.path_qs
        self.streams: dict[str, str] = {}  # lower-case key -> canonical name
        self.data: deque[_Frame] = deque()
        self.control: deque = deque()
        self.wake = asyncio.Event()
        self.opened = time.monotonic()
        self.frames_sent = 0
        self.sent_ids: dict[str, list[int]] = {}  # symbol -> aggregate ids sent, in send order
        self.extra_sent = 0  # garbage + truncated + duplicates
        self.ping_outstanding: float | None = None
        self.pings_sent = 0
        self.pongs_received = 0
        self.incoming: deque[float] = deque()
        self.closed_reason: str | None = None
        self._counter = 0
        self._held: _Frame | None = None
        self._held_at = 0.0
        self._gi = 0

    def __repr__(self) -> str:
        return f"<_Conn {self.path} sent={self.frames_sent} reason={self.closed_reason}>"

    def enqueue(self, fr: _Frame) -> None:
        self.data.append(fr)
        self.wake.set()

    def send_control(self, obj) -> None:
        self.control.append(obj)
        self.wake.set()

    def _skipped(self, fr: _Frame) -> bool:
        if fr.agg_id < 0:
            return False
        for r in self.srv.faults.skip_ids:
            if len(r) == 3:
                if str(r[0]).upper() == fr.symbol and int(r[1]) <= fr.agg_id <= int(r[2]):
                    return True
            elif int(r[0]) <= fr.agg_id <= int(r[1]):
                return True
        return False

    async def _send_data(self, fr: _Frame) -> None:
        await self.ws.send_str(fr.text(self.combined))
        self.frames_sent += 1
        self.srv.stats["frames_sent"] += 1
        if fr.agg_id >= 0:
            self.sent_ids.setdefault(fr.symbol, []).append(fr.agg_id)

    async def sender(self) -> None:
        try:
            await self._sender()
        except (ConnectionError, RuntimeError) as e:  # peer gone mid-send
            if self.closed_reason is None:
                self.closed_reason = f"send_failed: {e.__class__.__name__}"

    async def _sender(self) -> None:
        fl = self.srv.faults
        ws = self.ws
        while not ws.closed:
            if self.control:
                msg = self.control.popleft()
                await ws.send_str(msg if isinstance(msg, str) else orjson.dumps(msg).decode())
                continue
            if self._held is not None and (not self.data and time.monotonic() - self._held_at > 0.3):
                fr, self._held = self._held, None
                await self._send_data(fr)
                continue
            if not self.data:
                self.wake.clear()
                timeout = 0.1 if self._held is not None else None
                try:
                    await asyncio.wait_for(self.wake.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            fr = self.data.popleft()
            if self._skipped(fr):
                continue
            self._counter += 1
            c = self._counter
            if fl.truncate_every and c % fl.truncate_every == 0:
                txt = fr.text(self.combined)
                await ws.send_str(txt[: max(1, len(txt) // 2)])
                self.extra_sent += 1
            if fl.reorder_every and c % fl.reorder_every == 0 and self._held is None:
                self._held, self._held_at = fr, time.monotonic()
                continue
            await self._send_data(fr)
            if self._held is not None:
                held, self._held = self._held, None
                await self._send_data(held)
            if fl.duplicate_every and c % fl.duplicate_every == 0:
                await ws.send_str(fr.text(self.combined))
                self.extra_sent += 1
            if fl.garbage_every and c % fl.garbage_every == 0:
                g = _GARBAGE[self._gi % len(_GARBAGE)]
                self._gi += 1
                if isinstance(g, bytes):
                    await ws.send_bytes(g)
                else:
                    await ws.send_str(g % fr.stream if "%s" in g else g)
                self.extra_sent += 1
            if fl.drop_after_frames is not None and self.frames_sent >= fl.drop_after_frames:
                await self.drop(fl.drop_mode, "drop_after_frames")
                return

    async def drop(self, mode: str = "abort", reason: str = "dropped") -> None:
        self.closed_reason = reason
        self.srv.stats["drops"] += 1
        if mode == "abort":
            tr = self.request.transport
            if tr is not None:
                tr.abort()
        else:
            await self.ws.close(code=1011, message=reason.encode())

    async def monitor(self) -> None:
        """Server pings, pong timeout and the maximum connection lifetime."""
        srv = self.srv
        last_ping = time.monotonic()
        while not self.ws.closed:
            step = max(0.005, min(srv.ping_interval, srv.pong_timeout, srv.faults.max_lifetime, 1.0) / 5)
            await asyncio.sleep(step)
            now = time.monotonic()
            if now - self.opened >= srv.faults.max_lifetime:
                self.closed_reason = "max_lifetime"
                srv.stats["lifetime_cuts"] += 1
                await self.ws.close(code=1001, message=b"max connection lifetime")
                return
            if self.ping_outstanding is not None and now - self.ping_outstanding > srv.pong_timeout:
                self.closed_reason = "pong_timeout"
                srv.stats["pong_timeouts"] += 1
                await self.ws.close(code=1008, message=b"pong timeout")
                return
            if srv.faults.send_pings and now - last_ping >= srv.ping_interval:
                last_ping = now
                try:
                    await self.ws.ping(str(int(time.time() * 1000)).encode())
                except (ConnectionError, RuntimeError):
                    return
                self.pings_sent += 1
                srv.stats["pings_sent"] += 1
                if self.ping_outstanding is None:
                    self.ping_outstanding = now


# ======================================================================================
# Server
# ======================================================================================
class LocalBinance(param.Parameterized):
    """A loopback Binance market-data server (WebSocket, REST, data.binance.vision).

    Parameters are ``param`` parameters (change them while running); fault knobs
    live on :attr:`faults` (:class:`Faults`). Construct with ``data=[paths]`` (default:
    the bundled BTCUSDT recording) or ``tables=[TradeTable, ...]``.

    Attributes (after start)
    ------------------------
    ws_base, rest_base, vision_base : str
        ``ws://127.0.0.1:PORT``, ``http://127.0.0.1:PORT``, ``http://127.0.0.1:PORT``;
        a client appends Binance's paths (``/market/stream?streams=…``,
        ``/fapi/v1/aggTrades``, ``/data/futures/um/daily/…``).
    ws_bases : dict
        Market -> WS base with that market's path layout (``…/_spot`` etc.).
    tables : dict
        (market, SYMBOL) -> :class:`TradeTable` served.
    connections : list of _Conn
        Every WebSocket connection accepted so far (``sent_ids``, ``closed_reason``…).
    requests : deque
        Recent HTTP requests ``{"method","path","query","status","range"}``.
    stats : dict
        Counters: connections, frames_sent, drops, pings_sent, pongs_received,
        pong_timeouts, lifetime_cuts, rest_calls, rest_failures, vision_downloads, …
    """

    market = param.Selector(default="usdm", objects=list(MARKETS), doc=(
        "WebSocket path layout of the root: 'usdm' (routed /market paths; unrouted /stream is silent), "
        "'coinm' or 'spot' (/stream and /ws deliver)."))
    host = param.String("127.0.0.1", doc="Interface to bind (loopback by default).")
    port = param.Integer(0, bounds=(0, 65535), doc="TCP port; 0 picks a free one.")
    speed = param.Number(1.0, bounds=(0, None), doc=(
        "Replay speed relative to exchange time (1 = real time, 60 = a minute per second); "
        "0 = as fast as the subscribers read."))
    loop = param.Boolean(False, doc=(
        "Replay forever: after the last trade start again with ids shifted by the id span and times by the "
        "time span (ids and times keep increasing)."))
    retime = param.Boolean(False, doc=(
        "Shift trade/event times by a constant so the replay starts at the current wall time (demos)."))
    clock_start = param.Selector(default="subscribe", objects=["subscribe", "now"], doc=(
        "When a symbol's exchange clock starts: at its first subscription, or at server start."))
    pause_when_idle = param.Boolean(None, allow_None=True, doc=(
        "Pause a symbol's clock while nobody listens (None: only when speed == 0)."))
    fast_backlog = param.Integer(2048, bounds=(1, None), doc=(
        "With speed 0, the clock waits while a subscriber has more than this many frames queued."))
    max_backlog = param.Integer(200_000, bounds=(1, None), doc=(
        "A subscriber with more queued frames than this is disconnected (Binance drops slow clients)."))
    ping_interval = param.Number(180.0, bounds=(0.01, None), doc="Seconds between server pings (Binance: 180).")
    pong_timeout = param.Number(600.0, bounds=(0.01, None), doc="Close if a ping stays unanswered this long (600).")
    max_incoming_per_s = param.Integer(10, bounds=(0, None), doc=(
        "Close a connection that sends more than this many messages (text, ping, pong) in one second; 0: off."))
    max_streams = param.Integer(1024, bounds=(1, None), doc="Streams per connection (Binance USD-M: 1024).")
    liquidations = param.Selector(default=LIQUIDATION_MODE, objects=[LIQUIDATION_MODE, "none"], doc=(
        "Liquidation frames when a symbol has no real forceOrder recording: synthetic ones at real trades, "
        "or none. Read when the server starts."))
    liquidation_every_s = param.Number(5.0, bounds=(1.0, None), doc=(
        "Window (s) of synthetic liquidations: at most one per symbol per window. Read at start."))
    rest_weight_limit = param.Integer(None, allow_None=True, bounds=(1, None), doc=(
        "Weight per rest_weight_window; exceeding answers 429 (None: 2400 futures, 6000 spot)."))
    rest_weight_window = param.Number(60.0, bounds=(0.01, None), doc="Window of the REST weight limit (s).")

    def __init__(self, data: Sequence[str | os.PathLike] | str | os.PathLike | None = None, *,
                 tables: Iterable[TradeTable] | None = None, faults: Faults | None = None,
                 data_market: str | None = None, **params):
        super().__init__(**params)
        self.faults = faults or Faults()
        if isinstance(data, (str, os.PathLike)):
            data = [data]
        loaded: list[TradeTable] = list(tables or [])
        if data is None and tables is None:
            data = default_data_files()
        for p in data or []:
            loaded.extend(load_recording(p, data_market))
        self.tables: dict[tuple[str, str], TradeTable] = merge_tables(loaded)
        self.feeds: dict[tuple[str, str], _SymbolFeed] = {}
        self.connections: list[_Conn] = []
        self.requests: deque[dict] = deque(maxlen=20_000)
        self.stats = {k: 0 for k in ("connections", "frames_sent", "drops", "pings_sent", "pongs_received",
                                     "pong_timeouts", "lifetime_cuts", "rate_limit_cuts", "rest_calls",
                                     "rest_failures", "vision_downloads", "vision_cuts", "subscriptions")}
        self._subs: dict[tuple[str, str], set[_Conn]] = {}
        self._runner: web.AppRunner | None = None
        self._site_port: int | None = None
        self._vision_cache: dict[str, bytes] = {}
        self._weight: dict[str, list[float]] = {}
        self._thread: threading.Thread | None = None
        self._tloop: asyncio.AbstractEventLoop | None = None
        self.param.watch(self._on_speed, ["speed"])

    # -- URLs -----------------------------------------------------------------------
    @property
    def base_port(self) -> int:
        if self._site_port is None:
            raise RuntimeError("LocalBinance is not running")
        return self._site_port

    @property
    def ws_base(self) -> str:
        """WebSocket base of the default market (``ws://127.0.0.1:PORT``)."""
        return f"ws://{self.host}:{self.base_port}"

    @property
    def ws_bases(self) -> dict[str, str]:
        """Market -> WS base using that market's path layout."""
        return {mk: (self.ws_base if mk == self.market else f"{self.ws_base}/_{mk}") for mk in MARKETS}

    @property
    def rest_base(self) -> str:
        return f"http://{self.host}:{self.base_port}"

    @property
    def vision_base(self) -> str:
        return f"http://{self.host}:{self.base_port}"

    def urls(self) -> dict[str, str]:
        """All base URLs (for printing and for configs)."""
        d = {"ws_base": self.ws_base, "rest_base": self.rest_base, "vision_base": self.vision_base}
        d.update({f"ws_base_{mk}": u for mk, u in self.ws_bases.items()})
        return d

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> LocalBinance:
        """Bind and start serving (idempotent)."""
        if self._runner is not None:
            return self
        for key, tab in self.tables.items():
            self.feeds[key] = _SymbolFeed(self, tab)
        app = web.Application()
        app.router.add_route("GET", "/data/{rest:.*}", self._vision)
        for prefix, mk in REST_PREFIX.items():
            app.router.add_route("GET", prefix + "/aggTrades", self._make_rest(mk, self._rest_aggtrades))
            app.router.add_route("GET", prefix + "/ping", self._make_rest(mk, self._rest_ping))
            app.router.add_route("GET", prefix + "/time", self._make_rest(mk, self._rest_time))
        app.router.add_route("GET", "/{path:.*}", self._ws_entry)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self._site_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self.clock_start == "now":
            for f in self.feeds.values():
                if f.t.market == self.market:
                    f.start()
        log.info("LocalBinance serving %s", self.urls())
        return self

    async def aclose(self) -> None:
        """Close every connection and stop serving."""
        for f in self.feeds.values():
            if f.task is not None:
                f.task.cancel()
        for c in list(self.connections):
            if not c.ws.closed:
                try:
                    await asyncio.wait_for(c.ws.close(code=1001, message=b"server shutdown"), 1.0)
                except (TimeoutError, ConnectionError, RuntimeError):
                    pass
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for f in self.feeds.values():
            if f.task is not None:
                try:
                    await f.task
                except (asyncio.CancelledError, Exception):
                    pass

    async def __aenter__(self) -> LocalBinance:
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    @classmethod
    def start_in_thread(cls, *args, **kwargs) -> LocalBinance:
        """Start a server on its own event loop in a daemon thread; ``stop()`` ends it.

        Knobs may be set from the calling thread (plain attribute writes); use
        :meth:`call` to run a coroutine on the server's loop.
        """
        srv = cls(*args, **kwargs)
        ready = threading.Event()
        err: list[BaseException] = []

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            srv._tloop = loop
            try:
                loop.run_until_complete(srv.start())
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                err.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(srv.aclose())
            loop.close()

        srv._thread = threading.Thread(target=run, name="LocalBinance", daemon=True)
        srv._thread.start()
        ready.wait()
        if err:
            raise err[0]
        return srv

    def call(self, coro_or_fn, *args):
        """Run a coroutine function / coroutine or a plain function on the server's thread loop; return its result."""
        if self._tloop is None:
            raise RuntimeError("call() is for servers started with start_in_thread()")
        if asyncio.iscoroutine(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn, self._tloop).result()
        if asyncio.iscoroutinefunction(coro_or_fn):
            return asyncio.run_coroutine_threadsafe(coro_or_fn(*args), self._tloop).result()

        async def _c():
            return coro_or_fn(*args)

        return asyncio.run_coroutine_threadsafe(_c(), self._tloop).result()

    def stop(self) -> None:
        """Stop a server started with :meth:`start_in_thread`."""
        if self._tloop is None or self._thread is None:
            return
        self._tloop.call_soon_threadsafe(self._tloop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> LocalBinance:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- exchange helpers for tests -------------------------------------------------
    def feed(self, symbol: str, market: str | None = None) -> _SymbolFeed:
        key = (market or self.market, symbol.upper())
        if key not in self.feeds:
            raise KeyError(f"no recorded data for {key}; have {sorted(self.feeds)}")
        return self.feeds[key]

    def published(self, symbol: str, market: str | None = None) -> int:
        """Number of trades of ``symbol`` that have happened so far."""
        return self.feed(symbol, market).published

    def preplay(self, symbol: str, n_trades: int | None = None, market: str | None = None) -> None:
        """Let the first ``n_trades`` trades (all if None) happen now without WS delivery (REST history)."""
        self.feed(symbol, market).preplay(n_trades)

    def start_clock(self, symbol: str, market: str | None = None) -> None:
        """Start ``symbol``'s exchange clock now (normally the first subscription does)."""
        self.feed(symbol, market).start()

    async def wait_published(self, symbol: str, n: int, market: str | None = None) -> None:
        f = self.feed(symbol, market)
        while f.published < n and not f.finished.is_set():
            await asyncio.sleep(0.005)

    async def wait_finished(self, symbol: str, market: str | None = None) -> None:
        await self.feed(symbol, market).finished.wait()

    async def drop_connections(self, mode: str = "abort") -> int:
        """Drop every open WebSocket connection now; returns how many."""
        n = 0
        for c in list(self.connections):
            if not c.ws.closed:
                await c.drop(mode, "drop_connections")
                n += 1
        return n

    def open_connections(self) -> list[_Conn]:
        return [c for c in self.connections if not c.ws.closed]

    # -- internals: delivery ----------------------------------------------------------
    def _on_speed(self, event) -> None:
        for f in self.feeds.values():
            if f.started:
                f.rebase(event.old)

    def _silent(self, stream: str) -> bool:
        s = self.faults.silent_streams
        return bool(s) and ("*" in s or stream.lower() in {x.lower() for x in s})

    def _deliver(self, market: str, stream: str, fr: _Frame) -> None:
        conns = self._subs.get((market, stream.lower()))
        if not conns or self._silent(stream):
            return
        for c in list(conns):
            if c.ws.closed:
                continue
            if len(c.data) > self.max_backlog:
                c.closed_reason = "slow_consumer"
                if c.request.transport is not None:
                    c.request.transport.abort()
                continue
            c.enqueue(fr)

    def _listeners(self, feed: _SymbolFeed) -> list[_Conn]:
        out = []
        mk = feed.t.market
        for key in (feed.agg_stream.lower(), feed.liq_stream.lower(), "!forceorder@arr"):
            out.extend(c for c in self._subs.get((mk, key), ()) if not c.ws.closed)
        return out

    def _has_listeners(self, feed: _SymbolFeed) -> bool:
        return bool(self._listeners(feed))

    def _max_backlog(self, feed: _SymbolFeed) -> int:
        return max((len(c.data) for c in self._listeners(feed)), default=0)

    @staticmethod
    def _canonical(stream: str) -> str:
        """Canonical stream name: lower-case symbol, Binance's event spelling (``btcusdt@aggTrade``)."""
        s = stream.strip()
        if s.lower() == "!forceorder@arr":
            return "!forceOrder@arr"
        if "@" not in s:
            return s.lower()
        sym, ev = s.split("@", 1)
        canon = {"aggtrade": "aggTrade", "forceorder": "forceOrder", "trade": "trade", "bookticker": "bookTicker",
                 "markprice": "markPrice"}.get(ev.lower(), ev)
        return f"{sym.lower()}@{canon}"

    def _subscribe(self, conn: _Conn, streams: Iterable[str]) -> None:
        for s in streams:
            name = self._canonical(s)
            key = name.lower()
            conn.streams[key] = name
            self.stats["subscriptions"] += 1
            if not conn.routed:
                continue
            self._subs.setdefault((conn.market, key), set()).add(conn)
            if key == "!forceorder@arr":
                feeds = [f for f in self.feeds.values() if f.t.market == conn.market]
            else:
                f = self.feeds.get((conn.market, key.split("@", 1)[0].upper()))
                feeds = [f] if f is not None and key in (f.agg_stream.lower(), f.liq_stream.lower()) else []
            for f in feeds:
                f.start()
                f.changed.set()

    def _unsubscribe(self, conn: _Conn, streams: Iterable[str]) -> None:
        for s in streams:
            key = self._canonical(s).lower()
            conn.streams.pop(key, None)
            self._subs.get((conn.market, key), set()).discard(conn)

    # -- WebSocket ------------------------------------------------------------------
    def _classify(self, path: str) -> tuple[str, bool, bool, list[str]] | None:
        """path -> (market, combined, routed, streams in the path) or None for 404."""
        market = self.market
        m = re.match(r"^/_(usdm|coinm|spot)(/.*)$", path)
        if m:
            market, path = m.group(1), m.group(2)
        parts = [p for p in path.split("/") if p]
        if not parts:
            return None
        prefix = None
        if parts[0] in ("market", "public", "private"):
            prefix, parts = parts[0], parts[1:]
            if market != "usdm" or not parts:
                return None
        if parts[0] == "stream" and len(parts) == 1:
            combined, in_path = True, []
        elif parts[0] == "ws":
            combined, in_path = False, parts[1:]
        else:
            return None
        routed = (prefix == "market") if market == "usdm" else True
        return market, combined, routed, in_path

    async def _ws_entry(self, request: web.Request) -> web.StreamResponse:
        cls = self._classify(request.path)
        if cls is None or request.headers.get("Upgrade", "").lower() != "websocket":
            self._log(request, 404)
            raise web.HTTPNotFound(text="Not Found")
        market, combined, routed, in_path = cls
        streams = list(in_path)
        if combined and request.query.get("streams"):
            streams += [s for s in request.query["streams"].split("/") if s]
        if len(streams) > self.max_streams:
            self._log(request, 400)
            raise web.HTTPBadRequest(text="too many streams")
        ws = web.WebSocketResponse(autoping=False, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        self._log(request, 101)
        conn = _Conn(self, ws, request, market, combined, routed)
        self.connections.append(conn)
        self.stats["connections"] += 1
        self._subscribe(conn, streams)
        tasks = [asyncio.create_task(conn.sender()), asyncio.create_task(conn.monitor())]
        try:
            await self._ws_reader(conn)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
            for key in list(conn.streams):
                self._subs.get((conn.market, key), set()).discard(conn)
            if conn.closed_reason is None:
                conn.closed_reason = "client_closed"
        return ws

    async def _ws_reader(self, conn: _Conn) -> None:
        ws = conn.ws
        while not ws.closed:
            msg = await ws.receive()
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
            now = time.monotonic()
            conn.incoming.append(now)
            while conn.incoming and now - conn.incoming[0] > 1.0:
                conn.incoming.popleft()
            if self.max_incoming_per_s and len(conn.incoming) > self.max_incoming_per_s:
                conn.closed_reason = "too_many_messages"
                self.stats["rate_limit_cuts"] += 1
                await ws.close(code=1008, message=b"Too many requests")
                return
            if msg.type == WSMsgType.PING:
                if self.faults.answer_pings:
                    await ws.pong(msg.data)
            elif msg.type == WSMsgType.PONG:
                conn.ping_outstanding = None
                conn.pongs_received += 1
                self.stats["pongs_received"] += 1
            elif msg.type == WSMsgType.TEXT:
                self._handle_method(conn, msg.data)
            elif msg.type == WSMsgType.BINARY:
                conn.send_control({"error": {"code": 3, "msg": "Invalid JSON: binary frame"}, "id": None})

    def _handle_method(self, conn: _Conn, text: str) -> None:
        try:
            req = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            conn.send_control({"error": {"code": 3, "msg": f"Invalid JSON: {e}"}, "id": None})
            return
        if not isinstance(req, dict):
            conn.send_control({"error": {"code": 3, "msg": "Invalid JSON: expected an object"}, "id": None})
            return
        rid = req.get("id")
        method = req.get("method")
        params = req.get("params", [])
        if rid is not None and not isinstance(rid, (int, str)):
            conn.send_control({"error": {"code": 1, "msg": "Invalid value type: id"}, "id": None})
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                conn.send_control({"error": {"code": 1, "msg": "Invalid value type: params"}, "id": rid})
                return
            if method == "SUBSCRIBE":
                if len(set(conn.streams) | {self._canonical(p).lower() for p in params}) > self.max_streams:
                    conn.send_control({"error": {"code": 2, "msg": "Invalid request: too many streams"}, "id": rid})
                    return
                conn.send_control({"result": None, "id": rid})
                self._subscribe(conn, params)
            else:
                conn.send_control({"result": None, "id": rid})
                self._unsubscribe(conn, params)
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send_control({"result": list(conn.streams.values()), "id": rid})
        elif method == "SET_PROPERTY":
            conn.send_control({"result": None, "id": rid})
        elif method == "GET_PROPERTY":
            conn.send_control({"result": conn.combined, "id": rid})
        else:
            conn.send_control({"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": rid})

    # -- REST -----------------------------------------------------------------------
    def _log(self, request: web.Request, status: int) -> None:
        self.requests.append({"method": request.method, "path": request.path, "query": dict(request.query),
                              "status": status, "range": request.headers.get("Range")})

    @staticmethod
    def _json(obj, status: int = 200, headers: dict | None = None, raw: bytes | None = None) -> web.Response:
        return web.Response(body=raw if raw is not None else orjson.dumps(obj), status=status,
                            content_type="application/json", headers=headers)

    def _make_rest(self, market: str, fn):
        async def handler(request: web.Request) -> web.Response:
            self.stats["rest_calls"] += 1
            fl = self.faults
            if fl.rest_fail_next:
                if fl.rest_fail_next > 0:
                    fl.rest_fail_next -= 1
                self.stats["rest_failures"] += 1
                st = fl.rest_fail_status
                hdr = {"Retry-After": str(fl.rest_retry_after)} if st in (418, 429) or st >= 500 else None
                body = {451: {"code": 0, "msg": _BINANCE_451_MSG},
                        429: {"code": -1003, "msg": "Too many requests; current limit of IP(127.0.0.1) is exceeded."},
                        418: {"code": -1003, "msg": "Way too many requests; IP(127.0.0.1) banned."}}.get(
                    st, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."})
                self._log(request, st)
                return self._json(body, st, hdr)
            resp = await fn(request, market)
            self._log(request, resp.status)
            return resp

        return handler

    async def _rest_ping(self, request, market):
        return self._json({})

    async def _rest_time(self, request, market):
        return self._json({"serverTime": int(time.time() * 1000)})

    def _use_weight(self, market: str, w: int) -> tuple[int, float | None]:
        now = time.monotonic()
        win = self.rest_weight_window
        st = self._weight.setdefault(market, [now, 0])
        if now - st[0] >= win:
            st[0], st[1] = now, 0
        st[1] += w
        limit = self.rest_weight_limit or WEIGHT_LIMIT_1M[market]
        if st[1] > limit:
            return int(st[1]), max(0.0, win - (now - st[0]))
        return int(st[1]), None

    async def _rest_aggtrades(self, request: web.Request, market: str) -> web.Response:
        q = request.query
        used, wait = self._use_weight(market, AGGTRADES_WEIGHT[market])
        hdr = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if wait is not None:
            hdr["Retry-After"] = str(max(1, math.ceil(wait)))
            self.stats["rest_failures"] += 1
            return self._json({"code": -1003, "msg": "Too many requests; request weight limit exceeded."}, 429, hdr)
        sym = q.get("symbol")
        if not sym:
            return self._json({"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, was empty/null, "
                               "or malformed."}, 400, hdr)
        feed = self.feeds.get((market, sym))
        if feed is None:
            return self._json({"code": -1121, "msg": "Invalid symbol."}, 400, hdr)
        ints = {}
        for name in ("fromId", "startTime", "endTime", "limit"):
            if name in q:
                try:
                    ints[name] = int(q[name])
                except ValueError:
                    return self._json({"code": -1100, "msg": f"Illegal characters found in parameter '{name}'; "
                                       "legal range is '^[0-9]{1,20}$'."}, 400, hdr)
        limit = ints.get("limit", 500)
        if not 1 <= limit <= 1000:
            return self._json({"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}, 400, hdr)
        start, end = ints.get("startTime"), ints.get("endTime")
        if start is not None and end is not None and (end < start or end - start > 3_600_000):
            return self._json({"code": -1127, "msg": "More than 1 hours between startTime and endTime."}, 400, hdr)
        cursor = feed.published
        if "fromId" in ints:
            v0 = feed.vindex_of_id(ints["fromId"])
            if start is not None:
                v0 = max(v0, feed.vindex_of_time(start))
        elif start is not None:
            v0 = feed.vindex_of_time(start)
        elif end is not None:
            v0 = max(0, min(cursor, feed.vindex_of_time(end + 1)) - limit)
        else:
            v0 = max(0, cursor - limit)
        v1 = min(cursor, v0 + limit)
        if end is not None:
            v1 = min(v1, feed.vindex_of_time(end + 1))
        rows = feed.rest_rows(v0, max(v0, v1))
        return self._json(None, 200, hdr, raw=b"[" + b",".join(rows) + b"]")

    # -- data.binance.vision -----------------------------------------------------------
    _VISION_RE = re.compile(
        r"^/data/(futures/um|futures/cm|spot)/(daily|monthly)/aggTrades/([A-Z0-9_]+)/"
        r"([A-Z0-9_]+)-aggTrades-(\d{4}-\d{2}(?:-\d{2})?)\.zip(\.CHECKSUM)?$")

    def vision_zip(self, market: str, symbol: str, period: str) -> bytes | None:
        """The aggTrades archive of ``period`` (``YYYY-MM-DD`` daily or ``YYYY-MM`` monthly), or None.

        Built from the real recorded trades of that UTC day/month: USD-M and COIN-M
        have the 7-column header layout with ``true``/``false``; spot has 8 columns, no
        header, ``True``/``False`` and microsecond times from 2025-01-01 (reference d6).
        """
        name = f"{symbol}-aggTrades-{period}"
        key = f"{market}/{name}"
        if key in self._vision_cache:
            return self._vision_cache[key]
        tab = self.tables.get((market, symbol))
        if tab is None or not len(tab):
            return None
        if len(period) == 10:
            d0 = dt.date.fromisoformat(period)
            d1 = d0 + dt.timedelta(days=1)
        else:
            d0 = dt.date.fromisoformat(period + "-01")
            d1 = (d0.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        t0 = int(dt.datetime(d0.year, d0.month, d0.day, tzinfo=dt.UTC).timestamp() * 1000)
        t1 = int(dt.datetime(d1.year, d1.month, d1.day, tzinfo=dt.UTC).timestamp() * 1000)
        sel = np.nonzero((tab.T >= t0) & (tab.T < t1))[0]
        if not len(sel):
            return None
        gkey = (tuple(tab.sources), len(tab), int(tab.a[0]), int(tab.a[-1]), market, symbol, period)
        if gkey in _VISION_ZIPS:
            self._vision_cache[key] = _VISION_ZIPS[gkey]
            return _VISION_ZIPS[gkey]
        a, p, q, f, l_ = tab.a[sel].tolist(), tab.p[sel].tolist(), tab.q[sel].tolist(), tab.f[sel].tolist(), \
            tab.l[sel].tolist()
        if market == "spot":
            mult = 1000 if d0 >= SPOT_MICROS_FROM else 1
            T = (tab.T[sel] * mult).tolist()
            m = ["True" if x else "False" for x in tab.m[sel].tolist()]
            M = ["True" if x else "False" for x in (tab.M[sel] if tab.M is not None else np.ones(len(sel), bool))]
            rows = [f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]},{r[7]}\n"
                    for r in zip(a, p, q, f, l_, T, m, M, strict=True)]
            text = "".join(rows)
        else:
            T = tab.T[sel].tolist()
            m = ["true" if x else "false" for x in tab.m[sel].tolist()]
            rows = [f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{r[6]}\n" for r in zip(a, p, q, f, l_, T, m, strict=True)]
            text = VISION_FUTURES_HEADER + "\n" + "".join(rows)
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
            info = zipfile.ZipInfo(name + ".csv", date_time=(d0.year, d0.month, d0.day, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, text, compresslevel=1)
        data = zbuf.getvalue()
        self._vision_cache[key] = data
        _VISION_ZIPS[gkey] = data
        return data

    async def _vision(self, request: web.Request) -> web.StreamResponse:
        fl = self.faults
        if fl.vision_fail_next:
            if fl.vision_fail_next > 0:
                fl.vision_fail_next -= 1
            self._log(request, fl.vision_fail_status)
            return web.Response(status=fl.vision_fail_status, text="Service Unavailable",
                                headers={"Retry-After": str(fl.rest_retry_after)})
        m = self._VISION_RE.match(request.path)
        data = None
        if m and m.group(3) == m.group(4):
            market = VISION_MARKET[m.group(1)]
            period = m.group(5)
            if (m.group(2) == "daily") == (len(period) == 10):
                data = self.vision_zip(market, m.group(3), period)
        if data is None:
            self._log(request, 404)
            key = request.path.lstrip("/")
            return web.Response(status=404, content_type="application/xml", text=(
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                f"<Message>The specified key does not exist.</Message><Key>{key}</Key></Error>"))
        zname = f"{m.group(4)}-aggTrades-{m.group(5)}.zip"
        if m.group(6):  # CHECKSUM
            self._log(request, 200)
            return web.Response(text=f"{hashlib.sha256(data).hexdigest()}  {zname}\n", content_type="text/plain")
        if zname in fl.vision_corrupt_files:
            b = bytearray(data)
            b[len(b) // 2] ^= 0xFF
            data = bytes(b)
        total = len(data)
        start, end = 0, total - 1
        status = 200
        rng = request.headers.get("Range")
        if rng:
            mr = re.match(r"^bytes=(\d*)-(\d*)$", rng.strip())
            if not mr or (not mr.group(1) and not mr.group(2)):
                self._log(request, 416)
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
            if mr.group(1):
                start = int(mr.group(1))
                end = int(mr.group(2)) if mr.group(2) else total - 1
            else:
                start = max(0, total - int(mr.group(2)))
            if start >= total:
                self._log(request, 416)
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
            end = min(end, total - 1)
            status = 206
        body = data[start : end + 1]
        hdr = {"Content-Length": str(len(body)), "Accept-Ranges": "bytes", "Content-Type": "application/zip",
               "ETag": '"' + hashlib.md5(data).hexdigest() + '"'}
        if status == 206:
            hdr["Content-Range"] = f"bytes {start}-{end}/{total}"
        self.stats["vision_downloads"] += 1
        self._log(request, status)
        resp = web.StreamResponse(status=status, headers=hdr)
        await resp.prepare(request)
        cut = fl.vision_cut_after_bytes
        if cut and fl.vision_cut_next and cut < len(body):
            if fl.vision_cut_next > 0:
                fl.vision_cut_next -= 1
            self.stats["vision_cuts"] += 1
            await resp.write(body[:cut])
            await asyncio.sleep(0.05)
            if request.transport is not None:
                request.transport.abort()
            return resp
        await resp.write(body)
        await resp.write_eof()
        return resp


async def serve_forever(srv: LocalBinance, on_ready=None) -> None:
    """Start ``srv`` and serve until cancelled (used by the CLI)."""
    async with srv:
        if on_ready is not None:
            on_ready(srv)
        await asyncio.Event().wait()
