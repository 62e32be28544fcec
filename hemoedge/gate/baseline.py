"""The baseline: a results file made from a trusted run (ci/baseline.json in a checkout,
committed on purpose), diffed, updated. It is a measurement, not configuration, so it does not
ship with the package: without --baseline the gate reads DEFAULT_BASELINE when the working
directory has one, and otherwise judges the baseline budgets not at all (NO_BASELINE).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hemoedge.errors import ResultsError
from hemoedge.gate.budgets import Budget
from hemoedge.gate.checks import _find
from hemoedge.gate.stats import fmt
from hemoedge.report.results import Metric, Results, identity

log = logging.getLogger(__name__)

DEFAULT_BASELINE = Path("ci/baseline.json")  # relative to the working directory
NO_BASELINE = "no baseline: pass --baseline FILE, or --update-baseline to make one"

# --- baseline --------------------------------------------------------------------------------

_base_key = identity  # a baseline figure is matched the way a re-run replaces one


def make_baseline(results: Results) -> Results:
    """The baseline is a results file; raw samples are dropped to keep it small."""
    out = Results(env=dict(results.env), variants=dict(results.variants),
                  commands=list(results.commands))
    latest: dict[tuple, Metric] = {}
    for m in results.metrics:
        latest[_base_key(m)] = m
    for m in latest.values():
        params = {k: v for k, v in m.params.items() if k != "samples"}
        out.metrics.append(Metric(m.name, m.variant, m.value, m.unit, m.better, m.n,
                                  m.ci95, params))
    return out


def baseline_diff(old: Results | None, new: Results) -> list[tuple[str, str, str]]:
    """(metric key, old, new) for every added, removed or changed metric."""
    o = {_base_key(m): m.value for m in (old.metrics if old else [])}
    n = {_base_key(m): m.value for m in new.metrics}
    rows = []
    for k in sorted(set(o) | set(n)):
        if o.get(k) == n.get(k):
            continue
        params = json.loads(k[2])
        label = f"{k[0]} [{k[1] or '-'}]" + (
            " (" + ",".join(f"{a}={b}" for a, b in params.items()) + ")" if params else "")
        rows.append((label, fmt(o[k]) if k in o else "(absent)",
                     fmt(n[k]) if k in n else "(removed)"))
    return rows


def update_baseline(results: Results, budgets: list[Budget] | None, path: str | Path) -> list:
    path = Path(path)
    if budgets:
        present = {m.name for m in results.metrics}
        for b in budgets:
            if b.kind != "baseline" or (b.when_present and b.ref.metric not in present):
                continue
            if not _find(results, b.ref):
                raise ResultsError(f"refusing to write {path}: baseline budget {b.name!r} names "
                                   f"{b.ref.label()}, which these results lack")
    old = Results.load(path) if path.is_file() else None
    new = make_baseline(results)
    rows = baseline_diff(old, new)
    new.save(path)
    return rows
