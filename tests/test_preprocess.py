"""Golden tensors for the preprocessing both Python and the web app implement."""

import cv2
import numpy as np
import pytest

from hemoedge.preprocess import (
    Letterbox,
    crop,
    decode_detections,
    letterbox,
    letterbox_geometry,
    nms,
    resize_bilinear,
    resize_crop,
)
from hemoedge.spec import detector_spec, estimator_spec


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)


def test_letterbox_geometry():
    new_h, new_w, geo = letterbox_geometry(480, 640, 320)
    assert (new_h, new_w) == (240, 320) and geo == Letterbox(0.5, 0, 40)
    new_h, new_w, geo = letterbox_geometry(1000, 300, 320)
    assert (new_h, new_w) == (320, 96) and (geo.left, geo.top) == (112, 0)


def test_letterbox_tensor(photo):
    x, _geo = letterbox(photo, detector_spec().preprocess)
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32
    assert np.allclose(x[0, :, :40, :], 114 / 255)  # padding rows
    assert np.allclose(x[0, :, 280:, :], 114 / 255)
    assert x.min() >= 0.0 and x.max() <= 1.0
    # a known pixel: integer 2x downscale is the mean of a 2x2 block, rounded to uint8
    block = photo[0:2, 0:2, 0].astype(np.float32).mean()
    assert x[0, 0, 40, 0] * 255 == pytest.approx(np.floor(block + 0.5), abs=1e-3)


def test_bilinear_matches_opencv_linear(photo):
    # OpenCV INTER_LINEAR uses the same half-pixel formula with 11-bit fixed-point weights:
    # agreement within one 8-bit level for up- and down-scaling
    for size in ((240, 320), (333, 517), (600, 800)):
        ours = resize_bilinear(photo, *size)
        ref = cv2.resize(photo, size[::-1], interpolation=cv2.INTER_LINEAR).astype(np.float32)
        assert np.abs(ours - ref).max() <= 1.0


def test_resize_crop_is_resize_then_centre_crop():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (50, 37, 3), dtype=np.uint8)
    p = estimator_spec().preprocess
    x = resize_crop(img, p)
    assert x.shape == (1, 3, 224, 224)
    # reference: resize the whole crop, then cut the centre
    new_w, new_h = 256, round(50 * 256 / 37)
    full = np.floor(resize_bilinear(img, new_h, new_w) + 0.5)
    top, left = (new_h - 224) // 2, (new_w - 224) // 2
    ref = (full[top:top + 224, left:left + 224] / 255 - np.array(p.mean)) / np.array(p.std)
    assert np.abs(x[0].transpose(1, 2, 0) - ref).max() < 1e-5


def test_decode_and_nms():
    raw = np.zeros((1, 6, 5), np.float32)
    # anchor 0 and 1: the same nail (overlapping), anchor 2: a skin patch, others below threshold
    raw[0, :4, 0] = [100, 100, 40, 60]
    raw[0, 4, 0] = 0.9
    raw[0, :4, 1] = [102, 101, 40, 60]
    raw[0, 4, 1] = 0.8
    raw[0, :4, 2] = [200, 150, 30, 30]
    raw[0, 5, 2] = 0.7
    raw[0, 4, 3] = 0.1
    dets = decode_detections(raw, Letterbox(0.5, 0, 40), conf=0.25, iou=0.45)
    assert [(d.cls, round(d.score, 2)) for d in dets] == [(0, 0.9), (1, 0.7)]
    # network (80..120, 70..130) minus top padding 40, divided by scale 0.5
    assert dets[0].box == pytest.approx((160, 60, 240, 180))
    assert nms(np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float),
               np.array([0.5, 0.9, 0.3]), 0.45) == [1, 2]


def test_crop_clamps():
    img = np.zeros((100, 80, 3), np.uint8)
    assert crop(img, (-5, -5, 10, 20)).shape == (20, 10, 3)
    assert crop(img, (79.5, 99.5, 200, 300)).shape[:2] == (2, 2)
