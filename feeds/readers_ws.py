"""Readers of raw Binance WebSocket recordings (hftbacktest, cryptofeed, JSON lines) into trade batches.

Split out of :mod:`feeds.readers` (which re-exports :func:`read_ws_recording` and
:func:`agg_trade_frames`).  Frames in the combined-stream envelope
``{"stream":..,"data":..}`` or bare payloads; ``aggTrade`` and ``trade`` events
become trades (trade time ``T``, UTC ms), everything else is counted and skipped.
JSON is decoded with msgspec, one call for the whole file where possible.
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import numpy as np

from .readers_base import ReadResult, ReadStats, finish_batch, open_member, sniff_format, to_ms

__all__ = ["agg_trade_frames", "read_ws_recording"]


class _Envelope(msgspec.Struct):
    """A recorded line: combined-stream envelope, bare payload, or REST snapshot."""

    stream: str = ""
    data: msgspec.Raw = msgspec.Raw(b"")
    e: str = ""
    lastUpdateId: int | None = None  # noqa: N815 (Binance field name)


class _AggTradeMsg(msgspec.Struct):
    s: str = ""
    a: int = -1
    p: float = math.nan
    q: float = math.nan
    T: int = -1  # noqa: N815
    m: bool | None = None


class _TradeMsg(msgspec.Struct):
    s: str = ""
    t: int = -1
    p: float = math.nan
    q: float = math.nan
    T: int = -1  # noqa: N815
    m: bool | None = None


_ENV_LIST = msgspec.json.Decoder(list[_Envelope])
_ENV_ONE = msgspec.json.Decoder(_Envelope)
_AGG_LIST = msgspec.json.Decoder(list[_AggTradeMsg], strict=False)
_TRADE_LIST = msgspec.json.Decoder(list[_TradeMsg], strict=False)
_AGG_ONE = msgspec.json.Decoder(_AggTradeMsg, strict=False)
_TRADE_ONE = msgspec.json.Decoder(_TradeMsg, strict=False)


def _channel(stream: str) -> str:
    """``btcusdt@depth@0ms`` -> ``depth@0ms``; ``!forceOrder@arr`` -> ``forceOrder@arr``."""
    _, _, ch = stream.partition("@")
    return ch or stream


def _decode_all(parts: list[bytes], many: msgspec.json.Decoder, one: msgspec.json.Decoder, stats: ReadStats):
    """Decode a list of JSON texts in one call; fall back to one by one (counting malformed) on error.

    The one-call result is used only if it has exactly one item per text (a line
    holding ``a},{b`` could otherwise shift the alignment); otherwise, and on any
    error, each text is decoded on its own.
    """
    if not parts:
        return []
    try:
        out = many.decode(b"[" + b",".join(parts) + b"]")
        if len(out) == len(parts):
            return out
    except (msgspec.MsgspecError, ValueError):
        pass
    out = []
    for p in parts:
        try:
            out.append(one.decode(p))
        except (msgspec.MsgspecError, ValueError):
            stats.skipped["malformed"] += 1
            out.append(None)
    return out


def read_ws_recording(path, symbol: str | None = None) -> ReadResult:
    """Read a raw WebSocket recording (hftbacktest, cryptofeed or JSON lines).

    Takes ``aggTrade`` frames (id ``a``) and ``trade`` frames (id ``t``; as an
    aggTrade ``a = f = l = t``); uses the trade time ``T`` (not ``E``, reference
    b1).  Other frames are counted per channel in ``stats.events``; REST
    snapshots, header and blank lines and malformed frames are counted in
    ``stats.skipped``.  ``symbol`` keeps one symbol (others are counted as
    ``other_symbol``); otherwise one batch per symbol.

    Returns
    -------
    ReadResult: ``batches`` symbol -> TradeBatch sorted by id, and stats.

    Raises
    ------
    ValueError
        If the file is not a WebSocket recording (or in no known layout).
    FileNotFoundError
        If it does not exist.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if not fmt.startswith("ws-"):
        raise ValueError(f"{path}: not a WebSocket recording (sniffed {fmt})")
    f, _ = open_member(path)
    with f:
        raw = f.read()
    stats = ReadStats(path=str(path), format=fmt)
    parts = _frame_texts(raw, stats)
    agg_parts, trade_parts = _trade_payloads(parts, _decode_all(parts, _ENV_LIST, _ENV_ONE, stats), stats)
    cols = _trade_columns(agg_parts, trade_parts, symbol, stats)
    return ReadResult(_batches(cols, stats), stats)


def _frame_texts(raw: bytes, stats: ReadStats) -> list[bytes]:
    """The JSON text of every line (from its first ``{``); header and blank lines are counted and skipped."""
    parts = []
    for line in raw.splitlines():
        i = line.find(b"{")
        if i < 0:
            stats.skipped["blank" if not line.strip() else "header"] += 1
            continue
        stats.rows += 1
        parts.append(line[i:].rstrip(b"\r"))
    return parts


def _trade_payloads(parts: list[bytes], envs: list, stats: ReadStats) -> tuple[list[bytes], list[bytes]]:
    """The payload texts of the ``aggTrade`` and of the ``trade`` frames; every other frame is counted."""
    agg_parts, trade_parts = [], []
    for text, env in zip(parts, envs, strict=True):
        if env is None:
            continue
        if len(env.data):
            kind, payload = (_channel(env.stream) if env.stream else ""), bytes(env.data)
        elif env.lastUpdateId is not None:
            stats.skipped["snapshot"] += 1
            continue
        elif env.e:
            kind, payload = env.e, text  # bare payload (ws mode)
        else:
            stats.events["unknown"] += 1
            continue
        if kind == "aggTrade":
            agg_parts.append(payload)
        elif kind == "trade":
            trade_parts.append(payload)
        else:
            stats.events[kind or "unknown"] += 1
    return agg_parts, trade_parts


def _trade_columns(agg_parts: list[bytes], trade_parts: list[bytes], symbol: str | None,
                   stats: ReadStats) -> dict[str, list[list]]:
    """Decode the payloads: symbol -> [ids, times T, prices, quantities, is_buyer_maker] lists, valid rows only."""
    cols: dict[str, list] = {}
    for kind, decoded in (
        ("aggTrade", _decode_all(agg_parts, _AGG_LIST, _AGG_ONE, stats)),
        ("trade", _decode_all(trade_parts, _TRADE_LIST, _TRADE_ONE, stats)),
    ):
        for msg in decoded:
            if msg is None:
                continue
            tid = msg.a if kind == "aggTrade" else msg.t
            if tid < 0 or msg.T < 0 or msg.m is None or not (msg.p > 0) or not (msg.q >= 0) or not msg.s:
                stats.skipped["malformed"] += 1
                continue
            stats.events[kind] += 1
            sym = msg.s.upper()
            if symbol is not None and sym != symbol.upper():
                stats.skipped["other_symbol"] += 1
                continue
            c = cols.setdefault(sym, [[], [], [], [], []])
            c[0].append(tid)
            c[1].append(msg.T)
            c[2].append(msg.p)
            c[3].append(msg.q)
            c[4].append(msg.m)
    return cols


def _batches(cols: dict[str, list[list]], stats: ReadStats) -> dict:
    """One sorted, de-duplicated :class:`TradeBatch` per symbol; sets ``stats.time_unit``."""
    units = set()
    out = {}
    for sym, (tid, t, p, q, m) in cols.items():
        time, unit = to_ms(np.array(t, dtype=np.int64))
        units.add(unit)
        out[sym] = finish_batch(sym, np.array(tid, dtype=np.int64), time, np.array(p, dtype=np.float64),
                                np.array(q, dtype=np.float64), np.array(m, dtype=bool), stats)
    stats.time_unit = units.pop() if len(units) == 1 else ("mixed" if units else "ms")
    return out


class _TradeFrame(msgspec.Struct):
    e: str
    E: int  # noqa: N815
    s: str
    t: int
    p: msgspec.Raw
    q: msgspec.Raw
    T: int  # noqa: N815
    m: bool


class _TradeEnvelope(msgspec.Struct):
    stream: str
    data: _TradeFrame


_TRADE_ENV = msgspec.json.Decoder(_TradeEnvelope)


def agg_trade_frames(path, symbol: str | None = None) -> list[bytes]:
    """The real trade frames of a raw WebSocket recording as combined-stream aggTrade frames, in recorded order.

    ``aggTrade`` frames are returned verbatim (the JSON text as recorded);
    ``trade`` frames are re-encoded as aggTrade frames with ``a = f = l = t``
    (``E``, ``T``, ``s``, ``m`` kept, the ``p``/``q`` strings copied verbatim),
    under the stream name ``<symbol>@aggTrade``.  Other frames are left out.
    ``symbol`` keeps one symbol.  Used to serve and benchmark realistic frames.

    Returns
    -------
    list of bytes, one frame each.
    """
    path = Path(path)
    f, _ = open_member(path)
    with f:
        raw = f.read()
    want = symbol.upper() if symbol else None
    out = []
    for line in raw.splitlines():
        i = line.find(b"{")
        if i < 0:
            continue
        text = line[i:]
        head = text[:80]
        if b"@aggTrade" in head:
            if want is None or _ENV_ONE.decode(text).stream.split("@")[0].upper() == want:
                out.append(bytes(text))
        elif b"@trade" in head:
            env = _TRADE_ENV.decode(text)
            d = env.data
            if want is not None and d.s.upper() != want:
                continue
            out.append(
                b'{"stream":"%s@aggTrade","data":{"e":"aggTrade","E":%d,"a":%d,"s":"%s","p":%s,"q":%s,'
                b'"f":%d,"l":%d,"T":%d,"m":%s}}'
                % (d.s.lower().encode(), d.E, d.t, d.s.encode(), bytes(d.p), bytes(d.q), d.t, d.t, d.T,
                   b"true" if d.m else b"false")
            )
    return out
