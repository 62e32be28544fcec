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

With `eps` (--ep wasm,webgpu,webnn) every unit is measured once per onnxruntime-web execution
provider: the non-WASM ones build the app with `webapp build --ep`, their figures carry ep=NAME
in the variant, and web.ep.available says whether the provider really ran (webep).

This module holds the config and the passes; the units and the plan are in webplan, the server
and the wire log in webserve, one unit's pages in webrun, remote devices in webdevices,
execution providers in webep, the command line in webcli (all importable from here).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemoedge.bench.browser import CHROMIUM, BrowserConfig, Chromium, check_executable
from hemoedge.bench.webcli import (
    by_device_class,
    cli,
    command_line,
    config_from_args,
    results_path,
    slowdowns_from_args,
)
from hemoedge.bench.webdevices import DEVICE_KEYS, EXIT_DEVICE_FAILED, load_devices, run_remote
from hemoedge.bench.webep import emit_ep, launch_args
from hemoedge.bench.webmetrics import CAMERA_FAKE, CAMERA_HOOK, emit, summary_lines
from hemoedge.bench.webplan import (
    DEFAULT_DET,
    DEFAULT_EST,
    SEED,
    TUNED,
    Unit,
    default_pairings,
    plan,
)
from hemoedge.bench.webrun import (
    INFO,
    LONGTASKS,
    MEMORY,
    READY,
    _make_video,
    _Run,
    _y4m_frames,
    open_app,
    run_capture,
    start_camera,
)
from hemoedge.bench.webserve import WireLog, serve_counting
from hemoedge.errors import BenchError
from hemoedge.names import EPS, ROLES, WASM
from hemoedge.report.results import VOLATILE_PARAMS, Results, variant_name
from hemoedge.web.testvideo import FED_FRAMES, JPEG_QUALITY, TestVideo, y4m_rgb

log = logging.getLogger(__name__)


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
    # onnxruntime-web execution providers, each unit once per provider (hemoedge.web.ep): wasm is
    # the app as shipped; webgpu / webnn figures carry ep=NAME in their variant, and where the
    # provider is unavailable web.ep.available = 0 with the reason instead of any timing
    eps: tuple[str, ...] = (WASM,)
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
        if not self.eps or any(ep not in EPS for ep in self.eps):
            raise BenchError(f"--ep needs some of {', '.join(EPS)}, got {list(self.eps)}")
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


# ---------------------------------------------------------------------------- the passes
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
    video: Path  # the Y4M: the local fake camera's file, or the source of `feed`
    vinfo: tuple[int, float]  # (frames the camera loops, fps)
    dists: dict[tuple[str, str, str], Path]  # (det, est, ep) -> the build
    servers: dict[Path, str] | None = None  # dist -> URL (None: each unit serves its own)
    # remote devices: the video's first frames as JPEG, served next to the app and fed into it
    # through the bench hook (no fake camera there); None for a local run
    feed: TestVideo | None = None


def _units(cfg: WebBenchConfig, have: dict[str, list[str]], remote: bool
           ) -> tuple[list[Unit], tuple[str, str]]:
    units, tuned = plan(cfg, have)
    if remote:  # the seed reference is this machine's (a remote run compares devices)
        units = [u for u in units if u.kind != "seed"]
    if not units:
        raise BenchError(f"shard {cfg.shard} has nothing to run")
    return units, tuned


def _prepare(cfg: WebBenchConfig, units: list[Unit], stack: contextlib.ExitStack,
             remote: bool = False) -> _Prepared:
    """The test video (a local browser's fake camera; for remote devices its first frames as
    JPEG, `feed`) and one build per pairing, in the work folder."""
    from hemoedge.web.build import BuildConfig, build

    work = Path(cfg.workdir) if cfg.workdir else Path(
        stack.enter_context(tempfile.TemporaryDirectory(prefix="hemoedge-web-")))
    work.mkdir(parents=True, exist_ok=True)
    video = Path(cfg.video) if cfg.video else _make_video(cfg, work)
    vinfo = _y4m_frames(video)
    feed = None
    if remote:
        n = min(vinfo[0], FED_FRAMES)
        feed = TestVideo(lambda: y4m_rgb(video, n)[0], vinfo[1], f"bench web {video.name}")
        vinfo = (n, vinfo[1])
    dists: dict[tuple[str, str, str], Path] = {}
    for u in units:
        if (u.det, u.est, u.ep) not in dists:
            out = work / (f"dist-{u.det}-{u.est}" + ("" if u.ep == WASM else f"-{u.ep}"))
            build(BuildConfig(art=Path(cfg.art), detector=u.det, estimator=u.est, out=out,
                              autotune=_autotune_choices(cfg, u), ep=u.ep))
            dists[u.det, u.est, u.ep] = out
    return _Prepared(video, vinfo, dists, feed=feed)


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
        prep = shared if shared is not None else _prepare(cfg, units, stack,
                                                          remote=endpoint is not None)
        video, vinfo, dists = prep.video, prep.vinfo, prep.dists
        bcfg = BrowserConfig(executable=Path(cfg.chromium),
                             video=video if endpoint is None else None,
                             step_timeout_s=cfg.timeout_s * (slowdown or 1.0),
                             cpu_slowdown=slowdown, cpu_mode=cfg.cpu_mode, connect=endpoint,
                             extra_args=launch_args(cfg.eps))
        t0 = time.perf_counter()
        load_before = [round(x, 2) for x in os.getloadavg()]
        with Chromium(bcfg) as chrome:
            mechanism = chrome.throttle.mechanism if chrome.throttle is not None else None
            r = _Run(cfg, chrome, vinfo, app_url if endpoint is not None else cfg.app_url,
                     prep.servers, prep.feed)
            for rep in range(cfg.repeats):
                k = rep % len(units)
                for u in units[k:] + units[:k]:  # rotate: spread drift over the pairings
                    log.info("bench web: repeat %d/%d, %s", rep + 1, cfg.repeats, u.label)
                    r.unit(u, dists[u.det, u.est, u.ep], rep)
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
                    res.variants.setdefault(u.model_variant(role), {})[role] = \
                        art.path(role, p).name
    emit(cfg, pool, res, tuned, vinfo, CAMERA_HOOK if prep.feed is not None else CAMERA_FAKE)
    emit_ep(pool, res)
    if cfg.eps != (WASM,):
        res.env["web_bench"]["eps"] = list(cfg.eps)
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
             "trials": len(tr["settings"]), "tuned_ms": tr["tuned_ms"],
             "timings": tr.get("timings", []), **(
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
        res.env["web_bench"].update(
            device={**ident, "name": device, "endpoint": endpoint}, headless=None, args=None,
            chromium=None, camera=f"{CAMERA_HOOK}: the first {vinfo[0]} frames of "
            f"{res.env['web_bench']['video']} as JPEG (q{JPEG_QUALITY}), looped at "
            f"{vinfo[1]:g} fps by the app's feedCamera")
    return res


def _autotune_choices(cfg: WebBenchConfig, u: Unit) -> tuple[str, ...]:
    """What a pairing's build lets the app's auto-tune choose from (the seed ships none)."""
    return () if u.kind == "seed" else cfg.autotune



__all__ = ["DEFAULT_DET", "DEFAULT_EST", "DEVICE_KEYS", "EXIT_DEVICE_FAILED", "INFO", "LONGTASKS",
           "MEMORY", "READY", "SEED", "TUNED", "Unit", "WebBenchConfig", "WireLog",
           "by_device_class", "cli", "command_line", "config_from_args", "default_pairings",
           "load_devices", "open_app", "plan", "results_path", "run", "run_capture", "run_remote",
           "serve_counting", "slowdowns_from_args", "start_camera", "summary_lines"]
