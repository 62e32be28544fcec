"""The quick and full profiles, defined once in hemoedge.profile and read by run, sweep and
bench cpu (the workflow's literal copy is checked in tests/test_workflow.py)."""

from pathlib import Path

from hemoedge.pipeline_run import RunConfig, stages
from hemoedge.profile import FULL, QUICK, profile
from hemoedge.sweep import SweepConfig


def test_profiles():
    assert profile(True) is QUICK and profile(False) is FULL
    q = QUICK.quantize_config(Path("a"), Path("d"))
    assert (q.samples, q.val_samples, q.search.max_steps) == (48, 8, 2)
    f = FULL.quantize_config(Path("a"), None)
    assert f.samples == 64 and f == type(f)(art=Path("a"), samples=64)


def _stages(quick: bool) -> dict:
    return {s.label: s for s in stages(RunConfig(out=Path("r"), quick=quick, gate=False))}


def test_run_reads_the_profile():
    for quick, pr in ((True, QUICK), (False, FULL)):
        s = _stages(quick)
        assert (s["data"].config.patients, s["data"].config.sessions) == (pr.patients,
                                                                          pr.sessions)
        assert s["quantize"].config == pr.quantize_config(Path("r/art"), Path("r/data"))
        assert s["parity"].config.images == pr.parity_images
        assert s["web parity"].config.images == pr.web_parity_images
        assert ("--quick" in s["bench cpu"].argv) is quick
        assert s["bench cpu"].config.runs == (pr.bench_runs or 200)
        assert s["bench web"].config.quick is quick


def test_sweep_reads_the_profile(tmp_path):
    q, f = SweepConfig(out=tmp_path, quick=True), SweepConfig(out=tmp_path)
    assert (q.patients, q.fine_tune_epochs) == (QUICK.sweep_patients, QUICK.epochs)
    assert (f.patients, f.fine_tune_epochs) == (FULL.sweep_patients, FULL.epochs)


def test_bench_cpu_quick_reads_the_profile():
    from hemoedge.bench import cpu

    assert (QUICK.bench_warmup, QUICK.bench_runs) == (cpu.QUICK_WARMUP, cpu.QUICK_RUNS)
