"""The app recovers and is accessible: Retry after a failed model load, labelled progress, a
live region present from the start, capture controls above the fold at 360x740, and axe-core
(pinned in webapp/package.json, injected from node_modules) finds no serious or critical
violation."""

from __future__ import annotations

import json
import shutil

import pytest
from webhelp import REPO, assert_clean, open_app, run_capture, start_camera, wait_js

from hemoedge.web.serve import serve_in_thread

pytestmark = pytest.mark.browser

AXE = REPO / "webapp" / "node_modules" / "axe-core" / "axe.min.js"
READY_OR_ERROR = ("window.__hemoedgeBench && (window.__hemoedgeBench.ready || "
                  "window.__hemoedgeBench.error)")


def test_failed_model_load_offers_retry(app, dist, tmp_path):
    page, _, _, guard = app
    d = tmp_path / "dist"
    shutil.copytree(dist, d)
    est = json.loads((d / "build-manifest.json").read_text())["files"][
        "models/estimator.fp32.onnx"]["file"]
    away = tmp_path / "away"
    away.mkdir()
    for f in d.glob(est + "*"):  # the model and its .br/.gz siblings: HTTP 404
        shutil.move(str(f), away / f.name)
    with serve_in_thread(d) as (_, url):
        guard.origin = url.rstrip("/")
        page.goto(url + "?bench=1")
        wait_js(page, READY_OR_ERROR)
        err = page.evaluate("window.__hemoedgeBench.error")
        assert err.startswith("Could not load the models:") and "404" in err, err
        assert page.is_visible("#retry-btn") and page.is_visible("#load-help")
        assert "Retry" in page.text_content("#load-help")
        # no endless spinner: the camera button says what to do, upload says what failed
        page.click("#camera-btn")
        assert "press Retry" in page.text_content("#progress-text")
        page.click("#tab-upload")
        page.set_input_files("#file", files=[{"name": "a.png", "mimeType": "image/png",
                                               "buffer": b"x"}])
        msg = page.text_content("#upload-msg")
        assert msg.startswith("Could not load the models:") and "Press Retry" in msg, msg
        for f in away.iterdir():  # the network is back
            shutil.move(str(f), d / f.name)
        page.click("#retry-btn")
        wait_js(page, "window.__hemoedgeBench.ready")
        assert page.evaluate("window.__hemoedgeBench.error") is None
        assert page.is_hidden("#load-help")
        assert page.text_content("#status").startswith("Ready.")
    assert_clean(guard)


def test_progress_and_live_region_are_accessible(app):
    page, _, url, guard = app
    open_app(page, url)
    # the progress bar has an accessible name
    assert page.get_by_role("progressbar", name="Capture progress").count() == 1
    # the result's live region is in the page (not hidden), empty, from the start
    region = page.locator("#result")
    assert region.get_attribute("aria-live") == "polite"
    assert region.get_attribute("hidden") is None
    assert region.inner_text().strip() == ""
    assert page.get_by_role("status", name="Capture result").count() == 1
    start_camera(page)
    run_capture(page)
    assert page.text_content("#result-hb").endswith("g/dL")  # written into the same region
    assert_clean(guard)


def test_capture_controls_above_the_fold_at_360x740(browser, server):
    ctx = browser.new_context(viewport={"width": 360, "height": 740}, permissions=["camera"])
    try:
        page = ctx.new_page()
        open_app(page, server)
        assert page.evaluate("window.scrollY") == 0
        for sel in ("#camera-btn", "#capture-btn", "#cancel-btn"):
            box = page.locator(sel).bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= 740, (sel, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= 360, (sel, box)
    finally:
        ctx.close()


@pytest.mark.skipif(not AXE.is_file(), reason="axe-core missing: run `npm ci` in webapp/")
@pytest.mark.parametrize("viewport", [(360, 740), (412, 915)])
def test_axe_finds_no_serious_violation(browser, server, viewport):
    """axe-core, injected from webapp/node_modules (the app's CSP forbids injected scripts, so
    this context bypasses it), on the app ready for a capture and on the upload panel."""
    w, h = viewport
    ctx = browser.new_context(viewport={"width": w, "height": h}, permissions=["camera"],
                              bypass_csp=True)
    try:
        page = ctx.new_page()
        open_app(page, server)
        page.add_script_tag(path=str(AXE))
        found = []
        for state in ("camera", "upload"):
            if state == "upload":
                page.click("#tab-upload")
            res = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            found += [(state, v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                      for v in res["violations"] if v["impact"] in ("serious", "critical")]
        assert found == [], found
    finally:
        ctx.close()


def test_offline_deep_link_opens_the_app(app):
    """A deep link under the app's scope, offline, opens the app shell (not a hang)."""
    page, ctx, url, guard = app
    open_app(page, url)
    wait_js(page, "navigator.serviceWorker.controller !== null && "
                  "window.__hemoedgeBench.offlineReady")
    ctx.set_offline(True)
    try:
        page.goto(url + "some/path?bench=1")
        wait_js(page, READY_OR_ERROR)
        assert page.evaluate("window.__hemoedgeBench.error") is None
        assert page.url == url + "?bench=1"  # the service worker sent it to the app's root
        assert page.text_content("#status").startswith("Ready.")
    finally:
        ctx.set_offline(False)
    assert_clean(guard)
