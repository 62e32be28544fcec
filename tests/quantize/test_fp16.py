"""fp16 variant: float16 inside, float32 at the edges, metadata kept."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import qtiny
from onnx import TensorProto

from hemoedge.quantize import fp16

TOL_SCORE = 5e-3  # fp16 vs fp32 detector output, same input


def _io_types(model):
    return ([i.type.tensor_type.elem_type for i in model.graph.input],
            [o.type.tensor_type.elem_type for o in model.graph.output])


def test_fp16_keeps_fp32_io_and_metadata(tmp_path):
    src, dst = tmp_path / "d32.onnx", tmp_path / "d16.onnx"
    onnx.save(qtiny.detector(), str(src))
    fp16.convert(src, dst)
    m = onnx.load(str(dst))
    assert _io_types(m) == ([TensorProto.FLOAT], [TensorProto.FLOAT])
    weights = {i.data_type for i in m.graph.initializer if i.name.startswith("w_")}
    assert weights == {TensorProto.FLOAT16}
    assert {p.key: p.value for p in m.metadata_props} == {
        p.key: p.value for p in onnx.load(str(src)).metadata_props}
    x = np.random.default_rng(0).random((1, 3, qtiny.DET_SIZE, qtiny.DET_SIZE), np.float32)
    a = ort.InferenceSession(str(src)).run(None, {"images": x})[0]
    b = ort.InferenceSession(str(dst)).run(None, {"images": x})[0]
    assert b.dtype == np.float32
    assert np.abs(a[0, 4:] - b[0, 4:]).max() < TOL_SCORE
