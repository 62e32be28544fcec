"""Tiny stand-in models with the real I/O names, shapes and metadata (built in code, no torch).

Detector: a 32 px average pool, one 1x1 conv and a sigmoid score "pinkish" stride-32 cells as
nails; each such cell becomes one 32x32 px box (network px). The stride-8/16 anchors score 0.
Estimator: Hb = HB_BASE + HB_SLOPE * mean(normalised input).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hemoedge.artifact import Artifact, file_name
from hemoedge.spec import METADATA_KEY, OPSET, detector_spec, estimator_spec

NAIL_RGB = (230, 120, 130)  # a colour the tiny detector scores ~1 as nail
BACKGROUND_RGB = (100, 100, 100)  # grey scores ~0; bright enough for the "too dark" check
HB_BASE, HB_SLOPE = 11.0, 2.0  # the test nail reads ~12.6-12.8 g/dL: WHO "mild" for men only


def _model(graph, spec) -> onnx.ModelProto:
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hemoedge-tests"
    )
    m.ir_version = 8
    helper.set_model_props(m, {METADATA_KEY: spec.to_json()})
    onnx.checker.check_model(m)
    return m


def tiny_detector() -> onnx.ModelProto:
    spec = detector_spec()
    S, cell, n_small = 320, 32, 2000  # 1600 + 400 anchors at strides 8 and 16
    g = S // cell
    cx, cy = np.meshgrid((np.arange(g) + 0.5) * cell, (np.arange(g) + 0.5) * cell)
    boxes = np.zeros((1, 4, n_small + g * g), np.float32)
    boxes[0, 2:, :] = 8.0
    boxes[0, 0, n_small:] = cx.ravel()
    boxes[0, 1, n_small:] = cy.ravel()
    boxes[0, 2:, n_small:] = cell
    # logit = 30 * (R - (G + B) / 2) - 4 on the 0..1 input
    w = np.array([30.0, -15.0, -15.0], np.float32).reshape(1, 3, 1, 1)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array([-4.0], np.float32), "b"),
        numpy_helper.from_array(boxes, "boxes"),
        numpy_helper.from_array(np.zeros((1, 2, n_small), np.float32), "zero_scores"),
        numpy_helper.from_array(np.array([1, 1, g * g], np.int64), "shape"),
        numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
    ]
    nodes = [
        helper.make_node(
            "AveragePool", ["images"], ["pool"], kernel_shape=[cell, cell], strides=[cell, cell]
        ),
        helper.make_node("Conv", ["pool", "w", "b"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["sig"]),
        helper.make_node("Reshape", ["sig", "shape"], ["nail"]),
        helper.make_node("Mul", ["nail", "zero"], ["skin"]),
        helper.make_node("Concat", ["nail", "skin"], ["big_scores"], axis=1),
        helper.make_node("Concat", ["zero_scores", "big_scores"], ["scores"], axis=2),
        helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(spec.input_shape))],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(spec.output_shape))],
        inits,
    )
    return _model(graph, spec)


def tiny_estimator() -> onnx.ModelProto:
    spec = estimator_spec()
    inits = [
        numpy_helper.from_array(np.array([HB_SLOPE], np.float32), "a"),
        numpy_helper.from_array(np.array([HB_BASE], np.float32), "c"),
        numpy_helper.from_array(np.array([1, 1], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["m", "a"], ["ma"]),
        helper.make_node("Add", ["ma", "c"], ["hb_flat"]),
        helper.make_node("Reshape", ["hb_flat", "shape"], ["hb"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_estimator",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(spec.input_shape))],
        [helper.make_tensor_value_info("hb", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    return _model(graph, spec)


def write_artifact(root: Path, precisions=("fp32", "int8")) -> Path:
    """An artifact folder whose every precision is the same tiny model (enough for the app)."""
    root.mkdir(parents=True, exist_ok=True)
    art = Artifact(root)
    for role, make, spec in (
        ("detector", tiny_detector, detector_spec()),
        ("estimator", tiny_estimator, estimator_spec()),
    ):
        model = make()
        art.set_model(role, spec, {"checkpoint": "tiny-in-code"})
        for p in precisions:
            onnx.save(model, str(root / file_name(role, p)))
            art.add_file(role, p)
    art.save()
    return root


def nail_photo(
    w: int = 640, h: int = 480, cells=((1, 4), (3, 4), (5, 4))
) -> tuple[np.ndarray, list]:
    """A photo the tiny detector finds nails in: one 64x64 nail per (i, j) network cell.

    At 640x480 the letterbox scale is 0.5 and the top padding 40 px, so network cell (i, j)
    covers image x 64i..64i+64, y 64j-80..64j-16. Returns (RGB uint8, expected xyxy boxes).
    """
    img = np.empty((h, w, 3), np.uint8)
    img[...] = BACKGROUND_RGB
    boxes = []
    for i, j in cells:
        x1, y1 = 64 * i, 64 * j - 80
        img[y1 : y1 + 64, x1 : x1 + 64] = NAIL_RGB
        boxes.append((x1, y1, x1 + 64, y1 + 64))
    return img, boxes
