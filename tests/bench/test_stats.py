"""hemoedge.bench.stats: summaries, bootstrap interval, Results metrics, Timer."""

from __future__ import annotations

import numpy as np
import pytest

from hemoedge.bench.stats import Summary, Timer, summarize
from hemoedge.report.results import Results

TOL = 1e-9  # exact arithmetic on small integers


def test_percentiles_of_1_to_100_match_numpy_linear_interpolation():
    s = summarize(np.arange(1, 101))
    assert s.n == 100
    assert s.mean == pytest.approx(50.5, abs=TOL)
    assert s.p50 == pytest.approx(50.5, abs=TOL)
    assert s.p90 == pytest.approx(90.1, abs=TOL)
    assert s.p99 == pytest.approx(99.01, abs=TOL)


def test_ci95_brackets_the_median_and_is_deterministic_for_a_seed():
    x = np.random.default_rng(3).lognormal(0.0, 0.4, 300)
    a, b = summarize(x, seed=7), summarize(x, seed=7)
    assert a == b  # same samples + seed -> identical interval
    lo, hi = a.ci95
    assert lo <= a.p50 <= hi
    # the interval of a median of 300 lognormal(0, 0.4) samples is narrow: well under 20 %
    assert 0 < (hi - lo) / a.p50 < 0.2
    assert summarize(x, seed=8).ci95 != a.ci95  # the seed is really used


def test_constant_or_single_samples_collapse_the_interval():
    assert summarize([2.5]).ci95 == (2.5, 2.5)
    s = summarize([4.0] * 10)
    assert (s.n, s.p50, s.ci95) == (10, 4.0, (4.0, 4.0))


@pytest.mark.parametrize("bad, match", [([], "at least one sample"),
                                        ([1.0, float("nan")], "non-finite")])
def test_bad_samples_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        summarize(bad)


def test_add_to_appends_four_metrics_with_n_and_ci_on_p50():
    r = Results()
    s = summarize([1.0, 2.0, 3.0, 4.0, 10.0])
    added = s.add_to(r, "cpu.detector.latency_ms", "det=int8", threads=2)
    assert [m.name for m in added] == [f"cpu.detector.latency_ms.{k}"
                                       for k in ("mean", "p50", "p90", "p99")]
    assert all(m.variant == "det=int8" and m.unit == "ms" and m.better == "lower" and m.n == 5
               and m.params == {"threads": 2} for m in added)
    p50 = r.get("cpu.detector.latency_ms.p50", "det=int8", threads=2)
    assert p50.value == 3.0 and p50.ci95 == list(s.ci95)
    assert all(m.ci95 is None for m in added if not m.name.endswith(".p50"))
    r.to_dict()  # serialisable (finite values)


def test_scaled_converts_units():
    s = Summary(3, 2e6, 1e6, 3e6, 4e6, (0.5e6, 1.5e6)).scaled(1e-6)
    assert (s.mean, s.p50, s.p90, s.p99, s.ci95) == (2.0, 1.0, 3.0, 4.0, (0.5, 1.5))


def test_timer_context_collects_one_sample_per_block():
    t = Timer()
    for _ in range(3):
        with t:
            sum(range(100))
    assert len(t.samples_ns) == 3 and all(ns > 0 for ns in t.samples_ns)
    assert t.ms.shape == (3,) and np.all(t.ms == np.asarray(t.samples_ns) / 1e6)


def test_measure_runs_warmup_untimed_then_runs_timed():
    calls, steps = [], []
    ms = Timer.measure(lambda: calls.append(1), runs=7, warmup=3, on_step=lambda: steps.append(1))
    assert len(calls) == 10 and len(steps) == 10 and ms.shape == (7,) and np.all(ms >= 0)
    with pytest.raises(ValueError, match="runs >= 1"):
        Timer.measure(lambda: None, runs=0)
