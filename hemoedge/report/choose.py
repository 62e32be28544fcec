"""`hemoedge choose`: recommend the variant pairing to ship under constraints.

A variant string is treated as opaque key=value pairs ("det=int8,est=fp32",
"det=int8,est=fp32,backbone=efficientnet_b0"): a model-level figure (size.detector.bytes under
"det=int8") belongs to every pairing whose pairs include the model variant's pairs; when
several match, the most specific wins. Nothing here knows what "det" or "est" mean.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from hemoedge.errors import ResultsError
from hemoedge.report.results import Metric, Results, merge

log = logging.getLogger(__name__)

PREFERRED_THREADS = 2  # the deployment setting on 2-core phones/laptops (FACTS.md)
TARGETS = ("web", "cpu")


# --- variant strings ---------------------------------------------------------------------

def parse_variant(variant: str) -> dict[str, str]:
    """'det=int8,est=fp32' -> {'det': 'int8', 'est': 'fp32'}; a bare token maps to ''."""
    out: dict[str, str] = {}
    for part in variant.split(","):
        part = part.strip()
        if part:
            key, _, value = part.partition("=")
            out[key.strip()] = value.strip()
    return out


def covers(sub: str, full: str) -> bool:
    """True when every key=value pair of `sub` is in `full`: "det=int8" covers
    "det=int8,est=fp32"."""
    return parse_variant(sub).items() <= parse_variant(full).items()


def prefer_threads(metrics: list[Metric], threads: int = PREFERRED_THREADS) -> Metric | None:
    """The metric at `threads` if there is one, else the best value among the other settings."""
    if not metrics:
        return None
    at = [m for m in metrics if m.params.get("threads") == threads]
    if at:
        return at[-1]
    finite = [m for m in metrics if math.isfinite(m.value)]
    if not finite:
        return None
    if finite[0].better == "higher":
        return max(finite, key=lambda m: m.value)
    return min(finite, key=lambda m: m.value)


def lookup(results: Results, name: str, variant: str, *, exact: bool = False,
           threads: int | None = PREFERRED_THREADS, same: tuple[str, ...] = ()) -> Metric | None:
    """The metric `name` for `variant`: exact match, or (exact=False) the most specific metric
    whose variant is covered by `variant`. Among thread settings, prefer `threads`. Keys in
    `same` must agree between the metric's variant and `variant` (absent on both counts as
    agreeing): same=("backbone",) keeps one backbone's accuracy off another's pairing."""
    pool = [m for m in results.metrics if m.name == name and math.isfinite(m.value)]
    if same:
        want = parse_variant(variant)
        pool = [m for m in pool
                if all(parse_variant(m.variant).get(k) == want.get(k) for k in same)]
    if exact:
        pool = [m for m in pool if m.variant == variant]
    else:
        pool = [m for m in pool if m.variant and covers(m.variant, variant)]
        if pool:
            best = max(len(parse_variant(m.variant)) for m in pool)
            pool = [m for m in pool if len(parse_variant(m.variant)) == best]
    if threads is None:
        return pool[-1] if pool else None
    return prefer_threads(pool, threads)


# --- constraints and the choice ------------------------------------------------------------

@dataclass(frozen=True)
class Constraints:
    target: str = "web"  # "web" (onnxruntime-web in Chromium) or "cpu" (onnxruntime native)
    max_frame_ms: float | None = None  # per-frame p50, ms
    max_hb_mae_delta: float | None = 0.05  # g/dL, pairing MAE minus the fp32 reference's
    max_bytes: float | None = None  # detector + estimator file bytes

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ResultsError(f"choose: --target must be one of {TARGETS}, got {self.target!r}")
        for name in ("max_frame_ms", "max_hb_mae_delta", "max_bytes"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise ResultsError(f"choose: --{name.replace('_', '-')} must be finite, got {v}")

    @property
    def frame_metric(self) -> str:
        return f"{self.target}.frame_ms.p50"


@dataclass
class Candidate:
    variant: str
    frame_ms: float | None  # p50 per frame, ms, on the target
    threads: int | None  # thread setting the frame time was measured at
    hb_mae_delta: float | None  # g/dL
    hb_source: str  # "e2e" (detector + estimator on photos) or "est-only" (ground-truth crops)
    bytes: float | None  # detector + estimator file bytes
    violations: list[str] = field(default_factory=list)  # constraint names violated

    @property
    def feasible(self) -> bool:
        return not self.violations


@dataclass
class Choice:
    constraints: Constraints
    recommended: Candidate | None
    runners_up: list[Candidate]  # feasible, in rank order
    rejected: list[Candidate]  # each with .violations
    reasons: list[str]  # why the recommendation (or why nothing)
    binding: list[str]  # constraint flags that bind when nothing satisfies
    notes: list[str]

    @property
    def ok(self) -> bool:
        return self.recommended is not None


def _candidate(results: Results, variant: str, frame: Metric, c: Constraints) -> Candidate:
    notes_source = "e2e"
    acc = lookup(results, "acc.e2e.hb_mae_delta", variant, threads=None)
    if acc is None:
        acc = lookup(results, "acc.hb_mae_delta", variant, threads=None)
        notes_source = "est-only"
    det = lookup(results, "size.detector.bytes", variant, threads=None)
    est = lookup(results, "size.estimator.bytes", variant, threads=None)
    size = det.value + est.value if det is not None and est is not None else None
    cand = Candidate(variant, frame.value, frame.params.get("threads"),
                     acc.value if acc is not None else None,
                     notes_source if acc is not None else "missing", size)
    checks = (("--max-frame-ms", c.max_frame_ms, cand.frame_ms),
              ("--max-hb-mae-delta", c.max_hb_mae_delta, cand.hb_mae_delta),
              ("--max-bytes", c.max_bytes, cand.bytes))
    for flag, limit, value in checks:
        if limit is not None and (value is None or value > limit):
            cand.violations.append(flag)
    return cand


def _rank_key(cand: Candidate) -> tuple:
    # fastest first; then the more accurate; then the smaller download
    return (cand.frame_ms, cand.hb_mae_delta if cand.hb_mae_delta is not None else math.inf,
            cand.bytes if cand.bytes is not None else math.inf, cand.variant)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "bytes":
        return f"{value / 1e6:.2f} MB"
    if unit == "g/dL":
        return f"{value:+.3f} g/dL"
    return f"{value:.1f} {unit}"


def _limit_of(c: Constraints, flag: str) -> float | None:
    return {"--max-frame-ms": c.max_frame_ms, "--max-hb-mae-delta": c.max_hb_mae_delta,
            "--max-bytes": c.max_bytes}[flag]


def _value_of(cand: Candidate, flag: str) -> float | None:
    return {"--max-frame-ms": cand.frame_ms, "--max-hb-mae-delta": cand.hb_mae_delta,
            "--max-bytes": cand.bytes}[flag]


def cost(cand: Candidate, best: Candidate) -> str:
    """What shipping `cand` instead of `best` would cost (or gain)."""
    parts = [f"{cand.frame_ms - best.frame_ms:+.1f} ms/frame"]
    if cand.hb_mae_delta is not None and best.hb_mae_delta is not None:
        parts.append(f"{cand.hb_mae_delta - best.hb_mae_delta:+.3f} g/dL MAE")
    if cand.bytes is not None and best.bytes is not None:
        parts.append(f"{(cand.bytes - best.bytes) / 1e6:+.2f} MB")
    return ", ".join(parts)


def collect(results: Results, constraints: Constraints) -> list[Candidate]:
    """Every variant with a frame time on the target, with its figures and violations."""
    c = constraints
    frames: dict[str, list[Metric]] = {}
    for m in results.metrics:
        if m.name == c.frame_metric and m.variant and math.isfinite(m.value):
            frames.setdefault(m.variant, []).append(m)
    cands = []
    for variant, ms in sorted(frames.items()):
        frame = prefer_threads(ms)
        if frame is not None:
            cands.append(_candidate(results, variant, frame, c))
    return cands


def choose(results: Results, constraints: Constraints) -> Choice:
    """Rank every pairing with a frame time on the target; pure (no printing, no files)."""
    c = constraints
    cands = collect(results, c)
    if not cands:
        hint = "hemoedge bench web ART --results R" if c.target == "web" else \
            "hemoedge bench cpu ART --results R"
        raise ResultsError(f"choose: no {c.frame_metric} metrics in the results "
                           f"(expected per-pairing frame times; run `{hint}` first)")
    notes = []
    est_only = [x.variant for x in cands if x.hb_source == "est-only"]
    if est_only:
        notes.append("no acc.e2e.hb_mae_delta for " + ", ".join(est_only) +
                     ": used the estimator-only acc.hb_mae_delta (ground-truth crops), which "
                     "ignores detector error")
    other = [x for x in cands if x.threads not in (None, PREFERRED_THREADS)]
    if other:
        notes.append(f"no threads={PREFERRED_THREADS} frame time for " +
                     ", ".join(f"{x.variant} (used threads={x.threads})" for x in other))
    feasible = sorted((x for x in cands if x.feasible), key=_rank_key)
    rejected = sorted((x for x in cands if not x.feasible), key=_rank_key)
    if feasible:
        best = feasible[0]
        reasons = [f"fastest of {len(feasible)} pairing(s) meeting every constraint on "
                   f"target {c.target}: {_fmt(best.frame_ms, 'ms')} per frame (p50, "
                   f"threads={best.threads})",
                   f"Hb MAE delta {_fmt(best.hb_mae_delta, 'g/dL')} ({best.hb_source})"
                   + (f" <= {c.max_hb_mae_delta}" if c.max_hb_mae_delta is not None else ""),
                   f"size {_fmt(best.bytes, 'bytes')}"
                   + (f" <= {c.max_bytes / 1e6:.2f} MB" if c.max_bytes is not None else "")]
        return Choice(c, best, feasible[1:], rejected, reasons, [], notes)
    return Choice(c, None, [], rejected, _why_nothing(rejected, c), _binding(rejected), notes)


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
            x = min(near, key=lambda x: _value_of(x, flag))
            v = _value_of(x, flag)
            shown = f"{v:.0f}" if flag == "--max-bytes" else f"{v:.3f}"
            reasons.append(f"{flag} {_limit_of(c, flag)} binds: {flag} {shown} would admit "
                           f"{x.variant}")
        else:
            reasons.append(f"{flag} {_limit_of(c, flag)} is violated by every pairing")
    missing = [x.variant for x in rejected if x.hb_source == "missing"
               and "--max-hb-mae-delta" in x.violations]
    if missing:
        reasons.append("no Hb MAE delta measured for " + ", ".join(missing) +
                       " (run `hemoedge eval ART --results R`)")
    return reasons


# --- command line --------------------------------------------------------------------------

def cli(args) -> int:
    paths = args.results if isinstance(args.results, list) else [args.results]
    results = merge([Path(p) for p in paths])
    c = Constraints(target=args.target, max_frame_ms=args.max_frame_ms,
                    max_hb_mae_delta=args.max_hb_mae_delta,
                    max_bytes=getattr(args, "max_bytes", None))
    choice = choose(results, c)
    print(format_choice(choice))
    return 0 if choice.ok else 1


def format_choice(choice: Choice) -> str:
    c = choice.constraints
    lines = []
    limits = ", ".join(f"{k} {v}" for k, v in (("--max-frame-ms", c.max_frame_ms),
                                               ("--max-hb-mae-delta", c.max_hb_mae_delta),
                                               ("--max-bytes", c.max_bytes)) if v is not None)
    lines.append(f"target {c.target}; constraints: {limits or 'none'}")
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
            lines.append(f"  {x.variant}: violates {', '.join(x.violations)} "
                         f"({_fmt(x.frame_ms, 'ms')}, {_fmt(x.hb_mae_delta, 'g/dL')}, "
                         f"{_fmt(x.bytes, 'bytes')})")
    lines += [f"note: {n}" for n in choice.notes]
    return "\n".join(lines)
