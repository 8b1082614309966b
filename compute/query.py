"""One query, from the page, the REST API, the CLI and the notebooks down to the engines.

A :class:`ProfileQuery` names a symbol (with its market), a kind of :mod:`compute.kinds`,
a half-open range ``[start, end)`` in UTC ms and the kind's parameters, validated and
normalised (defaults filled in, the row size as an integer number of ticks). Two queries
that mean the same thing are equal and have the same :meth:`~ProfileQuery.key`, which is
what the process cache and the Redis cache store a result under. Prices appear only when
an engine runs (:meth:`~compute.kinds.Kind.engine_params`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import orjson

from .kinds import Kind, kind, ticks_for

__all__ = ["ProfileQuery"]


@dataclass(frozen=True)
class ProfileQuery:
    """What result is asked for. Build it with :meth:`of` (validates); it is immutable and hashable.

    Attributes
    ----------
    market, symbol : str
        Market (``usdm``, ``spot``…) and upper-case symbol.
    kind : str
        A key of :data:`compute.kinds.KINDS`.
    start, end : int
        The range ``[start, end)``, UTC ms.
    params : tuple of (name, value)
        The kind's parameters, all of them, sorted by name (row size as ``ticks_per_row``).
    """

    market: str
    symbol: str
    kind: str
    start: int
    end: int
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, kind_name: str, start: int, end: int, *, symbol: str = "", market: str = "usdm",
           tick: float | None = None, **params) -> ProfileQuery:
        """Validate and normalise a query.

        ``row_size`` (quote currency) may be given instead of ``ticks_per_row`` when ``tick``
        is given; it must be a whole number of ticks.

        Raises
        ------
        ValueError
            Unknown kind or parameter, a value out of bounds, ``start >= end``, or a row size
            that is not a whole number of ticks (or given without ``tick``).
        """
        k = kind(kind_name)
        if "row_size" in params:
            row_size = params.pop("row_size")
            if "ticks_per_row" in params:
                raise ValueError("give row_size or ticks_per_row, not both")
            if tick is None:
                raise ValueError("row_size needs the tick size; give ticks_per_row instead")
            if row_size is not None:
                params["ticks_per_row"] = ticks_for(float(row_size), tick)
        start, end = int(start), int(end)
        if not start < end:
            raise ValueError(f"empty range: start {start} >= end {end}")
        values = k.validated(**params)
        return cls(str(market), str(symbol).upper(), k.name, start, end, tuple(sorted(values.items())))

    @property
    def spec(self) -> Kind:
        """The registry entry of :attr:`kind`."""
        return kind(self.kind)

    @property
    def values(self) -> dict[str, Any]:
        """The parameters as a dict."""
        return dict(self.params)

    def with_range(self, start: int, end: int) -> ProfileQuery:
        """The same query over another range (not re-validated beyond ``start < end``)."""
        if not int(start) < int(end):
            raise ValueError(f"empty range: start {start} >= end {end}")
        return replace(self, start=int(start), end=int(end))

    def params_hash(self) -> str:
        """16 hex digits identifying the kind's parameters (stable across processes and runs)."""
        return hashlib.sha1(orjson.dumps(self.values, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def key(self) -> str:
        """``<kind>:<params hash>:<start>:<end>``: the cache key within a (market, symbol)."""
        return f"{self.kind}:{self.params_hash()}:{self.start}:{self.end}"

    def run(self, trades, tick: float, end: int | None = None):
        """Compute the result in memory on ``trades`` (those of ``[start, end)`` are used).

        ``end`` overrides the data end (the live edge: a range past the last trade is computed
        over the trades it holds). Raises ValueError as the kind's function does.
        """
        return self.spec.run(trades, tick, self.start, self.end if end is None else end, self.values)
