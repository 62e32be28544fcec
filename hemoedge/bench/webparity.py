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
same figures with hemoedge/gate/budgets.toml.

With `ep` (--ep webgpu|webnn) the builds use that onnxruntime-web execution provider
(webapp build --ep): every figure's variant gains ep=NAME, and a file or pairing whose sessions
fell back to WASM is not compared but written as web.parity.ep.available = 0 with the reason.

This module holds the config, the plan of app builds and the run; the tolerances, comparisons,
metrics and verdict are in hemoedge.bench.webparity_compare, the photos and the page-side
helpers (run_once, upload) in hemoedge.bench.webparity_page.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shlex
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.bench.browser import CHROMIUM, BrowserConfig, Chromium, Page, check_executable
from hemoedge.bench.webep import launch_args, parity_ep_metrics, parity_page
from hemoedge.bench.webparity_compare import (
    MATCH_IOU,
    ORDER,
    TOLERANCES,
    Collected,
    DetectorDiff,
    Tolerance,
    e2e_notes,
    emit,
    match,
    severity_agreement,
    tolerance_for,
    verdict,
)
from hemoedge.bench.webparity_page import Photo, load_photos, run_once, upload
from hemoedge.errors import BenchError, HemoedgeError
from hemoedge.names import EPS, PRECISIONS, ROLES, SHIPPED, WASM, ep_of
from hemoedge.report.results import Results, append_stage, variant_name

log = logging.getLogger(__name__)

SHORT = {"detector": "det", "estimator": "est"}
# end-to-end pairings: the seed, the shipped one (hemoedge.names.SHIPPED), the all-int8 one
E2E_PAIRINGS = (("fp32", "fp32"), SHIPPED, ("int8", "int8"))
DEFAULT_THREADS = 2  # the app's default WASM threads
PROGRESS_EVERY_S = 10.0  # a progress line at least this often during long loops
ALTER_REL = 0.05  # the injected fault (WebParityConfig.alter): one weight x (1 + ALTER_REL)


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
    ep: str = WASM  # onnxruntime-web execution provider (webapp build --ep); variants get ep=NAME

    def __post_init__(self) -> None:
        if self.ep not in EPS:
            raise BenchError(f"--ep must be one of {', '.join(EPS)}, got {self.ep!r}")
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
    for p in sorted({p for _, p in todo}, key=lambda p: ORDER.get(p, 99)):
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
        self.c = Collected()
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
        self.c.e2e_notes[v] = e2e_notes([p.path.name for p in self.photos], web, py)
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
                ok = parity_page(self.c, page, info, cfg.ep)  # all True for WASM
                for role in pg.files:
                    if ok[role]:
                        self.file_parity(page, role, pg.det if role == "detector" else pg.est)
                    else:
                        log.warning("parity --web: %s %s: %s unavailable: %s", role, pg.variant,
                                    cfg.ep, self.c.pages[-1]["ep"]["reason"])
                if pg.e2e and all(ok.values()):
                    self.e2e(page, pg.det, pg.est)
                if page.errors:
                    raise BenchError(f"{pg.variant}: the page reported errors: {page.errors[:3]}")
                page.close()
            finally:
                self.chrome.close_context(ctx)


def _hb(out: np.ndarray) -> float:
    return float(np.asarray(out, np.float64).reshape(-1)[0])


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
            out = work / (f"dist-{pg.det}-{pg.est}" + ("" if cfg.ep == WASM else f"-{cfg.ep}"))
            b = build(BuildConfig(art=Path(cfg.art), detector=pg.det, estimator=pg.est, out=out,
                                  ep=cfg.ep))
            if cfg.alter is not None and (pg.det, pg.est)[ROLES.index(cfg.alter[0])] \
                    == cfg.alter[1]:
                altered.append(_alter_served(out, b.files, *cfg.alter))
            dists[pg.det, pg.est] = out
        bcfg = BrowserConfig(executable=Path(cfg.chromium), step_timeout_s=cfg.timeout_s,
                             extra_args=launch_args((cfg.ep,)))
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
            **({"ep": cfg.ep} if cfg.ep != WASM else {}),
        },
    })
    emit(c, art, res)
    parity_ep_metrics(c, res, cfg.ep)
    return res


# ---------------------------------------------------------------------------- CLI
def config_from_args(args: Any) -> WebParityConfig:
    return WebParityConfig(art=Path(args.art), data=Path(args.data) if args.data else None,
                           images=args.images, command=command_line(args),
                           ep=getattr(args, "ep", None) or WASM)


def command_line(args: Any) -> str:
    argv = ["parity", str(args.art), "--web"]
    if args.data:
        argv += ["--data", str(args.data)]
    argv += ["--images", str(args.images)]
    if getattr(args, "ep", None):
        argv += ["--ep", args.ep]
    if getattr(args, "results", None):
        argv += ["--results", str(args.results)]
    return "hemoedge " + shlex.join(argv)


def cli(args: Any) -> int:
    return main(config_from_args(args), Path(args.results) if args.results else None)


def main(cfg: Any, results: Path | None = None) -> int:
    """`hemoedge parity --web` once its config (WebParityConfig) is known (also what `hemoedge
    run` calls): run, merge into `results` (default ART/results.json), print, judge."""
    art = Path(cfg.art)
    if not (art / "manifest.json").is_file():
        raise BenchError(f"{art}: not an artifact folder (no manifest.json)")
    if cfg.data and not (Path(cfg.data) / "metadata.csv").is_file():
        raise BenchError(f"{cfg.data}: not a Yakimov-layout folder (no metadata.csv)")
    try:
        new = run(cfg)
    except HemoedgeError:
        raise
    except OSError as e:
        raise BenchError(f"parity --web: {e}") from e
    out = results or art / "results.json"
    # a re-run replaces its own provider's parity figures only (wasm's have no ep= key)
    append_stage(out, new, replaces="web.parity.", where=lambda m: ep_of(m.variant) == cfg.ep)
    wp = new.env["web_parity"]
    print(f"parity --web ({new.env['browser']}, onnxruntime-web {new.env['onnxruntime_web']}, "
          f"{wp['threads']} thread(s), crossOriginIsolated {wp['cross_origin_isolated']}) vs "
          f"onnxruntime {wp['onnxruntime']}: {wp['images']} photo(s), {wp['crops']} crop(s)")
    for m in new.metrics:
        if m.name == "web.parity.ep.available":
            print(f"  {m.name:<38} {m.variant:<18} {m.value:.0f}" + (
                f" ({m.params['reason']})" if m.params.get("reason") else ""))
        elif m.name.endswith((".max", ".band_agreement", ".dets_lost", ".dets_gained",
                              "nail_count_mismatch")):
            print(f"  {m.name:<38} {m.variant:<18} {m.value:.4g} {m.unit}")
    bad = verdict(new)
    for b in bad:
        print(f"FAIL {b}")
    print(f"{len(new.metrics)} metrics appended to {out}")
    return 1 if bad else 0


# the comparisons and the page helpers live in webparity_compare / webparity_page; these
# names are imported from here too
__all__ = ["MATCH_IOU", "TOLERANCES", "AppPage", "DetectorDiff", "Photo", "Tolerance",
           "WebParityConfig", "cli", "load_photos", "match", "plan", "run", "run_once",
           "severity_agreement", "tolerance_for", "upload", "verdict"]
