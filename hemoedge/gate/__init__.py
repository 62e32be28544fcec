"""`hemoedge gate`: budgets (ci/budgets.toml) + results.json [+ ci/baseline.json] -> verdict.

Three budget kinds (see docs/gate.md for the file format):
  absolute  one metric against a fixed max/min;
  baseline  one metric not worse than the committed baseline by more than X (or X %);
  ratio     numerator metric / denominator metric from the same run against a max/min.

Noise: shared machines make single timings unreliable, so a breach is a "fail" only when the
whole 95 % interval of the compared figure lies beyond the threshold. The interval comes from
raw samples (params["samples"], bootstrap with scipy.stats) or from the metrics' ci95 (for a
ratio, conservative interval arithmetic [lo_a/hi_b, hi_a/lo_b]). A breach whose interval
straddles the threshold is "not significant"; a timing breach with no interval at all is also
"not significant". Figures without an interval that are not timings (bytes, accuracy) are
compared exactly.

Exit codes: 0 pass; 1 any failing budget; 2 bad input (malformed TOML, wrong schema, a metric
a budget names is missing, no baseline although a budget needs one).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.errors import ResultsError
from hemoedge.report.results import Metric, Results, merge

log = logging.getLogger(__name__)

KINDS = ("absolute", "baseline", "ratio")
SEVERITIES = ("fail", "warn")  # warn: reported, never fails the gate ("report only")
NOISE = ("auto", "exact", "interval")
VERDICTS = ("pass", "fail", "not significant", "missing", "skipped")
ANY_VARIANT = "*"
TIME_UNITS = ("ns", "us", "ms", "s")
MAX_NAMED = 4  # missing metrics named in the one-line error; the table lists all
BOOTSTRAP_RESAMPLES = 2000  # enough for a stable 95 % percentile interval of a median ratio
BUDGET_KEYS = {"name", "kind", "metric", "variant", "params", "max", "min", "max_worse",
               "max_worse_pct", "better", "severity", "when_present", "noise", "numerator",
               "denominator", "description"}
REF_KEYS = {"metric", "variant", "params"}


# --- budgets ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricRef:
    metric: str  # dotted metric name, e.g. "cpu.detector.latency_ms.p50"
    variant: str = ""  # exact variant string, or "*" for any variant
    params: tuple[tuple[str, Any], ...] = ()  # required params (subset match), e.g. threads=2

    def label(self) -> str:
        p = ",".join(f"{k}={v}" for k, v in self.params)
        return f"{self.metric} [{self.variant or '-'}]" + (f" ({p})" if p else "")

    def matches(self, m: Metric) -> bool:
        return (m.name == self.metric and (self.variant == ANY_VARIANT or m.variant == self.variant)
                and all(m.params.get(k) == v for k, v in self.params))


@dataclass(frozen=True)
class Budget:
    # identity
    name: str
    kind: str  # "absolute" | "baseline" | "ratio"
    ref: MetricRef  # the metric (absolute/baseline) or the numerator (ratio)
    denominator: MetricRef | None = None  # ratio only; from the same results
    # thresholds (exactly one of max/min for absolute and ratio)
    max: float | None = None
    min: float | None = None
    max_worse: float | None = None  # baseline: allowed worsening, metric units
    max_worse_pct: float | None = None  # baseline: allowed worsening, % of |baseline|
    better: str | None = None  # baseline: override the metric's own "better"
    # behaviour
    severity: str = "fail"  # "warn" reports but never fails (aspirational targets)
    when_present: bool = False  # skip (with a note) when the run has no such metric at all
    noise: str = "auto"  # "auto": intervals where present; "exact": point values only
    description: str = ""

    def __post_init__(self) -> None:
        where = f"budget {self.name!r}"
        if self.kind not in KINDS:
            raise ResultsError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ResultsError(f"{where}: severity must be one of {SEVERITIES}, "
                               f"got {self.severity!r}")
        if self.noise not in NOISE:
            raise ResultsError(f"{where}: noise must be one of {NOISE}, got {self.noise!r}")
        if self.kind == "baseline":
            if (self.max_worse is None) == (self.max_worse_pct is None):
                raise ResultsError(f"{where}: a baseline budget needs exactly one of "
                                   "max_worse (metric units) or max_worse_pct (%)")
            if self.max is not None or self.min is not None:
                raise ResultsError(f"{where}: a baseline budget takes max_worse/max_worse_pct, "
                                   "not max/min")
            if self.better not in (None, "lower", "higher"):
                raise ResultsError(f"{where}: better must be 'lower' or 'higher', "
                                   f"got {self.better!r}")
        else:
            if (self.max is None) == (self.min is None):
                raise ResultsError(f"{where}: an {self.kind} budget needs exactly one of "
                                   "max or min")
            if self.max_worse is not None or self.max_worse_pct is not None:
                raise ResultsError(f"{where}: max_worse/max_worse_pct belong to "
                                   "kind = 'baseline'")
        if self.kind != "absolute" and ANY_VARIANT in (
                r.variant for r in (self.ref, self.denominator) if r):
            raise ResultsError(f"{where}: variant = '*' (worst of any variant) is allowed "
                               "only in absolute budgets")
        if (self.kind == "ratio") != (self.denominator is not None):
            raise ResultsError(f"{where}: kind = 'ratio' needs numerator and denominator "
                               "tables (and only ratio budgets take them)")

    def refs(self) -> list[MetricRef]:
        return [self.ref] + ([self.denominator] if self.denominator else [])


def _ref(d: Any, where: str) -> MetricRef:
    if not isinstance(d, dict):
        raise ResultsError(f"{where}: expected a table with metric/variant/params, got {d!r}")
    unknown = set(d) - REF_KEYS
    if unknown:
        raise ResultsError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(REF_KEYS)}")
    if not isinstance(d.get("metric"), str) or not d["metric"]:
        raise ResultsError(f"{where}: 'metric' (a dotted metric name) is required")
    params = d.get("params", {})
    if not isinstance(params, dict) or not isinstance(d.get("variant", ""), str):
        raise ResultsError(f"{where}: variant must be a string and params a table")
    return MetricRef(d["metric"], d.get("variant", ""), tuple(sorted(params.items())))


def _num(d: dict, key: str, where: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ResultsError(f"{where}: {key} must be a finite number, got {v!r}")
    return float(v)


def parse_budgets(text: str, source: str = "budgets") -> list[Budget]:
    """Budgets from TOML text: a list of [[budget]] tables."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ResultsError(f"{source}: not valid TOML ({e})") from e
    unknown = set(doc) - {"schema", "budget"}
    if unknown:
        raise ResultsError(f"{source}: unknown top-level key(s) {sorted(unknown)}; expected "
                           "[[budget]] tables (and optionally schema)")
    raw = doc.get("budget")
    if not isinstance(raw, list) or not raw:
        raise ResultsError(f"{source}: expected at least one [[budget]] table")
    out, names = [], set()
    for i, b in enumerate(raw):
        where = f"{source}: budget #{i + 1}"
        name = b.get("name")
        if not isinstance(name, str) or not name:
            raise ResultsError(f"{where}: 'name' (a string) is required")
        where = f"{source}: budget {name!r}"
        if name in names:
            raise ResultsError(f"{where}: duplicate name")
        names.add(name)
        bad = set(b) - BUDGET_KEYS
        if bad:
            raise ResultsError(f"{where}: unknown key(s) {sorted(bad)}; valid: "
                               f"{sorted(BUDGET_KEYS)}")
        kind = b.get("kind", "absolute")
        if kind == "ratio":
            if "metric" in b:
                raise ResultsError(f"{where}: a ratio budget takes numerator/denominator "
                                   "tables, not metric")
            ref = _ref(b.get("numerator"), f"{where} numerator")
            den = _ref(b.get("denominator"), f"{where} denominator")
        else:
            ref = _ref({k: b[k] for k in REF_KEYS if k in b}, where)
            den = None
            if "numerator" in b or "denominator" in b:
                raise ResultsError(f"{where}: numerator/denominator need kind = 'ratio'")
        when_present = b.get("when_present", False)
        if not isinstance(when_present, bool):
            raise ResultsError(f"{where}: when_present must be true or false")
        out.append(Budget(name=name, kind=kind, ref=ref, denominator=den,
                          max=_num(b, "max", where), min=_num(b, "min", where),
                          max_worse=_num(b, "max_worse", where),
                          max_worse_pct=_num(b, "max_worse_pct", where),
                          better=b.get("better"), severity=b.get("severity", "fail"),
                          when_present=when_present, noise=b.get("noise", "auto"),
                          description=str(b.get("description", ""))))
    return out


def load_budgets(path: str | Path) -> list[Budget]:
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: no such budgets file (expected TOML with [[budget]] tables)")
    return parse_budgets(path.read_text(), str(path))


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


def fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    if not math.isfinite(v):
        return "inf" if v > 0 else "-inf" if v < 0 else "nan"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.3g}"
    return f"{v:.4g}"


def _iv(iv: tuple[float, float] | None) -> str:
    return f" [{fmt(iv[0])}, {fmt(iv[1])}]" if iv else ""


def _is_timing(m: Metric) -> bool:
    return m.unit in TIME_UNITS or "_ms" in m.name


def _interval(m: Metric, noise: str) -> tuple[tuple[float, float] | None, str]:
    """(interval, method) of one metric: its ci95, a point for exact figures, or None."""
    if noise != "exact" and m.ci95 and len(m.ci95) == 2 and all(
            v is not None and math.isfinite(v) for v in m.ci95):
        lo, hi = sorted(float(v) for v in m.ci95)
        return (min(lo, m.value), max(hi, m.value)), "ci95"
    if noise == "exact" or (noise == "auto" and not _is_timing(m)):
        return (m.value, m.value), "exact"
    return None, "no interval"


def ratio_interval(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """Conservative interval of a/b from intervals of a and b (positive quantities)."""
    lo_a, hi_a = a
    lo_b, hi_b = b
    lo = lo_a / hi_b if hi_b > 0 else -math.inf
    hi = hi_a / lo_b if lo_b > 0 else math.inf
    return lo, hi


def _stat_for(name: str):
    last = name.rsplit(".", 1)[-1]
    if last == "mean":
        return np.mean
    if last.startswith("p") and last[1:].isdigit():
        q = float(last[1:])
        return lambda x, axis=-1: np.percentile(x, q, axis=axis)
    return np.median


def bootstrap_ratio(a: list[float], b: list[float], name: str,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of stat(a)/stat(b), stat chosen by the metric name."""
    from scipy import stats

    f = _stat_for(name)

    def ratio(x, y, axis=-1):
        return f(x, axis=axis) / f(y, axis=axis)

    res = stats.bootstrap((np.asarray(a, float), np.asarray(b, float)), ratio, paired=False,
                          vectorized=True, n_resamples=resamples, confidence_level=0.95,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _judge(value: float, iv: tuple[float, float] | None, op: str, limit: float) -> str:
    ok = value <= limit if op == "<=" else value >= limit
    if ok:
        return "pass"
    if iv is None:
        return "not significant"
    beyond = iv[0] > limit if op == "<=" else iv[1] < limit
    return "fail" if beyond else "not significant"


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


def _evaluate_one(b: Budget, results: Results, baseline: Results | None) -> Check:
    _refuse_non_finite(b, results, "results")
    if b.kind == "baseline":
        _refuse_non_finite(b, baseline, "baseline")
    present_names = {m.name for m in results.metrics}
    op = "<=" if b.max is not None else ">="
    missing = [r for r in b.refs() if not _find(results, r, op)]
    if missing:
        if b.when_present and any(r.metric not in present_names for r in missing):
            return Check(b, "skipped", note="no " + ", ".join(
                sorted({r.metric for r in missing if r.metric not in present_names}))
                + " in this run (when_present)")
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


def evaluate(results: Results, budgets: list[Budget], baseline: Results | None) -> GateResult:
    """Judge every budget; pure. Missing metrics become verdict "missing" (the CLI exits 2)."""
    return GateResult([_evaluate_one(b, results, baseline) for b in budgets])


# --- outputs ------------------------------------------------------------------------------------

def _row(c: Check) -> dict[str, str]:
    b = c.budget
    verdict = c.verdict + (" (warn only)" if c.warned else "")
    if c.verdict in ("missing", "skipped"):
        value = "-"
    else:
        value = fmt(c.value) + (_iv(c.interval) if c.method != "exact" else "")
        if c.unit and c.unit != "x":
            value += f" {c.unit}"
    if b.kind == "ratio" and c.numerator is not None:
        value += f" = {fmt(c.numerator)} / {fmt(c.denominator)}"
    what = b.ref.label() + (f" / {b.denominator.label()}" if b.denominator else "")
    return {"budget": b.name, "kind": b.kind + (" (warn)" if b.severity == "warn" else ""),
            "metric": what, "value": value,
            "baseline": fmt(c.baseline) if c.baseline is not None else "-",
            "budget_limit": f"{c.op} {fmt(c.threshold)}" if c.threshold is not None else "-",
            "verdict": verdict, "method": c.method,
            "note": c.note or (c.describe() if c.verdict == "missing" else "")}


def _headline(res: GateResult) -> str:
    n = len(res.checks)
    counts = {v: sum(c.verdict == v for c in res.checks) for v in VERDICTS}
    state = "MISSING METRICS" if res.missing else "FAIL" if res.failures else "PASS"
    return (f"gate {state}: {n} budgets: {counts['pass']} pass, {len(res.failures)} fail, "
            f"{len(res.warnings)} warn-only fail, {counts['not significant']} not significant, "
            f"{counts['missing']} missing, {counts['skipped']} skipped")


def to_markdown(res: GateResult) -> str:
    cols = ("budget", "kind", "metric", "value", "baseline", "budget_limit", "verdict",
            "method", "note")
    head = ("Budget", "Kind", "Metric [variant]", "Value [95 % interval]", "Baseline", "Budget",
            "Verdict", "Method", "Note")
    lines = [f"## hemoedge {_headline(res)}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in res.checks:
        r = _row(c)
        cells = [r[k].replace("|", "\\|") for k in cols]
        if c.failed:
            cells[6] = f"**{cells[6]}**"
        lines.append("| " + " | ".join(cells) + " |")
    if res.failures:
        lines += ["", "### Failures", ""] + [f"- {c.describe()}" for c in res.failures]
    if res.warnings:
        lines += ["", "### Report-only (warn) budgets not met", ""] + \
            [f"- {c.describe()}" for c in res.warnings]
    if res.missing:
        lines += ["", "### Missing metrics (bad input)", ""] + \
            [f"- {c.describe()}" for c in res.missing]
    lines += ["", "A breach counts as a failure only when the whole 95 % interval lies beyond "
              "the budget; otherwise it is reported as *not significant*."]
    return "\n".join(lines) + "\n"


def write_junit(res: GateResult, path: str | Path) -> Path:
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

    suite = TestSuite("hemoedge.gate")
    for c in res.checks:
        r = _row(c)
        case = TestCase(c.budget.name, classname=f"gate.{c.budget.kind}")
        text = " | ".join(f"{k}: {v}" for k, v in r.items() if v and v != "-")
        if c.failed:
            case.result = [Failure(c.describe())]
        elif c.verdict == "missing":
            case.result = [Error(c.describe())]
        elif c.verdict == "skipped":
            case.result = [Skipped(c.note)]
        case.system_out = text
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xml.write(str(path), pretty=True)
    return path


def benchmark_entries(res: GateResult) -> dict[str, list[dict]]:
    """github-action-benchmark entries: {"smaller": [...], "bigger": [...]} of {name, unit, value}.
    Ratio budgets with a max are smaller-is-better; otherwise the metric's own `better` decides
    (falling back to the budget's direction)."""
    out: dict[str, list[dict]] = {"smaller": [], "bigger": []}
    seen = set()
    for c in res.checks:
        if c.value is None or c.verdict in ("missing", "skipped") or not math.isfinite(c.value):
            continue
        b = c.budget
        if b.kind == "ratio":
            den = b.denominator
            name = f"{b.ref.label()} / " + (den.label() if den.metric != b.ref.metric
                                             else f"[{den.variant or '-'}]")
            better = "smaller" if c.op == "<=" else "bigger"
        else:
            p = ",".join(f"{k}={v}" for k, v in b.ref.params)
            name = f"{b.ref.metric} [{b.ref.variant}]" + (f" {p}" if p else "")
            better = "smaller" if c.op == "<=" else "bigger"
            if b.better:
                better = "smaller" if b.better == "lower" else "bigger"
        if name in seen:
            continue
        seen.add(name)
        entry = {"name": name, "unit": c.unit or "", "value": c.value}
        if c.interval and all(math.isfinite(v) for v in c.interval) and c.method != "exact":
            entry["range"] = f"{fmt(c.interval[0])}..{fmt(c.interval[1])}"
        entry["extra"] = f"budget {c.op} {fmt(c.threshold)}: {c.verdict}"
        out[better].append(entry)
    return out


def write_benchmark_json(res: GateResult, path: str | Path) -> list[Path]:
    """Write `path` (customSmallerIsBetter) and `<stem>.bigger.json` (customBiggerIsBetter)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = benchmark_entries(res)
    bigger = path.with_name(path.stem + ".bigger" + (path.suffix or ".json"))
    path.write_text(json.dumps(entries["smaller"], indent=1) + "\n")
    bigger.write_text(json.dumps(entries["bigger"], indent=1) + "\n")
    return [path, bigger]


def print_table(res: GateResult) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    styles = {"pass": "green", "fail": "bold red", "not significant": "yellow",
              "missing": "bold magenta", "skipped": "dim"}
    t = Table(title="hemoedge gate", show_lines=False)
    for h in ("Budget", "Kind", "Metric [variant]", "Value [95 % interval]", "Baseline",
              "Budget", "Verdict", "Method / note"):
        t.add_column(h, overflow="fold")
    for c in res.checks:
        r = _row(c)
        style = "yellow" if c.warned else styles[c.verdict]
        note = "; ".join(x for x in (r["method"], r["note"]) if x)
        t.add_row(*(escape(r[k]) for k in ("budget", "kind", "metric", "value", "baseline",
                                           "budget_limit")),
                  f"[{style}]{escape(r['verdict'])}[/]", escape(note))
    console = Console(width=max(Console().width, 160))
    console.print(t)
    console.print(_headline(res))
    for c in res.failures:
        console.print(f"[bold red]FAIL[/] {escape(c.describe())}")
    for c in res.warnings:
        console.print(f"[yellow]WARN[/] {escape(c.describe())}")


# --- baseline --------------------------------------------------------------------------------

def _base_key(m: Metric) -> tuple:
    params = {k: v for k, v in m.params.items() if k != "samples"}
    return (m.name, m.variant, json.dumps(params, sort_keys=True))


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


# --- command line --------------------------------------------------------------------------

def _missing_message(res: GateResult, baseline_path: Path) -> str:
    from_base = [c for c in res.missing if c.missing_from == "baseline"]
    from_res = [c for c in res.missing if c.missing_from == "results"]
    parts = []
    if from_res:
        refs: dict[str, list[str]] = {}
        for c in from_res:
            refs.setdefault(c.missing_ref.label(), []).append(repr(c.budget.name))
        shown = [f"{ref} (budget {', '.join(names)})" for ref, names in refs.items()]
        more = f"; and {len(shown) - MAX_NAMED} more (see the table)" \
            if len(shown) > MAX_NAMED else ""
        parts.append("results lack metric(s) named by budgets: " + "; ".join(
            shown[:MAX_NAMED]) + more)
    if from_base:
        names = ", ".join(repr(c.budget.name) for c in from_base)
        if not baseline_path.is_file():
            parts.append(f"{baseline_path} not found but budget(s) {names} compare against it; "
                         "create it on purpose from a trusted run with `hemoedge gate "
                         f"RESULTS.json --update-baseline --baseline {baseline_path}`")
        else:
            parts.append(f"{baseline_path} lacks " + "; ".join(
                c.missing_ref.label() for c in from_base) + f" (budget(s) {names}); refresh it "
                "with `hemoedge gate RESULTS.json --update-baseline`")
    return "; ".join(parts)


def cli(args) -> int:
    paths = args.results if isinstance(args.results, list) else [args.results]
    results = merge([Path(p) for p in paths])
    baseline_path = Path(args.baseline)
    budgets_path = Path(args.budgets)

    if args.update_baseline:
        budgets = load_budgets(budgets_path) if budgets_path.is_file() else None
        existed = baseline_path.is_file()
        rows = update_baseline(results, budgets, baseline_path)
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        t = Table(title=escape(f"baseline diff ({baseline_path})"))
        for h in ("metric [variant] (params)", "old", "new"):
            t.add_column(h, overflow="fold")
        for r in rows:
            t.add_row(*(escape(x) for x in r))
        console = Console(width=max(Console().width, 140))
        console.print(t)
        verb = "updated" if existed else "created"
        console.print(escape(f"{verb} {baseline_path}: {len(rows)} metric(s) changed; commit "
                             "it on purpose"))
        return 0

    budgets = load_budgets(budgets_path)
    baseline = Results.load(baseline_path) if baseline_path.is_file() else None
    res = evaluate(results, budgets, baseline)
    print_table(res)
    md = to_markdown(res)
    if args.md:
        md_path = Path(args.md)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        # $GITHUB_STEP_SUMMARY is shared by a job's steps: append there, overwrite elsewhere
        mode = "a" if str(md_path) == os.environ.get("GITHUB_STEP_SUMMARY") else "w"
        with md_path.open(mode, encoding="utf-8") as f:
            f.write(md)
        print(f"markdown summary: {md_path}")
    if args.junit:
        print(f"junit xml: {write_junit(res, args.junit)}")
    if args.benchmark_json:
        written = write_benchmark_json(res, args.benchmark_json)
        print("github-action-benchmark json: " + ", ".join(str(p) for p in written))
    if res.missing:
        raise ResultsError(_missing_message(res, baseline_path))
    return res.exit_code
