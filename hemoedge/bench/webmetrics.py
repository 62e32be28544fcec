"""Turning the browser benchmark's raw samples into results.json metrics (hemoedge bench web).

Pooling: every timing is pooled over repeats (n, mean, p50, p90, p99); the p50's ci95 is the
bootstrap interval of the median widened to cover every repeat's own median, because on a
shared machine the drift between repeats is larger than the within-run interval;
params.repeats holds the per-repeat medians and params.spread_pct their range over the median.
Raw samples go on the p50 (params.samples) so the gate can bootstrap ratios.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hemoedge.bench import webcapture as wc
from hemoedge.bench.stats import summarize
from hemoedge.report.results import Results, variant_name

log = logging.getLogger(__name__)

FRAMES, INTERVAL_MS = 30, 80.0  # webapp/src/capture.js CAPTURE
# params.camera of the capture-derived figures: how the frames reached the app
CAMERA_FAKE = "fake-camera"  # Chromium's --use-file-for-fake-video-capture (a local run)
CAMERA_HOOK = "bench-hook"  # the bench hook's feedCamera (testcamera.js): remote, bench page
TARGETS = {  # the app's targets, on this 2-core machine (reported here, gated by `hemoedge gate`)
    "frame_ms": 35.0, "speedup": 2.5, "interval_dev": 1.0, "max_dev": 10.0, "dropped": 0,
    "result_ms": 250.0, "cold_ms": 2000.0, "offline_ms": 1000.0,
}


@dataclass
class Pool:
    """(name, variant, threads) -> repeat -> samples; plus single per-page figures."""

    timings: dict[tuple, dict[int, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    values: dict[tuple, list[float]] = field(default_factory=lambda: defaultdict(list))
    frames: dict[tuple, wc.FrameSamples] = field(default_factory=dict)
    captures: dict[tuple, list[dict]] = field(default_factory=lambda: defaultdict(list))
    effective: dict[tuple, set[int]] = field(default_factory=lambda: defaultdict(set))
    done: set[tuple] = field(default_factory=set)  # (role, precision, threads, repeat, ep) timed
    env: dict[str, Any] = field(default_factory=dict)

    def frame(self, key: tuple) -> wc.FrameSamples:
        return self.frames.setdefault(key, wc.FrameSamples())


def _bootstrap_ci(x: list[float], stat=np.median, seed: int = 0) -> list[float]:
    a = np.asarray(x, float)
    if a.size < 2 or np.ptp(a) == 0:
        v = float(stat(a)) if a.size else float("nan")
        return [v, v]
    from scipy.stats import bootstrap

    r = bootstrap((a,), stat, n_resamples=2000, confidence_level=0.95, method="percentile",
                  vectorized=True, axis=-1, rng=np.random.default_rng(seed))
    return [float(r.confidence_interval.low), float(r.confidence_interval.high)]


def _ratio_ci(a: list[float], b: list[float], seed: int = 0) -> list[float]:
    """Bootstrap 95 % interval of median(a) / median(b), two independent samples."""
    from scipy.stats import bootstrap

    def stat(x, y, axis=-1):
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    r = bootstrap((np.asarray(a, float), np.asarray(b, float)), stat, n_resamples=2000,
                  confidence_level=0.95, method="percentile", vectorized=True,
                  rng=np.random.default_rng(seed))
    return [float(r.confidence_interval.low), float(r.confidence_interval.high)]


def emit_timing(res: Results, prefix: str, variant: str, per_repeat: dict[int, list[float]],
                 **params: Any) -> list:
    groups = [v for _, v in sorted(per_repeat.items()) if v]
    pooled = [x for g in groups for x in g]
    if not pooled:
        return []
    s = summarize(pooled)
    medians = [float(np.median(g)) for g in groups]
    extra: dict[str, Any] = {}
    if len(groups) > 1:
        extra = {"repeats": [round(m, 3) for m in medians],
                 "spread_pct": round(100 * (max(medians) - min(medians)) / s.p50, 1)}
    ms = s.add_to(res, prefix, variant, **params, **extra)
    p50 = ms[1]
    if len(groups) > 1:  # widen to cover every repeat's median (see the module docstring)
        p50.ci95 = [min(p50.ci95[0], *medians), max(p50.ci95[1], *medians)]
    p50.params["samples"] = [round(x, 2) for x in pooled]
    return ms


def emit_value(res: Results, name: str, variant: str, values: list[float], unit: str,
                better: str, **params: Any):
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return None
    ci = _bootstrap_ci(vals) if len(vals) >= 3 else [min(vals), max(vals)]
    if len(vals) > 1:
        params = {**params, "values": [round(v, 3) for v in vals]}
    return res.add(name, variant, float(np.median(vals)), unit=unit, better=better,
                   n=len(vals), ci95=ci, **params)


def emit(cfg: Any, pool: Pool, res: Results, tuned: tuple[str, str],
             video: tuple[int, float], camera: str = CAMERA_FAKE) -> None:
    """Every figure of a pool; the capture-derived ones (web.frame*, web.capture.*, the seed's)
    carry `camera`: how frames reached the app (CAMERA_FAKE or CAMERA_HOOK)."""
    cam = {"camera": camera}
    def thread_params(variant: str, t: int) -> dict[str, Any]:
        eff = sorted(pool.effective.get((variant, t), {t}))
        p: dict[str, Any] = {"threads": t, "threads_effective": eff[0] if len(eff) == 1 else eff}
        if cfg.seedloop:
            p["loop"] = "seedloop (injected regression)"
        return p

    for (name, variant, t), per_rep in sorted(pool.timings.items()):
        extra = {"wasm_start": True} if name == "web.detector.session_ms" else {}
        ms = emit_timing(res, name, variant, per_rep, **thread_params(variant, t), **extra)
        if not name.endswith("latency_ms"):  # one figure per page: keep only the p50
            for x in ms:
                if not x.name.endswith(".p50"):
                    res.metrics.remove(x)

    seed_key = next((k for k in pool.frames if k[0] == "web.seed"), None)
    seed = pool.frames.get(seed_key) if seed_key else None
    for (kind, variant, t), fs in sorted(pool.frames.items()):
        tp = thread_params(variant, t) if kind == "web" else {
            "threads": 1, "threads_effective": 1, "detect_every": 1, "pairing": "det=fp32,est=fp32",
            "loop": "sequential (seedloop)"}
        tp.update(cam)
        if not fs.cycle:
            log.warning("%s %s t%d: no complete frame cycle recorded", kind, variant, t)
            continue
        per_rep = _by_repeat(pool.captures[variant, t], "cycle")
        emit_timing(res, f"{kind}.frame_ms", variant, per_rep, **tp)
        if kind == "web":
            full = _by_repeat(pool.captures[variant, t], "full")
            emit_timing(res, "web.frame_full_ms", variant, full, **tp)
            for stage, xs in (("pixels", fs.pixels), ("preprocess", fs.preprocess),
                              ("detector", fs.detector), ("estimator", fs.estimator)):
                if xs:
                    s = summarize(xs)
                    res.add(f"web.frame.{stage}_ms.p50", variant, s.p50, unit="ms",
                            better="lower", n=s.n, ci95=list(s.ci95), **tp)
            res.add("web.frame.hb_rate", variant, fs.with_hb / max(fs.frames, 1), unit="",
                    better="higher", n=fs.frames, **tp)
            if fs.queue:  # grab (createImageBitmap) + transfer + waiting behind earlier frames
                s = summarize(fs.queue)
                res.add("web.capture.queue_ms.p50", variant, s.p50, unit="ms", better="lower",
                        n=s.n, ci95=list(s.ci95), **tp, p90=round(s.p90, 2),
                        max=round(max(fs.queue), 2))
            if seed is not None and seed.cycle:
                a, b = seed.cycle, fs.cycle
                res.add("web.speedup_vs_seed", variant, float(np.median(a) / np.median(b)),
                        unit="x", better="higher", n=min(len(a), len(b)), ci95=_ratio_ci(a, b),
                        **tp, tuned=(variant == variant_name(*tuned)))

    for (name, variant, t), vals in sorted(pool.values.items()):
        unit, better = ("bytes", "lower") if name.endswith("bytes") else ("ms", "lower")
        if name in ("web.first_visit.requests", "web.first_visit.duplicate_urls"):
            unit = ""
        emit_value(res, name, variant, vals, unit, better, **thread_params(variant, t))
        if name == "web.autotune.decide_ms":
            runs = pool.env.get("autotune", {}).get(f"{variant} t{t}", [])
            keys = [r["key"] for r in runs if r.get("key")]
            res.metrics[-1].params.update(
                setting=max(set(keys), key=keys.count) if keys else None, settings=keys,
                detect_every=(runs[-1].get("choice") or {}).get("detectEvery") if runs else None,
                budget_ms=3000)
        if name == "web.first_visit.bytes":
            wire = pool.env.get("first_visit", {}).get(variant, {}).get("wire", {})
            res.metrics[-1].params.update(
                method="response headers + encoded bodies of every request that crossed the "
                       "network (Playwright network events, CDP encodedDataLength) until the "
                       "service worker has every file of the build in its cache",
                **{k: wire[k] for k in ("requests", "duplicate_urls", "encodings") if k in wire})
        if name == "web.first_visit_bytes":
            fv = pool.env.get("first_visit", {}).get(variant, {})
            res.metrics[-1].params.update({k: fv[k] for k in ("requests", "unique_bytes",
                                                              "fetched_twice") if k in fv})
            if fv:
                res.add("web.first_visit_bytes_gzip", variant, fv["gzip_bytes"], unit="bytes",
                        better="lower", threads=t, method="gzip -6 of every response body, "
                        "as a compressing server would send them")

    for (variant, t), caps in sorted(pool.captures.items()):
        seed_ref = variant == ""
        if cfg.capture or seed_ref:
            _capture_metrics(cfg, res, variant, t, caps, video, seed_ref,
                             {**(thread_params(variant, t) if not seed_ref else {"threads": 1}),
                              **cam})
    tmax = max(cfg.threads)
    for (variant, t), caps in sorted(pool.captures.items()):
        if caps and (cfg.capture or variant == "") and (t == tmax or variant == ""):
            last = caps[-1]
            for row in wc.timeline(last):
                res.add("web.capture.grab_ms", variant, row["t_grab"], unit="ms", better="none",
                        threads=t, **row, **({"seed": True} if variant == "" else {}), **cam)


def _by_repeat(caps: list[dict], which: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = defaultdict(list)
    for cap in caps:
        fs = wc.FrameSamples()
        fs.add(cap, int(cap.get("detectEvery") or 1))
        out[cap["repeat"]] += getattr(fs, which)
    return out


def _capture_metrics(cfg: Any, res: Results, variant: str, t: int, caps: list[dict],
                     video: tuple[int, float], seed: bool, tp: dict[str, Any]) -> None:
    stats = [wc.capture_stats(c, *video) for c in caps]
    iv = [x for s in stats for x in s.intervals]
    pre = "web.seed.capture" if seed else "web.capture"
    n = len(stats)
    if iv:
        res.add(f"{pre}.interval_ms.mean", variant, float(np.mean(iv)), unit="ms",
                better="none", n=len(iv), ci95=_bootstrap_ci(iv, np.mean), **tp,
                target=f"{INTERVAL_MS:g} +/- {TARGETS['interval_dev']:g}", captures=n)
        res.add(f"{pre}.interval_ms.p95", variant, float(np.percentile(iv, 95)), unit="ms",
                better="lower", n=len(iv), **tp)
    emit_value(res, f"{pre}.result_ms", variant, [s.result_ms for s in stats], "ms", "lower",
                **tp)
    # first grab -> result on screen: what the user waits (seed: 30 x (80 ms + inference))
    emit_value(res, f"{pre}.duration_ms", variant, [s.duration_ms for s in stats], "ms",
                "lower", **tp)
    if seed:
        return
    res.add(f"{pre}.max_dev_ms", variant, max(s.max_dev_ms for s in stats), unit="ms",
            better="lower", n=n, **tp, per_capture=[round(s.max_dev_ms, 2) for s in stats])
    steps: dict[str, int] = {}
    for s in stats:
        for d, c in s.steps.items():
            steps[str(d)] = steps.get(str(d), 0) + c
    res.add(f"{pre}.dropped_frames", variant, max(s.dropped for s in stats), unit="frames",
            better="lower", n=n, **tp, total=sum(s.dropped for s in stats),
            per_capture=[s.dropped for s in stats], source_steps=steps,
            undecoded=sum(s.undecoded for s in stats), basis="worst capture")
    res.add(f"{pre}.repeated_frames", variant, max(s.repeated for s in stats), unit="frames",
            better="lower", n=n, **tp, total=sum(s.repeated for s in stats))
    skipped = [sum(1 for r in c.get("frames") or [] if r.get("skipped")) for c in caps]
    if any(skipped) or any(c.get("skipStale") for c in caps):
        res.add(f"{pre}.skipped_frames", variant, max(skipped), unit="frames", better="lower",
                n=n, **tp, per_capture=skipped, basis="worst capture",
                meaning="frames the worker skipped because a newer one was waiting "
                        "(auto-tune on a device too slow for every frame)")
    res.add(f"{pre}.reanchored", variant, max(s.reanchored for s in stats), unit="",
            better="lower", n=n, **tp)
    lts = []
    for c in caps:
        ticks = c.get("ticks") or [0.0]
        lts.append(wc.long_tasks(c.get("longtasks") or [], ticks[0],
                                 float(c.get("resultT") or ticks[-1])))
    res.add(f"{pre}.long_tasks", variant, max(x[0] for x in lts), unit="tasks", better="lower",
            n=n, **tp, per_capture=[x[0] for x in lts])
    res.add(f"{pre}.long_task_ms", variant, max(x[1] for x in lts), unit="ms", better="lower",
            n=n, **tp, longest_ms=max(x[2] for x in lts))
    shown = [wc.shown_hb(c.get("shown", "")) for c in caps]
    readings = [h for h in shown if h is not None]
    summaries = [c.get("summary") or {} for c in caps]
    res.add(f"{pre}.readings", variant, len(readings) / n, unit="", better="higher", n=n, **tp,
            shown=[c.get("shown", "") for c in caps],
            # the reading before the display's rounding to 0.1, and the frames it used
            hb_exact=[round(float(x["hb"]), 4) if x.get("ok") else None for x in summaries],
            frames_used=[x.get("used") for x in summaries])
    if readings and cfg.video_hb is not None:
        emit_value(res, f"{pre}.hb_error", variant, [abs(h - cfg.video_hb) for h in readings],
                    "g/dL", "lower", **tp, video_hb=cfg.video_hb, hb_shown=readings)


def _mb(m) -> str:
    if m is None:
        return "not measured"
    req = m.params.get("requests")
    return f"{m.value / 1e6:.2f} MB" + (f" in {req} requests" if req is not None else "")


def summary_lines(res: Results, tuned: str) -> list[str]:
    """The app's targets against what this run measured (the gate decides; this informs)."""
    def get(name: str, variant: str, **p: Any):
        return res.get(name, variant, **p)

    def fmt(m, spec: str = ".1f", unit: str = "") -> str:
        if m is None:
            return "not measured"
        ci = f" [{m.ci95[0]:{spec}}, {m.ci95[1]:{spec}}]" if m.ci95 else ""
        spread = (f"; repeats {', '.join(f'{x:{spec}}' for x in m.params['repeats'])}"
                  f" (spread {m.params['spread_pct']:.0f} %)") if "repeats" in m.params else ""
        return f"{m.value:{spec}}{unit}{ci}{spread}"

    ts = {m.params.get("threads") for m in res.metrics if m.name == "web.frame_ms.p50"}
    t = 2 if 2 in ts or not ts else max(x for x in ts if x is not None)
    rows = [
        (f"frame p50, {tuned}, 2 threads (<= 35 ms)", fmt(get("web.frame_ms.p50", tuned, threads=t),
                                                         unit=" ms")),
        ("seed frame p50 (fp32, 1 thread, sequential)", fmt(get("web.seed.frame_ms.p50", ""),
                                                             unit=" ms")),
        (f"speedup vs seed, {tuned}, 2 threads (>= 2.5x)",
         fmt(get("web.speedup_vs_seed", tuned, threads=t), ".2f", "x")),
        ("capture interval mean (80 +/- 1 ms)",
         fmt(get("web.capture.interval_ms.mean", tuned, threads=t), ".2f", " ms")),
        ("capture max deviation (<= 10 ms)", fmt(get("web.capture.max_dev_ms", tuned, threads=t),
                                                 unit=" ms")),
        ("dropped frames, worst capture (0)", fmt(get("web.capture.dropped_frames", tuned,
                                                      threads=t), ".0f")),
        ("last grab -> result (<= 250 ms)", fmt(get("web.capture.result_ms", tuned, threads=t),
                                               ".0f", " ms")),
        ("cold start (<= 2000 ms)", fmt(get("web.cold_start_ms", tuned), ".0f", " ms")),
        ("first visit on the wire (<= 12 MB)", _mb(get("web.first_visit.bytes", tuned))),
        ("first visit: URLs fetched twice (0)", fmt(get("web.first_visit.duplicate_urls", tuned),
                                                   ".0f")),
        ("offline reload (<= 1000 ms)", fmt(get("web.offline_reload_ms", tuned), ".0f", " ms")),
    ]
    w = max(len(a) for a, _ in rows)
    return [f"  {a:<{w}}  {b}" for a, b in rows]
