"""Web parity's comparisons and figures: the tolerances per precision, detection matching
(match, DetectorDiff), severity-band agreement, what a run collected (Collected), the
web.parity.* metrics written from it (emit) and the verdict over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hemoedge.names import EP_KEY, PRECISIONS
from hemoedge.report.results import Results, variant_name

MATCH_IOU = 0.5  # a WASM detection and a Python detection of one class are the same object


@dataclass(frozen=True)
class Tolerance:
    """The verdict's limits for one precision (a pairing uses its looser model's)."""

    est_hb_abs_max: float  # estimator, per crop, g/dL
    box_px_max: float  # detector, matched box edges, image px
    score_abs_max: float  # detector, matched scores
    dets_changed_max: int  # detector, detections lost + gained over all photos
    e2e_hb_abs_max: float  # end to end, per photo, g/dL
    band_agreement_min: float  # end to end


TOLERANCES = {
    # the same file on the same input: only float rounding may differ (measured <= 8e-6 g/dL,
    # 6e-5 px)
    "fp32": Tolerance(est_hb_abs_max=1e-3, box_px_max=0.01, score_abs_max=1e-4,
                      dets_changed_max=0, e2e_hb_abs_max=1e-3, band_agreement_min=1.0),
    # one float16 rounding step of an output (box coordinates 256-512 network px have a 0.25 px
    # step, i.e. 0.5 image px in a 640x480 photo; measured 0.27 px, scores 2^-11)
    "fp16": Tolerance(est_hb_abs_max=1e-2, box_px_max=1.0, score_abs_max=2e-3,
                      dets_changed_max=0, e2e_hb_abs_max=0.25, band_agreement_min=1.0),
    # int8: activations sit on quantisation grids; a float difference (a node kept in float,
    # a requantisation) that crosses a rounding boundary moves a value by a whole step, which
    # the following layers carry on. Measured on the default models, 44 photos: boxes 1.9 px,
    # scores 0.018, estimator 0.058 g/dL (one step of its output grid), end to end 0.35 g/dL,
    # band agreement 0.93. Limits: about 2-4x that
    "int8": Tolerance(est_hb_abs_max=0.25, box_px_max=8.0, score_abs_max=0.1,
                      dets_changed_max=4, e2e_hb_abs_max=0.75, band_agreement_min=0.75),
}
ORDER = {p: i for i, p in enumerate(PRECISIONS)}


def tolerance_for(*precisions: str) -> Tolerance:
    """The loosest tolerance of these precisions (unknown ones count as int8)."""
    ps = [p if p in TOLERANCES else "int8" for p in precisions]
    return TOLERANCES[max(ps, key=lambda p: ORDER[p])]


# ---------------------------------------------------------------------------- comparisons
def match(ref: Sequence[dict], out: Sequence[dict], iou_thr: float = MATCH_IOU
          ) -> tuple[list[tuple[int, int]], int, int]:
    """Greedy same-class matching, highest IoU first: (pairs (i_ref, j_out), lost, gained)."""
    cand = []
    for i, a in enumerate(ref):
        for j, b in enumerate(out):
            if a["cls"] == b["cls"]:
                v = _iou(a["box"], b["box"])
                if v >= iou_thr:
                    cand.append((-v, i, j))
    pairs, used_i, used_j = [], set(), set()
    for _, i, j in sorted(cand):
        if i not in used_i and j not in used_j:
            pairs.append((i, j))
            used_i.add(i)
            used_j.add(j)
    return pairs, len(ref) - len(pairs), len(out) - len(pairs)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9)


@dataclass
class DetectorDiff:
    box_px: list[float] = field(default_factory=list)  # per matched pair, max edge |Δ|
    score_abs: list[float] = field(default_factory=list)
    lost: int = 0
    gained: int = 0
    dets: int = 0  # Python's detections, all photos

    def add(self, ref: Sequence[dict], out: Sequence[dict]) -> None:
        pairs, lost, gained = match(ref, out)
        self.lost += lost
        self.gained += gained
        self.dets += len(ref)
        for i, j in pairs:
            a, b = ref[i], out[j]
            self.box_px.append(float(max(abs(x - y) for x, y in zip(a["box"], b["box"],
                                                                      strict=True))))
            self.score_abs.append(abs(float(a["score"]) - float(b["score"])))


def stats(values: Sequence[float]) -> dict[str, float]:
    """max, p95 and mean (0.0 each when there is nothing)."""
    if not values:
        return {"max": 0.0, "p95": 0.0, "mean": 0.0}
    v = np.asarray(values, np.float64)
    return {"max": float(v.max()), "p95": float(np.percentile(v, 95)), "mean": float(v.mean())}


def severity_agreement(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Share of photos with a reading on either side whose severity band is equal."""
    from hemoedge.severity import severity_band

    both = [(x, y) for x, y in zip(a, b, strict=True) if x is not None or y is not None]
    if not both:
        return 1.0
    same = sum(1 for x, y in both
               if x is not None and y is not None and severity_band(x) == severity_band(y))
    return same / len(both)


@dataclass
class Collected:
    """What a run measured, per precision or pairing, before it becomes metrics."""

    est: dict[str, list[float]] = field(default_factory=dict)  # precision -> |ΔHb| per crop
    det: dict[str, DetectorDiff] = field(default_factory=dict)
    est_ref: dict[str, list[float]] = field(default_factory=dict)  # WASM vs the reference
    det_ref: dict[str, DetectorDiff] = field(default_factory=dict)
    e2e_ref: dict[tuple[str, str], list] = field(default_factory=dict)  # reference medians
    e2e: dict[tuple[str, str], tuple[list, list]] = field(default_factory=dict)  # (web, py)
    e2e_nails: dict[tuple[str, str], int] = field(default_factory=dict)  # count mismatches
    e2e_notes: dict[str, dict] = field(default_factory=dict)  # variant -> worst photo, bands
    threads: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    pages: list[dict] = field(default_factory=list)


def e2e_notes(names: list[str], web: list, py: list) -> dict:
    """The photo with the largest difference and every photo whose severity band differs."""
    from hemoedge.severity import severity_band

    def band(x: float | None) -> str | None:
        return None if x is None else severity_band(x)

    rows = [{"photo": n, "app": a, "python": b} for n, a, b in zip(names, web, py, strict=True)]
    both = [r for r in rows if r["app"] is not None and r["python"] is not None]
    worst = max(both, key=lambda r: abs(r["app"] - r["python"]), default=None)
    return {"worst": worst, "band_differs": [r for r in rows
                                             if band(r["app"]) != band(r["python"])]}


def emit(c: Collected, art: Any, res: Results) -> None:
    """The web.parity.* metrics (and the variants' files) of what a run collected."""
    t = c.threads
    for p, diffs in c.est.items():
        v = variant_name(est=p)
        unit = art.spec("estimator").output_unit or "g/dL"
        for k, val in stats(diffs).items():
            res.add(f"web.parity.estimator.hb_abs.{k}", v, val, unit, "lower", n=len(diffs),
                    threads=t)
        res.variants.setdefault(v, {})["estimator"] = art.path("estimator", p).name
    for p, d in c.det.items():
        v = variant_name(det=p)
        s = stats(d.box_px)
        res.add("web.parity.detector.box_px.max", v, s["max"], "px", "lower", n=len(d.box_px),
                threads=t)
        res.add("web.parity.detector.box_px.p95", v, s["p95"], "px", "lower", n=len(d.box_px),
                threads=t)
        res.add("web.parity.detector.score_abs.max", v, stats(d.score_abs)["max"], "",
                "lower", n=len(d.score_abs), threads=t)
        res.add("web.parity.detector.dets_lost", v, d.lost, "", "lower", n=d.dets, threads=t)
        res.add("web.parity.detector.dets_gained", v, d.gained, "", "lower", n=d.dets,
                threads=t)
        res.variants.setdefault(v, {})["detector"] = art.path("detector", p).name
    for (dp, ep), (web, py) in c.e2e.items():
        v = variant_name(dp, ep)
        diffs = [abs(a - b) for a, b in zip(web, py, strict=True)
                 if a is not None and b is not None]
        for k, val in stats(diffs).items():
            res.add(f"web.parity.e2e.hb_abs.{k}", v, val, "g/dL", "lower", n=len(diffs),
                    threads=t)
        res.add("web.parity.e2e.band_agreement", v, severity_agreement(web, py), "ratio",
                "higher", n=len(web), threads=t)
        res.add("web.parity.e2e.nail_count_mismatch", v, c.e2e_nails[dp, ep], "", "lower",
                n=len(web), threads=t)
        res.variants.setdefault(v, {}).update(detector=art.path("detector", dp).name,
                                              estimator=art.path("estimator", ep).name)
    # against the file's arithmetic as written (graph optimisations off: the machine-independent
    # reference `eval` and `quantize` use), to tell which runtime moved; informational
    for p, diffs in c.est_ref.items():
        s = stats(diffs)
        for k in ("max", "mean"):
            res.add(f"web.parity.ref.estimator.hb_abs.{k}", variant_name(est=p), s[k],
                    art.spec("estimator").output_unit or "g/dL", "lower", n=len(diffs),
                    threads=t)
    for p, d in c.det_ref.items():
        res.add("web.parity.ref.detector.box_px.max", variant_name(det=p),
                stats(d.box_px)["max"], "px", "lower", n=len(d.box_px), threads=t)
        res.add("web.parity.ref.detector.score_abs.max", variant_name(det=p),
                stats(d.score_abs)["max"], "", "lower", n=len(d.score_abs), threads=t)
    for (dp, ep), rpy in c.e2e_ref.items():
        web = c.e2e[dp, ep][0]
        diffs = [abs(a - b) for a, b in zip(web, rpy, strict=True)
                 if a is not None and b is not None]
        s = stats(diffs)
        for k in ("max", "mean"):
            res.add(f"web.parity.ref.e2e.hb_abs.{k}", variant_name(dp, ep), s[k], "g/dL",
                    "lower", n=len(diffs), threads=t)
        res.add("web.parity.ref.e2e.band_agreement", variant_name(dp, ep),
                severity_agreement(web, rpy), "ratio", "higher", n=len(web), threads=t)


def verdict(res: Results) -> list[str]:
    """Every breach of TOLERANCES in these metrics, one line each (empty: parity holds)."""
    out = []

    def val(name: str, v: str) -> float | None:
        m = res.get(name, v)
        return None if m is None else m.value

    for m in res.find("web.parity."):
        precs = [kv.split("=", 1)[1] for kv in m.variant.split(",")  # not ep=: a provider
                 if "=" in kv and not kv.startswith(f"{EP_KEY}=")]
        tol = tolerance_for(*precs)
        limit: float | None = None
        value = m.value
        if m.name == "web.parity.estimator.hb_abs.max":
            limit = tol.est_hb_abs_max
        elif m.name == "web.parity.e2e.hb_abs.max":
            limit = tol.e2e_hb_abs_max
        elif m.name == "web.parity.detector.box_px.max":
            limit = tol.box_px_max
        elif m.name == "web.parity.detector.score_abs.max":
            limit = tol.score_abs_max
        elif m.name == "web.parity.detector.dets_lost":
            value += val("web.parity.detector.dets_gained", m.variant) or 0
            if value > tol.dets_changed_max:
                out.append(f"web.parity.detector.dets_lost + dets_gained [{m.variant}] = "
                           f"{value:.0f} > {tol.dets_changed_max}")
        elif m.name == "web.parity.e2e.band_agreement" and value < tol.band_agreement_min:
            out.append(f"{m.name} [{m.variant}] = {value:.3f} < {tol.band_agreement_min}")
        if limit is not None and value > limit:
            unit = f" {m.unit}" if m.unit else ""
            out.append(f"{m.name} [{m.variant}] = {value:.4g}{unit} > {limit}")
    return out
