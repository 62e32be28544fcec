"""hemoedge eval: metric functions on hand-computed cases, then the whole evaluation on a
tiny artifact (tiny models and data from tests/quantize/qtiny.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "quantize"))
import qtiny

from hemoedge.bench import accuracy as acc
from hemoedge.bench.accuracy import ImageDets
from hemoedge.errors import BenchError
from hemoedge.quantize import run as qrun
from hemoedge.report.results import Results


def _img(preds, gts):
    """preds: [(box, conf, cls)], gts: [(box, cls)]"""
    return ImageDets(np.array([p[0] for p in preds], np.float32).reshape(-1, 4),
                     np.array([p[1] for p in preds], np.float32),
                     np.array([p[2] for p in preds], np.int64),
                     np.array([g[0] for g in gts], np.float32).reshape(-1, 4),
                     np.array([g[1] for g in gts], np.int64))


A, B = (0, 0, 10, 10), (20, 20, 30, 30)
FAR = (50, 50, 60, 60)


# ------------------------------------------------------------------ detector metrics

# ultralytics' AP (8.4): COCO 101-point trapezoid over the precision envelope, which drops
# to 0 right after the last recall point; the drop falls inside one 0.01 recall step, so a
# perfect detector scores 1 - 0.01 / 2 = 0.995 (the figure `yolo val` prints), not 1.0.
PERFECT_AP = 0.995


def test_perfect_detector_scores_one():
    ims = [_img([(A, 0.9, 0), (B, 0.8, 1)], [(A, 0), (B, 1)]),
           _img([(B, 0.7, 0)], [(B, 0)])]
    m = acc.detection_metrics(ims)
    assert m["nail"]["map50"] == pytest.approx(PERFECT_AP)
    assert m["skin"]["map50"] == pytest.approx(PERFECT_AP)
    assert m["nail"]["precision"] == pytest.approx(1.0, abs=1e-3)
    assert m["nail"]["recall"] == pytest.approx(1.0, abs=1e-3)


def test_half_found_detector():
    # two nails, one found, no false positive: precision 1 up to recall 0.5, then 0, so
    # AP = 0.5 - 0.01 / 2 = 0.495 (the same half-step as PERFECT_AP)
    ims = [_img([(A, 0.9, 0)], [(A, 0)]), _img([], [(B, 0)])]
    m = acc.detection_metrics(ims)["nail"]
    assert m["map50"] == pytest.approx(0.495, abs=1e-6)
    assert m["recall"] == pytest.approx(0.5, abs=1e-2)
    assert m["precision"] == pytest.approx(1.0, abs=1e-2)


def test_wrong_class_and_low_iou_are_false_positives():
    # right box, wrong class; and a box with IoU 25/175 < 0.5: nothing matches
    ims = [_img([(A, 0.9, 1), ((5, 0, 15, 10), 0.8, 0)], [(A, 0)])]
    assert acc.detection_metrics(ims)["nail"]["map50"] == pytest.approx(0.0)


def test_match_predictions_one_label_each():
    tp = acc.match_predictions(np.array([A, A], np.float32), np.array([0, 0]), np.array([0.5, 0.9]),
                               np.array([A], np.float32), np.array([0]))
    assert tp.tolist() == [False, True]  # the more confident duplicate takes the label


def test_no_labels_no_crash():
    assert acc.detection_metrics([_img([(A, 0.9, 0)], [])])["nail"]["map50"] == 0.0


# ------------------------------------------------------------------ Hb metrics

def test_hb_metrics_hand_case():
    m = acc.hb_metrics([10, 12, 14], [11, 12, 12])
    assert m["mae"] == pytest.approx(1.0)
    assert m["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert m["r2"] == pytest.approx(1 - 5 / (2 / 3))


def test_band_mae_uses_the_measured_band():
    m = acc.band_mae([8, 9, 11, 14], [7, 9, 12, 14])
    assert m == {"<8": (1.0, 1), "8-11": (0.0, 1), "11-13": (1.0, 1), ">=13": (0.0, 1)}


def test_band_agreement():
    assert acc.band_agreement([7.9, 10, 12.9, 13.1], [8.1, 10.5, 12.0, 12.9]) == 0.5


def test_band_changes_say_how_far_from_an_edge():
    # 8.1 -> 7.9 crosses 8 from 0.1 away; 12.9 -> 13.1 crosses 13 from 0.1 away; 10.5 stays
    n, gap = acc.band_changes([7.9, 10.0, 13.1, 12.0], [8.1, 10.5, 12.9, 12.0])
    assert n == 2 and gap == pytest.approx(0.1)
    n, gap = acc.band_changes([10.9, 14.0], [11.6, 14.2])  # 11.6 is 0.6 from 11 (0.4 from 12
    assert n == 1 and gap == pytest.approx(0.6)           # is not a severity edge)
    assert acc.band_changes([9.0], [9.1]) == (0, 0.0)


def test_per_patient_median_and_abs_delta():
    assert acc.per_patient([10, 12, 11, 9, 9.5], ["a", "a", "a", "b", "b"]) == {"a": 11, "b": 9.25}
    d = acc.abs_delta({"x": 10, "y": 12, "z": 11}, {"x": 10.5, "y": 12, "w": 3})
    assert d == pytest.approx({"mean": 0.25, "p95": 0.475, "max": 0.5, "n": 2})


# ------------------------------------------------------------------ the whole evaluation

@pytest.fixture(scope="module")
def quantized_art(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    art = qtiny.make_art(root / "art")
    data = qtiny.write_dataset(root / "data")
    qrun.run(qrun.QuantizeConfig(art=art, data=data, samples=12, val_samples=6,
                                 max_size_ratio=None))
    return art, data


def test_evaluate_every_variant(quantized_art):
    art, data = quantized_art
    ev = acc.evaluate(acc.EvalConfig(art=art, data=data))
    r = ev.results
    for p in ("fp32", "fp16", "int8"):
        for name in ("acc.det.nail.map50", "acc.det.skin.map50", "acc.det.nail.precision",
                     "acc.det.nail.recall", "acc.det.nail.map50_delta"):
            assert r.get(name, f"det={p}") is not None, (name, p)
        for name in ("acc.hb_mae", "acc.hb_rmse", "acc.hb_r2", "acc.hb_mae_delta",
                     "acc.band_agreement", "acc.hb_abs_delta.mean", "acc.hb_abs_delta.p95",
                     "acc.hb_abs_delta.max"):
            assert r.get(name, f"est={p}") is not None, (name, p)
        for q in ("fp32", "fp16", "int8"):
            for name in ("acc.e2e.hb_mae", "acc.e2e.hb_mae_delta", "acc.e2e.abs_delta.p95",
                         "acc.e2e.band_agreement", "acc.e2e.nail_found_rate",
                         "acc.e2e.band_changes", "acc.e2e.band_change_edge_gap.max"):
                assert r.get(name, f"det={p},est={q}") is not None, (name, p, q)
    assert r.get("acc.det.nail.map50", "det=fp32").value == pytest.approx(PERFECT_AP)
    assert r.get("acc.det.nail.map50_delta", "det=fp32").value == 0.0
    assert r.get("acc.hb_abs_delta.max", "est=fp32").value == 0.0
    assert r.get("acc.band_agreement", "est=fp32").value == 1.0
    assert r.get("acc.e2e.abs_delta.max", "det=fp32,est=fp32").value == 0.0
    # int8 pipeline close to fp32 on these tiny models (detector concat kept float)
    assert abs(r.get("acc.det.nail.map50_delta", "det=int8").value) <= 0.01
    assert r.get("acc.e2e.abs_delta.mean", "det=int8,est=int8").value < 0.1
    assert r.get("acc.hb_mae.band.<8", "est=fp32") is not None
    assert r.variants["det=int8,est=fp16"] == {"detector": "detector.int8.onnx",
                                               "estimator": "estimator.fp16.onnx"}


def test_reference_figures_kernel_spread_and_crop_sensitivity(quantized_art):
    art, data = quantized_art
    r = acc.evaluate(acc.EvalConfig(art=art, data=data)).results
    for name, v in (("acc.e2e.abs_delta.p95", "det=int8,est=int8"), ("acc.hb_mae", "est=int8"),
                    ("acc.det.nail.map50", "det=int8")):
        assert r.get(name, v) is not None and r.get("acc.ref." + name[4:], v) is not None
    # fp32 runs the same float arithmetic either way
    assert r.get("acc.ref.e2e.hb_mae", "det=fp32,est=fp32").value == pytest.approx(
        r.get("acc.e2e.hb_mae", "det=fp32,est=fp32").value, abs=1e-5)
    spread = r.get("acc.kernel_spread.e2e.hb_abs.max", "det=fp32,est=fp32")
    assert spread is not None and spread.value < 1e-4
    assert r.get("acc.kernel_spread.hb_abs.max", "est=int8").value >= 0.0
    sens = r.get("acc.crop_sensitivity.p95", "est=fp32")
    assert sens.params == {"edge_px": 2.0, "copies": 4} and sens.n > 0
    assert sens.value > 0  # moving the box moves the tiny estimator's answer
    assert r.get("acc.ref.crop_sensitivity.p95", "est=fp32").value == pytest.approx(sens.value,
                                                                                    abs=1e-5)


def test_crop_sensitivity_is_zero_for_a_box_blind_model():
    img = np.zeros((60, 60, 3), np.uint8)
    m = acc.crop_sensitivity(lambda c: 12.0, [(img, (10, 10, 40, 40))] * 3, [12.0] * 3, 2.0, 4)
    assert m == {"mean": 0.0, "p95": 0.0, "max": 0.0, "n": 12}


def test_split_all_evaluates_every_patient(quantized_art):
    art, data = quantized_art
    n_test = len(acc.eval_records(data))
    n_all = len(acc.eval_records(data, "all"))
    assert 0 < n_test < n_all
    with pytest.raises(BenchError, match="split"):
        acc.EvalConfig(art=art, split="val")


def test_cli_writes_and_replaces_its_metrics(quantized_art, tmp_path):
    art, data = quantized_art
    out = tmp_path / "results.json"
    prior = Results()
    prior.add("cpu.detector.latency_ms.p50", "det=fp32", 7.0, "ms", "lower")
    prior.save(out)
    args = argparse.Namespace(art=str(art), data=str(data), results=str(out))
    assert acc.cli(args) == 0
    n = len(Results.load(out).metrics)
    assert acc.cli(args) == 0
    res = Results.load(out)
    assert len(res.metrics) == n  # a second eval replaces, not duplicates
    assert res.get("cpu.detector.latency_ms.p50", "det=fp32").value == 7.0  # others kept
    assert res.get("acc.hb_mae", "est=int8") is not None
    assert res.get("size.estimator.bytes", "est=int8") is not None  # via record_sizes
    assert len(res.find("size.detector.bytes")) == 3


def test_band_bias_shows_a_shift_confined_to_one_band():
    truth = {"a": 7.0, "b": 7.5, "c": 12.5, "d": 14.0}
    ref = {"a": 7.2, "b": 7.4, "c": 12.0, "d": 13.8}
    hb = {"a": 7.9, "b": 8.1, "c": 12.0, "d": 13.8}  # severe read 0.7 high, others unchanged
    bias = acc.band_bias(hb, ref, truth)
    assert bias["<8"] == (pytest.approx(0.7), 2)
    assert bias["11-13"] == (0.0, 1) and bias[">=13"] == (0.0, 1) and "8-11" not in bias
