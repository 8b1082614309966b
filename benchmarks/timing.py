"""Shared by the benchmarks: CPU-time medians of interleaved runs, the result table, the machine's load.

Every figure is measured in the same process as its baseline, the runs interleaved (figure,
baseline, figure, baseline, ...) so that a change in the machine's load hits both alike, and
reported as the median CPU time (``time.process_time``: this process only, so another
process on the machine does not count, though it still costs caches and memory bandwidth).
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def interleaved(fns: dict, repeat: int, warmup: int = 1) -> dict[str, dict]:
    """Run every function of ``fns`` (name -> callable) ``warmup`` then ``repeat`` times, round-robin.

    The garbage collector is off while they run (collected once before), as in :mod:`timeit`.
    Returns name -> ``{"cpu": median CPU ms, "wall": median wall ms, "min": min CPU ms, "runs": n,
    "result": the last return value}``.
    """
    out = {k: {"cpu_all": [], "wall_all": [], "result": None} for k in fns}
    gc.collect()
    was = gc.isenabled()
    gc.disable()  # as timeit does: no collection pauses inside a timed call
    try:
        for r in range(warmup + repeat):
            for k, fn in fns.items():
                c, w = time.process_time(), time.perf_counter()
                res = fn()
                w, c = (time.perf_counter() - w) * 1e3, (time.process_time() - c) * 1e3
                out[k]["result"] = res
                if r >= warmup:
                    out[k]["cpu_all"].append(c)
                    out[k]["wall_all"].append(w)
                del res
    finally:
        if was:
            gc.enable()
    for v in out.values():
        v["cpu"] = statistics.median(v["cpu_all"])
        v["wall"] = statistics.median(v["wall_all"])
        v["min"] = min(v["cpu_all"])
        v["runs"] = len(v["cpu_all"])
    return out


@dataclass
class Row:
    """One line of a result table: a figure, the exact path it times, its baseline, the ratio, the target."""

    figure: str
    path: str
    value: float | None
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None  # > 1 = flowlens better (faster or higher rate)
    target: str = "(info)"
    ok: bool | None = None
    notes: list = field(default_factory=list)


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "ms":
        return f"{v:.3f} ms" if v < 1 else (f"{v:.2f} ms" if v < 10 else f"{v:,.1f} ms")
    if unit == "MB":
        return f"{v:.1f} MB"
    return f"{v:.2f} {unit}"


def table(rows: list[Row]) -> list[list[str]]:
    body = [["figure", "path timed", "flowlens", "baseline (same run)", "baseline", "ratio", "target", "result"]]
    for r in rows:
        res = "PASS" if r.ok else ("FAIL" if r.ok is False else "-")
        ratio = "-" if r.ratio is None else (f"{r.ratio:,.0f}x" if r.ratio >= 100 else f"{r.ratio:.2f}x")
        body.append([r.figure, r.path, fmt(r.value, r.unit), r.baseline or "-",
                     fmt(r.baseline_value, r.unit) if r.baseline_value is not None else "-", ratio, r.target, res])
    return body


def render_text(body: list[list[str]]) -> str:
    w = [max(len(row[i]) for row in body) for i in range(len(body[0]))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(row)) for row in body]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def render_md(body: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in body]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in esc[0]) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def environment(extra: str = "") -> str:
    """Date, CPU, cores, load average (1/5/15 min), Python and ``extra`` versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M UTC}; {cpu}, {os.cpu_count()} cores, load avg {load_avg()} "
            f"(1/5/15 min); Python {platform.python_version()}{', ' + extra if extra else ''}")
