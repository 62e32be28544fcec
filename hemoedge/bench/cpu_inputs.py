"""The CPU benchmark's sessions and inputs: the session with the benchmark's fixed options,
random and real feeds, the synthetic frames a pairing is timed on, and the frame path
(hemoedge.pipeline.OnnxPipeline.frame, the app's own code path).
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.artifact import Artifact
from hemoedge.errors import BenchError

GRAPH_OPT = "ORT_ENABLE_ALL"



def _load_onnx(path: str | Path):
    """The ONNX model, or one line naming the file: missing, empty, not ONNX, truncated."""
    from hemoedge.artifact import load_onnx
    from hemoedge.errors import ArtifactError

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: no such ONNX file")
    try:
        return load_onnx(path)
    except ArtifactError as e:
        raise BenchError(str(e)) from e


def session(path: str | Path | bytes, threads: int, spin: bool = True):
    """An onnxruntime CPU session with the benchmark's fixed options (a path or model bytes)."""
    from hemoedge.pipeline import ort_session

    try:
        return ort_session(path, threads=threads, optimization=GRAPH_OPT, spin=spin)
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(f"{path}: onnxruntime cannot load it ({first[:200]})") from e


_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
       "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
       "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def random_feeds(sess, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs of each declared shape (dynamic dims = 1): floats uniform 0..1, ints 0."""
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        dtype = _NP.get(i.type)
        if dtype is None:
            raise BenchError(f"input {i.name!r} has type {i.type}; the harness makes only "
                             f"{sorted(_NP)}")
        if np.issubdtype(dtype, np.floating):
            feeds[i.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        else:
            feeds[i.name] = np.zeros(shape, dtype)
    return feeds


def _real_feeds(sess, arrays: list[np.ndarray]) -> list[dict[str, np.ndarray]] | None:
    """The given (1, C, H, W) arrays as feeds when the model has one matching input."""
    ins = sess.get_inputs()
    if len(ins) != 1 or not arrays:
        return None
    i = ins[0]
    want = [d if isinstance(d, int) and d > 0 else None for d in i.shape]
    if len(want) != arrays[0].ndim or any(w not in (None, s) for w, s in
                                          zip(want, arrays[0].shape, strict=True)):
        return None
    dtype = _NP.get(i.type, np.float32)
    return [{i.name: a.astype(dtype)} for a in arrays]


def _precision_of(path: Path) -> str:
    """fp32 / fp16 / int8 from an artifact file name, else guessed from the graph."""
    m = re.search(r"\.(fp32|fp16|int8)\.onnx$", path.name)
    if m:
        return m.group(1)
    model = _load_onnx(path)
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul"}:
        return "int8"
    if any(t.data_type == 10 for t in model.graph.initializer):  # TensorProto.FLOAT16
        return "fp16"
    return "fp32"


# ------------------------------------------------------------------------- frames

@dataclass
class Frames:
    images: list[np.ndarray]  # (H, W, 3) uint8 RGB camera-sized photos
    nails: list[tuple[float, float, float, float] | None]  # ground-truth nail xyxy, if known
    source: str


def load_frames(data: Path | None, k: int, seed: int) -> Frames:
    """Up to k photos (and their first nail box) from a Yakimov-layout folder; with no folder,
    synthesise k patients into a temporary folder (hemoedge.data.synth, seeded)."""
    from hemoedge.data import yakimov

    if data is None:
        from hemoedge.data.synth import synthesize

        with tempfile.TemporaryDirectory(prefix="hemoedge-bench-") as tmp:
            root = synthesize(Path(tmp) / "frames", patients=k, sessions=min(k, 2), seed=seed,
                              progress=False)
            fr = _frames_from(yakimov, root, k)
        fr.source = f"synthetic, {k} patients, seed {seed}"
        return fr
    return _frames_from(yakimov, Path(data), k)


def _frames_from(yakimov, root: Path, k: int) -> Frames:
    ds = yakimov.load(root)
    recs = ds.records[:k]
    if not recs:
        raise BenchError(f"{root}: no usable photos for the per-frame benchmark "
                         "(expected metadata.csv + photo/*.jpg in the Yakimov layout)")
    return Frames([yakimov.read_rgb(r.photo) for r in recs],
                  [(r.nail_xyxy() or [None])[0] for r in recs], str(root))


def _model_inputs(art: Artifact, frames: Frames) -> dict[str, list[np.ndarray]]:
    """Real inputs per role: letterboxed frames for the detector, preprocessed ground-truth
    nail crops (centre crop when there is no box) for the estimator."""
    from hemoedge.preprocess import crop, letterbox, resize_crop

    out: dict[str, list[np.ndarray]] = {}
    if "detector" in art.models:
        p = art.spec("detector").preprocess
        out["detector"] = [letterbox(im, p)[0] for im in frames.images]
    if "estimator" in art.models:
        p = art.spec("estimator").preprocess
        out["estimator"] = [resize_crop(crop(im, box or _centre(im)), p)
                            for im, box in zip(frames.images, frames.nails, strict=True)]
    return out


def _centre(img: np.ndarray) -> tuple[float, float, float, float]:
    h, w = img.shape[:2]
    return (w * 0.4, h * 0.4, w * 0.6, h * 0.6)


STAGES = ("letterbox", "detector", "decode", "crop_resize", "estimator")  # OnnxPipeline.frame


class FramePath:
    """The two-stage per-frame work exactly as the app runs it: hemoedge.pipeline.OnnxPipeline
    .frame (letterbox -> detector -> decode + NMS -> best nail -> crop + resize_crop ->
    estimator). When the detector finds no nail the app skips the estimator; here the
    ground-truth box (or the centre) is then cropped and estimated inside the same timed
    call, so every timed frame pays for both models. Calling it returns whether the detector
    found a nail. Stage times (STAGES, ms) of every frame go to `stage_ms` (for a frame
    without a nail, crop_resize and estimator are those of the fallback crop)."""

    def __init__(self, art: Artifact, det: str, est: str, threads: int, spin: bool = True,
                 sessions: Callable[[Path, int], Any] | None = None) -> None:
        from hemoedge.pipeline import OnnxPipeline

        det_path, est_path = art.path("detector", det), art.path("estimator", est)
        self.pipe = OnnxPipeline(det_path, est_path, threads)
        if sessions is not None or not spin:
            # this module's sessions have hemoedge.pipeline.session's options plus the spin
            # setting; `sessions` (e.g. a cache shared with the per-model jobs) saves memory
            make = sessions or (lambda path, t: session(path, t, spin))
            self.pipe.det, self.pipe.est = make(det_path, threads), make(est_path, threads)
        self.stage_ms: dict[str, list[float]] = {k: [] for k in STAGES}
        self.record = True  # False: calls are not added to stage_ms

    def reset(self) -> None:
        for v in self.stage_ms.values():
            v.clear()

    def __call__(self, img: np.ndarray, fallback: tuple[float, float, float, float]) -> bool:
        from hemoedge.preprocess import crop, resize_crop

        r = self.pipe.frame(img)
        ms = r.ms
        if r.nail is None:  # what OnnxPipeline.frame does after a detection, timed the same way
            t0 = time.perf_counter_ns()
            x = resize_crop(crop(img, fallback), self.pipe.est_spec.preprocess)
            t1 = time.perf_counter_ns()
            self.pipe.est.run(None, {self.pipe.est_spec.input_name: x})
            t2 = time.perf_counter_ns()
            ms = {**r.ms, "crop_resize": (t1 - t0) / 1e6, "estimator": (t2 - t1) / 1e6}
        if self.record:
            for k in STAGES:
                self.stage_ms[k].append(ms[k])
        return r.nail is not None
