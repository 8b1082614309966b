"""python -m compute: the command agrees with the functions; bad arguments give one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pandas as pd
import pytest

from cli.compute_cli import main
from compute.profile import volume_profile

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "assets" / "recordings" / "BTCUSDT-trades-2020-02-22.00-12UTC.csv.gz"


def run(*args):
    return subprocess.run([sys.executable, "-m", "compute", *map(str, args)], cwd=ROOT, capture_output=True, timeout=120)


def run_inproc(capsys, *args):
    """The command's main() in this process (same code path, no interpreter start-up): (code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_coverage(cov: dict, frame: pd.DataFrame, start: int, end: int) -> None:
    """The command's ``coverage`` is that of the frame's trades of [start, end) (ids from the file's own column)."""
    sel = frame[(frame["time"] >= start) & (frame["time"] < end)]
    ids = sel["id" if "id" in sel else "trade_id"]
    assert (cov["first_id"], cov["last_id"], cov["trades"]) == (int(ids.min()), int(ids.max()), len(sel))
    assert cov["complete"] and cov["gaps"] == [] and len(cov["sha256"]) == 64


@pytest.fixture(scope="module")
def real():
    return pd.read_csv(RECORDING)


def test_profile_command_agrees_with_function(real):
    start, end = int(real["time"].iloc[5_000]), int(real["time"].iloc[30_000])
    p = run("profile", RECORDING, "--tick", "0.01", "--row-size", "2.5", "--value-area", "0.68",
            "--from", start, "--to", end)
    assert p.returncode == 0, p.stderr.decode()
    out = orjson.loads(p.stdout)
    ref = volume_profile(real, 0.01, 2.5, value_area=0.68, start=start, end=end).to_dict()
    for k in ("rows", "total_volume", "buy_volume", "sell_volume", "trades", "poc", "vah", "val", "levels"):
        assert out[k] == ref[k], k
    assert out["trades"] == int(((real["time"] >= start) & (real["time"] < end)).sum())  # --to is exclusive
    assert out["percentiles"] == {"0.25": ref["percentiles"]["0.25"], "0.5": ref["percentiles"]["0.5"],
                                  "0.75": ref["percentiles"]["0.75"]}
    assert set(out["levels"][0]) == {"price_low", "price_high", "volume", "buy", "sell", "delta", "trades"}


def test_profile_command_whole_file_totals(real, capsys):
    code, stdout, err = run_inproc(capsys, "profile", RECORDING, "--tick", "0.01", "--row-size", "5")
    assert code == 0, err
    out = orjson.loads(stdout)
    assert out["trades"] == len(real)
    assert out["total_volume"] == pytest.approx(real["qty"].sum(), rel=1e-12)
    assert sum(lv["trades"] for lv in out["levels"]) == len(real)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--tick", "0.01", "--row-size", "0.015"], "whole number of ticks"),
        (["--tick", "0.01", "--row-size", "5", "--from", "1", "--to", "2"], "no trades in range"),
        (["--tick", "0.01", "--row-size", "5", "--value-area", "0.3"], "value_area"),
        (["--tick", "0.01", "--row-size", "5", "--from", "soon"], "--from"),
        (["--from", "5", "--to", "1"], "'to' must be after 'from'"),  # the REST API's words
    ],
)
def test_bad_arguments_one_line_exit_2(capsys, args, needle):
    code, out, err = run_inproc(capsys, "profile", RECORDING, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err, err
    assert out == ""


def test_bad_arguments_real_process_exit_code():
    p = run("profile", RECORDING, "--tick", "0.01", "--row-size", "0.015")
    assert p.returncode == 2
    err = p.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "whole number of ticks" in err and p.stdout == b""


def test_unreadable_file_exit_2(capsys, tmp_path):
    bad = tmp_path / "garbage.csv"
    bad.write_bytes(b"\x00\x01not a trade file\n")
    for path in (tmp_path / "missing.csv", tmp_path, bad):
        code, out, err = run_inproc(capsys, "profile", path, "--tick", "0.01", "--row-size", "5")
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and err.startswith("error:")


@pytest.mark.parametrize("kind", ["recency", "tpo", "split"])
def test_profile_kinds_agree_with_functions(real, kind, capsys):
    from compute.split import split_profile
    from compute.timeweighted import recency_profile, tpo_profile

    start, end = int(real["time"].iloc[1_000]), int(real["time"].iloc[50_000])
    extra, fn = {
        "recency": (["--half-life", "600"], lambda: recency_profile(real, 0.01, 5.0, half_life_s=600, **kw)),
        "tpo": (["--tpo-block", "300000"], lambda: tpo_profile(real, 0.01, 5.0, block_ms=300_000, **kw)),
        "split": ([], lambda: split_profile(real, 0.01, 5.0, **kw)),
    }[kind]
    kw = dict(start=start, end=end, value_area_method="dual", percentiles=(0.1, 0.9))
    code, stdout, err = run_inproc(capsys, "profile", RECORDING, "--tick", "0.01", "--row-size", "5", "--kind", kind,
                                   "--from", start, "--to", end, "--value-area-method", "dual",
                                   "--percentiles", "0.1,0.9", *extra)
    assert code == 0, err
    out = orjson.loads(stdout)
    ref = orjson.loads(orjson.dumps(fn().to_dict()))  # NaN -> null as in the command's JSON
    assert_coverage(out.pop("coverage"), real, start, end)
    assert out == ref
    assert set(out["percentiles"]) == {"0.1", "0.9"}
    if kind == "split":
        for half in ("first", "second"):
            assert {"poc", "vah", "val"} <= set(out[half])
        assert out["first"]["trades"] + out["second"]["trades"] == out["trades"]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--kind", "volume", "--half-life", "5"], "--half-life"),
        (["--kind", "recency", "--half-life", "-5"], "half_life"),
        (["--kind", "dwell"], "--kind"),
        (["--percentiles", "0.5,2"], "percentiles"),
        (["--value-area-method", "triple"], "--value-area-method"),
    ],
)
def test_bad_kind_arguments_one_line_exit_2(capsys, args, needle):
    code, out, err = run_inproc(capsys, "profile", RECORDING, "--tick", "0.01", "--row-size", "5", *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_footprint_command_agrees_with_the_function(recording_path):
    import io
    import sys

    import orjson

    from cli.compute_cli import main
    from compute.footprint import footprint
    from feeds.readers import read_trades

    b = read_trades(recording_path)
    s, e = int(b.time[0]) // 60_000 * 60_000, int(b.time[0]) // 60_000 * 60_000 + 1_800_000
    class Buf:  # main writes bytes to sys.stdout.buffer
        buffer = io.BytesIO()

    old = sys.stdout
    sys.stdout = Buf
    try:
        code = main(["footprint", str(recording_path), "--tick", "0.01", "--row-size", "5", "--candle", "5m",
                     "--from", str(s), "--to", str(e)])
    finally:
        sys.stdout = old
    assert code == 0
    got = orjson.loads(Buf.buffer.getvalue())
    assert_coverage(got.pop("coverage"), b.to_frame(), s, e)
    want = footprint(b, 0.01, 5.0, interval_ms=300_000, start=s, end=e).to_dict()
    assert got == orjson.loads(orjson.dumps(want, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))
    assert len(got["candles"]) == 6


def test_footprint_command_rejects_a_bad_candle(recording_path, capsys):
    from cli.compute_cli import main

    assert main(["footprint", str(recording_path), "--tick", "0.01", "--row-size", "5", "--candle", "7m"]) == 2
    assert "candle must be one of" in capsys.readouterr().err


def test_tick_and_row_size_default_to_the_inferred_tick_and_the_pages_automatic_rows(capsys, real):
    """Without --tick/--row-size: the tick the server infers from the prices, and the page's ~120-row size."""
    from compute.grid import auto_row_size, infer_tick

    start, end = int(real["time"].iloc[5_000]), int(real["time"].iloc[30_000])
    code, out, _ = run_inproc(capsys, "profile", RECORDING, "--from", start, "--to", end)
    assert code == 0
    got = orjson.loads(out)
    sel = real[(real["time"] >= start) & (real["time"] < end)]
    tick = infer_tick(real["price"].to_numpy())
    row_size = auto_row_size(float(sel["price"].min()), float(sel["price"].max()), tick, 120)
    assert (got["tick"], got["row_size"]) == (tick, row_size) == (0.01, 0.5)
    want = volume_profile(real, tick, row_size, start=start, end=end).to_dict()
    assert {k: got[k] for k in want} == orjson.loads(orjson.dumps(want, option=orjson.OPT_SERIALIZE_NUMPY))
    code, out, _ = run_inproc(capsys, "footprint", RECORDING, "--from", start, "--to", end)
    assert code == 0 and orjson.loads(out)["row_size"] == auto_row_size(float(sel["price"].min()),
                                                                         float(sel["price"].max()), tick, 28)


@pytest.mark.parametrize("command", [
    ["-m", "compute", "profile"], ["-m", "compute", "footprint"], ["-m", "feeds"], ["-m", "feeds", "record"],
    ["-m", "feeds", "backfill"], ["-m", "feeds", "local-server"], ["serve.py"],
])
def test_every_command_help_is_plain_text(command):
    """--help prints words, not Sphinx markup (``code``, :class:`x`)."""
    p = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "usage:" in p.stdout, p.stderr
    for markup in ("``", ":class:", ":mod:", ":func:", ":data:", ":meth:"):
        assert markup not in p.stdout, f"{markup} in {' '.join(command)} --help"


def test_sessions_and_vwap_commands_agree_with_the_functions(capsys, recording_path):
    from compute.sessions import session_profiles
    from compute.vwap import vwap
    from feeds.readers import read_trades

    rec = read_trades(recording_path)
    code, out, err = run_inproc(capsys, "sessions", RECORDING, "--tick", "0.01", "--row-size", "5",
                                "--session-length", "2h", "--session-start", "01:30")
    assert code == 0, err
    got = orjson.loads(out)
    want = session_profiles(rec, 0.01, 5.0, session_length="2h", session_start="01:30").to_dict()["sessions"]
    keys = ("start", "end", "poc", "vah", "val", "total_volume", "trades", "touched_at")
    assert [{k: s[k] for k in keys} for s in got] == [{k: s[k] for k in keys} for s in want]
    assert any(s["touched_at"] is None for s in got) and any(s["touched_at"] for s in got)
    anchor = int(rec.time[0]) + 3_600_000
    code, out, err = run_inproc(capsys, "vwap", RECORDING, "--anchor", anchor, "--bands", "1,2,3")
    assert code == 0, err
    got = orjson.loads(out)
    w = vwap(rec, start=anchor)
    assert (got["vwap"], got["sd"], got["trades"]) == (w.final["vwap"], w.final["sd"], w.final["trades"])
    assert set(got["bands"]) == {"1", "2", "3"} and "series" not in got


@pytest.mark.parametrize("command, args, needle", [
    ("sessions", ["--session-length", "3h"], "--session-length"),
    ("sessions", ["--session-start", "7"], "session_start must be HH:MM"),
    ("sessions", ["--from", "5", "--to", "1"], "'to' must be after 'from'"),
    ("vwap", ["--anchor", "5", "--to", "1"], "'to' must be after 'anchor'"),
    ("vwap", ["--bands", "x"], "bands"),
    ("vwap", ["--bands", "0"], "bands"),
    ("vwap", ["--anchor", "1", "--to", "2"], "no trades in range"),
])
def test_sessions_and_vwap_bad_arguments_one_line_exit_2(capsys, command, args, needle):
    code, out, err = run_inproc(capsys, command, RECORDING, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and needle in err, err
