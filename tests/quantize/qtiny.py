"""Tiny models and data for the quantisation and accuracy tests (built in code, no torch).

Detector (64 px letterbox, 64 stride-8 anchors), shaped like YOLOv8's head: per 8x8 cell the
mean colour -> 1x1 conv -> sigmoid nail/skin scores; boxes are the cell (centre, 8 x 8 px);
the last node concatenates box pixels (0-64) with scores (0-1) into "output0" (1, 6, 64),
which is exactly what breaks a fully quantised YOLO (one scale for both).
Estimator (16 px): conv 3->4, relu, global average pool, Gemm -> "hb" (1, 1), about 8-15 g/dL.
Photos (128 x 128): a grey background, three nail squares and three skin squares on a 16 px
grid (letterboxed to 8 px network cells, so the detector's boxes match the labels exactly).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hemoedge.artifact import Artifact, file_name
from hemoedge.data.yakimov import Record
from hemoedge.spec import METADATA_KEY, OPSET, detector_spec, estimator_spec

DET_SIZE, EST_SIZE, PHOTO = 64, 16, 128
NAIL_SLOTS = ((16, 16), (16, 64), (64, 32))  # (top, left) of the 16 px nail squares
SKIN_SLOTS = ((96, 16), (96, 64), (64, 96))


def det_spec():
    return dataclasses.replace(detector_spec(DET_SIZE), output_shape=(1, 6, (DET_SIZE // 8) ** 2))


def est_spec():
    return estimator_spec(EST_SIZE)


def _model(graph, spec) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="hemoedge-tests")
    m.ir_version = 8
    if spec is not None:
        helper.set_model_props(m, {METADATA_KEY: spec.to_json(), "note": "kept"})
    onnx.checker.check_model(m)
    return m


def detector(box_scale: float = 1.0) -> onnx.ModelProto:
    n = DET_SIZE // 8
    init = []

    def const(name, arr, dtype=np.float32):
        init.append(numpy_helper.from_array(np.asarray(arr, dtype), name))
        return name

    # nail logit = 20 (R - G) - 6 ; skin logit = 20 (G - B) - 2.5  (R, G, B in 0-1)
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[0, :, 0, 0] = (20, -20, 0)
    w[1, :, 0, 0] = (0, 20, -20)
    ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    grid = np.zeros((1, 4, n * n), np.float32)
    grid[0, 0] = (xs.ravel() + 0.5) * 8  # cx, network px
    grid[0, 1] = (ys.ravel() + 0.5) * 8
    grid[0, 2:] = 8.0 * box_scale
    nodes = [
        helper.make_node("AveragePool", ["images"], ["pooled"], name="/model.0/pool",
                         kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Conv", ["pooled", const("w_cls", w), const("b_cls", [-6, -2.5])],
                         ["logits"], name="/model.22/cv3.0/Conv"),
        helper.make_node("Reshape", ["logits", const("shape_cls", [1, 2, n * n], np.int64)],
                         ["logits_flat"], name="/model.22/Reshape"),
        helper.make_node("Sigmoid", ["logits_flat"], ["scores"], name="/model.22/Sigmoid"),
        # box "decode": cell grid + 0 * colour (so the branch carries activations like YOLO's)
        helper.make_node("Conv", ["pooled", const("w_box", np.zeros((4, 3, 1, 1))),
                                  const("b_box", np.zeros(4))], ["box_raw"],
                         name="/model.22/cv2.0/Conv"),
        helper.make_node("Reshape", ["box_raw", const("shape_box", [1, 4, n * n], np.int64)],
                         ["box_flat"], name="/model.22/Reshape_1"),
        helper.make_node("Add", ["box_flat", const("grid", grid)], ["boxes"], name="/model.22/Add"),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], name="/model.22/Concat_3",
                         axis=1),
    ]
    g = helper.make_graph(
        nodes, "tiny-detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, DET_SIZE, DET_SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, n * n])], init)
    return _model(g, det_spec())


def estimator(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    w[0] = 0
    w[0, 0, 1, 1] = 1.0  # channel 0 ~ the red channel
    init = [numpy_helper.from_array(w, "w1"),
            numpy_helper.from_array(np.full(4, 2.5, np.float32), "b1"),
            numpy_helper.from_array(np.array([[1.5, 0.2, -0.1, 0.1]], np.float32), "w2"),
            numpy_helper.from_array(np.array([8.0], np.float32), "b2")]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r1"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["feat"], name="flatten"),
        helper.make_node("Gemm", ["feat", "w2", "b2"], ["hb"], name="head", transB=1),
    ]
    g = helper.make_graph(
        nodes, "tiny-estimator",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, EST_SIZE, EST_SIZE])],
        [helper.make_tensor_value_info("hb", TensorProto.FLOAT, [1, 1])], init)
    return _model(g, est_spec())


def make_art(root: Path, det: onnx.ModelProto | None = None,
             est: onnx.ModelProto | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    art = Artifact(root)
    for role, model, spec in (("detector", det or detector(), det_spec()),
                              ("estimator", est or estimator(), est_spec())):
        onnx.save(model, str(root / file_name(role, "fp32")))
        art.set_model(role, spec, {"sha256": "test"})
        art.add_file(role, "fp32")
    art.save()
    return root


# ------------------------------------------------------------------ data

def photo(hb: float, rng: np.random.Generator) -> np.ndarray:
    img = np.full((PHOTO, PHOTO, 3), 90, np.uint8)
    img += rng.integers(0, 6, img.shape, dtype=np.uint8)
    g = int(np.clip(150 - 5 * (hb - 8), 90, 160))  # redder nail for higher Hb
    for t, l in NAIL_SLOTS:
        img[t:t + 16, l:l + 16] = (230, g + rng.integers(-4, 5), 160)
    for t, l in SKIN_SLOTS:
        img[t:t + 16, l:l + 16] = (200, 170, 110)
    return img


def dataset(patients: int = 30, sessions: int = 6, seed: int = 0):
    """(records, images by photo name, read callable) — Yakimov records without files."""
    rng = np.random.default_rng(seed)
    records, images = [], {}
    for i in range(patients):
        hb = float(np.round(rng.uniform(6.0, 16.0), 1))
        name = f"P{i:03d}.jpg"
        images[name] = photo(hb, rng)
        nails = tuple((t, l, t + 16, l + 16) for t, l in NAIL_SLOTS)
        skins = tuple((t, l, t + 16, l + 16) for t, l in SKIN_SLOTS)
        records.append(Record(f"P{i:03d}", f"S{i % sessions}", hb, nails, skins, Path(name)))
    return records, images, lambda p: images[Path(p).name]


def splits(records):
    from hemoedge.data.yakimov import split

    return split(records, seed=0)


def write_dataset(root: Path, patients: int = 30, sessions: int = 6, seed: int = 0) -> Path:
    """The same data on disk in the Yakimov layout (PNG photos: lossless colours)."""
    import csv
    import json

    from PIL import Image

    records, images, _ = dataset(patients, sessions, seed)
    (root / "photo").mkdir(parents=True)
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["PATIENT_ID", "MEASUREMENT_DATE", "HB_LEVEL_GperL", "NAIL_BOUNDING_BOXES",
                    "SKIN_BOUNDING_BOXES"])
        for r in records:
            Image.fromarray(images[r.photo.name]).save(root / "photo" / f"{r.patient_id}.png")
            w.writerow([r.patient_id, r.session, round(r.hb_gdl * 10, 1),
                        json.dumps([list(b) for b in r.nail_boxes]),
                        json.dumps([list(b) for b in r.skin_boxes])])
    return root
