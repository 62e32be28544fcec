"""Shipping the PWA: served under a sub-path, behind the emitted `_headers` rules, on a host
without headers (the isolating service worker), updated from build A to build B, installable."""

from __future__ import annotations

import json
import shutil

import pytest
from webhelp import (
    FRAMES,
    PAGE_TIMEOUT_S,
    Guard,
    assert_clean,
    needs_ort,
    open_app,
    parse_headers_file,
    run_capture,
    serving,
    start_camera,
    static_host,
    wait_js,
)

from hemoedge.web.build import BuildConfig, build
from hemoedge.web.serve import serve_in_thread

pytestmark = [pytest.mark.browser, needs_ort]

BASE = "/team/hemo/"
READY = "window.__hemoedgeBench && (window.__hemoedgeBench.ready || window.__hemoedgeBench.error)"


@pytest.fixture(scope="module")
def site(tiny_art, tmp_path_factory):
    """A site root whose app lives at /team/hemo/, built for that base."""
    root = tmp_path_factory.mktemp("site")
    build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=root / "team" / "hemo",
                      base=BASE))
    return root


@pytest.fixture(scope="module", params=["webapp-serve", "headers-file"])
def subpath_url(request, site):
    """The app at /team/hemo/ behind `webapp serve --base` or behind a plain static host that
    applies only the build's `_headers` rules."""
    dist = site / "team" / "hemo"
    if request.param == "webapp-serve":
        with serve_in_thread(dist, base=BASE) as (_, url):
            yield url
    else:
        rules = parse_headers_file((dist / "_headers").read_text())
        with serving(static_host(site, rules)) as origin:
            yield origin + BASE


def _context(browser, url, **kw):
    ctx = browser.new_context(permissions=["camera"], **kw)
    ctx.set_default_timeout(PAGE_TIMEOUT_S * 1000)
    guard = Guard(url)  # every request must stay under the sub-path, not only the origin
    ctx.on("request", guard.on_request)
    page = ctx.new_page()
    page.on("pageerror", lambda e: guard.errors.append(f"pageerror: {e}"))
    return ctx, page, guard


def test_subpath_capture_offline_and_deep_link(browser, subpath_url):
    _check_app_at(browser, subpath_url)


def _check_app_at(browser, subpath_url):
    ctx, page, guard = _context(browser, subpath_url)
    try:
        info = open_app(page, subpath_url)
        assert info["coi"] is True and info["session"]["numThreads"] == 2
        scope = page.evaluate("navigator.serviceWorker.getRegistration().then(r => r.scope)")
        assert scope == subpath_url
        start_camera(page)
        cap = run_capture(page)
        assert len(cap["frames"]) == FRAMES and cap["summary"]["ok"]
        # offline: the app reloads, and a deep link under its scope opens the app
        wait_js(page, "window.__hemoedgeBench.offlineReady")
        ctx.set_offline(True)
        for path in ("?bench=1", "some/deep/path?bench=1"):
            page.goto(subpath_url + path)
            wait_js(page, READY)
            assert page.evaluate("window.__hemoedgeBench.error") is None
            assert page.evaluate("self.crossOriginIsolated") is True
        assert page.url == subpath_url + "?bench=1"  # sent to the app's root
        ctx.set_offline(False)
        assert_clean(guard)
    finally:
        ctx.close()


def _nginx() -> str | None:
    import os

    exe = os.environ.get("HEMOEDGE_NGINX") or shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    return exe if exe and os.access(exe, os.X_OK) else None


@pytest.mark.skipif(_nginx() is None, reason="nginx not installed (or set $HEMOEDGE_NGINX)")
def test_behind_nginx_with_the_emitted_block(browser, site, tmp_path):
    """The emitted nginx.conf, included as is (only `root` set), in a real nginx."""
    import socket
    import subprocess
    import time
    import urllib.error
    import urllib.request

    dist = site / "team" / "hemo"
    block = (dist / "nginx.conf").read_text().replace("root /srv/www;", f"root {site};")
    (tmp_path / "hemo.conf").write_text(block)
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    temp = "".join(f"{k}_temp_path {tmp_path}/{k};\n" for k in (
        "client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp_path / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\naccess_log off;\n{temp}"
        f"server {{\nlisten 127.0.0.1:{port};\ninclude {tmp_path}/hemo.conf;\n}}\n}}\n")
    proc = subprocess.Popen([_nginx(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                             "-e", str(tmp_path / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}{BASE}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "error.log").read_text()
                time.sleep(0.05)
        bm = json.loads((dist / "build-manifest.json").read_text())
        wasm = bm["files"]["ort-wasm-simd-threaded.wasm"]["file"]
        req = urllib.request.Request(url + wasm, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Type"] == "application/wasm"
            assert r.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in r.headers["Vary"]
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        with urllib.request.urlopen(url + "sw.js", timeout=10) as r:
            assert r.headers["Cache-Control"] == "no-cache"
        for gone in ("_headers", "gone.0123456789.onnx"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(url + gone, timeout=10)
            assert e.value.code == 404 and "immutable" not in (e.value.headers["Cache-Control"] or "")
        _check_app_at(browser, url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_headers_file_rules(site):
    """The emitted `_headers` gives every file isolation, a CSP, its cache rule and the MIME
    types static hosts may not know."""
    from webhelp import headers_for

    dist = site / "team" / "hemo"
    rules = parse_headers_file((dist / "_headers").read_text())
    bm = json.loads((dist / "build-manifest.json").read_text())
    for name in ["", "index.html", "sw.js", *bm["precache"]]:
        h = headers_for(rules, BASE + name)
        assert h["Cross-Origin-Opener-Policy"] == "same-origin", name
        assert h["Cross-Origin-Embedder-Policy"] == "require-corp", name
        assert "connect-src 'self'" in h["Content-Security-Policy"]
        want = "no-cache" if name in ("", "index.html", "lab.html", "sw.js") else (
            "public, max-age=31536000, immutable")
        assert h["Cache-Control"] == want, (name, h["Cache-Control"])  # one rule per file
        if name.endswith(".wasm"):
            assert h["Content-Type"] == "application/wasm"
        if name.endswith(".mjs"):
            assert h["Content-Type"].startswith("text/javascript")
        if name.endswith(".webmanifest"):
            assert h["Content-Type"] == "application/manifest+json"
    conf = (dist / "nginx.conf").read_text()
    assert f"location ^~ {BASE} {{" in conf and "application/wasm wasm;" in conf
    assert conf.count("Cross-Origin-Embedder-Policy") == 2  # nested location repeats them
    assert "gzip_static on;" in conf and 'Cache-Control "public, max-age=31536000, immutable"' in conf


@pytest.mark.parametrize("base", ["/", BASE])
def test_isolating_service_worker_on_a_host_without_headers(browser, tiny_art, tmp_path, base):
    """--coi-serviceworker: the first load is not isolated; the app reloads once and then runs
    cross-origin isolated on 2 threads, served by a host that sends no headers at all — at the
    site root and under a sub-path (the service worker's scope is the app's folder)."""
    root = tmp_path / "site"
    out = root / base.strip("/") if base != "/" else root
    build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=out,
                      coi_serviceworker=True, base=base))
    assert not (out / "_headers").exists()
    with serving(static_host(root)) as origin:
        ctx, page, guard = _context(browser, origin + base)
        try:
            info = open_app(page, origin + base)
            assert info["coi"] is True and info["session"]["numThreads"] == 2
            assert page.evaluate("sessionStorage.getItem('hemoedge-isolation-reload')") == "1"
            assert_clean(guard)
        finally:
            ctx.close()


def test_update_from_build_a_to_build_b(browser, dist, tiny_art, tmp_path):
    """Build A is deployed, then build B replaces it at the same origin (the folder's files are
    swapped, as a deploy does): the next visit says a new version is ready; after Reload the
    app runs B, with only B's cache and only B's files."""
    site = tmp_path / "site"
    shutil.copytree(dist, site)  # build A
    b = tmp_path / "b"
    build(BuildConfig(art=tiny_art, detector="fp32", estimator="fp32", out=b))
    va = json.loads((site / "build-manifest.json").read_text())["version"]
    bm = json.loads((b / "build-manifest.json").read_text())
    vb = bm["version"]
    with serve_in_thread(site) as (_, url):
        ctx, page, guard = _context(browser, url)
        try:
            open_app(page, url)
            wait_js(page, "navigator.serviceWorker.controller !== null")
            page.close()
            shutil.rmtree(site)  # deploy B
            shutil.copytree(b, site)
            page = ctx.new_page()
            open_app(page, url)  # the next visit: A, from A's cache, learns of B
            assert page.evaluate("window.__hemoedgeBench.session.variant") == "det=int8,est=fp32"
            wait_js(page, "document.querySelector('#update').textContent === "
                          "'A new version is ready.'")
            page.click("#update-btn")
            wait_js(page, f"""(async () => {{ const k = await caches.keys();
                return k.length === 1 && k[0] === 'hemoedge-{vb}'; }})()""")
            wait_js(page, READY + " && window.__hemoedgeBench.session.variant === "
                          "'det=fp32,est=fp32'")
            assert page.evaluate("window.__hemoedgeBench.error") is None
            names = page.evaluate(
                "performance.getEntriesByType('resource').map(e => new URL(e.name).pathname)")
            b_files = {"/" + f for f in bm["precache"]} | {"/sw.js", "/"}
            assert names and set(names) <= b_files, set(names) - b_files  # no file of A
            keys = page.evaluate(f"""caches.open('hemoedge-{vb}').then(c => c.keys())
                .then(ks => ks.map(r => new URL(r.url).pathname))""")
            assert sorted(keys) == sorted("/" + f for f in bm["precache"])
            assert f"hemoedge-{va}" not in page.evaluate("caches.keys()")
            assert_clean(guard)
        finally:
            ctx.close()


def test_installable(playwright_session, server, tmp_path):
    """Chromium's own installability check (CDP Page.getInstallabilityErrors) finds nothing:
    manifest, icons, a service worker with a fetch handler. A persistent profile, because
    Chromium never offers installation in an incognito context."""
    from webhelp import CHROMIUM, CHROMIUM_ARGS

    ctx = playwright_session.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        page = ctx.new_page()
        open_app(page, server)
        wait_js(page, "navigator.serviceWorker.controller !== null")
        cdp = ctx.new_cdp_session(page)
        errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
        assert errors == [], errors
        manifest = cdp.send("Page.getAppManifest")
        assert not manifest.get("errors"), manifest.get("errors")
    finally:
        ctx.close()
