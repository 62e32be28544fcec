"""Web parity's inputs and the page side: the test photos with their ground-truth nails, one
tensor through the app's worker session exactly as given (run_once, float32 both ways), and a
photo through the app's upload path as a user does (upload).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.bench.browser import Page
from hemoedge.errors import BenchError


@dataclass
class Photo:
    path: Path  # the file uploaded to the app
    patient: str
    rgb: np.ndarray  # as Python decodes it (hemoedge.data.yakimov.read_rgb)
    nails: list[tuple[float, float, float, float]]  # ground-truth xyxy


def load_photos(data: Path | None, n: int, seed: int = 0) -> list[Photo]:
    """The first n photos of the test split (eval's split) with their ground-truth nails."""
    from hemoedge.data import yakimov

    if data is None:
        from hemoedge.quantize.run import default_data

        data = default_data()
    recs = yakimov.split(yakimov.load(Path(data)).records, seed=seed)["test"][:n]
    if not recs:
        raise BenchError(f"{data}: the test split is empty; nothing to compare")
    return [Photo(Path(r.photo), str(r.patient_id), yakimov.read_rgb(r.photo), r.nail_xyxy())
            for r in recs]


def _b64(x: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(x, np.float32).tobytes()).decode("ascii")


# the page side of runOnce: base64 float32 in, base64 float32 out (exact both ways)
RUN_ONCE = """async ([role, b64, dims, geo]) => {
  const bin = atob(b64);
  const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  const r = await window.__hemoedgeBench.runOnce(role, new Float32Array(u8.buffer), dims, geo);
  const ob = new Uint8Array(r.output.buffer, r.output.byteOffset, r.output.byteLength);
  let s = '';
  for (let i = 0; i < ob.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, ob.subarray(i, i + 0x8000));
  }
  return { output: btoa(s), dims: r.dims, dets: r.dets };
}"""
UPLOADED = """(n) => { const b = window.__hemoedgeBench;
  const t = document.querySelector('#upload-msg').textContent;
  return b.uploads > n || t.startsWith('Analysis failed') || t.includes('is not an image'); }"""


def _evaluate(page: Page, expr: str, arg: Any, what: str, timeout_s: float) -> Any:
    """page.evaluate with an argument, under the browser module's watchdog and origin guard."""
    with page.chrome.step(what, timeout_s):
        v = page.raw.evaluate(expr, arg)
    page.guard.check()
    return v


def run_once(page: Page, role: str, x: np.ndarray, geo: Any, what: str, timeout_s: float
             ) -> tuple[np.ndarray, list[dict] | None]:
    """One session.run in the app's worker on exactly x: (output, app detections or None)."""
    g = None if geo is None else {"scale": float(geo.scale), "left": int(geo.left),
                                  "top": int(geo.top)}
    r = _evaluate(page, RUN_ONCE, [role, _b64(x), list(x.shape), g], what, timeout_s)
    out = np.frombuffer(base64.b64decode(r["output"]), np.float32).reshape(r["dims"])
    return out, r["dets"]


def upload(page: Page, path: Path, what: str, timeout_s: float) -> dict:
    """The user's upload path: the file input, then the app's analysis of that photo."""
    n = page.evaluate("window.__hemoedgeBench.uploads", f"{what}: uploads so far")
    with page.chrome.step(f"{what}: choosing the file", timeout_s):
        page.raw.set_input_files("#file", str(path), timeout=timeout_s * 1000)
    page.guard.check()
    deadline = time.monotonic() + timeout_s
    while not _evaluate(page, UPLOADED, n, f"{what}: analysis", timeout_s):
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: no analysis after {timeout_s:.0f} s")
        time.sleep(0.02)
    up = page.evaluate("window.__hemoedgeBench.uploads", f"{what}: uploads")
    if up <= n:
        raise BenchError(f"{what}: the app did not analyse {path.name}: "
                         f"{page.text('#upload-msg')!r}")
    last = page.evaluate("window.__hemoedgeBench.lastUpload", f"{what}: the result")
    last["shown"] = page.text("#upload-msg")
    return last
