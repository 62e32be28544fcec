"""The PWA in Chromium: capture with the fake camera, upload, errors, offline, privacy."""

from __future__ import annotations

import numpy as np
import pytest
import webtiny as tiny
from PIL import Image
from webhelp import FRAMES, INTERVAL_MS, assert_clean, open_app, run_capture, start_camera, wait_js

from hemoedge.web.build import DEFAULT_CADENCE

pytestmark = pytest.mark.browser

CADENCE_MEAN_TOL_MS = 2.0  # mean grab interval vs 80 ms (the benchmark gates the tight figure)
CADENCE_MAX_DEV_MS = 30.0  # any single interval; loose because the CI machine is shared
TINY_HB_TOL = 0.5  # g/dL: the tiny estimator on the video's nail vs on the clean photo
BOX_TOL_PX = 1e-3
# g/dL: same input tensor (see test_parity), but the tiny estimator's ReduceMean over 150k
# float32 values sums in another order in WASM than in native ORT (~1e-3 relative)
WASM_VS_NATIVE_HB_TOL = 0.01


def tiny_hb_of_nail() -> float:
    """What the tiny models give for the clean nail patch (Python reference pipeline)."""
    import onnxruntime as ort

    from hemoedge.preprocess import resize_crop
    from hemoedge.spec import estimator_spec

    patch = np.empty((64, 64, 3), np.uint8)
    patch[...] = tiny.NAIL_RGB
    x = resize_crop(patch, estimator_spec().preprocess)
    m = tiny.tiny_estimator().SerializeToString()
    return float(ort.InferenceSession(m).run(None, {"input": x})[0][0, 0])


def test_capture_30_frames_at_80ms(app):
    page, _, url, guard = app
    info = open_app(page, url)
    assert info["coi"] is True
    assert info["session"]["numThreads"] == 2 and info["session"]["crossOriginIsolated"] is True
    start_camera(page)
    cap = run_capture(page)
    for _ in range(2):  # a busy shared machine stalled the page: up to two more tries, then judge
        if not cap["reanchored"]:
            break
        cap = run_capture(page)

    ticks = np.asarray(cap["ticks"])
    assert cap["mode"] == "pipelined" and len(ticks) == FRAMES and len(cap["frames"]) == FRAMES
    assert cap["reanchored"] == 0, "the main thread stalled during the capture"
    iv = np.diff(ticks)
    assert abs(iv.mean() - INTERVAL_MS) <= CADENCE_MEAN_TOL_MS, iv
    assert np.abs(iv - INTERVAL_MS).max() <= CADENCE_MAX_DEV_MS, iv
    frames = sorted(cap["frames"], key=lambda r: r["k"])
    assert [r["k"] for r in frames] == list(range(FRAMES))
    for r in frames:  # the bench hook's per-frame record
        assert {"grabT", "frameIndex", "detMs", "estMs", "queueMs", "reason", "hb"} <= set(r)
        assert r["queueMs"] >= 0
    idx = [r["frameIndex"] for r in frames]
    assert all(0 <= i < 75 for i in idx) and len(set(idx)) >= FRAMES - 2, idx  # fresh source frames
    assert [r["reason"] for r in frames] == [None] * FRAMES
    # the detector on every DEFAULT_CADENCE-th frame, the nail tracked between
    assert sum(r["detected"] for r in frames) == len(range(0, FRAMES, DEFAULT_CADENCE))
    assert all(r.get("track") for r in frames if not r["detected"])

    s = cap["summary"]
    assert s["ok"] and s["used"] >= 25, s
    assert s["hb"] == pytest.approx(tiny_hb_of_nail(), abs=TINY_HB_TOL)
    assert cap["resultT"] >= ticks[-1]
    assert page.text_content("#result-hb") == f"{s['hb']:.1f} g/dL"
    assert "anaemia" in page.text_content("#result-category")
    assert f"of {FRAMES} frames" in page.text_content("#result-detail")
    # the WHO threshold option re-labels the same reading (12-13 g/dL: anaemic for men only)
    assert 12.0 < s["hb"] < 13.0
    page.select_option("#sex", "male")
    assert page.text_content("#result-category") == "Mild anaemia (WHO)"
    page.select_option("#sex", "female")
    assert page.text_content("#result-category") == "No anaemia (WHO)"
    # the thresholds in the labels come from the build's models.json (hemoedge.severity)
    labels = page.eval_on_selector_all("#sex option", "os => os.map((o) => o.textContent)")
    assert labels == ["not given (women's threshold, 12 g/dL)", "women (12 g/dL)", "men (13 g/dL)"]
    assert "moderate below 11, severe below 8 g/dL" in page.text_content("#sex-help")
    assert_clean(guard)


def test_cancel(app):
    page, _, url, guard = app
    open_app(page, url)
    start_camera(page)
    page.click("#capture-btn")
    page.click("#cancel-btn")
    wait_js(page, "document.querySelector('#progress-text').textContent === 'Capture cancelled.'")
    assert page.is_enabled("#capture-btn") and page.inner_text("#result").strip() == ""
    cap = run_capture(page)  # a new capture still works after a cancel
    assert len(cap["frames"]) == FRAMES
    assert_clean(guard)


def test_upload_gives_per_nail_results(app, tmp_path):
    page, _, url, guard = app
    open_app(page, url)
    img, boxes = tiny.nail_photo()
    Image.fromarray(img).save(tmp_path / "hand.png")
    page.click("#tab-upload")
    page.set_input_files("#file", str(tmp_path / "hand.png"))
    wait_js(page, "document.querySelectorAll('#nails li').length > 0")
    up = page.evaluate("window.__hemoedgeBench.lastUpload")
    got = sorted(tuple(n["box"]) for n in up["nails"])
    np.testing.assert_allclose(got, sorted(boxes), atol=BOX_TOL_PX)
    hb = tiny_hb_of_nail()
    for n in up["nails"]:
        assert n["hb"] == pytest.approx(hb, abs=WASM_VS_NATIVE_HB_TOL)
    items = page.eval_on_selector_all("#nails li", "els => els.map(e => e.textContent)")
    assert len(items) == 3 and all(f"{hb:.1f} g/dL" in t for t in items)
    assert "3 nail(s) found. Median" in page.text_content("#upload-msg")
    assert page.text_content("#upload-msg").endswith("No anaemia (WHO).")
    page.select_option("#sex", "male")  # 12-13 g/dL: anaemic by the men's threshold only
    assert page.text_content("#upload-msg").endswith("Mild anaemia (WHO).")
    assert_clean(guard)


@pytest.mark.parametrize("name, mime", [("notes.txt", "text/plain"), ("fake.jpg", "image/jpeg")])
def test_upload_non_image_gives_a_message(app, name, mime):
    page, _, url, guard = app
    open_app(page, url)
    page.click("#tab-upload")
    page.set_input_files(
        "#file", files=[{"name": name, "mimeType": mime, "buffer": b"hello, not a photo"}]
    )
    wait_js(page, "document.querySelector('#upload-msg').textContent.length > 0")
    assert page.text_content("#upload-msg") == (
        f"“{name}” is not an image this browser can read. Choose a JPEG or PNG photo."
    )
    assert page.evaluate("document.querySelectorAll('#nails li').length") == 0
    assert_clean(guard)


def test_upload_without_nail(app, tmp_path):
    page, _, url, guard = app
    open_app(page, url)
    Image.fromarray(np.full((300, 400, 3), 90, np.uint8)).save(tmp_path / "wall.jpg")
    page.click("#tab-upload")
    page.set_input_files("#file", str(tmp_path / "wall.jpg"))
    wait_js(page, "document.querySelector('#upload-msg').textContent.startsWith('No fingernail')")
    assert_clean(guard)


def test_offline_reload(app, tmp_path):
    page, ctx, url, guard = app
    open_app(page, url)
    # every file is in the service worker's cache (the WASM and models since the worker loaded them)
    wait_js(page, "navigator.serviceWorker.controller !== null && window.__hemoedgeBench.offlineReady")
    ctx.set_offline(True)
    page.reload()
    wait_js(
        page,
        "window.__hemoedgeBench && (window.__hemoedgeBench.ready || window.__hemoedgeBench.error)",
    )
    assert page.evaluate("window.__hemoedgeBench.error") is None
    assert page.evaluate("self.crossOriginIsolated") is True
    assert page.evaluate("window.__hemoedgeBench.numThreads") == 2
    img, _ = tiny.nail_photo()
    Image.fromarray(img).save(tmp_path / "hand.png")
    page.click("#tab-upload")
    page.set_input_files("#file", str(tmp_path / "hand.png"))
    wait_js(page, "document.querySelectorAll('#nails li').length === 3")
    ctx.set_offline(False)
    assert_clean(guard)


def test_not_isolated_falls_back_to_one_thread(browser, dist, tmp_path):
    """Served without COOP/COEP the app still works, on 1 thread, and says so."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Plain(SimpleHTTPRequestHandler):
        extensions_map = {  # noqa: RUF012
            **SimpleHTTPRequestHandler.extensions_map,
            ".mjs": "text/javascript",
            ".wasm": "application/wasm",
        }

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Plain, directory=str(dist)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        info = open_app(page, f"http://127.0.0.1:{srv.server_address[1]}/")
        assert info["coi"] is False and info["session"]["numThreads"] == 1
        assert "not cross-origin isolated" in page.text_content("#thread-note")
    finally:
        ctx.close()
        srv.shutdown()
        srv.server_close()


def test_installable_manifest(app):
    page, _, url, _ = app
    open_app(page, url)
    href = page.get_attribute("link[rel=manifest]", "href")
    m = page.evaluate(f"fetch('{href}').then(r => r.json())")
    assert m["display"] == "standalone" and m["start_url"] == "./index.html"
    sizes = {(i["sizes"], i["purpose"]) for i in m["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= sizes
    for i in m["icons"]:
        assert (
            page.evaluate(f"fetch('{i['src']}').then(r => r.ok && r.headers.get('content-type'))")
            == "image/png"
        )
    # the notice is visible, controls are labelled
    assert page.is_visible("#notice") and "Not a medical device" in page.text_content("#notice")
    for sel in ("#sex", "#file"):
        assert page.evaluate(f"document.querySelector('{sel}').labels.length") == 1
