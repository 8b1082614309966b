"""Every use of a Bokeh or Panel internal in flowlens, in one place (pinned: bokeh 3.10.x, panel 1.10.x).

The page sends a refresh as a few pre-serialized ``PATCH-DOC`` messages (one
serialization for all the sessions that share it, :mod:`dashboard.share`). Neither
Bokeh nor Panel has a public API for that, so this module reaches into their
internals; each use says which public API is missing. Nothing else in
``dashboard/`` or ``service/`` may touch a leading-underscore attribute of a Bokeh
or Panel object. ``tests/dashboard/test_bokeh_adapter.py`` checks every assumption made here
against the installed versions, so an upgrade that changes one fails loudly there
rather than quietly on a served page.

Public APIs used where they exist (they replaced internals used before):

- the session of a document: ``BokehSessionContext.session`` (was ``session_context._session``);
- writing to a connection: ``ServerConnection.send_message`` (was ``conn._socket``);
- the events of a document hold: a ``Document.on_change`` callback during ``unhold``
  (was ``doc.callbacks._held_events``);
- stopping a periodic callback with its session: ``pn.state.on_session_destroyed``
  (was appending to ``pn.state._periodic``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

#: A model id in serialized Bokeh JSON. Missing public API: a way to serialize a patch once and re-address it
#: to another document's models; Bokeh serializes a reference as ``{"id":"p1234"}`` (3.10), so the ids are
#: rewritten in the text.
ID_IN_JSON = re.compile(r'"id":"(p\d+)"')
#: Bokeh's default ("simple") model ids: ``p`` and a process-wide counter, so creation order is id order.
SIMPLE_ID = re.compile(r"p\d+")


def id_order(model) -> int:
    """The creation order of a model with a simple id (``p1234`` -> 1234)."""
    return int(model.id[1:])


class FrameMessage:
    """A serialized Bokeh protocol message without buffers: its three text frames (header, metadata, content).

    Stands in for ``bokeh.protocol.message.Message`` where Bokeh's server sends one:
    ``prepare`` does nothing, ``send(handler)`` writes the frames under the websocket
    handler's ``write_lock`` with ``write_message(..., locked=False)``, as ``Message.send``
    does. Missing public API: sending a message serialized once to several sessions.
    """

    def __init__(self, header: str, metadata: str, content: str):
        self.frames = (header, metadata, content)
        self._parts: list[str] | None = None

    def with_ids(self, idmap: dict[str, str]) -> FrameMessage:
        """The same message with model ids replaced (in the content frame)."""
        if self._parts is None:  # [text, id, text, id, ..., text], split once for every follower
            self._parts = ID_IN_JSON.split(self.frames[2])
        parts = self._parts
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            out += ['"id":"', idmap.get(parts[i], parts[i]), '"', parts[i + 1]]
        return FrameMessage(self.frames[0], self.frames[1], "".join(out))

    def ids(self) -> set[str]:
        """The model ids the message names."""
        return set(ID_IN_JSON.findall(self.frames[2]))

    def prepare(self) -> None:
        """Nothing to do: the frames are ready (Bokeh calls it before sending)."""

    async def send(self, handler) -> int:
        """Write the frames to a Bokeh ``WSHandler``, under its write lock; returns the characters sent."""
        sent = 0
        with await handler.write_lock.acquire():
            for payload in self.frames:
                await handler.write_message(payload, locked=False)
                sent += len(payload)
        return sent


def patch_message(doc, events) -> FrameMessage:
    """One ``PATCH-DOC`` of ``events`` (Bokeh document events of ``doc``, applied in order), with no binary buffer.

    Built as Bokeh's ``patch_doc.create`` builds it, but with one ``Serializer(deferred=False)``:
    numpy columns go inline (base64, as BokehJS also reads them) instead of one binary
    websocket frame pair each: 3 frames (header, metadata, content) however many columns
    and events, where Bokeh sends one message per event and 2 more frames per array.
    Missing public API: ``patch_doc.create`` takes neither several events' serializer
    options nor a way to inline buffers; ``doc.models.synced_references`` and
    ``flush_synced`` (public names, undocumented) are what ``create`` itself uses.
    Raises ValueError when ``events`` is empty.
    """
    from bokeh.core.serialization import Serializer
    from bokeh.document.json import PatchJson
    from bokeh.io.doc import patch_curdoc
    from bokeh.protocol.messages.patch_doc import patch_doc

    if not events:
        raise ValueError("PATCH-DOC message requires at least one event")
    with patch_curdoc(doc):
        serializer = Serializer(references=doc.models.synced_references, deferred=False)
        content = PatchJson(events=serializer.encode(events))
        doc.models.flush_synced(lambda model: not serializer.has_ref(model))  # as patch_doc.create does
        msg = patch_doc(patch_doc.create_header(), {}, content)
    return FrameMessage(msg.header_json, msg.metadata_json, msg.content_json)


class _Prebuilt:
    """Stands in for a Bokeh ``Protocol`` in a pending patch: ``create`` returns the ready message.

    Bokeh's server serializes each pending patch with ``patch.protocol.create("PATCH-DOC",
    [patch.event])`` (``bokeh.server.session._serialize_patches``) when it writes it.
    """

    def __init__(self, message):
        self._message = message

    def create(self, *_args, **_kw):
        return self._message


def _data_event(event) -> bool:
    from bokeh.document.events import ColumnDataChangedEvent, ColumnsPatchedEvent, ColumnsStreamedEvent

    return isinstance(event, ColumnDataChangedEvent | ColumnsPatchedEvent | ColumnsStreamedEvent)


def _one_data_change_each(events) -> list[list]:
    """``events`` in order, cut so that each part holds at most one change of column data."""
    groups: list[list] = [[]]
    has_data = False
    for event in events:
        data = _data_event(event)
        if data and has_data:
            groups.append([])
            has_data = False
        groups[-1].append(event)
        has_data = has_data or data
    return groups


def seal(pending: list, n0: int, doc) -> list[FrameMessage] | None:
    """Serialize the messages Bokeh queued since ``pending[n0]`` now, as few ``PATCH-DOC`` as can be; returns them.

    ``pending`` is a Bokeh ``ServerSession``'s pending writes (:func:`pending_writes`:
    ``_PendingPatch(event, protocol, connections)``, one per document event), replaced
    here by one entry per :func:`patch_message`. Missing public API: a hook to serialize
    a locked callback's changes as the application wants. The events keep their order; a
    message holds at most one change of column data (``ColumnDataChanged``,
    ``ColumnsStreamed``, ``ColumnsPatched``) and the other events around it. With two
    data changes in one message, BokehJS 3.10 (which applies a message's events at once
    and updates each glyph asynchronously) drew text colours of one length against texts
    of another: "Offset is outside the bounds of the DataView", seen in the footprint
    view of the browser tests; with one per message it never was. Serializing at once
    also freezes the values: Bokeh serializes a queued event when it writes it, from the
    model's state then. Returns None (and leaves the entries as they are) when there is
    nothing, or anything unexpected (another Bokeh version, several connection sets).
    """
    new = pending[n0:]
    if not new:
        return None
    try:
        from bokeh.server.session import _PendingPatch

        if not all(type(p) is _PendingPatch and p.connections == new[0].connections for p in new):
            return None
        groups = _one_data_change_each([p.event for p in new])
        out = [patch_message(doc, events) for events in groups]
        entries = [_PendingPatch(events[0], _Prebuilt(fm), new[0].connections)
                   for events, fm in zip(groups, out, strict=True)]
    except (ImportError, AttributeError, TypeError):
        return None
    del pending[n0:]
    pending.extend(entries)
    return out


def pending_patch(event, protocol, connections):
    """A Bokeh pending write (``bokeh.server.session._PendingPatch``), as a ``ServerSession`` queues one."""
    from bokeh.server.session import _PendingPatch

    return _PendingPatch(event, protocol, connections)


def session_of(doc):
    """The Bokeh ``ServerSession`` serving ``doc`` (None outside a served session). Public API."""
    ctx = getattr(doc, "session_context", None) if doc is not None else None
    return getattr(ctx, "session", None)


def pending_writes(session) -> list | None:
    """The session's queue of writes while a locked callback runs (None when not locked or not a session).

    Missing public API: the document events Bokeh will send when a locked callback ends
    (``ServerSession._pending_writes``: a list only while the document lock is held).
    """
    pending = getattr(session, "_pending_writes", None)
    return pending if isinstance(pending, list) else None


def connections(session) -> list:
    """The connections (``ServerConnection``) subscribed to a session.

    Missing public API: ``ServerSession`` exposes only ``connection_count``
    (``_subscribed_connections`` is the set behind it).
    """
    return list(getattr(session, "_subscribed_connections", ()) or ())


async def send(connection, message) -> None:
    """Write a message to one connection. Public API: ``ServerConnection.send_message``."""
    await connection.send_message(message)


@contextlib.contextmanager
def collecting(doc) -> Iterator[list]:
    """Yield a list that receives every event ``doc`` triggers in the body (e.g. a hold's, on ``unhold``).

    Public API: a ``Document.on_change`` callback, removed on exit.
    """
    events: list = []

    def collect(event) -> None:
        events.append(event)

    doc.on_change(collect)
    try:
        yield events
    finally:
        doc.remove_on_change(collect)


def background_periodic_callback(callback: Callable, period: int):
    """Start a Panel ``PeriodicCallback`` that does not turn the page's busy indicator on; stopped with its session.

    Missing public API: ``pn.state.add_periodic_callback`` has no ``background`` option;
    ``PeriodicCallback(background=True)`` is an undocumented constructor keyword (kept in
    ``PeriodicCallback._background``). The callback is stopped when the session is
    destroyed through the public ``pn.state.on_session_destroyed``.
    """
    import panel as pn
    from panel.io.callbacks import PeriodicCallback

    cb = PeriodicCallback(callback=callback, period=period, background=True)
    cb.start()
    if pn.state.curdoc is not None:
        def stop(session_context) -> None:  # Bokeh checks the parameter's name
            cb.stop()

        pn.state.on_session_destroyed(stop)
    return cb


__all__ = ["ID_IN_JSON", "SIMPLE_ID", "FrameMessage", "background_periodic_callback", "collecting", "connections",
           "id_order", "patch_message", "pending_patch", "pending_writes", "seal", "send", "session_of"]
