"""Nail crops as they arrive in the app: the box moved, the hand moved.

One definition serves two readers:
* training (hemoedge.models.train) draws a fresh jittered crop of every training nail each epoch,
  so the estimator learns an answer that does not move with the box it is given;
* evaluation (hemoedge.bench.accuracy) measures the crop sensitivity of a model: |ΔHb| between
  the exact ground-truth crop and the same crop with every edge moved at random by up to ±N px.

Boxes are (x1, y1, x2, y2) in image pixels; images are (H, W, 3) uint8 RGB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hemoedge.errors import HemoedgeError
from hemoedge.preprocess import crop

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class CropJitter:
    """How far a crop may differ from the ground-truth box (0 everywhere: the exact crop)."""
    # geometry of the box
    edge_px: float = 4.0  # each edge moved independently, uniform in [-edge_px, +edge_px]
    # the hand
    rotate_deg: float = 0.0  # the photo rotated about the box centre, uniform in [-deg, +deg]
    blur_px: int = 0  # motion blur: a line kernel up to this long (px), random direction
    p_rotate: float = 0.5  # share of crops rotated
    p_blur: float = 0.3  # share of crops blurred

    def __post_init__(self) -> None:
        if self.edge_px < 0 or self.rotate_deg < 0 or self.blur_px < 0:
            raise HemoedgeError(f"crop jitter must be >= 0, got {self}")
        if not (0 <= self.p_rotate <= 1 and 0 <= self.p_blur <= 1):
            raise HemoedgeError(f"crop jitter probabilities must be in [0, 1], got {self}")

    @property
    def active(self) -> bool:
        return self.edge_px > 0 or self.rotate_deg > 0 or self.blur_px > 1

    def describe(self) -> dict:
        return {"edge_px": self.edge_px, "rotate_deg": self.rotate_deg, "blur_px": self.blur_px,
                "p_rotate": self.p_rotate, "p_blur": self.p_blur}


def jitter_box(box: Sequence[float], rng: np.random.Generator, edge_px: float) -> Box:
    """Every edge moved by U(-edge_px, +edge_px); the box keeps at least 4 px per side."""
    x1, y1, x2, y2 = (float(v) + float(d) for v, d in
                      zip(box, rng.uniform(-edge_px, edge_px, 4), strict=True))
    if x2 - x1 < 4:
        x1, x2 = (x1 + x2) / 2 - 2, (x1 + x2) / 2 + 2
    if y2 - y1 < 4:
        y1, y2 = (y1 + y2) / 2 - 2, (y1 + y2) / 2 + 2
    return x1, y1, x2, y2


def _motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    import cv2

    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle_deg, 1.0)
    k = cv2.warpAffine(k, rot, (length, length))
    return k / max(float(k.sum()), 1e-6)


def jittered_crop(img: np.ndarray, box: Sequence[float], rng: np.random.Generator,
                  cfg: CropJitter) -> np.ndarray:
    """A crop of `box` as the app might take it: moved edges, a small rotation, motion blur.
    Only a window around the box is transformed (the photo itself is never copied whole)."""
    import cv2

    b = jitter_box(box, rng, cfg.edge_px) if cfg.edge_px > 0 else tuple(map(float, box))
    rotate = cfg.rotate_deg > 0 and rng.random() < cfg.p_rotate
    blur = cfg.blur_px > 1 and rng.random() < cfg.p_blur
    if not (rotate or blur):
        return crop(img, b)
    # a window with room for the rotation and the blur kernel, in image coordinates
    h, w = img.shape[:2]
    pad = int(np.ceil(0.25 * max(b[2] - b[0], b[3] - b[1]) + cfg.blur_px + 2))
    wx1, wy1 = max(0, int(np.floor(b[0])) - pad), max(0, int(np.floor(b[1])) - pad)
    wx2, wy2 = min(w, int(np.ceil(b[2])) + pad), min(h, int(np.ceil(b[3])) + pad)
    win = np.ascontiguousarray(img[wy1:wy2, wx1:wx2])
    if rotate:
        centre = ((b[0] + b[2]) / 2 - wx1, (b[1] + b[3]) / 2 - wy1)
        m = cv2.getRotationMatrix2D(centre, float(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)), 1.0)
        win = cv2.warpAffine(win, m, (win.shape[1], win.shape[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
    if blur:
        k = _motion_kernel(int(rng.integers(2, cfg.blur_px + 1)), float(rng.uniform(0, 180)))
        win = cv2.filter2D(win, -1, k, borderType=cv2.BORDER_REFLECT)
    return crop(win, (b[0] - wx1, b[1] - wy1, b[2] - wx1, b[3] - wy1))
