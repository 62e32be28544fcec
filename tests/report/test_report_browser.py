"""report.html renders in Chromium with no network request; a screenshot has the plots.

(docs/report.png in the README is a screenshot of a real run's report, not of this fixture.)"""

from __future__ import annotations

import os

import pytest
from report_fixtures import make_results

from hemoedge.report.html import render

CHROMIUM = "/usr/bin/chromium"
PAGE_TIMEOUT_MS = 30_000


@pytest.mark.browser
def test_report_renders_offline_in_chromium(tmp_path):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium fonts-dejavu-core")
    sync_api = pytest.importorskip("playwright.sync_api")
    html, _ = render(make_results())
    page_path = tmp_path / "report.html"
    page_path.write_text(html, encoding="utf-8")
    url = page_path.as_uri()

    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 1500})

            def intercept(route):
                requests.append(route.request.url)
                if route.request.url == url:
                    route.continue_()
                else:
                    route.abort()

            context.route("**/*", intercept)
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            page.wait_for_load_state("networkidle")
            n_svg = page.locator("figure.fig svg").count()
            heights = page.eval_on_selector_all(
                "figure.fig svg", "els => els.map(e => e.getBoundingClientRect().height)")
            titles = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=False)
        finally:
            browser.close()

    external = [u for u in requests if u != url]
    assert external == [], f"the report made network requests: {external}"
    # Pareto x2, severity, latency x2, frame stages, sizes, capture timeline
    assert n_svg == 8
    assert all(h > 50 for h in heights), heights
    assert "Accuracy vs latency (Pareto)" in titles and "Capture" in titles
    assert shot.stat().st_size > 10_000
