"""A page's link to its served Bokeh session: the document, the connection state, the share group, the held refresh."""

from __future__ import annotations

import contextlib

from . import bokeh_adapter as bk
from . import share


class SessionLink:
    """One page's served session (none outside a server) and its place in a share group (:mod:`dashboard.share`).

    ``doc`` is the session's Bokeh document (None until the page starts); ``group`` the
    page's :class:`dashboard.share.ShareGroup` (it leads it when ``member`` is None);
    ``member`` its follower's side; ``touched`` every ``(model id, attribute)`` the page's
    refreshes changed -> ``(model, attribute)``; ``loaded`` becomes True once the browser
    has drawn the page (from then on a leader's messages apply to it).
    """

    def __init__(self):
        self.doc = None
        self.group: share.ShareGroup | None = None
        self.member: share.Member | None = None
        self.touched: dict[tuple[str, str], tuple] = {}
        self.loaded = False

    def session(self):
        """The Bokeh ``ServerSession`` (None outside a served session)."""
        return bk.session_of(self.doc)

    def connections(self) -> list:
        """The session's websocket connections."""
        return bk.connections(self.session())

    def connected(self) -> bool:
        """False while no browser is connected to this session (a closed tab waiting to expire): skip work."""
        count = getattr(self.session(), "connection_count", None)
        return count is None or count > 0

    def following(self, key) -> bool:
        """True while the page follows a leader whose refreshes are for share key ``key``."""
        m, g = self.member, self.group
        return m is not None and m.active and g is not None and g.open and g.leader_ok() and key == g.key

    def leading(self) -> bool:
        """True while the page leads a group."""
        return self.group is not None and self.member is None

    @contextlib.contextmanager
    def held(self):
        """Collect a refresh's model changes (made with no await in between) and send them as one message.

        Bokeh's own ``Document.hold("collect")``: a refresh runs as a locked callback, so on
        ``unhold`` Bokeh queues one ``PATCH-DOC`` per event in the session's pending writes,
        written in order under the connection's write lock before the document lock is
        released. :func:`dashboard.bokeh_adapter.seal` then serializes them at once as a few
        messages with the arrays inline (a refresh makes about a dozen changes, and with many
        sessions the per-frame cost dominated the server's time). A leader's messages also go
        to its followers (:func:`dashboard.share.broadcast`).
        """
        doc = self.doc
        if doc is None or doc.session_context is None or doc.callbacks.hold_value:
            yield
            return
        pending = bk.pending_writes(self.session())
        n0 = len(pending) if pending is not None else None
        doc.hold("collect")
        try:
            yield
        finally:
            with bk.collecting(doc) as events:
                doc.unhold()
            for model, attr in share.touched_pairs(events):
                self.touched[(model.id, attr)] = (model, attr)
            sealed = bk.seal(pending, n0, doc) if n0 is not None else None
            g = self.group
            if self.leading() and g.members:
                if sealed is None:
                    g.close()
                else:
                    share.broadcast(g, sealed, events)

    async def refresh(self, page, key, refresh) -> bool:
        """Leave or join a share group as ``key`` says, then ``await refresh()`` unless a leader refreshes for ``page``.

        ``key`` is the page's share key (None: it shares nothing now). Returns False when
        the page has just joined a group as a follower (its leader's refreshes show).
        """
        g = self.group
        if self.member is not None or (g is not None and (not g.open or key != g.key)):
            with self.held():
                share.leave(page)
        if key is not None and self.group is None and share.join(page, key, lead=False) == "follower":
            return False  # its leader's refreshes show from now on
        await refresh()
        share.STATS["own"] += 1
        if key is not None and self.group is None and key == page.share_key() and self.connected():
            share.join(page, key)
        return True
