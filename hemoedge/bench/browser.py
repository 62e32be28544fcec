"""Debian's Chromium under Playwright (Python) for the browser benchmark, with hard time limits.

    with Chromium(BrowserConfig(video=...)) as chrome:
        ctx = chrome.new_context(origin=url)          # an OriginGuard watches every request
        page = chrome.page(ctx)
        page.goto(url + "?bench=1")
        page.wait("window.__hemoedgeBench && window.__hemoedgeBench.ready", "models ready")
        page.evaluate("window.__hemoedgeBench.runModel('detector', 50, 10)", "detector runs")

Playwright's sync `page.evaluate` has no timeout of its own: a page stuck in a loop, or a
promise that never settles (a dead worker), would block forever. Every blocking call here
therefore runs under a watchdog: when the step's time limit passes, the watchdog SIGKILLs the
Chromium processes this object launched (by pid, recorded at launch), the blocked call fails
at once, and the step raises BenchError naming what it was waiting for. A missing executable,
a failed launch or a crashed page are BenchErrors too. The browser and Playwright are always
closed on exit.

The guard: any request that leaves the page's origin (other than data:/blob:) fails the
benchmark with a BenchError naming the URL (the app promises no third-party request).

This module launches (or connects to) the browser, runs the watchdog and the CPU slowdowns;
the guard and the Page are in hemoedge.bench.browser_page and are re-exported here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemoedge.bench.browser_page import OriginGuard, Page, first_line, require_sync_playwright
from hemoedge.errors import BenchError
from hemoedge.names import DESKTOP

log = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
FAKE_CAMERA_ARGS = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")
# performance.measureUserAgentSpecificMemory() otherwise waits for the next GC (10-60 s here)
MEMORY_ARGS = ("--enable-blink-features=ForceEagerMeasureMemory",)


# ---------------------------------------------------------------------------- device classes
# Named CPU slowdowns (`bench web --device-class`): how many times slower than this machine's
# core every thread of the browser runs. desktop = no emulation.
DEVICE_CLASSES: dict[str, float | None] = {DESKTOP: None, "mid-range-phone": 4.0,
                                           "low-end-phone": 6.0}
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1 cpu controller (CFS bandwidth)
CFS_MIN_QUOTA_US = 1000  # the kernel refuses a smaller quota
CFS_PERIOD_US = 5000  # short periods: a throttled thread waits at most period - quota
PER_THREAD_POLL_S = 0.05  # per-thread mode: how often new threads are given their own group
SLOWDOWN_SHARES = 10240  # 10x a nice-0 task: the slowed browser gets its quota on a busy box
MECHANISM = ("cgroup v1 cpu controller: Chromium and every process it starts run in their own "
             "cgroup, pinned to {cpus} (taskset), cpu.cfs_quota_us = cpu.cfs_period_us x "
             "{cores} / {factor:g} ({quota} / {period} us), cpu.shares {shares}")


def device_class_of(factor: float | None) -> str:
    """The device-class name of a slowdown factor ("desktop" for none, else "cpu/F")."""
    for name, f in DEVICE_CLASSES.items():
        if f == factor:
            return name
    return f"cpu/{factor:g}"


class CpuThrottle:
    """Runs Chromium (every process it starts inherits this) `factor` times slower than one
    core of this machine: a cgroup v1 cpu group with a CFS quota of period x cores / factor,
    the processes pinned to `cores` CPUs, so one busy thread gets at most 1/factor of a core
    (a CFS quota is a group total: without the pinning a single thread of a 2-core box would
    only be slowed factor / 2). Chromium is started through a small wrapper that moves itself
    into the group and then execs Chromium under taskset. Needs root (or a writable
    /sys/fs/cgroup/cpu) and taskset; `check()` says why not in one line.

    The quota is exact CPU time; on a machine others load, the group's raised cpu.shares lets
    it still get its quota, so the slowdown factor holds against a loaded baseline too."""

    def __init__(self, factor: float, cores: int = 1, root: Path | None = None,
                 executable: Path | None = None, per_thread: bool = False):
        if not factor >= 1:  # also refuses NaN
            raise BenchError(f"--cpu-slowdown must be >= 1 (how many times slower), got {factor}")
        self.factor, self.cores = float(factor), int(cores)
        self.per_thread = per_thread
        self._placed: dict[int, Path] = {}  # tid -> its own group (per-thread mode)
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.root = Path(root) if root is not None else CGROUP_CPU
        self.executable = Path(executable or CHROMIUM)
        self.dir: Path | None = None
        self.wrapper: Path | None = None
        self.period = max(CFS_PERIOD_US, int(CFS_MIN_QUOTA_US * self.factor / self.cores) + 1)
        self.quota = -1 if self.factor == 1 else int(self.period * self.cores / self.factor)
        if per_thread:  # each thread its own quota of 1/factor of a core, the group uncapped:
            # a phone with at least as many cores as busy threads, each core factor x slower
            self.period = max(CFS_PERIOD_US, int(CFS_MIN_QUOTA_US * self.factor) + 1)
            self.thread_quota = -1 if self.factor == 1 else int(self.period / self.factor)
            self.quota = -1
        cpus = sorted(os.sched_getaffinity(0))
        if per_thread:
            self.cores = len(cpus)  # every CPU here: the threads' own quotas do the slowing
        if self.cores > len(cpus):
            raise BenchError(f"--cpu-slowdown: {self.cores} core(s) asked for, this process may "
                             f"use {len(cpus)}")
        self.cpus = cpus[-self.cores:]  # the last ones: CPU 0 takes most interrupts

    @property
    def mechanism(self) -> str:
        if self.per_thread and self.factor == 1:
            return (f"cgroup v1 cpu controller, the 1x reference: Chromium in a cgroup of its "
                    f"own with no quota, pinned to CPU {','.join(map(str, self.cpus))} (taskset), "
                    f"cpu.shares {SLOWDOWN_SHARES}")
        if self.per_thread:
            return (f"cgroup v1 cpu controller, per thread: every thread of Chromium and of every "
                    f"process it starts is moved (polled every {PER_THREAD_POLL_S * 1000:.0f} ms) "
                    f"into its own cgroup with cpu.cfs_quota_us = cpu.cfs_period_us / "
                    f"{self.factor:g} ({self.thread_quota} / {self.period} us); all pinned to "
                    f"CPU {','.join(map(str, self.cpus))} (taskset) in one group "
                    f"(no cap of its own, cpu.shares {SLOWDOWN_SHARES})")
        return MECHANISM.format(cpus="CPU " + ",".join(map(str, self.cpus)), cores=self.cores,
                                factor=self.factor, quota=self.quota, period=self.period,
                                shares=SLOWDOWN_SHARES)

    def check(self) -> None:
        import shutil

        quota = self.root / "cpu.cfs_quota_us"
        if not quota.is_file():
            raise BenchError(f"--cpu-slowdown needs the cgroup v1 cpu controller: {quota} "
                             "not found (cgroup v2 or no cpu controller mounted)")
        if not os.access(self.root, os.W_OK):
            raise BenchError(f"--cpu-slowdown: {self.root} is not writable (run as root, or "
                             "delegate a cpu cgroup to this user)")
        if shutil.which("taskset") is None:
            raise BenchError("--cpu-slowdown needs taskset (util-linux) to pin Chromium's "
                             "processes; apt-get install -y util-linux")

    def __enter__(self) -> CpuThrottle:
        import tempfile

        self.check()
        d = self.root / f"hemoedge-bench-{os.getpid()}-{id(self):x}"
        try:
            d.mkdir()
            self.dir = d
            (d / "cpu.cfs_period_us").write_text(str(self.period))
            (d / "cpu.cfs_quota_us").write_text(str(self.quota))
            (d / "cpu.shares").write_text(str(SLOWDOWN_SHARES))
        except OSError as e:
            self.__exit__()
            raise BenchError(f"--cpu-slowdown: could not set up the cgroup {d}: {e}") from e
        tmp = Path(tempfile.mkdtemp(prefix="hemoedge-throttle-"))
        w = tmp / "chromium-throttled"
        w.write_text("#!/bin/sh\n"
                     f"echo $$ > {d / 'cgroup.procs'} || exit 97\n"
                     f"exec taskset -c {','.join(map(str, self.cpus))} {self.executable} \"$@\"\n")
        w.chmod(0o755)
        self.wrapper = w
        if self.per_thread and self.factor > 1:
            self._poller = threading.Thread(target=self._poll, name="cpu-throttle", daemon=True)
            self._poller.start()
        return self

    def _poll(self) -> None:
        """Per-thread mode: move every new thread of the group's processes into a group of its
        own (cgroup v1 accepts thread ids in `tasks`); threads a moved thread starts inherit
        its group until the next poll."""
        known: set[int] = set()
        while not self._stop.wait(PER_THREAD_POLL_S):
            try:
                known |= set(self.pids())
                for g in list(self._placed.values()):
                    with contextlib.suppress(OSError):
                        known |= {int(x) for x in (g / "cgroup.procs").read_text().split()}
                for pid in list(known):
                    try:
                        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
                    except OSError:
                        known.discard(pid)
                        continue
                    for tid in tids:
                        if tid not in self._placed:
                            self._place(tid)
            except Exception as e:  # never kill the benchmark from here
                log.debug("cpu throttle poll: %s", e)

    def _place(self, tid: int) -> None:
        g = self.dir / f"t{tid}"
        try:
            g.mkdir(exist_ok=True)
            (g / "cpu.cfs_period_us").write_text(str(self.period))
            (g / "cpu.cfs_quota_us").write_text(str(self.thread_quota))
            (g / "tasks").write_text(str(tid))
            self._placed[tid] = g
        except OSError:  # the thread ended meanwhile
            with contextlib.suppress(OSError):
                g.rmdir()

    def pids(self) -> list[int]:
        if self.dir is None:
            return []
        try:
            return [int(x) for x in (self.dir / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def __exit__(self, *exc: object) -> None:
        """Remove the group (its processes are gone by now; stragglers go back to the root)."""
        import shutil

        if self.wrapper is not None:
            shutil.rmtree(self.wrapper.parent, ignore_errors=True)
            self.wrapper = None
        if self.dir is None:
            return
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
            self._poller = None
        for g in sorted(self._placed.values()):
            with contextlib.suppress(OSError):
                for tid in (g / "tasks").read_text().split():  # still alive: back to the root
                    with contextlib.suppress(OSError):
                        (self.root / "tasks").write_text(tid)
            with contextlib.suppress(OSError):
                g.rmdir()
        self._placed.clear()
        for _ in range(50):
            left = self.pids()
            for pid in left:  # a process still exiting: back to the root group
                with contextlib.suppress(OSError):
                    (self.root / "cgroup.procs").write_text(str(pid))
            try:
                self.dir.rmdir()
                self.dir = None
                return
            except OSError:
                time.sleep(0.1)
        log.warning("could not remove the cgroup %s", self.dir)


@dataclass(frozen=True)
class BrowserConfig:
    executable: Path = CHROMIUM  # Debian's chromium (playwright install cannot download here)
    video: Path | None = None  # Y4M for the fake camera; None: Chromium's own test pattern
    launch_timeout_s: float = 60.0  # Chromium start
    step_timeout_s: float = 120.0  # any single navigation, evaluate or click
    viewport: tuple[int, int] = (412, 915)  # CSS px, a phone-sized screen
    cpu_slowdown: float | None = None  # run every browser thread this many times slower
    cpu_mode: str = "thread"  # "thread": a quota per thread; "group": one quota, cpu_cores pinned
    cpu_cores: int = 1  # group mode: this many pinned cores (CpuThrottle)
    # a remote browser instead of launching one: ws://... (Playwright's connect: a
    # `playwright run-server` / launch_server endpoint) or http(s)://host:port (connect_over_cdp:
    # Chrome with --remote-debugging-port). Nothing is launched, nothing is killed; the
    # executable, video and slowdown settings do not apply.
    connect: str | None = None
    extra_args: tuple[str, ...] = ()  # more launch flags (e.g. an execution provider's)

    def __post_init__(self) -> None:
        if self.connect is not None:
            endpoint_kind(self.connect)  # refuses an unknown scheme at once
        if self.launch_timeout_s <= 0 or self.step_timeout_s <= 0:
            raise BenchError("browser timeouts must be positive seconds, got "
                             f"launch {self.launch_timeout_s}, step {self.step_timeout_s}")

    @property
    def args(self) -> list[str]:
        a = [*CHROMIUM_ARGS, *FAKE_CAMERA_ARGS, *MEMORY_ARGS, *self.extra_args]
        if self.video is not None:
            a.append(f"--use-file-for-fake-video-capture={self.video}")
        return a


def endpoint_kind(endpoint: str) -> str:
    """"ws" (Playwright's connect) or "cdp" (connect_over_cdp) for a --connect endpoint."""
    if endpoint.startswith(("ws://", "wss://")):
        return "ws"
    if endpoint.startswith(("http://", "https://")):
        return "cdp"
    raise BenchError(f"--connect {endpoint!r}: expected ws://HOST:PORT/... (a Playwright "
                     "server) or http://HOST:PORT (Chrome DevTools Protocol)")


def check_executable(path: str | Path) -> Path:
    """The Chromium executable, or a BenchError saying how to install it."""
    exe = Path(path)
    if not exe.is_file() or not os.access(exe, os.X_OK):
        raise BenchError(f"{exe}: Chromium not found (or not executable); install Debian's "
                         "with `apt-get install -y chromium fonts-dejavu-core`")
    return exe


def _children(pid: int) -> dict[int, int]:
    """pid -> ppid of every process below `pid` (from /proc; no dependency)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces or parentheses
        rest = stat[stat.rfind(")") + 2:].split()
        parent[int(d)] = int(rest[1])
    out: dict[int, int] = {}
    frontier = {pid}
    while frontier:
        nxt = {p for p, pp in parent.items() if pp in frontier and p not in out}
        for p in nxt:
            out[p] = parent[p]
        frontier = nxt
    return out


class Chromium:
    """Context manager: Playwright + one headless Chromium, killed by pid on a hung step."""

    def __init__(self, cfg: BrowserConfig | None = None):
        self.cfg = cfg or BrowserConfig()
        self._pw = None
        self.browser = None
        self.pids: set[int] = set()  # Chromium processes this object launched
        self._fired = threading.Event()
        self.throttle: CpuThrottle | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def remote(self) -> bool:
        return self.cfg.connect is not None

    def _connect(self) -> Chromium:
        """Attach to a remote browser (BrowserConfig.connect); nothing of it is ours to kill."""
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright

        ep = self.cfg.connect
        try:
            self._pw = sync_playwright().start()
            with self.step(f"connecting to {ep}", self.cfg.launch_timeout_s + 5):
                if endpoint_kind(ep) == "ws":
                    self.browser = self._pw.chromium.connect(
                        ep, timeout=self.cfg.launch_timeout_s * 1000)
                else:
                    self.browser = self._pw.chromium.connect_over_cdp(
                        ep, timeout=self.cfg.launch_timeout_s * 1000)
        except BaseException as e:
            self.close()
            if isinstance(e, PlaywrightError):
                raise BenchError(f"{ep}: could not connect: {first_line(e)}") from e
            raise
        log.debug("connected to %s: %s %s", ep, self.browser.browser_type.name,
                  self.browser.version)
        return self

    def __enter__(self) -> Chromium:
        if self.remote:
            require_sync_playwright()
            return self._connect()
        exe = check_executable(self.cfg.executable)
        if self.cfg.video is not None and not Path(self.cfg.video).is_file():
            raise BenchError(f"{self.cfg.video}: fake-camera video missing")
        require_sync_playwright()
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
        try:
            launch_exe = exe
            if self.cfg.cpu_slowdown is not None:
                self.throttle = CpuThrottle(self.cfg.cpu_slowdown, self.cfg.cpu_cores,
                                            executable=exe,
                                            per_thread=self.cfg.cpu_mode == "thread").__enter__()
                launch_exe = self.throttle.wrapper
            self._pw = sync_playwright().start()
            before = set(_children(os.getpid()))  # the Playwright driver is not ours to kill
            with self.step(f"starting {exe}", self.cfg.launch_timeout_s + 5):
                self.browser = self._pw.chromium.launch(
                    executable_path=str(launch_exe), args=self.cfg.args, headless=True,
                    timeout=self.cfg.launch_timeout_s * 1000)
            self.pids = set(_children(os.getpid())) - before
        except BaseException as e:
            self.close()
            if isinstance(e, PlaywrightError):
                raise BenchError(f"{exe} did not start: {first_line(e)}") from e
            raise
        log.debug("chromium %s started (pids %s)", self.browser.version, sorted(self.pids))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.browser is not None:
            try:
                with self.step("closing the browser", 30):
                    self.browser.close()
            except BenchError as e:
                log.warning("%s", e)
            self.browser = None
        if self._pw is not None:
            with contextlib.suppress(Exception):
                self._pw.stop()
            self._pw = None
        self._kill()  # anything left of what we launched (normally nothing)
        if self.throttle is not None:
            self.throttle.__exit__()
            self.throttle = None

    @property
    def version(self) -> str:
        return self.browser.version if self.browser is not None else ""

    # ------------------------------------------------------------------ the watchdog
    def _kill(self) -> None:
        me = os.getpid()
        tree = _children(me)
        ours = set(self.pids)
        for p in self.pids:  # children the browser started since (renderers, GPU, ...)
            ours |= {c for c in _children(p)}
        for pid in ours:
            if pid in tree:  # still ours (pids are not reused while they are our descendants)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def _fire(self) -> None:
        self._fired.set()
        if self.remote:  # not ours to kill: the blocked call ends when the connection does
            log.error("a step on the remote browser %s hung", self.cfg.connect)
            return
        log.error("a browser step hung: stopping Chromium (pids %s)", sorted(self.pids))
        self._kill()

    @contextlib.contextmanager
    def step(self, what: str, timeout_s: float | None = None) -> Iterator[None]:
        """Run one blocking Playwright call with a time limit; errors become BenchError."""
        from playwright.sync_api import Error as PlaywrightError

        limit = timeout_s or self.cfg.step_timeout_s
        if self._fired.is_set():
            raise BenchError(f"{what}: the browser was already stopped after a hung step")
        timer = threading.Timer(limit, self._fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except PlaywrightError as e:
            if self._fired.is_set():
                raise BenchError(f"{what}: no answer within {limit:.0f} s (hung page or "
                                 "browser)" + ("" if self.remote else
                                               "; Chromium was stopped")) from e
            raise BenchError(f"{what}: {first_line(e)}") from e
        finally:
            timer.cancel()
        if self._fired.is_set():
            raise BenchError(f"{what}: no answer within {limit:.0f} s"
                             + ("" if self.remote else "; Chromium was stopped"))

    # ------------------------------------------------------------------ contexts and pages
    def new_context(self, origin: str, camera: bool = True) -> tuple[Any, OriginGuard]:
        """A fresh context (empty HTTP cache, no service worker) whose requests are guarded."""
        w, h = self.cfg.viewport
        with self.step("opening a browser context", 30):
            ctx = self.browser.new_context(viewport={"width": w, "height": h},
                                           device_scale_factor=1,
                                           permissions=["camera"] if camera else [])
        ctx.set_default_timeout(self.cfg.step_timeout_s * 1000)
        guard = OriginGuard(origin.rstrip("/"))
        ctx.on("request", guard.on_request)
        return ctx, guard

    def page(self, ctx: Any, guard: OriginGuard) -> Page:
        with self.step("opening a page", 30):
            raw = ctx.new_page()
        return Page(self, raw, guard)

    def close_context(self, ctx: Any) -> None:
        try:
            with self.step("closing a browser context", 30):
                ctx.close()
        except BenchError as e:
            log.warning("%s", e)
