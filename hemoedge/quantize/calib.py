"""Calibration and validation inputs taken from the pipeline itself.

* detector: letterboxed photos, exactly as the app feeds them;
Photos are chosen stratified over the severity bands of their measured Hb (`pick`): an even
spread by patient id alone left every patient below 8 g/dL out of the calibration and the
tolerance check, and every int8 variant then read severe anaemia about 0.7 g/dL high.

* estimator: nail crops found by the fp32 detector in the photos (up to 3 nails per photo,
  the detections the app would crop), not centre crops of whole photos. Where the fp32
  detector finds no nail in a photo (e.g. an untrained detector) the ground-truth nail boxes
  are used for that photo instead, and the count is recorded.

Records are duck-typed to hemoedge.data.yakimov.Record: `.patient_id`, `.photo`, `.hb_gdl`,
`.nail_xyxy()`. Photos are read with the `read` callable (yakimov.read_rgb by default).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.preprocess import Detection, crop, decode_detections, letterbox, resize_crop
from hemoedge.spec import ModelSpec

log = logging.getLogger(__name__)

NAIL = 0  # class index of "nail" in the detector output (spec.CLASS_NAMES)
NAILS_PER_PHOTO = 3  # three fingers per Yakimov photo


class OrtModel:
    """One ONNX file in an onnxruntime CPU session, with its ModelSpec from metadata_props."""

    def __init__(self, path: str | Path, threads: int = 1, spec: ModelSpec | None = None):
        from hemoedge.pipeline import read_spec, session

        self.path = Path(path)
        self.session = session(self.path, threads)
        self.spec = spec or read_spec(self.path)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


def detect(det: OrtModel, img: np.ndarray, conf: float = 0.25, iou: float = 0.45,
           max_det: int = 50) -> list[Detection]:
    x, geo = letterbox(img, det.spec.preprocess)
    return decode_detections(det.run(x), geo, conf=conf, iou=iou, max_det=max_det)


def top_nails(dets: Sequence[Detection], k: int = NAILS_PER_PHOTO) -> list[Detection]:
    """The k highest-scoring nail detections (the first one is the app's best nail)."""
    return sorted((d for d in dets if d.cls == NAIL), key=lambda d: -d.score)[:k]


def estimator_input(est_spec: ModelSpec, img: np.ndarray, box: Sequence[float]) -> np.ndarray:
    return resize_crop(crop(img, tuple(box)), est_spec.preprocess)


def estimate(est: OrtModel, img: np.ndarray, box: Sequence[float]) -> float:
    return float(est.run(estimator_input(est.spec, img, box)).reshape(-1)[0])


def _default_read() -> Callable[[Path], np.ndarray]:
    from hemoedge.data.yakimov import read_rgb

    return read_rgb


def _spread(records: Sequence[Any], n: int) -> list[Any]:
    """n records spread evenly over the list (sorted by patient id): deterministic."""
    recs = sorted(records, key=lambda r: str(r.patient_id))
    if n >= len(recs):
        return recs
    idx = np.unique(np.linspace(0, len(recs) - 1, n).round().astype(int))
    return [recs[i] for i in idx]


SAMPLING = ("stratified", "spread")


def pick(records: Sequence[Any], n: int, sampling: str = "stratified") -> list[Any]:
    """n records stratified over the severity bands of their Hb: the n slots are dealt to the
    bands in turn (a band with too few records passes its turn on), each band's records spread
    evenly by patient id. Deterministic; records without Hb count as one more band.
    sampling="spread": an even spread by patient id only (the earlier rule, for comparison)."""
    from hemoedge.severity import severity_band

    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got {sampling!r}")
    if sampling == "spread":
        return _spread(records, n)
    if n >= len(records):
        return sorted(records, key=lambda r: str(r.patient_id))
    groups: dict[str, list[Any]] = {}
    for r in records:
        hb = getattr(r, "hb_gdl", None)
        groups.setdefault("?" if hb is None else severity_band(float(hb)), []).append(r)
    share = dict.fromkeys(groups, 0)
    left = n
    while left:
        for band in sorted(groups):
            if left and share[band] < len(groups[band]):
                share[band] += 1
                left -= 1
    chosen = [r for band in sorted(groups) for r in _spread(groups[band], share[band])]
    return sorted(chosen, key=lambda r: str(r.patient_id))


def detector_inputs(records: Sequence[Any], spec: ModelSpec, samples: int,
                    read: Callable | None = None, sampling: str = "stratified") -> list[np.ndarray]:
    read = read or _default_read()
    return [letterbox(read(r.photo), spec.preprocess)[0]
            for r in pick(records, samples, sampling)]


@dataclass
class CropSet:
    inputs: list[np.ndarray]  # estimator inputs (1, 3, S, S)
    patients: list[str]  # patient of each crop
    hb: list[float]  # measured Hb of each crop's patient, g/dL (nan where unknown)
    photos: int  # photos used
    detected: int  # crops from fp32-detector boxes
    fallback: int  # crops from ground-truth boxes (photo without any detected nail)

    def describe(self) -> dict:
        return {"samples": len(self.inputs), "photos": self.photos,
                "detector_crops": self.detected, "ground_truth_fallback_crops": self.fallback,
                "bands": self.band_counts()}

    def bands(self) -> list[str]:
        """Severity band of each crop's measured Hb ("?" where unknown)."""
        from hemoedge.severity import severity_band

        return [severity_band(h) if np.isfinite(h) else "?" for h in self.hb]

    def band_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.bands()).items()))


def detector_crops(records: Sequence[Any], det: OrtModel, est_spec: ModelSpec, samples: int,
                   read: Callable | None = None, sampling: str = "stratified") -> CropSet:
    """Up to `samples` estimator inputs: fp32-detector nail crops, <= 3 per photo."""
    read = read or _default_read()
    per_photo = NAILS_PER_PHOTO
    out = CropSet([], [], [], 0, 0, 0)
    for r in pick(records, max(1, -(-samples // per_photo)), sampling):
        img = read(r.photo)
        # boxes rounded to 1e-3 px: a box edge on a whole pixel (ground-truth-like boxes) would
        # otherwise move a crop by a pixel with any last-bit difference of the float kernels
        boxes = [tuple(round(v, 3) for v in d.box)
                 for d in top_nails(detect(det, img), per_photo)]
        from_gt = not boxes
        if from_gt:
            boxes = list(r.nail_xyxy())[:per_photo]
        out.photos += 1
        for b in boxes:
            if len(out.inputs) >= samples:
                break
            out.inputs.append(estimator_input(est_spec, img, b))
            out.patients.append(str(r.patient_id))
            out.hb.append(float(getattr(r, "hb_gdl", float("nan"))))
            if from_gt:
                out.fallback += 1
            else:
                out.detected += 1
    if out.fallback:
        log.warning("calibration: %d of %d estimator crops came from ground-truth boxes "
                    "(the fp32 detector found no nail in some photos)", out.fallback,
                    len(out.inputs))
    return out
