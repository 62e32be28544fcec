"""The candidates `hemoedge choose` ranks: every pairing with a frame time on the target, with
its figures (frame time, Hb MAE and its delta, AUROC, bytes, first-visit MB) and the
constraints (Constraints, CHECKS) each one violates. The report's Pareto plots use the same
figures (collect). Ranking and explaining the choice: hemoedge.report.choose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hemoedge.errors import ResultsError
from hemoedge.names import parse_variant
from hemoedge.report.query import BACKBONE, TASKS, lookup, prefer_threads, sweep_entries, task_of
from hemoedge.report.results import Metric, Results

TARGETS = ("web", "cpu")


@dataclass(frozen=True)
class Constraints:
    target: str = "web"  # "web" (onnxruntime-web in Chromium) or "cpu" (onnxruntime native)
    max_frame_ms: float | None = None  # per-frame p50, ms
    max_hb_mae_delta: float | None = 0.05  # g/dL, pairing MAE minus the fp32 reference's
    max_bytes: float | None = None  # detector + estimator file bytes
    task: str = "regression"  # rank only candidates of this task (sweep entries)
    max_hb_mae: float | None = None  # g/dL, absolute Hb MAE (e2e where measured)
    # g/dL: Hb MAE minus the lowest fp32-pipeline Hb MAE of any backbone; applied only when
    # the candidates span more than one backbone
    max_hb_mae_over_best: float | None = 0.10
    min_auroc: float | None = None  # classification: AUROC (e2e where measured)
    max_auroc_drop: float | None = 0.02  # classification: AUROC lost versus the fp32 pipeline
    # MB a first visit downloads: bench web's web.first_visit.bytes (on the wire: the app, the
    # WASM and both models, compressed) where measured, else the two model files' bytes
    max_first_visit_mb: float | None = None
    # fidelity to the fp32 pipeline, per patient (what a mean hides): the 95th percentile of
    # |Hb - fp32 pipeline's Hb|, g/dL, and the share of patients whose severity band stays
    max_hb_shift: float | None = None
    min_band_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ResultsError(f"choose: --target must be one of {TARGETS}, got {self.target!r}")
        if self.task not in TASKS:
            raise ResultsError(f"choose: --task must be one of {TASKS}, got {self.task!r}")
        for _, name, _, _, _ in CHECKS:
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ResultsError(f"choose: --{name.replace('_', '-')} must be finite, got {v}")
        if self.min_band_agreement is not None and not 0 <= self.min_band_agreement <= 1:
            raise ResultsError("choose: --min-band-agreement is a share of patients, 0-1, got "
                               f"{self.min_band_agreement}")

    @property
    def frame_metric(self) -> str:
        return f"{self.target}.frame_ms.p50"


# flag, Constraints field, Candidate attribute, "max" (value <= limit) or "min" (value >=
# limit), the task it applies to (None: every task). The order is the order of violations.
CHECKS = (
    ("--max-frame-ms", "max_frame_ms", "frame_ms", "max", None),
    ("--max-hb-mae-delta", "max_hb_mae_delta", "hb_mae_delta", "max", "regression"),
    ("--max-hb-mae", "max_hb_mae", "hb_mae", "max", "regression"),
    ("--max-hb-mae-over-best", "max_hb_mae_over_best", "hb_mae_over_best", "max", "regression"),
    ("--min-auroc", "min_auroc", "auroc", "min", "classification"),
    ("--max-auroc-drop", "max_auroc_drop", "auroc_drop", "max", "classification"),
    ("--max-bytes", "max_bytes", "bytes", "max", None),
    ("--max-first-visit-mb", "max_first_visit_mb", "first_visit_mb", "max", None),
    ("--max-hb-shift", "max_hb_shift", "hb_shift", "max", "regression"),
    ("--min-band-agreement", "min_band_agreement", "band_agreement", "min", "regression"),
)
# per-patient fidelity figures, most machine-independent first: the reference arithmetic
# (acc.ref.*, the same on every CPU) end to end, this machine's kernels end to end, then the
# estimator alone on ground-truth crops
SHIFT_METRICS = ("acc.ref.e2e.abs_delta.p95", "acc.e2e.abs_delta.p95",
                 "acc.ref.hb_abs_delta.p95", "acc.hb_abs_delta.p95")
BAND_METRICS = ("acc.ref.e2e.band_agreement", "acc.e2e.band_agreement",
                "acc.ref.band_agreement", "acc.band_agreement")
CHECK = {flag: (fld, attr, kind, task) for flag, fld, attr, kind, task in CHECKS}
EPS = 1e-9  # a figure equal to its limit up to float rounding meets it
OVER_BEST = "--max-hb-mae-over-best"


@dataclass
class Candidate:
    variant: str
    frame_ms: float | None  # p50 per frame, ms, on the target
    threads: int | None  # thread setting the frame time was measured at
    hb_mae_delta: float | None  # g/dL
    hb_source: str  # "e2e" (detector + estimator on photos) or "est-only" (ground-truth crops)
    bytes: float | None  # detector + estimator file bytes
    violations: list[str] = field(default_factory=list)  # constraint names violated
    backbone: str | None = None  # sweep label (variant key "backbone"), None outside a sweep
    task: str = "regression"
    hb_mae: float | None = None  # g/dL, absolute (e2e where measured)
    hb_mae_source: str = "missing"
    hb_mae_over_best: float | None = None  # g/dL, set when candidates span several backbones
    auroc: float | None = None  # classification figures (e2e where measured)
    auroc_delta: float | None = None  # versus the same backbone's fp32 pipeline
    cls_source: str = "missing"
    sensitivity: float | None = None
    specificity: float | None = None
    first_visit_mb: float | None = None  # MB downloaded on a first visit (see Constraints)
    first_visit_source: str = "missing"  # "wire" (bench web) or "model files"
    hb_shift: float | None = None  # g/dL, p95 per patient against fp32 (SHIFT_METRICS)
    band_agreement: float | None = None  # share of patients in fp32's band (BAND_METRICS)
    fidelity_source: str = "missing"  # the metric hb_shift came from

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def auroc_drop(self) -> float | None:
        return 0.0 - self.auroc_delta if self.auroc_delta is not None else None  # no -0.0

    @property
    def ref_mae(self) -> float | None:
        """This backbone's fp32-pipeline Hb MAE: hb_mae minus hb_mae_delta (same source)."""
        if self.hb_mae is None or self.hb_mae_delta is None or \
                self.hb_mae_source != self.hb_source:
            return None
        return self.hb_mae - self.hb_mae_delta


def first_named(results: Results, names: tuple[str, ...],
                variant: str) -> tuple[Metric | None, str]:
    """The first of `names` measured for `variant` (same backbone) and that name."""
    for name in names:
        m = lookup(results, name, variant, threads=None, same=(BACKBONE,))
        if m is not None:
            return m, name
    return None, "missing"


def first_of(results: Results, names: tuple[str, ...], variant: str) -> tuple[Metric | None, str]:
    """The first of `names` measured for `variant` (same backbone) and its source."""
    m, name = first_named(results, names, variant)
    if m is None:
        return None, "missing"
    return m, "est-only" if not name.startswith("acc.e2e.") else "e2e"


def candidate(results: Results, variant: str, frame: Metric,
              entries: dict[str, dict]) -> Candidate:
    """The pairing's figures, its frame time being `frame`; violations are set by collect."""
    acc, src = first_of(results, ("acc.e2e.hb_mae_delta", "acc.hb_mae_delta"), variant)
    det = lookup(results, "size.detector.bytes", variant, threads=None)
    est = lookup(results, "size.estimator.bytes", variant, threads=None)
    size = det.value + est.value if det is not None and est is not None else None
    cand = Candidate(variant, frame.value, frame.params.get("threads"),
                     acc.value if acc is not None else None, src, size)
    cand.backbone = parse_variant(variant).get(BACKBONE)
    cand.task = task_of(results, variant, entries)
    fv = lookup(results, "web.first_visit.bytes", variant, exact=True)
    if fv is not None:
        cand.first_visit_mb, cand.first_visit_source = fv.value / 1e6, "wire"
    elif size is not None:
        cand.first_visit_mb, cand.first_visit_source = size / 1e6, "model files"
    shift, cand.fidelity_source = first_named(results, SHIFT_METRICS, variant)
    cand.hb_shift = shift.value if shift is not None else None
    band, _ = first_named(results, BAND_METRICS, variant)
    cand.band_agreement = band.value if band is not None else None
    mae, cand.hb_mae_source = first_of(results, ("acc.e2e.hb_mae", "acc.hb_mae"), variant)
    cand.hb_mae = mae.value if mae is not None else None
    auc, cand.cls_source = first_of(results, ("acc.e2e.cls.auroc", "acc.cls.auroc"), variant)
    cand.auroc = auc.value if auc is not None else None
    pre = "acc.e2e.cls." if cand.cls_source == "e2e" else "acc.cls."
    for attr, name in (("auroc_delta", "auroc_delta"), ("sensitivity", "sensitivity"),
                       ("specificity", "specificity")):
        m = lookup(results, pre + name, variant, threads=None, same=(BACKBONE,))
        setattr(cand, attr, m.value if m is not None else None)
    return cand


def best_reference(cands: list[Candidate]) -> Candidate | None:
    """The regression candidate whose backbone's fp32 pipeline has the lowest Hb MAE."""
    refs = [x for x in cands if x.task == "regression" and x.ref_mae is not None]
    return min(refs, key=lambda x: (x.ref_mae, x.variant)) if refs else None


def spans_backbones(cands: list[Candidate], task: str) -> bool:
    """The candidates of `task` come from more than one backbone."""
    return len({x.backbone for x in cands if x.task == task}) > 1


def check(cand: Candidate, c: Constraints, over_best: bool) -> list[str]:
    """The flags of the constraints `cand` violates, in CHECKS order."""
    out = []
    for flag, fld, attr, kind, task in CHECKS:
        limit = getattr(c, fld)
        if limit is None or (task is not None and task != cand.task) or \
                (flag == OVER_BEST and not over_best):
            continue
        v = getattr(cand, attr)
        if v is None or (v > limit + EPS if kind == "max" else v < limit - EPS):
            out.append(flag)
    return out


def collect(results: Results, constraints: Constraints, strict: bool = False) -> list[Candidate]:
    """Every variant with a frame time on the target, with its figures and violations (each
    checked against the constraints of its own task). A negative or non-finite frame time is
    never a candidate: with `strict` (choose) it is a ResultsError, else (the report's plots)
    it is left out."""
    c = constraints
    frames: dict[str, list[Metric]] = {}
    for m in results.metrics:
        if m.name == c.frame_metric and m.variant:
            v = m.value
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                if not strict:
                    continue
                t = f" (threads={m.params['threads']})" if "threads" in m.params else ""
                raise ResultsError(
                    f"choose: {m.name} of {m.variant}{t} is {v!r}: a frame time must be a "
                    "finite number of ms >= 0; the results file is invalid (re-run the bench)")
            frames.setdefault(m.variant, []).append(m)
    entries = sweep_entries(results)
    cands = []
    for variant, ms in sorted(frames.items()):
        frame = prefer_threads(ms)
        if frame is not None:
            cands.append(candidate(results, variant, frame, entries))
    best = best_reference(cands)
    over_best = best is not None and spans_backbones(cands, "regression")
    for x in cands:
        if over_best and x.task == "regression" and x.hb_mae is not None:
            x.hb_mae_over_best = x.hb_mae - best.ref_mae
        x.violations = check(x, c, over_best)
    return cands
