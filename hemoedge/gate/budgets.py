"""The gate's budgets: the budgets.toml format (docs/gate.md), parsed and checked. The suite's
own budgets ship in the package (PACKAGED_BUDGETS): the default wherever hemoedge is installed.
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemoedge.errors import ResultsError
from hemoedge.names import DESKTOP, figure_device_class
from hemoedge.report.results import Metric

log = logging.getLogger(__name__)

PACKAGED_BUDGETS = Path(__file__).with_name("budgets.toml")  # package data (pyproject.toml)

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
               "denominator", "description", "device_class", "device"}
REF_KEYS = {"metric", "variant", "params", "device_class", "device"}


# --- budgets ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricRef:
    metric: str  # dotted metric name, e.g. "cpu.detector.latency_ms.p50"
    variant: str = ""  # exact variant string, or "*" for any variant
    params: tuple[tuple[str, Any], ...] = ()  # required params (subset match), e.g. threads=2
    # the device class the figure was measured for: bench web's emulated figures carry
    # params.device_class (e.g. "mid-range-phone"); figures without one are "desktop". A budget
    # judges only figures of its own class, so a desktop budget never reads a phone's figure.
    device_class: str = DESKTOP
    # the named device a figure came from (bench web --connect/--devices records params.device);
    # "" = this machine. A budget without one never reads a remote device's figure.
    device: str = ""

    def label(self) -> str:
        p = ",".join(f"{k}={v}" for k, v in self.params)
        if self.device_class != DESKTOP:
            p = ",".join(x for x in (f"device_class={self.device_class}", p) if x)
        if self.device:
            p = ",".join(x for x in (f"device={self.device}", p) if x)
        return f"{self.metric} [{self.variant or '-'}]" + (f" ({p})" if p else "")

    def matches(self, m: Metric) -> bool:
        return (m.name == self.metric and (self.variant == ANY_VARIANT or m.variant == self.variant)
                and device_class_of(m) == self.device_class
                and str(m.params.get("device") or "") == self.device
                and all(m.params.get(k) == v for k, v in self.params))


def device_class_of(m: Metric) -> str:
    """The device class a figure was measured for (no device_class param: desktop)."""
    return figure_device_class(m.params)


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
    for k in ("device_class", "device"):
        if k in params:
            raise ResultsError(f"{where}: give {k} = \"...\" next to metric, not inside params")
    device = d.get("device", "")
    if not isinstance(device, str):
        raise ResultsError(f"{where}: device must be a string (a name given to bench web "
                           f"--connect/--devices), got {device!r}")
    cls = d.get("device_class", DESKTOP)
    if not isinstance(cls, str) or not cls:
        raise ResultsError(f"{where}: device_class must be a non-empty string (e.g. "
                           f"\"{DESKTOP}\" or \"mid-range-phone\"), got {cls!r}")
    return MetricRef(d["metric"], d.get("variant", ""), tuple(sorted(params.items())), cls,
                     device)


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
