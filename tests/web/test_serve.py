"""hemoedge.web.serve: isolation headers, MIME types, cache policy, bad input."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from webhelp import needs_ort

from hemoedge.errors import HemoedgeError
from hemoedge.web.serve import make_server, serve_in_thread


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers, r.read()  # HTTPMessage: case-insensitive
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@needs_ort
def test_headers_mime_and_cache(dist):
    bm = json.loads((dist / "build-manifest.json").read_text())
    f = {k: v["file"] for k, v in bm["files"].items()}
    with serve_in_thread(dist) as (_server, url):
        assert url.startswith("http://127.0.0.1:")
        expect = {
            "index.html": ("text/html", "no-cache"),
            "sw.js": ("text/javascript", "no-cache"),
            f["src/app.js"]: ("text/javascript", "immutable"),
            f["src/ort.wasm.min.mjs"]: ("text/javascript", "immutable"),
            f["ort-wasm-simd-threaded.mjs"]: ("text/javascript", "immutable"),
            f["ort-wasm-simd-threaded.wasm"]: ("application/wasm", "immutable"),
            f["manifest.webmanifest"]: ("application/manifest+json", "immutable"),
            f["models/detector.int8.onnx"]: ("application/octet-stream", "immutable"),
            f["icons/icon-192.png"]: ("image/png", "immutable"),
        }
        for name, (mime, cache) in expect.items():
            status, h, body = get(url + name)
            assert status == 200, name
            assert h["Content-Type"].startswith(mime), (name, h["Content-Type"])
            assert cache in h["Cache-Control"], (name, h["Cache-Control"])
            assert h["Cross-Origin-Opener-Policy"] == "same-origin"
            assert h["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert h["Cross-Origin-Resource-Policy"] == "same-origin"
            assert "connect-src 'self'" in h["Content-Security-Policy"]
            assert h["X-Content-Type-Options"] == "nosniff"
            assert len(body) == int(h["Content-Length"])
        status, h, _ = get(url + "nope.js")
        assert status == 404 and h["Cross-Origin-Embedder-Policy"] == "require-corp"
        status, _, body = get(url)
        assert status == 200 and b"hemoedge" in body


def test_not_a_dist(tmp_path):
    with pytest.raises(HemoedgeError, match="not a built webapp"):
        make_server(tmp_path)


@needs_ort
def test_port_in_use(dist):
    with serve_in_thread(dist) as (server, _url):
        port = server.server_address[1]
        with pytest.raises(HemoedgeError, match=f"cannot listen on 127.0.0.1:{port}"):
            make_server(dist, port=port)


def get_with(url: str, encoding: str | None):
    req = urllib.request.Request(url, headers={"Accept-Encoding": encoding} if encoding else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@needs_ort
def test_precompressed_siblings_and_vary(dist):
    import gzip

    import brotli

    bm = json.loads((dist / "build-manifest.json").read_text())
    wasm = bm["files"]["ort-wasm-simd-threaded.wasm"]["file"]
    raw = (dist / wasm).read_bytes()
    with serve_in_thread(dist) as (_server, url):
        for accept, enc, decode in (
            ("gzip, deflate, br", "br", brotli.decompress),
            ("gzip", "gzip", gzip.decompress),
            ("br;q=0, gzip", "gzip", gzip.decompress),
            (None, None, None),
        ):
            status, h, body = get_with(url + wasm, accept)
            assert status == 200 and h["Content-Type"] == "application/wasm"
            assert h["Vary"] == "Accept-Encoding" and "immutable" in h["Cache-Control"]
            assert h.get("Content-Encoding") == enc, accept
            assert int(h["Content-Length"]) == len(body)
            assert (decode(body) if decode else body) == raw
            if enc:
                assert len(body) < len(raw) / 3  # the 14 MB WASM: 2.3 MB as brotli
        for page in ("index.html", ""):  # the navigation to the folder too
            status, h, body = get_with(url + page, "br")
            assert h["Content-Encoding"] == "br" and h["Content-Type"].startswith("text/html")
            assert brotli.decompress(body) == (dist / "index.html").read_bytes()
        # a missing hashed name is never cached as immutable (a retry must reach the server)
        status, h, _ = get_with(url + "gone.0123456789.onnx", "br")
        assert status == 404 and h["Cache-Control"] == "no-store"


@needs_ort
def test_base_path(dist):
    with serve_in_thread(dist, base="/team/hemo/") as (_server, url):
        assert url.endswith("/team/hemo/")
        status, _, body = get(url)
        assert status == 200 and b"hemoedge" in body
        assert get(url + "sw.js")[0] == 200
        assert get(url.replace("/team/hemo/", "/sw.js"))[0] == 404  # nothing outside the base
        assert get(url.replace("/team/hemo/", "/team/"))[0] == 404
        status, _, _ = get_with(url.rstrip("/"), None)  # /team/hemo -> /team/hemo/
        assert status == 200  # urllib followed the 301
    with pytest.raises(HemoedgeError, match="bad --base"):
        make_server(dist, base="team/hemo")
