"""The web pages' frame, style and plots: plain HTML and inline SVG, no build step."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from typing import Any, Final

esc = html.escape

STYLE: Final = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2329; background: #f6f7f9; }
header { background: #22313f; color: #fff; padding: .6em 1.5em; display: flex; gap: 1.5em;
         align-items: baseline; }
header a { color: #fff; text-decoration: none; } header .who { margin-left: auto; opacity: .8; }
main { padding: 1em 1.5em 3em; max-width: 1280px; }
h1 { font-size: 1.35em; margin: .3em 0 .6em; word-break: break-all; }
h2 { font-size: 1.1em; margin: 1.6em 0 .5em; border-bottom: 1px solid #d5d9de; }
table { border-collapse: collapse; background: #fff; margin: .4em 0; }
th, td { padding: .3em .7em; border-bottom: 1px solid #e3e6ea; text-align: left;
         vertical-align: top; }
th { background: #eef1f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
form.filters { display: flex; flex-wrap: wrap; gap: .5em; margin-bottom: 1em; }
form.filters input { padding: .3em .4em; border: 1px solid #b8c0c8; border-radius: 3px; }
button { padding: .3em .9em; }
.better { background: #d9f2dc; } .worse { background: #f9d6d5; } .noise { color: #68737d; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; background: #fff; border: 1px solid #e3e6ea; padding: .4em; }
figcaption { font-size: .9em; color: #444; }
pre { background: #fff; border: 1px solid #e3e6ea; padding: .6em; overflow-x: auto; }
.meta td:first-child { color: #555; white-space: nowrap; }
.muted { color: #68737d; }
"""


def page(title: str, body: str, user: str | None = None) -> str:
    who = (
        f'signed in as {esc(user)} · <a href="/logout">sign out</a>'
        if user
        else '<a href="/login">sign in</a> to see private runs'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · pbench results</title><style>{STYLE}</style></head><body>"
        '<header><a href="/"><b>pbench results</b></a><a href="/">runs</a>'
        f'<span class="who">{who}</span></header><main>{body}</main></body></html>'
    )


def fmt_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """``rows`` hold HTML already escaped (cells that start with <td are kept as they are)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    thead = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f'<table class="{cls}">{thead}<tbody>{body}</tbody></table>'


def _seconds(stamp: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def svg_plot(points: Sequence[Sequence[Any]], title: str, unit: str) -> str:
    """A line plot of ``[[ISO time, value], ...]`` as inline SVG."""
    timed = []
    for stamp, value in points:
        when = _seconds(str(stamp))
        if when is not None:
            timed.append((when, float(value)))
    if not timed:
        return ""
    width, height, left, bottom, top, right = 520, 170, 56, 24, 10, 10
    t0, t1 = timed[0][0], timed[-1][0]
    lo = min(0.0, min(v for _, v in timed))
    hi = max(v for _, v in timed)
    hi = hi if hi > lo else lo + 1
    span = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return left + (t - t0) / span * (width - left - right)

    def y(v: float) -> float:
        return top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom)

    caption = title if unit in title else f"{title} ({unit})"
    line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in timed)
    dots = "".join(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="1.8"/>' for t, v in timed[:400])
    start = dt.datetime.fromtimestamp(t0).strftime("%H:%M:%S")
    end = dt.datetime.fromtimestamp(t1).strftime("%H:%M:%S")
    return (
        f"<figure><figcaption>{esc(caption)}</figcaption>"
        f'<svg class="plot" data-points="{len(timed)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">'
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="#fbfcfd" stroke="#d5d9de"/>'
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="11">{hi:.4g}</text>'
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end" font-size="11">'
        f"{lo:.4g}</text>"
        f'<text x="{left}" y="{height - 6}" font-size="11">{start}</text>'
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end" font-size="11">{end}</text>'
        f'<polyline points="{line}" fill="none" stroke="#2a6fb0" stroke-width="1.6"/>'
        f'<g fill="#2a6fb0">{dots}</g></svg></figure>'
    )
