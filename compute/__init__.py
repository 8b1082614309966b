"""flowlens compute: pure numpy/pandas order-flow analytics (no I/O, no Panel).

Modules: :mod:`compute.batch` (TradeBatch), :mod:`compute.grid` (rows),
:mod:`compute.profile` (volume profile / VPVR), :mod:`compute.candles` (OHLCV),
:mod:`compute.result` (ProfileResult, POC / value-area helpers).
Command line: ``python -m compute profile FILE --tick T --row-size R``.
"""
