"""Alert rules (issue 18) on the real recording, each against a plain brute-force scan written here.

* price_cross with numbers (hypothesis over levels, directions, cooldowns) and with developing session levels
  (``volume_profile`` / ``vwap`` of every session prefix, on a slice spanning a session boundary), naked POCs;
* stacked imbalances against ``footprint`` of every candle prefix; candle and windowed delta; volume spikes;
  liquidations of the fixture at real trade prices;
* evaluating in chunks (context = the whole prefix) equals one call; evaluate_many equals evaluate;
* bad rules name their field; the CLI prints the same firings and exits 2 on a bad rule.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compute.alert_candidates import reference_levels
from compute.alerts import RuleError, backtest, evaluate, evaluate_many, parse_rule, rule_to_dict
from compute.footprint import footprint
from compute.grid import row_index
from compute.profile import volume_profile
from compute.vwap import vwap
from feeds.liquidations import read_liquidations
from feeds.readers import read_trades

TICK = 0.01
HOUR = 3_600_000
ROOT = Path(__file__).resolve().parents[2]
LIQ = ROOT / "tests" / "fixtures" / "dashboard_liquidations_at_real_trade_prices.jsonl"


@pytest.fixture(scope="module")
def rec(recording_path):
    return read_trades(recording_path)


@pytest.fixture(scope="module")
def boundary(rec):
    """~2,400 real trades around the 01:00 UTC session boundary."""
    k = int(np.searchsorted(rec.time, (int(rec.time[0]) // HOUR + 1) * HOUR))
    return rec.take(slice(k - 1400, k + 1000))


def units(q) -> int:
    return int(round(float(q) * 1e8))


def brute_cross(price, time, levels, direction, cooldown_s=0.0, last=None):
    """Plain scan: indices i where price[i-1] -> price[i] crosses levels[i], cooldown applied."""
    out = []
    for i in range(1, len(price)):
        lv = levels[i]
        if lv is None or math.isnan(lv):
            continue
        up = price[i - 1] < lv <= price[i]
        dn = price[i - 1] > lv >= price[i]
        if (up and direction != "down") or (dn and direction != "up"):
            if last is None or time[i] - last >= cooldown_s * 1000:
                out.append(i)
                last = time[i]
    return out


def cooled(idx, time, cooldown_s):
    out, last = [], None
    for i in idx:
        if last is None or time[i] - last >= cooldown_s * 1000:
            out.append(i)
            last = time[i]
    return out


def pc(level, direction="any", **kw):
    return {"type": "price_cross", "symbol": "BTCUSDT", "level": level, "direction": direction, **kw}


# -- price_cross ------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), direction=st.sampled_from(["up", "down", "any"]),
       cooldown=st.one_of(st.sampled_from([0.0, 0.5, 60.0]), st.floats(0, 3600)))
def test_price_cross_numeric_equals_a_plain_scan(rec, data, direction, cooldown):
    level = data.draw(st.one_of(st.sampled_from(rec.price[::97].tolist()), st.floats(9560.0, 9715.0)))
    f = evaluate(pc(level, direction, cooldown_s=cooldown), rec, rule_id="r1")
    want = brute_cross(rec.price.tolist(), rec.time.tolist(), [level] * len(rec), direction, cooldown)
    assert f["trade_id"].tolist() == rec.trade_id[want].tolist()
    assert (f["level"] == level).all() and f["value"].tolist() == rec.price[want].tolist()
    assert f["event_id"].tolist() == [f"r1:{t}" for t in rec.trade_id[want]]


def session_prefix_levels(b, ref):
    """L(i) per the definition: the level of the session of trade i-1 over its trades up to i-1."""
    sid = b.time // HOUR
    first = {}
    for j, s in enumerate(sid.tolist()):
        first.setdefault(s, j)
    out = [math.nan]
    for j in range(len(b) - 1):
        a, part = first[int(sid[j])], b.take(slice(first[int(sid[j])], j + 1))
        if ref == "vwap":
            out.append(vwap(part, start=int(sid[j]) * HOUR).final["vwap"])
        else:
            out.append(getattr(volume_profile(part, TICK, 0.1, value_area=0.6827), ref))
        assert a <= j
    return out


@pytest.mark.parametrize("ref", ["poc", "vah", "val", "vwap"])
def test_developing_levels_equal_the_profile_of_each_session_prefix(boundary, ref):
    want = session_prefix_levels(boundary, ref)
    rule = parse_rule(pc({"ref": ref, "session_length": "1h", "ticks_per_row": 10, "value_area": 0.6827}))
    lo, got = reference_levels(rule.level, boundary, 0, TICK)
    assert lo == 0 and math.isnan(got[0])
    if ref == "vwap":
        np.testing.assert_allclose(got[1:], want[1:], rtol=1e-12, atol=0)
    else:
        assert got[1:].tolist() == want[1:]
    for direction in ("up", "down", "any"):
        f = evaluate(rule_to_dict(rule) | {"direction": direction}, boundary, tick=TICK)
        idx = brute_cross(boundary.price.tolist(), boundary.time.tolist(), want, direction)
        assert len(idx) > 3 and f["trade_id"].tolist() == boundary.trade_id[idx].tolist()
        np.testing.assert_allclose(f["level"], np.asarray(want)[idx], rtol=1e-12)


def test_naked_poc_is_the_most_recent_untouched_prior_session_poc(rec):
    sid = (rec.time // HOUR).tolist()
    rows = row_index(rec.price, TICK, 10).tolist()
    starts = [j for j in range(len(sid)) if j == 0 or sid[j] != sid[j - 1]] + [len(sid)]
    poc, poc_row = [], []
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        p = volume_profile(rec.take(slice(a, b)), TICK, 0.1)
        poc.append(p.poc)
        poc_row.append(p.first_row + p.poc_idx)
    touched, levels, cur = set(), [math.nan], 0
    for j in range(len(rows) - 1):
        while starts[cur + 1] <= j:
            cur += 1
        for k in range(cur):  # sessions that ended before trade j
            if k not in touched and rows[j] == poc_row[k]:
                touched.add(k)
        s = cur + (starts[cur + 1] == j + 1)  # the session of trade j + 1
        naked = [k for k in range(s) if k not in touched]
        levels.append(poc[naked[-1]] if naked else math.nan)
    f = evaluate(pc({"ref": "naked_poc", "session_length": "1h"}), rec, tick=TICK)
    want = brute_cross(rec.price.tolist(), rec.time.tolist(), levels, "any")
    assert len(want) >= 3 and f["trade_id"].tolist() == rec.trade_id[want].tolist()
    assert f["level"].tolist() == [levels[i] for i in want]


# -- footprint, delta, volume -------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {"ticks_per_row": 1, "ratio": 2.0, "min_stack": 2, "side": "any"},
    {"ticks_per_row": 5, "ratio": 3.0, "min_stack": 2, "side": "sell", "ignore_zeros": False},
    {"ticks_per_row": 1, "ratio": 1.5, "min_stack": 2, "side": "buy", "min_volume": 0.002, "ignore_zeros": False},
])
def test_stacked_imbalance_fires_where_the_candle_prefix_footprint_first_stacks(boundary, kw):
    b = boundary.take(slice(0, 1200))
    rule = {"type": "stacked_imbalance", "symbol": "BTCUSDT", "interval": "1m", **kw}
    cid = (b.time // 60_000).tolist()
    want, done, start = [], set(), {}
    for j, c in enumerate(cid):
        start.setdefault(c, j)
        if c in done:
            continue
        fp = footprint(b.take(slice(start[c], j + 1)), TICK, round(kw["ticks_per_row"] * TICK, 2),
                       imbalance_ratio=kw["ratio"], ignore_zeros=kw.get("ignore_zeros", True),
                       min_volume=kw.get("min_volume", 0.0), stacked_min=kw["min_stack"], check_ids=False)
        z = fp.stacked if kw["side"] == "any" else fp.stacked[fp.stacked["side"] == kw["side"]]
        if len(z):
            want.append((j, int(z["rows"].max())))
            done.add(c)
    f = evaluate(rule, b, tick=TICK)
    assert len(want) >= 2
    assert list(zip(f["trade_id"], f["value"].astype(int), strict=True)) == [(b.trade_id[j], v) for j, v in want]


@pytest.mark.parametrize("direction", ["up", "down", "any"])
def test_candle_delta_fires_where_the_candle_first_reaches_the_threshold(rec, direction):
    want, cand, run, seen = [], None, 0, set()
    for i, (t, q, s) in enumerate(zip(rec.time.tolist(), rec.qty.tolist(), rec.is_buyer_maker.tolist(), strict=True)):
        c = t // 60_000
        if c != cand:
            cand, run = c, 0
        run += -units(q) if s else units(q)
        for sign in (1, -1):
            if (direction == "any" or (sign == 1) == (direction == "up")) and (c, sign) not in seen \
                    and sign * run >= 25 * 10**8:
                seen.add((c, sign))
                want.append((i, run / 1e8))
    f = evaluate({"type": "delta", "symbol": "BTCUSDT", "threshold": 25, "window": "candle",
                  "direction": direction, "cooldown_s": 0}, rec)
    assert len(want) > 5 and list(zip(f["trade_id"], f["value"], strict=True)) == [(rec.trade_id[i], v)
                                                                                   for i, v in want]


def window_sums(b, w, back=0, signed=True):
    """Per trade: sum of (signed) quantity units of trades up to it with time in (T - back - w, T - back]."""
    t, q, s = b.time.tolist(), [units(x) for x in b.qty], b.is_buyer_maker.tolist()
    out = []
    for i in range(len(t)):
        tot, j = 0, i
        while j >= 0 and t[j] > t[i] - back - w:
            if t[j] <= t[i] - back:
                tot += (-q[j] if s[j] and signed else q[j])
            j -= 1
        out.append(tot)
    return out


def test_windowed_delta_crosses_like_price_cross(boundary):
    b, w, thr = boundary, 20_000, 8 * 10**8
    d = window_sums(b, w)
    warm = [t - w >= b.time[0] for t in b.time]
    want = [i for i in range(1, len(d)) if warm[i] and warm[i - 1]
            and ((d[i - 1] < thr <= d[i]) or (d[i - 1] > -thr >= d[i]))]
    f = evaluate({"type": "delta", "symbol": "BTCUSDT", "threshold": 8, "window_s": 20}, b)
    assert len(want) > 3 and f["trade_id"].tolist() == b.trade_id[want].tolist()
    assert f["value"].tolist() == [d[i] / 1e8 for i in want]


def test_volume_spike_fires_when_the_window_turns_k_times_its_lookback_mean(boundary):
    b, w, n, k = boundary, 5_000, 6, 3.0
    v = window_sums(b, w, signed=False)
    base = window_sums(b, n * w, back=w, signed=False)
    warm = [t - (n + 1) * w >= b.time[0] for t in b.time]
    cond = [warm[i] and base[i] > 0 and v[i] * n >= k * base[i] for i in range(len(v))]
    want = cooled([i for i in range(1, len(v)) if cond[i] and not cond[i - 1] and warm[i - 1]], b.time, 2.0)
    f = evaluate({"type": "volume_spike", "symbol": "BTCUSDT", "window_s": 5, "k": k, "lookback": n,
                  "cooldown_s": 2}, b)
    assert len(want) > 3 and f["trade_id"].tolist() == b.trade_id[want].tolist()
    np.testing.assert_allclose(f["value"], [v[i] * n / base[i] for i in want], rtol=1e-12)


@pytest.mark.parametrize("side", [None, "SELL", "BUY"])
def test_liquidations_fire_on_notional_at_least_min(side):
    liq = read_liquidations(LIQ)
    rule = {"type": "liquidation", "symbol": "btcusdt", "min_notional": 150_000, "side": side}
    want = []
    for r in liq.itertuples():
        notional = r.filled_qty * r.avg_price if r.filled_qty > 0 and r.avg_price > 0 else r.orig_qty * r.price
        if notional >= 150_000 and side in (None, r.side):
            want.append((int(r.time), notional))
    f = evaluate(rule, None, liquidations=liq, rule_id="L")
    assert len(want) > 2 and list(zip(f["trade_id"], f["value"], strict=True)) == want
    assert (f["trade_id"] == f["time"]).all()
    later = evaluate(rule, None, liquidations=liq, after_id=want[1][0])
    assert later["trade_id"].tolist() == [t for t, _ in want[2:]]


# -- calling over batches --------------------------------------------------------------------------
CHUNK_RULES = [
    pc(9650.0, "any", cooldown_s=120),
    pc({"ref": "poc", "session_length": "1h"}, "any", cooldown_s=30),
    pc({"ref": "val", "session_length": "2h", "ticks_per_row": 50}, "down"),
    pc({"ref": "vwap", "session_length": "1h"}, "up", cooldown_s=10),
    pc({"ref": "naked_poc", "session_length": "1h"}, "any"),
    {"type": "stacked_imbalance", "symbol": "BTCUSDT", "ticks_per_row": 2, "ratio": 2.0, "min_stack": 2},
    {"type": "delta", "symbol": "BTCUSDT", "threshold": 20, "window": "candle", "cooldown_s": 45},
    {"type": "delta", "symbol": "BTCUSDT", "threshold": 40, "window_s": 60},
    {"type": "volume_spike", "symbol": "BTCUSDT", "window_s": 10, "k": 4, "lookback": 6, "cooldown_s": 20},
]


@pytest.mark.parametrize("rule", CHUNK_RULES, ids=lambda r: r["type"] + str(r.get("level", r.get("window", ""))))
def test_chunked_evaluation_equals_one_call(rec, rule):
    whole = evaluate(rule, rec, tick=TICK, rule_id="x")
    assert len(whole) > 0
    rng = np.random.default_rng(18)
    cuts = np.sort(np.concatenate([rng.choice(len(rec), 6, replace=False), [1, 2, 3, len(rec) // 2 + 1]]))
    parts, after, last = [], -1, None
    for end in [*np.unique(cuts).tolist(), len(rec)]:
        f = evaluate(rule, rec.take(slice(0, end)), after_id=after, last_fire_ms=last, tick=TICK, rule_id="x")
        parts.append(f)
        after = int(rec.trade_id[end - 1])
        last = int(f["time"].iloc[-1]) if len(f) else last
    got = np.concatenate([p.to_numpy() for p in parts])
    assert got.tolist() == whole.to_numpy().tolist()


def test_evaluate_many_equals_evaluate_rule_by_rule(rec):
    rng = np.random.default_rng(7)
    rules = {f"r{i}": pc(float(np.round(rng.uniform(9600, 9700), 2)), ["up", "down", "any"][i % 3],
                         cooldown_s=[0, 30, 300][i % 3]) for i in range(40)}
    after = {f"r{i}": int(rec.trade_id[rng.integers(0, len(rec))]) for i in range(0, 40, 4)}
    last = {f"r{i}": int(rec.time[rng.integers(0, len(rec))]) for i in range(0, 40, 5)}
    got = evaluate_many(rules, rec, after, last)
    for rid, rule in rules.items():
        want = evaluate(rule, rec, after_id=after.get(rid, -1), last_fire_ms=last.get(rid), rule_id=rid)
        mine = got[got["rule_id"] == rid].drop(columns="rule_id").reset_index(drop=True)
        assert mine.to_numpy().tolist() == want.to_numpy().tolist()
    assert got["trade_id"].is_monotonic_increasing and len(got) > 40
    with pytest.raises(RuleError, match="level"):
        evaluate_many({"a": pc({"ref": "poc"})}, rec)


def test_backtest_forward_returns(rec):
    res = backtest(pc(9650.0, "up", cooldown_s=600), rec, horizons_min=(1, 15))
    f = res["firings"]
    assert res["count"] == len(f) > 3
    for row in f.itertuples():
        for h in (1, 15):
            target = row.time + h * 60_000
            j = max(i for i in range(len(rec)) if rec.time[i] <= target) if target <= rec.time[-1] else None
            got = getattr(row, f"return_{h}m")
            assert (math.isnan(got) if j is None else got == rec.price[j] / row.price - 1)
    s = res["horizons"]["15m"]
    fin = f["return_15m"].dropna()
    assert s["count"] == len(fin) and s["mean"] == pytest.approx(fin.mean()) and s["share_positive"] == (fin > 0).mean()


# -- validation and the CLI ---------------------------------------------------------------------------
@pytest.mark.parametrize("obj,field", [
    (pc(-1.0), "level"),
    (pc(9650.0, "sideways"), "direction"),
    ({k: v for k, v in pc(9650.0).items() if k != "direction"}, "direction"),
    (pc({"ref": "mid"}), "level.ref"),
    (pc({"ref": "poc", "session_length": "3h"}), "level.session_length"),
    (pc({"ref": "poc", "ticks_per_row": 0}), "level.ticks_per_row"),
    (pc({"ref": "vah", "value_area": 0.99}), "level.value_area"),
    (pc({"ref": "vah", "value_area": 0.70001}), "level.value_area"),
    (pc({"ref": "poc", "session_start": "7:00"}), "level.session_start"),
    (pc({"ref": "poc", "colour": "red"}), "level.colour"),
    (pc(9650.0, symbol=""), "symbol"),
    (pc(9650.0, market="options"), "market"),
    (pc(9650.0, cooldown_s=-1), "cooldown_s"),
    (pc(9650.0, cooldown_s="5"), "cooldown_s"),
    (pc(9650.0, extra=1), "extra"),
    ({"type": "nope", "symbol": "X"}, "type"),
    ({"symbol": "X"}, "type"),
    ({"type": "liquidation", "symbol": "X", "min_notional": 0}, "min_notional"),
    ({"type": "liquidation", "symbol": "X", "min_notional": 1, "side": "sell"}, "side"),
    ({"type": "stacked_imbalance", "symbol": "X", "ratio": 0.5}, "ratio"),
    ({"type": "stacked_imbalance", "symbol": "X", "interval": "2m"}, "interval"),
    ({"type": "stacked_imbalance", "symbol": "X", "min_stack": True}, "min_stack"),
    ({"type": "delta", "symbol": "X", "threshold": 5}, "window"),
    ({"type": "delta", "symbol": "X", "threshold": 5, "window": "candle", "window_s": 60}, "window"),
    ({"type": "delta", "symbol": "X", "threshold": 5, "window_s": 60, "interval": "1m"}, "interval"),
    ({"type": "delta", "symbol": "X", "threshold": 5, "window_s": 0.0005}, "window_s"),
    ({"type": "volume_spike", "symbol": "X", "window_s": 10, "k": 1e300}, "k"),
    ({"type": "volume_spike", "symbol": "X", "window_s": 10, "k": 2, "lookback": 0}, "lookback"),
])
def test_bad_rules_name_their_field(obj, field):
    with pytest.raises(RuleError) as e:
        parse_rule(obj)
    assert e.value.field == field and "\n" not in str(e.value) and field in str(e.value)
    with pytest.raises(RuleError) as e2:
        parse_rule(json.dumps(obj))
    assert e2.value.field == field


def test_rules_round_trip_and_normalise():
    r = parse_rule('{"type": "delta", "symbol": "ethusdt", "threshold": 5, "window": "candle"}')
    assert r.symbol == "ETHUSDT" and r.interval == "1m" and parse_rule(rule_to_dict(r)) == r
    with pytest.raises(RuleError) as e:
        parse_rule(b"{oops")
    assert e.value.field == ""


def cli(*args):
    return subprocess.run([sys.executable, "-m", "compute", "alerts", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_prints_the_firings(rec, recording_path):
    rule = pc({"ref": "vwap", "session_length": "1h"}, "up", cooldown_s=60)
    lo, hi = int(rec.time[5000]), int(rec.time[30000])
    p = cli(recording_path, "--rule", json.dumps(rule), "--from", lo, "--to", hi, "--tick", TICK)
    assert p.returncode == 0, p.stderr
    want = evaluate(rule, rec.time_slice(lo, hi), tick=TICK)
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert len(lines) == len(want) > 3
    assert [[x[k] for k in ("trade_id", "time", "price", "level", "value")] for x in lines] == \
        want[["trade_id", "time", "price", "level", "value"]].to_numpy().tolist()


def test_cli_exits_2_with_one_line_naming_the_field_of_a_bad_rule(recording_path, capsys):
    from cli.compute_cli import main

    bad = json.dumps(pc({"ref": "poc", "session_length": "5h"}, "up"))
    assert main(["alerts", str(recording_path), "--rule", bad]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.strip().splitlines()) == 1 and "level.session_length" in out.err


def test_cli_summary_and_bad_range(recording_path, capsys):
    from cli.compute_cli import main

    rule = json.dumps(pc(9650.0, "any", cooldown_s=300))
    assert main(["alerts", str(recording_path), "--rule", rule, "--summary", "--horizons", "1,5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["count"] > 3 and set(out["horizons"]) == {"1m", "5m"} and out["rule"]["level"] == 9650.0
    assert main(["alerts", str(recording_path), "--rule", rule, "--from", "10", "--to", "5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'to' must be after 'from'" in err
    assert main(["alerts", str(recording_path), "--rule", "{not json"]) == 2
    assert "not JSON" in capsys.readouterr().err


def test_evaluate_refuses_other_symbols_and_unordered_trades(rec):
    with pytest.raises(ValueError, match="ETHUSDT"):
        evaluate(pc(9650.0) | {"symbol": "ethusdt"}, rec)
    swapped = rec.take(np.r_[np.arange(100), 101, 100, np.arange(102, 200)])
    with pytest.raises(ValueError, match="trade-id order"):
        evaluate(pc(9650.0), swapped)
    assert len(evaluate(pc(9650.0), swapped, after_id=int(rec.trade_id[150]))) == 0  # older trades are trusted
    with pytest.raises(ValueError, match="needs liquidations"):
        evaluate({"type": "liquidation", "symbol": "BTCUSDT", "min_notional": 1}, rec)
