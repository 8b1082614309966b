"""The REST API of a real ``serve.py`` replaying the recording: the alerts (issue 18: writing needs the token, an
invalid rule is refused naming its field, a rule fires on the server with no page open, ``/api/v1/signals`` keeps
what fired and the Server-Sent Events stream resumes after ``Last-Event-ID``), the metrics' series and the OpenAPI
description checked against the live answers (issue 19)."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
from browser import served
from conftest import require
from test_service import wait_until

TOKEN = "test-token-5b2c"


def call(base: str, method: str, path: str, body=None, token: str | None = TOKEN) -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def sse_events(base: str, n: int, last_event_id: str | None = None, timeout: float = 60) -> list[tuple[str, dict]]:
    """The first ``n`` ``signal`` events of the stream (``(id, signal)``), read over a real HTTP connection."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    conn.request("GET", "/api/v1/signals/stream?symbol=BTCUSDT",
                 headers={"Last-Event-ID": last_event_id} if last_event_id else {})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    out, event = [], {}
    try:
        while len(out) < n:
            line = r.readline().decode().rstrip("\n")
            if line.startswith("id: "):
                event["id"] = line[4:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif not line and "data" in event:
                out.append((event["id"], event["data"]))
                event = {}
    finally:
        conn.close()
    return out


@pytest.fixture(scope="module")
def server():
    with served("--speed", "300", "--api-token", TOKEN, "--api-rate", "0") as (url, proc, _):
        yield url.rstrip("/"), proc


def test_writing_needs_the_token_and_a_valid_rule(server):
    base, proc = server
    rule = {"type": "price_cross", "symbol": "BTCUSDT", "level": 9000, "direction": "up"}
    assert call(base, "POST", "/api/v1/alerts", rule, token=None)[0] == 401
    assert call(base, "POST", "/api/v1/alerts", rule, token="wrong")[0] == 401
    code, body = call(base, "POST", "/api/v1/alerts", {**rule, "direction": "sideways"})
    assert code == 400 and body["parameter"] == "direction", body
    code, body = call(base, "POST", "/api/v1/alerts", {**rule, "symbol": "DOGEUSDT"})
    assert code == 400 and body["parameter"] == "symbol", body
    assert call(base, "POST", "/api/v1/alerts", b"{not json")[0] == 400
    code, body = call(base, "POST", "/api/v1/alerts", {**rule, "webhook": {"url": "ftp://x", "secret": "s" * 16}})
    assert code == 400 and body["parameter"] == "webhook.url", body
    code, body = call(base, "POST", "/api/v1/alerts", {**rule, "webhook": {"url": "http://127.0.0.1:9/h", "secret": "short"}})
    assert code == 400 and body["parameter"] == "webhook.secret", body
    code, body = call(base, "POST", "/api/v1/alerts", {**rule, "webhook": {"url": "http://127.0.0.1:9/h", "secret": "s" * 20}})
    assert code == 201 and body["webhook"] == {"url": "http://127.0.0.1:9/h", "secret": True}, body  # never shown
    assert call(base, "DELETE", f"/api/v1/alerts/{body['id']}")[0] == 200
    assert call(base, "DELETE", "/api/v1/alerts/abc", token=None)[0] == 401
    assert call(base, "PUT", "/api/v1/alerts", rule)[0] == 405
    assert not any(TOKEN in line for line in proc.output_lines), "the token given is never printed"


def test_a_rule_fires_on_the_server_and_the_stream_resumes_after_the_last_event_id(server):
    base, _ = server
    wait_until(lambda: call(base, "GET", "/api/v1/trades?symbol=BTCUSDT&limit=1")[0] == 200, 60)
    last = call(base, "GET", "/api/v1/candles?symbol=BTCUSDT&interval=1m")[1]["candles"][-1]
    # the price crosses the last candle's close many times at 300x, both ways
    rule = {"type": "price_cross", "symbol": "BTCUSDT", "level": last["close"], "direction": "any", "name": "close"}
    code, doc = call(base, "POST", "/api/v1/alerts", rule)
    assert code == 201 and doc["rule"]["level"] == last["close"] and "would_have_fired" in doc["backtest"], doc
    first_two = sse_events(base, 2, last_event_id="0-0")
    assert [s["rule_id"] for _, s in first_two] == [doc["id"]] * 2
    assert all(s["trade_id"] > doc["armed_after_id"] for _, s in first_two)
    resumed = sse_events(base, 1, last_event_id=first_two[0][0])
    assert resumed == first_two[1:], "the stream resumes right after the Last-Event-ID"
    kept = wait_until(lambda: (lambda b: b if len(b["signals"]) >= 2 else None)(
        call(base, "GET", f"/api/v1/signals?symbol=BTCUSDT&rule={doc['id']}")[1]), 30)
    assert [s["event_id"] for s in kept["signals"][:2]] == [s["event_id"] for _, s in first_two]
    assert [s["id"] for s in kept["signals"][:2]] == [i for i, _ in first_two]
    assert call(base, "GET", "/api/v1/alerts")[1]["alerts"][0]["id"] == doc["id"]
    assert call(base, "DELETE", f"/api/v1/alerts/{doc['id']}") == (200, {"deleted": doc["id"]})
    assert call(base, "GET", f"/api/v1/alerts/{doc['id']}")[0] == 404


def test_metrics_have_every_named_series_from_the_start_and_count_trades(server):
    """Issue 19 item 3: ingested trades as a counter ``rate()`` can use, cache lookups by result, and the labelled
    series present at 0 before their first event (reconnects and gaps of a replay never happen)."""
    base, _ = server
    wait_until(lambda: call(base, "GET", "/api/v1/trades?symbol=BTCUSDT&limit=1")[0] == 200, 60)

    def series() -> dict[str, float]:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            text = r.read().decode()
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line and not line.startswith("#")}

    first = wait_until(lambda: (lambda s: s if s.get('flowlens_trades_total{market="usdm",symbol="BTCUSDT"}') else None)(
        series()), 30)
    for name in ('flowlens_feed_reconnects{symbol="BTCUSDT"}', 'flowlens_feed_gaps{state="unfilled",symbol="BTCUSDT"}',
                 'flowlens_liquidations_total{market="usdm",symbol="BTCUSDT"}',
                 'flowlens_frames_rejected_total{reason="out_of_range",symbol="BTCUSDT"}',
                 'flowlens_cache_requests_total{kind="volume",result="hit"}',
                 'flowlens_cache_requests_total{kind="tpo",result="wait"}'):
        assert name in first, name
    later = wait_until(lambda: (lambda s: s if s['flowlens_trades_total{market="usdm",symbol="BTCUSDT"}'] >
                                first['flowlens_trades_total{market="usdm",symbol="BTCUSDT"}'] else None)(series()), 30)
    assert later['flowlens_trades_total{market="usdm",symbol="BTCUSDT"}'] > 0


def test_the_openapi_description_matches_the_write_the_error_and_the_stream_answers(server):
    """Issue 19 item 3, the paths and statuses the GET test above leaves: a rule POSTed (201), read and deleted
    through ``/api/v1/alerts/{id}``, writes without the token (401), an unknown rule (404), a method a path does
    not take (405), each validated against its status's schema; the signal stream's content type is the one the
    description gives."""
    from jsonschema import Draft202012Validator

    base, _ = server
    spec = call(base, "GET", "/api/v1/openapi.json")[1]

    def check(path: str, method: str, code: int, body: dict, want: int) -> None:
        assert code == want, (path, method, code, body)
        Draft202012Validator(spec["paths"][path][method]["responses"][str(want)]["content"]["application/json"]
                             ["schema"]).validate(body)

    rule = {"type": "price_cross", "symbol": "BTCUSDT", "market": "usdm", "level": 123456.0, "direction": "up"}
    check("/api/v1/alerts", "post", *call(base, "POST", "/api/v1/alerts", rule, token=None), 401)
    code, made = call(base, "POST", "/api/v1/alerts", rule)
    check("/api/v1/alerts", "post", code, made, 201)
    rid = made["id"]
    check("/api/v1/alerts/{id}", "get", *call(base, "GET", f"/api/v1/alerts/{rid}"), 200)
    check("/api/v1/alerts/{id}", "delete", *call(base, "DELETE", f"/api/v1/alerts/{rid}", token=None), 401)
    check("/api/v1/alerts/{id}", "delete", *call(base, "DELETE", f"/api/v1/alerts/{rid}"), 200)
    check("/api/v1/alerts/{id}", "get", *call(base, "GET", f"/api/v1/alerts/{rid}"), 404)
    check("/api/v1/vpvr", "get", *call(base, "PUT", "/api/v1/vpvr?symbol=BTCUSDT", b"{}"), 405)
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("GET", "/api/v1/signals/stream?symbol=BTCUSDT")
        r = conn.getresponse()
        assert r.status == 200
        assert r.getheader("Content-Type") in spec["paths"]["/api/v1/signals/stream"]["get"]["responses"]["200"][
            "content"]
    finally:
        conn.close()


def test_metrics_pass_promtool_check_metrics(server):
    """Issue 19 item 3: Prometheus's own linter accepts the exposition (names, types, HELP, units, counters'
    ``_total``); .ci/run installs it (Debian's ``prometheus`` package)."""
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool (Debian package prometheus) is not installed")
    base, _ = server
    wait_until(lambda: call(base, "GET", "/api/v1/trades?symbol=BTCUSDT&limit=1")[0] == 200, 60)
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read()
    assert b"flowlens_trades_total{" in text and b"flowlens_cache_requests_total{" in text
    got = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert got.returncode == 0 and not got.stdout.strip() and not got.stderr.strip(), (got.stdout, got.stderr)


def test_the_openapi_description_is_valid_and_every_live_answer_matches_it(server):
    """Issue 19 item 3: ``/api/v1/openapi.json`` is a valid OpenAPI 3.1 document (openapi-spec-validator); every
    query below uses only parameters it describes, with values its schemas accept, and each answer, a 200 or an
    error, validates against the schema of its status code (jsonschema, draft 2020-12)."""
    from jsonschema import Draft202012Validator
    from openapi_spec_validator import validate

    base, _ = server
    wait_until(lambda: call(base, "GET", "/api/v1/trades?symbol=BTCUSDT&limit=1")[0] == 200, 60)
    code, spec = call(base, "GET", "/api/v1/openapi.json")
    assert code == 200
    validate(spec)
    t0 = call(base, "GET", "/api/v1/trades?symbol=BTCUSDT&limit=1&from=1582329600000")[1]["trades"]["time"][0]
    frm, to = t0 // 60_000 * 60_000, t0 // 60_000 * 60_000 + 1_800_000
    rng = f"symbol=BTCUSDT&from={frm}&to={to}"
    good = {
        "/api/v1/vpvr": [rng + "&row_size=1&value_area=0.7", rng + "&kind=recency&half_life=600&percentiles=0.1,0.5"],
        "/api/v1/candles": [rng + "&interval=5m"],
        "/api/v1/trades": [rng + "&limit=5"],
        "/api/v1/liquidations": [rng],
        "/api/v1/sessions": [rng + "&session_length=1h&session_start=00:00&composite=1"],
        "/api/v1/vwap": [f"symbol=BTCUSDT&anchor={frm}&to={to}&bands=1,2&interval=5m"],
        "/api/v1/footprint": [rng + "&interval=5m&row_size=5&imbalance_ratio=3&stacked=3"],
        "/api/v1/developing": [rng + "&interval=5m&row_size=5"],
        "/api/v1/heatmap": [rng + "&width=60&height=40&agg=count&format=json"],
        "/api/v1/alerts": ["symbol=BTCUSDT"],
        "/api/v1/signals": ["symbol=BTCUSDT&limit=10"],
    }
    bad = {"/api/v1/vpvr": "symbol=BTCUSDT&value_area=0.99", "/api/v1/candles": "symbol=BTCUSDT&interval=7m",
           "/api/v1/trades": "symbol=BTCUSDT&limit=0", "/api/v1/alerts": "symbol=NOPE",
           "/api/v1/signals": "symbol=BTCUSDT&from=10&to=5"}
    assert set(good) | {"/api/v1/alerts/{id}", "/api/v1/signals/stream"} == set(
        spec["paths"]), "every path of the description is exercised here"
    for path, qs in good.items():
        op = spec["paths"][path]["get"]
        described = {p["name"]: p["schema"] for p in op["parameters"]}
        for q in qs:
            for name, value in urllib.parse.parse_qsl(q):  # KeyError: a parameter the description lacks
                Draft202012Validator(described[name]).validate(
                    value if described[name]["type"] == "string" else json.loads(value))
            code, body = call(base, "GET", f"{path}?{q}")
            assert code == 200, (path, q, body)
            Draft202012Validator(op["responses"]["200"]["content"]["application/json"]["schema"]).validate(body)
    for path, q in bad.items():
        code, body = call(base, "GET", f"{path}?{q}")
        assert code == 400, (path, q, body)
        Draft202012Validator(spec["paths"][path]["get"]["responses"]["400"]["content"]["application/json"]["schema"]
                             ).validate(body)
