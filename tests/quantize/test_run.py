"""`hemoedge quantize` end to end on a tiny artifact and tiny data."""

from __future__ import annotations

import argparse
import json

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
    assert [e["name"] for e in det_q["excluded_nodes"]] == ["/model.22/Concat_3"]
    assert det_q["excluded_nodes"][0]["reason"].startswith("measured")
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
    with pytest.raises(HemoedgeError, match="manifest.json"):
        run.cli(args)


def test_config_from_args_reads_optional_flags(tmp_path):
    base = dict(art=str(tmp_path), variants=["int8"], calib=None, method="minmax", samples=8,
                tolerance_hb=0.05)
    cfg = run.config_from_args(argparse.Namespace(**base))
    assert cfg.search.max_steps == run.sensitivity.SearchConfig().max_steps
    cfg = run.config_from_args(argparse.Namespace(**base, max_steps=2, val_samples=4,
                                                  seed_hint=True))
    assert (cfg.search.max_steps, cfg.val_samples, cfg.seed_hint) == (2, 4, True)
