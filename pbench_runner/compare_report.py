"""Writing a comparison of runs (:func:`pbench_runner.compare.changes`) out: the text
table, the GitHub-flavoured markdown of a pull-request comment, and JSON.

:func:`render` writes a comparison in one of :data:`FORMATS`; :func:`table` is its
text table, :func:`as_dicts` each change as the results server's API has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from pbench_runner import strictjson
from pbench_runner.compare import Change, change_text, pct_text, regressions, verdict
from pbench_runner.errors import UsageError


def overall(found: Sequence[Change]) -> str:
    """One verdict for a comparison: ``"worse"`` when any change is worse, else
    ``"better"`` when any is better, else ``"within noise"`` (``"nothing compared"``
    without a benchmark and metric in common)."""
    verdicts = {verdict(ch) for ch in found}
    if not found:
        return "nothing compared"
    for word in ("worse", "better"):
        if word in verdicts:
            return word
    return "within noise"


def table(found: Sequence[Change], intervals: bool = False) -> list[str]:
    """The comparison as lines of text: a header, then a line per change.  The
    change column holds the point alone (the results server's layout), or with
    ``intervals`` its interval too (``pbench compare``'s, see :func:`render`)."""
    if not intervals:
        lines = [f"{'benchmark':<48} {'metric':<14} {'base':>12} {'new':>12} {'change':>9}  noise"]
        for ch in found:
            lines.append(
                f"{ch.benchmark[-48:]:<48} {ch.metric:<14} {ch.base:>12.4g} {ch.new:>12.4g} "
                f"{pct_text(ch.pct):>9}  {verdict(ch)}"
            )
        return lines
    shown = [change_text(ch) for ch in found]
    width = max([len("change [95% interval]"), *(len(s) for s in shown)])
    lines = [
        f"{'benchmark':<48} {'metric':<14} {'base':>12} {'new':>12} "
        f"{'change [95% interval]':>{width}}  noise"
    ]
    for ch, text in zip(found, shown):
        lines.append(
            f"{ch.benchmark[-48:]:<48} {ch.metric:<14} {ch.base:>12.4g} {ch.new:>12.4g} "
            f"{text:>{width}}  {verdict(ch)}"
        )
    return lines


FORMATS = ("text", "markdown", "json")


def _md_cell(text: str, code: bool = False) -> str:
    text = text.replace("|", "\\|")
    if code:
        fence = "``" if "`" in text else "`"
        pad = " " if "`" in text else ""
        return f"{fence}{pad}{text}{pad}{fence}"
    return text


def _md_number(value: float, unit: str) -> str:
    return f"{value:.4g}{' ' + unit if unit else ''}"


def _markdown(found: Sequence[Change], warnings: Sequence[str], failed: Sequence[str]) -> str:
    counts = {word: sum(verdict(ch) == word for ch in found) for word in _VERDICTS}
    word = "regression" if failed else overall(found)
    summary = ", ".join(f"{counts[w]} {w}" for w in _VERDICTS)
    lines = [f"**pbench compare: {word}** ({summary}; change in medians, 95 % interval)", ""]
    for message in failed:
        lines.append(f"- **regression:** {_md_cell(message)}")
    for warning in warnings:
        lines.append(f"- **warning:** {_md_cell(warning)}")
    if failed or warnings:
        lines.append("")
    if not found:
        lines.append("No benchmark and metric in common.")
        return "\n".join(lines) + "\n"
    lines += [
        "| benchmark | metric | base | new | change [95 % interval] | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for ch in found:
        said = verdict(ch)
        cells = (
            _md_cell(ch.benchmark, code=True),
            _md_cell(ch.metric),
            _md_number(ch.base, ch.unit),
            _md_number(ch.new, ch.unit),
            change_text(ch),
            f"**{said}**" if said != "within noise" else said,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_VERDICTS = ("worse", "better", "within noise")


def as_dicts(found: Sequence[Change]) -> list[dict[str, Any]]:
    """Each change's fields and its :func:`verdict`, as the results server's API has them."""
    return [{**asdict(ch), "verdict": verdict(ch)} for ch in found]


def render(
    found: Sequence[Change],
    fmt: str = "text",
    warnings: Sequence[str] = (),
    rules: Sequence[str] = (),
) -> str:
    """The comparison in ``fmt``, ending with a newline:

    ``text``
        ``warning: ...`` lines, then :func:`table` with intervals.
    ``markdown``
        a GitHub-flavoured table for a pull-request comment: a one-line overall
        verdict in bold (``regression`` when a ``rules`` limit is passed, else
        :func:`overall`), the regressions and ``warnings`` as a list, then a row per change.
    ``json``
        strict JSON (a NaN or an infinity is ``null``): a list of every change's
        fields and its verdict (``warnings`` are not in it).
    """
    if fmt == "text":
        lines = [f"warning: {w}" for w in warnings] + table(found, intervals=True)
        return "\n".join(lines) + "\n"
    if fmt == "markdown":
        return _markdown(found, warnings, regressions(found, rules) if rules else [])
    if fmt == "json":
        return strictjson.dumps(as_dicts(found), indent=2) + "\n"
    raise UsageError(f"bad format {fmt!r}: use one of {', '.join(FORMATS)}")
