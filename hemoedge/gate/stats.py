"""The gate's numbers: intervals of one metric, of a ratio (interval arithmetic or a
percentile bootstrap of raw samples), a verdict against a limit, and their formatting.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from hemoedge.gate.budgets import BOOTSTRAP_RESAMPLES, TIME_UNITS
from hemoedge.report.results import Metric

log = logging.getLogger(__name__)


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
