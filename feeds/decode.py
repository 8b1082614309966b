"""Decode Binance combined-stream frames (aggTrade, forceOrder) straight into columnar batches.

Frames are validated by msgspec Structs (typed and range-checked fields, prices
and quantities given as JSON strings are converted to float), appended per
upper-case symbol, and turned into numpy columns once per
:meth:`FrameDecoder.flush`.  No frame can wedge the decoder: ``feed`` and
``flush`` never raise, ``flush`` always empties the buffers, and a frame that
cannot become a valid row is counted by reason in :attr:`FrameDecoder.counts`,
logged once per kind, and skipped while the rest of its batch goes on.

Count keys (``FrameDecoder.counts``; every frame fed lands in exactly one once
flushed).  Accepted: ``aggTrade``, ``forceOrder``, ``reply`` (subscribe
acknowledgement), ``error`` (the server's error reply; kept in
:attr:`Decoded.replies`).  Rejected, ``<reason>`` or ``<reason>:<detail>`` with
the reasons of :data:`REJECT_REASONS`:

* ``too_large`` - longer than ``max_frame_bytes`` (:data:`MAX_FRAME_BYTES`,
  1 MiB; bytes, or characters of a str frame; real aggTrade frames are ~200
  bytes).  Checked before decoding.
* ``too_deep`` - JSON nesting deeper than ``max_depth`` (:data:`MAX_DEPTH`;
  Binance frames nest 3 deep).  Checked before decoding by a linear scan, so
  the decoder never recurses into it; a ``RecursionError`` is still caught.
* ``malformed`` - not JSON, not an object, not UTF-8, not str/bytes.
* ``invalid:aggTrade`` / ``invalid:forceOrder`` - the event type is known but
  fields are missing or of the wrong type.
* ``out_of_range:aggTrade`` / ``out_of_range:forceOrder`` - well-typed but a
  value cannot be a valid row: an id (``a``, ``f``, ``l``) negative or above
  2**63-1 (int64), a time (``E``, ``T``, UTC ms) not in 1 .. 2**63-1, a price or
  quantity not finite or <= 0, ``l < f``; for forceOrder a non-finite average
  price / filled quantity or an empty symbol.
* ``unexpected:<e>``, ``unexpected:bare:<e>``, ``unexpected:empty`` - an event
  type we do not decode, a payload without the combined-stream envelope, a
  frame without data (``<e>`` is clipped, and after 32 distinct ones becomes
  ``unexpected:other``, so hostile input cannot grow the counter).
* ``failed:<kind>`` - the decoder itself failed on the frame (a bug; logged
  with its traceback once).

Payload fields (reference d3, d4; developers.binance.com "Aggregate Trade
Streams", "Liquidation Order Streams"):

* aggTrade ``{e, E, s, a, p, q, f, l, T, m}``: ``a`` aggregate trade id, ``f``/``l``
  first/last trade id, ``T`` trade time (ms), ``m`` buyer is maker (= taker sell).
* forceOrder ``{e, E, o: {s, S, o, f, q, p, ap, X, l, z, T}}``: ``S`` side of the
  liquidation order (``SELL`` = a long was liquidated), ``p``/``q`` limit price /
  original qty, ``ap``/``z`` average fill price / filled accumulated qty
  (reference b11: use ``ap`` and ``z`` for the filled size), ``X`` status,
  ``T`` trade time.

The payload Structs and the result types (:class:`AggTrades`, :class:`Decoded`,
:func:`liquidations_frame`) are in :mod:`feeds.decode_types`; every public name is
importable from here.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from operator import attrgetter

import msgspec
import numpy as np

from .decode_types import (
    LIQUIDATION_COLUMNS,
    AggTradeMsg,
    AggTrades,
    Decoded,
    Envelope,
    FastEnvelope,
    ForceOrderDetail,
    ForceOrderMsg,
    LooseEnvelope,
    RestAggTrade,
    liquidations_frame,
)

log = logging.getLogger(__name__)

__all__ = [
    "AggTradeMsg", "ForceOrderMsg", "ForceOrderDetail", "Envelope", "AggTrades", "Decoded",
    "FrameDecoder", "LIQUIDATION_COLUMNS", "liquidations_frame", "decode_rest_agg_trades",
    "MAX_FRAME_BYTES", "MAX_DEPTH", "REJECT_REASONS", "rejected_counts", "json_depth",
]

#: Longest frame decoded (bytes, or characters of a str frame); longer ones are counted ``too_large``.
MAX_FRAME_BYTES = 1 << 20
#: Deepest JSON nesting decoded (objects and arrays); deeper frames are counted ``too_deep``.
MAX_DEPTH = 8
#: Why a frame was rejected: the part of a :attr:`FrameDecoder.counts` key before the first ``:``.
REJECT_REASONS = ("too_large", "too_deep", "malformed", "invalid", "out_of_range", "unexpected", "failed")

_ENV = msgspec.json.Decoder(Envelope, strict=False)
_LOOSE = msgspec.json.Decoder(LooseEnvelope)
_REST = msgspec.json.Decoder(list[RestAggTrade], strict=False)
#: The fast path: exactly a combined-stream aggTrade frame, same field types, ranges and conversions as
#: :data:`_ENV` (``strict=False``: prices and quantities given as strings become floats).
_FAST = msgspec.json.Decoder(FastEnvelope, strict=False).decode
#: Longest frame tried on the fast path (real aggTrade frames are ~200 bytes).
_FAST_MAX = 4096
_FIELDS = {c: attrgetter(c) for c in ("a", "p", "q", "f", "l", "T", "E", "m")}


def _valid_mask(price, qty, agg_id, first_id, last_id, time) -> np.ndarray:
    """Rows that can be trades: finite positive price and qty, ids >= 0, ``last >= first``, time > 0."""
    return (np.isfinite(price) & (price > 0) & np.isfinite(qty) & (qty > 0) & (agg_id >= 0)
            & (first_id >= 0) & (last_id >= first_id) & (time > 0))


def _columns(symbol: str, msgs: list) -> AggTrades:
    """One symbol's buffered payloads as :class:`AggTrades` columns (arrival order), one numpy call a column.

    ``msgs``: :class:`AggTradeMsg` and :class:`~feeds.decode_types.FastAggTradeMsg` objects (the
    same fields). Raises OverflowError/ValueError/TypeError on a value that cannot be converted.
    """
    n = len(msgs)

    def col(name: str, dtype) -> np.ndarray:
        return np.fromiter(map(_FIELDS[name], msgs), dtype, count=n)

    i8, f8 = np.int64, np.float64
    return AggTrades(symbol, col("a", i8), col("p", f8), col("q", f8), col("f", i8), col("l", i8), col("T", i8),
                     col("E", i8), col("m", bool))


_STEP = np.zeros(256, np.int8)
_STEP[[ord("{"), ord("[")]] = 1
_STEP[[ord("}"), ord("]")]] = -1
#: msgspec's messages for a value outside its Meta bounds or the representable range.
_RANGE_ERR = re.compile(r"Expected `(?:int|float)` [<>]|out of range")
_MAX_UNEXPECTED = 32  # distinct unexpected:<e> keys before they all go to unexpected:other


def json_depth(frame: bytes | str) -> int:
    """Deepest nesting of objects/arrays in ``frame``, brackets inside JSON strings not counted.

    One linear numpy pass (no recursion, no Python loop over the bytes); exact for
    valid JSON and never below what a JSON parser would descend before it stops
    at an error.
    """
    b = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else bytes(frame)
    a = np.frombuffer(b, np.uint8)
    if not len(a):
        return 0
    step = _STEP[a]
    q = np.flatnonzero(a == 34)  # '"'
    if len(q):
        # a quote is escaped when an odd number of backslashes directly precede it
        idx = np.arange(len(a))
        last_plain = np.maximum.accumulate(np.where(a == 92, -1, idx))  # last non-backslash index <= i
        prev = np.maximum(q - 1, 0)
        run = np.where(q > 0, prev - last_plain[prev], 0)
        real = q[run % 2 == 0]
        in_str = np.cumsum(np.bincount(real, minlength=len(a))[: len(a)]) % 2 == 1
        step = np.where(in_str, 0, step)
    return max(0, int(np.cumsum(step, dtype=np.int32).max()))


def rejected_counts(counts) -> Counter:
    """Sum frame counts (keys as in :attr:`FrameDecoder.counts`) by rejection reason (:data:`REJECT_REASONS`)."""
    out: Counter = Counter()
    for k, v in counts.items():
        reason = k.split(":", 1)[0]
        if reason in REJECT_REASONS and v:
            out[reason] += v
    return out


class FrameDecoder:
    """Accumulate raw WebSocket text frames and flush them as per-symbol columns.

    Usage::

        dec = FrameDecoder()
        for frame in frames:          # bytes or str, one WebSocket message each
            dec.feed(frame)
        out = dec.flush()             # Decoded: trades per symbol, liquidations, replies
        dec.counts                    # Counter per kind: aggTrade, forceOrder, reply, error, <reason>[:<detail>]
        dec.rejected                  # Counter per reason (REJECT_REASONS)

    ``feed`` and ``flush`` never raise, whatever they are given; a frame that
    cannot become a valid row is counted under its reason (module docstring) and
    skipped, the other frames of its batch are kept.  aggTrades and forceOrders
    are counted at :meth:`flush` (checks across fields run there), every other
    kind at :meth:`feed`; after a flush the counts add up to the frames fed.
    Symbols are upper-cased when fed, so ``btcusdt`` and ``BTCUSDT`` share one
    buffer and arrival order.

    Parameters
    ----------
    name : str
        Prefix of log lines.
    logged : set, optional
        Kinds already logged, shareable between decoders (log once per kind).
    max_frame_bytes : int
        Longer frames are counted ``too_large`` without being parsed (bytes, or
        characters of a str frame).
    max_depth : int
        Frames nested deeper are counted ``too_deep`` without being parsed.
    """

    def __init__(self, name: str = "", logged: set | None = None, max_frame_bytes: int = MAX_FRAME_BYTES,
                 max_depth: int = MAX_DEPTH):
        self.name = name
        self.max_frame_bytes = int(max_frame_bytes)
        self.max_depth = int(max_depth)
        self.counts: Counter = Counter()
        self._agg: dict[str, list] = {}  # symbol as received -> the buffer of its upper-case symbol
        self._by_sym: dict[str, list] = {}  # upper-case symbol -> AggTradeMsg list, arrival order
        self._liq: list = []
        self._replies: list = []
        self._frames = 0
        self._logged: set = set() if logged is None else logged
        self._fast_max = min(self.max_frame_bytes, _FAST_MAX)
        #: Frames decoded by the fast path, flushed so far (the rest went through the general decoder).
        self.fast = 0
        self._general_agg = 0  # aggTrades buffered by the general path since the last flush

    @property
    def rejected(self) -> Counter:
        """Frames rejected so far, per reason (:data:`REJECT_REASONS`; aggTrades once flushed)."""
        return rejected_counts(self.counts)

    def feed(self, frame: bytes | str) -> str:
        """Decode one frame into the buffers; return the kind it was counted as (never raises).

        ``aggTrade`` and ``forceOrder`` mean buffered: they are counted at :meth:`flush`.
        A frame that is exactly a combined-stream aggTrade (:class:`~feeds.decode_types.FastEnvelope`:
        the same fields, types and ranges, no other field) is decoded by one narrow typed msgspec
        call; anything that call refuses goes through the general decoder, which decides and counts.
        """
        cls = frame.__class__
        try:
            if (cls is bytes or cls is str) and len(frame) <= self._fast_max:
                d = _FAST(frame).data  # counted at flush: fast = buffered - those of the general path
                buf = self._agg.get(d.s)
                if buf is None:
                    buf = self._buffer(d.s)
                buf.append(d)
                return "aggTrade"
        except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
            pass  # anything else, or anything wrong: the general path decides and counts
        except Exception as e:  # noqa: BLE001 - feed never raises; a decoder bug costs one frame
            self._frames += 1
            return self._failed_feed(frame, e)
        return self._feed_general(frame, cls)

    def _feed_general(self, frame, cls) -> str:
        self._frames += 1
        try:
            if cls is not str and cls is not bytes:
                if isinstance(frame, str):
                    frame = str(frame)
                elif isinstance(frame, bytes | bytearray | memoryview):
                    frame = bytes(frame)
                else:
                    return self._count("malformed", f"frame of type {cls.__name__}")
            if len(frame) > self.max_frame_bytes:
                return self._count("too_large", f"frame of {len(frame):,} > {self.max_frame_bytes:,} bytes: "
                                                f"{_clip(frame)}")
            if frame.__class__ is str:
                opens = frame.count("{") + frame.count("[")
            else:
                opens = frame.count(b"{") + frame.count(b"[")
            return self._decode(frame, opens)
        except Exception as e:  # noqa: BLE001 - feed never raises; a decoder bug costs one frame
            return self._failed_feed(frame, e)

    def _failed_feed(self, frame, e: BaseException) -> str:
        kind = "failed:feed"
        self.counts[kind] += 1
        if kind not in self._logged:
            self._logged.add(kind)
            log.error("%sdecoding a frame failed (%s: %s; counted as %r): %s", self._prefix(), type(e).__name__,
                      e, kind, _clip(frame), exc_info=e)
        return kind

    def _decode(self, frame: bytes | str, opens: int) -> str:
        if opens > self.max_depth and json_depth(frame) > self.max_depth:
            return self._count("too_deep", f"frame nested deeper than {self.max_depth}: {_clip(frame)}")
        try:
            env = _ENV.decode(frame)
        except RecursionError:
            return self._count("too_deep", f"frame nested too deep for the parser: {_clip(frame)}")
        except (msgspec.MsgspecError, ValueError, TypeError) as e:
            return self._bad(frame, e)
        d = env.data
        if d.__class__ is AggTradeMsg:
            buf = self._agg.get(d.s)
            if buf is None:
                buf = self._buffer(d.s)
            buf.append(d)
            self._general_agg += 1
            return "aggTrade"
        if d is not None:
            self._liq.append(d)
            return "forceOrder"  # counted at flush, after its range check
        if env.code is not None or env.error is not msgspec.UNSET:
            self._replies.append(env)
            return self._count("error", f"server error reply: {_clip(frame)}")
        if env.result is not msgspec.UNSET:
            self._replies.append(env)
            self.counts["reply"] += 1
            return "reply"
        if env.e:
            return self._count(self._unexpected(f"bare:{env.e}"), f"payload without envelope: {_clip(frame)}")
        return self._count("unexpected:empty", f"frame without data: {_clip(frame)}")

    def _buffer(self, s: str) -> list:
        """The buffer of symbol ``s`` as received (shared by every spelling of its upper-case symbol)."""
        sym = s.upper()
        buf = self._by_sym.get(sym)
        if buf is None:
            buf = self._by_sym[sym] = []
        self._agg[s] = buf
        return buf

    def _bad(self, frame, err) -> str:
        try:
            loose = _LOOSE.decode(frame)
        except RecursionError:
            return self._count("too_deep", f"frame nested too deep for the parser: {_clip(frame)}")
        except (msgspec.MsgspecError, ValueError, TypeError):
            return self._count("malformed", f"not a JSON object frame ({err}): {_clip(frame)}")
        e = loose.data.e if loose.data is not None else loose.e
        if e in ("aggTrade", "forceOrder") and loose.data is not None:
            if isinstance(err, msgspec.ValidationError) and _RANGE_ERR.search(str(err)):
                return self._count(f"out_of_range:{e}", f"{e} frame with a value out of range ({err}): "
                                                        f"{_clip(frame)}")
            return self._count(f"invalid:{e}", f"invalid {e} frame ({err}): {_clip(frame)}")
        return self._count(self._unexpected(e or "unknown"), f"unexpected frame ({err}): {_clip(frame)}")

    def _unexpected(self, e: str) -> str:
        kind = f"unexpected:{e[:40]}"
        if kind not in self.counts and sum(k.startswith("unexpected:") for k in self.counts) >= _MAX_UNEXPECTED:
            return "unexpected:other"
        return kind

    def _count(self, kind: str, msg: str, n: int = 1) -> str:
        self.counts[kind] += n
        self._log_once(kind, msg)
        return kind

    def _prefix(self) -> str:
        return f"[{self.name}] " if self.name else ""

    def _log_once(self, kind: str, msg: str) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s%s (counted as %r; further ones are only counted)", self._prefix(), msg, kind)

    @property
    def pending(self) -> int:
        """Frames fed since the last flush."""
        return self._frames + sum(len(b) for b in self._by_sym.values()) - self._general_agg

    def flush(self) -> Decoded:
        """Return everything fed since the previous flush as columns and reset the buffers (never raises).

        aggTrades whose columns fail the cross-field check (``l < f``) are
        counted ``out_of_range:aggTrade``; a symbol whose columns cannot be
        built at all (a bug) is counted ``failed:aggTrade`` and logged, the
        other symbols are returned as usual.
        """
        by_sym, liq_in, replies = self._by_sym, self._liq, self._replies
        fast = sum(len(m) for m in by_sym.values()) - self._general_agg
        frames = self._frames + fast
        self.fast += fast
        self._agg, self._by_sym, self._liq, self._replies, self._frames, self._general_agg = {}, {}, [], [], 0, 0
        out = Decoded(frames=frames, replies=replies)
        for sym, msgs in by_sym.items():
            try:
                cols = _columns(sym, msgs)
                ok = _valid_mask(cols.price, cols.qty, cols.agg_id, cols.first_id, cols.last_id, cols.time)
                if not ok.all():
                    bad = int((~ok).sum())
                    self._count("out_of_range:aggTrade", f"{bad} aggTrade(s) of {sym} with out-of-range values", bad)
                    cols = cols.take(ok)
            except Exception as e:  # noqa: BLE001 - flush never raises; one symbol's batch is lost, counted
                self._failed("failed:aggTrade", len(msgs), f"columns of {len(msgs)} aggTrade(s) of {sym!r}", e)
                continue
            self.counts["aggTrade"] += len(cols)
            if len(cols):
                out.trades[sym] = cols
        for m in liq_in:
            try:
                o = m.o
                good = math.isfinite(o.ap) and math.isfinite(o.z) and bool(o.s)
            except Exception as e:  # noqa: BLE001
                self._failed("failed:forceOrder", 1, "a forceOrder", e)
                continue
            if good:
                out.liquidations.append(m)
                self.counts["forceOrder"] += 1
            else:
                self._count("out_of_range:forceOrder", "forceOrder with out-of-range values")
        return out

    def _failed(self, kind: str, n: int, what: str, err: BaseException) -> None:
        self.counts[kind] += n
        if kind not in self._logged:
            self._logged.add(kind)
            log.error("%sdecoding %s failed (%s: %s; counted as %r)", self._prefix(), what, type(err).__name__, err,
                      kind, exc_info=err)


def _clip(frame, n: int = 160) -> str:
    try:
        s = frame[: 4 * n + 4]
        s = s if isinstance(s, str) else bytes(s).decode("utf-8", "replace")
        long = len(frame) > len(s) or len(s) > n
    except Exception:  # noqa: BLE001 - only for log lines
        return f"<{type(frame).__name__}>"
    return repr(s[:n]) + ("..." if long else "")


def decode_rest_agg_trades(body: bytes, symbol: str) -> AggTrades:
    """Decode a REST ``aggTrades`` answer (JSON list of ``{a, p, q, f, l, T, m}``) into :class:`AggTrades`.

    ``event_time`` is set equal to ``time`` (REST has no event time).  The
    value ranges are those of the stream (module docstring, ``out_of_range``).

    Raises
    ------
    ValueError
        If the body is not such a list, holds out-of-range values (ids or times
        outside int64, negative ids, non-finite or non-positive prices and
        quantities, ``l < f``) or is nested too deep to parse.  Nothing else.
    """
    try:
        rows = _REST.decode(body)
        a = np.array([r.a for r in rows], dtype=np.int64)
        p = np.array([r.p for r in rows], dtype=np.float64)
        q = np.array([r.q for r in rows], dtype=np.float64)
        f = np.array([r.f for r in rows], dtype=np.int64)
        ll = np.array([r.l for r in rows], dtype=np.int64)
        t = np.array([r.T for r in rows], dtype=np.int64)
        m = np.array([r.m for r in rows], dtype=bool)
    except (msgspec.MsgspecError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:
        raise ValueError(f"bad aggTrades REST answer for {symbol}: {type(e).__name__}: {e}; body {_clip(body)}") \
            from e
    if not _valid_mask(p, q, a, f, ll, t).all():
        raise ValueError(f"aggTrades REST answer for {symbol} holds out-of-range values")
    return AggTrades(symbol.upper(), a, p, q, f, ll, t, t.copy(), m)
