import csv
import shutil

import pytest

from hemoedge.data.yakimov import COLUMNS, load, read_rgb, yolo_labels
from hemoedge.errors import DataError


def _copy(tiny_data, tmp_path):
    dst = tmp_path / "set"
    shutil.copytree(tiny_data, dst)
    rows = list(csv.DictReader((dst / "metadata.csv").read_text().splitlines()))
    return dst, rows


def _write(dst, rows, fields=COLUMNS):
    with open(dst / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def test_missing_columns_is_a_clear_error(tiny_data, tmp_path):
    dst, rows = _copy(tiny_data, tmp_path)
    _write(dst, rows, fields=COLUMNS[:3])
    with pytest.raises(DataError, match=r"missing columns \['NAIL_BOUNDING_BOXES'"):
        load(dst)


def test_no_csv(tmp_path):
    with pytest.raises(DataError, match=r"no metadata\.csv"):
        load(tmp_path)


def test_bad_rows_are_reported_and_skipped(tiny_data, tmp_path):
    dst, rows = _copy(tiny_data, tmp_path)
    rows[0]["NAIL_BOUNDING_BOXES"] = "[[1, 2, 3"  # unparsable
    rows[1]["SKIN_BOUNDING_BOXES"] = "[[0, 0, 9999, 10], [0, 0, 5, 5], [0, 0, 5, 5]]"  # outside
    (dst / "photo" / f"{rows[2]['PATIENT_ID']}.jpg").unlink()  # missing photo
    (dst / "photo" / f"{rows[3]['PATIENT_ID']}.jpg").write_text("not a jpeg")  # non-image
    _write(dst, rows)
    ds = load(dst)
    assert len(ds.records) == len(rows) - 4
    text = "\n".join(ds.problems)
    assert "not JSON" in text and "outside the 640x480 photo" in text
    assert "is missing" in text and "not a readable image" in text
    assert all("row skipped" in p for p in ds.problems)


def test_all_rows_bad_is_an_error(tiny_data, tmp_path):
    dst, rows = _copy(tiny_data, tmp_path)
    for r in rows:
        r["HB_LEVEL_GperL"] = "abc"
    _write(dst, rows)
    with pytest.raises(DataError, match="no usable rows"):
        load(dst)


def test_read_rgb_names_the_file(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_text("hello")
    with pytest.raises(DataError, match=r"x\.jpg: not a readable image"):
        read_rgb(p)


def test_yolo_labels(tiny_data):
    rec = load(tiny_data).records[0]
    lines = yolo_labels(rec, 640, 480)
    assert len(lines) == 6 and [ln[0] for ln in lines] == ["0"] * 3 + ["1"] * 3
    _c, cx, _cy, _w, h = map(float, lines[0].split())
    t, l, b, r = rec.nail_boxes[0]
    assert cx == pytest.approx((l + r) / 2 / 640, abs=1e-6) and h == pytest.approx((b - t) / 480, abs=1e-6)
