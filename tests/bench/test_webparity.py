"""`hemoedge parity ART --web`: the same file on the same input in the PWA's WASM runtime
(Chromium) and in Python onnxruntime. Pure parts without a browser; the browser runs use the
tiny in-code models (tests/web/webtiny.py) on a tiny Yakimov-layout folder, and the embedded
default models where a real network is needed."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hemoedge.errors import BenchError
from hemoedge.report.results import Results

WEB_TESTS = Path(__file__).resolve().parents[1] / "web"
sys.path.insert(0, str(WEB_TESTS))  # webtiny, webhelp: the web app tests' tiny models
import webtiny as tiny  # noqa: E402
from webhelp import CHROMIUM, ort_installed  # noqa: E402

# named tolerances
FP32_HB_TOL = 1e-3  # g/dL: same fp32 file, same input: float rounding only (the budget's limit)
FP32_BOX_TOL_PX = 0.01  # image px, detector boxes after decode + NMS, fp32
FP32_SCORE_TOL = 1e-4
ALTERED_HB_MIN = 0.3  # g/dL: the altered served copy (tiny estimator's base 11 scaled by 1.05,
#                        i.e. +0.55 g/dL) must show at least this much
FAIL_FAST_S = 5.0  # a missing Chromium is reported within this
PHOTOS = 2  # test-split photos of the tiny set (3 nails each)

needs_browser = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and ort_installed()),
    reason="needs Debian's chromium and webapp/node_modules (npm ci)")


# ---------------------------------------------------------------------------- pure parts
def test_plan_runs_every_file_once_with_the_fewest_builds():
    from hemoedge.bench.webparity import plan

    have = {"detector": ["fp32", "fp16", "int8"], "estimator": ["fp32", "fp16", "int8"]}
    pages = plan(have, None)
    assert [(p.det, p.est, p.e2e) for p in pages] == [
        ("fp32", "fp32", True), ("int8", "fp16", True), ("int8", "int8", True),
        ("fp16", "fp32", False)]
    measured = [(r, p.det if r == "detector" else p.est) for p in pages for r in p.files]
    assert sorted(measured) == sorted((r, q) for r in have for q in have[r])  # each file once
    # an artifact without int8: only the seed pairing end to end, fp16 files still measured
    pages = plan({"detector": ["fp32", "fp16"], "estimator": ["fp32"]}, None)
    assert [(p.det, p.est, p.e2e) for p in pages] == [("fp32", "fp32", True),
                                                      ("fp16", "fp32", False)]


def test_plan_rejects_a_pairing_the_artifact_lacks():
    from hemoedge.bench.webparity import plan

    with pytest.raises(BenchError, match="det=fp16,est=fp32 is not in the artifact"):
        plan({"detector": ["fp32"], "estimator": ["fp32"]}, [("fp16", "fp32")])


def test_match_pairs_by_iou_within_a_class_and_counts_lost_and_gained():
    from hemoedge.bench.webparity import DetectorDiff, match

    ref = [{"box": [0, 0, 10, 10], "score": 0.9, "cls": 0},
           {"box": [50, 50, 60, 60], "score": 0.8, "cls": 0},
           {"box": [100, 100, 110, 110], "score": 0.7, "cls": 1}]
    out = [{"box": [0.5, 0, 10, 10.25], "score": 0.85, "cls": 0},
           {"box": [100, 100, 110, 110], "score": 0.7, "cls": 0},  # other class: not a match
           {"box": [200, 200, 210, 210], "score": 0.4, "cls": 0}]
    pairs, lost, gained = match(ref, out)
    assert pairs == [(0, 0)] and lost == 2 and gained == 2
    d = DetectorDiff()
    d.add(ref, out)
    assert d.box_px == [0.5] and d.score_abs == [pytest.approx(0.05)]
    assert (d.lost, d.gained, d.dets) == (2, 2, 3)


def test_band_agreement_counts_a_one_sided_reading_as_disagreement():
    from hemoedge.bench.webparity import severity_agreement

    assert severity_agreement([12.9, 10.0, None, None], [12.95, 10.5, None, 9.0]) == 2 / 3
    assert severity_agreement([12.99], [13.0]) == 0.0  # 11-13 vs >=13


def test_verdict_applies_each_precisions_tolerance():
    from hemoedge.bench.webparity import TOLERANCES, verdict

    res = Results()
    res.add("web.parity.estimator.hb_abs.max", "est=fp32", 2e-3, "g/dL", "lower")
    res.add("web.parity.estimator.hb_abs.max", "est=int8", 0.2, "g/dL", "lower")
    res.add("web.parity.e2e.hb_abs.max", "det=int8,est=fp32", 0.2, "g/dL", "lower")
    res.add("web.parity.detector.dets_lost", "det=fp32", 1, "", "lower")
    res.add("web.parity.detector.dets_gained", "det=fp32", 0, "", "lower")
    bad = verdict(res)
    assert len(bad) == 2
    assert "hb_abs.max [est=fp32]" in bad[0] and "dets_gained [det=fp32]" in bad[1]
    # a pairing takes its looser model's limit
    assert TOLERANCES["int8"].e2e_hb_abs_max >= 0.2 > TOLERANCES["fp32"].e2e_hb_abs_max


def test_config_and_cli_reject_bad_input(tmp_path, capsys):
    from hemoedge.bench.webparity import WebParityConfig
    from hemoedge.cli import main

    with pytest.raises(BenchError, match="--images"):
        WebParityConfig(art=tmp_path, images=0)
    assert main(["parity", str(tmp_path / "none"), "--web"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("none: not an artifact folder (no manifest.json)")
    assert len(err.splitlines()) == 1


def test_missing_chromium_fails_fast(tmp_path):
    from hemoedge.bench.webparity import WebParityConfig, run

    art = tiny.write_artifact(tmp_path / "art")
    t0 = time.monotonic()
    with pytest.raises(BenchError, match="Chromium not found"):
        run(WebParityConfig(art=art, chromium=tmp_path / "no-chromium"))
    assert time.monotonic() - t0 < FAIL_FAST_S


# ---------------------------------------------------------------------------- tiny set
def write_tiny_set(root: Path, sessions: int = 10) -> Path:
    """A Yakimov-layout folder the tiny detector finds three nails in per photo (JPEG), one
    patient per session so the 20 % test split holds two photos."""
    from PIL import Image

    (root / "photo").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(sessions):
        j = 2 + k % 3  # move the row of nails between photos
        img, boxes = tiny.nail_photo(cells=((1, j), (3, j), (5, j)))
        pid = f"{k + 1:04d}"
        Image.fromarray(img).save(root / "photo" / f"{pid}.jpg", quality=92)
        tlbr = [[int(y1), int(x1), int(y2), int(x2)] for x1, y1, x2, y2 in boxes]
        skin = [[t + 64, le, b + 32, r] for t, le, b, r in tlbr]
        rows.append({"PATIENT_ID": pid, "MEASUREMENT_DATE": f"2024-01-{k + 1:02d}",
                     "HB_LEVEL_GperL": 100 + 5 * k, "NAIL_BOUNDING_BOXES": json.dumps(tlbr),
                     "SKIN_BOUNDING_BOXES": json.dumps(skin)})
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_tiny_set_has_a_test_split_with_nails(tmp_path):
    from hemoedge.bench.webparity import load_photos

    photos = load_photos(write_tiny_set(tmp_path / "set"), PHOTOS)
    assert len(photos) == PHOTOS and all(len(p.nails) == 3 for p in photos)


def pooled_estimator():
    """Hb = HB_BASE + HB_SLOPE * mean of a 32x32 average pool of the input: webtiny's estimator
    with its one 150528-element ReduceMean split in two short reductions. That long flat sum is
    ordered differently by WASM and x86 kernels (measured 1.5e-3 g/dL apart in fp32), a
    property of the toy graph, not of a real network's GlobalAveragePool over 7x7."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from hemoedge.spec import METADATA_KEY, OPSET, estimator_spec

    spec = estimator_spec()
    inits = [numpy_helper.from_array(np.array([tiny.HB_SLOPE], np.float32), "a"),
             numpy_helper.from_array(np.array([tiny.HB_BASE], np.float32), "c"),
             numpy_helper.from_array(np.array([1, 1], np.int64), "shape")]
    nodes = [helper.make_node("AveragePool", ["input"], ["pool"], kernel_shape=[32, 32],
                              strides=[32, 32]),
             helper.make_node("ReduceMean", ["pool"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["m", "a"], ["ma"]),
             helper.make_node("Add", ["ma", "c"], ["hb_flat"]),
             helper.make_node("Reshape", ["hb_flat", "shape"], ["hb"])]
    graph = helper.make_graph(
        nodes, "tiny_pooled_estimator",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(spec.input_shape))],
        [helper.make_tensor_value_info("hb", TensorProto.FLOAT, [1, 1])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    helper.set_model_props(m, {METADATA_KEY: spec.to_json()})
    onnx.checker.check_model(m)
    return m


def write_art(root: Path, precisions=("fp32", "int8")) -> Path:
    """webtiny's artifact (every precision the same tiny graph) with the pooled estimator."""
    import onnx

    from hemoedge.artifact import Artifact, file_name

    tiny.write_artifact(root, precisions)
    art = Artifact.load(root)
    for p in precisions:
        onnx.save(pooled_estimator(), str(root / file_name("estimator", p)))
        art.add_file("estimator", p)
    art.save()
    return root


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("webparity")
    return write_art(root / "art"), write_tiny_set(root / "set")


@pytest.fixture(scope="module")
def cli_run(tiny_inputs, tmp_path_factory) -> tuple[int, Results, str]:
    """`hemoedge parity ART --web` on the tiny models, as a person runs it."""
    from hemoedge.cli import main

    if not (Path(CHROMIUM).exists() and ort_installed()):
        pytest.skip("needs Debian's chromium and webapp/node_modules (npm ci)")
    art, data = tiny_inputs
    out = tmp_path_factory.mktemp("res") / "results.json"
    code = main(["parity", str(art), "--web", "--data", str(data), "--images", str(PHOTOS),
                 "--results", str(out)])
    return code, Results.load(out), str(art)


@pytest.mark.browser
@needs_browser
def test_every_file_and_pairing_is_measured_and_fp32_agrees(cli_run):
    code, res, _ = cli_run
    assert code == 0
    for v in ("est=fp32", "est=int8"):
        for k in ("max", "p95", "mean"):
            m = res.get(f"web.parity.estimator.hb_abs.{k}", v)
            assert m is not None and m.unit == "g/dL" and m.better == "lower"
            assert m.n == 3 * PHOTOS
    for v in ("det=fp32", "det=int8"):
        for name in ("box_px.max", "box_px.p95", "score_abs.max", "dets_lost", "dets_gained"):
            assert res.get(f"web.parity.detector.{name}", v) is not None, (name, v)
    # the tiny artifact has no fp16 files: the shipped pairing (int8, fp16) is not among them
    for v in ("det=fp32,est=fp32", "det=int8,est=int8"):
        for name in ("hb_abs.max", "hb_abs.p95", "hb_abs.mean", "band_agreement",
                     "nail_count_mismatch"):
            m = res.get(f"web.parity.e2e.{name}", v)
            assert m is not None and m.params["threads"] == 2, (name, v)
    # and against the file's arithmetic as written (graph optimisations off)
    for name, v in (("estimator.hb_abs.max", "est=int8"), ("detector.box_px.max", "det=int8"),
                    ("e2e.hb_abs.max", "det=int8,est=int8"),
                    ("e2e.band_agreement", "det=int8,est=int8")):
        assert res.get(f"web.parity.ref.{name}", v) is not None, (name, v)
    assert res.get("web.parity.ref.estimator.hb_abs.max", "est=fp32").value <= FP32_HB_TOL
    # the same fp32 file on the same input: float rounding only
    assert res.get("web.parity.estimator.hb_abs.max", "est=fp32").value <= FP32_HB_TOL
    assert res.get("web.parity.detector.box_px.max", "det=fp32").value <= FP32_BOX_TOL_PX
    assert res.get("web.parity.detector.score_abs.max", "det=fp32").value <= FP32_SCORE_TOL
    assert res.get("web.parity.detector.dets_lost", "det=fp32").value == 0
    assert res.get("web.parity.detector.dets_gained", "det=fp32").value == 0
    assert res.get("web.parity.detector.box_px.max", "det=fp32").n == 3 * PHOTOS
    e2e = "det=fp32,est=fp32"
    assert res.get("web.parity.e2e.hb_abs.max", e2e).value <= FP32_HB_TOL
    assert res.get("web.parity.e2e.hb_abs.max", e2e).n == PHOTOS  # every photo had a nail
    assert res.get("web.parity.e2e.band_agreement", e2e).value == 1.0
    assert res.get("web.parity.e2e.nail_count_mismatch", e2e).value == 0


@pytest.mark.browser
@needs_browser
def test_run_records_command_browser_threads_and_isolation(cli_run):
    _, res, art = cli_run
    wp = res.env["web_parity"]
    assert res.commands == [wp["command"]]
    assert wp["command"].startswith(f"hemoedge parity {art} --web --data ")
    assert f"--images {PHOTOS} --results " in wp["command"]
    assert res.env["browser"].startswith("chromium ")
    assert wp["threads"] == 2 and wp["cross_origin_isolated"] is True
    assert wp["onnxruntime"] and res.env["onnxruntime_web"]
    assert wp["images"] == PHOTOS and wp["crops"] == 3 * PHOTOS
    assert {p["variant"] for p in wp["pages"]} == {"det=fp32,est=fp32", "det=int8,est=int8"}
    assert set(wp["e2e"]) == {p["variant"] for p in wp["pages"]}
    assert all(n["band_differs"] == [] and n["worst"]["photo"].endswith(".jpg")
               for n in wp["e2e"].values())


@pytest.mark.browser
@needs_browser
def test_an_altered_served_file_is_caught(tiny_inputs, tmp_path):
    """One weight changed in the copy the browser loads; Python keeps the artifact's file."""
    from hemoedge.bench.webparity import WebParityConfig, run, verdict

    art, data = tiny_inputs
    res = run(WebParityConfig(art=art, data=data, images=PHOTOS, e2e=(("fp32", "fp32"),),
                              alter=("estimator", "fp32"), workdir=tmp_path / "work",
                              timeout_s=60))
    hb = res.get("web.parity.estimator.hb_abs.max", "est=fp32").value
    assert hb >= ALTERED_HB_MIN
    assert res.get("web.parity.e2e.hb_abs.max", "det=fp32,est=fp32").value >= ALTERED_HB_MIN
    assert res.get("web.parity.estimator.hb_abs.max", "est=int8").value <= FP32_HB_TOL  # intact
    bad = verdict(res)
    assert any("web.parity.estimator.hb_abs.max [est=fp32]" in b for b in bad)
    assert any("web.parity.e2e.hb_abs.max [det=fp32,est=fp32]" in b for b in bad)
    assert res.env["web_parity"]["injected_alter"][:2] == ["estimator", "fp32"]
    # ~12.7 g/dL becomes ~13.25: every photo crosses into the >=13 band, and the notes say which
    notes = res.env["web_parity"]["e2e"]["det=fp32,est=fp32"]
    assert len(notes["band_differs"]) == PHOTOS
    assert notes["worst"]["app"] - notes["worst"]["python"] >= ALTERED_HB_MIN
    assert res.get("web.parity.e2e.band_agreement", "det=fp32,est=fp32").value == 0.0


# ---------------------------------------------------------------------------- real models
@pytest.mark.browser
@needs_browser
def test_default_models_fp32_agree_in_the_browser(tiny_data, tmp_path):
    """The embedded default YOLOv8n + MobileNetV4 (fp32): a real network in WASM vs x86.
    (~15 s; the first run also exports the default models into the cache, ~45 s.)"""
    from hemoedge.bench.webparity import WebParityConfig, run
    from hemoedge.export.onnx_export import default_artifact

    res = run(WebParityConfig(art=default_artifact(), data=tiny_data, images=PHOTOS,
                              workdir=tmp_path / "work"))
    assert res.get("web.parity.estimator.hb_abs.max", "est=fp32").value <= FP32_HB_TOL
    assert res.get("web.parity.detector.box_px.max", "det=fp32").value <= FP32_BOX_TOL_PX
    m = res.get("web.parity.e2e.hb_abs.max", "det=fp32,est=fp32")
    assert m.value <= FP32_HB_TOL and np.isfinite(m.value)
    assert res.get("web.parity.e2e.band_agreement", "det=fp32,est=fp32").value == 1.0
