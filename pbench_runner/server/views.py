"""The web pages: the list of runs, a run, and a comparison of runs.

Server-rendered HTML from the same index and the same functions as the
JSON API; public runs need no sign-in, and signing in (a token, kept in a
cookie) shows one's private runs too.
"""

from __future__ import annotations

import math
import urllib.parse
from typing import Any

import cherrypy

from pbench_runner import compare
from pbench_runner.benchreport import HOST_MEASURES, fmt_number
from pbench_runner.server import auth
from pbench_runner.server.api import Store, comparison, filters_from, split_ids, viewer
from pbench_runner.server.storage import Dataset
from pbench_runner.server.templates import esc, fmt_bytes, page, svg_plot, table

PAGE_SIZE = 50
#: the last page number taken (a larger one shows this page)
MAX_PAGE = 10**9
FILTER_FIELDS = (
    ("q", "text"),
    ("user", "user"),
    ("benchmark", "benchmark"),
    ("config", "config"),
    ("controller", "controller"),
    ("since", "from (YYYY-MM-DD)"),
    ("until", "to (YYYY-MM-DD)"),
)
UNITS = {"cpu_busy_pct": "%", "mem_used_mib": "MiB", "disk_kib_s": "KiB/s", "net_kib_s": "KiB/s"}
LABELS = dict(HOST_MEASURES)


def html_error_page(status: str, message: str, traceback: str, version: str) -> str:
    return page(status, f"<h1>{esc(status)}</h1><p>{esc(message)}</p>")


def _num(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    if isinstance(value, float):
        return f'<td class="num">{esc(fmt_number(float(value)))}</td>'
    return "<td></td>"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _measure(stat: Any) -> str:
    """A host's mean (and peak, when the sample was long enough for one) of one
    measure; an empty cell when the mean is not a number."""
    mean, peak = _dict(stat).get("mean"), _dict(stat).get("peak")
    if not isinstance(mean, (int, float)):
        return "<td></td>"
    shown = (
        f' <span class="muted">(peak {esc(fmt_number(float(peak)))})</span>'
        if isinstance(peak, (int, float))
        else ""
    )
    return f'<td class="num">{esc(fmt_number(float(mean)))}{shown}</td>'


class Pages:
    """Mounted at ``/``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.index  # not self.index: that is the page at /

    @cherrypy.expose
    def index(self, page_no: Any = "1", **params: Any) -> str:
        user = viewer(self.db)
        try:
            number = min(MAX_PAGE, max(1, int(str(page_no))))
        except ValueError:
            number = 1
        # a parameter given twice (a list) counts once: its last value
        params = {k: v[-1] if isinstance(v, list) and v else v for k, v in params.items()}
        wanted = {k: v for k, v in params.items() if k in dict(FILTER_FIELDS) and v}
        filters = filters_from(
            {**wanted, "limit": str(PAGE_SIZE), "offset": str((number - 1) * PAGE_SIZE)}
        )
        total, found = self.db.search(filters, user)
        inputs = "".join(
            f'<input name="{key}" placeholder="{esc(label)}" value="{esc(params.get(key, ""))}">'
            for key, label in FILTER_FIELDS
        )
        rows = [
            [
                f'<input type="checkbox" name="ids" value="{ds.id}" aria-label="compare {esc(ds.name)}">',
                f'<a href="/run/{ds.id}">{esc(ds.name)}</a>',
                esc(ds.benchmark),
                esc(ds.config),
                esc(ds.date[:19].replace("T", " ")),
                esc(ds.owner)
                + ("" if ds.access == "public" else ' <span class="muted">(private)</span>'),
                esc(ds.controller),
                esc(", ".join(ds.hosts)),
                esc(ds.status),
            ]
            for ds in found
        ]
        pages = max(1, math.ceil(total / PAGE_SIZE))
        links = []
        for n, label in ((number - 1, "« newer"), (number + 1, "older »")):
            if 1 <= n <= pages:
                query = urllib.parse.urlencode({**wanted, "page_no": n})
                links.append(f'<a href="/?{query}">{label}</a>')
        body = (
            "<h1>Runs</h1>"
            f'<form class="filters" method="get" action="/">{inputs}<button>Search</button></form>'
            f'<p class="muted" id="count">{total} run(s); page {number} of {pages}</p>'
            '<form method="get" action="/compare">'
            + table(
                ["", "run", "benchmark", "config", "date", "user", "controller", "hosts", "status"],
                rows,
                "runs",
            )
            + '<p><button id="compare">Compare the selected runs</button> '
            + " ".join(links)
            + "</p></form>"
        )
        return page("Runs", body, user)

    @cherrypy.expose
    def run(self, dataset_id: str = "") -> str:
        user = viewer(self.db)
        ds = self.store.visible(dataset_id, user)
        doc = ds.doc or {}
        body = [f"<h1>{esc(ds.name)}</h1>", self._facts(ds)]
        body.append("<h2>Iterations</h2>")
        for it in doc.get("iterations", []):
            body.append(self._iteration(_dict(it)))
        body.append("<h2>Tool data over time</h2>")
        series = doc.get("series", {})
        if not series:
            body.append('<p class="muted">No tool data in this run.</p>')
        for host, measures in sorted(series.items()):
            plots = "".join(
                svg_plot(measures[key], f"{host}: {label}", UNITS[key])
                for key, label in HOST_MEASURES
                if key in measures
            )
            body.append(f'<h3>{esc(host)}</h3><div class="plots">{plots}</div>')
        body.append(self._sysinfo(doc.get("sysinfo", {})))
        files = doc.get("files", [])
        listed = "".join(
            f'<li><a href="/api/v1/datasets/{ds.id}/files/{urllib.parse.quote(p)}">{esc(p)}</a> '
            f'<span class="muted">{fmt_bytes(int(s))}</span></li>'
            for p, s in files[:300]
        )
        more = f'<p class="muted">and {len(files) - 300} more</p>' if len(files) > 300 else ""
        body.append(
            f"<h2>Files ({len(files)})</h2><details><summary>list</summary><ul>{listed}</ul>{more}</details>"
        )
        return page(ds.name, "".join(body), user)

    def _facts(self, ds: Dataset) -> str:
        meta = _dict((ds.doc or {}).get("metadata"))
        run = _dict(meta.get("run"))
        rows = [
            ["benchmark", esc(ds.benchmark)],
            ["config", esc(ds.config)],
            ["user", esc(ds.owner) + f" ({esc(ds.access)})"],
            ["controller", esc(ds.controller)],
            ["start", esc(str(run.get("start_run", ds.date)))],
            ["end", esc(str(run.get("end_run", "")))],
            ["status", esc(ds.status)],
            ["tool group", esc(str(_dict(meta.get("tools")).get("group", "")))],
            ["hosts", esc(", ".join(ds.hosts))],
            ["tools", esc(", ".join(ds.tools))],
            ["pbench version", esc(str(_dict(meta.get("pbench")).get("version", "")))],
            [
                "tarball",
                f'<a href="/api/v1/datasets/{ds.id}/tarball">{esc(ds.name)}.tar.xz</a> '
                f"({fmt_bytes(ds.size)}, MD5 {ds.id})",
            ],
        ]
        problems = meta.get("problems") or []
        if not isinstance(problems, list):
            problems = [problems]
        if problems:
            rows.append(["problems", "<br>".join(esc(str(p)) for p in problems)])
        return table(["", ""], rows, "meta")

    def _iteration(self, it: dict[str, Any]) -> str:
        title = f'<h3>{esc(str(it.get("name", "")))} <span class="muted">{esc(str(it.get("status", "")))}</span></h3>'
        if it.get("command"):
            title += f"<p><code>{esc(str(it['command']))}</code></p>"
        rows = []
        for metric, entry in _dict(it.get("metrics")).items():
            entry = _dict(entry)
            s = _dict(entry.get("summary"))
            rows.append(
                [
                    esc(metric),
                    esc(str(entry.get("unit", ""))),
                    _num(s.get("mean")),
                    _num(s.get("stddev")),
                    _num(s.get("stddev_pct")),
                    _num(s.get("median")),
                    _num(s.get("min")),
                    _num(s.get("max")),
                    _num(s.get("n")),
                    "higher" if entry.get("higher_is_better") else "lower",
                ]
            )
        stats = table(
            ["metric", "unit", "mean", "stddev", "%stddev", "median", "min", "max", "n", "better"],
            rows,
            "stats",
        )
        host_rows = [
            [esc(host)] + [_measure(_dict(measures).get(key)) for key, _ in HOST_MEASURES]
            for host, measures in sorted(_dict(it.get("hosts")).items())
        ]
        hosts = (
            table(["host", *(label for _, label in HOST_MEASURES)], host_rows, "hosts")
            if host_rows
            else ""
        )
        return title + stats + hosts

    def _sysinfo(self, sysinfo: dict[str, Any]) -> str:
        parts = ["<h2>Sysinfo</h2>"]
        if not sysinfo:
            parts.append('<p class="muted">No sysinfo was collected.</p>')
        for when, hosts in sorted(sysinfo.items()):
            for host, info in sorted(hosts.items()):
                items = ", ".join(
                    f"{esc(name)}{'' if _dict(r).get('ok', True) else ' (failed)'}"
                    for name, r in sorted(_dict(info.get("items")).items())
                )
                facts = "".join(
                    f"<h4>{esc(name)}</h4><pre>{esc(text)}</pre>"
                    for name, text in sorted(info.get("facts", {}).items())
                )
                parts.append(
                    f'<details class="sysinfo"><summary>{esc(host)} at the {esc(when)}: '
                    f"{items}</summary>{facts}</details>"
                )
        return "".join(parts)

    @cherrypy.expose
    def compare(self, ids: Any = "") -> str:
        user = viewer(self.db)
        chosen = self.store.many(split_ids(ids), user)
        names = {ds.id: ds for ds in chosen}
        body = ["<h1>Compare runs</h1>"]
        body.append(
            table(
                ["", "run", "benchmark", "config", "date"],
                [
                    [
                        "base" if n == 0 else f"run {n}",
                        f'<a href="/run/{ds.id}">{esc(ds.name)}</a>',
                        esc(ds.benchmark),
                        esc(ds.config),
                        esc(ds.date[:19].replace("T", " ")),
                    ]
                    for n, ds in enumerate(chosen)
                ],
            )
        )
        for result in comparison(chosen):
            other = names[result["other"]]
            rows = []
            for ch in result["changes"]:
                verdict = ch["verdict"]
                cls = "noise" if verdict == "within noise" else verdict
                shown = compare.pct_text(float(ch["pct"]))
                rows.append(
                    [
                        esc(ch["benchmark"]),
                        esc(ch["metric"]),
                        _num(ch["base"]),
                        _num(ch["new"]),
                        f'<td class="num change {cls}">{shown}</td>',
                        verdict,
                    ]
                )
            body.append(f"<h2>{esc(chosen[0].name)} → {esc(other.name)}</h2>")
            body.append(
                table(["benchmark", "metric", "base", "new", "change", "verdict"], rows, "changes")
                if rows
                else '<p class="muted">No benchmark and metric in common.</p>'
            )
            body.append(
                "<details><summary>as text</summary><pre>"
                + esc("\n".join(result["table"]))
                + "</pre></details>"
            )
        return page("Compare", "".join(body), user)

    @cherrypy.expose
    def login(self, token: str = "") -> str:
        if cherrypy.request.method == "POST":
            user = auth.user_of(self.db, f"Bearer {token}")
            if user is not None:
                cookie = cherrypy.response.cookie
                cookie["pbench_token"] = token
                cookie["pbench_token"]["path"] = "/"
                cookie["pbench_token"]["httponly"] = True
                cookie["pbench_token"]["samesite"] = "Strict"
                raise cherrypy.HTTPRedirect("/", 303)
            cherrypy.response.status = 401
            message = '<p class="worse">That token is not known here.</p>'
        else:
            message = ""
        body = (
            "<h1>Sign in</h1>" + message + '<form method="post" action="/login">'
            '<input name="token" type="password" placeholder="access token" size="50"> '
            "<button>Sign in</button></form>"
            '<p class="muted">A token is made on the server with '
            "<code>pbench server token create --user NAME</code>.</p>"
        )
        return page("Sign in", body)

    @cherrypy.expose
    def logout(self) -> None:
        cherrypy.response.cookie["pbench_token"] = ""
        cherrypy.response.cookie["pbench_token"]["path"] = "/"
        cherrypy.response.cookie["pbench_token"]["max-age"] = 0
        raise cherrypy.HTTPRedirect("/", 303)
