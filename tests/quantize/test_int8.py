"""int8 static QDQ on tiny models: census, per-channel weights, exclusions, calibration methods."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import qtiny

from hemoedge.errors import QuantizeError
from hemoedge.quantize import int8


def _est_inputs(n=12, seed=0, outliers=False):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(0, 1, (1, 3, qtiny.EST_SIZE, qtiny.EST_SIZE)).astype(np.float32)
          for _ in range(n)]
    if outliers:  # a long tail: MinMax stretches to it, Entropy/Percentile clip it
        xs[0][0, 0, 0, 0] = 60.0
    return xs


@pytest.fixture
def pre_est(tmp_path):
    src, pre = tmp_path / "e.onnx", tmp_path / "e.pre.onnx"
    onnx.save(qtiny.estimator(), str(src))
    int8.pre_process(src, pre)
    return pre


def _quant(pre, wd, method="minmax", exclude=(), xs=None, **kw):
    cache = int8.calibrate(pre, "input", xs or _est_inputs(), int8.CalibSettings(method, **kw),
                           wd, wd / f"ranges.{method}.json")
    out = wd / f"q.{method}.{len(exclude)}.onnx"
    int8.quantize(pre, cache, out, method, exclude)
    return out, cache


def _producers(model):
    return {o: n for n in model.graph.node for o in n.output}


def _node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def test_qdq_census_and_per_channel_weights(pre_est, tmp_path):
    q, _ = _quant(pre_est, tmp_path)
    m = onnx.load(str(q))
    census = int8.census(q)
    assert census["QuantizeLinear"] >= 3  # input, conv output, pooled/flattened features
    assert census["DequantizeLinear"] > census["QuantizeLinear"]  # + weight dequantisers
    prod = _producers(m)
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    w_dq = prod[conv.input[1]]
    assert w_dq.op_type == "DequantizeLinear"
    inits = {i.name: i for i in m.graph.initializer}
    scale = onnx.numpy_helper.to_array(inits[w_dq.input[1]])
    assert scale.shape == (4,)  # one scale per output channel
    w_q = onnx.numpy_helper.to_array(inits[w_dq.input[0]])
    assert w_q.dtype == np.int8
    act_q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    assert onnx.numpy_helper.to_array(inits[act_q.input[2]]).dtype == np.uint8


def test_excluded_node_stays_float(pre_est, tmp_path):
    q, _ = _quant(pre_est, tmp_path, exclude=["head"])
    m = onnx.load(str(q))
    prod = _producers(m)
    head = _node(m, "head")
    inits = {i.name: i for i in m.graph.initializer}
    assert head.input[1] in inits and inits[head.input[1]].data_type == onnx.TensorProto.FLOAT
    dq_outputs = {o for n in m.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert "hb" not in dq_outputs
    assert prod[_node(m, "conv1").input[1]].op_type == "DequantizeLinear"  # others still int8


def test_entropy_differs_from_minmax(pre_est, tmp_path):
    xs = _est_inputs(outliers=True)
    q_mm, c_mm = _quant(pre_est, tmp_path, "minmax", xs=xs)
    q_en, c_en = _quant(pre_est, tmp_path, "entropy", xs=xs, num_bins=512)
    from onnxruntime.quantization.calibrate import load_tensors_data

    hi_mm = float(np.ravel(load_tensors_data(c_mm)["input"].highest)[0])
    hi_en = float(np.ravel(load_tensors_data(c_en)["input"].highest)[0])
    assert 60.0 <= hi_mm < 60.0 * 1.045  # the outlier, snapped outward onto the range grid
    assert hi_en < 0.5 * hi_mm  # the outlier is clipped
    assert q_mm.read_bytes() != q_en.read_bytes()


def test_percentile_differs_from_minmax(pre_est, tmp_path):
    xs = _est_inputs(outliers=True)
    q_mm, _ = _quant(pre_est, tmp_path, "minmax", xs=xs)
    q_pc, _ = _quant(pre_est, tmp_path, "percentile", xs=xs, num_bins=512, percentile=99.9)
    assert q_mm.read_bytes() != q_pc.read_bytes()


def test_deterministic(pre_est, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    qa, _ = _quant(pre_est, tmp_path / "a")
    qb, _ = _quant(pre_est, tmp_path / "b")
    assert qa.read_bytes() == qb.read_bytes()


def test_copy_metadata(pre_est, tmp_path):
    q, _ = _quant(pre_est, tmp_path)
    src = tmp_path / "src.onnx"
    onnx.save(qtiny.estimator(), str(src))
    int8.copy_metadata(src, q)
    assert [(p.key, p.value) for p in onnx.load(str(q)).metadata_props] == [
        (p.key, p.value) for p in qtiny.estimator().metadata_props]


def test_settings_are_validated():
    with pytest.raises(QuantizeError, match="one of"):
        int8.CalibSettings("kl")
    with pytest.raises(QuantizeError, match="num_bins > num_quantized_bins"):
        int8.CalibSettings("entropy", num_bins=128)
    assert int8.CalibSettings("entropy", num_bins=2048).describe() == {
        "method": "entropy", "num_bins": 2048, "num_quantized_bins": 128}


def test_calibration_ranges_snap_outward_onto_a_grid():
    import numpy as np

    from hemoedge.quantize.int8 import snap_range

    lo, hi = snap_range(np.float32(-3.1), np.float32(5.7))
    assert -3.1 * 1.045 < lo <= -3.1 and 5.7 <= hi < 5.7 * 1.045
    assert lo.dtype == np.float32
    # a last-bit difference of the float kernels does not change the range
    for eps in (1e-6, -1e-6):
        assert snap_range(np.float32(-3.1 * (1 + eps)), np.float32(5.7 * (1 + eps))) == (lo, hi)
    assert snap_range(np.float32(0.0), np.float32(1.0)) == (0.0, 1.0)  # ReLU ranges, exact
    pos = snap_range(np.array([0.3], np.float32), np.array([0.9], np.float32))
    assert pos[0][0] <= 0.3 and pos[1][0] >= 0.9
    assert snap_range(*pos) == pos  # idempotent
