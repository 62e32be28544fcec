"""The quick and full profiles, defined once in hemoedge.profile and read by run, sweep and
bench cpu (the workflow's literal copy is checked in tests/test_workflow.py)."""

from pathlib import Path

from hemoedge.pipeline_run import RunConfig, stages
from hemoedge.profile import FULL, QUICK, profile
from hemoedge.sweep import SweepConfig


def test_profiles():
    assert profile(True) is QUICK and profile(False) is FULL
    assert QUICK.quantize_args() == ["--samples", "48", "--val-samples", "8", "--max-steps", "2"]
    assert FULL.quantize_args() == ["--samples", "64"]


def _argv(quick: bool) -> dict[str, list[str]]:
    return {label: argv for label, argv, _ in stages(RunConfig(out=Path("r"), quick=quick,
                                                                gate=False))}


def test_run_reads_the_profile():
    for quick, pr in ((True, QUICK), (False, FULL)):
        a = _argv(quick)
        assert a["data"][a["data"].index("--patients") + 1] == str(pr.patients)
        assert a["data"][a["data"].index("--sessions") + 1] == str(pr.sessions)
        assert a["quantize"][4:] == pr.quantize_args()
        assert a["parity"][a["parity"].index("--images") + 1] == str(pr.parity_images)
        assert a["web parity"][a["web parity"].index("--images") + 1] == str(pr.web_parity_images)
        assert ("--quick" in a["bench cpu"]) is quick


def test_sweep_reads_the_profile(tmp_path):
    q, f = SweepConfig(out=tmp_path, quick=True), SweepConfig(out=tmp_path)
    assert (q.patients, q.fine_tune_epochs) == (QUICK.sweep_patients, QUICK.epochs)
    assert (f.patients, f.fine_tune_epochs) == (FULL.sweep_patients, FULL.epochs)


def test_bench_cpu_quick_reads_the_profile():
    from hemoedge.bench import cpu

    assert (QUICK.bench_warmup, QUICK.bench_runs) == (cpu.QUICK_WARMUP, cpu.QUICK_RUNS)
