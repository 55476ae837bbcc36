"""The results server's web pages in a real headless browser (Debian's chromium,
driven by Playwright's Python client).  Screenshots go to ``test-artifacts/``
(or ``$PBENCH_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.results_helpers import ResultsServer, make_result, results_server, tarball_of

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(
    os.environ.get("PBENCH_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server holding two public runs (the second twice as slow) and a private one."""
    base = tmp_path_factory.mktemp("web")
    with results_server(base) as srv:
        token = srv.token("alice")
        ids = {}
        for name, durations, access in (
            ("web-base", (1.0, 1.02, 0.98), "public"),
            ("web-slow", (2.0, 2.02, 1.98), "public"),
            ("web-secret", (1.0,), "private"),
        ):
            tarball = tarball_of(make_result(base / "results", name, durations=durations), base)
            resp = srv.put(tarball, token, access=access)
            assert resp.status_code == 201, resp.text
            ids[name] = resp.json()["id"]
        yield {"server": srv, "token": token, "ids": ids}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: scripts/install.sh installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"results-web-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000
    return path


def test_the_list_shows_the_public_runs_and_searches_them(site: dict[str, Any], page: Any) -> None:
    srv: ResultsServer = site["server"]
    page.goto(srv.url + "/")
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 2
    text = page.locator("table.runs").inner_text()
    assert "web-base" in text and "web-slow" in text and "web-secret" not in text
    shot(page, "list")
    page.fill("input[name=q]", "slow")
    page.click("form.filters button")
    page.wait_for_url("**q=slow**")
    assert page.locator("table.runs tbody tr").count() == 1
    assert "web-slow" in page.locator("table.runs").inner_text()


def test_the_run_page_shows_iterations_statistics_and_a_plot_with_data(
    site: dict[str, Any], page: Any
) -> None:
    srv: ResultsServer = site["server"]
    page.goto(srv.url + "/")
    page.click("text=web-base")
    page.wait_for_url(f"**/run/{site['ids']['web-base']}")
    assert page.locator("h1").inner_text() == "web-base"
    stats = page.locator("table.stats").first
    assert "wall_s" in stats.inner_text()
    column = stats.locator("thead th").all_inner_texts().index("mean")
    mean = stats.locator("tbody tr", has_text="wall_s").locator("td").nth(column)
    assert mean.inner_text() == "1.000"  # the mean of 1.0, 1.02, 0.98 (the median is 1.0 too)
    assert "node1" in page.locator("table.hosts").first.inner_text()
    plot = page.locator("svg.plot").first
    assert plot.is_visible()
    assert int(plot.get_attribute("data-points")) == 15  # 3 samples x 5 vmstat rows
    assert len(plot.locator("polyline").get_attribute("points").split()) == 15
    assert "CPU busy" in page.locator("figure figcaption").first.inner_text()
    page.click("details.sysinfo summary")
    assert "Linux node1" in page.locator("details.sysinfo").first.inner_text()
    shot(page, "run")


def test_the_compare_page_shows_two_runs_and_highlights_the_change(
    site: dict[str, Any], page: Any
) -> None:
    srv: ResultsServer = site["server"]
    page.goto(srv.url + "/")
    for name in ("web-base", "web-slow"):
        page.check(f"input[value='{site['ids'][name]}']")
    page.click("#compare")
    page.wait_for_url("**/compare?**")
    body = page.locator("main").inner_text()
    assert "web-base" in body and "web-slow" in body
    change = page.locator("table.changes tr", has_text="wall_s").locator("td.change")
    # the first selected run is the base: web-slow takes twice as long, which is worse
    assert change.inner_text() == "+100.0%"
    assert "worse" in change.get_attribute("class")
    assert page.locator("td.change.worse").first.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    ) not in ("rgba(0, 0, 0, 0)", "transparent")
    shot(page, "compare")


def test_signing_in_shows_ones_private_runs(site: dict[str, Any], page: Any) -> None:
    srv: ResultsServer = site["server"]
    page.goto(srv.url + f"/run/{site['ids']['web-secret']}")
    assert "404" in page.locator("h1").inner_text()
    page.goto(srv.url + "/login")
    page.fill("input[name=token]", "wrong")
    page.click("form button")
    assert "not known" in page.locator("main").inner_text()
    page.fill("input[name=token]", site["token"])
    page.click("form button")
    page.wait_for_url(srv.url + "/")
    assert "signed in as alice" in page.locator("header").inner_text()
    assert "web-secret" in page.locator("table.runs").inner_text()
    shot(page, "signed-in")
