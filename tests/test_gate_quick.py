"""A quick CPU-only gate, end to end, inside `make test` (not marked slow).

Tiny models built in code with the real I/O names and shapes; the artifact's "int8" files are
copies of the fp32 graphs, so the int8/fp32 latency ratio of the unchanged artifact is about
1. The same commands as CI: `hemoedge bench cpu ART --quick`, `hemoedge gate --update-baseline`,
`hemoedge gate`. Then the int8 detector is slowed for real (ci/inject.py's slow_down:
extra MatMuls on the output path, output unchanged) and the ratio budget must fail.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_tiny import _vi, tiny_artifact, tiny_detector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ci"))
import inject  # ci/inject.py: regressions injected on purpose

from hemoedge.artifact import Artifact
from hemoedge.cli import main
from hemoedge.errors import BenchError
from hemoedge.gate import evaluate, load_budgets
from hemoedge.report.results import Results
from hemoedge.spec import OPSET

RATIO_MAX = 2.0  # int8 copy / fp32: ~1 unchanged; the injected slowdown is >> 2
SLOW_MATMULS = 8  # 8 x (2400 x 128 @ 128 x 128) = 0.63 GFLOP: ~5 ms on one thread (model ~0.1 ms)

BUDGETS = f"""
[[budget]]
name = "int8 / fp32 detector CPU latency"
kind = "ratio"
max = {RATIO_MAX}
[budget.numerator]
metric = "cpu.detector.latency_ms.p50"
variant = "det=int8"
params = {{ threads = 1 }}
[budget.denominator]
metric = "cpu.detector.latency_ms.p50"
variant = "det=fp32"
params = {{ threads = 1 }}

[[budget]]
name = "nail found rate vs baseline"
kind = "baseline"
metric = "cpu.frame.nail_found_rate"
variant = "det=int8,est=int8"
params = {{ threads = 1 }}
max_worse = 0.1

[[budget]]
name = "int8 pipeline frame time <= 0.001 ms (target)"
kind = "absolute"
metric = "cpu.frame_ms.p50"
variant = "det=int8,est=int8"
params = {{ threads = 1 }}
max = 0.001
severity = "warn"
"""


def bench(art: Path, results: Path) -> Path:
    assert main(["bench", "cpu", str(art), "--quick", "--threads", "1",
                 "--results", str(results)]) == 0
    return results


def gate(results: Path, tmp: Path, *extra: str) -> int:
    return main(["gate", str(results), "--budgets", str(tmp / "budgets.toml"),
                 "--baseline", str(tmp / "baseline.json"), "--md", str(tmp / "gate.md"), *extra])


def test_quick_gate_passes_unchanged_and_fails_a_slowed_model(tmp_path, capsys):
    art = tiny_artifact(tmp_path / "art")
    (tmp_path / "budgets.toml").write_text(BUDGETS)
    budgets = load_budgets(tmp_path / "budgets.toml")

    # the baseline, on purpose, from a first run
    ref = bench(art, tmp_path / "ref.json")
    assert gate(ref, tmp_path, "--update-baseline") == 0
    baseline = Results.load(tmp_path / "baseline.json")
    assert baseline.get("cpu.frame.nail_found_rate", "det=int8,est=int8", threads=1)

    # (i) unchanged code, a fresh run: exit 0 (a warn-only target may fail, it never counts)
    run = bench(art, tmp_path / "unchanged.json")
    assert gate(run, tmp_path) == 0, (tmp_path / "gate.md").read_text()
    res = evaluate(Results.load(run), budgets, baseline)
    ratio = res.checks[0]
    assert ratio.verdict == "pass" and 0.3 < ratio.value < RATIO_MAX
    assert [c.budget.name for c in res.warnings] == [
        "int8 pipeline frame time <= 0.001 ms (target)"]

    # (ii) the int8 detector slowed for real: same outputs, the ratio budget fails (exit 1)
    slow = tmp_path / "art-slow"
    shutil.copytree(art, slow)
    inject.rewrite(slow, "detector", "int8", lambda m: inject.slow_down(m, SLOW_MATMULS),
                   f"slow_down matmuls={SLOW_MATMULS}")
    assert Artifact.load(slow).files["detector.int8.onnx"]["injected"].startswith("slow_down")
    run = bench(slow, tmp_path / "slowed.json")
    capsys.readouterr()
    assert gate(run, tmp_path) == 1
    out = capsys.readouterr().out
    assert "FAIL int8 / fp32 detector CPU latency" in out
    res = evaluate(Results.load(run), budgets, baseline)
    assert [c.budget.name for c in res.failures] == ["int8 / fp32 detector CPU latency"]
    ratio = res.checks[0]
    assert ratio.interval[0] > RATIO_MAX  # the whole 95 % interval lies beyond the budget
    assert "**fail**" in (tmp_path / "gate.md").read_text()


def test_slow_down_keeps_outputs_and_survives_the_optimiser(tmp_path):
    tiny_detector(tmp_path / "d.onnx")
    model = onnx.load(str(tmp_path / "d.onnx"))
    slow = inject.slow_down(model, 3)
    assert inject.optimised_matmuls(slow) == 3  # onnxruntime's ORT_ENABLE_ALL kept them all
    check = inject.verify_slowdown(tmp_path / "d.onnx", 3, threads=1, runs=5)
    assert check.max_abs_output_change == 0.0
    assert check.kept_in_optimised_graph == 3
    assert check.slow_ms > check.base_ms


def test_perturb_head_changes_only_the_head(tmp_path):
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "head.weight", "head.bias"], ["hb"], transB=1)], "est",
        [_vi("x", [1, 4])], [_vi("hb", [1, 1])],
        [numpy_helper.from_array(np.ones((1, 4), np.float32), "head.weight"),
         numpy_helper.from_array(np.array([10.0], np.float32), "head.bias")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    out = inject.perturb_head(m, rel=0.5)
    w = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert not np.allclose(w["head.weight"], 1.0)
    assert w["head.bias"][0] == 10.0
    assert np.array_equal(numpy_helper.to_array(m.graph.initializer[0]), np.ones((1, 4)))
    with pytest.raises(BenchError, match="no initializer 'nope'"):
        inject.perturb_head(m, weight="nope")


def test_perturb_head_requantises_a_quantised_head():
    q = np.array([[100, -50, 20, 7]], np.int8)
    g = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["head.weight_quantized", "head.weight_scale",
                                               "head.weight_zero_point"], ["w"])], "qhead",
        [], [helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(q, "head.weight_quantized"),
         numpy_helper.from_array(np.array(0.01, np.float32), "head.weight_scale"),
         numpy_helper.from_array(np.array(0, np.int8), "head.weight_zero_point")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    out = inject.perturb_head(m, rel=0.0, shrink=0.5)  # exactly half, rounded to the grid
    w = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert w["head.weight_quantized"].dtype == np.int8
    assert w["head.weight_quantized"].tolist() == [[50, -25, 10, 4]]
