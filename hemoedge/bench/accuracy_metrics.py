"""The pure metric functions of `hemoedge eval` (hemoedge/bench/accuracy.py runs the models and
writes the figures): detection mAP / precision / recall through ultralytics' matching and
ap_per_class, Hb MAE / RMSE / R², per-severity-band error, bias and agreement, per-patient
medians, |a - b| summaries, the anaemia classification figures, crop sensitivity and the
kernel spread."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hemoedge import anaemia
from hemoedge.errors import BenchError
from hemoedge.preprocess import Detection, crop
from hemoedge.report.results import Results, variant_name
from hemoedge.severity import SEVERITY_BANDS, severity_band

if TYPE_CHECKING:
    from hemoedge.bench.accuracy import Measured

CLASS_NAMES = ("nail", "skin")  # detector class index -> name (spec.CLASS_NAMES)


def match_predictions(pred_boxes: np.ndarray, pred_cls: np.ndarray, pred_conf: np.ndarray,
                      gt_boxes: np.ndarray, gt_cls: np.ndarray, iou_thr: float = 0.5) -> np.ndarray:
    """(N,) bool: is each prediction a true positive at IoU >= iou_thr (one label each,
    highest confidence first)? ultralytics' greedy matching."""
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import box_iou

    n = len(pred_boxes)
    if n == 0 or len(gt_boxes) == 0:
        return np.zeros(n, bool)
    order = np.argsort(-np.asarray(pred_conf), kind="stable")
    iou = box_iou(torch.as_tensor(np.asarray(gt_boxes, np.float32)),
                  torch.as_tensor(np.asarray(pred_boxes, np.float32)[order]))
    holder = type("_IoUThresholds", (), {"iouv": torch.tensor([iou_thr])})()
    correct = BaseValidator.match_predictions(
        holder, torch.as_tensor(np.asarray(pred_cls)[order]), torch.as_tensor(np.asarray(gt_cls)),
        iou).numpy()[:, 0]
    out = np.zeros(n, bool)
    out[order] = correct
    return out


@dataclass
class ImageDets:
    """Detections and labels of one image (xyxy, image px)."""
    pred_boxes: np.ndarray  # (N, 4)
    pred_conf: np.ndarray  # (N,)
    pred_cls: np.ndarray  # (N,) int
    gt_boxes: np.ndarray  # (M, 4)
    gt_cls: np.ndarray  # (M,) int

    @staticmethod
    def of(dets: Sequence[Detection], gt: Sequence[tuple[Sequence[float], int]]) -> ImageDets:
        return ImageDets(np.array([d.box for d in dets], np.float32).reshape(-1, 4),
                         np.array([d.score for d in dets], np.float32),
                         np.array([d.cls for d in dets], np.int64),
                         np.array([b for b, _ in gt], np.float32).reshape(-1, 4),
                         np.array([c for _, c in gt], np.int64))


def detection_metrics(images: Sequence[ImageDets], class_names: Sequence[str] = CLASS_NAMES,
                      iou_thr: float = 0.5) -> dict[str, dict[str, float]]:
    """Per class: map50, precision and recall (at the max-F1 confidence) via ap_per_class."""
    from ultralytics.utils.metrics import ap_per_class

    tp, conf, pcls, tcls = [], [], [], []
    for im in images:
        tp.append(match_predictions(im.pred_boxes, im.pred_cls, im.pred_conf, im.gt_boxes,
                                    im.gt_cls, iou_thr))
        conf.append(im.pred_conf)
        pcls.append(im.pred_cls)
        tcls.append(im.gt_cls)
    tp_a = np.concatenate(tp).astype(bool)[:, None] if tp else np.zeros((0, 1), bool)
    conf_a = np.concatenate(conf) if conf else np.zeros(0)
    pcls_a = np.concatenate(pcls) if pcls else np.zeros(0, np.int64)
    tcls_a = np.concatenate(tcls) if tcls else np.zeros(0, np.int64)
    out = {name: {"map50": 0.0, "precision": 0.0, "recall": 0.0, "labels": 0}
           for name in class_names}
    if not len(tcls_a):
        return out
    _, _, p, r, _, ap, classes, *_ = ap_per_class(tp_a, conf_a, pcls_a, tcls_a)
    for i, c in enumerate(classes):
        out[class_names[int(c)]] = {"map50": float(ap[i, 0]), "precision": float(p[i]),
                                    "recall": float(r[i]), "labels": int((tcls_a == c).sum())}
    return out


def hb_metrics(pred: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
    """MAE, RMSE (g/dL) and R² of predicted against measured Hb (scikit-learn)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise BenchError(f"{int((~np.isfinite(p)).sum())} of {len(p)} predicted Hb values are "
                         "not finite (NaN/Inf): the model's outputs cannot be scored")
    return {"mae": float(mean_absolute_error(t, p)),
            "rmse": float(np.sqrt(mean_squared_error(t, p))),
            "r2": float(r2_score(t, p)) if len(t) > 1 else float("nan")}


def band_mae(pred: Sequence[float], truth: Sequence[float]) -> dict[str, tuple[float, int]]:
    """MAE per severity band of the measured Hb: band -> (mae, n); empty bands left out."""
    p, t = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    bands = np.array([severity_band(v) for v in t])
    return {name: (float(np.mean(np.abs(p[bands == name] - t[bands == name]))),
                   int((bands == name).sum()))
            for name, _, _ in SEVERITY_BANDS if (bands == name).any()}


def band_bias(hb: Mapping[str, float], ref: Mapping[str, float],
              truth: Mapping[str, float]) -> dict[str, tuple[float, int]]:
    """Mean signed Hb - Hb of the reference (e.g. fp32) per severity band of the measured Hb:
    band -> (bias g/dL, n); a shift confined to one band (severe anaemia read high) that a mean
    |dHb| over all bands hides. Empty bands left out."""
    keys = [k for k in hb if k in ref and k in truth]
    out: dict[str, tuple[float, int]] = {}
    for name, _, _ in SEVERITY_BANDS:
        ks = [k for k in keys if severity_band(truth[k]) == name]
        if ks:
            out[name] = (float(np.mean([hb[k] - ref[k] for k in ks])), len(ks))
    return out


def band_agreement(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of cases whose severity band is the same under a and b."""
    if not len(a):
        return float("nan")
    return float(np.mean([severity_band(x) == severity_band(y) for x, y in zip(a, b, strict=True)]))


def band_changes(a: Sequence[float], ref: Sequence[float]) -> tuple[int, float]:
    """Cases whose severity band differs between a and ref, and the largest distance of such a
    case's ref value from the nearest band edge (0 when none changed): a change of a case that
    sits on an edge takes any difference at all; one far from an edge takes a large one."""
    edges = sorted({e for _, lo, hi in SEVERITY_BANDS for e in (lo, hi)} - {0.0, 99.0})
    changed = [y for x, y in zip(a, ref, strict=True) if severity_band(x) != severity_band(y)]
    gap = max((min(abs(y - e) for e in edges) for y in changed), default=0.0)
    return len(changed), float(gap)


def per_patient(values: Sequence[float], patients: Sequence[str]) -> dict[str, float]:
    """Median of each patient's values (their nails)."""
    groups: dict[str, list[float]] = {}
    for v, p in zip(values, patients, strict=True):
        groups.setdefault(p, []).append(float(v))
    return {p: float(statistics.median(v)) for p, v in groups.items()}


def abs_delta(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """|a - b| over the keys both hold: mean, p95, max, n."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return {"mean": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
    d = np.abs(np.array([a[k] for k in keys]) - np.array([b[k] for k in keys]))
    return {"mean": float(d.mean()), "p95": float(np.percentile(d, 95)), "max": float(d.max()),
            "n": len(keys)}


def add_classification(res: Results, prefix: str, scores: Mapping[str, Mapping[str, float]],
                       ref: Mapping[str, float], truth: Mapping[str, float], keys: Sequence[str],
                       threshold: float) -> None:
    """<prefix>.{accuracy,sensitivity,specificity,f1,auroc} per variant on `keys` (patients),
    <prefix>.<m>_delta against `ref` (the fp32 scores) on the patients both have, and
    <prefix>.agreement (decision equal to fp32's)."""
    for v, sc in scores.items():
        ks = [k for k in keys if k in sc]
        m = anaemia.metrics([sc[k] for k in ks], [truth[k] for k in ks], threshold)
        both = [k for k in ks if k in ref]
        m_ref = anaemia.metrics([ref[k] for k in both], [truth[k] for k in both], threshold)
        m_new = m if both == ks else anaemia.metrics([sc[k] for k in both],
                                                      [truth[k] for k in both], threshold)
        for name in anaemia.METRICS:
            res.add(f"{prefix}.{name}", v, m[name], "ratio", "higher", n=len(ks),
                    threshold_gdl=threshold)
            res.add(f"{prefix}.{name}_delta", v, m_new[name] - m_ref[name], "ratio", "higher",
                    n=len(both))
        res.add(f"{prefix}.agreement", v, anaemia.agreement([sc[k] for k in both],
                                                           [ref[k] for k in both]),
                "ratio", "higher", n=len(both))


def crop_sensitivity(estimate: Callable[[np.ndarray], float],
                     nails: Sequence[tuple[np.ndarray, Sequence[float]]], exact: Sequence[float],
                     edge_px: float, copies: int, seed: int = 0) -> dict[str, float]:
    """|Hb(moved crop) - Hb(exact crop)| over `copies` moved crops of every (image, box) nail,
    each box edge moved by U(-edge_px, +edge_px): mean, p95, max (g/dL), n. Fixed seed: the
    same moved boxes for every variant and every run."""
    from hemoedge.augment import jitter_box

    rng = np.random.default_rng(seed)
    d = [abs(estimate(crop(img, jitter_box(box, rng, edge_px))) - h)
         for (img, box), h in zip(nails, exact, strict=True) for _ in range(copies)]
    if not d:
        return {"mean": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
    a = np.asarray(d)
    return {"mean": float(a.mean()), "p95": float(np.percentile(a, 95)), "max": float(a.max()),
            "n": len(a)}


def add_kernel_spread(res: Results, kernels: Measured, reference: Measured) -> None:
    """How far this machine's int8/fp16 kernels move each variant from the reference: per patient
    |Hb on kernels - Hb on the reference|, on ground-truth crops (est=P) and end to end."""
    pairs = [(variant_name(est=p), kernels.est_hb[p], reference.est_hb[p])
             for p in kernels.est_hb if p in reference.est_hb]
    pairs += [(variant_name(dp, q), hb, reference.e2e[(dp, q)])
              for (dp, q), hb in kernels.e2e.items() if (dp, q) in reference.e2e]
    for v, a, b in pairs:
        d = abs_delta(a, b)
        if not d["n"]:
            continue
        name = "acc.kernel_spread.e2e.hb_abs" if "," in v else "acc.kernel_spread.hb_abs"
        for k in ("p95", "max"):
            res.add(f"{name}.{k}", v, d[k], "g/dL", "lower", n=d["n"])
