import hashlib
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from hemoedge.artifact import Artifact
from hemoedge.errors import ExportError, HemoedgeError
from hemoedge.export.onnx_export import ExportConfig, export
from hemoedge.export.parity import match
from hemoedge.export.parity import run as parity_run
from hemoedge.pipeline import OnnxPipeline, read_spec
from hemoedge.preprocess import Detection
from hemoedge.report.results import Results
from hemoedge.spec import METADATA_KEY


def test_artifact_structure(tiny_art):
    art = Artifact.load(tiny_art)
    assert sorted(art.files) == ["detector.fp32.onnx", "estimator.fp32.onnx"]
    for name, role, shape_in, shape_out, io in (
            ("detector.fp32.onnx", "detector", [1, 3, 320, 320], [1, 6, 2100], ("images", "output0")),
            ("estimator.fp32.onnx", "estimator", [1, 3, 224, 224], [1, 1], ("input", "hb"))):
        f = art.files[name]
        assert f["opset"] == 13 and f["model"] == role and f["precision"] == "fp32"
        assert (f["inputs"][0]["name"], f["outputs"][0]["name"]) == io
        assert f["inputs"][0]["shape"] == shape_in and f["outputs"][0]["shape"] == shape_out
        assert f["sha256"] == hashlib.sha256((tiny_art / name).read_bytes()).hexdigest()
        assert f["op_census"]["Conv"] > 10
        m = onnx.load(str(tiny_art / name))
        props = {p.key: p.value for p in m.metadata_props}
        assert json.loads(props[METADATA_KEY])["role"] == role
        assert props["hemoedge.source_sha256"] == art.models[role]["source"]["sha256"]
    assert art.spec("estimator").preprocess.mean == (0.485, 0.456, 0.406)
    assert art.models["detector"]["source"]["simplify_max_abs"] <= 1e-4
    assert set(art.versions) >= {"torch", "onnx", "onnxruntime", "hemoedge"}


def test_export_is_deterministic(tiny_art, random_checkpoints, tmp_path):
    again = export(ExportConfig(out=tmp_path / "again", detector=random_checkpoints[0],
                                estimator=random_checkpoints[1]))
    for name in ("detector.fp32.onnx", "estimator.fp32.onnx"):
        assert (tiny_art / name).read_bytes() == (again.root / name).read_bytes()


def test_parity_fp32_passes_and_is_recorded(tiny_art):
    res = Results()
    report = parity_run(tiny_art, None, n_images=2, results=res)
    assert [fp.ok for fp in report] == [True, True]
    assert res.get("parity.estimator.fp32.hb_max_abs", "est=fp32").value <= 1e-3
    assert res.get("parity.detector.fp32.max_abs", "det=fp32").value < 1e-3


def test_match_counts_gained_and_lost():
    a = [Detection((0, 0, 10, 10), 0.9, 0), Detection((50, 50, 60, 60), 0.8, 1)]
    b = [Detection((0, 0, 10, 11), 0.9, 0), Detection((100, 100, 120, 120), 0.5, 0)]
    gained, lost, ious = match(a, b)
    assert (gained, lost) == (1, 1) and ious == [pytest.approx(100 / 110)]


def test_pipeline_reads_specs_from_the_files(tiny_art):
    pipe = OnnxPipeline(tiny_art / "detector.fp32.onnx", tiny_art / "estimator.fp32.onnx")
    assert pipe.det_spec == read_spec(tiny_art / "detector.fp32.onnx")
    r = pipe.frame(np.zeros((480, 640, 3), np.uint8))
    assert set(r.ms) >= {"letterbox", "detector", "estimator", "total"}
    hb = pipe.estimate(np.full((40, 30, 3), 128, np.uint8))
    assert np.isfinite(hb)


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hemoedge.cli", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def test_cli_bad_checkpoint_exit_2_no_partial_files(tmp_path, random_checkpoints):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    out = tmp_path / "art"
    r = _cli("export", "--detector", str(random_checkpoints[0]), "--estimator", str(bad),
             "--out", str(out))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"hemoedge: error: {bad}: not a torch checkpoint (expected a .pt/.pth zip archive)")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".art")]


def test_adopting_onnx_from_elsewhere(tiny_art, tmp_path):
    # a non-ONNX file, and an estimator ONNX offered as the detector (wrong head)
    junk = tmp_path / "junk.onnx"
    junk.write_text("not onnx")
    with pytest.raises(ExportError, match=r"junk\.onnx: not an ONNX model"):
        export(ExportConfig(out=tmp_path / "a", detector=junk))
    with pytest.raises(ExportError, match="does not look like a 2-class YOLOv8 head"):
        export(ExportConfig(out=tmp_path / "b", detector=tiny_art / "estimator.fp32.onnx"))
    art = export(ExportConfig(out=tmp_path / "c", detector=tiny_art / "detector.fp32.onnx",
                              estimator=tiny_art / "estimator.fp32.onnx"))
    assert art.models["detector"]["source"]["source_opset"] == 13
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_parity_refuses_a_checkpoint_that_changed_since_export(tmp_path, random_checkpoints):
    import shutil

    det, est = (tmp_path / "det.pt", tmp_path / "est.pt")
    shutil.copy(random_checkpoints[0], det)
    shutil.copy(random_checkpoints[1], est)
    art = export(ExportConfig(out=tmp_path / "art", detector=det, estimator=est)).root
    shutil.copy(random_checkpoints[1], det)  # the manifest's detector path now holds other bytes
    with pytest.raises(HemoedgeError, match="sha256 differs"):
        parity_run(art, None, n_images=1)
    det.unlink()
    with pytest.raises(HemoedgeError, match="missing"):
        parity_run(art, None, n_images=1)


def test_fold_batchnorm_keeps_the_outputs_and_removes_the_bn():
    """Conv (with and without bias) -> BatchNormalization folded in float64: same outputs, no
    BN left; a BN whose Conv output has another reader stays."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from hemoedge.export.fold import fold_batchnorm

    rng = np.random.default_rng(0)

    def init(name, *shape, positive=False):
        v = rng.normal(size=shape).astype(np.float32)
        return numpy_helper.from_array(np.abs(v) + 0.1 if positive else v, name)

    inits = [init("w1", 4, 3, 3, 3), init("w2", 4, 4, 1, 1), init("b2", 4),
             init("w3", 4, 4, 1, 1)]
    for p in ("bn1", "bn2", "bn3"):
        inits += [init(f"{p}_s", 4), init(f"{p}_b", 4), init(f"{p}_m", 4),
                  init(f"{p}_v", 4, positive=True)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"],
                              ["y1"], epsilon=1e-3),
             helper.make_node("Conv", ["y1", "w2", "b2"], ["c2"]),
             helper.make_node("BatchNormalization", ["c2", "bn2_s", "bn2_b", "bn2_m", "bn2_v"],
                              ["y2"]),
             helper.make_node("Conv", ["y2", "w3"], ["c3"]),
             helper.make_node("BatchNormalization", ["c3", "bn3_s", "bn3_b", "bn3_m", "bn3_v"],
                              ["y3"]),
             helper.make_node("Add", ["y3", "c3"], ["out"])]  # c3 has a second reader
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 3, 8, 8])], [helper.make_tensor_value_info(
            "out", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]

    before = run(model)
    assert fold_batchnorm(model) == 2
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Conv", "Conv",
                                                     "BatchNormalization", "Add"]
    np.testing.assert_allclose(run(model), before, rtol=1e-5, atol=1e-5)
