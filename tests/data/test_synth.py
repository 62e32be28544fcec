import csv
import json

import numpy as np
import pytest

from hemoedge.data import render
from hemoedge.data.synth import COLUMNS, draw_hb, synthesize
from hemoedge.data.yakimov import load, split
from hemoedge.errors import DataError


def test_layout_and_loader_round_trip(tiny_data):
    rows = list(csv.DictReader((tiny_data / "metadata.csv").read_text().splitlines()))
    assert tuple(rows[0].keys()) == COLUMNS
    assert len(rows) == 12
    for r in rows:
        nails, skins = json.loads(r["NAIL_BOUNDING_BOXES"]), json.loads(r["SKIN_BOUNDING_BOXES"])
        assert len(nails) == 3 and len(skins) == 3
        for t, l, b, rr in nails + skins:
            assert 0 <= t < b <= 480 and 0 <= l < rr <= 640
        assert (tiny_data / "photo" / f"{r['PATIENT_ID']}.jpg").is_file()
    ds = load(tiny_data)
    assert len(ds.records) == 12 and not ds.problems
    assert ds.orphans == 1  # photos without a metadata row, like the real set
    assert {r.session for r in ds.records} == {r["MEASUREMENT_DATE"] for r in rows}
    assert ds.records[0].hb_gdl == pytest.approx(int(rows[0]["HB_LEVEL_GperL"]) / 10)


def test_deterministic_for_a_seed(tmp_path):
    a = synthesize(tmp_path / "a", patients=3, sessions=3, seed=5, progress=False)
    b = synthesize(tmp_path / "b", patients=3, sessions=3, seed=5, progress=False)
    c = synthesize(tmp_path / "c", patients=3, sessions=3, seed=6, progress=False)
    assert (a / "metadata.csv").read_bytes() == (b / "metadata.csv").read_bytes()
    assert (a / "photo/0001.jpg").read_bytes() == (b / "photo/0001.jpg").read_bytes()
    assert (a / "photo/0001.jpg").read_bytes() != (c / "photo/0001.jpg").read_bytes()


def test_refuses_non_empty_output(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        synthesize(tmp_path / "x", patients=2, sessions=2, progress=False)


def test_hb_distribution_matches_real_set_shape():
    hb = draw_hb(np.random.default_rng(0), 20000)
    assert hb.min() >= 4.4 and hb.max() <= 16.9
    assert 0.25 <= np.mean(hb < 12) <= 0.31  # real set: about 28 % below 12 g/dL
    assert np.mean(hb < 8) > 0.01  # a severe tail exists


def test_optical_model_low_hb_reads_paler():
    low, high = render.nail_reflectance(6.0), render.nail_reflectance(15.0)
    # haemoglobin absorbs green and blue strongly, red weakly
    assert low[1] > high[1] * 1.5 and low[2] > high[2] * 1.3
    assert abs(low[0] - high[0]) < 0.1 * high[0]
    dark, light = render.skin_reflectance(2.0), render.skin_reflectance(0.2)
    assert np.all(dark < light) and dark[2] / light[2] < dark[0] / light[0]  # melanin: blue more


def test_split_is_session_aware(tiny_data):
    recs = load(tiny_data).records
    parts = split(recs, seed=0)
    sessions = [{r.session for r in parts[k]} for k in ("train", "val", "test")]
    assert not (sessions[0] & sessions[1]) and not (sessions[0] & sessions[2])
    assert not (sessions[1] & sessions[2])
    assert sum(len(v) for v in parts.values()) == len(recs)
    assert split(recs, seed=0) == parts  # seeded
