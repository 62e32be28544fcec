"""`hemoedge bench web ART`: onnxruntime-web (WASM) latency and the 80 ms x 30-frame capture,
measured inside the real PWA in Debian's headless Chromium (Playwright, Python).

    run(WebBenchConfig(art=Path("runs/art"), capture=True)) -> Results

For every variant pairing it builds the app (hemoedge.web.build), serves it on 127.0.0.1 with
COOP/COEP (hemoedge.web.serve.serve_in_thread; every page must be crossOriginIsolated) and
drives it through its bench hook (`?bench=1`, window.__hemoedgeBench). Per repeat, per pairing:

  first visit, fresh context (empty cache), app default threads:
    web.cold_start_ms          navigation start -> both sessions ready (bench.readyT)
    web.first_visit.bytes      bytes on the wire (response headers + encoded bodies, from
                               Playwright's network events = CDP encodedDataLength; page,
                               workers and service worker) until every file is in the
                               service worker's cache (bench.offlineReady);
                               web.first_visit.requests (requests that crossed the network),
                               web.first_visit.duplicate_urls (URLs that did so twice)
    web.first_visit_bytes      the same counted on the server's socket (a cross-check)
    web.first_visit_bytes_gzip the files those requests named, gzip -6 (a reference)
    web.warm_start_ms          a new page in the same context (service worker + caches warm)
    web.offline_reload_ms      context.set_offline(True) + reload -> ready again
  one fresh page per thread count t (numThreads is fixed at WASM start):
    web.<role>.session_ms      InferenceSession.create in the app's worker (variant det=P/est=P);
                               the detector is created first, so its figure includes the WASM
                               runtime start (params wasm_start=true)
    web.models_ready_ms        fetch + WASM start + both sessions (the worker's init)
    web.<role>.latency_ms.*    bare session.run in the worker (runModel: warm-up, then n runs)
    web.frame_ms.*             per-frame work as the app runs it in a capture (pixels, letterbox,
                               detector on every `detect_every`-th frame, NMS, tracking, crop,
                               estimator), one sample per detector cycle (see webcapture.cycle_ms)
    web.frame_full_ms.*        frames that ran the whole two-stage path (detector + estimator)
    web.frame.<stage>_ms.p50   detector, estimator, preprocess (letterbox/NMS/crop), pixels
    web.frame.hb_rate          share of frames that reached the estimator
    web.capture.queue_ms.p50   grab -> the worker starts the frame (bitmap, transfer, backlog)
    web.memory_bytes           performance.measureUserAgentSpecificMemory(), 1-thread page only:
                               with a WASM thread pool the parked pthread workers never answer
                               and Chromium waits 60 s, then leaves them out anyway
  with --capture, per pairing and t, through the real UI and the fake camera:
    web.capture.interval_ms.mean / .p95, web.capture.max_dev_ms (vs 80 ms),
    web.capture.dropped_frames / .repeated_frames (source frame index from the video's code
    strip), web.capture.result_ms (last grab -> result on screen), web.capture.hb_error
    (|Hb shown - video Hb|), web.capture.long_tasks / .long_task_ms (main thread), and
    web.capture.grab_ms, one metric per frame with the timeline in params (highest t)
  the seed reference, same run (fp32 models, 1 thread, `?seedloop=1`: grab, wait, sleep 80 ms):
    web.seed.frame_ms.* (variant ""), web.seed.capture.*, and per pairing and t
    web.speedup_vs_seed = seed frame p50 / pairing frame p50 (bootstrap ci95 of the ratio)

Every timing is pooled over repeats: n, mean, p50, p90, p99; ci95 is the bootstrap interval of
the median widened to cover every repeat's own median (between-repeat drift on a shared machine
is larger than the within-run interval); params.repeats holds the per-repeat medians and
params.spread_pct their range over the median. Params carry the threads requested and in effect;
results.env the browser, onnxruntime-web version and crossOriginIsolated.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import logging
import os
import shlex
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.bench import webcapture as wc
from hemoedge.bench.browser import CHROMIUM, BrowserConfig, Chromium, Page, check_executable
from hemoedge.bench.browser_page import first_line
from hemoedge.bench.webmetrics import Pool, emit, summary_lines
from hemoedge.errors import BenchError, HemoedgeError
from hemoedge.report.results import (
    VOLATILE_PARAMS,
    Results,
    append_stage,
    invocation,
    variant_name,
)

log = logging.getLogger(__name__)

ROLES = ("detector", "estimator")
SHORT = {"detector": "det", "estimator": "est"}
# Default pairings: fp16 is left out of the frame/capture sweep because onnxruntime-web converts
# fp16 weights back to fp32 at load (measured: same speed as fp32, only half the download); its
# model-level latency is still measured every run, so that claim is re-checked.
DEFAULT_DET, DEFAULT_EST = ("fp32", "int8"), ("fp32", "int8")
# fastest WASM pairing measured (docs/bench-web.md); the gate's seed-ratio budget uses it
TUNED = ("int8", "fp32")
SEED = ("fp32", "fp32")

READY = ("window.__hemoedgeBench && (window.__hemoedgeBench.ready || "
         "window.__hemoedgeBench.error)")
INFO = """(() => { const b = window.__hemoedgeBench;
  return {error: b.error, session: b.session, numThreads: b.numThreads,
          requestedThreads: b.requestedThreads, coi: self.crossOriginIsolated,
          readyT: b.readyT, detectEvery: b.detectEvery, seedloop: b.seedloop,
          autotune: b.autotune, userAgent: navigator.userAgent,
          hardwareConcurrency: navigator.hardwareConcurrency,
          deviceMemory: navigator.deviceMemory || null}; })()"""
LONGTASKS = """(() => { if (!window.__benchLT) { window.__benchLT = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries())
    window.__benchLT.push([e.startTime, e.duration]); })
    .observe({type: 'longtask', buffered: true}); }
  return true; })()"""
MEMORY = """Promise.race([
  performance.measureUserAgentSpecificMemory().then((m) => ({bytes: m.bytes,
    breakdown: m.breakdown.filter((b) => b.bytes > 0).map((b) => ({bytes: b.bytes, types: b.types,
      scope: b.attribution.map((a) => a.scope).join(',')}))})),
  new Promise((r) => setTimeout(() => r(null), %d))])"""


@dataclass(frozen=True)
class WebBenchConfig:
    # what to measure
    art: Path  # artifact folder (manifest.json + {role}.{precision}.onnx)
    threads: tuple[int, ...] = (1, 2)  # WASM threads; one fresh page per value
    pairings: tuple[tuple[str, str], ...] | None = None  # (det, est); None: see default_pairings
    capture: bool = False  # report the capture-quality metrics (web.capture.*)
    seed: bool = True  # measure the seed reference (fp32, 1 thread, sequential loop)
    seedloop: bool = False  # an injected regression (the gate proof): the pairings' captures also run
    #                         the seed's sequential loop (?seedloop=1: 1 thread, detector always)
    # timing
    runs: int = 50  # session.run timings per model x precision x threads x repeat
    warmup: int = 10  # untimed session.run calls before them
    captures: int = 3  # 30-frame captures per page
    repeats: int = 3  # the whole sweep, pairings in rotated order; medians pooled
    # input
    video: Path | None = None  # Y4M for the fake camera; None: `hemoedge data video`
    video_hb: float | None = 9.5  # g/dL the video shows (None: unknown, no hb_error)
    video_frames: int = 150  # frames of the generated video (25 fps; the camera loops it)
    # browser
    chromium: Path = CHROMIUM
    timeout_s: float = 120.0  # any single page step (navigation, evaluate, a capture)
    # device classes: one whole pass per entry, None = this machine as it is (desktop), F = every
    # browser thread F times slower than one core here (browser.CpuThrottle); params carry
    # device_class, cpu_slowdown and the mechanism; web.slowdown.* ratios against the first pass
    cpu_slowdowns: tuple[float | None, ...] = (None,)
    cpu_mode: str = "thread"  # "thread": each thread its own quota; "group": one, on 1 core
    autotune: tuple[str, ...] = ()  # builds ship these choices for the app's auto-tune
    autotune_trials: int = 0  # ... and the app tunes in this many fresh contexts (agreement)
    # remote devices (docs/bench-web.md#remote-devices): one pass per endpoint instead of the
    # local Chromium, all endpoints in parallel (a thread and a Playwright each); no capture,
    # seed or memory figures there (no fake camera, no eager GC flag)
    connect: tuple[str, ...] = ()
    device_names: tuple[str, ...] = ()  # a name per endpoint, in order (default: from it)
    device_app_urls: tuple[str, ...] = ()  # per endpoint, the URL its browser opens ("": app_url)
    host: str = "127.0.0.1"  # the app server's bind address
    port: int = 0  # ... and port (0: a free one; fix it for adb reverse)
    app_url: str | None = None  # the URL the browser opens (default: the server's own address)
    # bookkeeping
    quick: bool = False  # the CI form: one pairing, one repeat, few runs
    shard: tuple[int, int] | None = None  # (i, n): units i-1, i-1+n, ... (1-based i)
    workdir: Path | None = None  # builds and video go here (None: a temporary folder)
    command: str = ""  # the command line, recorded in results.commands

    def __post_init__(self) -> None:
        if not self.threads or any(t < 1 for t in self.threads):
            raise BenchError(f"--threads needs positive integers, got {list(self.threads)}")
        if min(self.runs, self.captures, self.repeats) < 1 or self.warmup < 0:
            raise BenchError("need runs, captures, repeats >= 1 and warmup >= 0; got "
                             f"runs={self.runs} captures={self.captures} "
                             f"repeats={self.repeats} warmup={self.warmup}")
        if self.shard is not None and not 1 <= self.shard[0] <= self.shard[1]:
            raise BenchError(f"--shard i/n needs 1 <= i <= n, got {self.shard}")
        if self.timeout_s <= 0:
            raise BenchError(f"timeout must be positive seconds, got {self.timeout_s}")
        if self.cpu_mode not in ("thread", "group"):
            raise BenchError(f"--slowdown-mode must be thread or group, got {self.cpu_mode!r}")
        if len(self.device_names) > len(self.connect):
            raise BenchError(f"{len(self.device_names)} --device-name(s) for "
                             f"{len(self.connect)} --connect endpoint(s)")
        if len(self.device_app_urls) > len(self.connect):
            raise BenchError(f"{len(self.device_app_urls)} device app URL(s) for "
                             f"{len(self.connect)} --connect endpoint(s)")
        names = [self.device_name(i) for i in range(len(self.connect))]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise BenchError(f"two devices are named {dup[0]!r}: give each --connect endpoint "
                             "its own --device-name")
        if self.connect and self.cpu_slowdowns != (None,):
            raise BenchError("--connect measures the remote device as it is: no --device-class "
                             "or --cpu-slowdown with it")
        if not 0 <= self.port < 65536:
            raise BenchError(f"--port must be 0..65535, got {self.port}")
        if not self.cpu_slowdowns or any(f is not None and not f >= 1
                                         for f in self.cpu_slowdowns):
            raise BenchError("--cpu-slowdown needs factors >= 1 (how many times slower), got "
                             f"{list(self.cpu_slowdowns)}")

    @staticmethod
    def quick_form(**kw: Any) -> WebBenchConfig:
        """Few runs, one repeat, one capture per page: fits in `make test`."""
        base = {"runs": 10, "warmup": 3, "captures": 1, "repeats": 1, "video_frames": 75,
                "quick": True}
        return WebBenchConfig(**{**base, **kw})

    def device_name(self, i: int) -> str:
        """The name of the i-th --connect endpoint's device."""
        if i < len(self.device_names) and self.device_names[i]:
            return self.device_names[i]
        from urllib.parse import urlsplit

        from hemoedge.bench.browser import endpoint_kind

        ep = self.connect[i]
        return f"{endpoint_kind(ep)}@{urlsplit(ep).netloc or ep}"

    def device_app_url(self, i: int) -> str | None:
        """The URL the i-th device's browser opens (None: the server's own address)."""
        if i < len(self.device_app_urls) and self.device_app_urls[i]:
            return self.device_app_urls[i]
        return self.app_url

    @property
    def default_threads(self) -> int:
        """The thread count of the first-visit figures: the app's default (2) when swept."""
        return 2 if 2 in self.threads else max(self.threads)


@dataclass(frozen=True)
class Unit:
    kind: str  # "pairing" (frames, captures, start figures) | "models" (latency only) | "seed"
    det: str
    est: str
    roles: tuple[str, ...] = ROLES  # roles whose bare latency this unit may measure

    @property
    def variant(self) -> str:
        return "" if self.kind == "seed" else variant_name(self.det, self.est)

    @property
    def label(self) -> str:
        return "seed (det=fp32,est=fp32, 1 thread, sequential)" if self.kind == "seed" else (
            f"{variant_name(self.det, self.est)}" + (" (models)" if self.kind == "models" else ""))


def default_pairings(have: dict[str, list[str]], quick: bool) -> list[tuple[str, str]]:
    """quick: the tuned pairing (or the nearest available); else det x est over fp32/int8."""
    if not have["detector"] or not have["estimator"]:
        raise BenchError(f"the artifact needs a detector and an estimator; has {have}")
    if quick:
        det = TUNED[0] if TUNED[0] in have["detector"] else have["detector"][-1]
        est = TUNED[1] if TUNED[1] in have["estimator"] else have["estimator"][0]
        return [(det, est)]
    dets = [p for p in DEFAULT_DET if p in have["detector"]] or have["detector"][:1]
    ests = [p for p in DEFAULT_EST if p in have["estimator"]] or have["estimator"][:1]
    return [(d, e) for d in dets for e in ests]


def plan(cfg: WebBenchConfig, have: dict[str, list[str]]) -> tuple[list[Unit], tuple[str, str]]:
    """The units of this shard, and the tuned pairing (the one the seed is compared with)."""
    pairs = list(cfg.pairings) if cfg.pairings else default_pairings(have, cfg.quick)
    for d, e in pairs:
        if d not in have["detector"] or e not in have["estimator"]:
            raise BenchError(f"pairing {variant_name(d, e)} is not in {cfg.art} "
                             f"(detector: {have['detector']}, estimator: {have['estimator']})")
    units = [Unit("pairing", d, e) for d, e in pairs]
    if not cfg.quick and not cfg.pairings:  # model-level latency for precisions not paired
        covered = {("detector", d) for d, _ in pairs} | {("estimator", e) for _, e in pairs}
        for p in ("fp16", "fp32", "int8"):
            roles = tuple(r for r in ROLES if p in have[r] and (r, p) not in covered)
            if roles:
                units.append(Unit("models", p if p in have["detector"] else pairs[0][0],
                                  p if p in have["estimator"] else pairs[0][1], roles))
    tuned = TUNED if TUNED in pairs else pairs[0]
    if cfg.shard is not None:
        i, n = cfg.shard
        units = units[i - 1::n]
    if cfg.seed and all(p in have[r] for r, p in zip(ROLES, SEED, strict=True)):
        # the seed goes with the tuned pairing, so the speedup is measured within one job
        if any(u.kind == "pairing" and (u.det, u.est) == tuned for u in units):
            units.append(Unit("seed", *SEED))
    elif cfg.seed:
        log.warning("no fp32 detector + estimator in %s: the seed reference is skipped", cfg.art)
    return units, tuned


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


@contextlib.contextmanager
def serve_counting(dist: Path, host: str = "127.0.0.1", port: int = 0,
                   app_url: str | None = None):
    """serve_in_thread with a byte counter: yields (url, counter). The URL is `app_url` when
    given (e.g. the address a device reaches through adb reverse or a TLS proxy), else the
    server's own (a wildcard bind address is opened as 127.0.0.1)."""
    from hemoedge.web.serve import Handler, serve_in_thread

    counter = _Counter()

    class Counting(Handler):
        def setup(self) -> None:
            super().setup()
            self.wfile = _CountingWriter(self.wfile, counter)

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


# ---------------------------------------------------------------------------- one page
def open_app(page: Page, url: str, query: str, what: str, timeout_s: float) -> dict:
    page.goto(url + query, what=f"{what}: loading the app")
    page.wait(READY, f"{what}: models ready", timeout_s)
    info = page.evaluate(INFO, f"{what}: reading the bench hook")
    if info.get("error"):
        raise BenchError(f"{what}: the app failed to start: {info['error']}")
    if not info.get("coi"):
        raise BenchError(f"{what}: the page is not crossOriginIsolated (COOP/COEP missing?), "
                         "so WASM threads would silently fall back to 1")
    return info


def _sw_ready(page: Page, what: str, timeout_s: float) -> None:
    # the first visit caches every file (the WASM and the models as the worker loads them):
    # let it finish, it competes for the 2 cores
    page.wait("navigator.serviceWorker.controller !== null && "
              "window.__hemoedgeBench.offlineReady", f"{what}: service worker ready", timeout_s)


def start_camera(page: Page, what: str, timeout_s: float) -> None:
    page.click("#camera-btn", f"{what}: starting the camera")
    page.wait("!document.querySelector('#capture-btn').disabled",
              f"{what}: camera preview (Capture enabled)", timeout_s)


def run_capture(page: Page, what: str, timeout_s: float) -> dict:
    page.evaluate(LONGTASKS, f"{what}: long-task observer")
    page.wait("!document.querySelector('#capture-btn').disabled", f"{what}: Capture enabled",
              timeout_s)
    n = page.evaluate("window.__hemoedgeBench.captures.length", f"{what}: captures so far")
    page.click("#capture-btn", f"{what}: Capture")
    page.wait(f"window.__hemoedgeBench.captures.length > {n}", f"{what}: 30-frame capture",
              timeout_s)
    cap = page.evaluate("window.__hemoedgeBench.lastCapture", f"{what}: capture record")
    cap["shown"] = page.text(
        "#result-hb")  # what the user sees: "9.6 g/dL" or "Try again"
    cap["longtasks"] = page.evaluate("window.__benchLT", f"{what}: long tasks")
    return cap


# ---------------------------------------------------------------------------- the run
def _y4m_frames(path: Path) -> tuple[int, float]:
    with open(path, "rb") as f:
        header = f.readline()
    tags = {t[:1]: t[1:] for t in header.split()[1:]}
    try:
        w, h = int(tags[b"W"]), int(tags[b"H"])
        num, den = (int(x) for x in tags.get(b"F", b"25:1").split(b":"))
    except (KeyError, ValueError) as e:
        raise BenchError(f"{path}: not a Y4M video (header {header[:60]!r})") from e
    frame = 6 + w * h * 3 // 2  # "FRAME\n" + 4:2:0 planes
    return (path.stat().st_size - len(header)) // frame, num / den


class _Run:
    def __init__(self, cfg: WebBenchConfig, chrome: Chromium, video: tuple[int, float],
                 app_url: str | None = None, servers: dict[Path, str] | None = None):
        self.cfg, self.chrome, self.video = cfg, chrome, video
        self.pool = Pool()
        self.t = cfg.timeout_s
        self.remote = chrome.remote  # no fake camera there: no captures, no memory figure
        self.app_url = app_url  # the URL this browser opens (None: the server's own)
        # devices measured in parallel share one server per build (their URLs here); its
        # socket counts mix the devices, so those figures are left out (the wire count stays)
        self.servers = servers

    @contextlib.contextmanager
    def serve(self, dist: Path):
        """(url, counter) of the app in `dist`: a server of this unit's own, or the shared one
        (counter None)."""
        if self.servers is not None:
            url = self.app_url or self.servers[dist]
            yield (url if url.endswith("/") else url + "/"), None
            return
        cfg = self.cfg
        with serve_counting(dist, cfg.host, cfg.port, self.app_url) as served:
            yield served

    def note_device(self, info: dict) -> None:
        """The browser's identity as the page sees it (user agent, cores, memory)."""
        if "device" not in self.pool.env:
            self.pool.env["device"] = {
                "user_agent": info.get("userAgent"),
                "hardware_concurrency": info.get("hardwareConcurrency"),
                "device_memory_gb": info.get("deviceMemory")}

    def note_autotune(self, info: dict, variant: str, t: int) -> None:
        """A fresh auto-tune decision (not a saved one): its time and the setting chosen."""
        at = info.get("autotune")
        if not at:
            return
        self.pool.env.setdefault("autotune", {}).setdefault(f"{variant} t{t}", []).append(
            {k: at.get(k) for k in ("key", "choice", "timings", "ms", "tunedMs", "cached")})
        if not at.get("cached") and at.get("tunedMs") is not None:
            self.pool.values["web.autotune.decide_ms", variant, t].append(at["tunedMs"])
            log.info("%s t%d: auto-tune chose %s in %.0f ms", variant, t, at["key"],
                     at["tunedMs"])

    # -------------------------------------------------------------- first visit, warm, offline
    def start_figures(self, unit: Unit, url: str, counter: _Counter | None, dist: Path, ctx: Any,
                      guard: Any) -> None:
        """Needs a fresh context (empty cache, no service worker); leaves it online."""
        cfg, pool, v = self.cfg, self.pool, unit.variant
        t = cfg.default_threads
        what = f"{unit.label} first visit"
        wire = WireLog()
        ctx.on("requestfinished", wire.on_finished)
        try:
            if counter is not None:
                counter.reset()
            wire.arm()
            page = self.chrome.page(ctx, guard)
            info = open_app(page, url, f"?bench=1&threads={t}", what, self.t)
            self.note_autotune(info, v, t)
            pool.values["web.cold_start_ms", v, t].append(info["readyT"])
            _sw_ready(page, what, self.t)
            time.sleep(0.3)  # let the last precache responses finish writing
            sent, paths = counter.snapshot() if counter is not None else (None, [])
            with self.chrome.step(f"{what}: reading the network log", 60):
                fv = wire.summary()
            if sent is not None:
                pool.values["web.first_visit_bytes", v, t].append(sent)
            pool.values["web.first_visit.bytes", v, t].append(fv["bytes"])
            pool.values["web.first_visit.requests", v, t].append(fv["requests"])
            pool.values["web.first_visit.duplicate_urls", v, t].append(len(fv["duplicate_urls"]))
            pool.env.setdefault("first_visit", {})[v] = {
                **(_first_visit(dist, paths) if sent is not None else {}), "wire": fv}
            page.close()
            page = self.chrome.page(ctx, guard)
            info = open_app(page, url, f"?bench=1&threads={t}", f"{unit.label} warm start",
                            self.t)
            pool.values["web.warm_start_ms", v, t].append(info["readyT"])
            with self.chrome.step(f"{unit.label}: going offline", 30):
                ctx.set_offline(True)
            page.reload(f"{unit.label}: offline reload")
            page.wait(READY, f"{unit.label}: offline reload ready", self.t)
            info = page.evaluate(INFO, f"{unit.label}: offline reload info")
            if info.get("error") or not info.get("coi"):
                raise BenchError(f"{unit.label}: the app did not come back offline "
                                 f"(error {info.get('error')}, coi {info.get('coi')})")
            pool.values["web.offline_reload_ms", v, t].append(info["readyT"])
            page.close()
            log.info("%s: cold %.0f ms, warm %.0f ms, offline %.0f ms; first visit %d bytes on "
                     "the wire in %d requests, %d URL(s) twice (server socket: %s bytes)",
                     unit.label, pool.values["web.cold_start_ms", v, t][-1],
                     pool.values["web.warm_start_ms", v, t][-1], info["readyT"], fv["bytes"],
                     fv["requests"], len(fv["duplicate_urls"]),
                     "shared, not counted" if sent is None else sent)
        finally:  # never mask the first error: a stopped browser cannot go online either
            wire.armed = False
            with contextlib.suppress(BenchError), self.chrome.step(f"{unit.label}: online", 30):
                ctx.set_offline(False)

    # -------------------------------------------------------------- one fresh page per threads
    def page_figures(self, unit: Unit, url: str, threads: int, repeat: int, ctx: Any,
                     guard: Any) -> None:
        cfg, pool = self.cfg, self.pool
        seed = unit.kind == "seed"
        what = f"{unit.label}" + ("" if seed else f" t{threads}") + f" repeat {repeat + 1}"
        page = self.chrome.page(ctx, guard)
        try:
            query = "?bench=1&seedloop=1" if seed else f"?bench=1&threads={threads}" + (
                "&seedloop=1" if cfg.seedloop else "")
            info = open_app(page, url, query, what, self.t)
            self.note_device(info)
            self.note_autotune(info, unit.variant, threads)
            _sw_ready(page, what, self.t)
            eff = int(info["numThreads"])
            if eff != threads:
                log.warning("%s: %d WASM thread(s) requested, %d in effect", what, threads, eff)
            sess = info["session"]
            pool.env["onnxruntime_web"] = sess.get("ortVersion")
            key_t = threads
            pool.effective[unit.variant, key_t].add(eff)
            if unit.kind == "pairing":
                pool.timings["web.models_ready_ms", unit.variant, key_t][repeat].append(
                    sess["totalMs"])
            if not seed:
                for role, prec in zip(ROLES, (unit.det, unit.est), strict=True):
                    mv = variant_name(**{SHORT[role]: prec})
                    pool.effective[mv, key_t].add(eff)
                    pool.timings[f"web.{role}.session_ms", mv, key_t][repeat].append(
                        sess["timings"][role]["createMs"])
                    if role in unit.roles and (role, prec, threads, repeat) not in pool.done:
                        times = page.evaluate(
                            f"window.__hemoedgeBench.runModel('{role}', {cfg.runs}, "
                            f"{cfg.warmup})", f"{what}: {role} {prec} session.run x{cfg.runs}")
                        pool.timings[f"web.{role}.latency_ms", mv, key_t][repeat] += times
                        pool.done.add((role, prec, threads, repeat))
                        log.info("%s: %s %s p50 %.1f ms", what, role, prec,
                                 float(np.median(times)))
            if unit.kind in ("pairing", "seed") and not self.remote:
                start_camera(page, what, self.t)
                fs = pool.frame(("web.seed" if seed else "web", unit.variant, key_t))
                for c in range(cfg.captures):
                    time.sleep(0.3)  # the preview loop runs between captures, as in the app
                    cap = run_capture(page, f"{what} capture {c + 1}", self.t)
                    cap["repeat"], cap["threads_effective"] = repeat, eff
                    fs.add(cap, int(info["detectEvery"]))
                    pool.captures[unit.variant, key_t].append(cap)
                    st = wc.capture_stats(cap, *self.video)
                    log.info("%s capture %d: interval mean %.2f ms, max dev %.1f ms, dropped %d, "
                             "result %.0f ms, shown %r", what, c + 1,
                             float(np.mean(st.intervals)) if st.intervals else float("nan"),
                             st.max_dev_ms, st.dropped, st.result_ms, cap["shown"])
            if threads == 1 and not seed and unit.kind == "pairing" and not self.remote:
                mem = page.evaluate(MEMORY % 15000, f"{what}: measureUserAgentSpecificMemory",
                                    self.t)
                if mem is None:
                    log.warning("%s: measureUserAgentSpecificMemory gave no answer in 15 s", what)
                else:
                    pool.values["web.memory_bytes", unit.variant, 1].append(mem["bytes"])
                    pool.env.setdefault("memory_breakdown", {})[unit.variant] = mem["breakdown"]
            if page.errors:
                log.warning("%s: the page reported errors: %s", what, page.errors[:3])
                pool.env.setdefault("page_errors", []).extend(page.errors[:3])
        finally:
            page.close()

    def unit(self, unit: Unit, dist: Path, repeat: int) -> None:
        with self.serve(dist) as (url, counter):
            ctx, guard = self.chrome.new_context(url)
            try:
                if unit.kind == "pairing":
                    self.start_figures(unit, url, counter, dist, ctx, guard)
                for t in ((1,) if unit.kind == "seed" else self.cfg.threads):
                    self.page_figures(unit, url, t, repeat, ctx, guard)
            finally:
                self.chrome.close_context(ctx)
            if unit.kind == "pairing" and self.cfg.autotune and self.cfg.autotune_trials:
                self.autotune_trials(unit, url)

    def autotune_trials(self, unit: Unit, url: str) -> None:
        """Auto-tune's reproducibility: the app in `autotune_trials` fresh contexts (empty
        storage, so each one tunes), at the first thread count; the settings chosen."""
        t = self.cfg.threads[0]
        keys, ms = [], []
        for i in range(self.cfg.autotune_trials):
            ctx, guard = self.chrome.new_context(url, camera=False)
            try:
                page = self.chrome.page(ctx, guard)
                info = open_app(page, url, f"?bench=1&threads={t}",
                                f"{unit.label} auto-tune trial {i + 1}", self.t)
                at = info.get("autotune") or {}
                keys.append(at.get("key"))
                ms.append(at.get("tunedMs"))
                page.close()
            finally:
                self.chrome.close_context(ctx)
            log.info("%s t%d auto-tune trial %d: %s in %.0f ms", unit.label, t, i + 1, keys[-1],
                     ms[-1] or float("nan"))
        self.pool.env.setdefault("autotune_trials", {})[f"{unit.variant} t{t}"] = {
            "settings": keys, "tuned_ms": [round(x, 1) for x in ms if x is not None]}


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


# ---------------------------------------------------------------------------- entry points
def run(cfg: WebBenchConfig) -> Results:
    """Run the browser benchmark (one pass per device class); returns the new metrics."""
    from hemoedge.bench.browser import CpuThrottle

    if cfg.connect:
        return run_remote(cfg)
    check_executable(cfg.chromium)  # fail in milliseconds, before any build
    for f in cfg.cpu_slowdowns:  # a missing mechanism fails before any build, too
        if f is not None:
            CpuThrottle(f).check()
    if cfg.cpu_slowdowns == (None,):
        return _run_pass(cfg, None)
    res = Results()
    passes: list[tuple[float | None, Results]] = []
    for f in cfg.cpu_slowdowns:
        one = _run_pass(cfg, f)
        passes.append((f, one))
        res.metrics += one.metrics
        for k, v in one.variants.items():
            res.variants.setdefault(k, {}).update(v)
        res.env.update({k: v for k, v in one.env.items() if k != "web_bench"})
        res.env.setdefault("web_bench_passes", []).append(one.env["web_bench"])
        for c in one.commands:
            if c not in res.commands:
                res.commands.append(c)
    res.env["web_bench"] = passes[0][1].env["web_bench"]
    _slowdown_ratios(res, passes)
    return res


def run_remote(cfg: WebBenchConfig) -> Results:
    """One pass per --connect endpoint, all devices at once (each in a thread of its own, with
    its own Playwright: the sync API is per thread), against the same builds, into one Results.
    Every metric carries the device (name, user agent, hardwareConcurrency) in its params, so
    devices merge without overriding each other or the local run. An endpoint that cannot be
    reached, or whose browser goes away mid-run, fails that device only: one line in the log, a
    web.device.available = 0 figure, and env.web_devices[NAME] = {"status": "failed",
    "reason": ...}; the other devices finish. env.web_devices lists every device."""
    from hemoedge.artifact import Artifact

    art = Artifact.load(cfg.art)
    units, tuned = _units(cfg, {r: art.precisions(r) for r in ROLES}, True)
    n = len(cfg.connect)
    if n > 1 and len({(u.det, u.est) for u in units}) > 1 and (
            cfg.port or any(cfg.device_app_url(i) for i in range(n))):
        raise BenchError("several devices measured at once share one server per build, so a "
                         "fixed --port or an app URL can serve one build only: add --quick or "
                         "one --pairings (or leave out --port and the app URLs)")
    res = Results()
    if cfg.command:
        res.commands.append(cfg.command)
    outcome: dict[int, tuple[Results | None, str | None, float]] = {}

    def one(i: int, shared: _Prepared) -> None:
        name, ep, t0 = cfg.device_name(i), cfg.connect[i], time.perf_counter()
        try:
            got = _run_pass(cfg, None, endpoint=ep, device=name, shared=shared,
                            app_url=cfg.device_app_url(i))
            outcome[i] = (got, None, time.perf_counter() - t0)
            log.info("bench web: device %s finished in %.0f s", name, outcome[i][2])
        except Exception as e:  # any failure fails this device only
            from playwright.sync_api import Error as PlaywrightError

            msg = first_line(e)
            if not isinstance(e, (BenchError, PlaywrightError, OSError)):
                msg = f"{type(e).__name__}: {msg}"
                log.debug("device %s", name, exc_info=True)
            outcome[i] = (None, msg, time.perf_counter() - t0)
            log.error("bench web: device %s (%s) failed: %s", name, ep, msg)

    t_all = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if n > 1:  # interleaved log lines: say whose they are
            for lg in (log, logging.getLogger("hemoedge.bench.browser")):
                lg.addFilter(_device_tag)
                stack.callback(lg.removeFilter, _device_tag)
        shared = _prepare(cfg, units, stack, camera=False)
        if n > 1:  # one server per build for all devices (fixed --port: one build, see above)
            shared.servers = {}
            for dist in shared.dists.values():
                url, _ = stack.enter_context(serve_counting(dist, cfg.host, cfg.port))
                shared.servers[dist] = url
        threads = [threading.Thread(target=one, args=(i, shared), daemon=True,
                                    name=f"device-{cfg.device_name(i)}") for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            while th.is_alive():  # short joins: Ctrl-C still reaches the main thread
                th.join(0.5)
    wall = time.perf_counter() - t_all
    devices: dict[str, dict[str, Any]] = {}
    for i, ep in enumerate(cfg.connect):
        name = cfg.device_name(i)
        one_res, reason, secs = outcome.get(i, (None, "the device's thread ended early", 0.0))
        entry: dict[str, Any] = {"endpoint": ep, "app_url": cfg.device_app_url(i),
                                 "seconds": round(secs, 1)}
        if one_res is None:
            devices[name] = {**entry, "status": "failed", "reason": reason}
            res.add("web.device.available", "", 0.0, unit="", better="higher", device=name,
                    endpoint=ep)
            continue
        res.metrics += one_res.metrics
        for k, v in one_res.variants.items():
            res.variants.setdefault(k, {}).update(v)
        wb = one_res.env["web_bench"]
        ident = wb.pop("device", {})
        devices[name] = {**entry, "status": "ok", "browser": one_res.env["browser"],
                         "onnxruntime_web": one_res.env["onnxruntime_web"],
                         **{k: v for k, v in ident.items() if k not in ("name", "endpoint")},
                         "web_bench": wb}
        res.env.setdefault("onnxruntime_web", one_res.env["onnxruntime_web"])
        res.add("web.device.available", "", 1.0, unit="", better="higher", device=name,
                endpoint=ep)
    # per device, not top-level web_bench: a merge would replace the local run's settings
    res.env["web_devices"] = devices
    res.env["web_devices_run"] = {"parallel": n > 1, "seconds": round(wall, 1),
                                  "tuned": variant_name(*tuned),
                                  "units": [u.label for u in units],
                                  "shared_server": n > 1}
    return res


def _device_tag(record: logging.LogRecord) -> bool:
    """A log filter: a device thread's lines start with [NAME]."""
    th = threading.current_thread().name
    if th.startswith("device-") and not getattr(record, "device_tagged", False):
        record.msg = f"[{th[len('device-'):]}] {record.msg}"
        record.device_tagged = True
    return True


def _slowdown_ratios(res: Results, passes: list[tuple[float | None, Results]]) -> None:
    """web.slowdown.<role>.latency_ratio: bare session.run p50 at each slowed pass over the first
    pass's (same variant and threads, same run): the proof that the emulation slows the worker."""
    if len(passes) < 2:
        return
    f0, ref = passes[0]
    for f, one in passes[1:]:
        for m in one.metrics:
            if not (m.name.startswith("web.") and m.name.endswith(".latency_ms.p50")):
                continue
            role = m.name.split(".")[1]
            base = next((b for b in ref.metrics if b.name == m.name and b.variant == m.variant
                         and b.params.get("threads") == m.params.get("threads")), None)
            if base is None or not base.value > 0:
                continue
            ratio = m.value / base.value
            asked = (f or 1.0) / (f0 or 1.0)
            res.add(f"web.slowdown.{role}.latency_ratio", m.variant, ratio, unit="x",
                    better="none", n=m.n, **{k: v for k, v in m.params.items()
                                             if k not in VOLATILE_PARAMS},
                    reference_class=base.params.get("device_class"),
                    reference_p50_ms=round(base.value, 3), p50_ms=round(m.value, 3),
                    factor_asked=asked, ratio_over_asked=round(ratio / asked, 3))
            log.info("slowdown %s %s t%s: %.1f -> %.1f ms = %.2fx (asked %.2gx)", role, m.variant,
                     m.params.get("threads"), base.value, m.value, ratio, asked)


@dataclass
class _Prepared:
    """What every device of a parallel run shares: the video, the builds and their servers."""
    video: Path | None  # None: no captures (remote devices), so no fake-camera video
    vinfo: tuple[int, float]
    dists: dict[tuple[str, str], Path]
    servers: dict[Path, str] | None = None  # dist -> URL (None: each unit serves its own)


def _units(cfg: WebBenchConfig, have: dict[str, list[str]], remote: bool
           ) -> tuple[list[Unit], tuple[str, str]]:
    units, tuned = plan(cfg, have)
    if remote:  # the seed is a capture reference: no captures remotely
        units = [u for u in units if u.kind != "seed"]
    if not units:
        raise BenchError(f"shard {cfg.shard} has nothing to run")
    return units, tuned


def _prepare(cfg: WebBenchConfig, units: list[Unit], stack: contextlib.ExitStack,
             camera: bool = True) -> _Prepared:
    """The fake-camera video (camera: a local browser) and one build per pairing, in the work
    folder."""
    from hemoedge.web.build import BuildConfig, build

    work = Path(cfg.workdir) if cfg.workdir else Path(
        stack.enter_context(tempfile.TemporaryDirectory(prefix="hemoedge-web-")))
    work.mkdir(parents=True, exist_ok=True)
    video = (Path(cfg.video) if cfg.video else _make_video(cfg, work)) if camera else None
    vinfo = _y4m_frames(video) if video is not None else (0, 25.0)
    dists: dict[tuple[str, str], Path] = {}
    for u in units:
        if (u.det, u.est) not in dists:
            out = work / f"dist-{u.det}-{u.est}"
            build(BuildConfig(art=Path(cfg.art), detector=u.det, estimator=u.est, out=out,
                              autotune=_autotune_choices(cfg, u)))
            dists[u.det, u.est] = out
    return _Prepared(video, vinfo, dists)


def _run_pass(cfg: WebBenchConfig, slowdown: float | None, endpoint: str | None = None,
              device: str | None = None, shared: _Prepared | None = None,
              app_url: str | None = None) -> Results:
    """One whole pass at one device class (None: no emulation), or on the remote browser at
    `endpoint` (its metrics carry `device` and the browser's identity in their params).
    `shared`: builds (and servers) prepared once for several devices run in parallel."""
    from hemoedge.artifact import Artifact
    from hemoedge.bench.browser import device_class_of

    art = Artifact.load(cfg.art)
    have = {r: art.precisions(r) for r in ROLES}
    units, tuned = _units(cfg, have, endpoint is not None)
    res = Results()
    if cfg.command:
        res.commands.append(cfg.command)
    with contextlib.ExitStack() as stack:
        prep = shared if shared is not None else _prepare(cfg, units, stack)
        video, vinfo, dists = prep.video, prep.vinfo, prep.dists
        bcfg = BrowserConfig(executable=Path(cfg.chromium), video=video,
                             step_timeout_s=cfg.timeout_s * (slowdown or 1.0),
                             cpu_slowdown=slowdown, cpu_mode=cfg.cpu_mode, connect=endpoint)
        t0 = time.perf_counter()
        load_before = [round(x, 2) for x in os.getloadavg()]
        with Chromium(bcfg) as chrome:
            mechanism = chrome.throttle.mechanism if chrome.throttle is not None else None
            r = _Run(cfg, chrome, vinfo, app_url if endpoint is not None else cfg.app_url,
                     prep.servers)
            for rep in range(cfg.repeats):
                k = rep % len(units)
                for u in units[k:] + units[:k]:  # rotate: spread drift over the pairings
                    log.info("bench web: repeat %d/%d, %s", rep + 1, cfg.repeats, u.label)
                    r.unit(u, dists[u.det, u.est], rep)
            version = chrome.version
        log.info("bench web: %d unit(s) x %d repeat(s) in %.0f s", len(units), cfg.repeats,
                 time.perf_counter() - t0)
    pool = r.pool
    res.env.update({
        "browser": f"chromium {version}" if endpoint is None else f"remote {version}",
        "onnxruntime_web": pool.env.get("onnxruntime_web"),
        "cross_origin_isolated": True,  # open_app refuses a page that is not
        "web_bench": {"chromium": str(cfg.chromium), "headless": True, "args": bcfg.args,
                      "threads": list(cfg.threads), "runs": cfg.runs, "warmup": cfg.warmup,
                      "captures": cfg.captures, "repeats": cfg.repeats, "quick": cfg.quick,
                      "seedloop_injected": cfg.seedloop,
                      "video": str(cfg.video) if cfg.video else f"hemoedge data video --hb "
                      f"{cfg.video_hb} --frames {cfg.video_frames}", "video_frames": vinfo[0],
                      "video_fps": vinfo[1], "video_hb": cfg.video_hb,
                      "units": [u.label for u in units], "tuned": variant_name(*tuned),
                      "first_visit": pool.env.get("first_visit", {}),
                      "memory_breakdown": pool.env.get("memory_breakdown", {})},
    })
    for u in units:
        if u.kind == "pairing":  # a "models" unit's build is only a vehicle for its models
            res.variants.setdefault(u.variant, {}).update(
                detector=art.path("detector", u.det).name,
                estimator=art.path("estimator", u.est).name)
        if u.kind != "seed":
            for role, p in zip(ROLES, (u.det, u.est), strict=True):
                if role in u.roles:
                    res.variants.setdefault(variant_name(**{SHORT[role]: p}), {})[role] = \
                        art.path(role, p).name
    emit(cfg, pool, res, tuned, vinfo)
    cls = {"device_class": device_class_of(slowdown), "cpu_slowdown": slowdown or 1.0}
    if mechanism:
        cls["slowdown_mechanism"] = mechanism
    if slowdown is not None:
        # emulated figures only: a run without emulation keeps the params (and so the identity
        # in results files and the gate's baseline) it always had; no device_class = desktop
        for m in res.metrics:
            m.params.update(cls)
    res.env["web_bench"]["device_class"] = cls
    res.env["web_bench"]["load_avg"] = {"before": load_before,
                                        "after": [round(x, 2) for x in os.getloadavg()]}
    if cfg.autotune:
        res.env["web_bench"]["autotune"] = pool.env.get("autotune", {})
    for key, tr in pool.env.get("autotune_trials", {}).items():
        variant, _, t = key.rpartition(" t")
        ks = [k for k in tr["settings"] if k]
        top = max(set(ks), key=ks.count) if ks else None
        p = {"threads": int(t), "setting": top, "settings": tr["settings"],
             "trials": len(tr["settings"]), "tuned_ms": tr["tuned_ms"], **(
                 cls if slowdown is not None else {})}
        res.add("web.autotune.agreement", variant, ks.count(top) / max(len(tr["settings"]), 1),
                unit="", better="higher", n=len(tr["settings"]), **p)
        if tr["tuned_ms"]:
            res.add("web.autotune.decide_ms.max", variant, max(tr["tuned_ms"]), unit="ms",
                    better="lower", n=len(tr["tuned_ms"]), **p)
    if endpoint is not None:
        ident = pool.env.get("device", {})
        dev = {"device": device, "user_agent": ident.get("user_agent"),
               "hardware_concurrency": ident.get("hardware_concurrency")}
        for m in res.metrics:
            m.params.update(dev)
        res.env["web_bench"].update(device={**ident, "name": device, "endpoint": endpoint},
                                    headless=None, args=None, chromium=None, video=None,
                                    video_frames=None, video_fps=None, video_hb=None)
    return res


def by_device_class(res: Results, slowdown: float | None) -> Results:
    """The metrics of one device class (no device_class param = desktop, no emulation)."""
    from hemoedge.bench.browser import device_class_of

    name = device_class_of(slowdown)
    out = Results(env=res.env, variants=res.variants, commands=res.commands)
    out.metrics = [m for m in res.metrics if m.params.get("device_class", "desktop") == name]
    return out


def _autotune_choices(cfg: WebBenchConfig, u: Unit) -> tuple[str, ...]:
    """What a pairing's build lets the app's auto-tune choose from (the seed ships none)."""
    return () if u.kind == "seed" else cfg.autotune


def _make_video(cfg: WebBenchConfig, work: Path) -> Path:
    from hemoedge.data.video import write_video

    if cfg.video_hb is None:
        raise BenchError("need video_hb (g/dL) to generate the fake-camera video")
    out = work / f"hand-{cfg.video_hb:g}-{cfg.video_frames}.y4m"
    if not out.is_file():
        log.info("bench web: writing the fake-camera video %s", out)
        write_video(out, cfg.video_hb, cfg.video_frames, 0)
    return out


def config_from_args(args: Any) -> WebBenchConfig:
    kw: dict[str, Any] = {
        "art": Path(args.art), "threads": tuple(args.threads or (1, 2)),
        "capture": bool(getattr(args, "capture", False)), "shard": getattr(args, "shard", None),
        "seedloop": bool(getattr(args, "seedloop", False)),
        "command": invocation(args, command_line(args)),
    }
    if getattr(args, "pairings", None):
        kw["pairings"] = tuple(tuple(p) for p in args.pairings)
    if getattr(args, "no_seed", False):
        kw["seed"] = False
    slow = slowdowns_from_args(args)
    if slow != (None,):
        kw["cpu_slowdowns"] = slow
    if getattr(args, "slowdown_mode", None):
        kw["cpu_mode"] = args.slowdown_mode
    if getattr(args, "autotune", None):
        from hemoedge.web.build import parse_autotune

        kw["autotune"] = parse_autotune(args.autotune)
    if getattr(args, "autotune_trials", None):
        kw["autotune_trials"] = int(args.autotune_trials)
    connect = list(getattr(args, "connect", None) or ())
    names = list(getattr(args, "device_name", None) or ())
    if len(names) > len(connect):
        raise BenchError(f"{len(names)} --device-name(s) for {len(connect)} --connect "
                         "endpoint(s)" if connect else
                         "--device-name names a --connect endpoint's device; no --connect given")
    if connect or getattr(args, "devices", None):
        names += [""] * (len(connect) - len(names))
        urls = [""] * len(connect)
        if getattr(args, "devices", None):
            for d in load_devices(Path(args.devices)):
                connect.append(d["endpoint"])
                names.append(d["name"])
                urls.append(d.get("app_url", ""))
        kw["connect"], kw["device_names"] = tuple(connect), tuple(names)
        if any(urls):
            kw["device_app_urls"] = tuple(urls)
    if getattr(args, "host", None):
        kw["host"] = args.host
    if getattr(args, "port", None):
        kw["port"] = int(args.port)
    if getattr(args, "app_url", None):
        kw["app_url"] = args.app_url
    return WebBenchConfig.quick_form(**kw) if getattr(args, "quick", False) else \
        WebBenchConfig(**kw)


DEVICE_KEYS = ("name", "endpoint", "app_url")


def load_devices(path: Path) -> list[dict[str, str]]:
    """A devices file (TOML): one `[[device]]` table per device with `name`, `endpoint`
    (ws://... or http://HOST:PORT, as --connect) and optionally `app_url` (the URL that
    device's browser opens). Any error is one BenchError line naming the file (exit 2)."""
    import tomllib

    from hemoedge.bench.browser import endpoint_kind

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BenchError(f"--devices {path}: cannot read it ({e.strerror or e})") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"--devices {path}: not valid TOML: {first_line(e)}") from e
    extra = sorted(set(data) - {"device"})
    if extra:
        raise BenchError(f"--devices {path}: unknown top-level key {extra[0]!r}; expected "
                         "[[device]] tables only")
    devs = data.get("device")
    if not isinstance(devs, list) or not devs or not all(isinstance(d, dict) for d in devs):
        raise BenchError(f"--devices {path}: no devices; expected one [[device]] table per "
                         "device with name and endpoint")
    seen: set[str] = set()
    out = []
    for k, d in enumerate(devs, 1):
        where = f"--devices {path}: device {k}"
        bad = sorted(set(d) - set(DEVICE_KEYS))
        if bad:
            raise BenchError(f"{where}: unknown key {bad[0]!r} (expected "
                             f"{', '.join(DEVICE_KEYS)})")
        for key in ("name", "endpoint"):
            if not isinstance(d.get(key), str) or not d[key].strip():
                raise BenchError(f"{where}: needs {key} = \"...\" (a non-empty string)")
        if "app_url" in d and (not isinstance(d["app_url"], str)
                               or not d["app_url"].startswith(("http://", "https://"))):
            raise BenchError(f"{where} ({d['name']}): app_url must be an http(s):// URL, got "
                             f"{d['app_url']!r}")
        try:
            endpoint_kind(d["endpoint"])
        except BenchError as e:
            raise BenchError(f"{where} ({d['name']}): {e}") from None
        if d["name"] in seen:
            raise BenchError(f"{where}: the name {d['name']!r} is used twice")
        seen.add(d["name"])
        out.append({k: d[k].strip() for k in DEVICE_KEYS if k in d})
    return out


def slowdowns_from_args(args: Any) -> tuple[float | None, ...]:
    """--device-class NAMES and --cpu-slowdown FACTORS -> the passes, in the order given
    (classes first); (None,) when neither is given."""
    from hemoedge.bench.browser import DEVICE_CLASSES

    out: list[float | None] = []
    for name in (getattr(args, "device_class", None) or "").split(","):
        name = name.strip()
        if not name:
            continue
        if name not in DEVICE_CLASSES:
            raise BenchError(f"unknown --device-class {name!r}; expected one of "
                             f"{', '.join(DEVICE_CLASSES)} (or --cpu-slowdown F)")
        out.append(DEVICE_CLASSES[name])
    out += list(getattr(args, "cpu_slowdown", None) or [])
    return tuple(dict.fromkeys(out)) or (None,)


def command_line(args: Any) -> str:
    argv = ["bench", "web", str(args.art), "--threads", ",".join(map(str, args.threads or (1, 2)))]
    if getattr(args, "capture", False):
        argv.append("--capture")
    if getattr(args, "quick", False):
        argv.append("--quick")
    if getattr(args, "shard", None):
        argv += ["--shard", "/".join(map(str, args.shard))]
    if getattr(args, "seedloop", False):
        argv.append("--seedloop")
    if getattr(args, "pairings", None):
        argv += ["--pairings", ",".join(f"{d}:{e}" for d, e in args.pairings)]
    if getattr(args, "no_seed", False):
        argv.append("--no-seed")
    if getattr(args, "device_class", None):
        argv += ["--device-class", args.device_class]
    if getattr(args, "cpu_slowdown", None):
        argv += ["--cpu-slowdown", ",".join(f"{f:g}" for f in args.cpu_slowdown)]
    if getattr(args, "slowdown_mode", None):
        argv += ["--slowdown-mode", args.slowdown_mode]
    if getattr(args, "autotune", None):
        argv += ["--autotune", args.autotune]
    if getattr(args, "autotune_trials", None):
        argv += ["--autotune-trials", str(args.autotune_trials)]
    for ep in getattr(args, "connect", None) or ():
        argv += ["--connect", ep]
    for name in getattr(args, "device_name", None) or ():
        argv += ["--device-name", name]
    if getattr(args, "devices", None):
        argv += ["--devices", str(args.devices)]
    if getattr(args, "host", None) and args.host != "127.0.0.1":
        argv += ["--host", args.host]
    if getattr(args, "port", None):
        argv += ["--port", str(args.port)]
    if getattr(args, "app_url", None):
        argv += ["--app-url", args.app_url]
    if getattr(args, "results", None):
        argv += ["--results", str(args.results)]
    return "hemoedge " + shlex.join(argv)


def results_path(args: Any) -> Path:
    """--results, else ART/results.json; emulated device classes and remote devices
    (--connect, --devices) go to ART/results.devices.json by default, so the desktop figures the
    gate reads stay on their own (a desktop budget would also read a remote device's figure)."""
    if getattr(args, "results", None):
        return Path(args.results)
    other = slowdowns_from_args(args) != (None,) or bool(
        getattr(args, "connect", None) or getattr(args, "devices", None))
    return Path(args.art) / ("results.devices.json" if other else "results.json")


def cli(args: Any) -> int:
    from hemoedge.bench.browser import device_class_of

    cfg = config_from_args(args)
    try:
        new = run(cfg)
    except HemoedgeError:
        raise
    except OSError as e:  # e.g. the work folder or the video could not be written
        raise BenchError(f"bench web: {e}") from e
    out = results_path(args)
    if cfg.connect:
        return _cli_remote(cfg, new, out)
    append_stage(out, new)
    tuned = new.env["web_bench"]["tuned"]
    print(f"bench web ({new.env['browser']}, onnxruntime-web {new.env['onnxruntime_web']}, "
          f"crossOriginIsolated): targets, value [95 % interval]")
    for f in cfg.cpu_slowdowns:
        sub = by_device_class(new, f)
        if len(cfg.cpu_slowdowns) > 1 or f is not None:
            env = next((p for p in new.env.get("web_bench_passes", [new.env["web_bench"]])
                        if p.get("device_class", {}).get("cpu_slowdown") == (f or 1.0)), {})
            load = env.get("load_avg")
            print(f"device class {device_class_of(f)} (cpu slowdown {f or 1:g}x"
                  + (f"; load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} "
                     "after" if load else "") + "):")
        print("\n".join(summary_lines(sub, tuned)))
    for m in new.metrics:
        if m.name.startswith("web.slowdown."):
            print(f"  {m.name} [{m.variant}] threads {m.params.get('threads')}: "
                  f"{m.params['reference_p50_ms']:.1f} -> {m.params['p50_ms']:.1f} ms = "
                  f"{m.value:.2f}x (asked {m.params['factor_asked']:g}x; "
                  f"{m.params['ratio_over_asked']:.2f} of it)")
    print(f"{len(new.metrics)} metrics appended to {out}")
    return 0


EXIT_DEVICE_FAILED = 3  # some devices failed, the others' figures are written


def _cli_remote(cfg: WebBenchConfig, new: Results, out: Path) -> int:
    """Write the devices' figures (and the failed devices' entries), one block per device.
    Exit 0 when every device finished, 3 (EXIT_DEVICE_FAILED) when some failed (after writing
    the others' figures), 2 (BenchError) when every device failed."""
    old = Results.load_or_new(out).env.get("web_devices", {}) if out.is_file() else {}
    devices = new.env.get("web_devices", {})
    new.env["web_devices"] = {**old, **devices}  # devices of earlier runs stay listed
    append_stage(out, new)
    run_env = new.env.get("web_devices_run", {})
    tuned = run_env.get("tuned", "")
    for name, d in devices.items():
        if d["status"] != "ok":
            print(f"device {name} ({d['endpoint']}): failed: {d['reason']}")
            continue
        print(f"device {name} ({d['endpoint']}): {d['browser']}, "
              f"hardwareConcurrency {d.get('hardware_concurrency')}, onnxruntime-web "
              f"{d.get('onnxruntime_web')}; {d.get('user_agent')}; {d['seconds']:.0f} s")
        sub = Results(env=new.env, variants=new.variants, commands=new.commands)
        sub.metrics = [m for m in new.metrics if m.params.get("device") == name
                       and m.name != "web.device.available"]
        print("\n".join(summary_lines(sub, tuned)))
    failed = [n for n, d in devices.items() if d["status"] != "ok"]
    print(f"{len(new.metrics)} metrics appended to {out}; {len(devices) - len(failed)} of "
          f"{len(devices)} device(s) finished"
          + (f" in parallel in {run_env['seconds']:.0f} s" if run_env.get("parallel") else ""))
    if devices and len(failed) == len(devices):
        raise BenchError(f"bench web: every device failed ({len(devices)}): "
                         + "; ".join(f"{n}: {d['reason']}" for n, d in devices.items()))
    if failed:
        print(f"bench web: device(s) failed: {', '.join(failed)} (exit "
              f"{EXIT_DEVICE_FAILED})", file=sys.stderr)
        return EXIT_DEVICE_FAILED
    return 0


__all__ = ["WebBenchConfig", "cli", "plan", "run"]
