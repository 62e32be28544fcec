"""One onnxruntime session factory: pipeline.ort_session, and pipeline.session on top of it."""

import onnxruntime as ort
import pytest
from onnx_tiny import tiny_estimator

from hemoedge.errors import HemoedgeError
from hemoedge.pipeline import ort_session, session


def _opts(sess):
    return sess.get_session_options()


def test_reference_session_runs_the_graph_as_written(tmp_path):
    path = tiny_estimator(tmp_path / "e.onnx")
    ref, opt = _opts(session(path, 2, reference=True)), _opts(session(path, 2))
    assert ref.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert opt.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for so in (ref, opt):
        assert (so.intra_op_num_threads, so.inter_op_num_threads) == (2, 1)
        assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert so.log_severity_level == 3


def test_factory_options(tmp_path):
    path = tiny_estimator(tmp_path / "e.onnx")
    so = _opts(ort_session(path.read_bytes()))  # onnxruntime's own thread defaults
    assert so.intra_op_num_threads == 0 and so.log_severity_level == 3
    so = _opts(ort_session(path, threads=1, spin=False, optimization="ORT_ENABLE_BASIC",
                           optimized_model_path=tmp_path / "opt.onnx"))
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert (tmp_path / "opt.onnx").is_file()


def test_session_errors_name_the_file(tmp_path):
    with pytest.raises(HemoedgeError, match="no such ONNX file"):
        session(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(HemoedgeError, match="onnxruntime cannot load it"):
        session(bad)
