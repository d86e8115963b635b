"""Inline SVG charts drawn in Python: no script, no font file, nothing fetched, a few kB per chart.

A Chart maps data coordinates to pixels inside margins and collects SVG elements; render() returns one
<svg> element to inline in the HTML page. Every piece of text passes through html.escape.
"""
from __future__ import annotations

import html
import math

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#7f7f7f", "#000000")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    if raw <= 0:   # a span so small its division underflows (hypothesis found hi = 5e-324): one tick
        return [lo]
    mag = 10 ** math.floor(math.log10(raw))
    step = next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), None)
    if not step:   # a subnormal span: 10^-324 underflows to 0 (hypothesis: three samples 5e-324 s apart)
        return [lo]
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def log_ticks(lo: float, hi: float) -> list:
    """1-2-5 ticks per decade over [lo, hi] (lo > 0); only powers of ten beyond four decades."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = (1, 2, 5) if last - first <= 4 else (1,)
    ticks = [m * 10.0 ** k for k in range(first, last + 1) for m in steps]
    return [float(f"{t:.6g}") for t in ticks if lo <= t <= hi]


def number(v: float) -> str:
    """A compact axis or label number: 3 significant digits, no exponent in the usual ranges."""
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) >= 0.001 else f"{v:.2e}"


def padded(lo: float, hi: float, pad: float = 0.05) -> tuple:
    """A range with a margin; a degenerate range gets a width."""
    if hi <= lo:
        span = abs(lo) * 0.1 or 1.0
        return lo - span, hi + span
    span = hi - lo
    return lo - span * pad, hi + span * pad


class Chart:
    def __init__(self, title: str, x_range: tuple, y_range: tuple, width: int = 560, height: int = 240,
                 x_label: str = "", y_label: str = "", margin: tuple = (12, 24, 42, 58), log_x: bool = False):
        """log_x: a logarithmic x axis (x_range must be > 0), for latencies whose tail spans decades."""
        self.title, self.width, self.height, self.log_x = title, width, height, log_x
        self.top, self.right, self.bottom, self.left = margin
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.x_label, self.y_label = x_label, y_label
        self.parts = []

    def x(self, v: float) -> float:
        lo, hi = self.x0, self.x1
        if self.log_x:
            v, lo, hi = (math.log10(max(w, 1e-12)) for w in (v, lo, hi))
        span = (hi - lo) or 1.0
        return round(self.left + (v - lo) / span * (self.width - self.left - self.right), 1)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return round(self.height - self.bottom - (v - self.y0) / span * (self.height - self.top - self.bottom), 1)

    def axes(self, x_ticks=None, y_ticks=None, x_fmt=number, y_fmt=number) -> "Chart":
        """Grid lines, tick labels and axis titles."""
        if x_ticks is None:
            x_ticks = log_ticks(self.x0, self.x1) if self.log_x else nice_ticks(self.x0, self.x1)
        y_ticks = nice_ticks(self.y0, self.y1, 4) if y_ticks is None else y_ticks
        bottom, left = self.height - self.bottom, self.left
        out = [f'<rect class="plot" x="{left}" y="{self.top}" width="{self.width - left - self.right}" '
               f'height="{bottom - self.top}"/>']
        for t in x_ticks:
            if self.x0 <= t <= self.x1:
                out.append(f'<line class="grid" x1="{self.x(t)}" x2="{self.x(t)}" y1="{self.top}" y2="{bottom}"/>'
                           f'<text x="{self.x(t)}" y="{bottom + 14}" text-anchor="middle">{_esc(x_fmt(t))}</text>')
        for t in y_ticks:
            if self.y0 <= t <= self.y1:
                out.append(f'<line class="grid" x1="{left}" x2="{self.width - self.right}" y1="{self.y(t)}" '
                           f'y2="{self.y(t)}"/><text x="{left - 5}" y="{self.y(t) + 4}" text-anchor="end">'
                           f'{_esc(y_fmt(t))}</text>')
        if self.x_label:
            out.append(f'<text class="label" x="{(left + self.width - self.right) / 2}" y="{self.height - 6}" '
                       f'text-anchor="middle">{_esc(self.x_label)}</text>')
        if self.y_label:
            cy = (self.top + bottom) / 2
            out.append(f'<text class="label" x="12" y="{cy}" text-anchor="middle" '
                       f'transform="rotate(-90 12 {cy})">{_esc(self.y_label)}</text>')
        self.parts = out + self.parts
        return self

    def _points(self, pts) -> str:
        return " ".join(f"{self.x(a)},{self.y(b)}" for a, b in pts)

    def line(self, pts, stroke: str, width: float = 1.5, dash: str = "", step: bool = False, title: str = ""):
        if step:  # an ECDF is a step function: hold each level until the next x
            pts = list(pts)
            pts = [p for (a, b), (c, _) in zip(pts, pts[1:]) for p in ((a, b), (c, b))] + pts[-1:]
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<polyline class="series" fill="none" stroke="{stroke}" stroke-width="{width}"{dashed} '
                          f'points="{self._points(pts)}">{_title(title)}</polyline>')

    def band(self, upper, lower, fill: str, opacity: float = 0.2, title: str = ""):
        pts = list(upper) + list(reversed(list(lower)))
        self.parts.append(f'<polygon fill="{fill}" fill-opacity="{opacity}" stroke="none" '
                          f'points="{self._points(pts)}">{_title(title)}</polygon>')

    def rect(self, xa, xb, ya, yb, fill: str, opacity: float = 1.0, title: str = ""):
        x, y = min(self.x(xa), self.x(xb)), min(self.y(ya), self.y(yb))
        w, h = abs(self.x(xb) - self.x(xa)), abs(self.y(yb) - self.y(ya))
        self.parts.append(f'<rect x="{x}" y="{y}" width="{max(w, 0.5):.1f}" height="{max(h, 0.5):.1f}" fill="{fill}" '
                          f'fill-opacity="{opacity}">{_title(title)}</rect>')

    def dot(self, xv, yv, fill: str, r: float = 3.5, title: str = "", shape: str = "circle"):
        cx, cy = self.x(xv), self.y(yv)
        if shape == "diamond":
            self.parts.append(f'<polygon fill="{fill}" stroke="#fff" stroke-width="0.8" points="{cx},{cy - r - 1} '
                              f'{cx + r + 1},{cy} {cx},{cy + r + 1} {cx - r - 1},{cy}">{_title(title)}</polygon>')
        elif shape == "square":
            self.parts.append(f'<rect x="{cx - r:.1f}" y="{cy - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" '
                              f'fill="{fill}" stroke="#fff" stroke-width="0.8">{_title(title)}</rect>')
        else:
            self.parts.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="{fill}" stroke="#fff" stroke-width="0.8">'
                              f'{_title(title)}</circle>')

    def segment(self, xa, ya, xb, yb, stroke: str, width: float = 1.5, dash: str = "", title: str = ""):
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<line x1="{self.x(xa)}" y1="{self.y(ya)}" x2="{self.x(xb)}" y2="{self.y(yb)}" '
                          f'stroke="{stroke}" stroke-width="{width}"{dashed}>{_title(title)}</line>')

    def text(self, xv, yv, words: str, anchor: str = "start", cls: str = "note", dx: float = 0, dy: float = 0,
             title: str = ""):
        self.parts.append(f'<text class="{cls}" x="{self.x(xv) + dx}" y="{self.y(yv) + dy}" text-anchor="{anchor}">'
                          f'{_title(title if title != words else "")}{_esc(words)}</text>')

    def render(self) -> str:
        return (f'<svg class="chart" viewBox="0 0 {self.width} {self.height}" width="{self.width}" '
                f'height="{self.height}" role="img" aria-label="{_esc(self.title)}"><title>{_esc(self.title)}</title>'
                + "".join(self.parts) + "</svg>")


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _title(text: str) -> str:
    """A hover tooltip (SVG <title>): free in size and needs no script."""
    return f"<title>{_esc(text)}</title>" if text else ""
