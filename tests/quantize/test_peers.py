"""Quantiser peers (hemoedge/quantize/peers.py, hemoedge/bench/peers.py) on tiny models."""

from __future__ import annotations

import json

import onnx
import pytest
import qtiny

from hemoedge.artifact import Artifact
from hemoedge.bench import peers as bench_peers
from hemoedge.cli import main
from hemoedge.errors import QuantizeError
from hemoedge.pipeline import OnnxPipeline
from hemoedge.quantize import peers, run
from hemoedge.report import html
from hemoedge.report.results import Results

QUICK = bench_peers.TimingConfig(rounds=4, runs=2, warmup=1)


def _cfg(art, engines, **kw):
    return run.QuantizeConfig(art=art, variants=("fp32",), samples=12, est_samples=12,
                              val_samples=6, engines=tuple(engines), **kw)


def _meta(path):
    return [(p.key, p.value) for p in onnx.load(str(path)).metadata_props]


def _leftovers(art):
    return sorted(p.name for p in (art / "peers").iterdir() if p.name.startswith("."))


def _check_engine(art, engine, splits, read):
    folder = art / "peers" / engine
    rec = json.loads((folder / "peer.json").read_text())
    assert rec["engine"] == engine and rec["version"] not in ("", "absent")
    inputs = run.model_inputs(Artifact.load(art), splits, _cfg(art, ()), read)
    for role in ("detector", "estimator"):
        path = folder / f"{role}.int8.onnx"
        assert _meta(path) == _meta(art / f"{role}.fp32.onnx")  # hemoedge.spec and the rest
        facts = rec["files"][path.name]
        assert facts["op_census"]["QuantizeLinear"] > 0
        assert facts["calibration"]["samples"] == len(inputs[role].calib) == 12
        # exactly the calibration inputs hemoedge's own int8 uses
        assert facts["calibration"]["inputs_sha256"] == peers.inputs_sha256(inputs[role].calib)
    OnnxPipeline(folder / "detector.int8.onnx", folder / "estimator.int8.onnx")  # runnable
    assert _leftovers(art) == []
    return rec


def test_ort_engine_through_quantize_run(tiny_art, tiny_data):
    records, _, read = tiny_data
    splits = qtiny.splits(records)
    before = sorted(p.name for p in tiny_art.iterdir())
    run.run(_cfg(tiny_art, ["ort"]), splits=splits, read=read)
    rec = _check_engine(tiny_art, "ort", splits, read)
    d = rec["settings"]["defaults"]
    assert d["per_channel"] == "False" and d["quant_format"] == "QDQ"
    assert "quant_pre_process" in rec["settings"]["pre_process"]
    assert sorted(p.name for p in tiny_art.iterdir()) == sorted([*before, "peers"])


def test_failure_leaves_no_partial_file(tiny_art, tiny_data, monkeypatch):
    records, _, read = tiny_data

    def half_written(src, dst, calib, wd):
        dst.write_bytes(b"partial")
        if "estimator" in src.name:
            raise RuntimeError("boom")
        return peers.build_ort(src, dst, calib, wd)

    monkeypatch.setitem(peers.ENGINES, "broken",
                        peers.Engine("broken", half_written, "onnxruntime", "onnxruntime", False))
    with pytest.raises(QuantizeError, match=r"--engine broken failed on the estimator .*boom"):
        peers.build(_cfg(tiny_art, ["broken"]), qtiny.splits(records), read)
    folder = tiny_art / "peers" / "broken"
    # the detector finished and is recorded; the estimator never appears, not even partly
    assert sorted(p.name for p in folder.iterdir()) == ["detector.int8.onnx", "peer.json"]
    assert list(json.loads((folder / "peer.json").read_text())["files"]) == ["detector.int8.onnx"]
    assert _leftovers(tiny_art) == []


def test_unknown_engine_lists_the_valid_ones(tiny_art, capsys):
    with pytest.raises(QuantizeError, match=r"unknown --engine bogus; valid engines: nncf, ort"):
        peers.check(["ort", "bogus"])
    assert main(["quantize", str(tiny_art), "--engine", "ort,bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hemoedge: error: unknown --engine bogus")
    assert not (tiny_art / "peers").exists()


def test_missing_optional_package_names_the_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(QuantizeError, match=r"--engine nncf needs the package nncf.*"
                                            r"pip install -e '\.\[peers\]'"):
        peers.check(["nncf"])
    assert peers.check(["ort", "ort"]) == ("ort",)


def test_eval_and_report(tiny_art, tiny_data, tmp_path):
    records, _, read = tiny_data
    splits = qtiny.splits(records)
    run.run(run.QuantizeConfig(art=tiny_art, variants=("int8",), samples=12, val_samples=6,
                               max_size_ratio=None, engines=("ort",)), splits=splits, read=read)
    res = bench_peers.evaluate(tiny_art, records=splits["test"], read=read, timing=QUICK)
    for v in ("det=int8,est=int8,engine=ort", "det=int8,engine=ort", "est=int8,engine=ort"):
        for name in ("acc.e2e.nail_found_rate", "acc.e2e.hb_mae", "acc.e2e.abs_delta.p95",
                     "acc.e2e.band_agreement"):
            assert res.get(name, v) is not None, (name, v)
    assert res.get("acc.hb_abs_delta.p95", "est=int8,engine=ort") is not None
    assert res.get("acc.det.nail.map50", "det=int8,engine=ort") is not None
    for role, v in (("detector", "det=int8"), ("estimator", "est=int8")):
        for variant in (v, f"{v},engine=ort"):  # hemoedge's own int8 and the peer, one run
            m = res.get(f"cpu.{role}.latency_ratio_vs_fp32", variant)
            assert m is not None and m.n == QUICK.rounds and len(m.ci95) == 2 and m.value > 0
    assert res.variants["det=int8,engine=ort"] == {"detector": "peers/ort/detector.int8.onnx",
                                                   "estimator": "estimator.fp32.onnx"}
    out = tmp_path / "results.json"
    prior = Results()
    prior.add("acc.e2e.abs_delta.p95", "det=int8,est=int8", 0.1, "g/dL", "lower")
    prior.add("size.detector.bytes", "det=int8", 1e6, "bytes")
    prior.add("size.estimator.bytes", "est=int8", 2e6, "bytes")
    prior.add("acc.e2e.hb_mae", "det=int8,est=int8,engine=gone", 0.9, "g/dL", "lower")
    prior.variants["det=int8,est=int8,engine=gone"] = {"detector": "peers/gone/d.onnx"}
    prior.save(out)
    bench_peers.merge_into(out, res)
    merged = bench_peers.merge_into(out, res)  # a second eval replaces, not duplicates
    assert len(merged.metrics) == 3 + len(res.metrics)  # the earlier peer's figure went too
    assert "det=int8,est=int8,engine=gone" not in merged.variants
    assert Results.load(out).variants == merged.variants
    rows = html.peer_rows(merged)
    assert [r["quantiser"] for r in rows] == ["hemoedge", "ort"]
    assert rows[0]["p95"] == "0.100" and rows[0]["mb"] == "3.00"
    assert rows[1]["found"].endswith("%") and rows[1]["det_x"] != html.NA
    _, md = html.render(merged)
    assert "## Quantiser peers" in md and "| ort |" in md


def test_nncf_engine(tiny_art, tiny_data):
    pytest.importorskip("nncf")
    records, _, read = tiny_data
    splits = qtiny.splits(records)
    peers.build(_cfg(tiny_art, ["nncf"]), splits, read)
    rec = _check_engine(tiny_art, "nncf", splits, read)
    assert rec["settings"]["defaults"]["subset_size"] == "300"
    assert rec["settings"]["subset_size_used"] == 12
