"""The sidebar's "Alerts" card: arm an alert on the page's symbol, see and remove the symbol's rules.

The card arms every rule type (:data:`CARD_TYPES`: a price crossing, a large liquidation, a candle
delta, a volume spike, a stacked imbalance; :mod:`compute.alert_rules` defines them and the REST API takes
every type). It talks to the process's :class:`service.alerts.AlertBook` (the one the REST API uses): arming
calls ``book.arm({"type": ..., ...}, token)``, which validates the rule, backtests it on the
history the server holds and stores it; the card shows "armed · would have fired N times in the last H h"
or the refusal (a wrong token, the rule's field at fault). The token is the REST API's write token
(``serve.py --api-token``): it lives only in the card's password field, in this session; it is never put in
the URL, a setting or a log line. An alt-click on the price chart puts the clicked price, on the tick, in
the level field (:meth:`AlertsCard.set_level`). Its bell (:class:`dashboard.alert_bell.AlertBell`) plays a
sound and shows browser notifications for new signals when the viewer ticks them.
"""

from __future__ import annotations

import html
import logging
import math
import time

import panel as pn
import param
from panel.viewable import Viewer

from compute.candles import INTERVALS
from compute.grid import decimals_for

from .alert_bell import AlertBell
from .theme import THEMES

log = logging.getLogger(__name__)

#: Arrows of a price_cross rule's direction in the rule list.
DIRECTION_MARKS = {"up": "▲", "down": "▼", "any": "↕"}
#: The rule types the card arms (label -> ``type``), in the order of its selector.
CARD_TYPES = {"Price crosses a level": "price_cross", "Liquidation at least": "liquidation",
              "Candle delta reaches ±": "delta", "Volume spike": "volume_spike",
              "Stacked imbalance": "stacked_imbalance"}
#: Liquidated side (label -> the forceOrder's side): a SELL order closes a long.
LIQ_SIDES = {"any": None, "longs (SELL)": "SELL", "shorts (BUY)": "BUY"}


def armed_text(doc: dict) -> str:
    """The answer to a rule armed: ``armed · would have fired N times in the last H h``."""
    bt = doc.get("backtest") or {}
    n, hours = int(bt.get("would_have_fired", 0)), float(bt.get("hours", 0.0))
    return f"armed · would have fired {n} time{'' if n == 1 else 's'} in the last {hours:g} h"


def rule_label(doc: dict, tick: float) -> str:
    """One rule in the list: ``▲ 9,712.50 · my name · 60 s`` (other rule types: their type and name)."""
    r = doc.get("rule") or {}
    name = f" · {r['name']}" if r.get("name") else ""
    cooldown = f" · {r['cooldown_s']:g} s" if r.get("cooldown_s") else ""
    level = r.get("level")
    if r.get("type") == "price_cross" and isinstance(level, int | float):
        d = decimals_for(tick)
        return f"{DIRECTION_MARKS.get(r.get('direction'), '')} {level:,.{d}f}{name}{cooldown}".strip()
    if r.get("type") == "price_cross" and isinstance(level, dict):
        return f"{DIRECTION_MARKS.get(r.get('direction'), '')} {level.get('ref', 'level')}{name}{cooldown}".strip()
    if r.get("type") == "liquidation":
        side = {"SELL": " longs", "BUY": " shorts"}.get(r.get("side"), "")
        return f"liquidation{side} ≥ {r.get('min_notional', 0):,.0f}{name}{cooldown}"
    if r.get("type") == "delta" and r.get("window") == "candle":
        return f"delta ±{r.get('threshold', 0):g} ({r.get('interval')}){name}{cooldown}"
    if r.get("type") == "volume_spike":
        return f"volume ×{r.get('k', 0):g} ({r.get('window_s', 0):g} s){name}{cooldown}"
    if r.get("type") == "stacked_imbalance":
        side = {"buy": " buy", "sell": " sell"}.get(r.get("side"), "")
        return (f"{r.get('min_stack', 3)}×{side} imbalance ×{r.get('ratio', 3):g} ({r.get('interval', '1m')}, "
                f"{r.get('ticks_per_row', 10)} ticks){name}{cooldown}")
    return f"{r.get('type', 'rule')}{name}{cooldown}"


class AlertsCard(Viewer):
    """Arm an alert of :data:`CARD_TYPES` on the page's symbol and list the symbol's rules, each with a remove
    button.

    Parameters
    ----------
    book : service.alerts.AlertBook
        The process's rules (arm, list, remove; every write takes the API token).
    """

    symbol = param.String(default="BTCUSDT", doc="The page's symbol: the one alerts are armed on and listed for.")
    rule_type = param.Selector(default="price_cross", objects=list(CARD_TYPES.values()),
                               doc="The kind of rule the form arms (compute/alert_rules.py).")
    min_notional = param.Number(default=100_000.0, bounds=(0, None), inclusive_bounds=(False, True),
                                doc="liquidation: the least notional of a forceOrder (quote currency).")
    liq_side = param.Selector(default="any", objects=list(LIQ_SIDES),
                              doc="liquidation: which side was liquidated (a SELL forceOrder closes a long).")
    threshold = param.Number(default=50.0, bounds=(0, None), inclusive_bounds=(False, True),
                             doc="delta: the candle delta (taker buy - taker sell, base asset) to reach, + or -.")
    delta_interval = param.Selector(default="5m", objects=list(INTERVALS), doc="delta: the candle interval.")
    window_s = param.Number(default=30.0, bounds=(1, 86_400),
                            doc="volume_spike: the trailing window whose volume is compared (s).")
    spike_k = param.Number(default=4.0, bounds=(1, 1_000), doc="volume_spike: how many times the mean volume.")
    imb_ratio = param.Number(default=3.0, bounds=(1, 10_000),
                             doc="stacked_imbalance: how many times the diagonal opposite volume a row's side is.")
    min_stack = param.Integer(default=3, bounds=(1, 10_000),
                              doc="stacked_imbalance: the least number of adjacent imbalanced rows.")
    imb_side = param.Selector(default="any", objects=["any", "buy", "sell"],
                              doc="stacked_imbalance: buy (ask) imbalances, sell (bid) ones, or either.")
    imb_interval = param.Selector(default="1m", objects=list(INTERVALS),
                                  doc="stacked_imbalance: the footprint's candle interval.")
    ticks_per_row = param.Integer(default=10, bounds=(1, 1_000_000),
                                  doc="stacked_imbalance: the footprint's row size in ticks.")
    tick = param.Number(default=0.01, bounds=(0, None), inclusive_bounds=(False, True),
                        doc="The symbol's price tick (levels are rounded to it).")
    level = param.Number(default=None, allow_None=True, bounds=(0, None), inclusive_bounds=(False, True),
                         doc="The price to alert on (quote currency); an alt-click on the chart sets it.")
    direction = param.Selector(default="any", objects=["up", "down", "any"],
                               doc="Which crossings fire: upwards, downwards or either.")
    cooldown_s = param.Integer(default=60, bounds=(0, 86_400),
                               doc="Least time between two firings of the rule (s).")
    rule_name = param.String(default="", doc="An optional name shown with the rule's signals.")
    message = param.String(default="", doc="The card's latest answer (plain text).")
    ok = param.Boolean(default=True, doc="Whether the latest answer is good news (else a refusal or an error).")
    rules = param.List(default=[], doc="The symbol's rules (AlertBook documents), oldest first.")
    refresh_s = param.Number(default=5.0, bounds=(1.0, 600.0),
                             doc="Longest time between two reloads of the rule list (s).")
    theme = param.Selector(default="dark", objects=list(THEMES), doc="Colour theme.")

    def __init__(self, book, **params):
        super().__init__(**params)
        self.book = book
        self._loaded_at = -math.inf
        #: The API token: only in this widget (this session), never in a setting, the URL or a log line.
        self.token = pn.widgets.PasswordInput(label="API token", placeholder="serve.py --api-token",
                                              sizing_mode="stretch_width")
        self.arm_button = pn.widgets.Button(label="Arm", color="primary", sizing_mode="stretch_width",
                                            description="Arm this alert on the page's symbol")
        self.arm_button.on_click(self._on_arm)
        self.answer = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["fl-alert-answer"])
        self.bell = AlertBell()
        self.card = pn.Card(self._form(), title="Alerts", collapsed=True, sizing_mode="stretch_width")
        self._show_answer()

    # -- the form ------------------------------------------------------------------------
    def _form(self) -> pn.Column:
        p, W = self.param, pn.widgets
        hint = pn.pane.Markdown("Alt-click the price chart to take its price as the level. Signals show as "
                                "markers on the chart and as a message at the bottom of the page.",
                                styles={"font-size": "0.85em", "opacity": "0.8"})
        kinds = W.Select.from_param(p.rule_type, label="Alert when", options=CARD_TYPES)
        return pn.Column(
            self.token, kinds, self._fields,
            pn.Row(W.IntInput.from_param(p.cooldown_s, label="Cooldown (s)", width=110),
                   W.TextInput.from_param(p.rule_name, label="Name (optional)", max_length=80, width=130),
                   sizing_mode="stretch_width"),
            self.arm_button, self.answer, self._rule_list, hint, self.bell, sizing_mode="stretch_width",
        )

    @param.depends("rule_type", "tick")
    def _fields(self) -> pn.Column:
        """The fields of the chosen rule type."""
        p, W = self.param, pn.widgets
        if self.rule_type == "liquidation":
            fields = [W.FloatInput.from_param(p.min_notional, label="Notional at least (quote)", step=10_000),
                      W.Select.from_param(p.liq_side, label="Liquidated")]
        elif self.rule_type == "delta":
            fields = [pn.Row(W.FloatInput.from_param(p.threshold, label="Delta ± (base)", width=110),
                             W.Select.from_param(p.delta_interval, label="Candle", width=110))]
        elif self.rule_type == "volume_spike":
            fields = [pn.Row(W.FloatInput.from_param(p.window_s, label="Window (s)", width=110),
                             W.FloatInput.from_param(p.spike_k, label="× mean volume", width=110))]
        elif self.rule_type == "stacked_imbalance":
            fields = [pn.Row(W.FloatInput.from_param(p.imb_ratio, label="Ratio ×", width=110),
                             W.IntInput.from_param(p.min_stack, label="Rows stacked", width=110)),
                      pn.Row(W.Select.from_param(p.imb_side, label="Side", width=70),
                             W.Select.from_param(p.imb_interval, label="Candle", width=70),
                             W.IntInput.from_param(p.ticks_per_row, label="Ticks a row", width=80))]
        else:
            fields = [W.FloatInput.from_param(p.level, label="Level (alt-click the chart)", placeholder="price",
                                              step=self.tick),
                      W.Select.from_param(p.direction, label="Crossing", width=110)]
        return pn.Column(*fields, sizing_mode="stretch_width")

    @param.depends("message", "ok", watch=True)
    def _show_answer(self) -> None:
        th = THEMES[self.theme]
        colour = th["ok"] if self.ok else th["bad"]
        self.answer.object = (f'<div class="fl-alert-msg" data-ok="{int(self.ok)}" style="color:{colour};'
                              f'font-size:0.9em">{html.escape(self.message)}</div>') if self.message else ""
        self.answer.visible = bool(self.message)

    def say(self, message: str, ok: bool = True) -> None:
        """Show ``message`` (plain text, escaped) as the card's answer."""
        self.param.update(message=message, ok=ok)

    def set_level(self, price: float, tick: float | None = None) -> float:
        """Put ``price``, rounded to the tick, in the level field (a price alert) and open the card; returns the level."""
        if tick:
            self.tick = float(tick)
        level = round(round(float(price) / self.tick) * self.tick, decimals_for(self.tick))
        self.param.update(level=level, rule_type="price_cross")
        self.card.collapsed = False
        return level

    # -- arming and removing ---------------------------------------------------------------
    def rule(self) -> dict:
        """The rule the form describes (what :meth:`arm` sends)."""
        body = {"type": self.rule_type, "symbol": self.symbol, "cooldown_s": self.cooldown_s}
        if self.rule_type == "liquidation":
            body.update(min_notional=self.min_notional, side=LIQ_SIDES[self.liq_side])
        elif self.rule_type == "delta":
            body.update(threshold=self.threshold, window="candle", interval=self.delta_interval)
        elif self.rule_type == "volume_spike":
            body.update(window_s=self.window_s, k=self.spike_k)
        elif self.rule_type == "stacked_imbalance":
            body.update(ratio=self.imb_ratio, min_stack=self.min_stack, side=self.imb_side,
                        interval=self.imb_interval, ticks_per_row=self.ticks_per_row)
        else:
            body.update(level=self.level, direction=self.direction)
        if self.rule_name.strip():
            body["name"] = self.rule_name.strip()
        return body

    async def _on_arm(self, _event=None) -> None:
        await self.arm()

    async def arm(self) -> dict | None:
        """Arm the form's rule with the token typed; show the backtest or the refusal. Returns the stored rule."""
        if self.rule_type == "price_cross" and self.level is None:
            self.say("type a level first (or alt-click the chart)", ok=False)
            return None
        self.arm_button.disabled = True
        try:
            doc = await self.book.arm(self.rule(), self.token.value or None)
        except (PermissionError, ValueError) as e:  # a wrong token; RuleError is a ValueError naming the field
            self.say(str(e), ok=False)
            return None
        except Exception as e:  # noqa: BLE001 - Redis away: say so in the card, the page goes on
            log.warning("arming an alert on %s failed: %s", self.symbol, type(e).__name__)
            self.say(f"could not arm the alert ({type(e).__name__}); try again", ok=False)
            return None
        finally:
            self.arm_button.disabled = False
        self.say(armed_text(doc))
        await self.load_rules(force=True)
        return doc

    async def remove(self, rule_id: str) -> bool:
        """Remove a rule with the token typed; show the outcome. True when it was removed."""
        try:
            done = await self.book.remove(rule_id, self.token.value or None)
        except PermissionError as e:
            self.say(f"{e} (type it above to remove a rule)", ok=False)
            return False
        except Exception as e:  # noqa: BLE001 - Redis away
            log.warning("removing alert %s failed: %s", rule_id, type(e).__name__)
            self.say(f"could not remove the alert ({type(e).__name__}); try again", ok=False)
            return False
        self.say("removed" if done else "that rule was already gone", ok=True)
        await self.load_rules(force=True)
        return done

    # -- the rule list -------------------------------------------------------------------
    async def load_rules(self, force: bool = False) -> list[dict]:
        """Reload the symbol's rules (at most every ``refresh_s`` unless ``force``); keeps the old list on an error."""
        now = time.monotonic()
        if not force and now - self._loaded_at < self.refresh_s:
            return self.rules
        self._loaded_at = now
        symbol = self.symbol
        try:
            got = await self.book.rules(symbol)
        except Exception as e:  # noqa: BLE001 - Redis away: the list stays as it was
            log.debug("listing the alerts of %s failed: %s", symbol, type(e).__name__)
            return self.rules
        if symbol == self.symbol and [d.get("id") for d in got] != [d.get("id") for d in self.rules]:
            self.rules = got
        return self.rules

    @param.depends("symbol", watch=True)
    async def _symbol_changed(self) -> None:
        self.param.update(rules=[], message="")
        await self.load_rules(force=True)

    @param.depends("rules", "tick")
    def _rule_list(self) -> pn.Column:
        """One remove button (✕) per rule of the symbol, or a line saying there is none."""
        if not self.rules:
            return pn.Column(pn.pane.Markdown(f"No alerts on {self.symbol}.", styles={"opacity": "0.8"}),
                             sizing_mode="stretch_width")

        def button(doc: dict) -> pn.widgets.Button:
            b = pn.widgets.Button(label=f"✕ {rule_label(doc, self.tick)}", color="light",
                                  sizing_mode="stretch_width", description="Remove this alert")

            async def remove(_event, rule_id=doc["id"]):
                await self.remove(rule_id)

            b.on_click(remove)
            return b

        return pn.Column(*(button(d) for d in self.rules), sizing_mode="stretch_width")

    def __panel__(self) -> pn.Card:
        return self.card
