"""Colours of the dark (default) and light themes, close to TradingView's, and the profile palettes.

Palettes are numpy arrays of 256 ``#rrggbb`` strings so that a column of
normalised values (0..1) turns into a column of colours with one fancy index
(:func:`colours`), without a per-row Python loop.
"""

from __future__ import annotations

import numpy as np

THEMES = {
    "dark": {
        "bg": "#131722", "panel": "#1e222d", "grid": "#2a2e39", "text": "#d1d4dc", "muted": "#787b86",
        "up": "#26a69a", "down": "#ef5350", "buy": "#26a69a", "sell": "#ef5350",
        "poc": "#ffd54f", "va": "#42a5f5", "ok": "#26a69a", "bad": "#ef5350", "warn": "#ffb74d",
        "pct": "#b39ddb", "dev_poc": "#ffd54f", "dev_va": "#64b5f6", "highlight": "#ffeb3b",
        "dev_vah": "#4fc3f7", "dev_val": "#ba68c8",
        "neutral": "#434651", "recent": "#4dd0e1", "old": "#2b3a4a", "tpo": "#7e57c2",
        "first": "#5c6bc0", "second": "#26c6da", "hatch": "#ffffff",
        "liq_long": "#ff4081", "liq_short": "#00e5ff", "volume_alpha": 0.35,
    },
    "light": {
        "bg": "#ffffff", "panel": "#f0f3fa", "grid": "#e0e3eb", "text": "#131722", "muted": "#787b86",
        "up": "#089981", "down": "#f23645", "buy": "#089981", "sell": "#f23645",
        "poc": "#e65100", "va": "#1565c0", "ok": "#089981", "bad": "#f23645", "warn": "#ef6c00",
        "pct": "#6a1b9a", "dev_poc": "#e65100", "dev_va": "#1e88e5", "highlight": "#f9a825",
        "dev_vah": "#0277bd", "dev_val": "#8e24aa",
        "neutral": "#c9ccd6", "recent": "#00838f", "old": "#d7e3ea", "tpo": "#5e35b1",
        "first": "#3949ab", "second": "#00897b", "hatch": "#000000",
        "liq_long": "#c2185b", "liq_short": "#0097a7", "volume_alpha": 0.3,
    },
}


def _hex(rgb: np.ndarray) -> np.ndarray:
    r = np.clip(np.rint(rgb), 0, 255).astype(int)
    return np.array([f"#{a:02x}{b:02x}{c:02x}" for a, b, c in r])


def _rgb(colour: str) -> np.ndarray:
    c = colour.lstrip("#")
    return np.array([int(c[i : i + 2], 16) for i in (0, 2, 4)], dtype=float)


def gradient(stops: list[str], n: int = 256) -> np.ndarray:
    """``n`` colours interpolated linearly (in RGB) through the evenly spaced ``stops``; shape (n,), str."""
    pts = np.array([_rgb(s) for s in stops])
    x = np.linspace(0, len(stops) - 1, n)
    i = np.minimum(x.astype(int), len(stops) - 2)
    f = (x - i)[:, None]
    return _hex(pts[i] * (1 - f) + pts[i + 1] * f)


#: Heat-map colouring of profile rows by volume intensity (issue 6: low #1a1a3a -> mid #ff8c00 -> high #ff0000).
HEAT = gradient(["#1a1a3a", "#ff8c00", "#ff0000"])


def delta_palette(theme: str) -> np.ndarray:
    """Diverging palette for row delta: strong sell (red) -> neutral -> strong buy (green); 256 colours."""
    th = THEMES[theme]
    return gradient([th["sell"], th["neutral"], th["buy"]])


def recency_palette(theme: str) -> np.ndarray:
    """Old (faded) -> recent (bright) rows; 256 colours."""
    th = THEMES[theme]
    return gradient([th["old"], th["recent"]])


def heatmap_palette(theme: str) -> list[str]:
    """Palette of the time x price heat-map behind the candles (colorcet ``fire``, darkest entries dropped)."""
    import colorcet as cc

    pal = list(cc.fire[40:]) if theme == "dark" else list(cc.CET_L18[10:])
    return pal


def colours(palette: np.ndarray, norm: np.ndarray) -> list[str]:
    """Map values in [0, 1] (shape (R,), NaN -> 0) onto ``palette``; returns a list of R colour strings."""
    v = np.nan_to_num(np.asarray(norm, dtype=np.float64), nan=0.0)
    idx = np.clip(np.rint(v * (len(palette) - 1)), 0, len(palette) - 1).astype(int)
    return palette[idx].tolist()


#: The page's style sheet; ``%(name)s`` are colours of :data:`THEMES`.
CSS = """
:host { --fl-text: %(text)s; --fl-muted: %(muted)s; --fl-grid: %(grid)s; --fl-bg: %(bg)s; --fl-panel: %(panel)s; }
.fl-status, .fl-summary { font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; color: var(--fl-text);
  display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.fl-status:hover, .fl-summary:hover { white-space: normal; }
.fl-badge { padding: 1px 6px; border-radius: 3px; font-weight: 700; letter-spacing: .04em; }
.fl-why, .fl-muted { color: var(--fl-muted); }
.fl-complete { color: var(--fl-muted); }
.fl-gaps { color: %(warn)s; font-weight: 600; }
.fl-stream { white-space: nowrap; }
.fl-message { background: #4a1d1d; color: #ffd7d7; border-left: 3px solid #ef5350; padding: 6px 10px;
  font: 12px/1.5 ui-monospace, monospace; border-radius: 3px; }
.fl-message ul { margin: 2px 0 0 16px; padding: 0; }
.fl-panel-title { font: 600 12px/1.8 system-ui, sans-serif; color: var(--fl-text); border-bottom: 1px solid var(--fl-grid); }
.fl-table { width: 100%%; border-collapse: collapse; font: 11px/1.45 ui-monospace, Menlo, Consolas, monospace; }
.fl-table th { color: var(--fl-muted); font-weight: 400; text-align: left; position: sticky; top: 0; background: var(--fl-bg); }
.fl-table td, .fl-table th { padding: 0 4px; white-space: nowrap; }
.fl-table .r { text-align: right; } .fl-table .c { text-align: center; }
.fl-tape td:nth-child(2), .fl-tape td:nth-child(3) { text-align: right; } .fl-tape td:nth-child(4) { text-align: center; }
.fl-note { color: var(--fl-muted); font: 11px/1.4 system-ui, sans-serif; margin-top: 4px; }
.fl-embed pre { white-space: pre-wrap; word-break: break-all; background: var(--fl-bg); color: var(--fl-text);
  padding: 6px; border-radius: 3px; font-size: 11px; }
.fl-embed { font: 12px/1.45 system-ui, sans-serif; color: var(--fl-text); }
.fl-embed code { color: %(warn)s; }
.fl-status, .fl-status:hover { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 100%%; }
.fl-status .fl-src { cursor: help; }
.fl-status .fl-badge { display: inline-block; line-height: 1.35; }
"""


def css_for(theme: str) -> str:
    """The page's style sheet (status, summary, messages, tables, embed help) in a theme's colours."""
    return CSS % THEMES[theme]
