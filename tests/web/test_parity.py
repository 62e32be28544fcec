"""The JS preprocessing / post-processing / aggregation equal the Python reference.

hemoedge/preprocess.py is the reference; webapp/src/*.js mirror it step by step in float32, so
the tensors are expected to be bit-identical. PARITY_ATOL leaves room only for a different
float32 rounding order, never for a different formula (one grey level is 1/255 = 3.9e-3).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from webhelp import REPO, node, open_app

from hemoedge.preprocess import Letterbox, crop, decode_detections, letterbox, resize_crop
from hemoedge.severity import who_category, who_thresholds
from hemoedge.spec import detector_spec, estimator_spec

PARITY_ATOL = 1e-6  # max abs difference allowed between the JS and Python input tensors
BOX_ATOL = 1e-3  # px, detections after decode + NMS (float32 boxes)
SRC = REPO / "webapp" / "src"


def make_job(tmp: Path, seed: int = 0, h: int = 353, w: int = 479) -> dict:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # smooth gradients as well as noise, so interpolation weights matter
    img[: h // 2] = (np.linspace(0, 255, w)[None, :, None] * np.ones((h // 2, 1, 3))).astype(
        np.uint8
    )
    box = (37.6, 41.2, 201.9, 160.1)  # x1, y1, x2, y2 image px, fractional like a detection
    geo = Letterbox(0.6237, 3, 17)
    A, nc = 2100, 2
    raw = np.zeros((1, 4 + nc, A), np.float32)
    raw[0, :2] = rng.uniform(0, 320, (2, A))
    raw[0, 2:4] = rng.uniform(4, 80, (2, A))
    raw[0, 4:] = rng.uniform(0, 0.4, (nc, A)) ** 2 * 4  # a few hundred above conf 0.25
    rgba = np.concatenate([img, np.full((h, w, 1), 255, np.uint8)], 2)
    (tmp / "image.rgba").write_bytes(rgba.tobytes())
    (tmp / "raw.f32").write_bytes(raw.tobytes())
    values = [*rng.normal(11.0, 0.6, 27), 4.0, 19.0, 25.0]  # three outliers
    job = {
        "width": w,
        "height": h,
        "box": box,
        "anchors": A,
        "classes": nc,
        "geo": dataclasses.asdict(geo),
        "post": {"conf": 0.25, "iou": 0.45, "maxDet": 50},
        "detector": dataclasses.asdict(detector_spec().preprocess),
        "estimator": dataclasses.asdict(estimator_spec().preprocess),
        "hb_grid": [round(x, 2) for x in np.arange(6.0, 14.5, 0.05)],
        "sexes": ["", "female", "male"],
        "who": who_thresholds(),  # what the build writes into models.json
        "values": values,
        "round_cases": [0.5, 1.5, 2.5, 3.5, 239.5, 240.5, 2.4999, -0.5, 7.0],
    }
    (tmp / "job.json").write_text(json.dumps(job))
    return {**job, "img": img, "raw": raw, "geo": geo, "box": box}


def python_reference(job: dict) -> dict:
    x_det, geo = letterbox(job["img"], detector_spec().preprocess)
    x_est = resize_crop(crop(job["img"], job["box"]), estimator_spec().preprocess)
    dets = decode_detections(job["raw"], job["geo"])
    return {"det": x_det, "geo": geo, "est": x_est, "dets": dets}


def compare(job: dict, ref: dict, js_det: np.ndarray, js_est: np.ndarray, out: dict) -> None:
    assert out["geo"] == {"scale": ref["geo"].scale, "left": ref["geo"].left, "top": ref["geo"].top}
    np.testing.assert_allclose(js_det, ref["det"].ravel(), rtol=0, atol=PARITY_ATOL)
    np.testing.assert_allclose(js_est, ref["est"].ravel(), rtol=0, atol=PARITY_ATOL)
    assert js_det.size == ref["det"].size and js_est.size == ref["est"].size
    js = out["dets"]
    assert len(js) == len(ref["dets"]) > 3
    for a, b in zip(js, ref["dets"], strict=False):
        assert a["cls"] == b.cls and a["score"] == pytest.approx(b.score, abs=1e-7)
        np.testing.assert_allclose(a["box"], b.box, atol=BOX_ATOL)


@pytest.mark.skipif(node() is None, reason="node not installed")
def test_js_matches_python_in_node(tmp_path):
    job = make_job(tmp_path)
    subprocess.run(
        [node(), str(Path(__file__).with_name("parity_harness.mjs")), str(SRC), str(tmp_path)],
        check=True,
        timeout=60,
    )
    out = json.loads((tmp_path / "out.json").read_text())
    js_det = np.frombuffer((tmp_path / "letterbox.f32").read_bytes(), np.float32)
    js_est = np.frombuffer((tmp_path / "crop.f32").read_bytes(), np.float32)
    ref = python_reference(job)
    compare(job, ref, js_det, js_est, out)
    # bit-identical is what the float32 mirroring is for; report it if that ever changes
    assert np.array_equal(js_det, ref["det"].ravel()) and np.array_equal(js_est, ref["est"].ravel())
    assert out["round"] == [round(v) for v in job["round_cases"]]  # Python's half-to-even
    # WHO categories as hemoedge.severity
    for hb, row in zip(job["hb_grid"], out["who"], strict=False):
        assert row == [who_category(hb, s or None) for s in job["sexes"]], hb
    # IQR rejection + median as numpy
    v = np.asarray(job["values"])
    q1, q3 = np.quantile(v, [0.25, 0.75])
    kept = v[(v >= q1 - 1.5 * (q3 - q1)) & (v <= q3 + 1.5 * (q3 - q1))]
    s = out["summary"]
    assert s["used"] == kept.size == 27 and s["outliers"] == 3
    assert s["hb"] == pytest.approx(np.median(kept), abs=1e-9)
    assert s["spread"] == pytest.approx(np.subtract(*np.quantile(kept, [0.75, 0.25])), abs=1e-9)


@pytest.mark.browser
def test_js_matches_python_in_chromium(app, tmp_path):
    """The same modules, as built and served, inside Chromium."""
    page, _, url, guard = app
    open_app(page, url)
    job = make_job(tmp_path, seed=1, h=480, w=640)
    bm = page.evaluate("fetch('./build-manifest.json').then(r => r.json())")
    pre = bm["files"]["src/preprocess.js"]["file"]
    post = bm["files"]["src/postprocess.js"]["file"]
    rgba = (tmp_path / "image.rgba").read_bytes()
    out = page.evaluate(
        """async ([pre, post, rgbaB64, rawB64, job]) => {
            const P = await import('./' + pre), Q = await import('./' + post);
            const bytes = (b) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
            const img = { data: bytes(rgbaB64), width: job.width, height: job.height };
            const lb = P.letterbox(img, job.detector);
            const rect = P.cropRect(job.box, job.width, job.height);
            const est = P.resizeCrop(img, rect, job.estimator);
            const raw = new Float32Array(bytes(rawB64).buffer);
            const dets = Q.decodeDetections(raw, job.anchors, job.classes, job.geo, job.post);
            const b64 = (a) => { let s = ''; const u = new Uint8Array(a.buffer);
              for (let i = 0; i < u.length; i += 8192) {
                s += String.fromCharCode(...u.subarray(i, i + 8192));
              }
              return btoa(s); };
            return { det: b64(lb.tensor), est: b64(est), geo: lb.geo, dets };
        }""",
        [
            pre,
            post,
            base64.b64encode(rgba).decode(),
            base64.b64encode(job["raw"].tobytes()).decode(),
            {
                **{
                    k: job[k]
                    for k in (
                        "width",
                        "height",
                        "box",
                        "anchors",
                        "classes",
                        "post",
                        "detector",
                        "estimator",
                    )
                },
                "geo": dataclasses.asdict(job["geo"]),
            },
        ],
    )
    js_det = np.frombuffer(base64.b64decode(out["det"]), np.float32)
    js_est = np.frombuffer(base64.b64decode(out["est"]), np.float32)
    compare(job, python_reference(job), js_det, js_est, out)
    assert not guard.foreign
