"""The test video as JPEG frames for the stand-in camera (webapp/src/testcamera.js), which a
browser without Chromium's fake camera plays through the app's bench hook (`feedCamera`): a
remote device under `hemoedge bench web --connect` (frames of bench web's own Y4M, served next
to the app at `<base>__bench/frame/<i>.jpg`) and the bench page (`webapp serve --collect`,
`<base>__collect/frame/<i>.jpg`). One class renders and serves them for both servers."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.errors import BenchError

log = logging.getLogger(__name__)

FPS = 25  # the video's rate (hemoedge.data.video.FPS)
FED_FRAMES = 50  # 2 s at 25 fps, looped by the stand-in camera (a 30-frame capture spans 60)
JPEG_QUALITY = 92  # about 55 kB a frame at 640 x 480
FRAME_NAME = re.compile(r"(\d{1,3})\.jpg")


class TestVideo:
    """`frames()` -> RGB uint8 frames, rendered to JPEG on the first request (thread-safe)."""

    __test__ = False  # not a pytest class

    def __init__(self, frames: Callable[[], list[np.ndarray]], fps: float = FPS,
                 what: str = "test video"):
        self._frames_fn, self.fps, self.what = frames, float(fps), what
        self._jpegs: list[bytes] | None = None
        self.lock = threading.Lock()

    def jpegs(self) -> list[bytes]:
        with self.lock:
            if self._jpegs is None:
                from PIL import Image

                t0 = time.perf_counter()
                out = []
                for img in self._frames_fn():
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, "JPEG", quality=JPEG_QUALITY)
                    out.append(buf.getvalue())
                self._jpegs = out
                log.info("%s: %d stand-in camera frames ready in %.1f s", self.what, len(out),
                         time.perf_counter() - t0)
            return self._jpegs

    def jpeg(self, i: int) -> bytes | None:
        js = self.jpegs()
        return js[i] if 0 <= i < len(js) else None

    def spec(self, n: int, url: str) -> dict[str, Any]:
        """What testcamera.js's loadTestCamera takes: {frames, fps, url with {i}}."""
        return {"frames": n, "fps": self.fps, "url": url}

    def send(self, handler: Any, name: str) -> None:
        """Answer GET .../<name> (`<i>.jpg`) on a hemoedge.web.serve.Handler: the JPEG or 404."""
        m = FRAME_NAME.fullmatch(name)
        data = self.jpeg(int(m.group(1))) if m else None
        body, ctype, code = (data, "image/jpeg", 200) if data is not None else (
            json.dumps({"error": "no such frame"}).encode(), "application/json", 404)
        handler.send_response(code)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def y4m_rgb(path: Path, limit: int) -> tuple[list[np.ndarray], float]:
    """The first `limit` frames of a 4:2:0 Y4M as RGB (the inverse of
    hemoedge.data.video.rgb_to_yuv420: limited-range BT.601, as Chromium's fake camera reads
    it), and its frame rate."""
    data = Path(path).read_bytes()
    header, _, rest = data.partition(b"\n")
    tags = {t[:1]: t[1:] for t in header.split()[1:]}
    try:
        if not header.startswith(b"YUV4MPEG2"):
            raise ValueError("no YUV4MPEG2 header")
        w, h = int(tags[b"W"]), int(tags[b"H"])
        num, den = (int(x) for x in tags.get(b"F", b"25:1").split(b":"))
    except (KeyError, ValueError) as e:
        raise BenchError(f"{path}: not a Y4M video (header {header[:60]!r})") from e
    if not tags.get(b"C", b"420").startswith(b"420"):
        raise BenchError(f"{path}: only 4:2:0 Y4M is supported (C{tags[b'C'].decode()})")
    cw, ch = w // 2, h // 2
    size = w * h + 2 * cw * ch
    out, pos = [], 0
    while pos < len(rest) and len(out) < limit:
        pos = rest.index(b"\n", pos) + 1  # "FRAME[ params]\n"
        planes = np.frombuffer(rest[pos:pos + size], np.uint8)
        pos += size
        y = planes[:w * h].reshape(h, w).astype(np.float32)
        cb = planes[w * h:w * h + cw * ch].reshape(ch, cw).astype(np.float32)
        cr = planes[w * h + cw * ch:].reshape(ch, cw).astype(np.float32)
        up = lambda c: np.repeat(np.repeat(c, 2, 0), 2, 1)[:h, :w]  # noqa: E731
        yy, pb, pr = (y - 16) / 219, (up(cb) - 128) / 224, (up(cr) - 128) / 224
        rgb = np.stack([yy + 1.402 * pr, yy - 0.344136 * pb - 0.714136 * pr, yy + 1.772 * pb], -1)
        out.append(np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8))
    if not out:
        raise BenchError(f"{path}: no frames in the Y4M video")
    return out, num / den
