"""`hemoedge webapp serve DIST`: a threaded static server for a built PWA.

Loopback by default. Every response carries COOP same-origin + COEP require-corp (so the page
is crossOriginIsolated and onnxruntime-web may use threads), CORP same-origin, the app's CSP,
and nosniff. Content-hashed files are cached as immutable; index.html, sw.js and the build
manifest must be revalidated. `serve_in_thread` is the same server for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hemoedge.errors import HemoedgeError

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
    "connect-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(), geolocation=()",
}
MIME = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
    ".png": "image/png",
}
HASHED = re.compile(r"\.[0-9a-f]{10}\.[A-Za-z0-9]+$")  # name.<hash10>.ext, see build.HASH_LEN
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class Handler(SimpleHTTPRequestHandler):
    # the stdlib's own class attribute, replaced (never mutated)
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}  # noqa: RUF012
    protocol_version = "HTTP/1.1"  # keep-alive: the app loads ~20 files

    def end_headers(self) -> None:
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        path = self.path.split("?", 1)[0]
        self.send_header("Cache-Control", IMMUTABLE if HASHED.search(path) else REVALIDATE)
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _check_dist(dist: str | Path) -> Path:
    dist = Path(dist)
    if not (dist / "index.html").is_file() or not (dist / "sw.js").is_file():
        raise HemoedgeError(
            f"{dist}: not a built webapp (no index.html / sw.js); "
            "build one with `hemoedge webapp build --out DIST`"
        )
    return dist


def make_server(dist: str | Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    dist = _check_dist(dist)
    try:
        server = ThreadingHTTPServer((host, port), functools.partial(Handler, directory=str(dist)))
    except OSError as e:
        raise HemoedgeError(
            f"cannot listen on {host}:{port} ({e.strerror}); try another --port"
        ) from e
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


@contextlib.contextmanager
def serve_in_thread(
    dist: str | Path, host: str = "127.0.0.1", port: int = 0
) -> Iterator[tuple[ThreadingHTTPServer, str]]:
    """with serve_in_thread(dist) as (server, url): ...  — port 0 picks a free port."""
    server = make_server(dist, host, port)
    t = threading.Thread(target=server.serve_forever, name="hemoedge-webapp", daemon=True)
    t.start()
    try:
        yield server, url_of(server)
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=5)


def cli(args) -> int:
    server = make_server(args.dist, args.host, args.port)
    url = url_of(server)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s: reachable from other machines; the camera needs https "
            "there (browsers allow it on loopback only)",
            args.host,
        )
    print(f"serving {args.dist} at {url} (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
