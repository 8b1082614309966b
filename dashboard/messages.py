"""The message box above the chart: plain-text messages (refused URL values, refused clicks), escaped when shown."""

from __future__ import annotations

import html

import panel as pn
import param
from panel.viewable import Viewer

#: Most messages kept (the oldest go first).
MAX_MESSAGES = 8


def messages_html(messages: list[str]) -> str:
    """The messages as an HTML alert (each escaped)."""
    items = "".join(f"<li>{html.escape(m)}</li>" for m in messages)
    return f'<div class="fl-message" role="alert">Some URL values were not used:<ul>{items}</ul></div>'


class MessageBox(Viewer):
    """Messages over the chart with a dismiss button; hidden while there is none.

    ``pane`` is the HTML pane (named ``message``), ``box`` the row shown or hidden.
    """

    messages = param.List(default=[], item_type=str,
                          doc="Plain-text messages shown (escaped), oldest first; empty hides the box. The page's "
                              "first messages (refused URL values) are all shown; later ones keep the last 8.")

    def __init__(self, css: str, **params):
        super().__init__(**params)
        self.pane = pn.pane.HTML(messages_html(self.messages) if self.messages else "", sizing_mode="stretch_width",
                                 stylesheets=[css], name="message")
        close = pn.widgets.Button(label="✕", width=34, color="light", description="Dismiss")
        self.box = pn.Row(self.pane, close, visible=bool(self.messages), sizing_mode="stretch_width")
        close.on_click(lambda e: self.dismiss())

    @param.depends("messages", watch=True)
    def _show(self) -> None:
        if self.messages:
            self.pane.object = messages_html(self.messages)
        self.box.visible = bool(self.messages)

    def show(self, messages: list[str]) -> None:
        """Add plain-text messages (the last :data:`MAX_MESSAGES` are kept) and show the box."""
        self.messages = (self.messages + list(messages))[-MAX_MESSAGES:]

    def dismiss(self) -> None:
        """Hide the box and forget its messages."""
        self.messages = []

    def __panel__(self) -> pn.Row:
        return self.box
