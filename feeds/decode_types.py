"""What the Binance frame decoder reads and produces: the msgspec payload Structs and the columnar results.

Split out of :mod:`feeds.decode` (which re-exports every public name here).  The
Structs validate the wire format (reference d3, d4; field meanings in the
:mod:`feeds.decode` docstring): ids int64 and not negative, times UTC ms int64
and positive, prices (quote currency) and quantities (base asset; contracts on
COIN-M) finite and > 0, given as JSON strings and converted to float.  The
results are :class:`AggTrades` columns, the liquidation DataFrame
(:data:`LIQUIDATION_COLUMNS`) and :class:`Decoded` (one flush).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import pandas as pd

from compute.batch import TradeBatch

__all__ = [
    "AggTradeMsg", "AggTrades", "Decoded", "Envelope", "EventKind", "FastAggTradeMsg", "FastEnvelope",
    "ForceOrderDetail", "ForceOrderMsg",
    "LIQUIDATION_COLUMNS", "LooseEnvelope", "RestAggTrade", "liquidations_frame",
]

_INT64_MAX = 2**63 - 1
_Id = Annotated[int, msgspec.Meta(ge=0, le=_INT64_MAX)]  # trade ids: int64, not negative
_Ms = Annotated[int, msgspec.Meta(ge=1, le=_INT64_MAX)]  # UTC ms: int64, positive
_Pos = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # finite and > 0 (rejects nan, inf)


class _AggTradeFields(msgspec.Struct):
    """The fields of an aggTrade payload and their ranges, all required (the two decoders' Structs share them)."""

    E: _Ms  # noqa: N815 event time, ms
    s: str
    a: _Id
    p: _Pos
    q: _Pos
    f: _Id
    l: _Id  # noqa: E741
    T: _Ms  # noqa: N815 trade time, ms
    m: bool


class AggTradeMsg(_AggTradeFields, tag_field="e", tag="aggTrade"):
    """aggTrade payload; all fields required."""


class FastAggTradeMsg(_AggTradeFields, forbid_unknown_fields=True, gc=False):
    """The aggTrade payload of the decoder's fast path: :class:`AggTradeMsg`'s fields and ranges, nothing else.

    ``e`` must be ``"aggTrade"``; spot's ``M`` (ignore) is allowed; any other field makes the
    frame go to the general decoder. Not tracked by the garbage collector (no reference cycles
    possible), so buffering thousands of them never triggers a collection.
    """

    e: Literal["aggTrade"]
    M: bool = False  # noqa: N815 spot's "ignore" flag


class FastEnvelope(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A combined-stream aggTrade frame ``{"stream", "data"}`` and nothing else (the fast path's whole schema)."""

    stream: str
    data: FastAggTradeMsg


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
    T: _Ms  # noqa: N815
    f: str = ""  # time in force
    l: float = 0.0  # noqa: E741 last filled qty


class ForceOrderMsg(msgspec.Struct, tag_field="e", tag="forceOrder"):
    """forceOrder (liquidation snapshot) payload."""

    E: _Ms  # noqa: N815
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


class EventKind(msgspec.Struct):
    """Just the event type ``e`` of a payload (to tell an invalid aggTrade from an unexpected event)."""

    e: str = ""


class LooseEnvelope(msgspec.Struct):
    """An envelope read loosely: only ``stream``, the payload's ``e`` and a bare payload's ``e``."""

    stream: str = ""
    data: EventKind | None = None
    e: str = ""


class RestAggTrade(msgspec.Struct):
    """One row of a REST ``aggTrades`` answer ``{a, p, q, f, l, T, m}`` (no event time), ranges as the stream's."""

    a: _Id
    p: _Pos
    q: _Pos
    f: _Id
    l: _Id  # noqa: E741
    T: _Ms  # noqa: N815
    m: bool

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
