"""One unit of `hemoedge bench web`: the page-side steps (open the app, wait for the service
worker, start the camera, run a capture), the fake-camera video, and `_Run`, which measures a
unit's first-visit, warm and offline figures and one fresh page per thread count into a Pool."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hemoedge.bench import webcapture as wc
from hemoedge.bench.browser import Chromium, Page
from hemoedge.bench.webep import note_page, page_status
from hemoedge.bench.webmetrics import Pool
from hemoedge.bench.webserve import WireLog, _Counter, _first_visit, feed_url, serve_counting
from hemoedge.errors import BenchError
from hemoedge.names import ROLES, WASM

if TYPE_CHECKING:
    from hemoedge.bench.web import Unit, WebBenchConfig
    from hemoedge.web.testvideo import TestVideo

# bench web's one logger: a remote run tags its lines per device (webdevices._device_tag)
log = logging.getLogger("hemoedge.bench.web")

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


def feed_camera(page: Page, video: dict, what: str, timeout_s: float) -> dict:
    """A browser without a fake camera: the test video's frames ({frames, fps, url}) become
    the app's camera through its bench hook (feedCamera, webapp/src/testcamera.js), the same
    stand-in camera the bench page uses; then start_camera as usual."""
    got = page.evaluate(f"window.__hemoedgeBench.feedCamera({json.dumps(video)})",
                        f"{what}: feeding the test video through the bench hook", timeout_s)
    if not got or got.get("frames") != video["frames"]:
        raise BenchError(f"{what}: the bench hook took {got} of the test video's "
                         f"{video['frames']} frames")
    return got


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


def _create_ms(session: dict, role: str, ep: str) -> float:
    """InferenceSession.create of a role as the worker timed it; with a provider other than
    WASM, the create alone (the worker's createMs there also holds the first run, ep.js)."""
    if ep != WASM:
        got = ((session.get("ep") or {}).get("sessions") or {}).get(role) or {}
        if got.get("createMs") is not None:
            return float(got["createMs"])
    return float(session["timings"][role]["createMs"])


# ---------------------------------------------------------------------------- the run
def _make_video(cfg: WebBenchConfig, work: Path) -> Path:
    from hemoedge.data.video import write_video

    if cfg.video_hb is None:
        raise BenchError("need video_hb (g/dL) to generate the fake-camera video")
    out = work / f"hand-{cfg.video_hb:g}-{cfg.video_frames}.y4m"
    if not out.is_file():
        log.info("bench web: writing the fake-camera video %s", out)
        write_video(out, cfg.video_hb, cfg.video_frames, 0)
    return out


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
                 app_url: str | None = None, servers: dict[Path, str] | None = None,
                 feed: TestVideo | None = None):
        self.cfg, self.chrome, self.video = cfg, chrome, video
        self.pool = Pool()
        self.t = cfg.timeout_s
        self.remote = chrome.remote  # no fake camera there (feed instead), no memory figure
        # remote: the test video's frames, served next to the app and fed through the hook
        self.feed = feed
        self.feed_spec = feed.spec(video[0], feed_url()) if feed is not None else None
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
        with serve_counting(dist, cfg.host, cfg.port, self.app_url, self.feed) as served:
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
            # a provider that fell back to WASM: no start times under its variant (the bytes
            # of the first visit are the build's, whichever provider runs)
            on_ep = all(page_status(info, unit.ep)["ok"].values())
            if on_ep:
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
            if not on_ep:
                log.info("%s: first visit %d bytes on the wire; %s unavailable, no start times",
                         unit.label, fv["bytes"], unit.ep)
                return
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
            ep_st = note_page(pool, unit, threads, info) if not seed else \
                page_status(info, WASM)
            ok = ep_st["ok"]  # the models that really ran on the unit's provider
            if not all(ok.values()):
                log.warning("%s: %s unavailable for %s: %s", what, unit.ep,
                            ", ".join(r for r in ROLES if not ok[r]), ep_st["reason"])
            pool.effective[unit.variant, key_t].add(eff)
            if unit.kind == "pairing" and all(ok.values()):
                pool.timings["web.models_ready_ms", unit.variant, key_t][repeat].append(
                    sess["totalMs"])
            if not seed:
                for role, prec in zip(ROLES, (unit.det, unit.est), strict=True):
                    if not ok[role]:
                        continue
                    mv = unit.model_variant(role)
                    pool.effective[mv, key_t].add(eff)
                    pool.timings[f"web.{role}.session_ms", mv, key_t][repeat].append(
                        _create_ms(sess, role, unit.ep))
                    if role in unit.roles and (role, prec, threads, repeat, unit.ep) \
                            not in pool.done:
                        times = page.evaluate(
                            f"window.__hemoedgeBench.runModel('{role}', {cfg.runs}, "
                            f"{cfg.warmup})", f"{what}: {role} {prec} session.run x{cfg.runs}")
                        pool.timings[f"web.{role}.latency_ms", mv, key_t][repeat] += times
                        pool.done.add((role, prec, threads, repeat, unit.ep))
                        log.info("%s: %s %s p50 %.1f ms", what, role, prec,
                                 float(np.median(times)))
            camera = not self.remote or self.feed_spec is not None
            if unit.kind in ("pairing", "seed") and camera and all(ok.values()):
                if self.remote:
                    feed_camera(page, self.feed_spec, what, self.t)
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
            if threads == 1 and not seed and unit.kind == "pairing" and not self.remote and \
                    all(ok.values()):
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
                # most threads first: a 2-thread page that followed a 1-thread page in the same
                # browser lost a core at times, the other way round nothing changed (measured:
                # docs/bench-web.md, "The 2-thread anomaly")
                threads = (1,) if unit.kind == "seed" else sorted(self.cfg.threads, reverse=True)
                for t in threads:
                    self.page_figures(unit, url, t, repeat, ctx, guard)
            finally:
                self.chrome.close_context(ctx)
            if unit.kind == "pairing" and self.cfg.autotune and self.cfg.autotune_trials:
                self.autotune_trials(unit, url)

    def autotune_trials(self, unit: Unit, url: str) -> None:
        """Auto-tune's reproducibility: the app in `autotune_trials` fresh contexts (empty
        storage, so each one tunes), at the first thread count; the settings chosen."""
        t = self.cfg.threads[0]
        keys, ms, timed = [], [], []
        for i in range(self.cfg.autotune_trials):
            ctx, guard = self.chrome.new_context(url, camera=False)
            try:
                page = self.chrome.page(ctx, guard)
                info = open_app(page, url, f"?bench=1&threads={t}",
                                f"{unit.label} auto-tune trial {i + 1}", self.t)
                at = info.get("autotune") or {}
                keys.append(at.get("key"))
                ms.append(at.get("tunedMs"))
                timed.append(_tune_times(at.get("timings")))
                page.close()
            finally:
                self.chrome.close_context(ctx)
            log.info("%s t%d auto-tune trial %d: %s in %.0f ms", unit.label, t, i + 1, keys[-1],
                     ms[-1] or float("nan"))
        self.pool.env.setdefault("autotune_trials", {})[f"{unit.variant} t{t}"] = {
            "settings": keys, "tuned_ms": [round(x, 1) for x in ms if x is not None],
            "timings": timed}


def _tune_times(timings) -> dict | None:
    """The model times one tune decided on (ms, the least-disturbed run of each), rounded."""
    if not isinstance(timings, dict):
        return None
    out = {f"{role}.{prec}": round(float(v), 1) for role in ("detector", "estimator")
           for prec, v in (timings.get(role) or {}).items() if isinstance(v, (int, float))}
    if isinstance(timings.get("pre"), (int, float)):
        out["pre"] = round(float(timings["pre"]), 1)
    if isinstance(timings.get("runs"), dict):  # every timed run, to judge the noise
        out["runs"] = {k: v for k, v in timings["runs"].items() if isinstance(v, list)}
    return out
