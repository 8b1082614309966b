"""Sessions that show the same thing share one refresh: one leader computes it, the others get its bytes.

A page with the same settings, following the live edge, looks the same in every browser.
Each Bokeh session still owns its own document, with its own model ids, so Bokeh
would apply and serialize every change once per session (about 9 ms of the server's
loop per session refresh, measured with 20 sessions; see ``benchmarks/bench_load.py``).
Here, per server process and per :meth:`Dashboard.share_key <dashboard.app.Dashboard.share_key>`:

- the **leader** (the first session of the key) refreshes as usual; the ``PATCH-DOC``
  messages of its refresh are serialized once;
- every **follower** (a later session of the key) gets those messages as they are, with
  the leader's model ids replaced by its own (its page was built by the same code, so its
  models pair one to one with the leader's, in creation order). The follower's own
  server-side models are not touched: that is where the saving is.

Protocol and consistency (the browser of a follower must show what the leader's shows):

- **join** (once its browser has drawn its page): a session joins with one message
  carrying the leader's current values of every ``(model, attribute)`` either session
  ever changed; from then on the leader's changes apply on the same state;
- **leave** (the follower's viewer pans, zooms, clicks a row or changes a setting, its
  connection fell behind, or the group broke up): the follower sends its own, older
  server-side values of every ``(model, attribute)`` it received from the leader, so its
  browser and its server agree again, then refreshes on its own;
- a leader that leaves, or whose browser went away, breaks the group up; its followers
  leave and form a new group at their next refresh.

Messages to a follower go out in order, by one writer task per follower, each under the
connection's write lock; one that falls :data:`MAX_INFLIGHT` refreshes behind leaves the
group instead of queueing more.
Only Bokeh's simple ids (``p1234``, the default) are supported; with others nothing is
shared (correct, only slower).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: A follower with this many undelivered broadcasts leaves the group (and catches up on its own).
MAX_INFLIGHT = 4

#: This process's counts: ``own`` refreshes (a leader's or a lone page's) and ``shared`` (a leader's refresh
#: sent to a follower). Read by ``/metrics``.
STATS: collections.Counter = collections.Counter()

_ID = re.compile(r'"id":"(p\d+)"')
_SIMPLE = re.compile(r"p\d+")


def touched_pairs(events) -> list[tuple[object, str]]:
    """The ``(model, attribute)`` pairs that Bokeh document events change (others are skipped)."""
    out = []
    for e in events:
        model, attr = getattr(e, "model", None), getattr(e, "attr", None)
        if model is not None and isinstance(attr, str):
            out.append((model, attr))
    return out


def _order(model) -> int:
    return int(model.id[1:])


def pair_models(leader_roots, follower_roots) -> dict[str, tuple[object, object]] | None:
    """Pair the models reachable from two pages built by the same code: ``{leader id: (leader model, follower model)}``.

    Both sets of Bokeh models are walked (``Model.references``) and sorted by creation
    order (Bokeh's simple ids ``p<counter>``); the pairs must agree in class and ``name``.
    Returns None when they do not (or the ids are not simple ids): those pages cannot share.
    """
    def collect(roots):
        seen: dict[str, object] = {}
        for r in roots:
            for m in r.references():
                seen[m.id] = m
        return seen

    lm, fm = collect(leader_roots), collect(follower_roots)
    if len(lm) != len(fm) or not all(_SIMPLE.fullmatch(i) for i in (*lm, *fm)):
        return None
    ls, fs = sorted(lm.values(), key=_order), sorted(fm.values(), key=_order)
    if any(type(a) is not type(b) or a.name != b.name for a, b in zip(ls, fs, strict=True)):
        return None
    return {a.id: (a, b) for a, b in zip(ls, fs, strict=True)}


class FrameMessage:
    """A serialized Bokeh protocol message without buffers: its three text frames (header, metadata, content).

    Stands in for ``bokeh.protocol.message.Message`` where Bokeh's server sends one
    (``ServerConnection.send_message`` and the session's pending writes): ``prepare`` does
    nothing, ``send`` writes the frames under the connection's write lock.
    """

    def __init__(self, header: str, metadata: str, content: str):
        self.frames = (header, metadata, content)
        self._parts: list[str] | None = None

    def with_ids(self, idmap: dict[str, str]) -> FrameMessage:
        """The same message with model ids replaced (in the content frame)."""
        if self._parts is None:  # [text, id, text, id, ..., text], split once for every follower
            self._parts = _ID.split(self.frames[2])
        parts = self._parts
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            out += ['"id":"', idmap.get(parts[i], parts[i]), '"', parts[i + 1]]
        return FrameMessage(self.frames[0], self.frames[1], "".join(out))

    def prepare(self) -> None:
        pass

    async def send(self, conn) -> int:
        sent = 0
        with await conn.write_lock.acquire():
            for payload in self.frames:
                await conn.write_message(payload, locked=False)
                sent += len(payload)
        return sent


class _Prebuilt:
    """Stands in for a Bokeh ``Protocol`` in a pending patch: ``create`` returns the ready message."""

    def __init__(self, message):
        self._message = message

    def create(self, *_args, **_kw):
        return self._message


def ids_of(message: FrameMessage) -> set[str]:
    return set(_ID.findall(message.frames[2]))


@dataclass(eq=False)
class Member:
    """One follower's side of a group: its model map and what it was sent."""

    dash: object
    models: dict[str, object]                 # leader model id -> follower model
    idmap: dict[str, str] = field(init=False)  # leader model id -> follower model id
    touched: dict[tuple[str, str], None] = field(default_factory=dict)  # (leader id, attr) it was sent
    active: bool = True
    #: messages to send, in order (each entry a refresh's list), written by one task per follower
    queue: collections.deque = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self):
        self.idmap = {lid: m.id for lid, m in self.models.items()}

    def stop(self) -> None:
        self.active = False
        self.wake.set()

    def put(self, msgs: list[FrameMessage]) -> None:
        self.queue.append(msgs)
        self.wake.set()


class ShareGroup:
    """The sessions of one share key in this process: a leader and its followers."""

    def __init__(self, key, leader):
        self.key = key
        self.leader = leader
        self.members: dict[int, Member] = {}
        self.open = True

    def leader_ok(self) -> bool:
        return self.open and self.leader._connected() and self.leader._doc is not None

    def close(self) -> None:
        """Break the group up: every follower leaves (at its next refresh, which is asked for now)."""
        if not self.open:
            return
        self.open = False
        if GROUPS.get(self.key) is self:
            del GROUPS[self.key]
        for m in list(self.members.values()):
            m.stop()
            m.dash.poke()
        self.members.clear()


#: This process's groups by share key (sessions live on one event loop per process).
GROUPS: dict[object, ShareGroup] = {}


def join(dash, key, lead: bool = True) -> str:
    """Put ``dash`` in the group of ``key``: returns ``"leader"``, ``"follower"`` or ``""`` (not joined).

    With an open group whose leader is connected, ``dash`` follows it: its join message
    (the leader's current values of every ``(model, attr)`` either page has changed) is
    the first its writer task sends, after whatever its session had queued. Otherwise,
    when ``lead``, ``dash`` leads a new group of ``key``. Call inside the session's
    locked callback, once its browser has drawn the page.
    """
    group = GROUPS.get(key)
    if group is None or group.leader is dash or not group.leader_ok():
        if not lead:
            return ""
        if group is not None:
            group.close()
        GROUPS[key] = dash._group = ShareGroup(key, dash)
        dash._member = None
        return "leader"
    leader = group.leader
    session, conns = dash._session(), dash._connections()
    pairs = pair_models(leader.share_roots(), dash.share_roots())
    if pairs is None or session is None or not conns:
        return ""
    lid_of = {f.id: lid for lid, (_, f) in pairs.items()}
    state: dict[tuple[str, str], tuple[object, str]] = {}
    for (mid, attr), (model, _) in leader._touched.items():
        if mid in pairs:
            state[(mid, attr)] = (model, attr)
    for (fid, attr) in dash._touched:
        lid = lid_of.get(fid)
        if lid is not None:
            state[(lid, attr)] = (pairs[lid][0], attr)
    member = Member(dash, {lid: f for lid, (_, f) in pairs.items()}, touched=dict.fromkeys(state))
    fm = state_message(leader._doc, state.values())
    if fm is not None:
        if not _mappable(fm, member.idmap):
            return ""
        member.put([fm.with_ids(member.idmap)])
    asyncio.ensure_future(_writer(member, session))
    group.members[id(dash)] = member
    dash._group, dash._member = group, member
    return "follower"


def _mappable(fm: FrameMessage, idmap: dict[str, str]) -> bool:
    """True when every model id in the message is one the follower has a pair for."""
    return ids_of(fm) <= idmap.keys()


def _state_events(doc, pairs) -> list:
    """Document events that set each ``(model, attr)`` to its current value: data sources whole, others as is."""
    from bokeh.document.events import ColumnDataChangedEvent, ModelChangedEvent
    from bokeh.models import ColumnDataSource

    return [ColumnDataChangedEvent(doc, model, "data") if attr == "data" and isinstance(model, ColumnDataSource)
            else ModelChangedEvent(doc, model, attr, getattr(model, attr)) for model, attr in pairs]


def state_message(doc, pairs) -> FrameMessage | None:
    """One ``PATCH-DOC`` that sets each ``(model, attr)`` of ``doc`` to its current value (None: no pairs)."""
    events = _state_events(doc, pairs)
    return patch_message(doc, events) if events else None


def leave(dash) -> None:
    """Take ``dash`` out of its group; a follower first sends its own server-side values of what it was sent.

    Call inside the session's locked callback, within a document hold (the events then go
    out as the session's own messages, after any broadcast already queued for it).
    """
    group, member = dash._group, dash._member
    dash._group = dash._member = None
    if group is None:
        return
    if member is None:  # the leader
        group.close()
        return
    member.stop()
    group.members.pop(id(dash), None)
    doc = dash._doc
    pairs = [(member.models[lid], attr) for lid, attr in member.touched if lid in member.models]
    for ev in _state_events(doc, pairs):
        doc.callbacks.trigger_on_change(ev)


def patch_message(doc, events) -> FrameMessage:
    """One ``PATCH-DOC`` of ``events`` (Bokeh document events of ``doc``, applied in order), with no binary buffer.

    Built as Bokeh's ``patch_doc.create`` builds it, but with one ``Serializer(deferred=False)``:
    numpy columns go inline (base64, as BokehJS also reads them) instead of one binary
    websocket frame pair each: 3 frames (header, metadata, content) however many columns
    and events, where Bokeh sends one message per event and 2 more frames per array. With
    :func:`seal`, an embedded chart at 20x replay gets 31 frames per second instead of 232
    (the ``frames/s`` column of ``benchmarks/bench_load.py``). Base64 is 4/3 of the bytes
    of the arrays it carries.
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


def _data_event(event) -> bool:
    from bokeh.document.events import ColumnDataChangedEvent, ColumnsPatchedEvent, ColumnsStreamedEvent

    return isinstance(event, ColumnDataChangedEvent | ColumnsPatchedEvent | ColumnsStreamedEvent)


def seal(pending: list, n0: int, doc) -> list[FrameMessage] | None:
    """Serialize the messages Bokeh queued since ``pending[n0]`` now, as few ``PATCH-DOC`` as can be; returns them.

    ``pending`` is a Bokeh ``ServerSession``'s pending writes (``_PendingPatch(event,
    protocol, connections)``, one per document event), replaced here by one entry per
    :func:`patch_message`. The events keep their order; a message holds at most one
    change of column data (``ColumnDataChanged``, ``ColumnsStreamed``, ``ColumnsPatched``)
    and the other events around it. With two data changes in one message, BokehJS 3.10
    (which applies a message's events at once and updates each glyph asynchronously)
    drew text colours of one length against texts of another: "Offset is outside the
    bounds of the DataView", seen in the footprint view of the browser tests; with one
    per message it never was. Serializing at once also freezes the values: Bokeh
    serializes a queued event when it writes it, from the model's state then.
    Returns None (and leaves the entries as they are) when there is nothing, or anything
    unexpected (another Bokeh version, several connection sets).
    """
    new = pending[n0:]
    if not new:
        return None
    try:
        from bokeh.server.session import _PendingPatch

        if not all(type(p) is _PendingPatch and p.connections == new[0].connections for p in new):
            return None
        groups: list[list] = [[]]
        has_data = False
        for p in new:
            data = _data_event(p.event)
            if data and has_data:
                groups.append([])
                has_data = False
            groups[-1].append(p.event)
            has_data = has_data or data
        out = [patch_message(doc, events) for events in groups]
        entries = [_PendingPatch(events[0], _Prebuilt(fm), new[0].connections) for events, fm in zip(groups, out, strict=True)]
    except (ImportError, AttributeError, TypeError):
        return None
    del pending[n0:]
    pending.extend(entries)
    return out


def broadcast(group: ShareGroup, msgs: list[FrameMessage], events) -> None:
    """Send a leader's sealed refresh messages ``msgs`` (of document ``events``) to every follower.

    Each follower gets it with its own model ids, in order after what was sent to it
    before. A message that names a model the followers do not have breaks the group up;
    a follower that is gone or :data:`MAX_INFLIGHT` refreshes behind leaves it.
    """
    if not group.members:
        return
    pairs = [(m.id, a) for m, a in touched_pairs(events)]
    # every follower pairs the same leader models: one check for all
    if not all(_mappable(fm, next(iter(group.members.values())).idmap) for fm in msgs):
        log.info("share group: a message names a model the followers lack; breaking the group up")
        group.close()
        return
    for member in list(group.members.values()):
        if not member.active:
            continue
        dash = member.dash
        if not dash._connected() or len(member.queue) >= MAX_INFLIGHT:
            member.stop()  # it leaves at its next refresh (and catches up on its own)
            dash.poke()
            continue
        member.touched.update(dict.fromkeys(pairs))
        member.put([fm.with_ids(member.idmap) for fm in msgs])
        STATS["shared"] += 1
        dash._followed()


def followers() -> int:
    """How many pages of this process follow a leader now."""
    return sum(len(g.members) for g in GROUPS.values())


async def _writer(member: Member, session) -> None:
    """Write a follower's queued messages in order, after whatever its own session had queued when it joined.

    It first takes the session's document lock once (Bokeh writes a locked callback's
    queued messages before releasing it), so the join message cannot overtake the
    follower's own earlier writes; then it sends each queued refresh, until the member
    stops. A message is written whole under the connection's write lock; one not begun
    when the member stops is dropped (the follower's leave message sets what it touched).
    """
    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError

    try:
        await session.with_document_locked(lambda: None)
        while member.active:
            if not member.queue:
                member.wake.clear()
                await member.wake.wait()
                continue
            msgs = member.queue.popleft()
            for conn in list(session._subscribed_connections):
                for fm in msgs:
                    if not member.active:
                        return
                    await fm.send(conn._socket)
    except (WebSocketClosedError, StreamClosedError, AttributeError):  # closed: it leaves at its next refresh
        member.active = False
    except Exception:  # noqa: BLE001 - never an unhandled error in the loop; the follower catches up alone
        log.exception("share: writing to a follower failed")
        member.active = False


__all__ = ["GROUPS", "MAX_INFLIGHT", "STATS", "FrameMessage", "Member", "ShareGroup", "broadcast", "followers", "join",
           "leave", "pair_models", "patch_message", "seal", "state_message", "touched_pairs"]
