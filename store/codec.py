"""Compact binary encoding of computed results for the Redis cache (msgpack + raw numpy bytes).

Results (profiles, footprints, developing levels, heat-maps) are dataclasses of
numpy arrays, DataFrames, dicts and scalars. They are encoded with msgspec's
msgpack: every numpy array travels as its raw bytes plus dtype and shape (no
text), DataFrames as their columns, xarray DataArrays as values and
coordinates. Decoding only rebuilds classes listed in :data:`ALLOWED`, so a
hostile cache entry cannot construct anything else (no pickle).
"""

from __future__ import annotations

import dataclasses
import importlib

import msgspec
import numpy as np
import pandas as pd

#: Classes a cache entry may rebuild ("module:Class").
ALLOWED = {
    "compute.result:ProfileResult",
    "compute.footprint:FootprintResult",
    "compute.levels:DevelopingResult",
    "compute.sessions:SessionsResult",
    "compute.sessions:Session",
    "compute.vwap:VwapResult",
}

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def _pack(obj):
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            return {"__list__": [_pack(x) for x in obj.tolist()]}
        a = np.ascontiguousarray(obj)
        return {"__nd__": a.dtype.str, "s": list(a.shape), "b": a.tobytes()}
    if isinstance(obj, pd.DataFrame):
        return {"__df__": [[str(c), _pack(obj[c].to_numpy())] for c in obj.columns]}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name = f"{type(obj).__module__}:{type(obj).__qualname__}"
        return {"__dc__": name, "f": {f.name: _pack(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if type(obj).__name__ == "DataArray":
        return {"__xr__": {
            "v": _pack(obj.values), "dims": list(obj.dims), "name": obj.name,
            "coords": {k: _pack(np.asarray(v.values)) for k, v in obj.coords.items()},
            "attrs": {k: _pack(v) for k, v in obj.attrs.items()},
        }}
    if isinstance(obj, dict):
        return {"__dict__": [[_pack(k), _pack(v)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_pack(x) for x in obj]}
    raise TypeError(f"cannot encode {type(obj).__name__} for the result cache")


def _unpack(obj):
    if not isinstance(obj, dict):
        return obj
    if "__nd__" in obj:
        return np.frombuffer(obj["b"], dtype=np.dtype(obj["__nd__"])).reshape(obj["s"]).copy()
    if "__df__" in obj:
        return pd.DataFrame({c: _unpack(v) for c, v in obj["__df__"]})
    if "__dc__" in obj:
        name = obj["__dc__"]
        if name not in ALLOWED:
            raise ValueError(f"cache entry names a class that is not allowed: {name}")
        mod, cls = name.split(":")
        klass = getattr(importlib.import_module(mod), cls)
        return klass(**{k: _unpack(v) for k, v in obj["f"].items()})
    if "__xr__" in obj:
        import xarray as xr

        x = obj["__xr__"]
        return xr.DataArray(_unpack(x["v"]), dims=x["dims"], name=x["name"],
                            coords={k: (k, _unpack(v)) if k in x["dims"] else _unpack(v) for k, v in x["coords"].items()},
                            attrs={k: _unpack(v) for k, v in x["attrs"].items()})
    if "__dict__" in obj:
        return {_unpack(k): _unpack(v) for k, v in obj["__dict__"]}
    if "__list__" in obj:
        return [_unpack(x) for x in obj["__list__"]]
    raise ValueError(f"unknown cache record with keys {sorted(obj)}")


def encode(result) -> bytes:
    """Encode a result (or None) to bytes.

    Raises
    ------
    TypeError
        For an object the codec does not know.
    """
    return _enc.encode(_pack(result))


def decode(data: bytes):
    """Rebuild a result encoded by :func:`encode`.

    Raises
    ------
    ValueError
        For a malformed entry or a class outside :data:`ALLOWED`.
    msgspec.DecodeError
        For bytes that are not msgpack.
    """
    return _unpack(_dec.decode(data))
