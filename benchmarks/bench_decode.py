"""Decode throughput of :class:`feeds.decode.FrameDecoder` on real Binance frames, one core, against orjson and msgspec.

Input: every real trade frame of the raw WebSocket recordings in
``../shared/data/binance/`` (hftbacktest USD-M BTCUSDT/ETHUSDT 2024 and 2023,
spot BTCUSDT, COIN-M BTCUSD_PERP; cryptofeed USD-M and spot alts), the recorded
``trade`` frames re-encoded as combined-stream aggTrade frames with
``a = f = l = t`` and the real ``aggTrade`` frames verbatim
(:func:`feeds.readers.agg_trade_frames`).

Paths, each over all the frames, run interleaved in one process (CPU-time medians,
:func:`benchmarks.timing.interleaved`):

* **flowlens**: ``FrameDecoder.feed(frame)`` for every frame, as a WebSocket client hands
  them over, and ``FrameDecoder.flush()`` every ``--flush-every`` frames (a live client
  flushes every 50 ms), which returns checked int64/float64/bool numpy columns per symbol;
* **orjson.loads alone**: ``orjson.loads(frame)`` for every frame, the result dropped (no
  checks, no columns: the parse alone, the issue's baseline);
* orjson.loads kept until the flush (info: what any decoder must do with its results);
* **msgspec narrow struct**: ``msgspec.json.Decoder(Env).decode(frame)`` for every frame
  into a plain typed Struct of the aggTrade fields (no range checks, no columns), dropped.

Targets (issue 16 item 3): >= 1 M frames/s on one core, and >= 1.0x ``orjson.loads`` alone.

Run: ``.venv/bin/python -m benchmarks.bench_decode [--rounds 7] [--flush-every 2000] [--out FILE] [--json FILE]``
(default ``--out benchmarks/results/decode.md``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec
import orjson

from benchmarks.timing import RESULTS, Row, environment, interleaved, load_avg, render_md, render_text, table

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "binance"


class _Agg(msgspec.Struct):
    """The baseline's narrow typed struct: the aggTrade fields, plain types (prices/qty as JSON strings)."""

    e: str
    E: int  # noqa: N815
    s: str
    a: int
    p: str
    q: str
    f: int
    l: int  # noqa: E741
    T: int  # noqa: N815
    m: bool


class _Env(msgspec.Struct):
    stream: str
    data: _Agg


def load_frames() -> list[bytes]:
    """All real trade frames as aggTrade frames (see the module docstring)."""
    from feeds.readers import agg_trade_frames

    frames: list[bytes] = []
    for p in sorted(SHARED.glob("ws-raw-*.gz")):
        frames.extend(agg_trade_frames(p))
    if not frames:
        raise SystemExit(f"no recordings found in {SHARED}")
    return frames


def paths(frames: list[bytes], flush_every: int) -> dict:
    """The timed paths (name -> callable over all frames)."""
    from feeds.decode import FrameDecoder

    chunks = [frames[i : i + flush_every] for i in range(0, len(frames), flush_every)]

    def flowlens():
        dec = FrameDecoder("bench")
        feed, n = dec.feed, 0
        for chunk in chunks:
            for fr in chunk:
                feed(fr)
            n += sum(len(c) for c in dec.flush().trades.values())
        return n, dec

    def orjson_alone():
        loads = orjson.loads
        for fr in frames:
            loads(fr)

    def orjson_kept():
        loads = orjson.loads
        for chunk in chunks:
            out = [loads(fr) for fr in chunk]
        return out

    dec = msgspec.json.Decoder(_Env).decode

    def msgspec_narrow():
        for fr in frames:
            dec(fr)

    return {"flowlens": flowlens, "orjson": orjson_alone, "orjson_kept": orjson_kept, "msgspec": msgspec_narrow}


def run(frames: list[bytes], rounds: int, flush_every: int) -> tuple[list[Row], dict]:
    r = interleaved(paths(frames, flush_every), rounds, warmup=1)
    n = len(frames)
    rate = {k: n / (v["cpu"] / 1e3) / 1e6 for k, v in r.items()}  # M frames/s of CPU time
    got, dec = r["flowlens"]["result"]
    assert got == n and dict(dec.counts) == {"aggTrade": n}, (got, dec.counts)
    fast = getattr(dec, "fast", 0) / n  # the last round's decoder
    f = rate["flowlens"]
    rows = [
        Row("decode, real aggTrade frames", f"FrameDecoder.feed per frame + flush every {flush_every} -> columns",
            f, "M frames/s", "orjson.loads alone (result dropped)", rate["orjson"], f / rate["orjson"],
            ">= 1 M/s, >= 1.0x", f >= 1.0 and f / rate["orjson"] >= 1.0,
            notes=[f"{n:,} distinct frames x {rounds} rounds; {fast:.1%} took the fast path; "
                   f"min CPU {r['flowlens']['min']:.0f} ms a round"]),
        Row("(same) vs msgspec narrow struct", "as above", f, "M frames/s",
            "msgspec.json.Decoder(narrow Struct).decode, dropped", rate["msgspec"], f / rate["msgspec"]),
        Row("(same) vs orjson kept until flush", "as above", f, "M frames/s",
            f"orjson.loads, results kept per {flush_every} frames", rate["orjson_kept"], f / rate["orjson_kept"]),
    ]
    return rows, {k: round(v, 4) for k, v in rate.items()} | {"frames": n, "rounds": rounds, "fast_path": fast}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--flush-every", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=RESULTS / "decode.md")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    env = environment(f"msgspec {msgspec.__version__}, orjson {orjson.__version__}")
    frames = load_frames()
    rows, figures = run(frames, a.rounds, a.flush_every)
    body = table(rows)
    notes = [f"- {r.figure}: {'; '.join(r.notes)}" for r in rows if r.notes]
    header = (f"flowlens decode benchmark\nInput: {len(frames):,} real aggTrade frames from {SHARED.name}/ws-raw-*.gz "
              f"(mean {sum(map(len, frames)) / len(frames):.0f} bytes). Rates are frames per second of CPU time, "
              f"medians of {a.rounds} interleaved rounds.\nEnvironment at start: {env}.")
    end = f"load avg at the end {load_avg()} (1/5/15 min)"
    print(header, render_text(body), "\n".join(notes), end, sep="\n\n")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text("# flowlens decode benchmark\n\nCommand: `python -m benchmarks.bench_decode`\n\n"
                         + header.replace("\n", "  \n") + f"  \n{end}.\n\n" + render_md(body) + "\n\nNotes:\n\n"
                         + "\n".join(notes) + "\n")
        print(f"\nwritten to {a.out}")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
