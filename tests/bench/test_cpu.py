"""hemoedge.bench.cpu on tiny models built in code (quick: a few runs each)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_tiny import _save, _vi, tiny_artifact, tiny_estimator

from hemoedge.artifact import Artifact
from hemoedge.bench import cpu
from hemoedge.bench import machine as machine_mod
from hemoedge.errors import BenchError, HemoedgeError
from hemoedge.report.results import Results


def conv_gemm_model(path: Path) -> Path:
    """x (1,3,8,8) -> Conv 3->8 k3 pad1 (+bias) -> Relu -> Flatten -> Gemm 512->5 (+bias).
    MACs: Conv 8*8*8 outputs x 3*3*3 = 13,824, bias 512; Gemm 5 x 512 = 2,560, bias 5."""
    rng = np.random.default_rng(0)
    init = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "W"),
            numpy_helper.from_array(np.zeros(8, np.float32), "B"),
            numpy_helper.from_array(rng.standard_normal((5, 512)).astype(np.float32), "G"),
            numpy_helper.from_array(np.zeros(5, np.float32), "GB")]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "G", "GB"], ["y"], transB=1, name="gemm")]
    g = helper.make_graph(nodes, "conv_gemm",
                          [_vi("x", ["batch", 3, 8, 8])],
                          [_vi("y", ["batch", 5])], init)
    return _save(g, path)


def matmul_model(path: Path) -> Path:
    """x (1,3,8,8) -> depthwise Conv (groups 3, k3, pad 1, no bias) -> Reshape (1,3,64) ->
    MatMul (64,5) -> (1,3,5). MACs: 3*8*8 x 1*3*3 = 1,728; 3*5 x 64 = 960."""
    rng = np.random.default_rng(2)
    init = [numpy_helper.from_array(rng.standard_normal((3, 1, 3, 3)).astype(np.float32), "W"),
            numpy_helper.from_array(np.array([1, 3, 64], np.int64), "shape"),
            numpy_helper.from_array(rng.standard_normal((64, 5)).astype(np.float32), "M")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], group=3, pads=[1, 1, 1, 1],
                              kernel_shape=[3, 3], name="dw"),
             helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
             helper.make_node("MatMul", ["r", "M"], ["y"], name="mm")]
    g = helper.make_graph(nodes, "dw_matmul",
                          [_vi("x", [1, 3, 8, 8])],
                          [_vi("y", [1, 3, 5])], init)
    return _save(g, path)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    from hemoedge.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("frames") / "data", patients=2, sessions=1,
                      progress=False)


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> Path:
    return tiny_artifact(tmp_path_factory.mktemp("art") / "art")


def quick(**kw) -> cpu.CpuBenchConfig:
    base = {"threads": (1,), "warmup": 1, "runs": 5, "cold_starts": 2, "frames": 2,
            "memory": False, "progress": False}
    return cpu.CpuBenchConfig(**{**base, **kw})


# ------------------------------------------------------------------------- FLOPs

def test_flops_of_conv_gemm_by_hand(tmp_path):
    fc = cpu.count_flops(conv_gemm_model(tmp_path / "cg.onnx"))
    assert fc.macs == 8 * 8 * 8 * 3 * 3 * 3 + 5 * 512  # 13,824 + 2,560
    assert fc.adds == 8 * 8 * 8 + 5  # biases
    assert fc.flops == 2 * 16384 + 517
    assert fc.by_node == {"conv": 13824 + 512, "gemm": 2560 + 5}
    assert fc.unknown == []


def test_flops_of_grouped_conv_and_matmul_by_hand(tmp_path):
    fc = cpu.count_flops(matmul_model(tmp_path / "mm.onnx"))
    assert fc.by_node == {"dw": 3 * 8 * 8 * 1 * 3 * 3, "mm": 3 * 5 * 64}
    assert fc.flops == 2 * (1728 + 960)


def test_flops_agree_with_onnx_tool_per_node(tmp_path):
    onnx_tool = pytest.importorskip("onnx_tool")
    for build in (conv_gemm_model, matmul_model):
        path = build(tmp_path / f"{build.__name__}.onnx")
        m = onnx_tool.Model(str(path))
        m.graph.shape_infer({"x": onnx_tool.create_ndarray_f32((1, 3, 8, 8))})
        m.graph.profile()
        theirs = {n.name: int(n.macs[0]) for n in m.graph.nodemap.values()
                  if n.op_type in ("Conv", "Gemm", "MatMul")}
        ours = cpu.count_flops(path).by_node
        assert set(theirs.values()) == set(ours.values()), (theirs, ours)


def test_flops_agree_with_onnx_tool_on_the_dev_artifact():
    """The real YOLOv8n / timm graphs, when runs/art-dev (or HEMOEDGE_ART) exists."""
    onnx_tool = pytest.importorskip("onnx_tool")
    import os

    art_dir = Path(os.environ.get("HEMOEDGE_ART", Path(__file__).resolve().parents[2]
                                  / "runs" / "art-dev"))
    if not (art_dir / "manifest.json").is_file():
        pytest.skip(f"no artifact at {art_dir}")
    art = Artifact.load(art_dir)
    for role in ("detector", "estimator"):
        path = art.path(role, "fp32")
        m = onnx_tool.Model(str(path))
        m.graph.shape_infer()
        m.graph.profile()
        theirs = sum(int(n.macs[0]) for n in m.graph.nodemap.values()
                     if n.op_type in ("Conv", "Gemm", "MatMul"))
        fc = cpu.count_flops(path)
        assert fc.unknown == [] and fc.macs + fc.adds == theirs


# ------------------------------------------------------------------------- peak FLOP/s

def test_peak_formula_from_isa(monkeypatch):
    monkeypatch.setattr(machine_mod, "machine", lambda: {"cpu": "x", "isa": ["avx2", "fma", "avx512f",
                                                                      "avx512_vnni"],
                                                 "cores": 2, "ghz": 2.0, "ghz_source": "test"})
    pk = cpu.peak()
    assert pk["gflops_per_core_fp32"] == 2.0 * 2 * 16 * 2  # GHz x FMA units x lanes x 2
    assert pk["gflops_per_core_int8"] == 4 * 128.0  # VNNI: 4 int8 MACs per 32-bit lane
    monkeypatch.setattr(machine_mod, "machine", lambda: {"cpu": "x", "isa": ["avx", "avx2", "fma"],
                                                 "cores": 2, "ghz": 3.0, "ghz_source": "test"})
    pk = cpu.peak(fma_units=1)
    assert (pk["gflops_per_core_fp32"], pk["int8_factor"]) == (3.0 * 1 * 8 * 2, 2)
    # a measured sgemm faster than the reported clock allows raises the clock, never lowers it
    assert cpu.peak(fma_units=1, sgemm_gflops=64.0)["ghz"] == pytest.approx(4.0)
    assert cpu.peak(fma_units=1, sgemm_gflops=10.0)["ghz"] == 3.0


# ------------------------------------------------------------------------- the benchmark

def test_run_on_an_artifact_gives_every_metric(art, frames_dir):
    r = cpu.run(quick(art=art, data=frames_dir, threads=(1, 2)))
    names = {m.name for m in r.metrics}
    for role in ("detector", "estimator"):
        for stat in ("mean", "p50", "p90", "p99"):
            assert f"cpu.{role}.latency_ms.{stat}" in names
        for k in ("cold_start_ms", "gflops_per_s", "efficiency"):
            assert f"cpu.{role}.{k}" in names
        assert f"flops.{role}.gflop" in names
    for stat in ("mean", "p50", "p90", "p99"):
        assert f"cpu.frame_ms.{stat}" in names
    for stage in cpu.STAGES:  # the tiny detector always finds a "nail" (score 0.5)
        assert f"cpu.frame.{stage}_ms.p50" in names
    assert {m.value for m in r.find("cpu.frame.nail_found_rate")} == {1.0}
    # 2 models x 2 precisions x 2 thread counts; 4 pairings x 2 thread counts
    lat = r.find("cpu.detector.latency_ms.p50") + r.find("cpu.estimator.latency_ms.p50")
    assert len(lat) == 8 and {m.n for m in lat} == {5}
    frame = r.find("cpu.frame_ms.p50")
    assert sorted((m.variant, m.params["threads"]) for m in frame) == sorted(
        (f"det={d},est={e}", t) for d in ("fp32", "int8") for e in ("fp32", "int8") for t in (1, 2))
    # FLOPs once per file, not per thread count
    assert len(r.find("flops.detector.gflop")) == 2
    for m in r.metrics:
        if m.ci95 is not None:
            assert m.ci95[0] <= m.value <= m.ci95[1], m
    det = r.get("flops.detector.gflop", "det=fp32").value
    assert det == pytest.approx(2 * 10 * 10 * 6 * 3 * 32 * 32 / 1e9 + 600 / 1e9)  # Conv k32 s32
    assert r.variants["det=int8,est=fp32"] == {"detector": "detector.int8.onnx",
                                               "estimator": "estimator.fp32.onnx"}
    assert r.env["ort_cpu"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert r.env["cpu_inputs"]["det=fp32"] == "real"
    assert {"cpu", "cpu_isa", "cores", "python", "onnxruntime", "cpu_peak"} <= set(r.env)


def test_shards_partition_the_units_in_a_fixed_order(art, frames_dir):
    full = cpu.units(quick(art=art, threads=(1, 2)), Artifact.load(art))
    assert len(full) == 2 * 2 * 2 + 4 * 2
    shards = [cpu.units(quick(art=art, threads=(1, 2), shard=(i, 3)), Artifact.load(art))
              for i in (1, 2, 3)]
    assert shards[0] == full[0::3] and shards[1] == full[1::3] and shards[2] == full[2::3]
    assert sorted(repr(u) for shard in shards for u in shard) == sorted(map(repr, full))
    r = cpu.run(quick(art=art, data=frames_dir, threads=(1, 2), shard=(2, 3)))
    got = {(m.variant, m.params.get("threads")) for m in r.find("cpu.") if ".p50" in m.name
           and "frame." not in m.name}
    assert got == {(u.variant, u.threads) for u in shards[1]}


def test_frames_without_a_nail_still_pay_for_the_estimator(tmp_path, frames_dir):
    art = tiny_artifact(tmp_path / "art", ("fp32",), score_bias=-10.0)  # nail score ~0
    r = cpu.run(quick(art=art, data=frames_dir))
    v = "det=fp32,est=fp32"
    assert r.get("cpu.frame.nail_found_rate", v, threads=1).value == 0.0
    stages = {s: r.get(f"cpu.frame.{s}_ms.p50", v, threads=1) for s in cpu.STAGES}
    assert all(m is not None and m.n == 5 and m.value > 0 for m in stages.values()), stages
    assert sum(m.value for m in stages.values()) <= r.get("cpu.frame_ms.p90", v).value * 1.5


@pytest.mark.parametrize("block, order", [
    # warm-ups, then rounds of one untimed call (lower case) + `block` timed (upper case)
    (2, "ab" + "aAAbBB" * 2),
    (0, "ab" + "aAAAA" + "bBBBB"),  # block 0: each variant's runs in one go
])
def test_jobs_are_timed_round_robin_in_blocks(block, order):
    seen, finished = [], {}
    jobs = []
    for name in "ab":
        job = cpu._Job(cpu.Unit("model", 1), lambda: None, lambda ms: None)

        def call(job=job, name=name):
            seen.append(name.upper() if job.recording[0] else name)

        job.call = call
        job.finish = lambda ms, name=name: finished.__setitem__(name, ms)
        jobs.append(job)
    cfg = quick(model=Path("x.onnx"), warmup=1, runs=4, block=block)
    cpu._time_jobs(jobs, cfg, step=lambda: None)
    assert "".join(seen) == order
    assert {k: v.shape for k, v in finished.items()} == {"a": (4,), "b": (4,)}


def test_peak_rss_is_measured_in_a_child(art):
    u = cpu.units(quick(art=art), Artifact.load(art))[0]
    rss = cpu._peak_rss(u.path, 1, 3)
    assert 10e6 < rss["before"] < rss["peak"] < 4e9  # an interpreter with onnxruntime loaded


def _args(**kw) -> argparse.Namespace:
    base = {"art": None, "threads": [1], "model": None, "runs": 5, "warmup": 1, "quick": False,
            "shard": None, "results": None}
    return argparse.Namespace(**{**base, **kw})


def test_cli_model_flag_benchmarks_any_onnx_and_appends(tmp_path):
    model = conv_gemm_model(tmp_path / "other.onnx")
    out = tmp_path / "results.json"
    Results(commands=["earlier"]).save(out)
    assert cpu.cli(_args(model=str(model), results=str(out))) == 0
    r = Results.load(out)
    assert r.commands[0] == "earlier"
    assert r.commands[1] == f"hemoedge bench cpu --threads 1 --model {model} --runs 5 " \
                            f"--warmup 1 --results {out}"
    p50 = r.get("cpu.model.latency_ms.p50", "model=other", threads=1)
    assert p50 is not None and p50.n == 5
    assert r.get("flops.model.gflop", "model=other").value == pytest.approx(33285 / 1e9)
    assert r.get("cpu.model.peak_rss_bytes", "model=other", threads=1).value > 0
    assert r.variants["model=other"] == {"model": str(model)}
    assert r.env["cpu_inputs"]["model=other"] == "random"


def test_spin_off_is_recorded_and_tags_the_metrics(tmp_path):
    r = cpu.run(quick(model=conv_gemm_model(tmp_path / "cg.onnx"), spin=False))
    assert r.env["ort_cpu"]["allow_spinning"] is False
    assert {json.dumps(m.params, sort_keys=True) for m in r.find("cpu.model.latency_ms")} == {
        '{"spin": false, "threads": 1}'}


def test_model_with_a_hemoedge_spec_keeps_its_role(tmp_path):
    path = tiny_estimator(tmp_path / "mine.onnx")
    r = cpu.run(quick(model=path))
    assert r.get("cpu.estimator.latency_ms.p50", "model=mine", threads=1) is not None


@pytest.mark.parametrize("content", [b"\x00\x01garbage not protobuf\xff" * 10,
                                     b"hello, this is a text file\n"])
def test_corrupt_or_non_onnx_file_is_a_one_line_bench_error(tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(BenchError, match=r"bad\.onnx: not an ONNX model"):
        cpu.run(quick(model=bad))


def test_missing_inputs_are_errors(tmp_path):
    with pytest.raises(BenchError, match=r"missing\.onnx: no such ONNX file"):
        cpu.run(quick(model=tmp_path / "missing.onnx"))
    with pytest.raises(HemoedgeError, match="not an artifact folder"):
        cpu.run(quick(art=tmp_path / "nothing"))
    with pytest.raises(BenchError, match="needs an artifact folder"):
        quick()
    with pytest.raises(BenchError, match="positive integers"):
        quick(model=tmp_path / "x.onnx", threads=(0,))


def test_command_line_exits_2_with_one_line(tmp_path, capsys):
    from hemoedge.cli import main

    bad = tmp_path / "bad.onnx"
    bad.write_text("not a model")
    assert main(["bench", "cpu", "--model", str(bad), "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.onnx: not an ONNX model" in err[0]
