"""The page side of the benchmark's Chromium: the OriginGuard that fails a run on any request
leaving the app's origin, a Page whose every blocking Playwright call runs under the browser's
watchdog (Chromium.step) and checks the guard, and the checks that Playwright can start here.
Launching, the watchdog and CPU slowdowns: hemoedge.bench.browser.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hemoedge.errors import BenchError

if TYPE_CHECKING:  # annotations only: browser.py imports this module
    from hemoedge.bench.browser import Chromium

LOCAL_SCHEMES = ("data:", "blob:", "about:")


@dataclass
class OriginGuard:
    """Records every request of a browser context; `check()` raises on one that left the origin."""

    origin: str  # e.g. "http://127.0.0.1:41234"
    requests: int = 0
    foreign: list[str] = field(default_factory=list)

    def on_request(self, req: Any) -> None:
        self.requests += 1
        url = req.url
        if not (url == self.origin or url.startswith(self.origin + "/")
                or url.startswith(LOCAL_SCHEMES)):
            self.foreign.append(url)

    def check(self) -> None:
        if self.foreign:
            raise BenchError(
                f"a request left the app's origin {self.origin}: {self.foreign[0]}"
                + (f" (and {len(self.foreign) - 1} more)" if len(self.foreign) > 1 else "")
                + "; the app must make no third-party request, so the benchmark fails")


class Page:
    """A Playwright page whose every blocking call has a time limit and checks the guard."""

    def __init__(self, chrome: Chromium, page: Any, guard: OriginGuard):
        self.chrome, self.raw, self.guard = chrome, page, guard
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("crash", lambda _p: self.errors.append("the page crashed"))

    def _step(self, what: str, timeout_s: float | None = None):
        return self.chrome.step(what, timeout_s)

    def goto(self, url: str, what: str = "") -> None:
        t = self.chrome.cfg.step_timeout_s
        with self._step(what or f"loading {url}", t + 5):
            self.raw.goto(url, timeout=t * 1000, wait_until="load")
        self.guard.check()

    def reload(self, what: str = "reload") -> None:
        t = self.chrome.cfg.step_timeout_s
        with self._step(what, t + 5):
            self.raw.reload(timeout=t * 1000, wait_until="load")
        self.guard.check()

    def evaluate(self, expr: str, what: str, timeout_s: float | None = None) -> Any:
        with self._step(what, timeout_s):
            v = self.raw.evaluate(expr)
        self.guard.check()
        return v

    def click(self, selector: str, what: str = "") -> None:
        t = self.chrome.cfg.step_timeout_s
        with self._step(what or f"clicking {selector}", t + 5):
            self.raw.click(selector, timeout=t * 1000)
        self.guard.check()

    def text(self, selector: str) -> str:
        t = self.chrome.cfg.step_timeout_s
        with self._step(f"reading {selector}", t + 5):
            v = self.raw.text_content(selector, timeout=t * 1000)
        return v or ""

    def wait(self, expr: str, what: str, timeout_s: float | None = None,
             poll_s: float = 0.05) -> Any:
        """Poll a JS expression until truthy. (wait_for_function needs eval; the CSP forbids it.)"""
        from playwright.sync_api import Error as PlaywrightError

        limit = timeout_s or self.chrome.cfg.step_timeout_s
        end = time.monotonic() + limit
        while True:
            try:
                with self.chrome.step(what, limit):
                    v = self.raw.evaluate(expr)
            except BenchError as e:
                # a navigation (reload, service-worker update) destroyed the context: poll again
                cause = e.__cause__
                if not (isinstance(cause, PlaywrightError)
                        and ("context was destroyed" in str(cause) or "navigat" in str(cause))):
                    raise
                v = None
            self.guard.check()
            if v:
                return v
            if self.errors and "crashed" in self.errors[-1]:
                raise BenchError(f"{what}: the page crashed")
            if time.monotonic() > end:
                raise BenchError(f"{what}: not done after {limit:.0f} s"
                                 + (f" (page errors: {self.errors[-3:]})" if self.errors else ""))
            time.sleep(poll_s)

    def close(self) -> None:
        with contextlib.suppress(Exception), self.chrome.step("closing a page", 30):
            self.raw.close()



def require_sync_playwright() -> None:
    """Playwright is installed and no sync Playwright (or asyncio loop) runs in this thread."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        raise BenchError("the Playwright Python package is missing; "
                         "`pip install -e .` installs it") from e
    if loop_running():
        raise BenchError("a Playwright sync API instance (or an asyncio loop) is already "
                         "running in this thread; stop it before starting the benchmark's "
                         "Chromium (one sync Playwright per thread)")


def loop_running() -> bool:
    """True when this thread already runs an asyncio loop (a sync Playwright left started does:
    its calls mark the loop as running), where sync_playwright() would refuse to start."""
    import asyncio

    try:
        return asyncio.get_running_loop().is_running()
    except RuntimeError:
        return False


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
