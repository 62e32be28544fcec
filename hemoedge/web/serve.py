"""`hemoedge webapp serve DIST`: a threaded static server for a built PWA.

Loopback by default. Every response carries COOP same-origin + COEP require-corp (so the page
is crossOriginIsolated and onnxruntime-web may use threads), CORP same-origin, the app's CSP,
and nosniff. Content-hashed files are cached as immutable; index.html, sw.js and the build
manifest must be revalidated. A file with a precompressed sibling written by the build
(`<file>.br`, `<file>.gz`) is sent as that sibling when the request accepts the encoding, with
`Content-Encoding` and `Vary: Accept-Encoding`. `base` serves the app under a URL path
(`/team/hemo/`) instead of `/`, as a static host would. `serve_in_thread` is the same server
for tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from hemoedge.errors import HemoedgeError

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; "
    "connect-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'self'"  # self: lab.html frames the app
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


ENCODINGS = (("br", ".br"), ("gzip", ".gz"))  # preferred first


def _accepts(header: str | None) -> set[str]:
    """Encodings an Accept-Encoding header allows (q=0 excluded)."""
    out = set()
    for part in (header or "").split(","):
        name, _, params = part.strip().partition(";")
        q = params.strip()
        if q.startswith("q="):
            try:
                if float(q[2:]) <= 0:
                    continue
            except ValueError:
                continue
        if name.strip():
            out.add(name.strip().lower())
    return out


class Handler(SimpleHTTPRequestHandler):
    # the stdlib's own class attribute, replaced (never mutated)
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME}  # noqa: RUF012
    protocol_version = "HTTP/1.1"  # keep-alive: the app loads ~20 files
    base = "/"  # URL path the app is served under; set by make_server

    def end_headers(self) -> None:
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        path = self.path.split("?", 1)[0]
        if getattr(self, "_status", 200) >= 400:  # a 404 must never be cached as immutable
            self.send_header("Cache-Control", "no-store")
        else:
            self.send_header("Cache-Control", IMMUTABLE if HASHED.search(path) else REVALIDATE)
        if getattr(self, "_vary", False):
            self.send_header("Vary", "Accept-Encoding")
        super().end_headers()

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def translate_path(self, path: str) -> str:
        url = urllib.parse.unquote(path.split("?", 1)[0].split("#", 1)[0])
        if not url.startswith(self.base):
            return os.path.join(self.directory, ".hemoedge-outside-base", "missing")  # 404
        return super().translate_path("/" + url[len(self.base):])

    def send_head(self):
        self._vary = False
        url = self.path.split("?", 1)[0]
        if self.base != "/" and url == self.base.rstrip("/"):
            self.send_response(301)
            self.send_header("Location", self.base)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        path = self.translate_path(self.path)
        if os.path.isdir(path) and url.endswith("/"):  # the folder's index.html, compressed too
            path = os.path.join(path, "index.html")
        if not os.path.isfile(path):
            return super().send_head()  # folders without a slash (redirect) and 404s
        siblings = [(enc, path + ext) for enc, ext in ENCODINGS if os.path.isfile(path + ext)]
        if not siblings:
            return super().send_head()
        self._vary = True
        accepted = _accepts(self.headers.get("Accept-Encoding"))
        chosen = next(((enc, p) for enc, p in siblings if enc in accepted), None)
        if chosen is None:
            return super().send_head()
        enc, zpath = chosen
        try:
            f = open(zpath, "rb")  # noqa: SIM115 - returned to the caller, which closes it
        except OSError:
            return super().send_head()
        st = os.fstat(f.fileno())
        mtime = os.stat(path).st_mtime
        ims = self.headers.get("If-Modified-Since")
        if ims and "If-None-Match" not in self.headers:
            with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
                since = email.utils.parsedate_to_datetime(ims)
                if since.tzinfo is not None and int(mtime) <= since.timestamp():
                    f.close()
                    self.send_response(304)
                    self.end_headers()
                    return None
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Encoding", enc)
        self.send_header("Content-Length", str(st.st_size))
        self.send_header("Last-Modified", self.date_time_string(mtime))
        self.end_headers()
        return f

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def check_base(base: str) -> str:
    """'/team/hemo/' (a URL path with a leading and trailing slash), or HemoedgeError."""
    base = base or "/"
    parts = base.strip("/").split("/") if base != "/" else []
    if (not base.startswith("/") or not base.endswith("/")
            or any(p in ("", ".", "..") or not re.fullmatch(r"[\w.~-]+", p) for p in parts)):
        raise HemoedgeError(f"bad --base {base!r}: expected a URL path like /team/hemo/ "
                            "(leading and trailing slash; letters, digits, . _ ~ -)")
    return base


def _check_dist(dist: str | Path) -> Path:
    dist = Path(dist)
    if not (dist / "index.html").is_file() or not (dist / "sw.js").is_file():
        raise HemoedgeError(
            f"{dist}: not a built webapp (no index.html / sw.js); "
            "build one with `hemoedge webapp build --out DIST`"
        )
    return dist


def make_server(dist: str | Path, host: str = "127.0.0.1", port: int = 0,
                base: str = "/", handler: type[Handler] = Handler) -> ThreadingHTTPServer:
    dist = _check_dist(dist)
    base = check_base(base)
    cls = type("BasedHandler", (handler,), {"base": base}) if base != handler.base else handler
    try:
        server = ThreadingHTTPServer((host, port), functools.partial(cls, directory=str(dist)))
    except OSError as e:
        raise HemoedgeError(
            f"cannot listen on {host}:{port} ({e.strerror}); try another --port"
        ) from e
    server.daemon_threads = True
    server.hemoedge_base = base
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}{getattr(server, 'hemoedge_base', '/')}"


@contextlib.contextmanager
def serve_in_thread(
    dist: str | Path, host: str = "127.0.0.1", port: int = 0, base: str = "/",
    handler: type[Handler] = Handler,
) -> Iterator[tuple[ThreadingHTTPServer, str]]:
    """with serve_in_thread(dist) as (server, url): ...  — port 0 picks a free port; url ends
    with `base`."""
    server = make_server(dist, host, port, base, handler)
    t = threading.Thread(target=server.serve_forever, name="hemoedge-webapp", daemon=True)
    t.start()
    try:
        yield server, url_of(server)
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=5)


def cli(args) -> int:
    handler: type[Handler] = Handler
    collect = getattr(args, "collect", None)
    if getattr(args, "quick", False) and not collect:
        raise HemoedgeError("--quick sets what the bench page runs: it needs --collect RESULTS")
    if collect:  # checked before listening: a bad DIST or results file writes nothing
        from hemoedge.report.results import command_line, invocation
        from hemoedge.web.collect import Collector, handler_for

        fallback = command_line(["webapp", "serve", str(args.dist), "--collect", str(collect)])
        handler = handler_for(Collector(args.dist, collect, quick=bool(args.quick),
                                        command=invocation(args, fallback)))
    server = make_server(args.dist, args.host, args.port, getattr(args, "base", None) or "/",
                         handler)
    url = url_of(server)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s: reachable from other machines; the camera needs https "
            "there (browsers allow it on loopback only)",
            args.host,
        )
    print(f"serving {args.dist} at {url} (Ctrl-C to stop)", flush=True)
    if collect:
        print(f"bench page: {url}lab.html?name=DEVICE; its figures are appended to {collect}",
              flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
