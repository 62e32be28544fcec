"""Timing statistics shared by every benchmark (CPU, web, the CI gate).

The whole API is three names; keep it small and stable:

    summarize(samples, seed=0, n_boot=2000) -> Summary
        n, mean, p50, p90, p99 and the bootstrap 95 % interval of the median (ci95).
    Summary.add_to(results, prefix, variant, unit="ms", **params)
        appends <prefix>.mean / .p50 / .p90 / .p99 to a Results (better="lower"; every
        metric carries n; the p50 carries ci95).
    Timer
        perf_counter_ns stopwatch: `with timer: work()` appends one sample;
        `Timer.measure(fn, runs, warmup)` does warm-up then `runs` timed calls.

Method (docs/bench-cpu.md): percentiles are numpy's linear interpolation; the
interval is scipy.stats.bootstrap's percentile interval of the median, seeded, so the same
samples always give the same interval. Percentile rather than BCa because BCa's jackknife
acceleration is undefined (NaN) when many samples tie, which timer quantisation makes common.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Summary:
    """Summary statistics of one sample, in the samples' own unit."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    ci95: tuple[float, float]  # bootstrap 95 % interval of the median (p50)

    def add_to(self, results: Any, prefix: str, variant: str, unit: str = "ms",
               **params: Any) -> list[Any]:
        """Append `<prefix>.mean/.p50/.p90/.p99` (better="lower", n, ci95 on p50) to a
        hemoedge.report.results.Results; `params` (e.g. threads=2) go on every metric.
        Returns the metrics added."""
        out = []
        for stat in ("mean", "p50", "p90", "p99"):
            ci = list(self.ci95) if stat == "p50" else None
            out.append(results.add(f"{prefix}.{stat}", variant, getattr(self, stat), unit=unit,
                                   better="lower", n=self.n, ci95=ci, **params))
        return out

    def scaled(self, factor: float) -> Summary:
        """The same summary in another unit (e.g. factor=1e-6 for ns -> ms)."""
        return Summary(self.n, self.mean * factor, self.p50 * factor, self.p90 * factor,
                       self.p99 * factor, (self.ci95[0] * factor, self.ci95[1] * factor))


def summarize(samples: Iterable[float], seed: int = 0, n_boot: int = 2000) -> Summary:
    """n, mean, p50, p90, p99 and the seeded bootstrap 95 % interval of the median.

    `samples` is any 1-d sequence of finite numbers (e.g. per-run milliseconds). With fewer
    than 2 distinct values the interval collapses to the median itself.
    """
    x = np.asarray(list(samples) if not isinstance(samples, np.ndarray) else samples,
                   dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("summarize() needs at least one sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("summarize() got a non-finite sample (NaN or inf)")
    p50, p90, p99 = (float(v) for v in np.percentile(x, [50, 90, 99]))
    if np.ptp(x) == 0:
        ci = (p50, p50)
    else:
        from scipy.stats import bootstrap

        res = bootstrap((x,), np.median, n_resamples=n_boot, confidence_level=0.95,
                        method="percentile", vectorized=True, axis=-1,
                        rng=np.random.default_rng(seed))
        ci = (float(res.confidence_interval.low), float(res.confidence_interval.high))
    return Summary(int(x.size), float(x.mean()), p50, p90, p99, ci)


@dataclass
class Timer:
    """A perf_counter_ns stopwatch collecting one sample per `with` block.

        t = Timer()
        with t:
            session.run(None, feeds)
        t.ms  # numpy array of samples in milliseconds
    """

    samples_ns: list[int] = field(default_factory=list)
    _t0: int = 0

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples_ns.append(time.perf_counter_ns() - self._t0)

    @property
    def ms(self) -> np.ndarray:
        return np.asarray(self.samples_ns, dtype=np.float64) / NS_PER_MS

    @staticmethod
    def measure(fn: Callable[[], Any], runs: int, warmup: int = 0,
                on_step: Callable[[], Any] | None = None) -> np.ndarray:
        """Call fn() `warmup` times untimed, then `runs` times timed; per-call ms.
        `on_step` (e.g. a progress bar's advance) is called after every call, untimed."""
        if runs < 1 or warmup < 0:
            raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
        for _ in range(warmup):
            fn()
            if on_step:
                on_step()
        t = Timer()
        for _ in range(runs):
            with t:
                fn()
            if on_step:
                on_step()
        return t.ms
