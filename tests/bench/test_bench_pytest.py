"""The CPU benchmark as pytest-benchmark tests (marker `slow`), on a real artifact.

    pytest -m slow tests/bench/test_bench_pytest.py --benchmark-json out.json
    pytest -m slow tests/bench/test_bench_pytest.py --benchmark-autosave
    pytest -m slow tests/bench/test_bench_pytest.py --benchmark-compare \
        --benchmark-compare-fail=median:10%

Environment: HEMOEDGE_ART (artifact folder, default runs/art-dev at the repo root; the tests
skip with the reason when it is absent), HEMOEDGE_DATA (Yakimov-layout folder for real
frames; default: 8 synthesised patients), HEMOEDGE_BENCH_RUNS / HEMOEDGE_BENCH_WARMUP
(default 200 / 20). Sessions are built exactly as `hemoedge bench cpu` builds them
(hemoedge.bench.cpu.session: ORT_ENABLE_ALL, sequential, inter-op 1), and each test's
extra_info carries the hemoedge metric name, variant, threads and the bootstrap 95 %
interval of the median, so the JSON can be read next to results.json.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from hemoedge.artifact import ROLES, Artifact
from hemoedge.bench import cpu
from hemoedge.bench.stats import summarize
from hemoedge.report.results import variant_name

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ART = Path(os.environ.get("HEMOEDGE_ART", REPO / "runs" / "art-dev"))
RUNS = int(os.environ.get("HEMOEDGE_BENCH_RUNS", "200"))
WARMUP = int(os.environ.get("HEMOEDGE_BENCH_WARMUP", "20"))
THREADS = (1, 2)


def _artifact() -> Artifact | None:
    try:
        return Artifact.load(ART) if (ART / "manifest.json").is_file() else None
    except Exception:  # a half-written manifest: skip rather than break collection
        return None


_ART = _artifact()
_SKIP = pytest.mark.skip(reason=f"no artifact at {ART} (set HEMOEDGE_ART to an artifact folder)")


def _models() -> list:
    if _ART is None:
        return [pytest.param(None, None, 1, marks=_SKIP, id="no-artifact")]
    return [pytest.param(role, p, t, id=f"{role}-{p}-t{t}")
            for role in ROLES for p in _ART.precisions(role) for t in THREADS]


def _pairings() -> list:
    if _ART is None:
        return [pytest.param(None, None, 1, marks=_SKIP, id="no-artifact")]
    return [pytest.param(d, e, t, id=f"det={d},est={e}-t{t}")
            for d in _ART.precisions("detector") for e in _ART.precisions("estimator")
            for t in THREADS]


@pytest.fixture(scope="module")
def frames() -> cpu.Frames:
    data = os.environ.get("HEMOEDGE_DATA")
    return cpu.load_frames(Path(data) if data else None, 8, seed=0)


@pytest.fixture(scope="module")
def real_inputs(frames) -> dict[str, list[np.ndarray]]:
    return cpu._model_inputs(_ART, frames)


def _annotate(benchmark, metric: str, variant: str, threads: int, **extra) -> None:
    """extra_info for the JSON; call after the run (the group is set before it)."""
    benchmark.extra_info.update(metric=metric, variant=variant, threads=threads, **extra)
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    if stats is not None and getattr(stats, "stats", None) is not None:
        s = summarize(np.asarray(stats.stats.data) * 1e3)
        benchmark.extra_info.update(p50_ms=s.p50, ci95_median_ms=list(s.ci95), p99_ms=s.p99)


@pytest.mark.parametrize("role, precision, threads", _models())
def test_latency(benchmark, real_inputs, role, precision, threads):
    path = _ART.path(role, precision)
    sess = cpu.session(path, threads)
    feeds = cpu._real_feeds(sess, real_inputs.get(role, [])) or [
        cpu.random_feeds(sess, np.random.default_rng(0))]
    nxt = itertools.cycle(feeds).__next__
    benchmark.group = f"cpu.{role}.latency_ms"  # read when the stats are created: set it first
    benchmark.pedantic(lambda: sess.run(None, nxt()), rounds=RUNS, warmup_rounds=WARMUP)
    _annotate(benchmark, f"cpu.{role}.latency_ms", variant_name(**{cpu.SHORT[role]: precision}),
              threads, gflop=cpu.count_flops(path).gflop)


@pytest.mark.parametrize("role, precision, threads", _models())
def test_cold_start(benchmark, role, precision, threads):
    path = _ART.path(role, precision)
    feeds = cpu.random_feeds(cpu.session(path, 1), np.random.default_rng(0))
    benchmark.group = f"cpu.{role}.cold_start_ms"
    benchmark.pedantic(lambda: cpu.session(path, threads).run(None, feeds), rounds=5,
                       warmup_rounds=1)
    _annotate(benchmark, f"cpu.{role}.cold_start_ms",
              variant_name(**{cpu.SHORT[role]: precision}), threads)


@pytest.mark.parametrize("det, est, threads", _pairings())
def test_frame(benchmark, frames, det, est, threads):
    fp = cpu.FramePath(_ART, det, est, threads)
    fallbacks = [b or cpu._centre(im) for im, b in zip(frames.images, frames.nails, strict=True)]
    nxt = itertools.cycle(list(zip(frames.images, fallbacks, strict=True))).__next__
    benchmark.group = "cpu.frame_ms"
    benchmark.pedantic(lambda: fp(*nxt()), rounds=RUNS, warmup_rounds=WARMUP)
    _annotate(benchmark, "cpu.frame_ms", variant_name(det, est), threads)
