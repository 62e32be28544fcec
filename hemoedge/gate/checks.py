"""Judging budgets against results (and a baseline): one Check per budget, a GateResult.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from hemoedge.errors import ResultsError
from hemoedge.gate.budgets import ANY_VARIANT, DESKTOP, Budget, MetricRef, device_class_of
from hemoedge.gate.stats import _interval, _iv, _judge, bootstrap_ratio, fmt, ratio_interval
from hemoedge.report.results import Metric, Results

log = logging.getLogger(__name__)


# --- checks -----------------------------------------------------------------------------------

@dataclass
class Check:
    budget: Budget
    verdict: str  # one of VERDICTS
    value: float | None = None  # the compared figure (a ratio for ratio budgets)
    interval: tuple[float, float] | None = None  # 95 % interval of the figure
    op: str = ""  # "<=" or ">=": what passing means
    threshold: float | None = None  # the limit actually used
    baseline: float | None = None  # baseline value (baseline budgets)
    numerator: float | None = None  # ratio budgets: the two measured figures
    denominator: float | None = None
    unit: str = ""
    method: str = ""  # "exact", "ci95", "ci95 interval arithmetic", "bootstrap n=..", ...
    note: str = ""
    missing_from: str = ""  # "results" or "baseline" when verdict == "missing"
    missing_ref: MetricRef | None = None

    @property
    def failed(self) -> bool:
        return self.verdict == "fail" and self.budget.severity == "fail"

    @property
    def warned(self) -> bool:
        return self.verdict == "fail" and self.budget.severity == "warn"

    def describe(self) -> str:
        b = self.budget
        if self.verdict == "missing":
            return (f"{b.name}: {self.missing_ref.label() if self.missing_ref else b.ref.label()}"
                    f" missing from the {self.missing_from}")
        if self.verdict == "skipped":
            return f"{b.name}: skipped ({self.note})"
        iv = _iv(self.interval) if self.method != "exact" else ""
        return (f"{b.name}: {fmt(self.value)}{iv} {self.unit} "
                f"{'violates' if self.verdict == 'fail' else 'vs'} {self.op} "
                f"{fmt(self.threshold)} [{self.method}]").replace("  ", " ")


@dataclass
class GateResult:
    checks: list[Check]
    failures: list[Check] = field(default_factory=list)  # failing "fail"-severity budgets
    warnings: list[Check] = field(default_factory=list)  # failing "warn" budgets (report only)
    missing: list[Check] = field(default_factory=list)  # metrics named by budgets but absent

    def __post_init__(self) -> None:
        self.failures = [c for c in self.checks if c.failed]
        self.warnings = [c for c in self.checks if c.warned]
        self.missing = [c for c in self.checks if c.verdict == "missing"]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.missing

    @property
    def exit_code(self) -> int:
        return 2 if self.missing else (1 if self.failures else 0)


def _find(results: Results, ref: MetricRef, op: str = "<=") -> list[Metric]:
    found = [m for m in results.metrics if ref.matches(m) and math.isfinite(m.value)]
    if ref.variant == ANY_VARIANT and found:
        # "*": every variant must meet the budget, so judge the worst one
        worst = max if op == "<=" else min
        return [worst(found, key=lambda m: m.value)]
    return found[-1:]


def _refuse_non_finite(b: Budget, results: Results | None, where: str) -> None:
    """A figure a budget judges that is NaN or infinite (written as null) is bad input, never a
    pass and never silently skipped: ResultsError (exit 2) naming the metric and budget."""
    for ref in b.refs():
        for m in (results.metrics if results is not None else []):
            if ref.matches(m) and not math.isfinite(m.value):
                raise ResultsError(f"budget {b.name!r}: {m.name} [{m.variant or '-'}] in the "
                                   f"{where} is {fmt(m.value)} (not a finite number); a "
                                   "non-finite figure is never a pass: fix the stage that "
                                   "wrote it")


def _evaluate_one(b: Budget, results: Results, baseline: Results | None,
                  no_baseline: str = "") -> Check:
    _refuse_non_finite(b, results, "results")
    if b.kind == "baseline":
        _refuse_non_finite(b, baseline, "baseline")
    op = "<=" if b.max is not None else ">="
    missing = [r for r in b.refs() if not _find(results, r, op)]
    if missing:
        # when_present skips a budget whose metric the run did not measure at all *for that
        # device class* (a CPU-only run, or no emulated phone pass); figures of that name for
        # other variants of the same class still make it an error (a lost shard)
        present = {(m.name, device_class_of(m), str(m.params.get("device") or ""))
                   for m in results.metrics}
        absent = [r for r in missing if (r.metric, r.device_class, r.device) not in present]
        if b.when_present and absent:
            return Check(b, "skipped", note="no " + ", ".join(sorted(
                {r.metric + ("" if r.device_class == DESKTOP else f" for {r.device_class}")
                 + (f" from device {r.device}" if r.device else "")
                 for r in absent})) + " in this run (when_present)")
        return Check(b, "missing", missing_from="results", missing_ref=missing[0])
    m = _find(results, b.ref, op)[0]

    if b.kind == "ratio":
        d = _find(results, b.denominator, op)[0]
        limit = b.max if b.max is not None else b.min
        value = m.value / d.value if d.value else math.inf
        sa, sb = m.params.get("samples"), d.params.get("samples")
        if b.noise != "exact" and isinstance(sa, list) and isinstance(sb, list) \
                and len(sa) > 1 and len(sb) > 1:
            iv, method = bootstrap_ratio(sa, sb, m.name), f"bootstrap n={len(sa)}/{len(sb)}"
        else:
            ia, ma = _interval(m, b.noise)
            ib, mb = _interval(d, b.noise)
            if ia is None or ib is None:
                iv, method = None, "no interval"
            else:
                iv = ratio_interval(ia, ib)
                method = "exact" if ma == mb == "exact" else "ci95 interval arithmetic"
        return Check(b, _judge(value, iv, op, limit), value, iv, op, limit,
                     numerator=m.value, denominator=d.value, unit="x", method=method,
                     note=f"{m.variant or '-'} / {d.variant or '-'}")

    iv, method = _interval(m, b.noise)
    if b.kind == "absolute":
        limit = b.max if b.max is not None else b.min
        return Check(b, _judge(m.value, iv, op, limit), m.value, iv, op, limit,
                     unit=m.unit, method=method)

    # baseline
    better = b.better or m.better
    if better not in ("lower", "higher"):
        raise ResultsError(f"budget {b.name!r}: {b.ref.label()} has better={m.better!r}; set "
                           "better = 'lower' or 'higher' in the budget")
    base = _find(baseline, b.ref, op="<=" if better == "lower" else ">=") if baseline else []
    if baseline is None and no_baseline:  # not judged, with the note saying why
        return Check(b, "skipped", unit=m.unit, note=no_baseline)
    if not base:
        return Check(b, "missing", value=m.value, unit=m.unit, missing_from="baseline",
                     missing_ref=b.ref)
    bv = base[0].value
    allowed = b.max_worse if b.max_worse is not None else abs(bv) * b.max_worse_pct / 100
    op = "<=" if better == "lower" else ">="
    limit = bv + allowed if better == "lower" else bv - allowed
    allowed_txt = fmt(b.max_worse) if b.max_worse is not None else f"{fmt(b.max_worse_pct)} %"
    return Check(b, _judge(m.value, iv, op, limit), m.value, iv, op, limit, baseline=bv,
                 unit=m.unit, method=method,
                 note=f"baseline {fmt(bv)}, {allowed_txt} worse ({better} is better) allowed")


def evaluate(results: Results, budgets: list[Budget], baseline: Results | None,
             no_baseline: str = "") -> GateResult:
    """Judge every budget; pure. Missing metrics become verdict "missing" (the CLI exits 2).
    Without a baseline, baseline budgets are "missing" too, or, given `no_baseline` (the reason),
    "skipped" with it as their note: not judged, and no failure."""
    return GateResult([_evaluate_one(b, results, baseline, no_baseline) for b in budgets])
