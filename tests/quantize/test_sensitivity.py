"""Accuracy-aware node exclusion: error figures, SQNR ranking, the search loop."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import qtiny

from hemoedge.errors import QuantizeError
from hemoedge.quantize import int8, run, sensitivity
from hemoedge.quantize.sensitivity import SearchConfig, Tolerance

# ------------------------------------------------------------------ pure figures

def test_estimator_error_hand_case():
    f = sensitivity.estimator_error(np.array([10.0, 12.0, 14.0, 9.0]),
                                    np.array([10.1, 11.8, 14.0, 9.0]))
    assert f["hb_abs_mean"] == pytest.approx(0.075)
    assert f["hb_abs_max"] == pytest.approx(0.2)


def test_detector_error_hand_case():
    ref = np.zeros((1, 6, 5), np.float32)
    ref[0, :4] = 100.0
    ref[0, 4] = [0.9, 0.1, 0.0, 0.0, 0.0]
    out = ref.copy()
    out[0, 4, 0] = 0.0  # the best nail anchor loses its score
    out[0, 0, 0] = 102.0  # and moves 2 px
    f = sensitivity.detector_error([ref], [out], top_k=1)
    assert f["score_abs_max"] == pytest.approx(0.9)
    # top-1 anchor of class 4 is anchor 0 (|d box| mean 0.5), of class 5 anchor 0 as well
    assert f["box_abs_mean_px"] == pytest.approx(0.5)
    assert f["nails_changed"] == 1.0  # the only nail is gone


def _raw(anchors: list[tuple[float, float, float, float, float]]) -> np.ndarray:
    """(1, 6, A) raw output from (cx, cy, w, h, nail score) per anchor; skin score 0."""
    raw = np.zeros((1, 6, len(anchors)), np.float32)
    for i, (cx, cy, w, h, s) in enumerate(anchors):
        raw[0, :5, i] = [cx, cy, w, h, s]
    return raw


def test_detector_error_follows_the_nails_the_pipeline_crops():
    two_nails = [(100, 100, 40, 60, 0.9), (200, 100, 40, 60, 0.8), (101, 100, 40, 60, 0.85)]
    ref = _raw(two_nails)
    # the overlapping third anchor is suppressed by NMS; move the kept ones a little
    out = _raw([(100.5, 100, 40, 60, 0.88), (200, 99.25, 40, 60, 0.81), (101, 100, 40, 60, 0.2)])
    f = sensitivity.detector_error([ref], [out], top_k=3)
    assert f["nails_changed"] == 0.0
    assert f["nail_edge_abs_max_px"] == pytest.approx(0.75)  # y1 and y2 of the second nail
    assert f["nail_score_abs_max"] == pytest.approx(0.02, abs=1e-6)
    # the suppressed anchor's score fell by 0.65: it sets the max, not the nails' figures
    assert f["score_abs_max"] == pytest.approx(0.65, abs=1e-6)
    # a nail under the confidence threshold is a changed nail set; so is a moved one
    lost = _raw([(100, 100, 40, 60, 0.9), (200, 100, 40, 60, 0.2), (101, 100, 40, 60, 0.85)])
    assert sensitivity.detector_error([ref], [lost])["nails_changed"] == 1.0
    moved = _raw([(100, 100, 40, 60, 0.9), (230, 100, 40, 60, 0.8), (101, 100, 40, 60, 0.85)])
    assert sensitivity.detector_error([ref, ref], [moved, ref])["nails_changed"] == 0.5


def test_score_p99_is_not_ruled_by_one_anchor():
    rng = np.random.default_rng(0)
    ref = np.zeros((1, 6, 400), np.float32)
    ref[0, :4] = 50.0
    ref[0, 4:] = rng.uniform(0, 1, (2, 400))
    out = ref.copy()
    out[0, 4:] += rng.uniform(-0.01, 0.01, (2, 400)).astype(np.float32)
    one = out.copy()
    one[0, 4, np.argmax(ref[0, 4])] -= 0.3  # one anchor far off
    f, g = (sensitivity.detector_error([ref], [x], top_k=200) for x in (out, one))
    assert g["score_abs_max"] > 0.3 > 0.01 >= f["score_abs_max"]
    assert g["score_abs_p99"] == pytest.approx(f["score_abs_p99"], abs=1e-3)


def test_channel_sqnr_finds_a_zeroed_channel():
    pre = np.ones((1, 2, 4), np.float32)
    pre[:, 0] *= 300.0  # box pixels
    pre[:, 1] *= 0.5  # scores
    post = pre.copy()
    post[:, 1] = 0.0  # scores rounded away
    assert sensitivity.channel_sqnr(pre, post) == pytest.approx(0.0, abs=1e-6)
    whole = 10 * math.log10((pre ** 2).sum() / ((pre - post) ** 2).sum())
    assert whole > 50  # the whole tensor looks healthy


def test_tolerance():
    tol = Tolerance((("a", 1.0), ("b", 0.5)))
    assert tol.failures({"a": 0.5, "b": 0.5}) == []
    assert tol.failures({"a": 2.0, "b": 0.1}) == ["a 2 > 1"]
    assert tol.badness({"a": 2.0, "b": 0.1}) == pytest.approx(2.0)
    with pytest.raises(QuantizeError, match=">= 0"):
        Tolerance((("a", -1.0),))
    # a limit of 0 outweighs every ratio, and less of it is still better
    zero = Tolerance((("a", 1.0), ("n", 0.0)))
    assert zero.failures({"a": 0.5, "n": 0.0}) == []
    assert zero.badness({"a": 0.5, "n": 0.0}) == pytest.approx(0.5)
    assert zero.badness({"a": 0.1, "n": 0.25}) > zero.badness({"a": 50.0, "n": 0.0})
    assert zero.badness({"a": 0.1, "n": 0.25}) < zero.badness({"a": 0.1, "n": 0.5})


# ------------------------------------------------------------------ the search on tiny models

def _det_problem(tmp_path: Path):
    """A calibrated tiny detector and quantize/measure/rank closures over real photos."""
    from hemoedge.preprocess import letterbox

    src, pre = tmp_path / "d.onnx", tmp_path / "d.pre.onnx"
    onnx.save(qtiny.detector(), str(src))
    int8.pre_process(src, pre)
    _, images, _ = qtiny.dataset(patients=12)
    xs = [letterbox(img, qtiny.det_spec().preprocess)[0] for img in images.values()]
    cache = int8.calibrate(pre, "images", xs[:8], int8.CalibSettings(), tmp_path,
                           tmp_path / "r.json")
    ref = run._outputs(src, xs[8:])

    def quantize(exclude, dst):
        int8.quantize(pre, cache, dst, "minmax", exclude)

    def measure(path):
        return sensitivity.detector_error(ref, run._outputs(path, xs[8:]))

    def rank(path):
        return sensitivity.rank_tensors(pre, path, "images", xs[8:10], tmp_path)

    return pre, quantize, measure, rank


def test_search_finds_the_output_concat(tmp_path):
    _pre, quantize, measure, rank = _det_problem(tmp_path)
    tol = Tolerance((("score_abs_max", 0.05), ("box_abs_mean_px", 1.0)))
    res = sensitivity.search(quantize, measure, rank, tol, tmp_path, SearchConfig(max_steps=3))
    assert tol.failures(res.steps[0].figures)  # fully quantised: the scores are broken
    assert res.met
    assert [e.name for e in res.excluded] == ["/model.22/Concat_3"]
    e = res.excluded[0]
    assert e.error_after["score_abs_max"] < 0.05 < e.error_before["score_abs_max"]
    assert e.channel_sqnr_db < e.tensor_sqnr_db  # found through its worst channel
    # the returned model really keeps the concat in float
    m = onnx.load(str(res.model))
    dq_outputs = {o for n in m.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert "output0" not in dq_outputs
    assert any(n.name == "/model.22/Concat_3" for n in m.graph.node)


def test_search_stops_when_the_tolerance_cannot_be_met(tmp_path):
    _pre, quantize, measure, rank = _det_problem(tmp_path)
    calls = []

    def counting_measure(path):
        calls.append(path)
        return measure(path)

    tol = Tolerance((("score_abs_max", 0.0), ("box_abs_mean_px", 0.0)))  # int8 never gets 0
    cfg = SearchConfig(max_steps=2, shortlist=2, max_trials=4)
    res = sensitivity.search(quantize, counting_measure, rank, tol, tmp_path, cfg)
    assert not res.met
    assert len(res.excluded) <= cfg.max_steps
    assert len(calls) <= 1 + cfg.max_trials
    assert "not met" in res.stop_reason or "no quantised node" in res.stop_reason
    assert res.model.is_file()
    assert res.to_dict()["met"] is False


def test_seeded_exclusions_keep_their_stated_reason(tmp_path):
    pre, quantize, measure, rank = _det_problem(tmp_path)
    graph = onnx.load(str(pre)).graph
    hint = run.decode_head_nodes(graph)
    assert "/model.22/Concat_3" in hint
    assert not any("cv2" in n or "cv3" in n for n in hint)
    tol = Tolerance((("score_abs_max", 0.05), ("box_abs_mean_px", 1.0)))
    res = sensitivity.search(quantize, measure, rank, tol, tmp_path,
                             seed=[(n, "seed hint") for n in hint])
    assert res.met and len(res.steps) == 1
    assert {e.reason for e in res.excluded} == {"seed hint"}


def test_shortlist_takes_each_order_in_turn_and_skips():
    TE = sensitivity.TensorError
    ranked = [TE("t1", "injects", "Conv", 40.0, 40.0, 0.01, 20.0),
              TE("t2", "bad_channel", "Concat", 40.0, 1.0, 0.01, 0.0),
              TE("t3", "bad_whole", "Add", 10.0, 10.0, 0.01, 0.0),
              TE("t4", "wide_range", "Mul", 45.0, 45.0, 3.0, 0.0),
              TE("t5", "fine", "Conv", 50.0, 50.0, 0.001, 0.0)]
    assert [t.node for t in sensitivity.shortlist(ranked, [], 4)] == [
        "injects", "bad_channel", "bad_whole", "wide_range"]
    assert [t.node for t in sensitivity.shortlist(ranked, ["bad_channel"], 2)] == [
        "injects", "bad_whole"]
    assert [t.node for t in sensitivity.shortlist(ranked, [], 2, skip=4)] == ["fine"]


def test_size_budget_blocks_candidates(tmp_path):
    _pre, quantize, measure, rank = _det_problem(tmp_path)
    tol = Tolerance((("score_abs_max", 0.05), ("box_abs_mean_px", 1.0)))
    res = sensitivity.search(quantize, measure, rank, tol, tmp_path, SearchConfig(max_steps=1),
                             max_bytes=1)  # no file fits: nothing may be kept in float
    assert not res.met and res.excluded == []


def test_estimator_error_reports_the_worst_band_bias():
    ref = np.array([7.0, 7.5, 12.0, 13.0, 14.0])
    out = ref + np.array([0.3, 0.3, -0.05, 0.05, 0.0])  # severe anaemia read high
    figs = sensitivity.estimator_error(ref, out, ["<8", "<8", "11-13", ">=13", ">=13"])
    assert figs["hb_band_bias_max"] == pytest.approx(0.3)
    assert figs["hb_abs_mean"] == pytest.approx(0.14)
    assert "hb_band_bias_max" not in sensitivity.estimator_error(ref, out)


def test_decision_figures_hide_last_bit_differences():
    a = sensitivity.decision_figures({"hb_abs_mean": 0.0412345678, "x": float("inf")})
    b = sensitivity.decision_figures({"hb_abs_mean": 0.0412345678 * (1 + 1e-7), "x": float("inf")})
    assert a == b == {"hb_abs_mean": 0.0412, "x": float("inf")}


def test_tail_bisection_keeps_the_seeded_exclusions(tmp_path):
    """Every tail the bisection builds also keeps the seeded nodes in float, and the recorded
    exclusions are exactly the ones the returned model was built with."""
    built: list[list[str]] = []
    order = [f"n{i}" for i in range(16)]

    def quantize(exclude, dst):
        built.append(list(exclude))
        Path(dst).write_bytes(b"x")

    def measure(path):
        ex = built[-1]
        # needs the seed (n15) and the last 2 non-seed nodes in float
        ok = "n15" in ex and all(f"n{i}" in ex for i in range(13, 15))
        return {"err": 0.0 if ok else 1.0}

    res = sensitivity.search(quantize, measure, lambda p: [], Tolerance((("err", 0.5),)),
                             tmp_path, SearchConfig(max_steps=0), seed=[("n15", "seed")],
                             order=order)
    assert res.met
    assert all("n15" in b for b in built)
    assert [e.name for e in res.excluded] == ["n15", "n13", "n14"]


def test_rounds_without_gain_spend_trials_not_steps(tmp_path):
    """Only the 5th-ranked node helps: with one candidate per round the first four rounds
    find nothing, yet max_steps=1 still reaches it; max_trials bounds the measuring."""
    from hemoedge.quantize.sensitivity import TensorError

    nodes = [f"n{i}" for i in range(8)]

    def quantize(exclude, dst):
        Path(dst).write_text(",".join(exclude))

    def measure(path):
        return {"err": 0.0 if "n4" in Path(path).read_text().split(",") else 1.0}

    def rank(_path):  # n0 first, then n1, ...: the helpful n4 is fifth
        return [TensorError(f"t{i}", n, "Conv", float(i), float(i), 0.0, 10.0 - i)
                for i, n in enumerate(nodes)]

    tol = Tolerance((("err", 0.5),))
    res = sensitivity.search(quantize, measure, rank, tol, tmp_path,
                             SearchConfig(max_steps=1, shortlist=1))
    assert res.met and [e.name for e in res.excluded] == ["n4"]
    assert sum(1 for s in res.steps if s.candidates_tried) == 5  # 4 rounds without gain, 1 with
    (tmp_path / "capped").mkdir()
    res = sensitivity.search(quantize, measure, rank, tol, tmp_path / "capped",
                             SearchConfig(max_steps=1, shortlist=1, max_trials=3))
    assert not res.met and "3 candidate models" in res.stop_reason
