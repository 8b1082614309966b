"""Decode Binance combined-stream frames (aggTrade, forceOrder) straight into columnar batches.

Frames are validated by msgspec Structs (typed fields, prices and quantities
given as JSON strings are converted to float), appended per symbol, and turned
into numpy columns once per :meth:`FrameDecoder.flush`.  A frame that is not
JSON, not an object, of an unexpected event type, or missing/invalid fields is
counted per kind in :attr:`FrameDecoder.counts`, logged once per kind, and
skipped; nothing raises.

Payload fields (reference d3, d4; developers.binance.com "Aggregate Trade
Streams", "Liquidation Order Streams"):

* aggTrade ``{e, E, s, a, p, q, f, l, T, m}``: ``a`` aggregate trade id, ``f``/``l``
  first/last trade id, ``T`` trade time (ms), ``m`` buyer is maker (= taker sell).
* forceOrder ``{e, E, o: {s, S, o, f, q, p, ap, X, l, z, T}}``: ``S`` side of the
  liquidation order (``SELL`` = a long was liquidated), ``p``/``q`` limit price /
  original qty, ``ap``/``z`` average fill price / filled accumulated qty
  (reference b11: use ``ap`` and ``z`` for the filled size), ``X`` status,
  ``T`` trade time.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pandas as pd

from compute.batch import TradeBatch

log = logging.getLogger(__name__)

__all__ = [
    "AggTradeMsg", "ForceOrderMsg", "ForceOrderDetail", "Envelope", "AggTrades", "Decoded",
    "FrameDecoder", "LIQUIDATION_COLUMNS", "liquidations_frame", "decode_rest_agg_trades",
]


class AggTradeMsg(msgspec.Struct, tag_field="e", tag="aggTrade"):
    """aggTrade payload; all fields required."""

    E: int  # noqa: N815 event time, ms
    s: str
    a: int
    p: float
    q: float
    f: int
    l: int  # noqa: E741
    T: int  # noqa: N815 trade time, ms
    m: bool


class ForceOrderDetail(msgspec.Struct):
    """The ``o`` object of a forceOrder payload."""

    s: str
    S: str  # noqa: N815 side
    o: str  # order type
    q: float
    p: float
    ap: float
    X: str  # noqa: N815 status
    z: float
    T: int  # noqa: N815
    f: str = ""  # time in force
    l: float = 0.0  # noqa: E741 last filled qty


class ForceOrderMsg(msgspec.Struct, tag_field="e", tag="forceOrder"):
    """forceOrder (liquidation snapshot) payload."""

    E: int  # noqa: N815
    o: ForceOrderDetail


class Envelope(msgspec.Struct):
    """A combined-stream frame ``{"stream", "data"}``, or a reply ``{"result", "id"}`` / error ``{"code", "msg"}``
    (``{"error": {...}, "id"}`` in the WebSocket-API style)."""

    stream: str = ""
    data: AggTradeMsg | ForceOrderMsg | None = None
    result: Any = msgspec.UNSET
    id: Any = None
    code: int | None = None
    msg: str | None = None
    error: Any = msgspec.UNSET
    e: str = ""  # set on a bare payload (raw-stream mode), which the combined-stream client does not expect


class _Kind(msgspec.Struct):
    e: str = ""


class _Loose(msgspec.Struct):
    stream: str = ""
    data: _Kind | None = None
    e: str = ""


class _RestAggTrade(msgspec.Struct):
    a: int
    p: float
    q: float
    f: int
    l: int  # noqa: E741
    T: int  # noqa: N815
    m: bool


_ENV = msgspec.json.Decoder(Envelope, strict=False)
_LOOSE = msgspec.json.Decoder(_Loose)
_REST = msgspec.json.Decoder(list[_RestAggTrade], strict=False)

#: Columns of the liquidation DataFrame (times UTC ms, prices quote currency, qty base asset / contracts).
LIQUIDATION_COLUMNS = (
    "symbol", "side", "order_type", "time_in_force", "price", "avg_price", "orig_qty", "filled_qty",
    "last_filled_qty", "status", "time", "event_time",
)


@dataclass(frozen=True, eq=False)
class AggTrades:
    """aggTrades of one symbol as columns, each shape (N,).

    ``agg_id``, ``first_id``, ``last_id``, ``time`` (trade time ``T``, UTC ms) and
    ``event_time`` (``E``, UTC ms) int64; ``price`` (quote currency), ``qty``
    (base asset; contracts on COIN-M) float64; ``is_buyer_maker`` bool (true =
    taker sell).  Order: as given (arrival order from the decoder).
    """

    symbol: str
    agg_id: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    first_id: np.ndarray
    last_id: np.ndarray
    time: np.ndarray
    event_time: np.ndarray
    is_buyer_maker: np.ndarray

    _COLS = ("agg_id", "price", "qty", "first_id", "last_id", "time", "event_time", "is_buyer_maker")

    def __len__(self) -> int:
        return len(self.agg_id)

    @classmethod
    def empty(cls, symbol: str = "") -> AggTrades:
        """Zero trades."""
        i, f = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(symbol, i, f, f, i, i, i, i, np.empty(0, bool))

    def take(self, index) -> AggTrades:
        """Select rows by mask, index array or slice."""
        return AggTrades(self.symbol, *(getattr(self, c)[index] for c in self._COLS))

    @classmethod
    def concat(cls, parts, symbol: str | None = None) -> AggTrades:
        """Concatenate in the order given."""
        parts = [p for p in parts if p is not None and len(p)]
        if not parts:
            return cls.empty(symbol or "")
        if len(parts) == 1:
            return parts[0]
        return cls(symbol if symbol is not None else parts[0].symbol,
                   *(np.concatenate([getattr(p, c) for p in parts]) for c in cls._COLS))

    def batch(self) -> TradeBatch:
        """As a :class:`compute.batch.TradeBatch` (trade_id = aggregate trade id)."""
        return TradeBatch(self.time, self.price, self.qty, self.is_buyer_maker, self.agg_id, self.symbol)

    def to_frame(self) -> pd.DataFrame:
        """DataFrame ``symbol, agg_trade_id, price, qty, first_trade_id, last_trade_id, time, is_buyer_maker``."""
        return pd.DataFrame({
            "symbol": self.symbol, "agg_trade_id": self.agg_id, "price": self.price, "qty": self.qty,
            "first_trade_id": self.first_id, "last_trade_id": self.last_id, "time": self.time,
            "is_buyer_maker": self.is_buyer_maker,
        })


def _valid_mask(price, qty, agg_id, first_id, last_id, time) -> np.ndarray:
    return (np.isfinite(price) & (price > 0) & np.isfinite(qty) & (qty > 0) & (agg_id >= 0)
            & (first_id >= 0) & (last_id >= first_id) & (time > 0))


def _columns(symbol: str, msgs: list) -> AggTrades:
    return AggTrades(
        symbol,
        np.array([d.a for d in msgs], dtype=np.int64),
        np.array([d.p for d in msgs], dtype=np.float64),
        np.array([d.q for d in msgs], dtype=np.float64),
        np.array([d.f for d in msgs], dtype=np.int64),
        np.array([d.l for d in msgs], dtype=np.int64),
        np.array([d.T for d in msgs], dtype=np.int64),
        np.array([d.E for d in msgs], dtype=np.int64),
        np.array([d.m for d in msgs], dtype=bool),
    )


def liquidations_frame(msgs) -> pd.DataFrame:
    """DataFrame with :data:`LIQUIDATION_COLUMNS` from ForceOrderMsg objects (empty frame if none)."""
    o = [m.o for m in msgs]
    return pd.DataFrame({
        "symbol": pd.array([x.s for x in o], dtype=object),
        "side": pd.array([x.S for x in o], dtype=object),
        "order_type": pd.array([x.o for x in o], dtype=object),
        "time_in_force": pd.array([x.f for x in o], dtype=object),
        "price": np.array([x.p for x in o], dtype=np.float64),
        "avg_price": np.array([x.ap for x in o], dtype=np.float64),
        "orig_qty": np.array([x.q for x in o], dtype=np.float64),
        "filled_qty": np.array([x.z for x in o], dtype=np.float64),
        "last_filled_qty": np.array([x.l for x in o], dtype=np.float64),
        "status": pd.array([x.X for x in o], dtype=object),
        "time": np.array([x.T for x in o], dtype=np.int64),
        "event_time": np.array([m.E for m in msgs], dtype=np.int64),
    }, columns=list(LIQUIDATION_COLUMNS))


@dataclass
class Decoded:
    """What one :meth:`FrameDecoder.flush` produced.

    Attributes
    ----------
    trades : dict[str, AggTrades]
        Per upper-case symbol, valid aggTrades in arrival order.
    liquidations : list[ForceOrderMsg]
        Liquidation snapshots in arrival order (see :meth:`liquidations_df`).
    replies : list[Envelope]
        Subscribe acknowledgements ``{"result": null, "id": n}`` and errors ``{"code", "msg"}``.
    frames : int
        Frames fed since the previous flush (all kinds).
    """

    trades: dict = field(default_factory=dict)
    liquidations: list = field(default_factory=list)
    replies: list = field(default_factory=list)
    frames: int = 0

    def liquidations_df(self) -> pd.DataFrame:
        """Liquidations as a DataFrame with :data:`LIQUIDATION_COLUMNS`."""
        return liquidations_frame(self.liquidations)


class FrameDecoder:
    """Accumulate raw WebSocket text frames and flush them as per-symbol columns.

    Usage::

        dec = FrameDecoder()
        for frame in frames:          # bytes or str, one WebSocket message each
            dec.feed(frame)
        out = dec.flush()             # Decoded: trades per symbol, liquidations, replies
        dec.counts                    # Counter: aggTrade, forceOrder, reply, malformed, unexpected:<e>, invalid:<e>

    ``feed`` never raises for bad input; it returns the kind it counted.
    """

    def __init__(self, name: str = "", logged: set | None = None):
        """``name`` prefixes log lines; ``logged`` is a set of kinds already logged, shareable between decoders."""
        self.name = name
        self.counts: Counter = Counter()
        self._agg: dict[str, list] = {}
        self._liq: list = []
        self._replies: list = []
        self._n_agg = 0
        self._frames = 0
        self._logged: set = set() if logged is None else logged

    def feed(self, frame: bytes | str) -> str:
        """Decode one frame into the buffers; return its kind (``aggTrade``, ``forceOrder``, ``reply``, ...)."""
        self._frames += 1
        try:
            env = _ENV.decode(frame)
        except (msgspec.MsgspecError, ValueError, TypeError) as e:
            return self._bad(frame, e)
        d = env.data
        if d.__class__ is AggTradeMsg:
            buf = self._agg.get(d.s)
            if buf is None:
                buf = self._agg[d.s] = []
            buf.append(d)
            self._n_agg += 1
            return "aggTrade"
        if d is not None:
            self._liq.append(d)
            self.counts["forceOrder"] += 1
            return "forceOrder"
        if env.code is not None or env.error is not msgspec.UNSET:
            self._replies.append(env)
            return self._count("error", f"server error reply: {_clip(frame)}")
        if env.result is not msgspec.UNSET:
            self._replies.append(env)
            self.counts["reply"] += 1
            return "reply"
        if env.e:
            return self._count(f"unexpected:bare:{env.e}", f"payload without envelope: {_clip(frame)}")
        return self._count("unexpected:empty", f"frame without data: {_clip(frame)}")

    def _bad(self, frame, err) -> str:
        try:
            loose = _LOOSE.decode(frame)
        except (msgspec.MsgspecError, ValueError, TypeError):
            return self._count("malformed", f"not a JSON object frame ({err}): {_clip(frame)}")
        e = loose.data.e if loose.data is not None else loose.e
        if e in ("aggTrade", "forceOrder") and loose.data is not None:
            return self._count(f"invalid:{e}", f"invalid {e} frame ({err}): {_clip(frame)}")
        return self._count(f"unexpected:{e or 'unknown'}", f"unexpected frame ({err}): {_clip(frame)}")

    def _count(self, kind: str, msg: str) -> str:
        self.counts[kind] += 1
        self._log_once(kind, msg)
        return kind

    def _log_once(self, kind: str, msg: str) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s%s (counted as %r; further ones are only counted)", f"[{self.name}] " if self.name else "",
                        msg, kind)

    @property
    def pending(self) -> int:
        """Frames fed since the last flush."""
        return self._frames

    def flush(self) -> Decoded:
        """Return everything fed since the previous flush as columns and reset the buffers."""
        out = Decoded(frames=self._frames)
        self.counts["aggTrade"] += self._n_agg
        for sym, msgs in self._agg.items():
            cols = _columns(sym.upper(), msgs)
            ok = _valid_mask(cols.price, cols.qty, cols.agg_id, cols.first_id, cols.last_id, cols.time)
            if not ok.all():
                bad = int((~ok).sum())
                self.counts["aggTrade"] -= bad
                self.counts["invalid:aggTrade"] += bad
                self._log_once("invalid:aggTrade", f"{bad} aggTrade(s) of {sym} with out-of-range values")
                cols = cols.take(ok)
            if len(cols):
                out.trades[cols.symbol] = cols
        liq = []
        for m in self._liq:
            o = m.o
            if math.isfinite(o.ap) and math.isfinite(o.z) and o.T > 0 and o.s:
                liq.append(m)
            else:
                self.counts["forceOrder"] -= 1
                self._count("invalid:forceOrder", "forceOrder with out-of-range values")
        out.liquidations = liq
        out.replies = self._replies
        self._agg, self._liq, self._replies, self._n_agg, self._frames = {}, [], [], 0, 0
        return out


def _clip(frame, n: int = 160) -> str:
    s = frame if isinstance(frame, str) else bytes(frame).decode("utf-8", "replace")
    return repr(s[:n]) + ("..." if len(s) > n else "")


def decode_rest_agg_trades(body: bytes, symbol: str) -> AggTrades:
    """Decode a REST ``aggTrades`` answer (JSON list of ``{a, p, q, f, l, T, m}``) into :class:`AggTrades`.

    ``event_time`` is set equal to ``time`` (REST has no event time).

    Raises
    ------
    ValueError
        If the body is not such a list or holds out-of-range values.
    """
    try:
        rows = _REST.decode(body)
    except (msgspec.MsgspecError, ValueError) as e:
        raise ValueError(f"bad aggTrades REST answer for {symbol}: {e}; body {_clip(body)}") from e
    a = np.array([r.a for r in rows], dtype=np.int64)
    p = np.array([r.p for r in rows], dtype=np.float64)
    q = np.array([r.q for r in rows], dtype=np.float64)
    f = np.array([r.f for r in rows], dtype=np.int64)
    ll = np.array([r.l for r in rows], dtype=np.int64)
    t = np.array([r.T for r in rows], dtype=np.int64)
    m = np.array([r.m for r in rows], dtype=bool)
    if not _valid_mask(p, q, a, f, ll, t).all():
        raise ValueError(f"aggTrades REST answer for {symbol} holds out-of-range values")
    return AggTrades(symbol.upper(), a, p, q, f, ll, t, t.copy(), m)
