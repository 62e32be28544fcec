"""Helpers shared by the web app tests (Chromium launch, waits, fake-camera video, guards).

Kept out of conftest.py so that tests can import them by a name no other test folder uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import webtiny as tiny

from hemoedge.bench import browser as _browser

# one definition of the Chromium flags for the tests and the benchmark
CHROMIUM = str(_browser.CHROMIUM)
CHROMIUM_ARGS = list(_browser.CHROMIUM_ARGS)
FAKE_CAMERA_ARGS = list(_browser.FAKE_CAMERA_ARGS)


PAGE_TIMEOUT_S = 45  # any single wait in a browser test
FRAMES, INTERVAL_MS = 30, 80.0  # the capture: webapp/src/capture.js CAPTURE


REPO = Path(__file__).resolve().parents[2]


def ort_installed() -> bool:
    return (REPO / "webapp/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs").is_file()


needs_ort = pytest.mark.skipif(
    not ort_installed(), reason="webapp/node_modules missing: run `npm ci` in webapp/"
)


# ---------------------------------------------------------------------------- fake camera video
def write_y4m(path: Path, frames, fps: int = 25) -> Path:
    """RGB uint8 frames -> Y4M 4:2:0 (C420jpeg; hemoedge.data.video.rgb_to_yuv420)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        from hemoedge.data.video import rgb_to_yuv420

        for rgb in frames:
            f.write(b"FRAME\n")
            f.write(rgb_to_yuv420(rgb))
    return path


def tiny_video(path: Path, frames: int = 75) -> Path:
    """What the tiny detector sees as one steady nail, with the frame index painted in."""
    from hemoedge.data.video import draw_index  # the code strip the app decodes

    out = []
    for k in range(frames):
        img, _ = tiny.nail_photo(cells=((4, 4),))
        draw_index(img, k)
        out.append(img)
    return write_y4m(path, out)


def launch(p, video: Path | None = None):
    args = CHROMIUM_ARGS + FAKE_CAMERA_ARGS
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={video}")
    return p.chromium.launch(executable_path=CHROMIUM, args=args, timeout=PAGE_TIMEOUT_S * 1000)


class Guard:
    """Records every request and console error of a context; the app must stay on its origin."""

    def __init__(self, origin: str):
        self.origin = origin.rstrip("/")
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.requests = 0

    def on_request(self, req) -> None:
        self.requests += 1
        url = req.url
        if not (url.startswith(self.origin + "/") or url.startswith(("data:", "blob:"))):
            self.foreign.append(url)

    def on_console(self, msg) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)


def wait_js(page, expr: str, timeout_s: float = PAGE_TIMEOUT_S):
    """Poll a JS expression until truthy. (wait_for_function needs eval, which the CSP forbids.)"""
    from playwright.sync_api import Error as PlaywrightError

    end = time.monotonic() + timeout_s
    while True:
        try:
            v = page.evaluate(expr)
        except PlaywrightError as e:  # the page navigated (reload, update) under the evaluate
            if "context was destroyed" not in str(e) and "navigat" not in str(e):
                raise
            v = None
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {expr}")
        time.sleep(0.1)


def open_app(page, url: str, query: str = "?bench=1") -> dict:
    page.goto(url + query)
    wait_js(
        page,
        "window.__hemoedgeBench && (window.__hemoedgeBench.ready || window.__hemoedgeBench.error)",
    )
    err = page.evaluate("window.__hemoedgeBench.error")
    assert err is None, err
    return page.evaluate(
        "({session: window.__hemoedgeBench.session, coi: self.crossOriginIsolated})"
    )


def node() -> str | None:
    return shutil.which("node") or (os.path.exists("/usr/bin/node") and "/usr/bin/node") or None


WEBAPP_SRC = Path(__file__).resolve().parents[2] / "webapp" / "src"


def run_js(modules: dict[str, str], body: str, prelude: str = ""):
    """Run `body` in node with each webapp/src module imported under its name
    ({"p": "pacing.js"} -> `p`), after `prelude`; `body` returns a JSON-able value, which is
    returned. Skips the test when node is not installed."""
    exe = node() or pytest.skip("node not installed")
    names = list(modules)
    imports = ", ".join(f"import('{(WEBAPP_SRC / modules[n]).as_uri()}')" for n in names)
    js = (f"Promise.all([{imports}]).then(([{', '.join(names)}]) => {{ {prelude} "
          f"const out = (() => {{ {body} }})(); console.log(JSON.stringify(out)); }})")
    r = subprocess.run([exe, "-e", js], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(r.stdout)


def read_y4m(path: Path, limit: int | None = None) -> list[np.ndarray]:
    """Y4M 4:2:0 -> RGB uint8 frames (limited-range BT.601, the inverse of write_video and
    what Chromium's fake camera does)."""
    data = Path(path).read_bytes()
    header, _, rest = data.partition(b"\n")
    tags = {t[:1]: t[1:] for t in header.split()[1:]}
    w, h = int(tags[b"W"]), int(tags[b"H"])
    n_y, n_c = w * h, (w // 2) * (h // 2)
    frames, pos = [], 0
    while pos < len(rest) and (limit is None or len(frames) < limit):
        pos = rest.index(b"\n", pos) + 1  # "FRAME[ params]\n"
        buf = np.frombuffer(rest, np.uint8, n_y + 2 * n_c, pos).astype(np.float32)
        pos += n_y + 2 * n_c
        y = (buf[:n_y].reshape(h, w) - 16) * (255 / 219)
        up = lambda p: (p.reshape(h // 2, w // 2).repeat(2, 0).repeat(2, 1) - 128) * (255 / 224)  # noqa: E731
        cb, cr = up(buf[n_y : n_y + n_c]), up(buf[n_y + n_c :])
        rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
        frames.append(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    return frames


def start_camera(page) -> None:
    # let the service worker finish precaching first: it competes for the 2 cores
    wait_js(page, "navigator.serviceWorker.controller !== null")
    page.click("#camera-btn")
    wait_js(page, "!document.querySelector('#capture-btn').disabled")


def run_capture(page) -> dict:
    n = page.evaluate("window.__hemoedgeBench.captures.length")
    page.click("#capture-btn")
    wait_js(page, f"window.__hemoedgeBench.captures.length > {n}")
    return page.evaluate("window.__hemoedgeBench.lastCapture")


def assert_clean(guard) -> None:
    assert guard.requests > 0
    assert not guard.foreign, f"requests left the origin: {guard.foreign}"
    assert not [e for e in guard.errors if "Content Security Policy" in e or "pageerror" in e], (
        guard.errors
    )


# ---------------------------------------------------------------------------- a static host
def parse_headers_file(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Netlify / Cloudflare Pages `_headers`: [(path pattern, [(name, value), ...]), ...]."""
    rules: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            rules.append((line.strip(), []))
        else:
            name, _, value = line.strip().partition(":")
            rules[-1][1].append((name.strip(), value.strip()))
    return rules


def headers_for(rules, path: str) -> dict[str, str]:
    """Headers of every rule whose pattern (`*` = any characters) matches the URL path; a
    header set by two rules is joined with ', ' as Cloudflare Pages does."""
    import re

    out: dict[str, str] = {}
    for pattern, headers in rules:
        if re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), path):
            for k, v in headers:
                out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def static_host(root: Path, rules=None):
    """A plain static file server for `root` (a host that knows only common MIME types and
    sends no headers of its own), applying `_headers` rules when given. Returns the server
    (serve it in a thread)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Host(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # .wasm, .mjs, .webmanifest unknown: the _headers rules must say what they are
        extensions_map = {  # noqa: RUF012
            "": "application/octet-stream", ".html": "text/html", ".js": "text/javascript",
            ".css": "text/css", ".json": "application/json", ".png": "image/png",
        }

        def _extra(self) -> dict[str, str]:
            return headers_for(rules or [], self.path.split("?", 1)[0])

        def send_header(self, key, value):
            if key.lower() == "content-type" and any(
                    k.lower() == "content-type" for k in self._extra()):
                return
            super().send_header(key, value)

        def end_headers(self):
            for k, v in self._extra().items():
                super().send_header(k, v)
            super().end_headers()

        def log_message(self, *a):
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Host, directory=str(root)))


@contextlib.contextmanager
def serving(server):
    import threading

    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=5)
