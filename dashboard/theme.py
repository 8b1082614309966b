"""Colours of the dark (default) and light themes, close to TradingView's."""

THEMES = {
    "dark": {
        "bg": "#131722", "panel": "#1e222d", "grid": "#2a2e39", "text": "#d1d4dc", "muted": "#787b86",
        "up": "#26a69a", "down": "#ef5350", "buy": "#26a69a", "sell": "#ef5350",
        "poc": "#ffd54f", "va": "#42a5f5", "ok": "#26a69a", "bad": "#ef5350",
    },
    "light": {
        "bg": "#ffffff", "panel": "#f0f3fa", "grid": "#e0e3eb", "text": "#131722", "muted": "#787b86",
        "up": "#089981", "down": "#f23645", "buy": "#089981", "sell": "#f23645",
        "poc": "#e65100", "va": "#1565c0", "ok": "#089981", "bad": "#f23645",
    },
}
