"""`hemoedge parity ART --web`: every ONNX file and the shipped two-stage path, inside the real
PWA's onnxruntime-web (WASM) runtime in Debian's headless Chromium, against onnxruntime (CPU)
in Python with the same file and the same input.

    run(WebParityConfig(art=Path("runs/art"), data=Path("runs/data"))) -> Results

Why: WASM's kernels are not x86's. fp32 agrees to float rounding, but in an int8 graph a
rounding difference that crosses a quantisation boundary moves a value by a whole step, so a
box edge or an Hb reading can move. Nothing else in the suite runs a model file in the browser
on a known input.

Per model file (variant det=P / est=P, every precision in the artifact), through the app's
worker sessions (bench hook `runOnce(role, Float32Array, dims, geo)`, `?bench=1`):
  estimator: the test split's ground-truth nail crops, preprocessed by hemoedge.preprocess
    exactly as `hemoedge eval` does (crop -> resize_crop), one tensor per crop:
    web.parity.estimator.hb_abs.max / .p95 / .mean   |Hb WASM - Hb Python| per crop, g/dL
  detector: the test photos letterboxed by hemoedge.preprocess.letterbox; WASM's detections
    after the app's own decode + NMS (postprocess.js) against Python's decode_detections on
    Python's output, matched greedily by IoU (>= MATCH_IOU, same class):
    web.parity.detector.box_px.max / .p95   max |Δ| of the four box edges per matched pair,
                                            image px
    web.parity.detector.score_abs.max       |Δ score| of matched pairs
    web.parity.detector.dets_lost / .dets_gained   Python's detections WASM lacks / extras
End to end, the shipped path (variant det=P,est=Q): each test photo (the JPEG file itself) is
uploaded through the app's file input, as a user does (decode, letterbox, detector, every nail,
crop, estimator, per-photo median), against hemoedge.pipeline.OnnxPipeline.photo with the same
two files on the photo decoded by PIL, every nail (the app has no 3-nail cap):
    web.parity.e2e.hb_abs.max / .p95 / .mean   per photo |median WASM - median Python|, g/dL,
                                               photos where both found a nail
    web.parity.e2e.band_agreement              share of photos whose severity band
                                               (hemoedge.severity.severity_band) is equal;
                                               a reading on one side only disagrees
    web.parity.e2e.nail_count_mismatch         photos whose number of nails differs
Informational, WASM against the file's arithmetic as written (onnxruntime with every graph
optimisation off: hemoedge.pipeline.session(reference=True), the machine-independent
reference `eval` and `quantize` use), to tell which runtime moved:
    web.parity.ref.estimator.hb_abs.max / .mean, web.parity.ref.detector.box_px.max,
    web.parity.ref.detector.score_abs.max, web.parity.ref.e2e.hb_abs.max / .mean,
    web.parity.ref.e2e.band_agreement
Every metric carries params.threads (the WASM threads in effect). results.env.web_parity
records the command, browser, onnxruntime-web and onnxruntime versions, crossOriginIsolated,
the pages and the photos. The verdict (exit 1) uses TOLERANCES per precision; CI gates the
same figures with ci/budgets.toml.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.bench.browser import CHROMIUM, BrowserConfig, Chromium, Page, check_executable
from hemoedge.errors import BenchError, HemoedgeError
from hemoedge.report.results import Results, append_stage, variant_name

log = logging.getLogger(__name__)

ROLES = ("detector", "estimator")
SHORT = {"detector": "det", "estimator": "est"}
PRECISIONS = ("fp32", "fp16", "int8")
# end-to-end pairings: the seed, the one `choose --target web` ships, the all-int8 one
E2E_PAIRINGS = (("fp32", "fp32"), ("int8", "fp32"), ("int8", "int8"))
MATCH_IOU = 0.5  # a WASM detection and a Python detection of one class are the same object
DEFAULT_THREADS = 2  # the app's default WASM threads
PROGRESS_EVERY_S = 10.0  # a progress line at least this often during long loops
ALTER_REL = 0.05  # the injected fault (WebParityConfig.alter): one weight x (1 + ALTER_REL)


@dataclass(frozen=True)
class Tolerance:
    """The verdict's limits for one precision (a pairing uses its looser model's)."""

    est_hb_abs_max: float  # estimator, per crop, g/dL
    box_px_max: float  # detector, matched box edges, image px
    score_abs_max: float  # detector, matched scores
    dets_changed_max: int  # detector, detections lost + gained over all photos
    e2e_hb_abs_max: float  # end to end, per photo, g/dL
    band_agreement_min: float  # end to end


TOLERANCES = {
    # the same file on the same input: only float rounding may differ (measured <= 8e-6 g/dL,
    # 6e-5 px)
    "fp32": Tolerance(est_hb_abs_max=1e-3, box_px_max=0.01, score_abs_max=1e-4,
                      dets_changed_max=0, e2e_hb_abs_max=1e-3, band_agreement_min=1.0),
    # one float16 rounding step of an output (box coordinates 256-512 network px have a 0.25 px
    # step, i.e. 0.5 image px in a 640x480 photo; measured 0.27 px, scores 2^-11)
    "fp16": Tolerance(est_hb_abs_max=1e-2, box_px_max=1.0, score_abs_max=2e-3,
                      dets_changed_max=0, e2e_hb_abs_max=0.25, band_agreement_min=1.0),
    # int8: activations sit on quantisation grids; a float difference (a node kept in float,
    # a requantisation) that crosses a rounding boundary moves a value by a whole step, which
    # the following layers carry on. Measured on the default models, 44 photos: boxes 1.9 px,
    # scores 0.018, estimator 0.058 g/dL (one step of its output grid), end to end 0.35 g/dL,
    # band agreement 0.93. Limits: about 2-4x that
    "int8": Tolerance(est_hb_abs_max=0.25, box_px_max=8.0, score_abs_max=0.1,
                      dets_changed_max=4, e2e_hb_abs_max=0.75, band_agreement_min=0.75),
}
_ORDER = {p: i for i, p in enumerate(PRECISIONS)}


def tolerance_for(*precisions: str) -> Tolerance:
    """The loosest tolerance of these precisions (unknown ones count as int8)."""
    ps = [p if p in TOLERANCES else "int8" for p in precisions]
    return TOLERANCES[max(ps, key=lambda p: _ORDER[p])]


@dataclass(frozen=True)
class WebParityConfig:
    art: Path  # artifact folder (manifest.json + {role}.{precision}.onnx)
    data: Path | None = None  # Yakimov-layout folder; None: the cached synthetic default set
    images: int = 16  # test photos (the estimator gets their ground-truth nails)
    e2e: tuple[tuple[str, str], ...] | None = None  # (det, est); None: E2E_PAIRINGS present
    threads: int = DEFAULT_THREADS  # WASM threads (the app's default)
    split_seed: int = 0
    chromium: Path = CHROMIUM
    timeout_s: float = 120.0  # any single page step
    workdir: Path | None = None  # builds go here (None: a temporary folder)
    command: str = ""  # the command line, recorded in results.commands
    # an injected fault, to prove the check catches it (tests): (role, precision) whose copy
    # served to the browser gets its largest float weight scaled by (1 + ALTER_REL)
    alter: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.images < 1:
            raise BenchError(f"--images needs a positive number of photos, got {self.images}")
        if self.threads < 1:
            raise BenchError(f"threads must be >= 1, got {self.threads}")
        if self.timeout_s <= 0:
            raise BenchError(f"timeout must be positive seconds, got {self.timeout_s}")
        if self.alter is not None and self.alter[0] not in ROLES:
            raise BenchError(f"alter: unknown role {self.alter[0]!r}; expected one of {ROLES}")


@dataclass(frozen=True)
class AppPage:
    """One build of the app (det, est) and what to measure in it."""

    det: str
    est: str
    files: tuple[str, ...]  # roles whose per-file parity this page measures
    e2e: bool

    @property
    def variant(self) -> str:
        return variant_name(self.det, self.est)


def plan(have: dict[str, list[str]], e2e: Sequence[tuple[str, str]] | None) -> list[AppPage]:
    """The fewest app builds that run every model file once and every e2e pairing."""
    for r in ROLES:
        if not have.get(r):
            raise BenchError(f"the artifact needs a detector and an estimator; has {have}")
    if e2e is None:
        pairs = [(d, e) for d, e in E2E_PAIRINGS if d in have["detector"] and e in have["estimator"]]
        if not pairs:
            pairs = [(have["detector"][0], have["estimator"][0])]
    else:
        pairs = list(e2e)
        for d, e in pairs:
            if d not in have["detector"] or e not in have["estimator"]:
                raise BenchError(f"pairing {variant_name(d, e)} is not in the artifact "
                                 f"(detector: {have['detector']}, estimator: {have['estimator']})")
    builds: list[tuple[str, str]] = list(dict.fromkeys(pairs))
    todo = {(r, p) for r in ROLES for p in have[r]}
    for d, e in builds:
        todo -= {("detector", d), ("estimator", e)}
    for p in sorted({p for _, p in todo}, key=lambda p: _ORDER.get(p, 99)):
        d = p if ("detector", p) in todo else None
        e = p if ("estimator", p) in todo else None
        build = (d or builds[0][0], e or builds[0][1])
        builds.append(build)
        todo -= {("detector", build[0]), ("estimator", build[1])}
    pages, done = [], set()
    for d, e in builds:
        files = tuple(r for r, p in zip(ROLES, (d, e), strict=True) if (r, p) not in done)
        done |= {("detector", d), ("estimator", e)}
        pages.append(AppPage(d, e, files, (d, e) in pairs))
    return pages


# ---------------------------------------------------------------------------- comparisons
def match(ref: Sequence[dict], out: Sequence[dict], iou_thr: float = MATCH_IOU
          ) -> tuple[list[tuple[int, int]], int, int]:
    """Greedy same-class matching, highest IoU first: (pairs (i_ref, j_out), lost, gained)."""
    cand = []
    for i, a in enumerate(ref):
        for j, b in enumerate(out):
            if a["cls"] == b["cls"]:
                v = _iou(a["box"], b["box"])
                if v >= iou_thr:
                    cand.append((-v, i, j))
    pairs, used_i, used_j = [], set(), set()
    for _, i, j in sorted(cand):
        if i not in used_i and j not in used_j:
            pairs.append((i, j))
            used_i.add(i)
            used_j.add(j)
    return pairs, len(ref) - len(pairs), len(out) - len(pairs)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9)


@dataclass
class DetectorDiff:
    box_px: list[float] = field(default_factory=list)  # per matched pair, max edge |Δ|
    score_abs: list[float] = field(default_factory=list)
    lost: int = 0
    gained: int = 0
    dets: int = 0  # Python's detections, all photos

    def add(self, ref: Sequence[dict], out: Sequence[dict]) -> None:
        pairs, lost, gained = match(ref, out)
        self.lost += lost
        self.gained += gained
        self.dets += len(ref)
        for i, j in pairs:
            a, b = ref[i], out[j]
            self.box_px.append(float(max(abs(x - y) for x, y in zip(a["box"], b["box"],
                                                                      strict=True))))
            self.score_abs.append(abs(float(a["score"]) - float(b["score"])))


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"max": 0.0, "p95": 0.0, "mean": 0.0}
    v = np.asarray(values, np.float64)
    return {"max": float(v.max()), "p95": float(np.percentile(v, 95)), "mean": float(v.mean())}


def severity_agreement(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Share of photos with a reading on either side whose severity band is equal."""
    from hemoedge.severity import severity_band

    both = [(x, y) for x, y in zip(a, b, strict=True) if x is not None or y is not None]
    if not both:
        return 1.0
    same = sum(1 for x, y in both
               if x is not None and y is not None and severity_band(x) == severity_band(y))
    return same / len(both)


# ---------------------------------------------------------------------------- inputs
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


# ---------------------------------------------------------------------------- the run
class _Progress:
    def __init__(self, what: str, total: int):
        self.what, self.total, self.done = what, total, 0
        self.t0 = self.last = time.monotonic()

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S or self.done == self.total:
            self.last = now
            log.info("%s: %d/%d (%.0f s)", self.what, self.done, self.total, now - self.t0)


@dataclass
class _Collected:
    est: dict[str, list[float]] = field(default_factory=dict)  # precision -> |ΔHb| per crop
    det: dict[str, DetectorDiff] = field(default_factory=dict)
    est_ref: dict[str, list[float]] = field(default_factory=dict)  # WASM vs the reference
    det_ref: dict[str, DetectorDiff] = field(default_factory=dict)
    e2e_ref: dict[tuple[str, str], list] = field(default_factory=dict)  # reference medians
    e2e: dict[tuple[str, str], tuple[list, list]] = field(default_factory=dict)  # (web, py)
    e2e_nails: dict[tuple[str, str], int] = field(default_factory=dict)  # count mismatches
    e2e_notes: dict[str, dict] = field(default_factory=dict)  # variant -> worst photo, bands
    threads: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    pages: list[dict] = field(default_factory=list)


def _alter_served(dist: Path, files: dict, role: str, precision: str) -> str:
    """Scale the largest-magnitude float weight of the served copy: an injected fault."""
    import onnx
    from onnx import numpy_helper

    f = dist / files[f"models/{role}.{precision}.onnx"]["file"]
    m = onnx.load(str(f))
    best = None
    for t in m.graph.initializer:
        if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
            a = numpy_helper.to_array(t)
            if a.size and (best is None or np.abs(a).max() > best[1]):
                best = (t, float(np.abs(a).max()))
    if best is None:
        raise BenchError(f"{f.name}: no float initializer to alter")
    t = best[0]
    a = numpy_helper.to_array(t).copy()
    k = int(np.abs(a).argmax())
    a.flat[k] = a.flat[k] * (1 + ALTER_REL)
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    onnx.save(m, str(f))
    log.warning("injected fault: %s weight %s[%d] scaled by %g in the served copy %s",
                role, t.name, k, 1 + ALTER_REL, f.name)
    return t.name


class _Run:
    def __init__(self, cfg: WebParityConfig, art: Any, photos: list[Photo], chrome: Chromium):
        from hemoedge.web.build import postprocess_defaults

        self.cfg, self.art, self.photos, self.chrome = cfg, art, photos, chrome
        self.post = postprocess_defaults()  # what the build writes to models.json
        self.c = _Collected()
        self._inputs: dict[tuple[str, str], list] = {}

    # -------------------------------------------------------------- Python's inputs
    def inputs(self, role: str, spec: Any) -> list:
        """detector: [(x, geo)] per photo; estimator: [x] per ground-truth nail (eval's way)."""
        from hemoedge.preprocess import crop, letterbox, resize_crop

        key = (role, repr(spec.preprocess))
        if key not in self._inputs:
            if role == "detector":
                self._inputs[key] = [letterbox(p.rgb, spec.preprocess) for p in self.photos]
            else:
                self._inputs[key] = [resize_crop(crop(p.rgb, b), spec.preprocess)
                                     for p in self.photos for b in p.nails]
        return self._inputs[key]

    # -------------------------------------------------------------- per model file
    def file_parity(self, page: Page, role: str, precision: str) -> None:
        from hemoedge.pipeline import read_spec, session
        from hemoedge.preprocess import decode_detections

        path = self.art.path(role, precision)
        spec = read_spec(path)
        sess = session(path, threads=1)
        rsess = session(path, threads=1, reference=True)  # the file's arithmetic as written
        xs = self.inputs(role, spec)
        what = f"{role} {precision}"
        prog = _Progress(f"parity --web: {what}", len(xs))
        if role == "estimator":
            diffs, rdiffs = [], []
            for i, x in enumerate(xs):
                ref = _hb(sess.run([spec.output_name], {spec.input_name: x})[0])
                rref = _hb(rsess.run([spec.output_name], {spec.input_name: x})[0])
                out, _ = run_once(page, role, x, None, f"{what} crop {i + 1}", self.cfg.timeout_s)
                diffs.append(abs(ref - _hb(out)))
                rdiffs.append(abs(rref - _hb(out)))
                prog.step()
            self.c.est[precision] = diffs
            self.c.est_ref[precision] = rdiffs
            log.info("%s: |ΔHb| max %.4g, mean %.4g over %d crops (vs the reference: max %.4g)",
                     what, max(diffs), float(np.mean(diffs)), len(diffs), max(rdiffs))
        else:
            d, rd = DetectorDiff(), DetectorDiff()

            def decode(s_: Any, x: np.ndarray, geo: Any) -> list[dict]:
                raw = s_.run([spec.output_name], {spec.input_name: x})[0]
                return [{"box": list(dt.box), "score": dt.score, "cls": dt.cls}
                        for dt in decode_detections(raw, geo, self.post["conf"],
                                                    self.post["iou"], self.post["maxDet"])]

            for i, (x, geo) in enumerate(xs):
                _, dets = run_once(page, role, x, geo, f"{what} photo {i + 1}",
                                   self.cfg.timeout_s)
                d.add(decode(sess, x, geo), dets or [])
                rd.add(decode(rsess, x, geo), dets or [])
                prog.step()
            self.c.det[precision] = d
            self.c.det_ref[precision] = rd
            log.info("%s: box max %.4g px, score max %.4g, %d lost, %d gained (%d detections)",
                     what, max(d.box_px, default=0.0), max(d.score_abs, default=0.0), d.lost,
                     d.gained, d.dets)

    # -------------------------------------------------------------- the shipped path
    def e2e(self, page: Page, det: str, est: str) -> None:
        from hemoedge.pipeline import OnnxPipeline

        files = (self.art.path("detector", det), self.art.path("estimator", est))
        pipe = OnnxPipeline(*files, threads=1, conf=self.post["conf"], iou=self.post["iou"])
        rpipe = OnnxPipeline(*files, threads=1, conf=self.post["conf"], iou=self.post["iou"],
                             reference=True)
        v = variant_name(det, est)
        page.click("#tab-upload", f"{v}: the upload tab")
        web, py, rpy, mismatch = [], [], [], 0
        prog = _Progress(f"parity --web: e2e {v}", len(self.photos))
        for ph in self.photos:
            r = upload(page, ph.path, f"{v} upload {ph.path.name}", self.cfg.timeout_s)
            med, per = pipe.photo(ph.rgb, max_nails=self.post["maxDet"])
            web.append(None if r["median"] is None else float(r["median"]))
            py.append(med)
            rpy.append(rpipe.photo(ph.rgb, max_nails=self.post["maxDet"])[0])
            mismatch += int(len(r["nails"]) != len(per))
            prog.step()
        self.c.e2e[det, est] = (web, py)
        self.c.e2e_ref[det, est] = rpy
        self.c.e2e_nails[det, est] = mismatch
        self.c.e2e_notes[v] = _e2e_notes([p.path.name for p in self.photos], web, py)
        d = [abs(a - b) for a, b in zip(web, py, strict=True) if a is not None and b is not None]
        log.info("e2e %s: |ΔHb| max %.4g over %d photos, band agreement %.3f, %d nail-count "
                 "mismatch(es)", v, max(d, default=0.0), len(d), severity_agreement(web, py),
                 mismatch)

    # -------------------------------------------------------------- one page
    def page(self, pg: AppPage, dist: Path) -> None:
        from hemoedge.bench.web import open_app
        from hemoedge.web.serve import serve_in_thread

        cfg = self.cfg
        with serve_in_thread(dist) as (_server, url):
            ctx, guard = self.chrome.new_context(url, camera=False)
            try:
                page = self.chrome.page(ctx, guard)
                info = open_app(page, url, f"?bench=1&threads={cfg.threads}", pg.variant,
                                cfg.timeout_s)
                eff = int(info["numThreads"])
                if eff != cfg.threads:
                    log.warning("%s: %d WASM thread(s) requested, %d in effect", pg.variant,
                                cfg.threads, eff)
                self.c.threads = eff
                self.c.info = info
                self.c.pages.append({"variant": pg.variant, "files": list(pg.files),
                                     "e2e": pg.e2e, "threads": eff,
                                     "ort_web": info["session"].get("ortVersion")})
                for role in pg.files:
                    self.file_parity(page, role, pg.det if role == "detector" else pg.est)
                if pg.e2e:
                    self.e2e(page, pg.det, pg.est)
                if page.errors:
                    raise BenchError(f"{pg.variant}: the page reported errors: {page.errors[:3]}")
                page.close()
            finally:
                self.chrome.close_context(ctx)


def _hb(out: np.ndarray) -> float:
    return float(np.asarray(out, np.float64).reshape(-1)[0])


def _e2e_notes(names: list[str], web: list, py: list) -> dict:
    """The photo with the largest difference and every photo whose severity band differs."""
    from hemoedge.severity import severity_band

    def band(x: float | None) -> str | None:
        return None if x is None else severity_band(x)

    rows = [{"photo": n, "app": a, "python": b} for n, a, b in zip(names, web, py, strict=True)]
    both = [r for r in rows if r["app"] is not None and r["python"] is not None]
    worst = max(both, key=lambda r: abs(r["app"] - r["python"]), default=None)
    return {"worst": worst, "band_differs": [r for r in rows
                                             if band(r["app"]) != band(r["python"])]}


def _emit(cfg: WebParityConfig, c: _Collected, art: Any, res: Results) -> None:
    t = c.threads
    for p, diffs in c.est.items():
        v = variant_name(est=p)
        unit = art.spec("estimator").output_unit or "g/dL"
        for k, val in _stats(diffs).items():
            res.add(f"web.parity.estimator.hb_abs.{k}", v, val, unit, "lower", n=len(diffs),
                    threads=t)
        res.variants.setdefault(v, {})["estimator"] = art.path("estimator", p).name
    for p, d in c.det.items():
        v = variant_name(det=p)
        s = _stats(d.box_px)
        res.add("web.parity.detector.box_px.max", v, s["max"], "px", "lower", n=len(d.box_px),
                threads=t)
        res.add("web.parity.detector.box_px.p95", v, s["p95"], "px", "lower", n=len(d.box_px),
                threads=t)
        res.add("web.parity.detector.score_abs.max", v, _stats(d.score_abs)["max"], "",
                "lower", n=len(d.score_abs), threads=t)
        res.add("web.parity.detector.dets_lost", v, d.lost, "", "lower", n=d.dets, threads=t)
        res.add("web.parity.detector.dets_gained", v, d.gained, "", "lower", n=d.dets,
                threads=t)
        res.variants.setdefault(v, {})["detector"] = art.path("detector", p).name
    for (dp, ep), (web, py) in c.e2e.items():
        v = variant_name(dp, ep)
        diffs = [abs(a - b) for a, b in zip(web, py, strict=True)
                 if a is not None and b is not None]
        for k, val in _stats(diffs).items():
            res.add(f"web.parity.e2e.hb_abs.{k}", v, val, "g/dL", "lower", n=len(diffs),
                    threads=t)
        res.add("web.parity.e2e.band_agreement", v, severity_agreement(web, py), "ratio",
                "higher", n=len(web), threads=t)
        res.add("web.parity.e2e.nail_count_mismatch", v, c.e2e_nails[dp, ep], "", "lower",
                n=len(web), threads=t)
        res.variants.setdefault(v, {}).update(detector=art.path("detector", dp).name,
                                              estimator=art.path("estimator", ep).name)
    # against the file's arithmetic as written (graph optimisations off: the machine-independent
    # reference `eval` and `quantize` use), to tell which runtime moved; informational
    for p, diffs in c.est_ref.items():
        s = _stats(diffs)
        for k in ("max", "mean"):
            res.add(f"web.parity.ref.estimator.hb_abs.{k}", variant_name(est=p), s[k],
                    art.spec("estimator").output_unit or "g/dL", "lower", n=len(diffs),
                    threads=t)
    for p, d in c.det_ref.items():
        res.add("web.parity.ref.detector.box_px.max", variant_name(det=p),
                _stats(d.box_px)["max"], "px", "lower", n=len(d.box_px), threads=t)
        res.add("web.parity.ref.detector.score_abs.max", variant_name(det=p),
                _stats(d.score_abs)["max"], "", "lower", n=len(d.score_abs), threads=t)
    for (dp, ep), rpy in c.e2e_ref.items():
        web = c.e2e[dp, ep][0]
        diffs = [abs(a - b) for a, b in zip(web, rpy, strict=True)
                 if a is not None and b is not None]
        s = _stats(diffs)
        for k in ("max", "mean"):
            res.add(f"web.parity.ref.e2e.hb_abs.{k}", variant_name(dp, ep), s[k], "g/dL",
                    "lower", n=len(diffs), threads=t)
        res.add("web.parity.ref.e2e.band_agreement", variant_name(dp, ep),
                severity_agreement(web, rpy), "ratio", "higher", n=len(web), threads=t)


def verdict(res: Results) -> list[str]:
    """Every breach of TOLERANCES in these metrics, one line each (empty: parity holds)."""
    out = []

    def val(name: str, v: str) -> float | None:
        m = res.get(name, v)
        return None if m is None else m.value

    for m in res.find("web.parity."):
        precs = [kv.split("=", 1)[1] for kv in m.variant.split(",") if "=" in kv]
        tol = tolerance_for(*precs)
        limit: float | None = None
        value = m.value
        if m.name == "web.parity.estimator.hb_abs.max":
            limit = tol.est_hb_abs_max
        elif m.name == "web.parity.e2e.hb_abs.max":
            limit = tol.e2e_hb_abs_max
        elif m.name == "web.parity.detector.box_px.max":
            limit = tol.box_px_max
        elif m.name == "web.parity.detector.score_abs.max":
            limit = tol.score_abs_max
        elif m.name == "web.parity.detector.dets_lost":
            value += val("web.parity.detector.dets_gained", m.variant) or 0
            if value > tol.dets_changed_max:
                out.append(f"web.parity.detector.dets_lost + dets_gained [{m.variant}] = "
                           f"{value:.0f} > {tol.dets_changed_max}")
        elif m.name == "web.parity.e2e.band_agreement" and value < tol.band_agreement_min:
            out.append(f"{m.name} [{m.variant}] = {value:.3f} < {tol.band_agreement_min}")
        if limit is not None and value > limit:
            unit = f" {m.unit}" if m.unit else ""
            out.append(f"{m.name} [{m.variant}] = {value:.4g}{unit} > {limit}")
    return out


def run(cfg: WebParityConfig) -> Results:
    """Measure every file and the e2e pairings in the browser; returns the new metrics."""
    import onnxruntime

    from hemoedge.artifact import Artifact
    from hemoedge.web.build import BuildConfig, build

    check_executable(cfg.chromium)  # fail in milliseconds, before any build
    art = Artifact.load(cfg.art)
    have = {r: [p for p in art.precisions(r) if p in PRECISIONS] for r in ROLES}
    pages = plan(have, cfg.e2e)
    if cfg.alter is not None and cfg.alter[1] not in have[cfg.alter[0]]:
        raise BenchError(f"alter: no {cfg.alter[0]} {cfg.alter[1]} in {cfg.art}")
    photos = load_photos(cfg.data, cfg.images, cfg.split_seed)
    log.info("parity --web: %d photo(s), %d nail crop(s), %d page(s): %s", len(photos),
             sum(len(p.nails) for p in photos), len(pages),
             ", ".join(f"{p.variant}" + (" (e2e)" if p.e2e else "") for p in pages))
    res = Results()
    if cfg.command:
        res.commands.append(cfg.command)
    t0 = time.perf_counter()
    altered = []
    with contextlib.ExitStack() as stack:
        work = Path(cfg.workdir) if cfg.workdir else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="hemoedge-webparity-")))
        work.mkdir(parents=True, exist_ok=True)
        dists = {}
        for pg in pages:
            out = work / f"dist-{pg.det}-{pg.est}"
            b = build(BuildConfig(art=Path(cfg.art), detector=pg.det, estimator=pg.est, out=out))
            if cfg.alter is not None and (pg.det, pg.est)[ROLES.index(cfg.alter[0])] \
                    == cfg.alter[1]:
                altered.append(_alter_served(out, b.files, *cfg.alter))
            dists[pg.det, pg.est] = out
        bcfg = BrowserConfig(executable=Path(cfg.chromium), step_timeout_s=cfg.timeout_s)
        with Chromium(bcfg) as chrome:
            r = _Run(cfg, art, photos, chrome)
            for pg in pages:
                log.info("parity --web: %s (files: %s%s)", pg.variant, ", ".join(pg.files) or
                         "-", ", e2e" if pg.e2e else "")
                r.page(pg, dists[pg.det, pg.est])
            version = chrome.version
    elapsed = time.perf_counter() - t0
    log.info("parity --web: %d page(s) in %.0f s", len(pages), elapsed)
    c = r.c
    res.env.update({
        "browser": f"chromium {version}",
        "onnxruntime_web": c.info.get("session", {}).get("ortVersion"),
        "cross_origin_isolated": True,  # open_app refuses a page that is not
        "web_parity": {
            "command": cfg.command, "chromium": str(cfg.chromium), "headless": True,
            "args": bcfg.args, "threads_requested": cfg.threads, "threads": c.threads,
            "cross_origin_isolated": bool(c.info.get("coi")),
            "onnxruntime": onnxruntime.__version__, "python_threads": 1,
            "images": len(photos), "crops": sum(len(p.nails) for p in photos),
            "data": str(cfg.data) if cfg.data else "default synthetic set",
            "photos": [p.path.name for p in photos], "pages": c.pages,
            "postprocess": r.post, "seconds": round(elapsed, 1), "e2e": c.e2e_notes,
            "files": {f"{role}.{p}": hashlib.sha256(art.path(role, p).read_bytes())
                      .hexdigest()[:12] for role in ROLES for p in have[role]},
            **({"injected_alter": [*cfg.alter, altered]} if cfg.alter else {}),
        },
    })
    _emit(cfg, c, art, res)
    return res


# ---------------------------------------------------------------------------- CLI
def config_from_args(args: Any) -> WebParityConfig:
    return WebParityConfig(art=Path(args.art), data=Path(args.data) if args.data else None,
                           images=args.images, command=command_line(args))


def command_line(args: Any) -> str:
    argv = ["parity", str(args.art), "--web"]
    if args.data:
        argv += ["--data", str(args.data)]
    argv += ["--images", str(args.images)]
    if getattr(args, "results", None):
        argv += ["--results", str(args.results)]
    return "hemoedge " + shlex.join(argv)


def cli(args: Any) -> int:
    art = Path(args.art)
    if not (art / "manifest.json").is_file():
        raise BenchError(f"{art}: not an artifact folder (no manifest.json)")
    if args.data and not (Path(args.data) / "metadata.csv").is_file():
        raise BenchError(f"{args.data}: not a Yakimov-layout folder (no metadata.csv)")
    cfg = config_from_args(args)
    try:
        new = run(cfg)
    except HemoedgeError:
        raise
    except OSError as e:
        raise BenchError(f"parity --web: {e}") from e
    out = Path(args.results) if args.results else art / "results.json"
    append_stage(out, new, replaces="web.parity.")
    wp = new.env["web_parity"]
    print(f"parity --web ({new.env['browser']}, onnxruntime-web {new.env['onnxruntime_web']}, "
          f"{wp['threads']} thread(s), crossOriginIsolated {wp['cross_origin_isolated']}) vs "
          f"onnxruntime {wp['onnxruntime']}: {wp['images']} photo(s), {wp['crops']} crop(s)")
    for m in new.metrics:
        if m.name.endswith((".max", ".band_agreement", ".dets_lost", ".dets_gained",
                            "nail_count_mismatch")):
            print(f"  {m.name:<38} {m.variant:<18} {m.value:.4g} {m.unit}")
    bad = verdict(new)
    for b in bad:
        print(f"FAIL {b}")
    print(f"{len(new.metrics)} metrics appended to {out}")
    return 1 if bad else 0


__all__ = ["TOLERANCES", "WebParityConfig", "cli", "match", "plan", "run", "verdict"]
