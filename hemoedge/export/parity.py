"""`hemoedge parity ART`: every ONNX file in ART against the PyTorch model it came from.

Compared on real (synthetic-set) photos, not only random tensors:
* detector: raw output max/mean abs; box coordinates (network px) and class scores of the
  anchors that matter (score above the detection threshold in either model); after NMS,
  detections matched by IoU: the lowest matched IoU, detections gained and lost;
* estimator: Hb max/mean abs difference in g/dL on ground-truth nail crops.
Named tolerances per precision; every failure is listed; a failing file is localised by the
first intermediate tensors whose error against the fp32 ONNX graph jumps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hemoedge.artifact import Artifact
from hemoedge.errors import HemoedgeError
from hemoedge.names import parity_metric, role_variant
from hemoedge.pipeline import ort_session, session
from hemoedge.preprocess import (
    crop,
    decode_detections,
    iou_matrix,
    letterbox,
    resize_crop,
)
from hemoedge.report.results import Results, command_line, invocation, merge_stage

log = logging.getLogger(__name__)
CONF = 0.25  # detection threshold used for box/score comparisons and NMS


@dataclass(frozen=True)
class Tolerance:
    box_max_px: float  # detector: max |Δ| of box coordinates where a score > CONF, network px
    score_max_abs: float  # detector: max |Δ| class score on those anchors
    matched_iou_min: float  # detector after NMS: every matched pair at least this IoU
    dets_changed_max: int  # detector after NMS: detections gained + lost over all images
    hb_max_abs: float  # estimator: g/dL


TOLERANCES = {
    "fp32": Tolerance(box_max_px=0.01, score_max_abs=1e-4, matched_iou_min=0.999,
                      dets_changed_max=0, hb_max_abs=1e-3),
    "fp16": Tolerance(box_max_px=1.0, score_max_abs=0.02, matched_iou_min=0.95,
                      dets_changed_max=2, hb_max_abs=0.05),
    # nails are ~40 px wide: a 3 px shift of two edges is IoU ~0.75; the end-to-end Hb effect
    # of such shifts is what `hemoedge eval` measures (acc.e2e.abs_delta.*)
    "int8": Tolerance(box_max_px=4.0, score_max_abs=0.15, matched_iou_min=0.70,
                      dets_changed_max=6, hb_max_abs=0.5),
}


@dataclass
class FileParity:
    file: str
    role: str
    precision: str
    figures: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    localisation: list[tuple[str, float]] = field(default_factory=list)  # (tensor, rel. error)

    @property
    def ok(self) -> bool:
        return not self.failures


def _images(data: Path | None, n: int, seed: int = 0, skipped: list[str] | None = None):
    """[(RGB, nail boxes as xyxy)] from the test split of a Yakimov set, or rendered photos.
    Rows the loader refused and photos that do not decode are skipped and listed in
    `skipped`; no photo at all is a HemoedgeError."""
    if data is None:
        from hemoedge.data.synth import sample_photos

        return [(img, [(l, t, r, b) for t, l, b, r in nails]) for img, nails, _ in sample_photos(n)]
    from hemoedge.data import yakimov

    ds = yakimov.load(data)
    recs, images, bad = yakimov.read_photos(yakimov.split(ds.records)["test"][:n])
    if skipped is not None:
        skipped.extend(ds.problems + bad)
    if not recs:
        raise HemoedgeError(f"{data}: no readable photo in the test split to compare on "
                            f"({len(bad)} unreadable)")
    return [(images[str(r.patient_id)], r.nail_xyxy()) for r in recs]


def _finite_failures(figures: dict, what: str) -> list[str]:
    """A NaN or Inf figure is a failure, never a pass (NaN compares false with every limit)."""
    bad = [k for k, v in figures.items() if not np.isfinite(v)]
    return [f"{what}: non-finite {', '.join(bad)} (NaN/Inf outputs)"] if bad else []


def detector_parity(torch_model, onnx_path: Path, images, tol: Tolerance) -> tuple[dict, list]:
    from hemoedge.models import detector as det_mod  # noqa: F401  (ultralytics configured)

    sess = session(onnx_path)
    spec_in = sess.get_inputs()[0].name
    raw_abs, box_abs, score_abs, ious, gained, lost = [], [], [], [], 0, 0
    from hemoedge.pipeline import read_spec

    spec = read_spec(onnx_path)
    for img, _ in images:
        x, geo = letterbox(img, spec.preprocess)
        with torch.no_grad():
            ref = torch_model(torch.from_numpy(x))
        ref = (ref[0] if isinstance(ref, (list, tuple)) else ref).numpy()
        out = sess.run(None, {spec_in: x})[0]
        raw_abs.append(np.abs(ref - out))
        live = (ref[0, 4:].max(0) > CONF) | (out[0, 4:].max(0) > CONF)  # anchors that matter
        if live.any():
            box_abs.append(np.abs(ref[0, :4, live] - out[0, :4, live]).max())
            score_abs.append(np.abs(ref[0, 4:, live] - out[0, 4:, live]).max())
        a = decode_detections(ref, geo, CONF)
        b = decode_detections(out, geo, CONF)
        g, lo, iou = match(a, b)
        gained, lost = gained + g, lost + lo
        ious.extend(iou)
    raw = np.concatenate([r.ravel() for r in raw_abs])
    figures = {"max_abs": float(raw.max()), "mean_abs": float(raw.mean()),
               "box_max_px": float(np.max(box_abs, initial=0.0)),
               "score_max_abs": float(np.max(score_abs, initial=0.0)),
               "matched_iou_min": float(min(ious, default=1.0)),
               "dets_gained": gained, "dets_lost": lost, "images": len(images)}
    failures = _finite_failures(figures, "detector output")
    if figures["box_max_px"] > tol.box_max_px:
        failures.append(f"box max abs {figures['box_max_px']:.4g} px > {tol.box_max_px}")
    if figures["score_max_abs"] > tol.score_max_abs:
        failures.append(f"score max abs {figures['score_max_abs']:.4g} > {tol.score_max_abs}")
    if figures["matched_iou_min"] < tol.matched_iou_min:
        failures.append(f"matched IoU min {figures['matched_iou_min']:.4f} < {tol.matched_iou_min}")
    if gained + lost > tol.dets_changed_max:
        failures.append(f"{gained} detections gained, {lost} lost > {tol.dets_changed_max} allowed")
    return figures, failures


def match(ref, out, iou_thr: float = 0.5) -> tuple[int, int, list[float]]:
    """Greedy same-class matching: (gained, lost, matched IoUs)."""
    if not ref or not out:
        return len(out), len(ref), []
    a = np.array([d.box for d in ref], np.float32)
    b = np.array([d.box for d in out], np.float32)
    m = iou_matrix(a, b)
    m[np.array([d.cls for d in ref])[:, None] != np.array([d.cls for d in out])[None, :]] = 0
    ious, used_a, used_b = [], set(), set()
    for flat in np.argsort(-m, axis=None):
        i, j = divmod(int(flat), m.shape[1])
        if m[i, j] < iou_thr:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        ious.append(float(m[i, j]))
    return len(out) - len(used_b), len(ref) - len(used_a), ious


def estimator_parity(torch_model, onnx_path: Path, images, tol: Tolerance) -> tuple[dict, list]:
    from hemoedge.pipeline import read_spec

    spec = read_spec(onnx_path)
    sess = session(onnx_path)
    diffs = []
    for img, nails in images:
        for box in nails:
            x = resize_crop(crop(img, box), spec.preprocess)
            with torch.no_grad():
                ref = float(torch_model(torch.from_numpy(x))[0, 0])
            out = float(sess.run(None, {spec.input_name: x})[0].reshape(-1)[0])
            diffs.append(abs(ref - out))
    if not diffs:
        raise HemoedgeError(f"{onnx_path}: no nail crop to compare on (the photos have no boxes)")
    d = np.asarray(diffs)
    figures = {"hb_max_abs": float(d.max()), "hb_mean_abs": float(d.mean()), "crops": len(d)}
    failures = _finite_failures(figures, "estimator output")
    if figures["hb_max_abs"] > tol.hb_max_abs:
        failures.append(f"Hb max abs {figures['hb_max_abs']:.4g} g/dL > {tol.hb_max_abs}")
    return figures, failures


def localise(reference: Path, variant: Path, x: np.ndarray, input_name: str,
             top: int = 5) -> list[tuple[str, float]]:
    """First intermediate tensors (graph order) whose relative error vs the fp32 graph jumps:
    [(tensor name, relative L2 error)], at most `top`, where the error at least doubles."""
    import tempfile

    import onnx

    def dump(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
        m = onnx.load(str(path))
        names = [o for n in m.graph.node for o in n.output if o]
        have = {o.name for o in m.graph.output}
        for name in names:
            if name not in have:
                m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
            onnx.save(m, f.name)
            sess = ort_session(f.name, optimization="ORT_DISABLE_ALL")
            outs = sess.run(None, {input_name: x})
        return {o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)}, names

    ref, order = dump(reference)
    var, _ = dump(variant)
    jumps, prev = [], 0.0
    for name in order:
        if name not in var or ref[name].shape != var[name].shape or ref[name].dtype.kind != "f":
            continue
        a, b = ref[name].astype(np.float64), var[name].astype(np.float64)
        err = float(np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-12))
        if err > max(2 * prev, 1e-3):
            jumps.append((name, err))
        prev = max(prev, err)
    return jumps[:top]


def _check_source(src: Path, source: dict, role: str) -> None:
    """The checkpoint the manifest names must still be the file the ONNX came from."""
    from hemoedge.artifact import sha256_file

    if not src.is_file():
        raise HemoedgeError(f"{src}: the {role} checkpoint this artifact was exported from is "
                            "missing; parity needs it as the PyTorch reference")
    want = source.get("sha256")
    if want and sha256_file(src) != want:
        raise HemoedgeError(f"{src}: sha256 differs from the one recorded at export "
                            f"({want[:12]}...): the {role} checkpoint changed since; re-export")


def run(art_dir: Path, data: Path | None = None, n_images: int = 16,
        results: Results | None = None) -> list[FileParity]:
    from hemoedge.models import detector as det_mod
    from hemoedge.models import estimator as est_mod

    art = Artifact.load(art_dir)
    skipped_why: list[str] = []
    for role in ("detector", "estimator"):
        if role not in art.models:
            skipped_why.append(f"no {role} in the manifest")
        elif not art.precisions(role):
            skipped_why.append(f"the manifest lists no {role} ONNX file")
        elif Path(str(art.models[role].get("source", {}).get("path", ""))).suffix == ".onnx":
            skipped_why.append(f"the {role} was adopted from an ONNX file (no PyTorch reference)")
    if len(skipped_why) == 2:
        raise HemoedgeError(f"{art_dir}: parity would check nothing: " + "; ".join(skipped_why))
    for role in art.models:  # every file parity will read, against the manifest, up front
        for precision in art.precisions(role):
            art.path(role, precision)
    skipped_photos: list[str] = []
    images = _images(data, n_images, skipped=skipped_photos)
    if skipped_photos:
        print(f"parity: skipped {len(skipped_photos)} row(s)/photo(s) of {data} that could not "
              f"be used; first: {skipped_photos[0]}")
    out: list[FileParity] = []
    for role in ("detector", "estimator"):
        if role not in art.models or not art.precisions(role):
            continue
        source = art.models[role]["source"]
        if not isinstance(source.get("path"), str):
            raise HemoedgeError(f"{art_dir / 'manifest.json'}: the {role} has no source path; "
                                "re-export the artifact")
        src = Path(source["path"])
        if src.suffix == ".onnx":
            log.warning("%s came from an ONNX file: no PyTorch reference, parity skipped", role)
            continue
        _check_source(src, source, role)
        if role == "detector":
            # a pickled source is loaded only if export was told to trust it, and only while
            # it is still that very file (sha256 checked above)
            model = det_mod.set_export_mode(
                det_mod.load(src, trust_pickle=bool(source.get("trusted_pickle")))[0])
        else:
            model = est_mod.load(src)[0]
        for precision in art.precisions(role):
            path = art.path(role, precision)
            tol = TOLERANCES.get(precision, TOLERANCES["int8"])
            fn = detector_parity if role == "detector" else estimator_parity
            figures, failures = fn(model, path, images, tol)
            fp = FileParity(path.name, role, precision, figures, failures)
            if failures and precision != "fp32":
                spec = art.spec(role)
                img, nails = images[0]
                x = (letterbox(img, spec.preprocess)[0] if role == "detector"
                     else resize_crop(crop(img, nails[0]), spec.preprocess))
                fp.localisation = localise(art.path(role, "fp32"), path, x, spec.input_name)
            out.append(fp)
            if results is not None:
                v = role_variant(role, precision)
                for k, val in figures.items():
                    if k in ("images", "crops"):
                        continue
                    # the estimator's output unit: g/dL, or "logit" for an anaemia classifier
                    unit = "px" if k.endswith("px") else (
                        (art.spec(role).output_unit or "g/dL") if k.startswith("hb") else "")
                    better = "higher" if k == "matched_iou_min" else "lower"
                    results.add(parity_metric(role, precision, k), v, val, unit, better,
                                n=figures.get("images", figures.get("crops")))
    if not out:
        raise HemoedgeError(f"{art_dir}: parity checked nothing: " + "; ".join(skipped_why))
    return out


@dataclass(frozen=True)
class ParityConfig:
    art: Path  # artifact folder
    data: Path | None = None  # Yakimov-layout folder; None: the synthetic test split
    images: int = 16  # photos to compare on
    command: str = ""  # the command line, recorded in results.commands


def config_from_args(args) -> ParityConfig:
    if args.images < 1:
        raise HemoedgeError(f"--images must be >= 1, got {args.images}")
    art_dir = Path(args.art)
    argv = ["parity", str(art_dir)]  # rebuilt only when called without the command line
    if args.data:
        argv += ["--data", str(args.data)]
    argv += ["--images", str(args.images)]  # the order `hemoedge run` records it in
    if args.results:
        argv += ["--results", str(args.results)]
    return ParityConfig(art=art_dir, data=Path(args.data) if args.data else None,
                        images=args.images, command=invocation(args, command_line(argv)))


def cli(args) -> int:
    return main(config_from_args(args), Path(args.results) if args.results else None)


def main(cfg: ParityConfig, results: Path | None = None) -> int:
    """`hemoedge parity` once its config is known: figures into `results` (default
    ART/results.json); exit 1 if a file fails its tolerance."""
    from hemoedge.errors import check_output_file

    art_dir = cfg.art
    if cfg.images < 1:
        raise HemoedgeError(f"--images must be >= 1, got {cfg.images}")
    res_path = results if results is not None else art_dir / "results.json"
    if art_dir.is_dir():
        check_output_file(res_path, "results file")
    Results.load_or_new(res_path)  # a malformed results file stops here, before parity runs
    new = Results()
    try:
        report = run(art_dir, cfg.data, cfg.images, new)
    except FileNotFoundError as e:
        raise HemoedgeError(f"{e.filename}: missing ({e.strerror})") from e
    new.add_command(cfg.command)
    merge_stage(res_path, new)  # a re-run replaces the figures it measured again
    for fp in report:
        status = "ok  " if fp.ok else "FAIL"
        figs = ", ".join(f"{k}={v:.3g}" for k, v in fp.figures.items())
        print(f"{status} {fp.file}: {figs}")
        for f in fp.failures:
            print(f"     - {f}")
        for name, err in fp.localisation:
            print(f"     error jumps at {name}: relative L2 {err:.3g}")
    print(f"parity figures appended to {res_path}")
    return 0 if all(fp.ok for fp in report) else 1
