"""Sessions that show the same thing share one refresh: one leader computes it, the others get its bytes.

A page with the same settings, following the live edge, looks the same in every browser.
Each Bokeh session still owns its own document, with its own model ids, so Bokeh
would apply and serialize every change once per session (about 9 ms of the server's
loop per session refresh, measured with 20 sessions; see ``benchmarks/bench_load.py``).
Here, per server process and per :meth:`Dashboard.share_key <dashboard.page.Dashboard.share_key>`:

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
  browser and its server agree again, then refreshes on its own. What its browser itself
  set since it joined (the x range of a pan) is not sent back: the server's value of it
  may already be older than the browser's (a drag sends a dozen ranges, and the leave
  runs at the next refresh), and echoing it would move the browser's range back;
- a follower whose share key changed (its viewer panned) gets no further broadcast;
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
from dataclasses import dataclass, field

from . import bokeh_adapter as bk
from .bokeh_adapter import FrameMessage, patch_message, seal

log = logging.getLogger(__name__)

#: A follower with this many undelivered broadcasts leaves the group (and catches up on its own).
MAX_INFLIGHT = 4

#: This process's counts: ``own`` refreshes (a leader's or a lone page's) and ``shared`` (a leader's refresh
#: sent to a follower). Read by ``/metrics``.
STATS: collections.Counter = collections.Counter()



def touched_pairs(events) -> list[tuple[object, str]]:
    """The ``(model, attribute)`` pairs that Bokeh document events change (others are skipped)."""
    out = []
    for e in events:
        model, attr = getattr(e, "model", None), getattr(e, "attr", None)
        if model is not None and isinstance(attr, str):
            out.append((model, attr))
    return out


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
    if len(lm) != len(fm) or not all(bk.SIMPLE_ID.fullmatch(i) for i in (*lm, *fm)):
        return None
    ls, fs = sorted(lm.values(), key=bk.id_order), sorted(fm.values(), key=bk.id_order)
    if any(type(a) is not type(b) or a.name != b.name for a, b in zip(ls, fs, strict=True)):
        return None
    return {a.id: (a, b) for a, b in zip(ls, fs, strict=True)}


@dataclass(eq=False)
class Member:
    """One follower's side of a group: its model map and what it was sent."""

    dash: object
    models: dict[str, object]                 # leader model id -> follower model
    idmap: dict[str, str] = field(init=False)  # leader model id -> follower model id
    touched: dict[tuple[str, str], None] = field(default_factory=dict)  # (leader id, attr) it was sent
    key: object = None
    #: the Bokeh ``ServerSession`` that applies the follower's browser's patches (their events' setter)
    browser: object = None
    active: bool = True
    #: ``(follower model id, attr)`` its own browser set since it joined (not echoed back when it leaves)
    from_browser: set = field(default_factory=set)
    #: messages to send, in order (each entry a refresh's list), written by one task per follower
    queue: collections.deque = field(default_factory=collections.deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self):
        self.idmap = {lid: m.id for lid, m in self.models.items()}

    def stop(self) -> None:
        self.active = False
        self.wake.set()

    def current(self) -> bool:
        """True while the follower still gets broadcasts: active, and its page's share key is the group's."""
        return self.active and self.dash.share_key() == self.key

    def browser_changed(self, event) -> None:
        """Bokeh document ``on_change`` callback: note a ``(model, attr)`` the follower's browser set.

        Bokeh applies a browser's ``PATCH-DOC`` with the session as the events' setter
        (``ServerSession._handle_patch``; in Bokeh 3.10 in a worker thread: this only adds to a set).
        """
        model, attr = getattr(event, "model", None), getattr(event, "attr", None)
        setter = getattr(event, "setter", None)
        if model is not None and isinstance(attr, str) and setter is not None and setter is self.browser:
            self.from_browser.add((model.id, attr))

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
        return self.open and self.leader.link.connected() and self.leader.link.doc is not None

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
        GROUPS[key] = dash.link.group = ShareGroup(key, dash)
        dash.link.member = None
        return "leader"
    leader = group.leader
    session, conns = dash.link.session(), dash.link.connections()
    pairs = pair_models(leader.share_roots(), dash.share_roots())
    if pairs is None or session is None or not conns:
        return ""
    lid_of = {f.id: lid for lid, (_, f) in pairs.items()}
    state: dict[tuple[str, str], tuple[object, str]] = {}
    for (mid, attr), (model, _) in leader.link.touched.items():
        if mid in pairs:
            state[(mid, attr)] = (model, attr)
    for (fid, attr) in dash.link.touched:
        lid = lid_of.get(fid)
        if lid is not None:
            state[(lid, attr)] = (pairs[lid][0], attr)
    member = Member(dash, {lid: f for lid, (_, f) in pairs.items()}, key=key, browser=session,
                    touched=dict.fromkeys(state))
    fm = state_message(leader.link.doc, state.values())
    if fm is not None:
        if not _mappable(fm, member.idmap):
            return ""
        member.put([fm.with_ids(member.idmap)])
    asyncio.ensure_future(_writer(member, session))
    dash.link.doc.on_change(member.browser_changed)
    group.members[id(dash)] = member
    dash.link.group, dash.link.member = group, member
    return "follower"


def _mappable(fm: FrameMessage, idmap: dict[str, str]) -> bool:
    """True when every model id in the message is one the follower has a pair for."""
    return fm.ids() <= idmap.keys()


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
    group, member = dash.link.group, dash.link.member
    dash.link.group = dash.link.member = None
    if group is None:
        return
    if member is None:  # the leader
        group.close()
        return
    member.stop()
    group.members.pop(id(dash), None)
    doc = dash.link.doc
    doc.remove_on_change(member.browser_changed)
    pairs = [(member.models[lid], attr) for lid, attr in member.touched
             if lid in member.models and (member.models[lid].id, attr) not in member.from_browser]
    for ev in _state_events(doc, pairs):
        doc.callbacks.trigger_on_change(ev)


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
        if not dash.link.connected() or len(member.queue) >= MAX_INFLIGHT or not member.current():
            member.stop()  # it leaves at its next refresh (and catches up on its own)
            dash.poke()
            continue
        member.touched.update(dict.fromkeys(pairs))
        member.put([fm.with_ids(member.idmap) for fm in msgs])
        STATS["shared"] += 1
        dash.followed()


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
            for conn in bk.connections(session):
                for fm in msgs:
                    if not member.current():
                        return
                    await bk.send(conn, fm)
    except (WebSocketClosedError, StreamClosedError, AttributeError):  # closed: it leaves at its next refresh
        member.active = False
    except Exception:  # noqa: BLE001 - never an unhandled error in the loop; the follower catches up alone
        log.exception("share: writing to a follower failed")
        member.active = False


def page_stats():
    """This process's page refresh counts and followers, for ``/metrics`` (:mod:`service.ops`)."""
    from service.ops import PageStats

    return PageStats(refreshes={how: STATS[how] for how in ("own", "shared")}, followers=followers())


def _register() -> None:
    from service.ops import register_stats_provider

    register_stats_provider("dashboard.share", page_stats)


_register()

__all__ = ["GROUPS", "MAX_INFLIGHT", "STATS", "FrameMessage", "Member", "ShareGroup", "broadcast", "followers", "join",
           "leave", "page_stats", "pair_models", "patch_message", "seal", "state_message", "touched_pairs"]
