"""Accuracy-aware node exclusion: keep the fewest nodes in float until the tolerance holds.

Each round:
1. measure the current int8 model against fp32 on validation inputs (task-level figures:
   Hb error for the estimator, class-score and box error for the detector);
2. if a limit is exceeded, dump the activations of the int8 and the float model
   (onnxruntime.quantization.qdq_loss_debug) and score every quantised tensor: SQNR of its
   QDQ rounding over the whole tensor and over its worst channel (a tensor concatenating box
   pixels 0-480 with scores 0-1 looks fine as a whole while its score channels are rounded
   to 0), absolute rounding noise, and the SQNR against fp32 its node loses between inputs
   and output (which also shows int8 weight error);
3. shortlist candidates from those orders in turn, re-quantise once per candidate with that
   node also kept in float, measure each, and keep the candidate that reduces the error most
   (none if none helps; a candidate over the file-size budget is not taken).

The loop stops when the limits hold, when no candidate is left, after `max_steps` nodes kept
in float, or when `max_trials` candidates have been measured (a round whose candidates all fail
to help keeps nothing and moves on to the next candidates: it spends trials, not steps); the
result reports every step, so a tolerance that cannot be met is visible, not hidden.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hemoedge.errors import QuantizeError
from hemoedge.preprocess import iou_matrix

log = logging.getLogger(__name__)

Figures = dict[str, float]
ZERO_LIMIT_WEIGHT = 1e6  # Tolerance.badness: weight of a figure whose limit is 0
XMODEL_CAP_DB = 100.0  # SQNR taken for a node's inputs when none is measured (the image)


@dataclass(frozen=True)
class Tolerance:
    limits: tuple[tuple[str, float], ...]  # (figure name, largest allowed value)

    def __post_init__(self) -> None:
        for name, lim in self.limits:
            if not lim >= 0:
                raise QuantizeError(f"tolerance {name} must be >= 0, got {lim}")

    def failures(self, figures: Figures) -> list[str]:
        return [f"{name} {figures[name]:.4g} > {lim:.4g}" for name, lim in self.limits
                if not figures[name] <= lim]

    def badness(self, figures: Figures) -> float:
        """Largest figure / limit ratio (<= 1 means within tolerance). A figure whose limit is
        0 (e.g. nails_changed) adds ZERO_LIMIT_WEIGHT x its value instead: any excess
        outweighs every ratio, and a candidate that lowers it still ranks above one that
        does not."""
        worst, zero = 0.0, 0.0
        for name, lim in self.limits:
            v = figures[name]
            if not math.isfinite(v):
                return math.inf
            if lim > 0:
                worst = max(worst, v / lim)
            else:
                zero += ZERO_LIMIT_WEIGHT * v
        return worst + zero

    def describe(self) -> dict[str, float]:
        return dict(self.limits)


@dataclass(frozen=True)
class SearchConfig:
    max_steps: int = 8  # nodes the greedy rounds may keep in float (rounds that helped)
    shortlist: int = 8  # candidates measured per round: half by tensor SQNR, half by worst channel
    rank_samples: int = 4  # validation inputs for the per-tensor SQNR ranking (memory: all tensors)
    max_trials: int = 128  # candidate models measured in all rounds, helpful or not

    def __post_init__(self) -> None:
        if (self.max_steps < 0 or self.shortlist < 1 or self.rank_samples < 1
                or self.max_trials < 0):
            raise QuantizeError(f"bad search config {self}")


@dataclass
class TensorError:
    tensor: str
    node: str  # producer node in the float (pre-processed) model
    op_type: str
    sqnr_db: float  # whole tensor, float vs after QDQ (higher is better)
    channel_sqnr_db: float  # worst channel (axis 1); = sqnr_db for tensors without channels
    noise_rms: float = 0.0  # RMS of (after QDQ - float), in the tensor's own unit
    injected_db: float = 0.0  # SQNR against the fp32 model lost from the node's inputs to
    #                           this output: error the node adds (weights and rounding)


@dataclass
class Exclusion:
    name: str
    op_type: str
    reason: str
    tensor_sqnr_db: float | None  # of the node's output tensor when it was chosen
    channel_sqnr_db: float | None
    injected_db: float | None  # SQNR vs fp32 lost at this node
    error_before: Figures
    error_after: Figures

    def to_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "reason": self.reason,
                "tensor_sqnr_db": _r(self.tensor_sqnr_db),
                "channel_sqnr_db": _r(self.channel_sqnr_db),
                "sqnr_lost_vs_fp32_db": _r(self.injected_db),
                "measured_error_before": {k: _r(v) for k, v in self.error_before.items()},
                "measured_error_after": {k: _r(v) for k, v in self.error_after.items()}}


@dataclass
class Step:
    excluded: tuple[str, ...]
    figures: Figures
    failures: list[str]
    candidates_tried: int = 0


@dataclass
class SearchResult:
    excluded: list[Exclusion]
    steps: list[Step]
    met: bool
    figures: Figures  # of the returned model
    model: Path  # the chosen int8 model (in the work dir)
    stop_reason: str
    tolerance: Tolerance = field(default_factory=lambda: Tolerance(()))

    def to_dict(self) -> dict:
        return {"tolerance": self.tolerance.describe(), "met": self.met,
                "stop_reason": self.stop_reason,
                "measured_val_error": {k: _r(v) for k, v in self.figures.items()},
                "steps": [{"excluded": len(s.excluded),
                           "error": {k: _r(v) for k, v in s.figures.items()},
                           "failures": s.failures, "candidates_tried": s.candidates_tried}
                          for s in self.steps]}


def _r(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


# ------------------------------------------------------------------ task-level error figures

def estimator_error(ref_hb: np.ndarray, hb: np.ndarray,
                    bands: Sequence[str] | None = None) -> Figures:
    """Hb (g/dL) of the int8 model against fp32 on the same inputs. With `bands` (the severity
    band of each input's measured Hb), also hb_band_bias_max: the largest |mean signed change|
    of any band — a shift that a mean over all bands hides (e.g. severe anaemia read high)."""
    diff = np.asarray(hb, np.float64).ravel() - np.asarray(ref_hb, np.float64).ravel()
    d = np.abs(diff)
    out = {"hb_abs_mean": float(d.mean()), "hb_abs_p95": float(np.percentile(d, 95)),
           "hb_abs_max": float(d.max())}
    if bands is not None:
        b = np.asarray(bands)
        out["hb_band_bias_max"] = float(max(abs(diff[b == k].mean()) for k in np.unique(b)))
    return out


def decision_figures(figures: Figures, decimals: int = 4) -> Figures:
    """Figures as the search compares them: rounded, so that a last-bit difference of a float
    kernel on another CPU cannot turn one choice into another."""
    return {k: round(float(v), decimals) if math.isfinite(v) else float(v)
            for k, v in figures.items()}


def detector_error(ref: Sequence[np.ndarray], out: Sequence[np.ndarray], top_k: int = 20,
                   nail_class: int = 0, max_nails: int = 3, conf: float = 0.25,
                   iou: float = 0.45) -> Figures:
    """Raw detector outputs (1, 4 + nc, A) against fp32, as the pipeline uses them.

    The nails the pipeline crops: per image, the best `max_nails` nail detections after the
    confidence threshold and NMS (hemoedge.preprocess.decode_detections), matched by IoU:
    nails_changed: share of images whose nails differ (another count, or a nail with no
    int8 counterpart at IoU >= 0.5) - a lost, gained or swapped nail is another crop;
    nail_edge_abs_max_px: largest |x1, y1, x2, y2 change| of a matched nail, network px;
    nail_score_abs_max: largest |score change| of a matched nail (its rank among the nails).

    The score channel in general: per image and class the top_k anchors by fp32 score,
    score_abs_p99: 99th percentile of their |score change| (one anchor cannot decide it);
    score_abs_max: the largest (reported; an anchor that never becomes a detection can set
    it, and chasing it kept nodes in float that made the nails no better: docs/quantize.md);
    box_abs_mean_px: mean |cx, cy, w, h change| there, network px."""
    score_err, box_err, edge, nail_score = [], [], [], []
    changed = 0
    for a, b in zip(ref, out, strict=True):
        a, b = np.asarray(a, np.float64)[0], np.asarray(b, np.float64)[0]
        for c in range(4, a.shape[0]):
            idx = np.argsort(-a[c], kind="stable")[:top_k]
            score_err.append(np.abs(a[c, idx] - b[c, idx]))
            box_err.append(np.abs(a[:4, idx] - b[:4, idx]).mean())
        na, nb = (_nails(x, nail_class, max_nails, conf, iou) for x in (a, b))
        lost = len(na) != len(nb)
        boxes_b = np.array([bb for _, bb in nb], np.float64).reshape(-1, 4)
        for sa, ba in na:
            ious = iou_matrix(ba[None], boxes_b)[0]
            j = int(np.argmax(ious)) if ious.size else -1
            if j < 0 or ious[j] < 0.5:
                lost = True
                continue
            edge.append(float(np.abs(nb[j][1] - ba).max()))
            nail_score.append(abs(nb[j][0] - sa))
        changed += lost
    scores = np.concatenate(score_err)
    return {"nails_changed": changed / len(ref),
            "nail_edge_abs_max_px": max(edge, default=0.0),
            "nail_score_abs_max": max(nail_score, default=0.0),
            "score_abs_p99": float(np.percentile(scores, 99)),
            "score_abs_max": float(scores.max()),
            "box_abs_mean_px": float(np.mean(box_err))}


def _nails(raw: np.ndarray, nail_class: int, max_nails: int, conf: float,
           iou: float) -> list[tuple[float, np.ndarray]]:
    """(score, xyxy in network px) of the best nail detections of one raw output (4 + nc, A)."""
    from hemoedge.preprocess import Letterbox, decode_detections

    dets = decode_detections(raw[None].astype(np.float32), Letterbox(1.0, 0, 0), conf, iou)
    return [(d.score, np.asarray(d.box, np.float64)) for d in dets
            if d.cls == nail_class][:max_nails]


# ------------------------------------------------------------------ per-tensor SQNR ranking

def _sqnr(signal: np.ndarray, noise: np.ndarray, axis_sum=None) -> np.ndarray:
    s = np.sum(signal.astype(np.float64) ** 2, axis=axis_sum)
    n = np.sum(noise.astype(np.float64) ** 2, axis=axis_sum)
    ratio = np.asarray(np.maximum(s, 1e-30) / np.maximum(n, 1e-30), np.float64)
    # math.log10, not np.log10: numpy's runs SVML code on AVX-512 CPUs and other code on AVX2
    # ones, and their last bits differ (measured); the ranking of candidates must not
    return 10 * np.array([math.log10(v) for v in ratio.ravel()]).reshape(ratio.shape)


def channel_sqnr(pre: np.ndarray, post: np.ndarray, dead: float = 1e-6) -> float:
    """Worst SQNR (dB) over axis-1 channels of (N, C, ...) tensors; channels whose energy is
    below `dead` x the strongest channel's are ignored (constant-zero channels)."""
    if pre.ndim < 3:
        return float(_sqnr(pre, pre - post))
    a = np.moveaxis(pre, 1, 0).reshape(pre.shape[1], -1)
    b = np.moveaxis(post, 1, 0).reshape(post.shape[1], -1)
    energy = np.sum(a.astype(np.float64) ** 2, axis=1)
    keep = energy > dead * energy.max()
    if not keep.any():
        return math.inf
    return float(_sqnr(a[keep], a[keep] - b[keep], axis_sum=1).min())


def activations(model: Path, input_name: str, inputs: Sequence[np.ndarray],
                workdir: Path) -> dict[str, list[np.ndarray]]:
    """Every intermediate tensor of `model` on `inputs` (onnxruntime's qdq_loss_debug)."""
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        modify_model_output_intermediate_tensors,
    )

    from hemoedge.quantize.int8 import ListReader

    aug = Path(workdir) / f"{Path(model).stem}.debug.onnx"
    modify_model_output_intermediate_tensors(str(model), str(aug))
    try:
        return collect_activations(str(aug), ListReader(input_name, inputs))
    finally:
        aug.unlink(missing_ok=True)


def rank_tensors(float_model: Path, qdq_model: Path, input_name: str,
                 inputs: Sequence[np.ndarray], workdir: Path,
                 float_acts: dict[str, list[np.ndarray]] | None = None) -> list[TensorError]:
    """Per-tensor errors of the int8 model, worst channel SQNR first: the QDQ rounding of each
    tensor (pre vs post QDQ) and, against the float model's activations on the same inputs,
    how much SQNR each node loses from its inputs to its output. Activations are dumped with
    onnxruntime.quantization.qdq_loss_debug. Pass `float_acts` to reuse the float dump."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import create_activation_matching

    if float_acts is None:
        float_acts = activations(float_model, input_name, inputs, workdir)
    # tensor -> pre_qdq / post_qdq / float lists
    match = create_activation_matching(activations(qdq_model, input_name, inputs, workdir),
                                       float_acts)

    fmodel = onnx.shape_inference.infer_shapes(onnx.load(str(float_model)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*fmodel.graph.value_info, *fmodel.graph.output]}
    producer = {o: n for n in fmodel.graph.node for o in n.output}
    inits = {i.name: i for i in fmodel.graph.initializer}
    xmodel: dict[str, float] = {}  # tensor -> SQNR (dB) of the int8 model against fp32
    for name, m in match.items():
        if m.get("float") and np.any(np.stack(m["float"])):
            f = np.stack([np.asarray(t) for t in m["float"]])
            xmodel[name] = float(_sqnr(f, f - np.stack([np.asarray(t) for t in m["post_qdq"]])))
    out: list[TensorError] = []
    for name, m in match.items():
        node = producer.get(name)
        if node is None:  # a graph input: nothing to keep in float
            continue
        pre = np.stack([np.asarray(t) for t in m["pre_qdq"]])
        post = np.stack([np.asarray(t) for t in m["post_qdq"]])
        # Relu/Clip are folded into the QDQ pair of their input (QDQRemovableActivation), so
        # "pre" is the tensor before the activation: apply it, or its effect counts as noise
        if node.op_type in ("Relu", "Clip"):
            lo, hi = _clip_bounds(node, inits)
            if lo is not None or hi is not None:
                pre = np.clip(pre, lo, hi)
        shape = shapes.get(name)
        if not np.any(pre):  # an all-zero tensor has nothing to lose: SQNR undefined
            continue
        whole = float(_sqnr(pre, pre - post))
        if (shape and len(shape) >= 2 and all(d > 0 for d in shape)
                and int(np.prod(shape)) == pre[0].size):
            # (samples, flat) -> (samples x batch, C, ...)
            chan = channel_sqnr(pre.reshape(-1, *shape[1:]), post.reshape(-1, *shape[1:]))
        else:
            chan = whole
        noise = float(np.sqrt(np.mean((post.astype(np.float64) - pre) ** 2)))
        upstream = _upstream_sqnr(node, xmodel, producer)
        injected = max(0.0, upstream - xmodel[name]) if name in xmodel else 0.0
        target = node
        if node.op_type in ("Relu", "Clip") and node.input[0] not in match \
                and node.input[0] in producer:
            # the activation was folded into its producer's QDQ pair: the error it shows
            # (weights, rounding) is the producer's, so that is the node to keep in float
            target = producer[node.input[0]]
        out.append(TensorError(name, target.name, target.op_type, whole, min(chan, whole),
                               noise, injected))
    # ties (e.g. float tensors with no rounding at all) by name: onnxruntime's activation
    # matching comes in a set's order, which changes with Python's hash seed
    out.sort(key=lambda t: (t.channel_sqnr_db, t.node, t.tensor))
    return out


def _upstream_sqnr(node, xmodel: dict[str, float], producer: dict, depth: int = 6) -> float:
    """Worst SQNR against fp32 among the nearest measured tensors feeding `node` (walking back
    through nodes whose outputs have no QDQ pair, e.g. a Conv folded into its Relu's pair);
    XMODEL_CAP_DB at the graph inputs."""
    worst = XMODEL_CAP_DB
    frontier = list(node.input)
    for _ in range(depth):
        nxt = []
        for t in frontier:
            if t in xmodel:
                worst = min(worst, xmodel[t])
            elif t in producer:
                nxt.extend(producer[t].input)
        if not nxt:
            break
        frontier = nxt
    return worst


def _clip_bounds(node, inits) -> tuple[float | None, float | None]:
    from onnx import numpy_helper

    if node.op_type == "Relu":
        return 0.0, None
    lo = hi = None
    for i, name in enumerate(node.input[1:3]):
        if name in inits:
            v = float(numpy_helper.to_array(inits[name]))
            lo, hi = (v, hi) if i == 0 else (lo, v)
    for a in node.attribute:  # Clip before opset 11
        lo = a.f if a.name == "min" else lo
        hi = a.f if a.name == "max" else hi
    return lo, hi


def shortlist(ranked: Sequence[TensorError], excluded: Sequence[str], k: int,
              skip: int = 0) -> list[TensorError]:
    """k candidates, taken in turn from four orders: most SQNR lost against fp32 at the node
    (weight and rounding error the node adds, which QDQ rounding alone does not show),
    worst-channel SQNR, whole-tensor SQNR and largest absolute noise (the last finds
    wide-range tensors such as box pixels, whose rounding error is large in task units
    although their SQNR looks healthy). The first `skip` distinct candidates are passed over
    (they were tried in an earlier round)."""
    orders = (sorted(ranked, key=lambda t: (-t.injected_db, t.node)),
              sorted(ranked, key=lambda t: (t.channel_sqnr_db, t.node)),
              sorted(ranked, key=lambda t: (t.sqnr_db, t.node)),
              sorted(ranked, key=lambda t: (-t.noise_rms, t.node)))
    seen = set(excluded)
    out: list[TensorError] = []
    for row in zip(*orders, strict=True):
        for t in row:
            if t.node not in seen:
                seen.add(t.node)
                out.append(t)
    return out[skip:skip + k]


# ------------------------------------------------------------------ the search

def search(quantize: Callable[[Sequence[str], Path], None],
           measure: Callable[[Path], Figures],
           rank: Callable[[Path], list[TensorError]],
           tolerance: Tolerance, workdir: Path, cfg: SearchConfig = SearchConfig(),
           seed: Sequence[tuple[str, str]] = (), op_types: dict[str, str] | None = None,
           progress: Callable[[str], None] | None = None,
           max_bytes: int | None = None, order: Sequence[str] = ()) -> SearchResult:
    """Greedy forward selection of nodes to keep in float.

    order: the graph's node names in topological order. When given and the fully quantised
    model misses the tolerance, a first phase bisects for the shortest graph tail (the last k
    nodes) whose float execution meets it - measured, O(log n) builds. Output heads that mix
    ranges (the YOLO decode: box pixels 0-480 and scores 0-1 in one Concat) sit in that tail.
    The greedy rounds then continue from there if the tolerance still fails.

    quantize(exclude, dst) writes an int8 model; measure(path) returns error figures against
    fp32 on validation inputs; rank(path) returns per-tensor errors of that int8 model.
    seed: (node, reason) pairs excluded from the start (recorded as hints, not measured finds).
    max_bytes: a candidate whose int8 file would be larger is not taken (keeping a big layer
    in float can cost most of the size gain).
    """
    workdir = Path(workdir)
    op_types = op_types or {}
    say = progress or (lambda _msg: None)
    n_models = 0

    def build(exclude: Sequence[str]) -> tuple[Path, Figures]:
        nonlocal n_models
        n_models += 1
        dst = workdir / f"trial{n_models:03d}.onnx"
        quantize(list(exclude), dst)
        return dst, measure(dst)

    excluded: list[Exclusion] = []
    names: list[str] = []
    cur_path, cur = build([s[0] for s in seed])
    for node, reason in seed:
        names.append(node)
        excluded.append(Exclusion(node, op_types.get(node, ""), reason, None, None, None, {}, cur))
    steps = [Step(tuple(names), cur, tolerance.failures(cur))]
    best = (tolerance.badness(cur), cur_path, cur, len(excluded))
    stop = "tolerance met"
    say(f"int8 with {len(names)} node(s) in float: {fmt(cur)}")
    if order and tolerance.failures(cur):
        seeded = list(names)  # every tail is tried on top of the seeded exclusions
        rest = [n for n in order if n not in seeded]
        tail = _bisect_tail(lambda ex: build([*seeded, *ex]), tolerance, rest, max_bytes, say)
        if tail is not None:
            k, path, figs = tail
            before = cur
            for node in rest[len(rest) - k:]:
                names.append(node)
                excluded.append(Exclusion(
                    node, op_types.get(node, ""),
                    f"measured: part of the shortest graph tail ({k} nodes) whose float "
                    "execution meets the tolerance (bisection over graph order)",
                    None, None, None, before, figs))
            cur_path, cur = path, figs
            steps.append(Step(tuple(names), cur, tolerance.failures(cur)))
            best = (tolerance.badness(cur), cur_path, cur, len(excluded))
            say(f"tail of {k} node(s) in float -> {fmt(cur)}")
    skip = 0  # candidates already tried without any gain in earlier rounds
    ranked: tuple[Path | None, list[TensorError]] = (None, [])
    kept = tried = 0
    while tolerance.failures(cur):
        if kept >= cfg.max_steps:
            stop = f"tolerance not met after keeping {cfg.max_steps} node(s) in float"
            break
        if tried >= cfg.max_trials:
            stop = f"tolerance not met after {tried} candidate models"
            break
        if ranked[0] != cur_path:  # re-rank only when the model changed
            ranked = (cur_path, rank(cur_path))
        cands = shortlist(ranked[1], names, min(cfg.shortlist, cfg.max_trials - tried), skip)
        if not cands:
            stop = "no quantised node left to exclude"
            break
        tried += len(cands)
        trials = []
        for t in cands:
            path, figs = build([*names, t.node])
            size = path.stat().st_size
            over = max_bytes is not None and size > max_bytes
            trials.append((math.inf if over else tolerance.badness(figs), t, path, figs))
            say(f"  try {t.node} ({t.op_type}, SQNR {t.sqnr_db:.1f} dB, worst channel "
                f"{t.channel_sqnr_db:.1f} dB, noise rms {t.noise_rms:.3g}, adds "
                f"{t.injected_db:.1f} dB vs fp32): {fmt(figs)}"
                + (f" — {size / 1e6:.2f} MB, over the {max_bytes / 1e6:.2f} MB budget"
                   if over else ""))
        trials.sort(key=lambda x: (x[0], x[1].node))  # ties: by name, for determinism
        bad, t, path, figs = trials[0]
        for _, _, p, _ in trials[1:]:
            p.unlink(missing_ok=True)
        if not bad < tolerance.badness(cur):
            # no single candidate helps: keep nothing from this round, try the next ones
            path.unlink(missing_ok=True)
            skip += len(cands)
            steps.append(Step(tuple(names), cur, tolerance.failures(cur), len(cands)))
            say(f"no gain from {len(cands)} candidates; trying the next {cfg.shortlist}")
            continue
        skip = 0
        kept += 1
        before = cur
        names.append(t.node)
        excluded.append(Exclusion(t.node, t.op_type,
                                  "measured: keeping it in float reduced the validation error most "
                                  f"among {len(cands)} SQNR-ranked candidates",
                                  t.sqnr_db, t.channel_sqnr_db, t.injected_db, before, figs))
        cur_path, cur = path, figs
        steps.append(Step(tuple(names), cur, tolerance.failures(cur), len(cands)))
        say(f"keep {t.node} in float -> {fmt(cur)}")
        if bad < best[0]:
            best = (bad, cur_path, cur, len(excluded))
    met = not tolerance.failures(cur)
    if not met:
        # hand back the best model seen, with only the exclusions it was built with
        _, cur_path, cur, n = best
        excluded = excluded[:n]
        log.warning("int8 tolerance not met (%s): %s", stop, "; ".join(tolerance.failures(cur)))
    return SearchResult(excluded, steps, met, cur, cur_path, stop, tolerance)


def _bisect_tail(build, tolerance: Tolerance, order: Sequence[str], max_bytes: int | None,
                 say, max_fraction: float = 0.25):
    """Smallest k such that keeping order[-k:] in float meets the tolerance (assumes the error
    falls as the float tail grows). -> (k, model path, figures) or None if even the largest
    allowed tail (max_fraction of the nodes, within max_bytes) misses it."""
    hi = max(1, int(len(order) * max_fraction))
    path, figs = build(list(order[len(order) - hi:]))
    if tolerance.failures(figs) or (max_bytes is not None and path.stat().st_size > max_bytes):
        say(f"a float tail of {hi} nodes does not meet the tolerance within the size budget: "
            f"{fmt(figs)}")
        path.unlink(missing_ok=True)
        return None
    lo, best = 0, (hi, path, figs)  # invariant: tail lo fails, tail hi passes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        p, f = build(list(order[len(order) - mid:]))
        if tolerance.failures(f) or (max_bytes is not None and p.stat().st_size > max_bytes):
            lo = mid
            p.unlink(missing_ok=True)
        else:
            best[1].unlink(missing_ok=True)
            hi, best = mid, (mid, p, f)
    return best


def fmt(figs: Figures) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in figs.items())
