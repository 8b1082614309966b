"""The loopback Binance: a server that speaks Binance's real market-data protocol.

It lets the whole product (WebSocket client, gap filler, recorder, backfill,
dashboard) run and be tested with no network. Everything it serves comes from
**real recorded Binance data** (``../shared/data/binance/`` or the bundled
``assets/recordings``), read by :mod:`.recording`; liquidations are real
``forceOrder`` frames when a recording holds them, else synthetic ones placed at
real trades (:func:`synthetic_liquidations_at_real_trades`, named so).

Modules, one per protocol:

:mod:`.ws`
    WebSocket streams (routed ``/market`` paths, combined and raw modes,
    SUBSCRIBE & co., pings, limits).
:mod:`.rest`
    ``/fapi/v1``, ``/dapi/v1``, ``/api/v3`` ``aggTrades``, ``ping``, ``time``.
:mod:`.archives`
    data.binance.vision ``aggTrades`` zips and CHECKSUMs, with ``Range``.
:mod:`.clock`
    The per-symbol exchange clock (speed, loop, retime, REST history).
:mod:`.faults`
    Fault injection knobs, changeable while running.
:mod:`.server`
    :class:`LocalBinance`, which puts them on one port.

Use::

    async with LocalBinance(data=[path]) as srv:       # tests
        srv.ws_base, srv.rest_base, srv.vision_base
        srv.faults.drop_after_frames = 100               # knobs change while running

    srv = LocalBinance.start_in_thread(data=[path])     # sync code
    ...; srv.stop()

CLI: ``python -m feeds local-server --port 0 --data FILE`` prints the base URLs.
"""

from .faults import Faults
from .recording import (
    BUNDLED_RECORDING,
    LIQUIDATION_MODE,
    MARKETS,
    SHARED_DATA,
    TradeTable,
    default_data_files,
    load_recording,
    merge_tables,
    synthetic_liquidations_at_real_trades,
)
from .server import LocalBinance, serve_forever

__all__ = [
    "BUNDLED_RECORDING",
    "LIQUIDATION_MODE",
    "MARKETS",
    "SHARED_DATA",
    "Faults",
    "LocalBinance",
    "TradeTable",
    "default_data_files",
    "load_recording",
    "merge_tables",
    "serve_forever",
    "synthetic_liquidations_at_real_trades",
]
