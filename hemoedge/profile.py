"""The quick (CI) and full profiles, defined once: `hemoedge run`, `hemoedge sweep` and
`hemoedge bench cpu --quick` read their sizes here (the stage configs `run` and `sweep` pass to
the stages are built by the methods below). The CI workflow (.github/workflows/edge.yml)
repeats the quick run's commands literally, one job per stage; tests/test_workflow.py keeps
them equal to `hemoedge.pipeline_run.stages(RunConfig(quick=True))`, which reads QUICK.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Profile:
    name: str
    patients: int  # `hemoedge run`'s synthetic set
    sessions: int
    sweep_patients: int  # `hemoedge sweep`'s synthetic set
    sweep_sessions: int
    calib_samples: int  # quantize --samples
    est_calib_samples: int | None  # quantize --est-samples (None: quantize's default)
    val_samples: int | None  # quantize --val-samples (None: quantize's default)
    max_steps: int | None  # quantize --max-steps (None: quantize's default)
    max_trials: int | None  # quantize --max-trials (None: quantize's default)
    parity_images: int  # parity --images
    web_parity_images: int  # parity --web --images
    epochs: int  # sweep: backbone fine-tuning epochs
    bench_warmup: int | None  # bench cpu warm-up runs (None: the command's --warmup)
    bench_runs: int | None  # bench cpu timed runs (None: the command's --runs)
    cold_starts: int  # bench cpu fresh sessions timed

    def quantize_config(self, art: Path, data: Path | None, **kw: Any):
        """The QuantizeConfig of `hemoedge run` / `sweep` (calibration and search sizes)."""
        from hemoedge.quantize.run import QuantizeConfig
        from hemoedge.quantize.sensitivity import SearchConfig

        if self.val_samples is not None:
            kw["val_samples"] = self.val_samples
        if self.est_calib_samples is not None:
            kw["est_samples"] = self.est_calib_samples
        search = {k: v for k, v in (("max_steps", self.max_steps),
                                    ("max_trials", self.max_trials)) if v is not None}
        if search:
            kw["search"] = SearchConfig(**search)
        return QuantizeConfig(art=art, data=data, samples=self.calib_samples, **kw)

    def cpu_bench_config(self, art: Path | None, data: Path | None, **kw: Any):
        """The CpuBenchConfig of this profile (`hemoedge bench cpu [--quick]`)."""
        from hemoedge.bench.cpu import CpuBenchConfig

        if self.bench_warmup is not None:
            kw["warmup"] = self.bench_warmup
        if self.bench_runs is not None:
            kw["runs"] = self.bench_runs
        return CpuBenchConfig(art=art, data=data, cold_starts=self.cold_starts,
                              progress=sys.stderr.isatty(), **kw)

    def web_bench_config(self, art: Path, **kw: Any):
        """The WebBenchConfig of this profile (quick: its quick form, `--quick`)."""
        from hemoedge.bench.web import WebBenchConfig

        return WebBenchConfig.quick_form(art=art, **kw) if self.name == "quick" \
            else WebBenchConfig(art=art, **kw)


QUICK = Profile("quick", patients=60, sessions=12, sweep_patients=60, sweep_sessions=12,
                calib_samples=48, est_calib_samples=96, val_samples=8, max_steps=2, max_trials=16,
                parity_images=6, web_parity_images=4, epochs=1, bench_warmup=3, bench_runs=20, cold_starts=2)
FULL = Profile("full", patients=250, sessions=20, sweep_patients=800, sweep_sessions=40,
               calib_samples=64, est_calib_samples=None, val_samples=None, max_steps=None,
               max_trials=None, parity_images=16, web_parity_images=16, epochs=5,
               bench_warmup=None, bench_runs=None, cold_starts=5)


def profile(quick: bool) -> Profile:
    return QUICK if quick else FULL
