"""Tiny ONNX models built in code with the real I/O names, shapes and metadata specs: enough for
the harnesses (CPU bench, gate) without exporting a network. Shared by tests/bench/test_cpu.py
and tests/test_gate_quick.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hemoedge.artifact import Artifact
from hemoedge.spec import METADATA_KEY, OPSET, detector_spec, estimator_spec


def _vi(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _save(graph, path: Path, spec_json: str | None = None) -> Path:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    if spec_json:
        helper.set_model_props(m, {METADATA_KEY: spec_json})
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def tiny_detector(path: Path, score_bias: float = 0.0) -> Path:
    """images (1,3,320,320) -> Conv 3->6 k32 s32 -> (1,6,10,10) -> (1,6,100): cx,cy,w,h + 2
    sigmoid scores, shaped like YOLOv8's output with 100 anchors."""
    rng = np.random.default_rng(1)
    spec = detector_spec()
    w = (rng.standard_normal((6, 3, 32, 32)) * 0.01).astype(np.float32)
    init = [numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(np.array([160, 160, 60, 40, score_bias, -3], np.float32),
                                    "B"),
            numpy_helper.from_array(np.array([1, 6, 100], np.int64), "shape"),
            numpy_helper.from_array(np.array([4, 2], np.int64), "split")]
    nodes = [helper.make_node("Conv", ["images", "W", "B"], ["c"], kernel_shape=[32, 32],
                              strides=[32, 32]),
             helper.make_node("Reshape", ["c", "shape"], ["r"]),
             helper.make_node("Split", ["r", "split"], ["box", "cls"], axis=1),
             helper.make_node("Sigmoid", ["cls"], ["s"]),
             helper.make_node("Concat", ["box", "s"], ["output0"], axis=1)]
    g = helper.make_graph(nodes, "tiny_det",
                          [_vi("images", [1, 3, 320, 320])],
                          [_vi("output0", [1, 6, 100])], init)
    return _save(g, path, spec.to_json())


def tiny_estimator(path: Path) -> Path:
    """input (1,3,224,224) -> GlobalAveragePool -> Flatten -> Gemm 3->1 -> hb (1,1)."""
    spec = estimator_spec()
    init = [numpy_helper.from_array(np.array([[1.0, 2.0, 3.0]], np.float32), "G"),
            numpy_helper.from_array(np.array([12.0], np.float32), "GB")]
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "G", "GB"], ["hb"], transB=1)]
    g = helper.make_graph(nodes, "tiny_est",
                          [_vi("input", [1, 3, 224, 224])],
                          [_vi("hb", [1, 1])], init)
    return _save(g, path, spec.to_json())


def tiny_artifact(root: Path, precisions=("fp32", "int8"), score_bias: float = 0.0) -> Path:
    """An artifact folder with a tiny detector and estimator per precision (the 'int8' files
    are copies of the fp32 graph: the harness only needs distinct files)."""
    root.mkdir(parents=True, exist_ok=True)
    art = Artifact(root)
    art.set_model("detector", detector_spec(), {"sha256": "test"})
    art.set_model("estimator", estimator_spec(), {"sha256": "test"})
    for p in precisions:
        tiny_detector(root / f"detector.{p}.onnx", score_bias)
        tiny_estimator(root / f"estimator.{p}.onnx")
        art.add_file("detector", p)
        art.add_file("estimator", p)
    art.save()
    return root
