"""`hemoedge data video`: a Y4M fake-camera video of a hand moving slightly, with a known Hb.

The frame index is drawn into every frame as a code strip in the top-left corner so that a
reader (the browser benchmark) can tell which source frame it grabbed:
  CODE_CELLS cells of CELL px on one row starting at (CODE_X, CODE_Y): cell 0 white, cell 1
  black (the sync pair), then CODE_BITS bits of the index, most significant first,
  white = 1, black = 0. Decode by thresholding the mean luma of each cell's centre at 128.
Chromium's --use-file-for-fake-video-capture plays the file in a loop at its frame rate.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from hemoedge.data import render
from hemoedge.errors import DataError

W, H, FPS = 640, 480, 25
CODE_X, CODE_Y, CELL, CODE_BITS = 4, 4, 12, 16
CODE_CELLS = CODE_BITS + 2
MARGIN = 24  # px of extra canvas around the frame for the hand's motion


def draw_index(rgb: np.ndarray, index: int) -> None:
    bits = [1, 0] + [(index >> (CODE_BITS - 1 - k)) & 1 for k in range(CODE_BITS)]
    for k, bit in enumerate(bits):
        x = CODE_X + k * CELL
        rgb[CODE_Y:CODE_Y + CELL, x:x + CELL] = 255 if bit else 0


def decode_index(rgb: np.ndarray) -> int:
    """Frame index from the code strip; -1 if the sync pair is not there."""
    def bit(k: int) -> int:
        x, y = CODE_X + k * CELL + CELL // 2, CODE_Y + CELL // 2
        patch = rgb[y - 2:y + 2, x - 2:x + 2].astype(np.float32)
        luma = (0.299 * patch[..., 0] + 0.587 * patch[..., 1] + 0.114 * patch[..., 2]).mean()
        return int(luma > 128)

    if bit(0) != 1 or bit(1) != 0:
        return -1
    value = 0
    for k in range(CODE_BITS):
        value = (value << 1) | bit(k + 2)
    return value


def rgb_to_yuv420(rgb: np.ndarray) -> bytes:
    """Limited-range ("studio swing") BT.601: Y 16-235, Cb/Cr 16-240, chroma 2x2-averaged.

    Limited range because Chromium's fake camera hands the Y4M planes on as an I420 camera
    frame and converts them to RGB as BT.601 limited range: a full-range (JFIF) file comes
    back with stretched contrast, which moved the estimator by 2.1 g/dL on the test video."""
    f = rgb.astype(np.float32) / 255.0
    y = 16 + 219 * (0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2])
    cb = 128 + 224 * (-0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2])
    cr = 128 + 224 * (0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2])

    h, w = rgb.shape[:2]

    def sub(c: np.ndarray) -> np.ndarray:
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [y, sub(cb), sub(cr)]
    return b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def frames(hb_gdl: float, n: int, seed: int = 0):
    """Yield (index, RGB uint8 frame)."""
    rng = np.random.default_rng(seed)
    session = render.random_session(np.random.default_rng([seed, 99]), "video")
    patient = render.Patient(hb_gdl, float(rng.uniform(0.2, 1.5)), (1.0, 1.0, 1.0),
                             int(rng.integers(2**31)))
    lin, _, _ = render.render(patient, session, w=W + 2 * MARGIN, h=H + 2 * MARGIN)
    for i in range(n):
        t = i / FPS
        dx = int(round(MARGIN + 10 * np.sin(2 * np.pi * t / 3.1)))  # noqa: RUF046 (slow sway, px)
        dy = int(round(MARGIN + 6 * np.sin(2 * np.pi * t / 2.3 + 1.0)))  # noqa: RUF046
        window = lin[dy:dy + H, dx:dx + W]
        img = render.camera(window, session, np.random.default_rng([seed, i, 5]))
        draw_index(img, i)
        yield i, img


def write_video(out: str | Path, hb_gdl: float, frames_n: int = 150, seed: int = 0) -> Path:
    if not 3.0 <= hb_gdl <= 20.0:
        raise DataError(f"--hb {hb_gdl} g/dL is outside the plausible 3-20 g/dL")
    if not 1 <= frames_n < 2 ** CODE_BITS:
        raise DataError(f"--frames must be 1..{2 ** CODE_BITS - 1}, got {frames_n}")
    if seed < 0:
        raise DataError(f"--seed must be >= 0, got {seed}")
    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out}: is a folder; --out must be a FILE.y4m path")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
            for _, img in frames(hb_gdl, frames_n, seed):
                f.write(b"FRAME\n")
                f.write(rgb_to_yuv420(img))
        from hemoedge.artifact import _umask

        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 -> the mode open() would give
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def read_y4m(path: str | Path) -> list[np.ndarray]:
    """Y4M C420jpeg -> list of luma planes (H, W) uint8 (enough to decode the index)."""
    data = Path(path).read_bytes()
    header, _, rest = data.partition(b"\n")
    if not header.startswith(b"YUV4MPEG2"):
        raise DataError(f"{path}: not a Y4M file")
    size = W * H + 2 * (W // 2) * (H // 2)
    out, pos = [], 0
    while pos < len(rest):
        line_end = rest.index(b"\n", pos)
        pos = line_end + 1
        out.append(np.frombuffer(rest[pos:pos + W * H], np.uint8).reshape(H, W))
        pos += size
    return out


def cli(args) -> int:
    out = write_video(args.out, args.hb, args.frames, args.seed)
    print(f"wrote {out}: {args.frames} frames {W}x{H} at {FPS} fps, Hb {args.hb} g/dL, "
          f"frame index in the top-left code strip")
    return 0
