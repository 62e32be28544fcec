"""Pure analysis of what the PWA's bench hook records for one capture (no browser here).

A capture record (`window.__hemoedgeBench.lastCapture`, see docs/webapp.md) holds the
30 grab times `ticks` (performance.now ms), `reanchored`, `resultT` (result on screen) and per
frame: k, grabT, frameIndex (source frame decoded from the video's code strip, -1 if absent),
queueMs, detMs (null when the nail box was tracked), estMs, preMs, totalMs, doneT, hb, reason.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CaptureStats:
    intervals: list[float]  # ms between consecutive grabs (29 for 30 frames)
    max_dev_ms: float  # max |interval - nominal|
    dropped: int  # capture slots with no grab: source frames skipped >= 2 nominal steps
    repeated: int  # the same source frame grabbed twice in a row
    undecoded: int  # frames whose code strip did not decode (not our video)
    steps: dict[int, int]  # source-frame step between grabs -> count
    result_ms: float  # last grab -> result on screen
    reanchored: int  # stalls after which the app restarted its 80 ms grid
    duration_ms: float  # first grab -> result on screen
    valid_frames: int  # frames that gave an Hb
    frames: int  # frames the worker returned


def source_steps(indices: list[int], video_frames: int) -> tuple[list[int], int]:
    """Steps between consecutive decoded source-frame indices (the fake camera loops the file,
    so a step wraps modulo its length); and how many indices were undecodable (-1)."""
    undecoded = sum(1 for i in indices if i < 0)
    steps = []
    for a, b in itertools.pairwise(indices):
        if a < 0 or b < 0:
            continue
        steps.append((b - a) % video_frames if video_frames > 0 else b - a)
    return steps, undecoded


def capture_stats(cap: dict[str, Any], video_frames: int, fps: float) -> CaptureStats:
    """Cadence, dropped/repeated source frames and result latency of one capture."""
    ticks = [float(t) for t in cap.get("ticks") or []]
    nominal = float(cap.get("intervalMs", 80.0))
    iv = list(np.diff(ticks)) if len(ticks) > 1 else []
    recs = sorted(cap.get("frames") or [], key=lambda r: r["k"])
    steps, undecoded = source_steps([int(r.get("frameIndex", -1)) for r in recs], video_frames)
    per_slot = nominal * fps / 1000.0  # source frames per capture slot (2 at 80 ms, 25 fps)
    # d < 2 slots is camera jitter (a frame 40 ms early/late), not a lost slot
    dropped = sum(max(0, math.floor(d / per_slot + 1e-9) - 1) for d in steps)
    hist: dict[int, int] = {}
    for d in steps:
        hist[d] = hist.get(d, 0) + 1
    last = ticks[-1] if ticks else float("nan")
    result_t = float(cap["resultT"]) if cap.get("resultT") is not None else float("nan")
    return CaptureStats(
        intervals=[float(x) for x in iv],
        max_dev_ms=float(max((abs(x - nominal) for x in iv), default=float("nan"))),
        dropped=dropped,
        repeated=sum(1 for d in steps if d == 0),
        undecoded=undecoded,
        steps=dict(sorted(hist.items())),
        result_ms=result_t - last,
        reanchored=int(cap.get("reanchored") or 0),
        duration_ms=result_t - (ticks[0] if ticks else float("nan")),
        valid_frames=sum(1 for r in recs if r.get("hb") is not None),
        frames=len(recs),
    )


def cycle_ms(recs: list[dict[str, Any]], detect_every: int) -> list[float]:
    """Per-frame work as the app runs it, one sample per detector cycle: the mean `totalMs` of
    each complete block of `detect_every` frames (one detector frame + tracked frames).

    A per-frame median over a 50/50 mix of detector and tracked frames would land anywhere in
    the gap between the two modes; the cycle mean is the stable amortised cost."""
    n = max(1, int(detect_every))
    by_k = {int(r["k"]): float(r["totalMs"]) for r in recs  # skipped frames did no work
            if r.get("totalMs") is not None and not r.get("skipped")}
    skipped = {int(r["k"]) for r in recs if r.get("skipped")}  # auto-tune skipped them
    out = []
    for start in range(0, (max(by_k) + 1) if by_k else 0, n):
        block = [by_k.get(k) for k in range(start, start + n) if k not in skipped]
        if block and all(b is not None for b in block):
            out.append(float(np.mean(block)))
    return out


@dataclass
class FrameSamples:
    """Per-frame timings pooled over captures (ms)."""

    cycle: list[float] = field(default_factory=list)  # amortised per frame, see cycle_ms
    full: list[float] = field(default_factory=list)  # frames that ran detector AND estimator
    detector: list[float] = field(default_factory=list)
    estimator: list[float] = field(default_factory=list)
    preprocess: list[float] = field(default_factory=list)  # letterbox + NMS + crop/resize
    pixels: list[float] = field(default_factory=list)  # bitmap -> pixels, quality checks
    queue: list[float] = field(default_factory=list)  # grab -> worker starts the frame
    frames: int = 0
    with_hb: int = 0

    def add(self, cap: dict[str, Any], detect_every: int) -> None:
        recs = cap.get("frames") or []
        self.cycle += cycle_ms(recs, detect_every)
        for r in recs:
            self.frames += 1
            det, est = r.get("detMs"), r.get("estMs")
            total, pre = r.get("totalMs"), r.get("preMs") or 0.0
            if det is not None:
                self.detector.append(float(det))
            if est is not None:
                self.estimator.append(float(est))
                self.with_hb += 1
            if det is not None and est is not None and total is not None:
                self.full.append(float(total))
                self.preprocess.append(float(pre))
                self.pixels.append(max(0.0, float(total) - det - est - pre))
            if r.get("queueMs") is not None:
                self.queue.append(float(r["queueMs"]))


def timeline(cap: dict[str, Any]) -> list[dict[str, float]]:
    """One row per frame, ms since the capture's first grab: grab, start of the frame's work in
    the worker, end of its estimator (the frame's result), and the result on screen (one event
    per capture, after the last frame)."""
    recs = sorted(cap.get("frames") or [], key=lambda r: r["k"])
    if not recs:
        return []
    t0 = float(cap["ticks"][0]) if cap.get("ticks") else float(recs[0]["grabT"])
    result = float(cap["resultT"]) - t0 if cap.get("resultT") is not None else float("nan")
    rows = []
    for r in recs:
        grab = float(r["grabT"])
        rows.append({"frame": int(r["k"]), "t_grab": round(grab - t0, 3),
                     "t_det_start": round(grab + float(r.get("queueMs") or 0.0) - t0, 3),
                     "t_est_end": round(float(r["doneT"]) - t0, 3),
                     "t_result": round(result, 3)})
    return rows


def long_tasks(entries: list[list[float]], start: float, end: float) -> tuple[int, float, float]:
    """(count, total ms, longest ms) of main-thread long tasks [startTime, duration] that
    began inside [start, end]."""
    inside = [d for s, d in entries if start <= s <= end]
    return len(inside), float(sum(inside)), float(max(inside, default=0.0))


def shown_hb(text: str) -> float | None:
    """The Hb the result panel shows ("9.6 g/dL"), or None for "Try again"."""
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None
