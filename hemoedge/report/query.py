"""Metric and variant lookups over a Results: which figure belongs to which variant.

A variant string is read as opaque key=value pairs (hemoedge.names.parse_variant): a
model-level figure (size.detector.bytes under "det=int8") belongs to every pairing whose pairs
include the model variant's pairs; when several match, the most specific wins. Also the
sweep's facts in results.env["sweep"] and the task (regression / classification) of a variant.
Used by the report's sections, the sweep view and `hemoedge choose`; nothing here renders.
"""

from __future__ import annotations

import math

from hemoedge.names import parse_variant
from hemoedge.report.results import Metric, Results

PREFERRED_THREADS = 2  # the deployment setting on 2-core phones/laptops (docs/bench-web.md)

TASKS = ("regression", "classification")
BACKBONE = "backbone"  # the variant key naming a sweep entry ("backbone=resnet18:cls")
HB_PREFIXES = ("acc.e2e.hb_", "acc.hb_")
CLS_PREFIXES = ("acc.e2e.cls.", "acc.cls.")

__all__ = ["BACKBONE", "CLS_PREFIXES", "HB_PREFIXES", "PREFERRED_THREADS", "TASKS", "ci95",
           "covers", "exact_pairs", "has_metric", "lookup", "parse_variant", "prefer_threads",
           "sweep_entries", "sweep_info", "task_of"]


# --- variant strings ---------------------------------------------------------------------

def covers(sub: str, full: str) -> bool:
    """True when every key=value pair of `sub` is in `full`: "det=int8" covers
    "det=int8,est=fp32"."""
    return parse_variant(sub).items() <= parse_variant(full).items()


# --- one metric ----------------------------------------------------------------------------

def ci95(m: Metric) -> list[float] | None:
    """The metric's ci95 as two finite floats, or None (null bounds are written for inf/nan)."""
    ci = m.ci95
    if not ci or len(ci) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                         for v in ci):
        return None
    return sorted(float(v) for v in ci)


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


def exact_pairs(results: Results, name: str, pairs: dict[str, str],
                threads: int | None = None) -> Metric | None:
    """The metric whose variant is exactly the key=value set `pairs` (any key order)."""
    pool = [m for m in results.metrics if m.name == name and math.isfinite(m.value)
            and m.variant and parse_variant(m.variant) == pairs]
    if threads is None:
        return pool[-1] if pool else None
    return prefer_threads(pool, threads)


# --- backbone sweeps -----------------------------------------------------------------------

def sweep_info(results: Results) -> dict:
    """results.env["sweep"] ({} without a sweep)."""
    info = results.env.get("sweep")
    return info if isinstance(info, dict) else {}


def sweep_entries(results: Results) -> dict[str, dict]:
    """label -> entry of results.env["sweep"]["entries"], in the file's order."""
    out: dict[str, dict] = {}
    for e in sweep_info(results).get("entries") or []:
        if isinstance(e, dict) and e.get("label"):
            out[str(e["label"])] = e
    return out


def has_metric(results: Results, prefixes: tuple[str, ...], variant: str) -> bool:
    """Some finite metric named with one of `prefixes` belongs to `variant` (same backbone)."""
    want = parse_variant(variant).get(BACKBONE)
    return any(m.name.startswith(prefixes) and m.variant and math.isfinite(m.value)
               and covers(m.variant, variant) and parse_variant(m.variant).get(BACKBONE) == want
               for m in results.metrics)


def task_of(results: Results, variant: str, entries: dict[str, dict] | None = None) -> str:
    """The sweep entry's task for the variant's backbone label; without one, "classification"
    when the variant has acc.(e2e.)cls.* metrics and no Hb metrics, else "regression"."""
    entries = sweep_entries(results) if entries is None else entries
    entry = entries.get(parse_variant(variant).get(BACKBONE) or "")
    if entry is not None and entry.get("task") in TASKS:
        return entry["task"]
    if has_metric(results, CLS_PREFIXES, variant) and \
            not has_metric(results, HB_PREFIXES, variant):
        return "classification"
    return "regression"
