"""Fault injection knobs of the loopback Binance (WebSocket, REST and archives)."""

from __future__ import annotations

import param


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
    inject_frames = param.Dict({}, doc=(
        "{N: frame}: right after the N-th data frame of each connection, also send this frame (str as a text "
        "frame, bytes as a binary one), e.g. a poisoned aggTrade. {}: off."))
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
                setattr(self, name, p.default if not isinstance(p.default, list | dict) else type(p.default)())

