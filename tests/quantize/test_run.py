"""`hemoedge quantize` end to end on a tiny artifact and tiny data."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnx
import pytest
import qtiny

from hemoedge.artifact import Artifact
from hemoedge.errors import HemoedgeError, QuantizeError
from hemoedge.quantize import run
from hemoedge.spec import METADATA_KEY


def test_run_writes_every_variant(tiny_art, tiny_data):
    records, _, read = tiny_data
    # tiny models grow when quantised (QDQ nodes outweigh their few weights): no size budget
    cfg = run.QuantizeConfig(art=tiny_art, samples=12, val_samples=6, max_size_ratio=None)
    res = run.run(cfg, splits=qtiny.splits(records), read=read)
    art = Artifact.load(tiny_art)
    for role in ("detector", "estimator"):
        assert art.precisions(role) == ["fp32", "fp16", "int8"]
        fp32_model = onnx.load(str(art.path(role, "fp32")))
        fp32_meta = [(p.key, p.value) for p in fp32_model.metadata_props]
        for prec in ("fp16", "int8"):
            meta = [(p.key, p.value) for p in onnx.load(str(art.path(role, prec))).metadata_props]
            assert meta == fp32_meta and meta[0][0] == METADATA_KEY
        q = art.files[f"{role}.int8.onnx"]["quantization"]
        assert q["format"] == "QDQ" and q["activations"] == "uint8"
        assert q["weights"] == "int8 per-channel"
        assert q["calibration"]["method"] == "minmax" and q["calibration"]["samples"] > 0
        assert q["tolerance_met"] is True
        assert art.files[f"{role}.int8.onnx"]["op_census"]["QuantizeLinear"] > 0
    det_q = art.files["detector.int8.onnx"]["quantization"]
    kept = {e["name"]: e["reason"] for e in det_q["excluded_nodes"]}
    # the decode head stays in float by default, for a stated reason (not a measured find)
    assert "/model.22/Concat_3" in kept and "/model.22/Sigmoid" in kept
    assert not any("cv2" in n or "cv3" in n for n in kept)
    assert set(kept.values()) == {run.DECODE_REASON, run.STEM_REASON}
    # so does the input stem of both models: the node(s) reading the image
    for role in ("detector", "estimator"):
        q = art.files[f"{role}.int8.onnx"]["quantization"]
        stem = [e["name"] for e in q["excluded_nodes"] if e["reason"] == run.STEM_REASON]
        graph = onnx.load(str(art.path(role, "fp32"))).graph
        assert stem and stem == run.stem_nodes(graph)
        assert all(graph.input[0].name in next(n for n in graph.node if n.name == x).input
                   for x in stem)
    # and the estimator's output node: its answer is not rounded to an int8 grid
    est_q = art.files["estimator.int8.onnx"]["quantization"]
    out = [e["name"] for e in est_q["excluded_nodes"] if e["reason"] == run.OUTPUT_REASON]
    graph = onnx.load(str(art.path("estimator", "fp32"))).graph
    assert out and out == run.output_nodes(graph)
    assert all(graph.output[0].name in next(n for n in graph.node if n.name == x).output
               for x in out)
    est_graph = onnx.load(str(art.path("estimator", "int8"))).graph
    head = next(n for n in est_graph.node if n.name == out[0])
    assert head.op_type == "Gemm"  # still the float op, and nothing requantises its answer
    assert not any(n.op_type == "QuantizeLinear" and set(head.output) & set(n.input)
                   for n in est_graph.node)
    est_cal = art.files["estimator.int8.onnx"]["quantization"]["calibration"]
    assert est_cal["source"].startswith("fp32-detector nail crops of train split")
    assert est_cal["detector_crops"] > 0
    assert sorted(p.name for p in tiny_art.iterdir()) == sorted(
        ["manifest.json"] + [f"{r}.{p}.onnx" for r in ("detector", "estimator")
                             for p in ("fp32", "fp16", "int8")])  # no temp files left
    assert res.all_met


def test_run_is_deterministic(tmp_path, tiny_data):
    records, _, read = tiny_data
    shas = []
    for name in ("a", "b"):
        art = qtiny.make_art(tmp_path / name)
        run.run(run.QuantizeConfig(art=art, variants=("int8",), samples=12, val_samples=6,
                                   max_size_ratio=None),
                splits=qtiny.splits(records), read=read)
        m = json.loads((art / "manifest.json").read_text())["files"]
        shas.append({k: v["sha256"] for k, v in m.items()})
    assert shas[0] == shas[1]


def test_search_finds_the_decode_concat_when_asked_to_quantise_the_decode(tiny_art, tiny_data):
    records, _, read = tiny_data
    cfg = run.QuantizeConfig(art=tiny_art, variants=("int8",), roles=("detector",), samples=12,
                             val_samples=6, max_size_ratio=None, float_decode=False,
                             float_stem=False, float_output=False)
    run.run(cfg, splits=qtiny.splits(records), read=read)
    det_q = Artifact.load(tiny_art).files["detector.int8.onnx"]["quantization"]
    assert [e["name"] for e in det_q["excluded_nodes"]] == ["/model.22/Concat_3"]
    assert det_q["excluded_nodes"][0]["reason"].startswith("measured")


class _OtherCpu:
    """onnxruntime as another x86 CPU would run it: fused int8 kernels that round differently
    (every output of an optimised session over a QDQ model moved by ~5 %) and float kernels
    that differ in the last bits (every other output moved by ~1e-6, relative)."""

    def __init__(self, monkeypatch):
        import onnxruntime as ort

        self.rng = np.random.default_rng(7)
        self.fused_runs = 0
        init, run_ = ort.InferenceSession.__init__, ort.InferenceSession.run
        other = self

        def patched_init(sess, path, sess_options=None, *a, **k):
            init(sess, path, sess_options, *a, **k)
            optimised = (sess_options is None or sess_options.graph_optimization_level
                         != ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
            qdq = isinstance(path, str) and any(
                n.op_type == "QuantizeLinear" for n in onnx.load(path).graph.node)
            sess._hemoedge_scale = 0.05 if (optimised and qdq) else 1e-6

        def patched_run(sess, *a, **k):
            outs = run_(sess, *a, **k)
            scale = getattr(sess, "_hemoedge_scale", 0.0)
            other.fused_runs += scale == 0.05
            return [o * (1 + scale * other.rng.standard_normal(o.shape)).astype(o.dtype)
                    if isinstance(o, np.ndarray) and o.dtype.kind == "f" else o for o in outs]

        monkeypatch.setattr(ort.InferenceSession, "__init__", patched_init)
        monkeypatch.setattr(ort.InferenceSession, "run", patched_run)


def test_int8_files_do_not_depend_on_the_cpu_that_made_them(tmp_path, tiny_data, monkeypatch):
    """The search decides on the reference (graph optimisations off), calibration ranges sit on
    a grid and decision figures are rounded: another CPU's kernels change no byte."""
    records, _, read = tiny_data

    def build(name):
        art = qtiny.make_art(tmp_path / name)
        run.run(run.QuantizeConfig(art=art, variants=("int8",), samples=12, val_samples=6,
                                   max_size_ratio=None, float_decode=False),
                splits=qtiny.splits(records), read=read)
        files = Artifact.load(art).files
        return {k: (v["sha256"], [e["name"] for e in v["quantization"]["excluded_nodes"]])
                for k, v in files.items() if k.endswith(".int8.onnx")}

    here = build("here")
    other = _OtherCpu(monkeypatch)
    # the fake really is another CPU: an optimised int8 session now answers differently
    from hemoedge.pipeline import session

    s = session(tmp_path / "here" / "estimator.int8.onnx")
    x = {s.get_inputs()[0].name: np.ones(s.get_inputs()[0].shape, np.float32)}
    assert not np.array_equal(s.run(None, x)[0], s.run(None, x)[0])
    assert other.fused_runs == 2
    assert build("elsewhere") == here
    assert other.fused_runs == 2  # quantize never ran a fused int8 kernel


def test_fp16_only_needs_no_data(tiny_art):
    run.run(run.QuantizeConfig(art=tiny_art, variants=("fp16",)), splits=None)
    assert Artifact.load(tiny_art).precisions("estimator") == ["fp32", "fp16"]


def test_bad_config_and_missing_art(tmp_path):
    with pytest.raises(QuantizeError, match="unknown variant"):
        run.QuantizeConfig(art=tmp_path, variants=("int4",))
    with pytest.raises(QuantizeError, match="entropy"):
        run.QuantizeConfig(art=tmp_path, method="entropy", num_bins=64)
    args = argparse.Namespace(art=str(tmp_path / "nope"), variants=["fp16"], calib=None,
                              method="minmax", samples=8, tolerance_hb=0.05)
    with pytest.raises(HemoedgeError, match=r"manifest\.json"):
        run.cli(args)


def test_config_from_args_reads_optional_flags(tmp_path):
    base = dict(art=str(tmp_path), variants=["int8"], calib=None, method="minmax", samples=8,
                tolerance_hb=0.05)
    cfg = run.config_from_args(argparse.Namespace(**base))
    assert cfg.search.max_steps == run.sensitivity.SearchConfig().max_steps
    assert cfg.float_decode is True
    cfg = run.config_from_args(argparse.Namespace(**base, max_steps=2, val_samples=4,
                                                  quantize_decode=True))
    assert (cfg.search.max_steps, cfg.val_samples, cfg.float_decode) == (2, 4, False)
    assert cfg.float_stem is True
    assert run.config_from_args(argparse.Namespace(**base, quantize_stem=True)).float_stem is False
    assert cfg.float_output is True
    assert run.config_from_args(argparse.Namespace(**base,
                                                   quantize_output=True)).float_output is False
