"""Crops as the app takes them: moved box edges, rotation, motion blur."""

from __future__ import annotations

import numpy as np
import pytest

from hemoedge.augment import CropJitter, jitter_box, jittered_crop
from hemoedge.errors import HemoedgeError


def _img():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)


def test_jitter_box_moves_each_edge_within_bounds_and_is_seeded():
    box = (40.0, 30.0, 80.0, 70.0)
    moved = [jitter_box(box, np.random.default_rng(s), 2.0) for s in range(200)]
    d = np.abs(np.array(moved) - np.array(box))
    assert d.max() <= 2.0 and d.max() > 1.8  # the whole range is used
    assert len({m for m in moved}) == 200
    assert jitter_box(box, np.random.default_rng(3), 2.0) == moved[3]
    tiny = jitter_box((10, 10, 11, 11), np.random.default_rng(0), 8.0)
    assert tiny[2] - tiny[0] >= 4 - 1e-9 and tiny[3] - tiny[1] >= 4 - 1e-9


def test_jittered_crop_rotates_and_blurs_only_when_asked():
    img, box = _img(), (40.0, 30.0, 80.0, 70.0)
    exact = jittered_crop(img, box, np.random.default_rng(0), CropJitter(edge_px=0))
    assert exact.shape == (40, 40, 3)
    hand = CropJitter(edge_px=0, rotate_deg=10, blur_px=5, p_rotate=1.0, p_blur=1.0)
    moved = jittered_crop(img, box, np.random.default_rng(0), hand)
    assert moved.shape == exact.shape and moved.dtype == np.uint8
    assert not np.array_equal(moved, exact)
    # blur smooths: neighbouring pixels of the noise image become more alike
    assert np.abs(np.diff(moved.astype(int), axis=1)).mean() < \
        np.abs(np.diff(exact.astype(int), axis=1)).mean()


def test_crop_jitter_validates():
    with pytest.raises(HemoedgeError, match=">= 0"):
        CropJitter(edge_px=-1)
    with pytest.raises(HemoedgeError, match="probabilities"):
        CropJitter(p_blur=2.0)
    assert not CropJitter(edge_px=0).active and CropJitter().active
