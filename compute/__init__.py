"""flowlens compute: pure numpy/pandas order-flow analytics (no I/O, no Panel).

Contract: :mod:`compute.batch` (TradeBatch), :mod:`compute.grid` (rows, auto row size).

Profiles (each takes a DataFrame or TradeBatch and returns a result with ``levels``,
summary values and ``to_dict()``; times UTC ms, prices quote currency, qty base asset):

* :func:`compute.profile.volume_profile` — ``kind="volume"`` (VPVR; POC/VAH/VAL, single or dual VA);
* :func:`compute.timeweighted.recency_profile` — ``kind="recency"`` (``qty * 2**(-age/half_life)``);
* :func:`compute.timeweighted.tpo_profile` — ``kind="tpo"`` (TPO counts per epoch-aligned block);
* :func:`compute.split.split_profile` — ``kind="split"`` (first half vs second half);
* :func:`compute.levels.percentile_levels` / :func:`compute.levels.developing_levels`.

:class:`compute.incremental.ProfileStore` answers all of them incrementally, identical to the
functions on the raw trades of the range. :mod:`compute.candles` builds OHLCV candles
(one pass or :class:`~compute.candles.CandleAccumulator`). :mod:`compute.result` holds
:class:`~compute.result.ProfileResult` and the POC / value-area helpers.

Alert rules (issue 18): :mod:`compute.alerts` — :func:`~compute.alerts.parse_rule` (strict JSON rules, see
:mod:`compute.alert_rules`), :func:`~compute.alerts.evaluate` (a rule's firings after a trade id, the one engine of
the server, CLI and notebooks), :func:`~compute.alerts.evaluate_many` and :func:`~compute.alerts.backtest`.

Command line: ``python -m compute profile FILE --tick T --row-size R [--kind ...]``; ``python -m compute alerts FILE
--rule JSON``.
"""
