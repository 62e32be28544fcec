"""The CI workflow (.github/workflows/edge.yml): pinned actions, the quick stages equal to
`hemoedge run --quick`'s, and shards that keep every ratio budget's two figures on one runner."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from hemoedge.artifact import Artifact, file_name
from hemoedge.bench.cpu import CpuBenchConfig, units
from hemoedge.pipeline_run import RunConfig, stages

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "edge.yml"
SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def wf() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(wf: dict):
    for job_name, job in wf["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def _hemoedge_commands(job: dict, **expr: str) -> list[list[str]]:
    """argv of every `hemoedge` call in the job's run steps; ${{ x.y }} -> expr["x_y"]."""
    out = []
    for step in job["steps"]:
        text = re.sub(r"\$\{\{\s*([\w.]+)\s*\}\}",
                      lambda m: expr.get(m.group(1).replace(".", "_"), m.group(0)),
                      step.get("run", ""))
        for line in text.replace("\\\n", " ").splitlines():
            words = shlex.split(line.strip()) if line.strip() else []
            if words and words[0].endswith("bin/hemoedge"):
                out.append(words[1:])
    return out


def test_every_action_is_pinned_to_a_full_commit_sha(wf):
    uses = [(j, s["uses"]) for j, s in _steps(wf) if "uses" in s]
    uses += [(j, job["uses"]) for j, job in wf["jobs"].items() if "uses" in job]
    assert uses, "the workflow uses no actions at all?"
    unpinned = [(j, u) for j, u in uses if not SHA.match(u) and not u.startswith("./")]
    assert not unpinned, f"pin these by full 40-hex commit SHA: {unpinned}"
    names = {u.split("@")[0] for _, u in uses}
    assert {"actions/checkout", "actions/upload-artifact", "actions/download-artifact"} <= names


def test_jobs_make_test_quick_shards_and_one_gate(wf):
    jobs = wf["jobs"]
    assert any("make test" in s.get("run", "") for s in jobs["test"]["steps"])
    shards = [m["shard"] for m in jobs["bench"]["strategy"]["matrix"]["include"]]
    assert shards == [1, 2]
    bench = _hemoedge_commands(jobs["bench"], matrix_shard="2")
    assert bench == [["bench", "cpu", "runs/ci/art", "--quick", "--shard", "2/2",
                      "--results", "shard-2.json"]]
    gates = [c for job in jobs.values() for c in _hemoedge_commands(job) if c[0] == "gate"]
    assert len(gates) == 1, "the merged results are gated exactly once"
    g = gates[0]
    assert "shards/*.json" in g and "runs/ci/results.json" in g
    assert g[g.index("--md") + 1] == "$GITHUB_STEP_SUMMARY"
    assert "--junit" in g and "--benchmark-json" in g
    # the package's budgets; the baseline named, so CI fails (exit 2) when it is missing
    assert "--budgets" not in g and g[g.index("--baseline") + 1] == "ci/baseline.json"
    assert set(jobs["gate"]["needs"]) >= {"test", "bench", "bench-web"}
    web = _hemoedge_commands(jobs["bench-web"])
    assert web == [["bench", "web", "runs/ci/art", "--capture", "--quick", "--results",
                    "shard-web.json"],
                   ["parity", "runs/ci/art", "--web", "--data", "runs/ci/data", "--images", "4",
                    "--results", "shard-web.json"]]
    reports = [c for c in _hemoedge_commands(jobs["gate"]) if c[0] == "report"]
    assert reports and "--html" in reports[0]
    uploaded = [s for s in jobs["gate"]["steps"] if "upload-artifact" in s.get("uses", "")]
    assert uploaded and "runs/ci/merged" in uploaded[0]["with"]["path"]


def test_quick_job_runs_exactly_the_stages_of_hemoedge_run_quick(wf):
    want = {s.label: s.argv for s in stages(RunConfig(out=Path("runs/ci"), quick=True,
                                                        gate=False))}
    got = _hemoedge_commands(wf["jobs"]["quick"])
    labels = ["data", "export", "quantize", "parity", "eval"]
    assert got == [want[k] for k in labels]
    # and the shards time the same --quick benchmark on that artifact
    assert want["bench cpu"][:3] == ["bench", "cpu", "runs/ci/art"]
    assert "--quick" in want["bench cpu"]


def test_shard_2_of_2_holds_every_2_thread_unit(tmp_path):
    """The ratio budgets (int8 / fp32 at 2 threads) must be measured on one runner."""
    art = Artifact(tmp_path)
    for role in ("detector", "estimator"):
        for p in ("fp32", "fp16", "int8"):
            art.files[file_name(role, p)] = {"model": role, "precision": p}
    for i, want in ((1, {1}), (2, {2})):
        cfg = CpuBenchConfig(art=tmp_path, threads=(1, 2), shard=(i, 2))
        got = units(cfg, art)
        assert {u.threads for u in got} == want
        assert len(got) == (6 + 9)  # 6 model files + 9 pairings, one thread count each


def test_sweep_workflow_trains_in_shards_and_benchmarks_on_one_machine():
    from hemoedge.cli import build_parser

    sw = yaml.safe_load((ROOT / ".github" / "workflows" / "sweep.yml").read_text())
    uses = [s["uses"] for job in sw["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses and all(SHA.match(u) for u in uses)
    jobs = sw["jobs"]
    shards = jobs["train"]["strategy"]["matrix"]["shard"]
    parser = build_parser()
    for i in shards:
        (cmd,) = _hemoedge_commands(jobs["train"], matrix_shard=str(i))
        args = parser.parse_args(cmd)
        assert args.shard == (i, len(shards)) and args.no_bench and args.out == "runs/sweep"
    (cmd,) = _hemoedge_commands(jobs["bench"])
    args = parser.parse_args(cmd)
    assert args.shard is None and not args.no_bench and args.out == "runs/sweep"
    assert jobs["bench"]["needs"] == "train"
