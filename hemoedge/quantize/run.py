"""`hemoedge quantize ART`: fp16 and int8 variants of every model in an artifact folder.

fp16: onnxconverter-common float16, I/O kept float32 (fp16.py).
int8: static QDQ U8S8 per-channel, calibrated on the pipeline's own inputs (calib.py), with
      accuracy-aware node exclusion against fp32 on the validation split (sensitivity.py).

Every int8 decision is taken on the machine-independent reference: the QDQ graph run with
onnxruntime's graph optimisations off (pipeline.session(reference=True)), i.e. the
quantisation arithmetic in float, never on the int8 kernels of the CPU that happens to run
`quantize` (onnxruntime picks them per instruction set; on an AMD EPYC they moved the
estimator's Hb by 0.02-0.05 g/dL on average against the reference — the size of the
tolerance itself, so the same inputs gave different files on Intel and AMD). Calibration
ranges are snapped outward to a 2^(1/16) grid and the search's figures rounded to 1e-4
before any comparison, so last-bit float differences between CPUs cannot change a byte.

Files are built in a hidden work folder inside ART and renamed into place only when finished,
so ART never holds a half-written model; the manifest is saved after each file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.artifact import Artifact, file_name
from hemoedge.errors import QuantizeError
from hemoedge.quantize import calib, fp16, int8, sensitivity

log = logging.getLogger(__name__)

VARIANTS = ("fp32", "fp16", "int8")
ROLES = ("detector", "estimator")
CALIB_SOURCE = {"detector": "letterboxed train-split photos",
                "estimator": "fp32-detector nail crops of train split"}
# The YOLOv8 Detect decode (DFL, box decode, sigmoid, concat) stays in float by default: one
# int8 scale cannot hold box pixels (0-480) and scores (0-1), and with the search's own choice
# (only the final Concat in float) the box multiply /model.22/Mul_2 kept a scale of ~2 px, so
# box edges landed on a ~4 px grid and every crop moved (docs/quantize.md has the figures).
DECODE_PREFIX = "/model.22/"
DECODE_REASON = ("YOLO decode (DFL, box decode, sigmoid, concat) kept in float by default: "
                 "box pixels and class scores share no int8 scale, and a quantised box "
                 "multiply puts box edges on a ~4 px grid (docs/quantize.md)")
# The input stem (the node(s) reading the graph input) stays in float by default: int8 there
# quantises the normalised image itself, which costs the estimator 23 dB of SQNR at its first
# conv and held-out Hb error (mean |dHb| 0.053 -> 0.046 / 0.040 on two sets with it in float,
# docs/quantize.md); one small conv, ~0.01 MB more.
STEM_REASON = ("input stem kept in float by default: int8 there quantises the normalised "
               "image itself, the largest single loss of SQNR in the estimator (docs/quantize.md)")
# The node(s) writing the graph output stay in float by default: quantised, the estimator's
# answer itself lands on a grid of its calibrated range / 255 (0.06 g/dL for 0-15.3 g/dL), a
# rounding error of up to 0.03 g/dL per crop that saves nothing (one value, one small Gemm).
OUTPUT_REASON = ("output node kept in float by default: int8 there rounds the model's answer "
                 "itself to its range / 255 (0.06 g/dL for the estimator; docs/quantize.md)")


@dataclass(frozen=True)
class QuantizeConfig:
    art: Path
    variants: tuple[str, ...] = VARIANTS
    roles: tuple[str, ...] = ROLES
    data: Path | None = None  # Yakimov-layout folder; None: the cached synthetic default
    split_seed: int = 0
    # calibration
    method: str = "minmax"  # minmax | percentile | entropy
    samples: int = 64  # detector calibration photos
    est_samples: int = 256  # estimator calibration crops: with 64, held-out int8+int8 p95 |dHb|
    #                         0.151 g/dL on a 120-patient set, with 256 0.130 (docs/quantize.md)
    sampling: str = "stratified"  # photos for calibration and the tolerance check: stratified
    #                               over the severity bands, or "spread" by patient id only
    num_bins: int = 2048  # entropy / percentile histogram bins
    percentile: float = 99.999
    # accuracy-aware exclusion, int8 against fp32 on the validation split
    tolerance_hb: float = 0.05  # estimator mean |dHb|, g/dL
    tolerance_det_score: float = 0.05  # detector: |d score| of the nails it finds, and the
    #                                    99th percentile over the top anchors, 0-1
    tolerance_det_box_px: float = 1.0  # detector: largest |d box edge| of a nail, network px
    val_samples: int = 32  # validation photos (estimator: up to 3 crops each)
    max_size_ratio: float | None = 0.30  # int8 bytes / fp32 bytes a kept-float node may not
    #                                      push past (the size target); None: no limit
    search: sensitivity.SearchConfig = field(default_factory=sensitivity.SearchConfig)
    float_decode: bool = True  # keep the YOLO decode head in float (DECODE_REASON); False
    #                            lets the search decide from a fully quantised detector
    float_stem: bool = True  # keep the node(s) reading the graph input in float (STEM_REASON)
    float_output: bool = True  # keep the node(s) writing the graph output in float (OUTPUT_REASON)
    band_bias_hb: float = 0.10  # estimator: largest |mean dHb| of any severity band, g/dL
    output_correction: bool = True  # estimator: y = a * y_int8 + b fitted to fp32 (correct.py)
    engines: tuple[str, ...] = ()  # peer int8 builds into ART/peers/<engine>/ (peers.py)

    def __post_init__(self) -> None:
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise QuantizeError(f"unknown variant(s) {bad}; choose from {list(VARIANTS)}")
        bad = [r for r in self.roles if r not in ROLES]
        if bad:
            raise QuantizeError(f"unknown model role(s) {bad}; choose from {list(ROLES)}")
        if min(self.samples, self.est_samples, self.val_samples) < 1:
            raise QuantizeError(f"--samples, --est-samples and val_samples must be >= 1, got "
                                f"{self.samples}, {self.est_samples}, {self.val_samples}")
        if min(self.tolerance_hb, self.tolerance_det_score, self.tolerance_det_box_px,
               self.band_bias_hb) < 0:
            raise QuantizeError("tolerances must be >= 0")
        int8.CalibSettings(self.method, self.num_bins, percentile=self.percentile)  # validates
        if self.sampling not in calib.SAMPLING:
            raise QuantizeError(f"calibration sampling must be one of {calib.SAMPLING}, got "
                                f"{self.sampling!r}")

    def calib_settings(self) -> int8.CalibSettings:
        return int8.CalibSettings(self.method, self.num_bins, percentile=self.percentile)

    def tolerance(self, role: str) -> sensitivity.Tolerance:
        if role == "estimator":
            return sensitivity.Tolerance((("hb_abs_mean", self.tolerance_hb),
                                          ("hb_band_bias_max", self.band_bias_hb)))
        # the nails the pipeline crops must stay the same nails (limit 0), their edges and
        # scores close; the score channel as a whole within the score tolerance
        return sensitivity.Tolerance((("nails_changed", 0.0),
                                      ("nail_edge_abs_max_px", self.tolerance_det_box_px),
                                      ("nail_score_abs_max", self.tolerance_det_score),
                                      ("score_abs_p99", self.tolerance_det_score)))


@dataclass
class Inputs:
    """Calibration and validation inputs of one model, with where they came from."""
    calib: list[np.ndarray]
    val: list[np.ndarray]
    source: dict[str, Any]
    val_bands: list[str] | None = None  # severity band of each validation input (estimator)


@dataclass
class QuantizeResult:
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> manifest facts
    searches: dict[str, sensitivity.SearchResult] = field(default_factory=dict)  # role -> search

    @property
    def all_met(self) -> bool:
        return all(s.met for s in self.searches.values())


# ------------------------------------------------------------------ inputs from the data

def load_splits(data: Path | None, seed: int = 0) -> dict[str, list]:
    from hemoedge.data import yakimov

    return yakimov.split(yakimov.load(data or default_data()).records, seed=seed)


def default_data() -> Path:
    """The synthetic set (250 patients, seed 0), generated once into the project home."""
    from hemoedge import offline
    from hemoedge.data.synth import synthesize

    out = offline.home() / "data" / "synth-250-seed0"
    if not (out / "metadata.csv").is_file():
        log.info("no --data given: synthesising the default set into %s", out)
        synthesize(out, patients=250, seed=0)
    return out


def model_inputs(art: Artifact, splits: dict[str, list], cfg: QuantizeConfig,
                 read: Callable | None = None) -> dict[str, Inputs]:
    """Detector: letterboxed photos. Estimator: nail crops found by the fp32 detector."""
    out: dict[str, Inputs] = {}
    det_spec = art.spec("detector")
    if "detector" in cfg.roles:
        out["detector"] = Inputs(
            calib.detector_inputs(splits["train"], det_spec, cfg.samples, read, cfg.sampling),
            calib.detector_inputs(splits["val"], det_spec, cfg.val_samples, read, cfg.sampling),
            {"source": CALIB_SOURCE["detector"]})
    if "estimator" in cfg.roles:
        det = calib.OrtModel(art.path("detector", "fp32"), spec=det_spec)
        est_spec = art.spec("estimator")
        c = calib.detector_crops(splits["train"], det, est_spec, cfg.est_samples, read,
                                 cfg.sampling)
        v = calib.detector_crops(splits["val"], det, est_spec, 3 * cfg.val_samples, read,
                                 cfg.sampling)
        source = CALIB_SOURCE["estimator"]
        if c.fallback and not c.detected:
            source = "ground-truth nail crops of train split (the fp32 detector found no nail)"
        elif c.fallback:
            source += " (ground-truth boxes where it found no nail)"
        out["estimator"] = Inputs(c.inputs, v.inputs, {"source": source, **c.describe(),
                                                        "val": v.describe()}, v.bands())
    return out


# ------------------------------------------------------------------ the variants

def make_fp16(art: Artifact, role: str) -> dict[str, Any]:
    src = art.path(role, "fp32")
    dst = art.root / file_name(role, "fp16")
    tmp = art.root / f".{dst.name}.{os.getpid()}.tmp"
    try:
        fp16.convert(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return art.add_file(role, "fp16", quantization={
        "format": "float16 (onnxconverter-common)", "weights": "float16", "activations": "float16",
        "io": "float32 (keep_io_types)"})


def _outputs(path: Path, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    m = _Session(path)
    return [m.run(x) for x in inputs]


class _Session:
    """A bare reference session (graph optimisations off: the same figures on every CPU) for
    models without metadata (the pre-processed and trial models)."""

    def __init__(self, path: Path):
        from hemoedge.pipeline import session

        self.s = session(path, threads=1, reference=True)
        self.name = self.s.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.s.run(None, {self.name: x})[0]


def make_int8(art: Artifact, role: str, inputs: Inputs, cfg: QuantizeConfig,
              progress: Callable[[str], None] | None = None,
              ) -> tuple[dict, sensitivity.SearchResult]:
    """Calibrate, search the exclusions, write ART/{role}.int8.onnx, record it."""
    import onnx

    src = art.path(role, "fp32")
    settings = cfg.calib_settings()
    tol = cfg.tolerance(role)
    with tempfile.TemporaryDirectory(dir=art.root, prefix=f".quantize.{role}.") as wd_:
        wd = Path(wd_)
        pre = wd / "pre.onnx"
        int8.pre_process(src, pre)
        input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
        t0 = time.perf_counter()
        cache = int8.calibrate(pre, input_name, inputs.calib, settings, wd, wd / "ranges.json")
        log.info("%s: calibrated (%s, %d samples) in %.1f s", role, settings.method,
                 len(inputs.calib), time.perf_counter() - t0)
        ref = _outputs(src, inputs.val)
        names = art.spec(role).class_names
        nail_class = names.index("nail") if "nail" in names else 0

        def quantize(exclude: Sequence[str], dst: Path) -> None:
            int8.quantize(pre, cache, dst, settings.method, exclude)

        def measure(path: Path) -> dict[str, float]:
            out = _outputs(path, inputs.val)
            if role == "estimator":
                figs = sensitivity.estimator_error(np.concatenate(ref), np.concatenate(out),
                                                   inputs.val_bands)
            else:
                figs = sensitivity.detector_error(ref, out, nail_class=nail_class)
            return sensitivity.decision_figures(figs)

        rank_inputs = inputs.val[:cfg.search.rank_samples]
        float_acts: dict = {}  # the float model's activations, dumped once per search

        def rank(path: Path) -> list[sensitivity.TensorError]:
            if not float_acts:
                float_acts.update(sensitivity.activations(pre, input_name, rank_inputs, wd))
            return sensitivity.rank_tensors(pre, path, input_name, rank_inputs, wd, float_acts)

        graph = onnx.load(str(pre), load_external_data=False).graph
        op_types = {n.name: n.op_type for n in graph.node}
        seed: list[tuple[str, str]] = []
        if cfg.float_stem:
            seed += [(n, STEM_REASON) for n in stem_nodes(graph)]
        if cfg.float_decode and role == "detector":
            seed += [(n, DECODE_REASON) for n in sorted(decode_head_nodes(graph))]
        if cfg.float_output:
            kept = {name for name, _ in seed}
            seed += [(n, OUTPUT_REASON) for n in output_nodes(graph) if n not in kept]
        max_bytes = (None if cfg.max_size_ratio is None
                     else int(cfg.max_size_ratio * src.stat().st_size))
        # the tail bisection only considers nodes without sizeable weights: keeping those in
        # float costs no bytes, so the int8 size budget cannot be what stops it
        sizes = {i.name: int(np.prod(i.dims)) for i in graph.initializer}
        order = [n.name for n in graph.node
                 if n.name and max((sizes.get(x, 0) for x in n.input), default=0) <= 4096]
        result = sensitivity.search(quantize, measure, rank, tol, wd, cfg.search, seed,
                                    op_types, progress, max_bytes, order)
        correction = None
        if role == "estimator" and cfg.output_correction:
            correction = _output_correction(src, result, inputs, measure, wd, progress)
        int8.copy_metadata(src, result.model)
        dst = art.root / file_name(role, "int8")
        os.replace(result.model, dst)  # same filesystem: ART/.quantize.*/ -> ART/
    calibration = {**settings.describe(), "samples": len(inputs.calib), **inputs.source,
                   "val_samples": len(inputs.val), "sampling": cfg.sampling,
                   "range_grid": f"outward to 2^(k/{int8.GRID_STEPS_PER_OCTAVE})"}
    facts = art.add_file(role, "int8", quantization={
        **int8.SCHEME.describe(),
        "calibration": calibration,
        "decided_on": "reference: QDQ graph with graph optimisations off (quantisation "
                      "arithmetic in float), figures rounded to 1e-4",
        "excluded_nodes": [e.to_dict() for e in result.excluded],
        "exclusion_search": result.to_dict(),
        "tolerance": tol.describe(),
        "max_size_ratio": cfg.max_size_ratio,
        "output_correction": correction,
        "measured_val_error": {k: round(v, 6) for k, v in result.figures.items()},
        "tolerance_met": result.met})
    return facts, result


def _output_correction(src: Path, result: sensitivity.SearchResult, inputs: Inputs,
                       measure: Callable[[Path], dict[str, float]], wd: Path,
                       progress: Callable[[str], None] | None) -> dict[str, Any]:
    """Fit y = a * y_int8 + b to fp32 on the calibration inputs (correct.py); keep it when the
    validation error falls. Updates `result` in place when kept; returns what was done."""
    from hemoedge.quantize import correct

    c = correct.fit(np.concatenate(_outputs(result.model, inputs.calib)).ravel(),
                    np.concatenate(_outputs(src, inputs.calib)).ravel())
    path = wd / "corrected.onnx"
    correct.apply(result.model, path, c)
    after = measure(path)
    tol = result.tolerance
    kept = tol.badness(after) < tol.badness(result.figures)
    facts = {**c.describe(), "val_error_before": {k: round(v, 6) for k, v in result.figures.items()},
             "val_error_after": {k: round(v, 6) for k, v in after.items()}, "kept": kept}
    (progress or log.info)(f"output correction y = {c.scale:.4f} * y + {c.offset:+.4f}: "
                           f"{'kept' if kept else 'not kept'} ({sensitivity.fmt(after)})")
    if kept:
        result.model, result.figures = path, after
        result.met = not tol.failures(after)
    return facts


def stem_nodes(graph) -> list[str]:
    """The compute nodes that read the graph input directly (the first conv of a CNN)."""
    inputs = {i.name for i in graph.input} - {i.name for i in graph.initializer}
    return _nodes_touching(graph, inputs, "input")


def output_nodes(graph) -> list[str]:
    """The compute nodes that write a graph output (the regression head of the estimator)."""
    return _nodes_touching(graph, {o.name for o in graph.output}, "output")


def _nodes_touching(graph, tensors: set[str], side: str) -> list[str]:
    """Names of the nodes with one of `tensors` among their inputs or outputs (`side`)."""
    return sorted(n.name for n in graph.node if n.name and tensors & set(getattr(n, side)))


def decode_head_nodes(graph) -> list[str]:
    """The YOLOv8 Detect decode: /model.22/* nodes outside the cv2/cv3 conv branches."""
    return [n.name for n in graph.node if n.name.startswith(DECODE_PREFIX)
            and not any(f"{DECODE_PREFIX}{b}." in n.name for b in ("cv2", "cv3"))]


def run(cfg: QuantizeConfig, splits: dict[str, list] | None = None, read: Callable | None = None,
        progress: Callable[[str], None] | None = None) -> QuantizeResult:
    """Make the requested variants in cfg.art. `splits` (train/val/test records) defaults to
    the split of cfg.data; `read` reads a record's photo (default yakimov.read_rgb)."""
    art = Artifact.load(cfg.art)
    # inputs first, before anything is written: each fp32 file present, unchanged since the
    # manifest recorded it, a whole ONNX model with finite weights (Artifact.verify); each spec
    # readable; the calibration data loadable
    for role in cfg.roles:
        art.path(role, "fp32")
        art.spec(role)
    if "int8" in cfg.variants and "estimator" in cfg.roles:
        art.path("detector", "fp32")  # finds the estimator's calibration crops
        art.spec("detector")
    if "int8" in cfg.variants and splits is None:
        splits = load_splits(cfg.data, cfg.split_seed)
    res = QuantizeResult()
    for role in cfg.roles:
        res.files[file_name(role, "fp32")] = art.files[file_name(role, "fp32")]
    if "fp16" in cfg.variants:
        for role in cfg.roles:
            res.files[file_name(role, "fp16")] = make_fp16(art, role)
            art.save()
    if "int8" in cfg.variants:
        splits = splits if splits is not None else load_splits(cfg.data, cfg.split_seed)
        for name in ("train", "val"):
            if not splits.get(name):
                raise QuantizeError(f"the {name} split is empty; int8 needs train photos for "
                                    "calibration and val photos for the tolerance check")
        inputs = model_inputs(art, splits, cfg, read)
        for role in cfg.roles:
            facts, search = make_int8(art, role, inputs[role], cfg, progress)
            res.files[file_name(role, "int8")] = facts
            res.searches[role] = search
            art.save()
    if cfg.engines:
        from hemoedge.quantize import peers

        peers.build(cfg, splits, read, progress)
    return res


# ------------------------------------------------------------------ command line

def config_from_args(args) -> QuantizeConfig:
    """QuantizeConfig from the parsed command line. Options the parser may not (yet) offer —
    --val-samples, --est-samples, --max-steps, --tolerance-det-score, --tolerance-det-box-px,
    --quantize-decode, --quantize-stem, --quantize-output —
    are read when present and otherwise keep their defaults."""
    opt = {k: getattr(args, k) for k in ("val_samples", "est_samples", "tolerance_det_score",
                                         "tolerance_det_box_px")
           if getattr(args, k, None) is not None}
    if getattr(args, "quantize_decode", False):
        opt["float_decode"] = False
    if getattr(args, "quantize_stem", False):
        opt["float_stem"] = False
    if getattr(args, "quantize_output", False):
        opt["float_output"] = False
    if getattr(args, "no_output_correction", False):
        opt["output_correction"] = False
    if getattr(args, "calib_sampling", None):
        opt["sampling"] = args.calib_sampling
    search = {k: getattr(args, k) for k in ("max_steps", "max_trials")
              if getattr(args, k, None) is not None}
    if search:
        opt["search"] = sensitivity.SearchConfig(**search)
    if getattr(args, "roles", None):
        opt["roles"] = tuple(args.roles)
    if getattr(args, "engine", None):
        from hemoedge.quantize import peers

        opt["engines"] = peers.check(args.engine)
    return QuantizeConfig(
        art=Path(args.art), variants=tuple(args.variants),
        data=Path(args.calib) if args.calib else None, method=args.method,
        samples=args.samples, tolerance_hb=args.tolerance_hb, **opt)


def cli(args) -> int:
    return main(config_from_args(args))


def main(cfg: QuantizeConfig) -> int:
    """`hemoedge quantize` once its config is known (also what `hemoedge run` calls): the
    variants with a live status line, their table, and a warning per missed tolerance."""
    from rich.console import Console

    console = Console(width=max(Console().width, 120))
    with console.status("quantising") as status:
        def progress(msg: str) -> None:
            status.update(msg.strip())
            (log.debug if msg.startswith(" ") else log.info)(msg.strip())

        res = run(cfg, progress=progress)
    print_table(res, console)
    for role, s in res.searches.items():
        if not s.met:
            console.print(f"[yellow]warning:[/] {role} int8 misses its tolerance "
                          f"({s.stop_reason}): "
                          + "; ".join(s.tolerance.failures(s.figures)))
    return 0


def print_table(res: QuantizeResult, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title="hemoedge quantize")
    for col in ("variant", "MB", "of fp32", "Q nodes", "in float", "val error vs fp32", "met"):
        t.add_column(col)
    notes = []
    for name, f in sorted(res.files.items()):
        base = res.files.get(file_name(f["model"], "fp32"), {}).get("bytes")
        q = f.get("quantization") or {}
        err = q.get("measured_val_error") or {}
        shown = {k: v for k, v in err.items() if k in q.get("tolerance", {})}
        kept = [e["name"] for e in q.get("excluded_nodes", [])]
        if kept:
            notes.append(f"{name} keeps in float: {', '.join(kept)}")
        t.add_row(name.removesuffix(".onnx"), f"{f['bytes'] / 1e6:.2f}",
                  f"{f['bytes'] / base:.0%}" if base else "",
                  str(f.get("op_census", {}).get("QuantizeLinear", 0)), str(len(kept)),
                  " ".join(f"{k}={v:.3g}" for k, v in shown.items()) or "-",
                  "" if "tolerance_met" not in q else ("yes" if q["tolerance_met"] else "NO"))
    console.print(t)
    for n in notes:
        console.print(n)
