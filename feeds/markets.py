"""Binance market endpoints (WebSocket streams, REST aggTrades, data.binance.vision) per market.

Source: shared/reference/orderflow-and-binance.md d1-d3, d6.  Since 2026-04-23
USD-M futures streams live under **routed paths**: ``@aggTrade`` and
``@forceOrder`` are on ``wss://fstream.binance.com/market/stream``; a client on
the old unrouted ``/stream`` path is acknowledged but silently receives no
trades.  COIN-M (``dstream``) and spot were not split.

Overrides: ``ws_base`` / ``rest_base`` may be a bare origin
(``ws://127.0.0.1:8765``), to which the market's path is appended, or a full
URL whose path already ends in ``/stream`` or ``/ws`` (used as it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Market", "MARKETS", "get_market", "ws_stream_url", "rest_url", "stream_names"]


@dataclass(frozen=True)
class Market:
    """Endpoints and limits of one Binance market.

    Attributes
    ----------
    name : str
        ``usdm`` (USD-M futures), ``coinm`` (COIN-M futures) or ``spot``.
    ws_base : str
        Default WebSocket origin.
    ws_path : str
        Combined-stream path (``/market/stream`` on USD-M: the routed path).
    rest_base : str
        Default REST origin.
    agg_trades_path : str
        REST path of the aggregate-trades endpoint (``fromId``, ``limit`` <= 1000).
    agg_trades_weight : int
        Request weight of one aggTrades call (Binance docs: 20 on futures, 2 on spot).
    weight_limit_1m : int
        Request-weight budget per minute per IP (futures 2400, spot 6000).
    liquidations : bool
        Whether ``<symbol>@forceOrder`` exists (futures only).
    vision_prefix : str
        data.binance.vision folder, e.g. ``data/futures/um``.
    """

    name: str
    ws_base: str
    ws_path: str
    rest_base: str
    agg_trades_path: str
    agg_trades_weight: int
    weight_limit_1m: int
    liquidations: bool
    vision_prefix: str


MARKETS: dict[str, Market] = {
    "usdm": Market("usdm", "wss://fstream.binance.com", "/market/stream", "https://fapi.binance.com",
                   "/fapi/v1/aggTrades", 20, 2400, True, "data/futures/um"),
    "coinm": Market("coinm", "wss://dstream.binance.com", "/stream", "https://dapi.binance.com",
                    "/dapi/v1/aggTrades", 20, 2400, True, "data/futures/cm"),
    "spot": Market("spot", "wss://stream.binance.com:9443", "/stream", "https://api.binance.com",
                   "/api/v3/aggTrades", 2, 6000, False, "data/spot"),
}


def get_market(market: str | Market) -> Market:
    """Return the :class:`Market` for ``usdm``, ``coinm`` or ``spot``.

    Raises
    ------
    ValueError
        For any other name.
    """
    if isinstance(market, Market):
        return market
    try:
        return MARKETS[market.lower()]
    except KeyError:
        raise ValueError(f"unknown market {market!r}; expected one of {sorted(MARKETS)}") from None


def stream_names(symbols, market: str | Market, liquidations: bool = True) -> list[str]:
    """Stream names for ``symbols``: ``<symbol>@aggTrade`` (and ``<symbol>@forceOrder`` on futures).

    Symbols are lower-cased as Binance requires.
    """
    m = get_market(market)
    out = []
    for s in symbols:
        s = s.lower()
        out.append(f"{s}@aggTrade")
        if liquidations and m.liquidations:
            out.append(f"{s}@forceOrder")
    return out


def _base_has_path(base: str) -> bool:
    path = urlsplit(base).path.rstrip("/")
    return path.endswith("/stream") or path.endswith("/ws")


def ws_stream_url(market: str | Market, streams=(), ws_base: str | None = None) -> str:
    """Combined-stream URL, e.g. ``wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade``.

    With no ``streams`` the bare stream URL is returned (subscribe by message).
    """
    m = get_market(market)
    base = (ws_base or m.ws_base).rstrip("/")
    url = base if _base_has_path(base) else base + m.ws_path
    streams = list(streams)
    return f"{url}?streams={'/'.join(streams)}" if streams else url


def rest_url(market: str | Market, rest_base: str | None = None) -> str:
    """Full aggTrades REST URL, e.g. ``https://fapi.binance.com/fapi/v1/aggTrades``."""
    m = get_market(market)
    base = (rest_base or m.rest_base).rstrip("/")
    return base if urlsplit(base).path.endswith("aggTrades") else base + m.agg_trades_path
