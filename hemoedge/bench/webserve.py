"""The app server of `hemoedge bench web` and what crossed the network: a server that counts the
bytes it writes (`serve_counting`), a browser context's request log (`WireLog`) and the first
visit's files as the server saw them (`_first_visit`)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hemoedge.web.testvideo import TestVideo


# ---------------------------------------------------------------------------- serving
class _Counter:
    """Bytes the server wrote (headers + bodies), per request path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.bytes = 0
            self.requests: list[str] = []

    def add(self, n: int) -> None:
        with self.lock:
            self.bytes += n

    def request(self, path: str) -> None:
        with self.lock:
            self.requests.append(path)

    def snapshot(self) -> tuple[int, list[str]]:
        with self.lock:
            return self.bytes, list(self.requests)


class _CountingWriter:
    def __init__(self, raw: Any, counter: _Counter):
        self._raw, self._counter = raw, counter

    def write(self, b: bytes) -> int:
        n = self._raw.write(b)
        self._counter.add(len(b) if n is None else n)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


FEED_ROUTE = "__bench/frame/"  # <base>__bench/frame/<i>.jpg: the test video fed to a device


def feed_url() -> str:
    """The frames' URL template as the app page resolves it (testcamera.js: {i})."""
    return f"./{FEED_ROUTE}{{i}}.jpg"


@contextlib.contextmanager
def serve_counting(dist: Path, host: str = "127.0.0.1", port: int = 0,
                   app_url: str | None = None, video: TestVideo | None = None):
    """serve_in_thread with a byte counter: yields (url, counter). The URL is `app_url` when
    given (e.g. the address a device reaches through adb reverse or a TLS proxy), else the
    server's own (a wildcard bind address is opened as 127.0.0.1). With `video`, its frames are
    served at <base>__bench/frame/<i>.jpg (feed_url) for the bench hook's feedCamera."""
    from hemoedge.web.serve import Handler, serve_in_thread

    counter = _Counter()

    class Counting(Handler):
        def setup(self) -> None:
            super().setup()
            self.wfile = _CountingWriter(self.wfile, counter)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if video is not None and path.startswith(self.base + FEED_ROUTE):
                video.send(self, path[len(self.base + FEED_ROUTE):])
                return
            super().do_GET()

        def send_head(self):
            counter.request(self.path.split("?", 1)[0])
            return super().send_head()

    with serve_in_thread(dist, host=host, port=port) as (server, url):
        server.RequestHandlerClass = functools.partial(Counting, directory=str(dist))
        if app_url:
            url = app_url if app_url.endswith("/") else app_url + "/"
        else:
            for wild in ("0.0.0.0", "::"):
                url = url.replace(f"//{wild}:", "//127.0.0.1:")
        yield url, counter


# ---------------------------------------------------------------------------- the wire
class WireLog:
    """Every request of a browser context while armed (page, its workers, the service worker);
    `summary()` keeps those that crossed the network: not answered by the service worker, not
    from the HTTP cache (Playwright's sizes come from CDP Network.loadingFinished's
    encodedDataLength: response headers + the body as sent, compressed)."""

    def __init__(self) -> None:
        self.armed = False
        self.requests: list[Any] = []

    def on_finished(self, req: Any) -> None:
        if self.armed:
            self.requests.append(req)

    def arm(self) -> None:
        self.requests, self.armed = [], True

    def summary(self) -> dict[str, Any]:
        self.armed = False
        rows = []
        for req in self.requests:
            resp = req.response()
            if resp is None or resp.from_service_worker:
                continue
            sz = req.sizes()
            n = int(sz["responseBodySize"]) + int(sz["responseHeadersSize"])
            if n <= 0:  # answered by the HTTP cache: nothing crossed the network
                continue
            url = req.url.split("#", 1)[0].split("?", 1)[0]
            rows.append((url, n, resp.status, resp.headers.get("content-encoding") or ""))
        urls = [u for u, *_ in rows]
        dup = sorted({u for u in urls if urls.count(u) > 1})
        return {"bytes": sum(n for _, n, *_ in rows), "requests": len(rows),
                "duplicate_urls": dup,
                "encodings": sorted({e for *_, e in rows if e}),
                "largest": sorted(((n, u.rsplit("/", 1)[-1]) for u, n, *_ in rows),
                                  reverse=True)[:4]}


def _first_visit(dist: Path, paths: list[str]) -> dict[str, Any]:
    """Requests of the first visit: unique files, their bytes and gzip-compressed bytes."""
    body, gz, unique = 0, 0, 0
    seen: set[str] = set()
    sizes: dict[str, tuple[int, int]] = {}
    for p in paths:
        rel = p.lstrip("/") or "index.html"
        f = dist / rel
        if not f.is_file():
            continue
        if rel not in sizes:
            data = f.read_bytes()
            sizes[rel] = (len(data), len(gzip.compress(data, compresslevel=6, mtime=0)))
        b, g = sizes[rel]
        body += b
        gz += g
        if rel not in seen:
            seen.add(rel)
            unique += b
    dup = sorted({p for p in paths if paths.count(p) > 1})
    return {"requests": len(paths), "body_bytes": body, "gzip_bytes": gz,
            "unique_bytes": unique, "files": len(seen), "fetched_twice": dup}
