"""Real recorded Binance data, read into per-symbol trade tables the emulator plays.

* raw ``aggTrade`` frames (cryptofeed recordings) are kept **verbatim**;
* recorded ``trade`` frames (hftbacktest recordings) become aggTrade fields with
  ``a = f = l = t`` (trade id), same ``p``, ``q``, ``T``, ``E``, ``m``;
* trades dumps (``id,price,qty,quote_qty,time,is_buyer_maker``), tardis trade
  exports and data.binance.vision aggTrades CSV/zip files become aggTrade fields
  too (``E = T`` when the source has no event time).

Insurance-fund prints (``"X":"INSURANCE_FUND"`` trades) are kept so trade ids stay
contiguous, although Binance's real aggTrade stream leaves them out (reference d3).

No real liquidation (``forceOrder``) recording exists. Unless a loaded file holds
real ``forceOrder`` frames for a symbol, liquidations are placed by
:func:`synthetic_liquidations_at_real_trades` at real trades; they are synthetic
and named so.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from compute.frames import to_ms_array

MARKETS = ("usdm", "coinm", "spot")
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The recording shipped with the repository (69 239 real USD-M BTCUSDT trades, 2020-02-22 00-12 UTC).
BUNDLED_RECORDING = REPO_ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"
#: The shared real-data folder (read-only); override with ``FLOWLENS_SHARED_DATA``.
SHARED_DATA = Path(os.environ.get("FLOWLENS_SHARED_DATA", str(REPO_ROOT.parent / "shared" / "data" / "binance")))
#: ``LocalBinance.liquidations`` value for synthetic liquidations at real trades.
LIQUIDATION_MODE = "synthetic_liquidations_at_real_trades"
_EVENT_RE = re.compile(rb'"e"\s*:\s*"(aggTrade|trade|forceOrder)"')
_SYM_FROM_NAME = re.compile(r"^([A-Z0-9_]+)-(aggTrades|trades)-")


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
        parsed = _frame_payload(line)
        if parsed is None:
            continue
        text, obj, data = parsed
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
        rows.setdefault((mk, sym), []).append(_trade_row(ev, data, raw))
    return [_table(key, rows.get(key, []), liqs.get(key, []), name) for key in set(rows) | set(liqs)]


def _frame_payload(line: bytes) -> tuple[str, object, dict] | None:
    """(frame text, decoded JSON, payload dict) of an aggTrade/trade/forceOrder line; None for any other line."""
    if _EVENT_RE.search(line) is None:
        return None
    j = line.find(b"{")
    text = line[j:].decode().strip()
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    data = obj.get("data", obj) if isinstance(obj, dict) else None
    if not isinstance(data, dict):
        return None
    return text, obj, data


def _trade_row(ev: str, data: dict, raw: str | None) -> tuple:
    """(a, f, l, T, E, m, p, q, M, raw) of an aggTrade payload, or of a trade payload as ``a = f = l = t``."""
    if ev == "aggTrade":
        a, f, l_ = int(data["a"]), int(data["f"]), int(data["l"])
    else:  # trade: a = f = l = t
        a = f = l_ = int(data["t"])
        raw = None
    return (a, f, l_, int(data["T"]), int(data.get("E", data["T"])), bool(data["m"]), str(data["p"]),
            str(data["q"]), bool(data.get("M", True)), raw)


def _table(key: tuple[str, str], r: list[tuple], liq: list[dict], name: str) -> TradeTable:
    """The :class:`TradeTable` of one (market, symbol) from its :func:`_trade_row` rows and forceOrder payloads."""
    mk, sym = key
    cols = list(zip(*r, strict=True)) if r else [()] * 10
    raw = np.array(cols[9], dtype=object)
    return TradeTable(
        mk, sym,
        np.array(cols[0], np.int64), np.array(cols[1], np.int64), np.array(cols[2], np.int64),
        np.array(cols[3], np.int64), np.array(cols[4], np.int64), np.array(cols[5], bool),
        np.array(cols[6], dtype=object), np.array(cols[7], dtype=object),
        np.array(cols[8], bool) if mk == "spot" else None,
        raw if any(x is not None for x in raw) else None,
        liq, [name],
    )


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
            t, _ = to_ms_array(g["timestamp"].astype(np.int64).to_numpy())  # tardis: µs
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
        t, _ = to_ms_array(v[:, 5].astype(np.int64))  # µs in spot dumps from 2025
        m = _bool_col(df.iloc[:, 6])
        M = _bool_col(df.iloc[:, 7]) if v.shape[1] > 7 else np.ones(len(a), bool)
    else:  # trades dump: id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]
        a = v[:, 0].astype(np.int64)
        f, l_ = a.copy(), a.copy()
        t, _ = to_ms_array(v[:, 4].astype(np.int64))  # µs in spot dumps from 2025
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

