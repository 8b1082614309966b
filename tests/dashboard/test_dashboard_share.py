"""Sharing one refresh between pages of the same view (``dashboard.share``), on real Bokeh documents and messages.

The leader's messages, re-addressed to a follower's model ids, are parsed by Bokeh's own
protocol receiver and applied to a copy of the follower's document (what its browser
holds): it then shows the leader's values, while the follower's server-side models are
left alone. The browser test ``test_pages_of_one_view_share_the_leaders_refresh...`` checks
the same on served pages in Chromium.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from bokeh.document import Document
from bokeh.protocol import Protocol
from bokeh.protocol.receiver import Receiver
from conftest import RECORDING
from test_dashboard_components import LocalView, Registry, snapshot

from dashboard import bokeh_adapter as bk
from dashboard import share
from dashboard.app import Dashboard
from dashboard.settings import DashboardSettings
from feeds.readers import read_trades


@pytest.fixture(scope="module")
def trades():
    return read_trades(RECORDING)


def _doc_of(dash) -> Document:
    doc = Document()
    for r in dash.share_roots():
        doc.add_root(r)
    return doc


async def _apply(fm: share.FrameMessage, doc: Document) -> None:
    """Feed a message's websocket frames to Bokeh's receiver (as BokehJS reads them) and apply it to ``doc``."""
    rx = Receiver(Protocol())
    msg = None
    for payload in fm.frames:
        msg = await rx.consume(payload)
    assert msg is not None and msg.msgtype == "PATCH-DOC"
    msg.apply_to_document(doc)


async def test_a_leaders_state_readdressed_sets_the_followers_browser_and_leaves_its_server_models(trades):
    snap = snapshot(trades, 90)
    leader = Dashboard(Registry(LocalView(snap)), DashboardSettings(heatmap=True, developing=True), symbols=["BTCUSDT"])
    follower = Dashboard(Registry(LocalView(snap)), DashboardSettings(heatmap=True, developing=True),
                         symbols=["BTCUSDT"])
    pairs = share.pair_models(leader.share_roots(), follower.share_roots())
    assert pairs is not None and len(pairs) > 50
    assert all(type(a) is type(b) and a.name == b.name and a.id != b.id for a, b in pairs.values())
    idmap = {lid: f.id for lid, (_, f) in pairs.items()}

    ldoc, fdoc = _doc_of(leader), _doc_of(follower)
    browser = Document.from_json(fdoc.to_json())  # what the follower's browser holds: its own page as first sent
    await leader.refresh()
    assert len(leader.chart.candles.data["t"]) > 60 and len(leader.profile.source.data["y"]) > 10
    # a text that looks like a model reference must travel untouched
    leader.status.div.text = f'<span data-x=\'"id":"{leader.chart.candles.id}"\'>status</span>'
    state = [(leader.chart.candles, "data"), (leader.profile.source, "data"), (leader.chart.developing, "data"),
             (leader.chart.heat, "data"), (leader.chart.x_range, "start"), (leader.chart.x_range, "end"),
             (leader.chart.y_range, "start"), (leader.status.div, "text"), (leader.summary.div, "text")]
    fm = share.state_message(ldoc, state)
    assert share._mappable(fm, idmap) and not share._mappable(fm, {})
    await _apply(fm.with_ids(idmap), browser)

    def shown(model_of, attr):
        return browser.get_model_by_id(model_of(follower).id).properties_with_values()[attr]

    for get in (lambda d: d.chart.candles, lambda d: d.profile.source, lambda d: d.chart.developing):
        want, got = get(leader).data, shown(get, "data")
        assert set(got) == set(want)
        for col, values in want.items():
            assert list(np.asarray(got[col]).ravel()) == list(np.asarray(values).ravel()), col
    assert np.array_equal(shown(lambda d: d.chart.heat, "data")["image"][0], leader.chart.heat.data["image"][0],
                          equal_nan=True)
    assert shown(lambda d: d.chart.x_range, "start") == leader.chart.x_range.start
    assert shown(lambda d: d.chart.x_range, "end") == leader.chart.x_range.end
    assert shown(lambda d: d.status.div, "text") == leader.status.div.text
    assert shown(lambda d: d.summary.div, "text") == leader.summary.div.text
    # the follower's server-side models were not touched
    assert len(follower.chart.candles.data["t"]) == 0 and follower.status.object == "connecting…"


def test_pages_built_differently_do_not_pair():
    a = Dashboard(Registry(None), DashboardSettings(), symbols=["BTCUSDT"])
    b = Dashboard(Registry(None), DashboardSettings(view="footprint"), symbols=["BTCUSDT"])
    b._ensure_footprint()
    assert share.pair_models(a.share_roots(), b.share_roots()) is None
    c = Dashboard(Registry(None), DashboardSettings(), symbols=["BTCUSDT"])
    assert share.pair_models(a.share_roots(), c.share_roots()) is not None


def test_pages_outside_a_served_session_never_share(trades):
    dash = Dashboard(Registry(LocalView(snapshot(trades, 30))), DashboardSettings(), symbols=["BTCUSDT"])
    assert dash.share_key() is None and not dash._following()


async def test_a_refresh_is_sealed_in_few_messages_serialized_at_once_in_event_order():
    """Bokeh queues one PATCH-DOC per event and serializes each when it writes it; sealed, they go as few, frozen."""
    from bokeh.models import ColumnDataSource, Div, Range1d

    doc = Document()
    src, div, rng = ColumnDataSource({"a": [1.0]}), Div(text="x"), Range1d(0, 1)
    for m in (src, div, rng):
        doc.add_root(m)
    events = []
    doc.on_change(lambda e: events.append(e))
    div.text = "status"
    src.data = {"a": np.arange(3.0)}
    rng.end = 2.0
    src.patch({"a": [(0, 9.0)]})
    div.text = "summary"
    assert len(events) == 5
    conns = ("connection",)
    earlier = bk.pending_patch(events[0], Protocol(), conns)  # queued before this refresh: left alone
    pending = [earlier] + [bk.pending_patch(e, Protocol(), conns) for e in events]
    msgs = share.seal(pending, 1, doc)
    # in order, at most one change of column data per message, the array inline: 3 frames each, no binary buffer
    assert len(msgs) == 2 and len(pending) == 3 and pending[0] is earlier
    assert [p.protocol.create("PATCH-DOC", [p.event]) for p in pending[1:]] == msgs
    assert all(isinstance(f, str) for m in msgs for f in m.frames) and [len(m.frames) for m in msgs] == [3, 3]
    contents = [json.loads(m.frames[2]) for m in msgs]
    assert [[e["kind"] for e in c["events"]] for c in contents] == [
        ["ModelChanged", "ColumnDataChanged", "ModelChanged"], ["ColumnsPatched", "ModelChanged"]]
    array = contents[0]["events"][1]["data"]["entries"][0][1]
    assert array["type"] == "ndarray" and isinstance(array["array"]["data"], str)  # base64, not a buffer ref
    src.data = {"a": np.arange(7.0)}  # a later change is not in the sealed messages
    browser = Document.from_json(doc.to_json())
    for fm in msgs:
        await _apply(fm, browser)
    b_src, b_div, b_rng = (browser.get_model_by_id(m.id) for m in (src, div, rng))
    assert list(b_src.data["a"]) == [9.0, 1.0, 2.0] and b_div.text == "summary" and b_rng.end == 2.0
    assert share.seal(pending, len(pending), doc) is None  # nothing new: nothing sealed


def test_the_service_reads_the_pages_share_stats_through_its_hook_and_never_imports_dashboard():
    """``service.ops`` asks registered providers (``dashboard.share`` registers at import); ``service/`` names no ``dashboard``."""
    import ast
    import pathlib

    from service import ops

    assert ops.STATS_PROVIDERS["dashboard.share"] is share.page_stats
    before = share.page_stats()
    share.STATS["shared"] += 2
    try:
        after = share.page_stats()
        assert after.refreshes["shared"] == before.refreshes["shared"] + 2 and after.followers == share.followers()
    finally:
        share.STATS["shared"] -= 2
    root = pathlib.Path(__file__).resolve().parents[2] / "service"
    imported = set()
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {(path.name, a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add((path.name, node.module))
    assert imported and not [(f, m) for f, m in imported if m.split(".")[0] == "dashboard"]


def test_a_follower_that_leaves_does_not_send_back_what_its_browser_set(trades):
    """A follower's leave restores what its leader sent it, but not the x range its own browser panned to.

    The browser's pan reaches the server as Bokeh's ``PATCH-DOC`` applied with the session as
    setter (``ServerSession._handle_patch``, here with a stand-in session object). A drag sends a
    dozen ranges and the leave runs at the next refresh, so the server's range can be older than
    the browser's by then: sent back, it moved the browser's range back, and the page's profile
    (of the server's range) never matched what it showed.
    """
    snap = snapshot(trades, 30)
    leader = Dashboard(Registry(LocalView(snap)), DashboardSettings(), symbols=["BTCUSDT"])
    follower = Dashboard(Registry(LocalView(snap)), DashboardSettings(), symbols=["BTCUSDT"])
    pairs = share.pair_models(leader.share_roots(), follower.share_roots())
    fdoc = _doc_of(follower)
    follower.link.doc = fdoc
    browser = Document.from_json(fdoc.to_json())  # the follower's browser
    touched = [(leader.chart.x_range.id, "start"), (leader.chart.x_range.id, "end"), (leader.status.div.id, "text")]
    member = share.Member(follower, {lid: f for lid, (_, f) in pairs.items()}, key="k", browser=object(),
                          touched=dict.fromkeys(touched))
    group = share.ShareGroup("k", leader)
    group.members[id(follower)] = member
    follower.link.group, follower.link.member = group, member
    fdoc.on_change(member.browser_changed)

    # the viewer pans: the browser's range change, as the browser sends it, applied as Bokeh's server applies it
    xr = browser.get_model_by_id(follower.chart.x_range.id)
    sent = []
    browser.on_change(sent.append)
    xr.update(start=1_582_300_000_000.0, end=1_582_303_600_000.0)
    Protocol().create("PATCH-DOC", sent).apply_to_document(fdoc, member.browser)
    follower.status.div.text = "a server-side change (not the browser's)"
    assert member.from_browser == {(follower.chart.x_range.id, "start"), (follower.chart.x_range.id, "end")}

    echoed = []
    fdoc.on_change(echoed.append)
    share.leave(follower)
    assert not member.active and follower.link.member is None and id(follower) not in group.members
    assert [(e.model.id, e.attr) for e in echoed] == [(follower.status.div.id, "text")]
    assert (follower.chart.x_range.start, follower.chart.x_range.end) == (1_582_300_000_000.0, 1_582_303_600_000.0)
    with pytest.raises(KeyError):  # the leave unhooked it
        fdoc.remove_on_change(member.browser_changed)
