"""Capture behaviour beyond the happy path: rejected frames, the seed loop, thread options,
and an update that waits for the capture to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import webtiny as tiny
from webhelp import (
    FRAMES,
    INTERVAL_MS,
    assert_clean,
    launch,
    open_app,
    run_capture,
    start_camera,
    wait_js,
    write_y4m,
)

pytestmark = pytest.mark.browser

SEGMENT = 15  # source frames per segment at 25 fps = 0.6 s; 4 segments = one 2.4 s capture


def quality_video(path):
    """Four segments: too dark, no nail, a nail jumping around (motion), a steady nail."""
    from hemoedge.data.video import draw_index

    frames = []
    for k in range(4 * SEGMENT):
        seg = k // SEGMENT
        if seg == 0:
            img = np.full((480, 640, 3), 12, np.uint8)
        elif seg == 1:
            img = np.full((480, 640, 3), tiny.BACKGROUND_RGB, np.uint8)
        elif seg == 2:
            # three far-apart places: grabs 2 source frames apart still see the nail jump
            img, _ = tiny.nail_photo(cells=(((1, 4),), ((7, 5),), ((4, 2),))[k % 3])
        else:
            img, _ = tiny.nail_photo(cells=((4, 4),))
        draw_index(img, k)
        frames.append(img)
    return write_y4m(path, frames)


@pytest.fixture(scope="module")
def quality_browser(playwright_session, tmp_path_factory):
    b = launch(playwright_session, quality_video(tmp_path_factory.mktemp("qv") / "q.y4m"))
    yield b
    b.close()


def test_rejected_frames_give_reasons_and_try_again(quality_browser, server):
    ctx = quality_browser.new_context(permissions=["camera"])
    try:
        page = ctx.new_page()
        open_app(page, server, "?bench=1&detect_every=1")
        start_camera(page)
        cap = run_capture(page)
        reasons = {r["reason"] for r in cap["frames"]}
        assert {"too dark", "no nail found", "motion"} <= reasons, reasons
        s = cap["summary"]
        assert not s["ok"] and s["used"] < 10
        assert page.text_content("#result-hb") == "Try again"
        assert "at least 10 needed" in page.text_content("#result-detail")
        items = page.eval_on_selector_all("#reasons li", "els => els.map(e => e.textContent)")
        assert any(t.endswith("rejected: too dark") for t in items), items
        assert any(t.endswith("rejected: no nail found") for t in items), items
    finally:
        ctx.close()


def test_small_nail_is_rejected(playwright_session, server, tmp_path):
    """At 96x72 px the tiny detector's box is under QUALITY.minNailSide (12 px)."""
    from PIL import Image

    img, _ = tiny.nail_photo(cells=((4, 4),))
    small = np.asarray(Image.fromarray(img).resize((96, 72), Image.NEAREST))
    b = launch(playwright_session, write_y4m(tmp_path / "small.y4m", [small] * 10))
    try:
        page = b.new_context(permissions=["camera"]).new_page()
        open_app(page, server)
        start_camera(page)
        cap = run_capture(page)
        assert {r["reason"] for r in cap["frames"]} == {"nail too small"}
        assert page.text_content("#result-hb") == "Try again"
        assert page.eval_on_selector_all("#reasons li", "els => els.map(e => e.textContent)") == [
            f"{FRAMES} frame(s) rejected: nail too small"
        ]
    finally:
        b.close()


def test_seed_loop_and_threads_options(app):
    """?seedloop=1 waits for each inference then sleeps 80 ms, on 1 thread (benchmark reference)."""
    page, _, url, guard = app
    info = open_app(page, url, "?bench=1&seedloop=1")
    assert info["session"]["numThreads"] == 1
    start_camera(page)
    cap = run_capture(page)
    assert cap["mode"] == "seedloop" and len(cap["frames"]) == FRAMES
    iv = np.diff(cap["ticks"])
    assert (iv >= INTERVAL_MS).all(), iv  # 80 ms + inference between grabs
    assert all(r["detected"] for r in cap["frames"])  # the seed ran both models on every frame
    page.goto(url + "?bench=1&threads=1")
    wait_js(page, "window.__hemoedgeBench && window.__hemoedgeBench.ready")
    assert page.evaluate("window.__hemoedgeBench.numThreads") == 1
    times = page.evaluate("window.__hemoedgeBench.runModel('estimator', 5, 1)")
    assert len(times) == 5 and all(t > 0 for t in times)
    assert_clean(guard)


def test_paced_capture_skips_what_would_be_late(app):
    """skipStale pacing (pacing.js) with a 1 ms result budget: the last frame cannot be
    analysed before the result is due, so it is skipped as late and the result is not held up
    by it; frames earlier in the capture, with time to spare, are analysed."""
    page, _, url, guard = app
    open_app(page, url, "?bench=1&skip_stale=1&result_ms=1&detect_every=1")
    start_camera(page)
    cap = run_capture(page)
    frames = sorted(cap["frames"], key=lambda r: r["k"])
    assert len(frames) == FRAMES and cap["skipStale"]
    late = [r["k"] for r in frames if r.get("skipped") and r["reason"].startswith("skipped: it could not")]
    assert FRAMES - 1 in late, [(r["k"], r["reason"]) for r in frames]
    assert sum(r["hb"] is not None for r in frames[:10]) >= 5  # early frames had time
    assert cap["resultT"] - cap["lastGrabT"] < 250
    assert_clean(guard)


def test_without_bench_flag_no_hook(app):
    page, _, url, _ = app
    page.goto(url)
    wait_js(page, "document.querySelector('#status').dataset.kind === 'ok'")
    assert page.evaluate("typeof window.__hemoedgeBench") == "undefined"


def test_update_waits_for_the_capture(app, dist, tiny_art, tmp_path):
    """A new build installs in the background; the user is told, and can apply it only after
    the capture; then the page reloads on the new build with only its cache left."""
    from hemoedge.web.build import BuildConfig, build
    from hemoedge.web.serve import serve_in_thread

    page, _, _, _ = app
    d = tmp_path / "dist"
    shutil.copytree(dist, d)
    v1 = json.loads((d / "build-manifest.json").read_text())["version"]
    with serve_in_thread(d) as (_, url):
        open_app(page, url)
        start_camera(page)
        build(BuildConfig(art=tiny_art, detector="fp32", estimator="fp32", out=d))  # version 2
        v2 = json.loads((d / "build-manifest.json").read_text())["version"]
        assert v1 != v2
        page.click("#capture-btn")
        page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.update())")
        wait_js(
            page, "document.querySelector('#update').textContent.includes('after this capture')"
        )
        assert page.is_disabled("#update-btn")
        assert page.evaluate("window.__hemoedgeBench.captures.length") == 0  # still capturing
        # the capture finishes: the update is offered, and applied when the user asks
        wait_js(page, "!document.querySelector('#update-btn').disabled")
        assert page.text_content("#update") == "A new version is ready."
        assert page.evaluate("window.__hemoedgeBench.captures.length") == 1
        page.click("#update-btn")
        wait_js(
            page,
            f"""(async () => {{ const k = await caches.keys();
                  return k.includes('hemoedge-{v2}') && !k.includes('hemoedge-{v1}'); }})()""",
        )
        wait_js(
            page,
            "window.__hemoedgeBench && window.__hemoedgeBench.ready && "
            "window.__hemoedgeBench.captures.length === 0",
        )  # reloaded: a fresh page
        assert page.evaluate("window.__hemoedgeBench.session.variant") == "det=fp32,est=fp32"
