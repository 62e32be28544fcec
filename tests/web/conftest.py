"""Fixtures for the web app tests: tiny models, a built DIST, the server and Chromium."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # webhelp, webtiny
import webtiny as tiny
from webhelp import CHROMIUM, PAGE_TIMEOUT_S, Guard, launch, ort_installed, tiny_video

from hemoedge.web.build import BuildConfig, build


@pytest.fixture(scope="session")
def tiny_art(tmp_path_factory) -> Path:
    return tiny.write_artifact(tmp_path_factory.mktemp("art") / "art")


@pytest.fixture(scope="session")
def dist(tiny_art, tmp_path_factory) -> Path:
    if not ort_installed():
        pytest.skip("webapp/node_modules missing: run `npm ci` in webapp/")
    out = tmp_path_factory.mktemp("dist") / "dist"
    build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=out))
    return out


@pytest.fixture(scope="session")
def camera_video(tmp_path_factory) -> Path:
    return tiny_video(tmp_path_factory.mktemp("video") / "tiny.y4m")


# ---------------------------------------------------------------------------- browser
# Module scope, not session: a running sync Playwright holds this thread's asyncio loop, and a
# second sync_playwright() in the same thread (the benchmark's Chromium in tests/bench, the
# report's browser test) then fails with "using Playwright Sync API inside the asyncio loop".
# Stopping it at the end of each module leaves the thread free for whatever runs next.
@pytest.fixture(scope="module")
def playwright_session():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium fonts-dejavu-core")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_session, camera_video):
    b = launch(playwright_session, camera_video)
    yield b
    b.close()


@pytest.fixture(scope="session")
def server(dist):
    from hemoedge.web.serve import serve_in_thread

    with serve_in_thread(dist) as (_srv, url):
        yield url


@pytest.fixture
def app(browser, server):
    """A fresh context (empty caches, no service worker) with the camera allowed."""
    ctx = browser.new_context(
        viewport={"width": 412, "height": 915}, device_scale_factor=1, permissions=["camera"]
    )
    ctx.set_default_timeout(PAGE_TIMEOUT_S * 1000)
    guard = Guard(server)
    ctx.on("request", guard.on_request)
    page = ctx.new_page()
    page.on("console", guard.on_console)
    page.on("pageerror", lambda e: guard.errors.append(f"pageerror: {e}"))
    yield page, ctx, server, guard
    ctx.close()
