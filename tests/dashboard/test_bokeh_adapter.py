"""Every Bokeh/Panel internal that ``dashboard/bokeh_adapter.py`` relies on exists and behaves as it assumes.

A Bokeh or Panel upgrade that removes or changes one of them fails here, by name,
instead of a served page quietly sending nothing (or everything twice). The pins in
pyproject.toml (bokeh 3.10.x, panel 1.10.x) keep the installed versions the ones
checked; raising a pin means running this file first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import pathlib
import re

import bokeh
import numpy as np
import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, Div
from bokeh.protocol import Protocol

from dashboard import bokeh_adapter as bk

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_pins_match_the_installed_versions_this_file_checks():
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for mod, name in ((bokeh, "bokeh"), (pn, "panel")):
        major, minor = (int(x) for x in mod.__version__.split(".")[:2])
        assert f"{name}>={major}.{minor},<{major}.{minor + 1}" in deps, (name, mod.__version__)


def test_no_other_module_touches_a_private_bokeh_or_panel_attribute():
    """The names the adapter reads: nowhere else in dashboard/ or service/."""
    private = re.compile(r"_periodic\b|_pending_writes|_subscribed_connections|_held_events|_PendingPatch|_socket\b"
                         r"|session_context\._session|\._background")
    hits = [(p.name, m.group()) for d in ("dashboard", "service") for p in (ROOT / d).glob("*.py")
            if p.name != "bokeh_adapter.py" for m in private.finditer(p.read_text())]
    assert hits == []
    assert private.search((ROOT / "dashboard" / "bokeh_adapter.py").read_text())  # the check can see them


def test_pending_patch_is_the_frozen_event_protocol_connections_record_seal_replaces():
    from bokeh.server.session import _PendingPatch

    assert dataclasses.is_dataclass(_PendingPatch)
    assert [f.name for f in dataclasses.fields(_PendingPatch)] == ["event", "protocol", "connections"]
    p = bk.pending_patch("event", "protocol", ("c",))
    assert type(p) is _PendingPatch and (p.event, p.protocol, p.connections) == ("event", "protocol", ("c",))


class _Socket:
    """What ``ServerConnection`` writes to: records the messages (Bokeh's WSHandler sends them)."""

    def __init__(self):
        self.sent = []

    async def send_message(self, message):
        self.sent.append(message)


async def test_a_locked_callbacks_pending_writes_are_a_list_seal_rewrites_and_bokeh_sends_as_they_are():
    """On a real ServerSession and ServerConnection: the queue, the subscribed connections, the send path."""
    from bokeh.server.connection import ServerConnection
    from bokeh.server.session import ServerSession

    doc = Document()
    src, div = ColumnDataSource({"a": [1.0]}), Div(text="x")
    doc.add_root(src)
    doc.add_root(div)
    session = ServerSession("s1", doc, io_loop=None)
    assert bk.pending_writes(session) is None  # only a list while the lock is held
    socket = _Socket()
    conn = ServerConnection(Protocol(), socket, None, session)
    assert bk.connections(session) == [conn] and session.connection_count == 1
    sealed = []

    async def change(doc_):
        pending = bk.pending_writes(session)
        assert pending == []
        div.text = "status"
        src.data = {"a": np.arange(3.0)}
        src.patch({"a": [(0, 9.0)]})
        assert [type(p.event).__name__ for p in pending] == ["ModelChangedEvent", "ColumnDataChangedEvent",
                                                            "ColumnsPatchedEvent"]
        assert all(p.connections == (conn,) for p in pending)
        sealed.extend(bk.seal(pending, 0, doc) or ())

    await session.with_document_locked(change, doc)
    assert bk.pending_writes(session) is None
    # Bokeh serialized the sealed entries through the stand-in protocol and wrote them unchanged
    assert len(sealed) == 2 and socket.sent == sealed
    first = json.loads(sealed[0].frames[2])
    assert [e["kind"] for e in first["events"]] == ["ModelChanged", "ColumnDataChanged"]
    conn.detach_session()


async def test_a_frame_message_goes_out_through_bokehs_websocket_handler_under_its_write_lock():
    from bokeh.server.views.ws import WSHandler

    assert "locked" in inspect.signature(WSHandler.write_message).parameters
    written = []

    class Lock:  # as tornado's: ``with await lock.acquire():``
        held = False

        async def acquire(self):
            self.held = True
            return self

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.held = False

    class Handler:
        write_lock = Lock()

        async def write_message(self, payload, binary=False, locked=True):
            assert not locked and self.write_lock.held
            written.append(payload)

    fm = bk.FrameMessage("h", "m", '{"id":"p1"}')
    await WSHandler.send_message(Handler(), fm)  # what ServerConnection.send_message ends in
    assert written == ["h", "m", '{"id":"p1"}'] and not Handler.write_lock.held
    src = inspect.getsource(WSHandler.__init__)
    assert "self.write_lock" in src


def test_patch_message_names_models_by_simple_ids_in_json_the_adapter_rewrites():
    doc = Document()
    src = ColumnDataSource({"a": [1.0]})
    doc.add_root(src)
    events = []
    doc.on_change(lambda event: events.append(event))
    src.data = {"a": np.arange(4.0)}
    assert bk.SIMPLE_ID.fullmatch(src.id)
    fm = bk.patch_message(doc, events)
    assert len(fm.frames) == 3 and fm.ids() == {src.id}
    moved = fm.with_ids({src.id: "p999999"})
    assert moved.ids() == {"p999999"} and json.loads(moved.frames[2])["events"][0]["model"]["id"] == "p999999"
    with pytest.raises(ValueError):
        bk.patch_message(doc, [])
    assert bk.seal([], 0, doc) is None


def test_a_hold_releases_its_events_to_on_change_callbacks_on_unhold():
    doc = Document()
    div = Div(text="a")
    doc.add_root(div)
    doc.hold("collect")
    div.text = "b"
    div.text = "c"
    assert doc.callbacks.hold_value == "collect"
    with bk.collecting(doc) as events:
        doc.unhold()
    assert [(e.model, e.attr, e.new) for e in events] == [(div, "text", "b"), (div, "text", "c")]
    div.text = "d"
    assert len(events) == 2  # removed on exit


def test_the_session_of_a_document_is_the_public_session_context_property():
    from bokeh.server.contexts import BokehSessionContext

    assert isinstance(inspect.getattr_static(BokehSessionContext, "session"), property)
    assert bk.session_of(Document()) is None and bk.session_of(None) is None


def test_a_background_periodic_callback_does_not_count_as_busy_and_stops_with_its_session():
    from panel.io.callbacks import PeriodicCallback

    assert PeriodicCallback(callback=lambda: None)._background is False
    assert "_background" in inspect.getsource(PeriodicCallback._periodic_callback)

    async def run():
        calls = []
        cb = bk.background_periodic_callback(lambda: calls.append(1), 10)
        try:
            assert cb._background is True and cb.running
            for _ in range(200):
                if calls:
                    break
                await asyncio.sleep(0.01)
            assert calls and pn.state.busy is False
        finally:
            cb.stop()
        assert not cb.running

    asyncio.run(run())
    assert "on_session_destroyed" in dir(pn.state)
