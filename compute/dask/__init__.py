"""Scale-out: every profile kind, the footprint, candles and the heat-map over a Dask DataFrame.

The functions here take a Dask DataFrame (one partition per file from
:func:`feeds.history.load_history`, or any frame with the columns ``time`` (int64
UTC ms), ``price``, ``qty``, ``is_buyer_maker`` and optionally ``trade_id`` and
``symbol``) — a pandas DataFrame is accepted too and cut into partitions — and
return **the same objects as the in-memory functions** of :mod:`compute`, equal
bit for bit to computing them on ``ddf.compute()``:

* **profiles** (``volume``, ``split``, ``tpo``, developing POC/VAH/VAL): each partition
  is reduced to per-row integer sums (volume and taker-buy volume in units of
  ``10**-qty_decimals``, :func:`compute.result.qty_to_int`; trade counts; TPO
  (block, row) presence pairs); the sums are added across partitions (integer
  addition is exact and order-free) and POC/VAH/VAL, value area and percentiles are
  taken from them by :func:`compute.result.build_result`, exactly as the in-memory code does.
* **recency** weights are floats (``qty * 2**(-age / half_life)``): the per-row sums
  are accumulated partition after partition in time order (a chain of tasks, each
  partition prepared in parallel), which reproduces the in-memory summation order
  and so its exact floats.
* **footprint** and **candles** depend only on each candle's own trades, except CVD
  and gaps: every partition computes the candles wholly inside it with
  :func:`compute.footprint.footprint` / :func:`compute.candles.candles`; the trades
  of its first and last candle (which may continue in the neighbouring partition)
  are returned raw, merged per candle and computed once more; gap flags, missing
  trade ids, CVD and its segments are then recomputed over all candles with the
  rules of :mod:`compute.footprint`, from exact integers.
* **heat-map**: datashader aggregates the Dask DataFrame partition by partition
  (``Canvas.points`` on Dask). Volume and delta are summed as integer-valued floats
  (``qty * 10**qty_decimals``, exact below 2**53) and divided once at the end, so
  the result does not depend on how the rows are partitioned (``exact=True``).

Order-dependent results (recency, footprint, candles) require partitions in time
order — no partition may hold a trade earlier than the previous partition's last
trade — which :func:`~feeds.history.load_history` gives per symbol; otherwise
ValueError is raised. Frames holding several symbols need ``symbol=``.

Scheduling: with ``client`` (a ``dask.distributed.Client``) the tasks run on its
cluster; without, on the process's current distributed client when there is one
(``engine.cluster.dask_client()`` makes one: a ``LocalCluster`` of worker processes, or
the scheduler at ``DASK_SCHEDULER_ADDRESS``), else on the local threaded scheduler.
``progress=True`` shows a tqdm bar over the tasks.
"""

from __future__ import annotations

from . import _need  # noqa: F401 - first: without Dask, a message naming the research extra
from .candles import candles, footprint
from .heatmap import heatmap
from .partitions import PANDAS_CHUNK_ROWS, as_dask, bounds
from .profiles import developing_levels, profile, recency_profile, split_profile, tpo_profile, volume_profile

__all__ = [
    "PANDAS_CHUNK_ROWS", "as_dask", "bounds", "candles", "developing_levels", "footprint", "heatmap", "profile", "recency_profile",
    "split_profile", "tpo_profile", "volume_profile",
]
