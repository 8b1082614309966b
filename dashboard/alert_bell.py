"""The alerts card's bell: a sound and a browser notification for each new alert signal, when the viewer asks.

Issue 18 item 4 ("optional browser notification and sound"). Both are off until the viewer ticks them
(a page must not make noise unasked), and both happen in the browser: the server only says what is new.
:meth:`AlertBell.ring` sets a hidden text widget to a JSON document ``{"n", "sound", "notify", "texts"}``;
a ``jscallback`` on its value plays a short tone through the Web Audio API and shows one
``Notification`` per text when the browser's permission is granted. The tick of "Browser notification"
asks the browser for that permission (it must be asked from a click), and the tick of "Sound" creates
the page's audio context (browsers start one only after a user gesture).
"""

from __future__ import annotations

import json

import panel as pn
import param
from panel.viewable import Viewer

#: Run in the browser when the bell's value changes (``cb_obj`` is the hidden text input's Bokeh model).
RING_JS = """
const d = cb_obj.value ? JSON.parse(cb_obj.value) : null;
if (!d) { return; }
if (d.sound) {
  try {
    const C = window.AudioContext || window.webkitAudioContext;
    const ctx = window.flowlensAudio || (window.flowlensAudio = new C());
    const osc = ctx.createOscillator(), gain = ctx.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.12, ctx.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.35);
    osc.connect(gain); gain.connect(ctx.destination);
    osc.start(); osc.stop(ctx.currentTime + 0.35);
  } catch (e) { console.warn('flowlens: no alert sound', e); }
}
if (d.notify && 'Notification' in window && Notification.permission === 'granted') {
  for (const text of d.texts) { new Notification('flowlens alert', {body: text}); }
}
"""
#: Run in the browser when "Browser notification" is ticked: ask for the permission (only a click may ask).
ASK_JS = """
if (cb_obj.active && 'Notification' in window && Notification.permission === 'default') {
  Notification.requestPermission();
}
"""
#: Run in the browser when "Sound" is ticked: make (and resume) the audio context within the click.
AUDIO_JS = """
if (cb_obj.active) {
  const C = window.AudioContext || window.webkitAudioContext;
  if (C) { (window.flowlensAudio || (window.flowlensAudio = new C())).resume(); }
}
"""


class AlertBell(Viewer):
    """Two check boxes (sound, browser notification) and the hidden widget that rings them in the browser."""

    sound = param.Boolean(default=False, doc="Play a short tone in the browser for each batch of new alert signals.")
    notify = param.Boolean(default=False,
                           doc="Show a browser notification per new alert signal (once the browser allows it).")
    rings = param.Integer(default=0, bounds=(0, None), doc="How many times this page's bell rang.")

    def __init__(self, **params):
        super().__init__(**params)
        self._value = pn.widgets.TextInput(value="", visible=False)
        self._value.jscallback(value=RING_JS)
        self.sound_box = pn.widgets.Checkbox.from_param(self.param.sound, label="Sound")
        self.sound_box.jscallback(value=AUDIO_JS)
        self.notify_box = pn.widgets.Checkbox.from_param(self.param.notify, label="Browser notification")
        self.notify_box.jscallback(value=ASK_JS)

    def ring(self, texts: list[str]) -> bool:
        """Ring for ``texts`` (the new signals' toast texts) when sound or notification is on; returns whether it rang.

        Each ring sets a new value (its count is part of it), so two equal batches ring twice.
        """
        if not texts or not (self.sound or self.notify):
            return False
        self.rings += 1
        self._value.value = json.dumps({"n": self.rings, "sound": self.sound, "notify": self.notify,
                                        "texts": list(texts)})
        return True

    def __panel__(self) -> pn.Row:
        return pn.Row(self.sound_box, self.notify_box, self._value, sizing_mode="stretch_width")
