"""The REST API's strict query parsing: :class:`QueryParams`, a mixin of :class:`service.api.ApiHandler`.

Each parameter is given once, known to the handler (its ``PARAMS``: name -> longest value in characters),
non-empty, UTF-8, without control characters; integers are ASCII decimal digits, numbers plain finite decimals
(:mod:`service.limits`). Every refusal is a :class:`~service.limits.BadParameter` naming the parameter.
"""

from __future__ import annotations

from .limits import MAX_QUERY_CHARS, MAX_QUERY_PARAMS, BadParameter, has_control, strict_float, strict_int


def shown(text: str, limit: int = 40) -> str:
    """A client's value quoted for an error message (cut at ``limit`` characters)."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _name(key: str) -> str:
    """A query key as the client sent it (Tornado decodes keys as latin-1)."""
    try:
        return key.encode("latin-1").decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        return key


class QueryParams:
    """Parse ``self.request``'s query against ``self.PARAMS`` into ``self.params``, and read typed values from it."""

    PARAMS: dict[str, int] = {}
    params: dict[str, str]

    def parse_query(self) -> dict[str, str]:
        """The query's parameters (name -> value), each given once, known, non-empty, UTF-8, no control characters.

        Raises
        ------
        BadParameter
            The first thing wrong, naming the parameter (None for the query's length or count).
        """
        q = self.request.query
        if len(q) > MAX_QUERY_CHARS:
            raise BadParameter(None, f"query of {len(q)} characters; the limit is {MAX_QUERY_CHARS}")
        args = self.request.query_arguments
        n = sum(len(v) for v in args.values())
        if n > MAX_QUERY_PARAMS:
            raise BadParameter(None, f"query of {n} parameters; the limit is {MAX_QUERY_PARAMS}")
        unknown = [_name(k) for k in args if k not in self.PARAMS]
        if unknown:
            raise BadParameter(unknown[0], f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                                           f"{', '.join(map(shown, unknown))}; {self.request.path} accepts "
                                           f"{', '.join(self.PARAMS)}")
        out = {}
        for k, vals in args.items():
            if len(vals) > 1:
                raise BadParameter(k, f"parameter {k!r} is given {len(vals)} times; give it once")
            try:
                v = vals[0].decode("utf-8")
            except UnicodeDecodeError:
                raise BadParameter(k, f"parameter {k!r} is not UTF-8 text") from None
            if not v:
                raise BadParameter(k, f"parameter {k!r} is empty")
            if has_control(v):
                raise BadParameter(k, f"parameter {k!r} contains a control character: {shown(v)}")
            if len(v) > self.PARAMS[k]:
                raise BadParameter(k, f"parameter {k!r} is too long ({len(v)} characters; at most {self.PARAMS[k]})")
            out[k] = v
        return out

    # -- parameters --------------------------------------------------------------------
    def arg(self, name: str, default=None, required: bool = False) -> str | None:
        """The value of ``name`` as given, or ``default``; BadParameter when ``required`` and absent."""
        v = self.params.get(name)
        if v is None:
            if required:
                raise BadParameter(name, f"parameter {name!r} is required")
            return default
        return v

    def int_arg(self, name: str, default=None, lo=None, hi=None, required=False) -> int | None:
        """``name`` as an integer (ASCII decimal digits) within [lo, hi], or ``default``; BadParameter if not."""
        return self._number(name, strict_int, default, lo, hi, required)

    def float_arg(self, name: str, default=None, lo=None, hi=None) -> float | None:
        """``name`` as a finite decimal number within [lo, hi], or ``default``; BadParameter if not."""
        return self._number(name, strict_float, default, lo, hi, False)

    def _number(self, name: str, parse, default, lo, hi, required: bool):
        v = self.arg(name, None, required)
        if v is None:
            return default
        try:
            x = parse(v)
        except ValueError as e:
            raise BadParameter(name, f"parameter {name!r}: {e}, got {shown(v)}") from None
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            raise BadParameter(name, f"parameter {name!r} must be in [{lo}, {hi}], got {v}")
        return x

    def choice_arg(self, name: str, choices, default: str) -> str:
        """``name`` as one of ``choices`` (exact), or ``default``; BadParameter if not."""
        v = self.arg(name, default)
        if v not in choices:
            raise BadParameter(name, f"{name} must be one of {', '.join(choices)}, got {shown(v)}")
        return v

