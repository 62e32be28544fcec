"""Output correction of an int8 regression model: y = a * y_int8 + b fitted to fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hemoedge.errors import QuantizeError
from hemoedge.pipeline import session
from hemoedge.quantize import correct


def _linear(path, w=2.0, b=1.0):
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["t"], name="m"),
         helper.make_node("Add", ["t", "b"], ["hb"], name="a")], "lin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("hb", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(np.array(w, np.float32), "w"),
         numpy_helper.from_array(np.array(b, np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, str(path))


def test_fit_recovers_slope_and_offset():
    x = np.linspace(6, 16, 20)
    c = correct.fit(x, 1.02 * x - 0.3)
    assert c.scale == pytest.approx(1.02) and c.offset == pytest.approx(-0.3)
    assert correct.fit(x * (1 + 1e-7), 1.02 * x - 0.3) == c  # last bits change nothing
    assert c.samples == 20
    flat = correct.fit(np.array([12.0, 12.1, 12.2, 12.0, 12.1]), np.full(5, 12.4) + 0.01)
    assert (flat.scale, flat.offset) == (1.0, pytest.approx(0.33))  # too narrow for a slope
    with pytest.raises(QuantizeError, match=">= 3"):
        correct.fit([1.0, 2.0], [1.0, 2.0])


def test_apply_appends_two_float_nodes_and_keeps_the_output_name(tmp_path):
    src, dst = tmp_path / "m.onnx", tmp_path / "c.onnx"
    _linear(src)
    correct.apply(src, dst, correct.Correction(0.5, 3.0, 10))
    m = onnx.load(str(dst))
    assert [o.name for o in m.graph.output] == ["hb"]
    assert [n.op_type for n in m.graph.node][-2:] == ["Mul", "Add"]
    y = session(dst).run(None, {"x": np.array([[4.0]], np.float32)})[0]
    assert float(y.ravel()[0]) == pytest.approx(0.5 * (2 * 4 + 1) + 3.0)
