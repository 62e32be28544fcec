"""Calibration inputs come from the pipeline: letterboxed photos, fp32-detector nail crops."""

from __future__ import annotations

import numpy as np
import onnx
import qtiny
from onnx import numpy_helper

from hemoedge.preprocess import crop, letterbox, resize_crop
from hemoedge.quantize import calib


def _det(tmp_path, blind=False):
    m = qtiny.detector()
    if blind:  # class biases so low that nothing is ever detected
        for init in m.graph.initializer:
            if init.name == "b_cls":
                init.CopyFrom(numpy_helper.from_array(np.array([-50, -50], np.float32), "b_cls"))
    path = tmp_path / ("blind.onnx" if blind else "det.onnx")
    onnx.save(m, str(path))
    return calib.OrtModel(path)


def test_estimator_crops_are_detector_nail_crops(tmp_path, tiny_data):
    records, _images, read = tiny_data
    cs = calib.detector_crops(records, _det(tmp_path), qtiny.est_spec(), 9, read)
    assert len(cs.inputs) == 9 and cs.photos == 3
    assert cs.detected == 9 and cs.fallback == 0
    # the tiny detector's boxes are the labelled nail squares: crops, not centre crops
    first = calib.pick(records, 3)[0]
    img = read(first.photo)
    gt_inputs = [resize_crop(crop(img, b), qtiny.est_spec().preprocess) for b in first.nail_xyxy()]
    for x in cs.inputs[:3]:
        assert any(np.array_equal(x, g) for g in gt_inputs)
    centre = resize_crop(img, qtiny.est_spec().preprocess)
    assert not any(np.array_equal(x, centre) for x in cs.inputs)


def test_fallback_to_ground_truth_is_counted(tmp_path, tiny_data):
    records, _, read = tiny_data
    cs = calib.detector_crops(records, _det(tmp_path, blind=True), qtiny.est_spec(), 6, read)
    assert cs.detected == 0 and cs.fallback == 6
    assert cs.describe()["ground_truth_fallback_crops"] == 6


def test_detector_inputs_are_letterboxed_and_deterministic(tiny_data):
    records, _, read = tiny_data
    xs = calib.detector_inputs(records, qtiny.det_spec(), 5, read)
    again = calib.detector_inputs(list(reversed(records)), qtiny.det_spec(), 5, read)
    assert all(np.array_equal(a, b) for a, b in zip(xs, again, strict=True))
    r0 = calib.pick(records, 5)[0]
    assert np.array_equal(xs[0], letterbox(read(r0.photo), qtiny.det_spec().preprocess)[0])
    assert xs[0].shape == (1, 3, qtiny.DET_SIZE, qtiny.DET_SIZE)


def test_pick_is_stratified_over_the_severity_bands():
    from types import SimpleNamespace

    from hemoedge.severity import severity_band

    # 40 patients, only 2 of them below 8 g/dL, sorted so that an even spread misses them
    hb = [7.1, 7.6] + [12.0 + 0.05 * i for i in range(30)] + [9.0 + 0.2 * i for i in range(8)]
    recs = [SimpleNamespace(patient_id=f"{i:03d}", hb_gdl=h) for i, h in enumerate(hb)]
    chosen = calib.pick(recs, 8)
    bands = [severity_band(r.hb_gdl) for r in chosen]
    assert len(chosen) == 8 and bands.count("<8") == 2  # every severe patient there is
    assert {"8-11", "11-13", ">=13"} <= set(bands)
    assert chosen == calib.pick(list(reversed(recs)), 8)  # deterministic, order-free
    assert [r.patient_id for r in chosen] == sorted(r.patient_id for r in chosen)
    assert len(calib.pick(recs, 100)) == 40
