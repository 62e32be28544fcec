"""The two-stage pipeline as the app runs it, on onnxruntime (CPU).

frame -> letterbox -> detector -> decode + NMS -> best nail -> crop -> resize+crop -> estimator
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hemoedge.errors import HemoedgeError
from hemoedge.preprocess import Detection, crop, decode_detections, letterbox, resize_crop
from hemoedge.spec import METADATA_KEY, ModelSpec

NAIL = 0  # class index
REFERENCE_OPT = "ORT_DISABLE_ALL"  # the machine-independent reference: the graph as written
DEFAULT_OPT = "ORT_ENABLE_ALL"


def ort_session(model, *, threads: int | None = None, optimization: str = DEFAULT_OPT,
                spin: bool = True, optimized_model_path: str | Path | None = None):
    """The one place an onnxruntime CPU session is made (every stage calls this).

    model: a path, serialized bytes or an onnx.ModelProto. threads: intra-op threads with one
    inter-op thread and sequential execution; None leaves onnxruntime's own defaults.
    optimization: a GraphOptimizationLevel name (ORT_ENABLE_ALL, ORT_DISABLE_ALL, ...).
    spin=False stops intra-op threads spinning while idle. optimized_model_path: where
    onnxruntime writes the graph it optimised. Load errors propagate; callers word them."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimization)
    if optimized_model_path is not None:
        so.optimized_model_filepath = str(optimized_model_path)
    so.log_severity_level = 3
    if isinstance(model, (str, Path)):
        src = str(model)
    elif isinstance(model, bytes):
        src = model
    else:  # an onnx.ModelProto
        src = model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def session(path: str | Path, threads: int = 1, reference: bool = False):
    """An onnxruntime CPU session; HemoedgeError naming the file if it will not load.

    reference=True runs the graph exactly as written, with every graph optimisation off: a QDQ
    model's QuantizeLinear -> DequantizeLinear pairs then run as float rounding around float
    kernels, instead of being fused into the int8 kernels onnxruntime picks for this CPU's
    instruction set (AVX2 / AVX-512 VNNI / AMX on x86, others in WASM). That is the
    quantisation arithmetic itself, the same on every machine: what `quantize` decides on and
    what `eval` reports as the machine-independent reference."""
    if not Path(path).is_file():
        raise HemoedgeError(f"{path}: no such ONNX file")
    try:
        return ort_session(path, threads=threads,
                           optimization=REFERENCE_OPT if reference else DEFAULT_OPT)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise HemoedgeError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from e


def read_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec stored in an ONNX file's metadata_props."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and others for a non-ONNX file
        raise HemoedgeError(f"{path}: not an ONNX file ({e.__class__.__name__})") from e
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise HemoedgeError(f"{path}: no {METADATA_KEY!r} metadata (not exported by hemoedge; "
                            "re-export it with `hemoedge export`)")
    return ModelSpec.from_json(props[METADATA_KEY])


@dataclass
class FrameResult:
    hb: float | None  # g/dL; None when no nail was found
    nail: Detection | None
    detections: list[Detection] = field(default_factory=list)
    ms: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds


class OnnxPipeline:
    def __init__(self, detector: str | Path, estimator: str | Path, threads: int = 1,
                 conf: float = 0.25, iou: float = 0.45, reference: bool = False):
        self.det_spec, self.est_spec = read_spec(detector), read_spec(estimator)
        self.det = session(detector, threads, reference)
        self.est = session(estimator, threads, reference)
        self.conf, self.iou = conf, iou

    def detect(self, img: np.ndarray) -> list[Detection]:
        x, geo = letterbox(img, self.det_spec.preprocess)
        raw = self.det.run([self.det_spec.output_name], {self.det_spec.input_name: x})[0]
        return decode_detections(raw, geo, self.conf, self.iou)

    @staticmethod
    def nails(dets: list[Detection]) -> list[Detection]:
        return [d for d in dets if d.cls == NAIL]

    def best_nail(self, dets: list[Detection]) -> Detection | None:
        nails = self.nails(dets)
        return max(nails, key=lambda d: d.score) if nails else None

    def estimate(self, crop_rgb: np.ndarray) -> float:
        x = resize_crop(crop_rgb, self.est_spec.preprocess)
        return float(self.est.run([self.est_spec.output_name], {self.est_spec.input_name: x})[0]
                     .reshape(-1)[0])

    def frame(self, img: np.ndarray) -> FrameResult:
        """One camera frame, timed per stage, as the app processes it."""
        t0 = time.perf_counter_ns()
        x, geo = letterbox(img, self.det_spec.preprocess)
        t1 = time.perf_counter_ns()
        raw = self.det.run([self.det_spec.output_name], {self.det_spec.input_name: x})[0]
        t2 = time.perf_counter_ns()
        dets = decode_detections(raw, geo, self.conf, self.iou)
        nail = self.best_nail(dets)
        t3 = time.perf_counter_ns()
        hb = None
        t4 = t5 = t3
        if nail is not None:
            xe = resize_crop(crop(img, nail.box), self.est_spec.preprocess)
            t4 = time.perf_counter_ns()
            hb = float(self.est.run([self.est_spec.output_name],
                                    {self.est_spec.input_name: xe})[0].reshape(-1)[0])
            t5 = time.perf_counter_ns()
        ms = {"letterbox": (t1 - t0) / 1e6, "detector": (t2 - t1) / 1e6,
              "decode": (t3 - t2) / 1e6, "crop_resize": (t4 - t3) / 1e6,
              "estimator": (t5 - t4) / 1e6, "total": (t5 - t0) / 1e6}
        return FrameResult(hb, nail, dets, ms)

    def photo(self, img: np.ndarray, max_nails: int = 3) -> tuple[float | None, list[float]]:
        """All detected nails (best first, up to max_nails): (median Hb, per-nail Hb)."""
        nails = sorted(self.nails(self.detect(img)), key=lambda d: -d.score)[:max_nails]
        per = [self.estimate(crop(img, d.box)) for d in nails]
        return (statistics.median(per) if per else None), per
