"""`hemoedge choose`: recommend the variant pairing to ship under constraints.

Across a backbone sweep (variants carry "backbone=<label>", results.env["sweep"] describes the
entries) only pairings of one task are ranked (--task); regression pairings are held to the
Hb MAE constraints, including --max-hb-mae-over-best (distance from the best backbone's fp32
pipeline) when they span several backbones, classification pairings to AUROC constraints.

This module ranks the candidates and explains the choice (reasons, binding constraints,
notes), and holds the command line. The candidates and their constraint checks are in
hemoedge.report.candidates, the variant/metric lookups (a variant string read as opaque
key=value pairs, the most specific figure winning) in hemoedge.report.query; both are
re-exported here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from hemoedge.errors import ResultsError
from hemoedge.names import DESKTOP, WASM, ep_of, figure_device_class, parse_variant, variant_name
from hemoedge.report.candidates import (
    CHECK,
    CHECKS,
    EPS,
    OVER_BEST,
    TARGETS,
    Candidate,
    Constraints,
    best_reference,
    collect,
    spans_backbones,
)
from hemoedge.report.query import (
    BACKBONE,
    CLS_PREFIXES,
    HB_PREFIXES,
    PREFERRED_THREADS,
    TASKS,
    covers,
    lookup,
    prefer_threads,
    sweep_entries,
    sweep_info,
    task_of,
)
from hemoedge.report.results import Results, merge

log = logging.getLogger(__name__)

__all__ = ["BACKBONE", "CHECK", "CHECKS", "CLS_PREFIXES", "EPS", "HB_PREFIXES", "OVER_BEST",
           "PREFERRED_THREADS", "TARGETS", "TASKS", "Candidate", "Choice", "ChooseConfig", "Constraints",
           "best_reference", "choose", "cli", "collect", "cost", "covers", "device_classes",
           "for_device", "for_device_class", "for_ep", "format_choice", "lookup", "parse_variant",
           "prefer_threads", "sweep_entries", "sweep_info", "task_of"]


@dataclass
class Choice:
    constraints: Constraints
    recommended: Candidate | None
    runners_up: list[Candidate]  # feasible, in rank order
    rejected: list[Candidate]  # each with .violations
    reasons: list[str]  # why the recommendation (or why nothing)
    binding: list[str]  # constraint flags that bind when nothing satisfies
    notes: list[str]
    multi_backbone: bool = False  # the ranked candidates span several backbones

    @property
    def ok(self) -> bool:
        return self.recommended is not None


def _rank_key(cand: Candidate, multi: bool = False) -> tuple:
    # fastest first; then the more accurate; then the smaller download
    inf = math.inf
    if cand.task == "classification":
        acc = (-cand.auroc if cand.auroc is not None else inf,
               cand.auroc_drop if cand.auroc_drop is not None else inf)
    else:  # across backbones deltas have different references: absolute MAE first
        acc = ((cand.hb_mae if cand.hb_mae is not None else inf) if multi else 0.0,
               cand.hb_mae_delta if cand.hb_mae_delta is not None else inf)
    return (cand.frame_ms, *acc, cand.bytes if cand.bytes is not None else inf, cand.variant)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        return f"{value / 1e6:.2f} MB"
    if unit == "g/dL":
        return f"{value:+.3f} g/dL"
    return f"{value:.1f} {unit}"


def _limit_of(c: Constraints, flag: str) -> float | None:
    return getattr(c, CHECK[flag][0])


def _value_of(cand: Candidate, flag: str) -> float | None:
    return getattr(cand, CHECK[flag][1])


def _accuracy(cand: Candidate) -> str:
    """The absolute accuracy figure: "Hb MAE 1.156 g/dL (e2e)" or "AUROC 0.912 (e2e)"."""
    if cand.task == "classification":
        return f"AUROC {cand.auroc:.3f} ({cand.cls_source})" if cand.auroc is not None \
            else "AUROC n/a"
    return f"Hb MAE {cand.hb_mae:.3f} g/dL ({cand.hb_mae_source})" if cand.hb_mae is not None \
        else "Hb MAE n/a"


def cost(cand: Candidate, best: Candidate) -> str:
    """What shipping `cand` instead of `best` would cost (or gain)."""
    parts = [f"{cand.frame_ms - best.frame_ms:+.1f} ms/frame"]
    if cand.task == "classification":
        if cand.auroc is not None and best.auroc is not None:
            parts.append(f"{cand.auroc - best.auroc:+.3f} AUROC")
    elif cand.backbone != best.backbone:  # deltas of two backbones have different references
        if cand.hb_mae is not None and best.hb_mae is not None:
            parts.append(f"{cand.hb_mae - best.hb_mae:+.3f} g/dL MAE")
    elif cand.hb_mae_delta is not None and best.hb_mae_delta is not None:
        parts.append(f"{cand.hb_mae_delta - best.hb_mae_delta:+.3f} g/dL MAE")
    if cand.bytes is not None and best.bytes is not None:
        parts.append(f"{(cand.bytes - best.bytes) / 1e6:+.2f} MB")
    return ", ".join(parts)


def _notes(results: Results, c: Constraints, cands: list[Candidate],
           others: list[Candidate], all_cands: list[Candidate]) -> list[str]:
    notes = []
    if c.task == "regression":
        est_only = [x.variant for x in cands if x.hb_source == "est-only"]
        if est_only:
            notes.append("no acc.e2e.hb_mae_delta for " + ", ".join(est_only) +
                         ": used the estimator-only acc.hb_mae_delta (ground-truth crops), "
                         "which ignores detector error")
    else:
        est_only = [x.variant for x in cands if x.cls_source == "est-only"]
        if est_only:
            notes.append("no acc.e2e.cls.auroc for " + ", ".join(est_only) +
                         ": used the estimator-only acc.cls.* figures (ground-truth crops), "
                         "which ignore detector error")
    other = [x for x in cands if x.threads not in (None, PREFERRED_THREADS)]
    if other:
        notes.append(f"no threads={PREFERRED_THREADS} frame time for " +
                     ", ".join(f"{x.variant} (used threads={x.threads})" for x in other))
    if c.task == "regression" and c.max_hb_mae_over_best is not None and \
            spans_backbones(cands, "regression"):
        best = best_reference(all_cands)
        n = len({x.backbone for x in cands})
        if best is None:
            notes.append(f"{OVER_BEST} not applied: no backbone has both an Hb MAE and its "
                         "delta, so no fp32 reference is known")
        else:
            notes.append(
                f"{OVER_BEST} {c.max_hb_mae_over_best}: the pairings span {n} backbones, so a "
                f"pairing's Hb MAE must be within {c.max_hb_mae_over_best:.3f} g/dL of the best "
                f"backbone's fp32 pipeline ({best.backbone}, {best.ref_mae:.3f} g/dL "
                f"{best.hb_mae_source}), i.e. at most "
                f"{best.ref_mae + c.max_hb_mae_over_best:.3f} g/dL; deltas alone compare a "
                "backbone only with itself")
    if others:
        tasks = sorted({x.task for x in others})
        notes.append(f"{len(others)} pairing(s) of task {'/'.join(tasks)} not ranked (rank "
                     f"them with --task {tasks[0]}): " + ", ".join(x.variant for x in others))
    ranked = {x.backbone for x in cands}
    for label, e in sweep_entries(results).items():
        if e.get("task", "regression") == c.task and label not in ranked and \
                e.get("status") != "done":
            notes.append(f"sweep entry {label} {e.get('status', '?')}: "
                         f"{e.get('reason') or 'no reason given'}")
    return notes


def choose(results: Results, constraints: Constraints) -> Choice:
    """Rank every pairing with a frame time on the target; pure (no printing, no files)."""
    c = constraints
    all_cands = collect(results, c, strict=True)
    if not all_cands:
        hint = "hemoedge bench web ART --results R" if c.target == "web" else \
            "hemoedge bench cpu ART --results R"
        raise ResultsError(f"choose: no {c.frame_metric} metrics in the results "
                           f"(expected per-pairing frame times; run `{hint}` first)")
    cands = [x for x in all_cands if x.task == c.task]
    others = [x for x in all_cands if x.task != c.task]
    if not cands:
        found = "/".join(sorted({x.task for x in others}))
        raise ResultsError(f"choose: no {c.task} pairing has {c.frame_metric} (the results "
                           f"hold {found} pairings only; pass --task {found.split('/')[0]})")
    multi = spans_backbones(cands, c.task)
    notes = _notes(results, c, cands, others, all_cands)
    feasible = sorted((x for x in cands if x.feasible), key=lambda x: _rank_key(x, multi))
    rejected = sorted((x for x in cands if not x.feasible), key=lambda x: _rank_key(x, multi))
    if not feasible:
        return Choice(c, None, [], rejected, _why_nothing(rejected, c), _binding(rejected),
                      notes, multi)
    best = feasible[0]
    reasons = [f"fastest of {len(feasible)} pairing(s) meeting every constraint on "
               f"target {c.target}: {_fmt(best.frame_ms, 'ms')} per frame (p50, "
               f"threads={best.threads})"]
    if c.task == "regression":
        line = (f"Hb MAE delta {_fmt(best.hb_mae_delta, 'g/dL')} ({best.hb_source})"
                + (f" <= {c.max_hb_mae_delta}" if c.max_hb_mae_delta is not None else ""))
        if best.hb_mae is not None:
            line += f"; {_accuracy(best)}" + (f" <= {c.max_hb_mae}" if c.max_hb_mae is not None
                                               else "")
        if best.hb_mae_over_best is not None:
            line += (f", {best.hb_mae_over_best:+.3f} g/dL over the best backbone's fp32 "
                     f"pipeline" + (f" <= {c.max_hb_mae_over_best}"
                                    if c.max_hb_mae_over_best is not None else ""))
        reasons.append(line)
        if best.hb_shift is not None or best.band_agreement is not None:
            reasons.append(
                "per patient against the fp32 pipeline: p95 |dHb| "
                + (f"{best.hb_shift:.3f} g/dL" if best.hb_shift is not None else "n/a")
                + (f" <= {c.max_hb_shift}" if c.max_hb_shift is not None else "")
                + ", severity band kept for "
                + (f"{best.band_agreement:.1%}" if best.band_agreement is not None else "n/a")
                + (f" >= {c.min_band_agreement:.1%}" if c.min_band_agreement is not None else "")
                + f" ({best.fidelity_source})")
    else:
        line = _accuracy(best) + (f" >= {c.min_auroc}" if c.min_auroc is not None else "")
        line += (f"; AUROC drop vs fp32 {best.auroc_drop:+.3f}" if best.auroc_drop is not None
                 else "; AUROC drop vs fp32 n/a") + \
            (f" <= {c.max_auroc_drop}" if c.max_auroc_drop is not None else "")
        extra = [f"{k} {v:.3f}" for k, v in (("sensitivity", best.sensitivity),
                                              ("specificity", best.specificity))
                 if v is not None]
        reasons.append(line + (f"; {', '.join(extra)}" if extra else ""))
    reasons.append(f"size {_fmt(best.bytes, 'bytes')}"
                   + (f" <= {c.max_bytes / 1e6:.2f} MB" if c.max_bytes is not None else ""))
    if best.first_visit_mb is not None and (c.max_first_visit_mb is not None
                                            or best.first_visit_source == "wire"):
        reasons.append(f"first visit {best.first_visit_mb:.2f} MB ("
                       + ("on the wire, bench web" if best.first_visit_source == "wire"
                          else "model files; no bench web first-visit figure")
                       + ")" + (f" <= {c.max_first_visit_mb} MB"
                                if c.max_first_visit_mb is not None else ""))
    if multi:
        e = sweep_entries(results).get(best.backbone or "", {})
        facts = [f"timm {e['backbone']}" if e.get("backbone") else "",
                 f"input {e['size']}" if e.get("size") else "",
                 f"{e['params_m']:.2f} M params" if isinstance(e.get("params_m"), (int, float))
                 else ""]
        facts = [f for f in facts if f]
        reasons.append(f"backbone {best.backbone}" + (f" ({', '.join(facts)})" if facts else "")
                       + f", chosen among {len({x.backbone for x in cands})} backbones")
    return Choice(c, best, feasible[1:], rejected, reasons, [], notes, multi)


def _binding(rejected: list[Candidate]) -> list[str]:
    """Constraints that alone stop some pairing; if none does alone, every violated one."""
    alone = sorted({x.violations[0] for x in rejected if len(x.violations) == 1})
    if alone:
        return alone
    return sorted({v for x in rejected for v in x.violations})


def _why_nothing(rejected: list[Candidate], c: Constraints) -> list[str]:
    reasons = []
    for flag in _binding(rejected):
        # the loosest limit that would admit a pairing, other constraints held
        near = [x for x in rejected if x.violations == [flag] and _value_of(x, flag) is not None]
        if all(_value_of(x, flag) is None for x in rejected if flag in x.violations):
            reasons.append(f"{flag} cannot be met: no pairing has that figure")
        elif near:
            pick = max if CHECK[flag][2] == "min" else min
            x = pick(near, key=lambda x: _value_of(x, flag))
            v = _value_of(x, flag)
            shown = f"{v:.0f}" if flag == "--max-bytes" else (
                f"{v:.2f}" if flag == "--max-first-visit-mb" else f"{v:.3f}")
            reasons.append(f"{flag} {_limit_of(c, flag)} binds: {flag} {shown} would admit "
                           f"{x.variant}" + (f" ({_accuracy(x)})" if x.backbone else ""))
        else:
            reasons.append(f"{flag} {_limit_of(c, flag)} is violated by every pairing")
    missing = [x.variant for x in rejected if x.hb_source == "missing"
               and "--max-hb-mae-delta" in x.violations]
    if missing:
        reasons.append("no Hb MAE delta measured for " + ", ".join(missing) +
                       " (run `hemoedge eval ART --results R`)")
    missing = [x.variant for x in rejected if x.task == "classification" and (
        ("--min-auroc" in x.violations and x.auroc is None)
        or ("--max-auroc-drop" in x.violations and x.auroc_delta is None))]
    if missing:
        reasons.append("no AUROC (or AUROC delta) measured for " + ", ".join(missing) +
                       " (run `hemoedge eval ART --results R` on a classification artifact)")
    return reasons


# --- command line --------------------------------------------------------------------------



def device_classes(results: Results) -> list[str]:
    """The device classes of the web figures in `results` (desktop = no device_class param)."""
    return sorted({figure_device_class(m.params) for m in results.metrics
                   if m.name.startswith("web.")})


def for_device_class(results: Results, name: str) -> Results:
    """`results` with only that device class's web figures (bench web --device-class /
    --cpu-slowdown); figures that are not web.* (accuracy, sizes, CPU) are kept as they are.
    Unknown class: a ResultsError naming the classes there are."""
    have = device_classes(results)
    if name not in have:
        raise ResultsError(f"choose: no web figures for device class {name!r} in the results "
                           f"(there are: {', '.join(have) or 'none'}); measure it with "
                           f"`hemoedge bench web ART --device-class {name}`")
    out = Results(env=results.env, variants=results.variants, commands=results.commands)
    out.metrics = [m for m in results.metrics if not m.name.startswith("web.")
                   or figure_device_class(m.params) == name]
    return out


def for_ep(results: Results, ep: str) -> Results:
    """`results` with only one onnxruntime-web execution provider's web figures (wasm: the
    variants without an ep= key, bench web's default), so a choice never mixes providers;
    figures that are not web.* are kept. A provider without any web figure: a ResultsError."""
    keep = [m for m in results.metrics if not m.name.startswith("web.") or ep_of(m.variant) == ep]
    avail = [m for m in keep if m.name == "web.ep.available"]
    if avail and not any(m.value == 1 for m in avail):
        raise ResultsError(f"choose: {ep} was unavailable wherever it was measured "
                           f"({avail[0].params.get('reason') or 'no reason recorded'}); "
                           "nothing to choose from")
    if ep != WASM and not any(m.name.startswith("web.") and m.name != "web.ep.available"
                              for m in keep):
        have = sorted({ep_of(m.variant) for m in results.metrics if m.name.startswith("web.")})
        raise ResultsError(f"choose: no web figures for execution provider {ep!r} in the results "
                           f"(there are: {', '.join(have) or 'none'}); measure it with `hemoedge "
                           f"bench web ART --ep {ep}` (web.ep.available says whether it ran)")
    return Results(metrics=keep, env=results.env, variants=results.variants,
                   commands=results.commands)


def for_device(results: Results, name: str | None) -> Results:
    """`results` with the web figures of one remote device (bench web --connect: `device`
    param), or, for None, with none of them (the local browser's figures only); figures that
    are not web.* are kept. Unknown device: a ResultsError naming the devices there are."""
    have = sorted({str(m.params["device"]) for m in results.metrics
                   if m.name.startswith("web.") and "device" in m.params})
    if name is not None and name not in have:
        raise ResultsError(f"choose: no web figures for device {name!r} in the results (there "
                           f"are: {', '.join(have) or 'none'}); measure it with `hemoedge bench "
                           f"web ART --connect ENDPOINT --device-name {name}`")
    out = Results(env=results.env, variants=results.variants, commands=results.commands)
    out.metrics = [m for m in results.metrics if not m.name.startswith("web.")
                   or m.params.get("device") == name]
    return out


MODEL_SUM = "detector + estimator session.run p50 (no camera frames on this device)"


def frames_from_model_latencies(results: Results) -> int:
    """Add web.frame_ms.p50 for every pairing that has none but whose two models were timed on
    the same device at the same threads (web.{detector,estimator}.latency_ms.p50): their sum,
    marked params.source = MODEL_SUM. A remote device without the fake camera records model
    latencies only; this lets `choose --device` rank pairings on it. Returns how many."""
    det = [m for m in results.metrics if m.name == "web.detector.latency_ms.p50"]
    est = [m for m in results.metrics if m.name == "web.estimator.latency_ms.p50"]
    have = {(m.variant, m.params.get("threads")) for m in results.metrics
            if m.name == "web.frame_ms.p50"}
    added = 0
    for d in det:
        for e in est:
            t = d.params.get("threads")
            pairing = variant_name(parse_variant(d.variant).get("det"),
                                   parse_variant(e.variant).get("est"))
            if e.params.get("threads") != t or (pairing, t) in have:
                continue
            results.add("web.frame_ms.p50", pairing, d.value + e.value, "ms", "lower",
                        threads=t, source=MODEL_SUM,
                        **{k: d.params[k] for k in ("device",) if k in d.params})
            added += 1
    return added


@dataclass(frozen=True)
class ChooseConfig:
    """`hemoedge choose`: the results files (shards are merged), the constraints, and whose
    figures to answer from."""
    results: list[Path]
    constraints: Constraints = field(default_factory=Constraints)
    device_class: str | None = None  # None: desktop whenever any figure is emulated
    device: str | None = None  # a remote device's figures (bench web --connect/--devices)
    ep: str | None = None  # an onnxruntime-web execution provider's figures; None: wasm


def config_from_args(args) -> ChooseConfig:
    """ChooseConfig from the parsed command line (options a caller's namespace lacks keep
    their defaults)."""
    paths = args.results if isinstance(args.results, list) else [args.results]
    defaults = Constraints()
    kw = {name: getattr(args, name, getattr(defaults, name))
          for name in ("target", "task", *(fld for _, fld, *_ in CHECKS))}
    return ChooseConfig(results=[Path(p) for p in paths], constraints=Constraints(**kw),
                        device_class=getattr(args, "device_class", None),
                        device=getattr(args, "device", None), ep=getattr(args, "ep", None))


def cli(args) -> int:
    return main(config_from_args(args))


def main(cfg: ChooseConfig) -> int:
    """`hemoedge choose` once its config is known (also what `run` calls): exit 1 when no
    candidate meets the constraints."""
    results = merge(cfg.results)  # also unions shards' sweep entries
    # a remote device's figures never stand in for this machine's (nor another device's)
    results = for_device(results, cfg.device)
    # one execution provider's web figures (default wasm: ep= variants never compete with it)
    ep = cfg.ep or WASM
    results = for_ep(results, ep)
    if cfg.device is not None and frames_from_model_latencies(results):
        print(f"device {cfg.device}: frame time = {MODEL_SUM}")
    cls = cfg.device_class
    if cls is None and any(m.params.get("device_class") for m in results.metrics):
        cls = DESKTOP  # emulated figures never stand in for the desktop ones
    if cls is not None:
        results = for_device_class(results, cls)
    choice = choose(results, cfg.constraints)
    if cls is not None:
        print(f"device class {cls}" + (f" (cpu slowdown {_slowdown(results):g}x)"
                                       if cls != DESKTOP else ""))
    if ep != WASM:
        print(f"execution provider {ep} (onnxruntime-web; its ep= figures only)")
    print(format_choice(choice))
    return 0 if choice.ok else 1


def _slowdown(results: Results) -> float:
    return next((float(m.params["cpu_slowdown"]) for m in results.metrics
                 if "cpu_slowdown" in m.params), 1.0)


def _limits(choice: Choice) -> str:
    c = choice.constraints
    shown = []
    for flag, fld, _, _, task in CHECKS:
        v = getattr(c, fld)
        if v is None or (task is not None and task != c.task) or \
                (flag == OVER_BEST and not choice.multi_backbone):
            continue
        shown.append(f"{flag} {v}")
    return ", ".join(shown)


def _figures(x: Candidate) -> str:
    if x.task == "classification":
        drop = f"AUROC drop {x.auroc_drop:+.3f}" if x.auroc_drop is not None else "AUROC drop n/a"
        return f"{_fmt(x.frame_ms, 'ms')}, {_accuracy(x)}, {drop}, {_fmt(x.bytes, 'bytes')}"
    return (f"{_fmt(x.frame_ms, 'ms')}, {_fmt(x.hb_mae_delta, 'g/dL')}, "
            + (f"{_accuracy(x)}, " if x.hb_mae is not None else "")
            + _fmt(x.bytes, "bytes"))


def format_choice(choice: Choice) -> str:
    c = choice.constraints
    lines = []
    task = f", task {c.task}" if c.task != "regression" or choice.multi_backbone else ""
    lines.append(f"target {c.target}{task}; constraints: {_limits(choice) or 'none'}")
    if choice.recommended is not None:
        best = choice.recommended
        lines.append(f"recommended: {best.variant}")
        lines += [f"  - {r}" for r in choice.reasons]
        if choice.runners_up:
            lines.append("runners-up (cost versus the recommendation):")
            lines += [f"  {x.variant}: {cost(x, best)}" for x in choice.runners_up]
    else:
        lines.append("nothing satisfies the constraints; binding: " + ", ".join(choice.binding))
        lines += [f"  - {r}" for r in choice.reasons]
    if choice.rejected:
        lines.append("rejected:")
        for x in choice.rejected:
            lines.append(f"  {x.variant}: violates {', '.join(x.violations)} ({_figures(x)})")
    lines += [f"note: {n}" for n in choice.notes]
    return "\n".join(lines)
