"""`hemoedge eval ART`: task accuracy of every precision and every detector x estimator pairing,
on the held-out test split. Metrics (results.json, names in docs/results.md):

detector (variant det=P), detections at conf 0.001 / NMS IoU 0.7 as ultralytics' validator:
  acc.det.<cls>.map50, .precision, .recall (at the max-F1 confidence), .map50_delta (vs fp32),
  acc.det.map50 (mean over nail and skin)
estimator on ground-truth nail crops (variant est=P); per patient Hb = median over its nails:
  acc.hb_mae, acc.hb_rmse, acc.hb_r2 (vs the measured Hb), acc.hb_mae.band.<band> (bands of
  the measured Hb), acc.hb_mae_delta (vs fp32), acc.band_agreement (severity band equal to
  fp32's), acc.hb_abs_delta.mean / .p95 / .max (per patient |Hb - Hb fp32|),
  acc.hb_bias.band.<band> (mean signed Hb - Hb fp32 per band of the measured Hb),
  acc.crop_sensitivity.mean / .p95 / .max (|dHb| when every box edge moves by up to +-2 px)
end to end as the app does it (variant det=P,est=Q): the detector variant at the app's
  threshold, up to 3 detected nails (best first) cropped and estimated, per patient the median:
  acc.e2e.hb_mae (vs truth, patients with a nail found), acc.e2e.hb_mae_delta (minus the
  fp32 pipeline's MAE on the patients both found a nail in),
  acc.e2e.abs_delta.mean / .p95 / .max (per patient |Hb - Hb of the fp32 pipeline|),
  acc.e2e.band_agreement (vs the fp32 pipeline), acc.e2e.nail_found_rate
classification estimators (spec extra task=classification; the output is the anaemia logit,
  anaemic = measured Hb below the spec's threshold), instead of the Hb figures:
  acc.cls.{accuracy,sensitivity,specificity,f1,auroc} (variant est=P, ground-truth crops, per
  patient the median logit), acc.cls.<m>_delta (vs fp32), acc.cls.agreement (decision equal to
  fp32's); the same end to end as acc.e2e.cls.* (variant det=P,est=Q, vs the fp32 pipeline)
sizes: size.<role>.bytes (variant det=P / est=P) via hemoedge.artifact.record_sizes
every acc.* figure twice: on this machine's kernels (acc.*) and on the machine-independent
  reference (acc.ref.*: graph optimisations off, the quantisation arithmetic in float), plus
  acc.kernel_spread.hb_abs.{p95,max} (est=P) / acc.kernel_spread.e2e.hb_abs.{p95,max}
  (pairings): per patient |Hb on this machine's kernels - Hb on the reference|

AP integration, precision and recall come from ultralytics.utils.metrics.ap_per_class, box
IoU from ultralytics' box_iou and the prediction-to-label matching from its validator's
match_predictions, so the figures are the ones `yolo val` would report.

The metric functions are in hemoedge/bench/accuracy_metrics.py (importable from here too);
this module runs the models, writes the figures and prints the table.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.artifact import Artifact, file_name
from hemoedge.bench.accuracy_metrics import (
    CLASS_NAMES,
    ImageDets,
    abs_delta,
    add_classification,
    add_kernel_spread,
    band_agreement,
    band_bias,
    band_changes,
    band_mae,
    crop_sensitivity,
    detection_metrics,
    hb_metrics,
    match_predictions,
    per_patient,
)
from hemoedge.errors import BenchError
from hemoedge.names import ANAEMIA_THRESHOLD_GDL
from hemoedge.preprocess import Detection, crop
from hemoedge.report.results import Results, variant_name
from hemoedge.spec import task_of

log = logging.getLogger(__name__)

MAX_NAILS = 3  # nails per patient photo used end to end


@dataclass(frozen=True)
class EvalConfig:
    art: Path
    data: Path | None = None  # Yakimov-layout folder; None: the cached synthetic default
    split_seed: int = 0
    split: str = "test"  # the held-out test split, or "all" patients (a set nothing trained on)
    # detector mAP: low threshold, as ultralytics' validator
    map_conf: float = 0.001
    map_iou: float = 0.7  # NMS IoU for mAP
    # end to end: the app's thresholds (OnnxPipeline defaults)
    app_conf: float = 0.25
    app_iou: float = 0.45
    max_nails: int = MAX_NAILS
    # crop sensitivity: every ground-truth box edge moved by U(-edge_px, +edge_px)
    sensitivity_edge_px: float = 2.0  # px
    sensitivity_copies: int = 4  # moved crops per nail
    command: str = ""  # recorded in results.commands

    def __post_init__(self) -> None:
        if not (0 <= self.map_conf <= 1 and 0 <= self.app_conf <= 1):
            raise BenchError("confidence thresholds must be in [0, 1]")
        if self.split not in ("test", "all"):
            raise BenchError(f"split must be 'test' or 'all', got {self.split!r}")
        if self.max_nails < 1:
            raise BenchError(f"max_nails must be >= 1, got {self.max_nails}")


# ------------------------------------------------------------------ running the models

def eval_records(data: Path | None, split: str = "test", split_seed: int = 0) -> list[Any]:
    """The patients eval measures: the held-out test split of `data`, or all of them."""
    from hemoedge.data import yakimov
    from hemoedge.quantize.run import default_data

    ds = yakimov.load(data or default_data())
    if ds.problems:  # the loader logged each one; say how many were left out
        print(f"eval: skipped {len(ds.problems)} row(s) of {ds.root / 'metadata.csv'} "
              f"(first: {ds.problems[0]})")
    if split == "all":
        return list(ds.records)
    return yakimov.split(ds.records, seed=split_seed)["test"]


@dataclass
class Evaluation:
    results: Results
    patients: int  # test patients (photos)


def _pipeline(det: Path, est: Path, conf: float, iou: float, reference: bool = False):
    from hemoedge.pipeline import OnnxPipeline

    return OnnxPipeline(det, est, threads=1, conf=conf, iou=iou, reference=reference)


def evaluate(cfg: EvalConfig, records: Sequence[Any] | None = None,
             read: Callable | None = None) -> Evaluation:
    """All metrics for every precision and pairing in cfg.art on `records` (default: the test
    split of cfg.data). `read` reads a record's photo (default yakimov.read_rgb)."""
    art = Artifact.load(cfg.art)
    if records is None:
        records = eval_records(cfg.data, cfg.split, cfg.split_seed)
    if not records:
        raise BenchError("the test split is empty; nothing to evaluate")
    if read is None:
        from hemoedge.data.yakimov import read_rgb as read
    dets_p, ests_p = art.precisions("detector"), art.precisions("estimator")
    for role, ps in (("detector", dets_p), ("estimator", ests_p)):
        if "fp32" not in ps:
            raise BenchError(f"{art.root}: no {file_name(role, 'fp32')}; eval compares every "
                             "variant with fp32")
    res = Results()
    if cfg.command:
        res.commands.append(cfg.command)
    from hemoedge.data.yakimov import read_photos

    records, images, unreadable = read_photos(list(records), read)
    if unreadable:
        print(f"eval: skipped {len(unreadable)} photo(s) that could not be read "
              f"(first: {unreadable[0]})")
    if not records:
        raise BenchError("no readable photo in the split; nothing to evaluate")
    truth = {str(r.patient_id): float(r.hb_gdl) for r in records}
    pids = list(truth)

    for role, ps, short in (("detector", dets_p, "det"), ("estimator", ests_p, "est")):
        for p in ps:
            res.variants.setdefault(f"{short}={p}", {})[role] = file_name(role, p)

    measured = {}
    for reference in (False, True):
        measured[reference] = _measure(art, cfg, records, images, truth, res, reference)
    add_kernel_spread(res, measured[False], measured[True])
    return Evaluation(res, len(pids))


@dataclass
class Measured:
    """Per patient Hb of one evaluation pass: estimator on ground-truth crops per precision,
    and end to end per (detector, estimator) precision pair."""
    est_hb: dict[str, dict[str, float]]
    e2e: dict[tuple[str, str], dict[str, float]]


def _measure(art: Artifact, cfg: EvalConfig, records: Sequence[Any], images: dict[str, Any],
             truth: dict[str, float], res: Results, reference: bool) -> Measured:
    """Every accuracy metric of every variant, run on this machine's kernels (names acc.*) or
    on the machine-independent reference (reference=True: graph optimisations off, the
    quantisation arithmetic in float; names acc.ref.*)."""
    prefix = "acc.ref." if reference else "acc."
    pids = list(truth)
    dets_p, ests_p = art.precisions("detector"), art.precisions("estimator")
    # detector mAP
    any_est = art.path("estimator", "fp32")
    det_m: dict[str, dict] = {}
    for p in dets_p:
        pipe = _pipeline(art.path("detector", p), any_est, cfg.map_conf, cfg.map_iou, reference)
        ims = []
        for r in records:
            gt = [(b, 0) for b in r.nail_xyxy()] + [(b, 1) for b in r.skin_xyxy()]
            ims.append(ImageDets.of(pipe.detect(images[str(r.patient_id)]), gt))
        det_m[p] = detection_metrics(ims)
        v = variant_name(det=p)
        for cls, m in det_m[p].items():
            res.add(f"{prefix}det.{cls}.map50", v, m["map50"], "", "higher", n=len(records))
            res.add(f"{prefix}det.{cls}.precision", v, m["precision"], "", "higher", n=len(records))
            res.add(f"{prefix}det.{cls}.recall", v, m["recall"], "", "higher", n=len(records))
            res.add(f"{prefix}det.{cls}.map50_delta", v, m["map50"] - det_m["fp32"][cls]["map50"]
                    if "fp32" in det_m else 0.0, "", "higher", n=len(records))
        res.add(f"{prefix}det.map50", v, float(np.mean([m["map50"] for m in det_m[p].values()])), "",
                "higher", n=len(records))

    # estimator on ground-truth crops
    est_hb: dict[str, dict[str, float]] = {}
    for p in ests_p:
        pipe = _pipeline(art.path("detector", "fp32"), art.path("estimator", p), cfg.app_conf,
                         cfg.app_iou, reference)
        vals, who = [], []
        for r in records:
            for b in r.nail_xyxy():
                vals.append(pipe.estimate(crop(images[str(r.patient_id)], b)))
                who.append(str(r.patient_id))
        est_hb[p] = per_patient(vals, who)
        moved = crop_sensitivity(pipe.estimate, [(images[str(r.patient_id)], b)
                                                 for r in records for b in r.nail_xyxy()],
                                 vals, cfg.sensitivity_edge_px, cfg.sensitivity_copies)
        for k in ("mean", "p95", "max"):
            res.add(f"{prefix}crop_sensitivity.{k}", variant_name(est=p), moved[k], "g/dL",
                    "lower", n=moved["n"], edge_px=cfg.sensitivity_edge_px,
                    copies=cfg.sensitivity_copies)
    task = task_of(art.spec("estimator"))
    threshold = art.spec("estimator").extra.get("anaemia_threshold_gdl", ANAEMIA_THRESHOLD_GDL)
    if task == "classification":
        add_classification(res, f"{prefix}cls", {variant_name(est=p): est_hb[p] for p in ests_p},
                           est_hb["fp32"], truth, pids, threshold)
    ref = est_hb["fp32"]
    mae_fp32 = hb_metrics([ref[k] for k in pids], [truth[k] for k in pids])["mae"]
    for p in ests_p if task == "regression" else ():
        v, hb = variant_name(est=p), est_hb[p]
        pred, tr = [hb[k] for k in pids], [truth[k] for k in pids]
        m = hb_metrics(pred, tr)
        n = len(pids)
        res.add(f"{prefix}hb_mae", v, m["mae"], "g/dL", "lower", n=n)
        res.add(f"{prefix}hb_rmse", v, m["rmse"], "g/dL", "lower", n=n)
        res.add(f"{prefix}hb_r2", v, m["r2"], "", "higher", n=n)
        for band, (mae, nb) in band_mae(pred, tr).items():
            res.add(f"{prefix}hb_mae.band.{band}", v, mae, "g/dL", "lower", n=nb)
        res.add(f"{prefix}hb_mae_delta", v, m["mae"] - mae_fp32, "g/dL", "lower", n=n)
        res.add(f"{prefix}band_agreement", v, band_agreement(pred, [ref[k] for k in pids]), "ratio",
                "higher", n=n)
        d = abs_delta(hb, ref)
        for k in ("mean", "p95", "max"):
            res.add(f"{prefix}hb_abs_delta.{k}", v, d[k], "g/dL", "lower", n=d["n"])
        for band, (bias, nb) in band_bias(hb, ref, truth).items():
            res.add(f"{prefix}hb_bias.band.{band}", v, bias, "g/dL", "lower", n=nb)

    # end to end
    e2e: dict[tuple[str, str], dict[str, float]] = {}
    for dp in dets_p:
        nails_of: dict[str, list[Detection]] = {}
        for q in ests_p:
            pipe = _pipeline(art.path("detector", dp), art.path("estimator", q), cfg.app_conf,
                             cfg.app_iou, reference)
            res.variants.setdefault(variant_name(dp, q), {}).update(
                detector=file_name("detector", dp), estimator=file_name("estimator", q))
            out: dict[str, float] = {}
            for pid in pids:
                img = images[pid]
                if pid not in nails_of:  # the detector's answer does not depend on q
                    nails_of[pid] = sorted(pipe.nails(pipe.detect(img)),
                                           key=lambda d: -d.score)[:cfg.max_nails]
                per = [pipe.estimate(crop(img, d.box)) for d in nails_of[pid]]
                if per:
                    out[pid] = float(statistics.median(per))
            e2e[(dp, q)] = out
    ref_e2e = e2e[("fp32", "fp32")]

    def mae_on(hb: Mapping[str, float], keys: Sequence[str]) -> float:
        return hb_metrics([hb[k] for k in keys], [truth[k] for k in keys])["mae"]

    for (dp, q), out in e2e.items():
        v = variant_name(dp, q)
        found = [k for k in pids if k in out]
        res.add(f"{prefix}e2e.nail_found_rate", v, len(found) / len(pids), "ratio", "higher",
                n=len(pids))
        if not found:
            log.warning("%s: the detector found no nail in any test photo; no end-to-end Hb", v)
            continue
        if task == "classification":
            add_classification(res, f"{prefix}e2e.cls", {v: out}, ref_e2e, truth, found, threshold)
            continue
        res.add(f"{prefix}e2e.hb_mae", v, mae_on(out, found), "g/dL", "lower", n=len(found))
        both = [k for k in found if k in ref_e2e]  # the delta compares like with like
        if not both:
            continue
        res.add(f"{prefix}e2e.hb_mae_delta", v, mae_on(out, both) - mae_on(ref_e2e, both), "g/dL",
                "lower", n=len(both))
        d = abs_delta(out, ref_e2e)
        for k in ("mean", "p95", "max"):
            res.add(f"{prefix}e2e.abs_delta.{k}", v, d[k], "g/dL", "lower", n=d["n"])
        res.add(f"{prefix}e2e.band_agreement", v,
                band_agreement([out[k] for k in both], [ref_e2e[k] for k in both]), "ratio",
                "higher", n=len(both))
        changes, gap = band_changes([out[k] for k in both], [ref_e2e[k] for k in both])
        res.add(f"{prefix}e2e.band_changes", v, changes, "patients", "lower", n=len(both))
        res.add(f"{prefix}e2e.band_change_edge_gap.max", v, gap, "g/dL", "lower", n=changes)
    return Measured(est_hb, e2e)


# ------------------------------------------------------------------ command line

REPLACED_PREFIX = "acc."  # a new eval replaces the previous eval's metrics


def results_path(args: Any) -> Path:
    return Path(args.results) if getattr(args, "results", None) else Path(args.art) / "results.json"


def merge_into(path: Path, new: Results, art: Artifact | None = None) -> Results:
    """Add the new metrics to `path`, replacing those a previous eval wrote; with `art`, also
    (re)record its file sizes (size.<role>.bytes)."""
    from hemoedge.artifact import record_sizes
    from hemoedge.report.results import merge_stage

    res = merge_stage(path, new, replaces=REPLACED_PREFIX)
    if art is not None:
        record_sizes(art, res)
        res.save(path)
    return res


def config_from_args(args: Any) -> EvalConfig:
    """EvalConfig from the parsed command line; the command recorded is the one the CLI
    parsed (`results.invocation`), rebuilt from `args` when called without it."""
    from hemoedge.report.results import command_line, invocation

    split = getattr(args, "split", None) or "test"
    argv = ["eval", str(args.art)]
    if args.data:
        argv += ["--data", str(args.data)]
    if split != "test":
        argv += ["--split", split]
    if getattr(args, "results", None):
        argv += ["--results", str(args.results)]
    return EvalConfig(art=Path(args.art), data=Path(args.data) if args.data else None,
                      split=split, command=invocation(args, command_line(argv)))


def cli(args: Any) -> int:
    return main(config_from_args(args), results_path(args))


def main(cfg: EvalConfig, results: Path | None = None) -> int:
    """`hemoedge eval` (without the quantiser peers) once its config is known: accuracy
    figures into `results` (default ART/results.json)."""
    from rich.console import Console

    console = Console(width=max(Console().width, 120))
    with console.status(f"evaluating every variant on the {cfg.split} split"
                        + (" (this machine's kernels, then the reference)")):
        ev = evaluate(cfg)
    out = results if results is not None else cfg.art / "results.json"
    art = Artifact.load(cfg.art)
    merge_into(out, ev.results, art)
    print_table(ev.results, ev.patients, console, art)
    console.print(f"{len(ev.results.metrics)} accuracy metrics written to {out}")
    return 0


def print_table(res: Results, patients: int, console=None, art: Artifact | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()

    def fmt(name: str, variant: str, spec: str = ".3f", scale: float = 1.0) -> str:
        m = res.get(name, variant)
        return "-" if m is None or not np.isfinite(m.value) else format(m.value * scale, spec)

    def size(role: str, variant: str) -> tuple[str, str]:
        files = art.files if art is not None else {}
        f, base = (files.get(file_name(role, p)) for p in (variant.split("=")[1], "fp32"))
        if not f or not base:
            return "-", "-"
        return f"{f['bytes'] / 1e6:.2f}", f"{f['bytes'] / base['bytes']:.0%}"

    t = Table(title=f"detector (test split, {patients} photos)")
    for c in ("variant", "nail mAP50", "Δ", "P", "R", "skin mAP50", "MB", "of fp32"):
        t.add_column(c)
    for v in sorted({m.variant for m in res.find("acc.det.")}):
        t.add_row(v, fmt("acc.det.nail.map50", v), fmt("acc.det.nail.map50_delta", v, "+.3f"),
                  fmt("acc.det.nail.precision", v), fmt("acc.det.nail.recall", v),
                  fmt("acc.det.skin.map50", v), *size("detector", v))
    console.print(t)
    t = Table(title="estimator on ground-truth nail crops (per patient median, g/dL)")
    for c in ("variant", "MAE", "Δ MAE", "RMSE", "R²", "band agr.", "|ΔHb| mean", "p95", "max",
              "of fp32"):
        t.add_column(c)
    est_rows = sorted({m.variant for m in res.find("acc.hb_mae")})
    for v in est_rows:
        t.add_row(v, fmt("acc.hb_mae", v), fmt("acc.hb_mae_delta", v, "+.3f"),
                  fmt("acc.hb_rmse", v), fmt("acc.hb_r2", v), fmt("acc.band_agreement", v, ".1%"),
                  fmt("acc.hb_abs_delta.mean", v), fmt("acc.hb_abs_delta.p95", v),
                  fmt("acc.hb_abs_delta.max", v), size("estimator", v)[1])
    if est_rows:  # none for an anaemia classifier
        console.print(t)
    for prefix, title in (("acc.cls", "anaemia classifier on ground-truth nail crops"),
                          ("acc.e2e.cls", "anaemia classifier end to end")):
        rows = sorted({m.variant for m in res.find(prefix + ".auroc")})
        if not rows:
            continue
        t = Table(title=f"{title} (per patient median logit; anaemic = positive)")
        for c in ("variant", "accuracy", "sensitivity", "specificity", "F1", "AUROC", "Δ AUROC",
                  "agreement"):
            t.add_column(c)
        for v in rows:
            t.add_row(v, *(fmt(f"{prefix}.{k}", v) for k in ("accuracy", "sensitivity",
                                                            "specificity", "f1", "auroc")),
                      fmt(f"{prefix}.auroc_delta", v, "+.3f"),
                      fmt(f"{prefix}.agreement", v, ".1%"))
        console.print(t)
    t = Table(title="end to end (detector -> up to 3 nails -> estimator, per patient median)")
    for c in ("pairing", "nail found", "MAE", "Δ MAE vs fp32", "|ΔHb| mean", "p95", "max",
              "band agr."):
        t.add_column(c)
    for v in sorted({m.variant for m in res.find("acc.e2e.")}):
        t.add_row(v, fmt("acc.e2e.nail_found_rate", v, ".0%"), fmt("acc.e2e.hb_mae", v),
                  fmt("acc.e2e.hb_mae_delta", v, "+.3f"), fmt("acc.e2e.abs_delta.mean", v),
                  fmt("acc.e2e.abs_delta.p95", v), fmt("acc.e2e.abs_delta.max", v),
                  fmt("acc.e2e.band_agreement", v, ".1%"))
    console.print(t)


__all__ = ["CLASS_NAMES", "EvalConfig", "ImageDets", "abs_delta", "add_classification",
           "add_kernel_spread", "band_agreement", "band_bias", "band_mae", "cli",
           "crop_sensitivity", "detection_metrics", "eval_records", "evaluate", "hb_metrics",
           "main", "match_predictions", "merge_into", "per_patient", "print_table",
           "results_path"]
