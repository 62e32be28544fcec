"""`hemoedge eval ART` for quantiser peers: when ART/peers/<engine>/ holds int8 files built by
`hemoedge quantize ART --engine ...` (hemoedge/quantize/peers.py), measure them exactly as
accuracy.py measures hemoedge's own variants, on the same test split, against the same fp32
pipeline, and time them against fp32 in one interleaved run (docs/peers.md).

Variants (results.json), per engine E:
  det=int8,est=int8,engine=E  E's detector and E's estimator, end to end
  det=int8,engine=E           E's detector with the fp32 estimator: end to end, detector mAP
                              (acc.det.*.map50, acc.det.map50), size.detector.bytes,
                              cpu.detector.latency_ratio_vs_fp32
  est=int8,engine=E           the fp32 detector with E's estimator: end to end, ground-truth
                              crops (acc.hb_mae, acc.hb_mae_delta, acc.band_agreement,
                              acc.hb_abs_delta.*), size.estimator.bytes,
                              cpu.estimator.latency_ratio_vs_fp32
End to end: acc.e2e.nail_found_rate, acc.e2e.hb_mae, acc.e2e.hb_mae_delta,
acc.e2e.abs_delta.{mean,p95,max} and acc.e2e.band_agreement versus the fp32 pipeline
(classifiers: acc.e2e.cls.* / acc.cls.*). hemoedge's own int8 files get the latency ratio too
(variants det=int8 / est=int8), timed in the same interleaved run.

Latency ratio: one onnxruntime session per file at 1 thread, the same input; in each round
every file runs `runs` times (the order rotates between rounds) and the round's ratio is its
median over fp32's median in that round, so load drift cancels; the metric is the median ratio
over the rounds with the bootstrap 95 % interval (hemoedge.bench.stats), n = rounds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge import anaemia
from hemoedge.artifact import Artifact, describe_onnx, file_name
from hemoedge.bench import accuracy
from hemoedge.preprocess import Detection, crop, letterbox, resize_crop
from hemoedge.report.results import Results, variant_name

log = logging.getLogger(__name__)

ENGINE = "engine"  # the variant key naming a peer engine
RATIO = "latency_ratio_vs_fp32"  # cpu.<role>.latency_ratio_vs_fp32
SHORT = {"detector": "det", "estimator": "est"}


@dataclass(frozen=True)
class TimingConfig:
    rounds: int = 25  # ratios (n of the metric)
    runs: int = 4  # timed runs per file per round (the round uses their median)
    warmup: int = 5  # untimed runs per session before the first round
    threads: int = 1


def peer_variant(engine: str, det: bool = True, est: bool = True) -> str:
    v = variant_name("int8" if det else None, "int8" if est else None)
    return f"{v},{ENGINE}={engine}"


def peer_files(art: Artifact) -> dict[str, dict[str, Path]]:
    """engine -> role -> int8 file, for peer files built from the artifact's current fp32
    files (a peer whose source sha256 differs, e.g. after a re-export, is skipped with a
    warning)."""
    from hemoedge.quantize import peers

    out: dict[str, dict[str, Path]] = {}
    for engine in peers.engines_in(art.root):
        rec = peers.load_peer(art.root, engine)
        for name, facts in sorted(rec.get("files", {}).items()):
            role = facts.get("model")
            path = peers.folder(art.root, engine) / name
            fp32 = art.files.get(file_name(role, "fp32"), {})
            if not path.is_file():
                log.warning("%s: listed in peer.json but missing; skipped", path)
            elif facts.get("source", {}).get("sha256") != fp32.get("sha256"):
                log.warning("%s: built from another %s (fp32 sha256 differs); skipped, rebuild "
                            "it with `hemoedge quantize %s --variants fp32 --engine %s`", path,
                            file_name(role, "fp32"), art.root, engine)
            else:
                out.setdefault(engine, {})[role] = path
    return out


# ------------------------------------------------------------------ accuracy

def add_e2e(res: Results, v: str, out: Mapping[str, float], ref: Mapping[str, float],
            truth: Mapping[str, float], pids: Sequence[str], task: str, threshold: float) -> None:
    """accuracy.py's end-to-end figures of one pairing, from per-patient values."""
    found = [k for k in pids if k in out]
    res.add("acc.e2e.nail_found_rate", v, len(found) / len(pids), "ratio", "higher", n=len(pids))
    if not found:
        log.warning("%s: the detector found no nail in any test photo; no end-to-end Hb", v)
        return
    if task == "classification":
        accuracy.add_classification(res, "acc.e2e.cls", {v: out}, ref, truth, found, threshold)
        return

    def mae(hb: Mapping[str, float], keys: Sequence[str]) -> float:
        return accuracy.hb_metrics([hb[k] for k in keys], [truth[k] for k in keys])["mae"]

    res.add("acc.e2e.hb_mae", v, mae(out, found), "g/dL", "lower", n=len(found))
    both = [k for k in found if k in ref]
    if not both:
        return
    res.add("acc.e2e.hb_mae_delta", v, mae(out, both) - mae(ref, both), "g/dL", "lower",
            n=len(both))
    d = accuracy.abs_delta(out, ref)
    for k in ("mean", "p95", "max"):
        res.add(f"acc.e2e.abs_delta.{k}", v, d[k], "g/dL", "lower", n=d["n"])
    res.add("acc.e2e.band_agreement", v,
            accuracy.band_agreement([out[k] for k in both], [ref[k] for k in both]), "ratio",
            "higher", n=len(both))


def add_crops(res: Results, v: str, hb: Mapping[str, float], ref: Mapping[str, float],
              truth: Mapping[str, float], pids: Sequence[str], task: str,
              threshold: float) -> None:
    """accuracy.py's ground-truth-crop figures of one estimator file."""
    if task == "classification":
        accuracy.add_classification(res, "acc.cls", {v: hb}, ref, truth, pids, threshold)
        return
    tr = [truth[k] for k in pids]
    m = accuracy.hb_metrics([hb[k] for k in pids], tr)
    m_ref = accuracy.hb_metrics([ref[k] for k in pids], tr)
    n = len(pids)
    res.add("acc.hb_mae", v, m["mae"], "g/dL", "lower", n=n)
    res.add("acc.hb_mae_delta", v, m["mae"] - m_ref["mae"], "g/dL", "lower", n=n)
    res.add("acc.band_agreement", v, accuracy.band_agreement([hb[k] for k in pids],
                                                             [ref[k] for k in pids]),
            "ratio", "higher", n=n)
    d = accuracy.abs_delta(hb, ref)
    for k in ("mean", "p95", "max"):
        res.add(f"acc.hb_abs_delta.{k}", v, d[k], "g/dL", "lower", n=d["n"])


class _Runner:
    """OnnxPipelines over one test split, caching each detector file's nails per photo."""

    def __init__(self, cfg: accuracy.EvalConfig, records: Sequence[Any], images: dict):
        self.cfg, self.records, self.images = cfg, records, images
        self.pids = [str(r.patient_id) for r in records]
        self._nails: dict[Path, dict[str, list[Detection]]] = {}

    def pipe(self, det: Path, est: Path, conf: float | None = None, iou: float | None = None):
        from hemoedge.pipeline import OnnxPipeline

        return OnnxPipeline(det, est, threads=1, conf=self.cfg.app_conf if conf is None else conf,
                            iou=self.cfg.app_iou if iou is None else iou)

    def e2e(self, det: Path, est: Path) -> dict[str, float]:
        """Per patient: the median Hb of up to max_nails detected nails (best first)."""
        pipe = self.pipe(det, est)
        if det not in self._nails:
            self._nails[det] = {pid: sorted(pipe.nails(pipe.detect(self.images[pid])),
                                            key=lambda d: -d.score)[:self.cfg.max_nails]
                                for pid in self.pids}
        vals, who = [], []
        for pid in self.pids:
            for d in self._nails[det][pid]:
                vals.append(pipe.estimate(crop(self.images[pid], d.box)))
                who.append(pid)
        return accuracy.per_patient(vals, who)

    def crops(self, det: Path, est: Path) -> dict[str, float]:
        """Per patient: the median Hb of its ground-truth nail crops."""
        pipe = self.pipe(det, est)
        vals, who = [], []
        for r in self.records:
            for b in r.nail_xyxy():
                vals.append(pipe.estimate(crop(self.images[str(r.patient_id)], b)))
                who.append(str(r.patient_id))
        return accuracy.per_patient(vals, who)

    def det_map(self, det: Path, est: Path) -> dict[str, dict]:
        pipe = self.pipe(det, est, self.cfg.map_conf, self.cfg.map_iou)
        ims = []
        for r in self.records:
            gt = [(b, 0) for b in r.nail_xyxy()] + [(b, 1) for b in r.skin_xyxy()]
            ims.append(accuracy.ImageDets.of(pipe.detect(self.images[str(r.patient_id)]), gt))
        return accuracy.detection_metrics(ims)


# ------------------------------------------------------------------ latency

def interleaved_ratios(files: Mapping[str, Path], ref: str, x: np.ndarray,
                       timing: TimingConfig = TimingConfig()) -> dict[str, tuple[np.ndarray, float]]:
    """label -> (per-round ratio of its median time to the ref file's median, median ms)."""
    from hemoedge.bench.stats import Timer
    from hemoedge.pipeline import session

    labels = list(files)
    runs = {}
    for label in labels:
        s = session(files[label], threads=timing.threads)
        feed = {s.get_inputs()[0].name: x}
        runs[label] = (lambda s=s, feed=feed: s.run(None, feed))
        for _ in range(timing.warmup):
            runs[label]()
    med: dict[str, list[float]] = {k: [] for k in labels}
    for r in range(timing.rounds):
        for label in labels[r % len(labels):] + labels[:r % len(labels)]:
            med[label].append(float(np.median(Timer.measure(runs[label], timing.runs))))
    base = np.asarray(med[ref])
    return {k: (np.asarray(v) / base, float(np.median(v))) for k, v in med.items()}


def add_latency(res: Results, art: Artifact, peers: Mapping[str, Mapping[str, Path]],
                sample: Callable[[str], np.ndarray], timing: TimingConfig) -> None:
    """cpu.<role>.latency_ratio_vs_fp32 for hemoedge's int8 and every peer file of each role."""
    from hemoedge.bench.stats import summarize

    for role in ("detector", "estimator"):
        files: dict[str, Path] = {}
        if "int8" in art.precisions(role):
            files[variant_name(**{SHORT[role]: "int8"})] = art.path(role, "int8")
        for engine, by_role in peers.items():
            if role in by_role:
                files[peer_variant(engine, role == "detector", role == "estimator")] = by_role[role]
        if not files:
            continue
        ref = variant_name(**{SHORT[role]: "fp32"})
        files = {ref: art.path(role, "fp32"), **files}
        ratios = interleaved_ratios(files, ref, sample(role), timing)
        fp32_ms = ratios[ref][1]
        for v, (r, ms) in ratios.items():
            if v == ref:
                continue
            s = summarize(r)
            res.add(f"cpu.{role}.{RATIO}", v, s.p50, "ratio", "lower", n=s.n, ci95=list(s.ci95),
                    threads=timing.threads, ms_p50=round(ms, 3), fp32_ms_p50=round(fp32_ms, 3),
                    runs_per_round=timing.runs)


# ------------------------------------------------------------------ evaluation

def evaluate(art_root: str | Path, data: Path | None = None, records: Sequence[Any] | None = None,
             read: Callable | None = None, timing: TimingConfig | None = TimingConfig(),
             split_seed: int = 0) -> Results:
    """Every peer's figures (module docstring) on `records` (default: the test split of
    `data`); `timing=None` skips the latency ratios."""
    from hemoedge.errors import BenchError
    from hemoedge.spec import task_of

    art = Artifact.load(art_root)
    cfg = accuracy.EvalConfig(art=Path(art_root), data=data, split_seed=split_seed)
    peers = peer_files(art)
    res = Results()
    if not peers:
        return res
    if records is None:
        from hemoedge.quantize.run import load_splits

        records = load_splits(data, split_seed)["test"]
    if not records:
        raise BenchError("the test split is empty; nothing to evaluate")
    if read is None:
        from hemoedge.data.yakimov import read_rgb as read
    images = {str(r.patient_id): read(r.photo) for r in records}
    truth = {str(r.patient_id): float(r.hb_gdl) for r in records}
    run = _Runner(cfg, records, images)
    pids = run.pids
    det32, est32 = art.path("detector", "fp32"), art.path("estimator", "fp32")
    est_spec = art.spec("estimator")
    task = task_of(est_spec)
    threshold = est_spec.extra.get("anaemia_threshold_gdl", anaemia.WHO_THRESHOLD_GDL)
    ref_e2e = run.e2e(det32, est32)
    ref_crops = run.crops(det32, est32)
    fp32_map = run.det_map(det32, est32)

    for engine, by_role in peers.items():
        det, est = by_role.get("detector"), by_role.get("estimator")
        pairs = []
        if det and est:
            pairs.append((peer_variant(engine), det, est))
        if det:
            pairs.append((peer_variant(engine, est=False), det, est32))
        if est:
            pairs.append((peer_variant(engine, det=False), det32, est))
        for v, d, e in pairs:
            res.variants[v] = {role: str(p.relative_to(art.root))
                               for role, p in (("detector", d), ("estimator", e))}
            add_e2e(res, v, run.e2e(d, e), ref_e2e, truth, pids, task, threshold)
        if det:
            v = peer_variant(engine, est=False)
            m = run.det_map(det, est32)
            for cls, cm in m.items():
                res.add(f"acc.det.{cls}.map50", v, cm["map50"], "", "higher", n=len(pids))
                res.add(f"acc.det.{cls}.map50_delta", v, cm["map50"] - fp32_map[cls]["map50"], "",
                        "higher", n=len(pids))
            res.add("acc.det.map50", v, float(np.mean([cm["map50"] for cm in m.values()])), "",
                    "higher", n=len(pids))
            res.add("size.detector.bytes", v, describe_onnx(det)["bytes"], "bytes", "lower")
        if est:
            v = peer_variant(engine, det=False)
            add_crops(res, v, run.crops(det32, est), ref_crops, truth, pids, task, threshold)
            res.add("size.estimator.bytes", v, describe_onnx(est)["bytes"], "bytes", "lower")

    if timing is not None:
        first = records[0]
        img = images[str(first.patient_id)]

        def sample(role: str) -> np.ndarray:
            if role == "detector":
                return letterbox(img, art.spec("detector").preprocess)[0]
            return resize_crop(crop(img, first.nail_xyxy()[0]), est_spec.preprocess)

        add_latency(res, art, peers, sample, timing)
    return res


# ------------------------------------------------------------------ command line

def is_peer_metric(m) -> bool:
    from hemoedge.report.choose import parse_variant

    return ENGINE in parse_variant(m.variant) or m.name.endswith(f".{RATIO}")


def merge_into(path: Path, new: Results) -> Results:
    """Replace the previous peer figures in `path` with `new`: results.merge_stage (the one way
    a stage writes into a results file) with every peer figure of the file dropped first, then
    the peer variants this run no longer describes."""
    from hemoedge.report.choose import parse_variant
    from hemoedge.report.results import merge_stage

    res = merge_stage(path, new, replaces="", where=is_peer_metric)
    stale = [k for k in res.variants if ENGINE in parse_variant(k) and k not in new.variants]
    if stale:
        for k in stale:
            del res.variants[k]
        res.save(path)
    return res


def eval_cli(args: Any) -> int:
    """`hemoedge eval ART`: accuracy.py's evaluation, then the peers' when ART/peers/ exists."""
    return eval_main(accuracy.config_from_args(args), accuracy.results_path(args))


def eval_main(cfg: Any, results: Path | None = None) -> int:
    """`hemoedge eval` once its config (accuracy.EvalConfig) is known (also what `hemoedge run`
    calls): the variants' accuracy into `results` (default ART/results.json), then the
    quantiser peers' when ART/peers/ exists."""
    code = accuracy.main(cfg, results)
    from hemoedge.quantize import peers

    out = results or Path(cfg.art) / "results.json"
    if not peers.engines_in(str(cfg.art)):
        if out.is_file() and any(is_peer_metric(m) for m in Results.load(out).metrics):
            merge_into(out, Results())  # the peers are gone: so are their figures
        return code
    from rich.console import Console

    console = Console(width=max(Console().width, 120))
    with console.status("evaluating the quantiser peers (ART/peers/)"):
        new = evaluate(Path(cfg.art), Path(cfg.data) if cfg.data else None)
    res = merge_into(out, new)
    print_table(res, console)
    console.print(f"{len(new.metrics)} peer metrics written to {out}")
    return code


def print_table(res: Results, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    from hemoedge.report.html import PEER_HEAD, peer_rows

    console = console or Console()
    t = Table(title="quantiser peers (int8 detector + int8 estimator, end to end vs the fp32 "
                    "pipeline; latency: 1 thread, x fp32)")
    for _, h in PEER_HEAD:
        t.add_column(h)
    for row in peer_rows(res):
        t.add_row(*(row[k] for k, _ in PEER_HEAD))
    console.print(t)
