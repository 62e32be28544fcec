"""`hemoedge bench cpu`: onnxruntime CPU latency, cold start, memory, FLOPs and efficiency.

    run(CpuBenchConfig(art=..., threads=(1, 2))) -> Results

For every model x precision in the artifact and every intra-op thread count:
  cpu.<role>.latency_ms.{mean,p50,p90,p99}  session.run only; variant "det=P" / "est=P"
  cpu.<role>.cold_start_ms                  InferenceSession() + first run, fresh session
                                            each time, in this (already warm) process
  cpu.<role>.peak_rss_bytes                 peak RSS (VmHWM) of a fresh child process that
                                            loads only this model and runs it (interpreter
                                            + numpy + onnxruntime + model)
  cpu.<role>.peak_rss_delta_bytes           the same minus the child's RSS just before the
                                            session was created (what the model adds)
  flops.<role>.gflop                        2 x multiply-accumulates of Conv/ConvTranspose/
                                            Gemm/MatMul (and their quantised forms) + bias adds
  cpu.<role>.gflops_per_s, cpu.<role>.efficiency   flops / p50, and that / the ISA peak
For every pairing det=P,est=Q and thread count, on real synthetic frames, through
hemoedge.pipeline.OnnxPipeline.frame (the app's own code path):
  cpu.frame_ms.{mean,p50,p90,p99}           letterbox + detector + decode/NMS + best-nail
                                            crop + estimator preprocessing + estimator
  cpu.frame.nail_found_rate                 share of timed frames where the detector found
                                            a nail (otherwise the ground-truth box, or the
                                            centre, is cropped so the estimator still runs)
  cpu.frame.<stage>_ms.p50                  median of each stage: letterbox, detector,
                                            decode (+NMS, best nail), crop_resize, estimator

Timing is interleaved: every variant (model x precision x threads, pairing x threads) is
prepared first (cold starts, memory), warmed up, then timed round-robin in blocks of
CpuBenchConfig.block runs, one untimed call before each block, so drifts in the load of a
shared machine hit every variant alike and same-run ratios (int8 vs fp32) stay fair.

Sessions: CPUExecutionProvider, intra_op_num_threads=t, inter_op_num_threads=1,
ORT_SEQUENTIAL, graph optimisation ORT_ENABLE_ALL, intra-op spin-wait on (onnxruntime's
default; CpuBenchConfig.spin=False turns it off and tags the metrics params spin=False),
all recorded in results.env["ort_cpu"].

Peak FLOP/s (results.env["cpu_peak"]): cores x GHz x FMA units x fp32 SIMD lanes x 2, with
lanes from /proc/cpuinfo flags (avx512f 16, avx2+fma 8, avx 8 without FMA, else 4), FMA
units assumed 2 for AVX-512/AVX2 server parts (1 for AVX/SSE; override with
CpuBenchConfig.fma_units), and the clock from, in order: cpufreq cpuinfo_max_freq, lscpu
"CPU max MHz", the "@ x.xxGHz" in the model name, /proc/cpuinfo "cpu MHz" -- raised to the
lowest clock consistent with a measured single-thread onnxruntime sgemm when that beats it
(VMs often report the base clock while the core turbos). int8 models are compared with the
int8 peak: 4x fp32 with avx512_vnni/avx_vnni (VPDPBUSD does 4 u8*s8 MACs per 32-bit lane),
2x without; AMX is not counted. fp16 models are compared with the fp32 peak (onnxruntime's
x86 CPU kernels compute them in fp32). "cores" is min(threads, usable cores).

FLOPs are counted here from the ONNX graph with onnx shape inference and a short per-op
table (_MAC_OPS) rather than onnx-tool at run time: onnx-tool also counts element-wise ops
as "MACs", which are not what FMA units execute; tests/bench/test_cpu.py checks that the
two agree exactly on every Conv/Gemm/MatMul node when onnx-tool is installed.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.artifact import Artifact
from hemoedge.bench.stats import Summary, Timer, summarize
from hemoedge.errors import BenchError, HemoedgeError
from hemoedge.names import ROLE_KEY, ROLES, role_variant
from hemoedge.profile import QUICK, profile
from hemoedge.report.results import Results, merge_stage, variant_name

log = logging.getLogger(__name__)

GRAPH_OPT = "ORT_ENABLE_ALL"
QUICK_WARMUP, QUICK_RUNS = QUICK.bench_warmup, QUICK.bench_runs
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
             "amx_bf16")
SHORT = ROLE_KEY


@dataclass(frozen=True)
class CpuBenchConfig:
    # what to measure
    art: Path | None = None  # artifact folder (every model x precision, every pairing)
    model: Path | None = None  # any .onnx file, benchmarked with random inputs
    threads: tuple[int, ...] = (1, 2)  # intra-op thread counts swept
    data: Path | None = None  # Yakimov-layout folder for real frames (None: synthesise 8)
    frames: int = 8  # distinct frames / inputs cycled through
    # timing
    warmup: int = 20  # untimed runs before each measurement
    runs: int = 200  # timed runs per model x precision x threads (and per pairing)
    cold_starts: int = 5  # fresh sessions timed for cold_start_ms
    block: int = 10  # timed runs per variant per round-robin turn (0: each variant in one go)
    memory: bool = True  # peak RSS in a child process per model x precision x threads
    spin: bool = True  # onnxruntime intra-op spin-wait (its default); False helps on busy CPUs
    # machine
    fma_units: int | None = None  # FMA units per core for the peak (None: guess from ISA)
    measure_clock: bool = True  # raise the reported clock if a measured sgemm beats it
    # bookkeeping
    shard: tuple[int, int] | None = None  # (i, n): run only units i-1, i-1+n, ... (1-based i)
    seed: int = 0  # random inputs and bootstrap
    progress: bool = True  # rich progress bar
    command: str = ""  # the command line, recorded in results.commands

    def __post_init__(self) -> None:
        if self.art is None and self.model is None:
            raise BenchError("bench cpu needs an artifact folder (ART) or --model FILE.onnx")
        if not self.threads or any(t < 1 for t in self.threads):
            raise BenchError(f"--threads needs positive integers, got {list(self.threads)}")
        if (self.runs < 1 or self.warmup < 0 or self.cold_starts < 1 or self.frames < 1
                or self.block < 0):
            raise BenchError("need runs >= 1, warmup >= 0, block >= 0, cold_starts >= 1, "
                             f"frames >= 1; got runs={self.runs} warmup={self.warmup} "
                             f"block={self.block} "
                             f"cold_starts={self.cold_starts} frames={self.frames}")
        if self.shard is not None and not 1 <= self.shard[0] <= self.shard[1]:
            raise BenchError(f"--shard i/n needs 1 <= i <= n, got {self.shard}")


# ------------------------------------------------------------------------- the machine

def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


@cache
def machine() -> dict[str, Any]:
    """CPU model, ISA flags of interest, usable cores and the peak-FLOP/s inputs."""
    info = _read("/proc/cpuinfo")
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags_m = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    flags = set(flags_m.group(1).split()) if flags_m else set()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ghz, source = _frequency(name.group(1) if name else "", info)
    return {"cpu": name.group(1).strip() if name else platform.processor() or "unknown",
            "isa": [f for f in ISA_FLAGS if f in flags], "cores": int(cores or 1),
            "ghz": ghz, "ghz_source": source}


def _frequency(model_name: str, cpuinfo: str) -> tuple[float, str]:
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    if khz.isdigit():
        return int(khz) / 1e6, "cpufreq cpuinfo_max_freq"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^CPU max MHz:\s*([\d.]+)", out, re.M)
        if m:
            return float(m.group(1)) / 1e3, "lscpu CPU max MHz"
    except (OSError, subprocess.SubprocessError):
        pass
    m = re.search(r"@\s*([\d.]+)\s*GHz", model_name)
    if m:
        return float(m.group(1)), "model name (nominal)"
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
    if m:
        return float(m.group(1)) / 1e3, "/proc/cpuinfo cpu MHz (current)"
    return 0.0, "unknown (only the measured sgemm can set it)"


def peak(fma_units: int | None = None, sgemm_gflops: float | None = None) -> dict[str, Any]:
    """Peak GFLOP/s per core (fp32 and int8) from the ISA, and how it was estimated.

    The clock is the reported one (machine()["ghz"]) unless a measured single-thread fp32
    MatMul (`sgemm_gflops`, see measure_sgemm) proves the core runs faster (turbo, or a VM
    that reports the base clock): then the lowest clock consistent with that measurement
    is used, so the peak is never below what onnxruntime was seen to reach."""
    m = machine()
    isa = set(m["isa"])
    if "avx512f" in isa:
        lanes, units = 16, 2
    elif "avx2" in isa and "fma" in isa:
        lanes, units = 8, 2
    elif "avx" in isa:
        lanes, units = 8, 1  # separate add and multiply ports: one "FMA" worth per cycle
    else:
        lanes, units = 4, 1
    units = fma_units or units
    flops_per_cycle = units * lanes * 2
    ghz, source = m["ghz"], m["ghz_source"]
    implied = sgemm_gflops / flops_per_cycle if sgemm_gflops else None
    if implied is not None and implied > ghz:
        ghz, source = implied, f"implied by measured sgemm (reported {m['ghz']} GHz, {source})"
    per_core = ghz * flops_per_cycle
    vnni = "avx512_vnni" in isa or "avx_vnni" in isa
    int8_factor = 4 if vnni else 2
    return {"gflops_per_core_fp32": per_core, "gflops_per_core_int8": per_core * int8_factor,
            "ghz": ghz, "ghz_source": source, "ghz_reported": m["ghz"],
            "sgemm_gflops_1thread": sgemm_gflops, "fma_units": units, "fp32_lanes": lanes,
            "int8_factor": int8_factor,
            "formula": "cores x GHz x FMA units x fp32 lanes x 2 (x int8_factor for int8 "
                       "models: 4 with VNNI, else 2; AMX not counted); GHz = max(reported, "
                       "measured 1-thread onnxruntime sgemm / (FMA units x lanes x 2))"}


def measure_sgemm(runs: int = 50) -> float:
    """Best single-thread GFLOP/s of an fp32 MatMul (256x1024 @ 1024x1024, 0.54 GFLOP) in
    onnxruntime (MLAS sgemm): a lower bound on the fp32 peak, immune to a VM that reports
    its base clock. Best of `runs`, because load from other processes only slows it."""
    from onnx import TensorProto, helper, numpy_helper

    m_, k_, n_ = 256, 1024, 1024
    b = numpy_helper.from_array(np.random.default_rng(0).random((k_, n_), np.float32), "B")
    g = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["Y"])], "sgemm",
                          [helper.make_tensor_value_info("A", TensorProto.FLOAT, [m_, k_])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m_, n_])], [b])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    sess = session(model.SerializeToString(), 1)
    feeds = {"A": np.random.default_rng(1).random((m_, k_), np.float32)}
    ms = Timer.measure(lambda: sess.run(None, feeds), runs, warmup=3)
    return 2 * m_ * k_ * n_ / (float(ms.min()) / 1e3) / 1e9


def environment(cfg: CpuBenchConfig) -> dict[str, Any]:
    import onnxruntime as ort

    m = machine()
    return {"cpu": m["cpu"], "cpu_isa": m["isa"], "cores": m["cores"],
            "python": platform.python_version(), "onnxruntime": ort.__version__,
            "cpu_peak": peak(cfg.fma_units, measure_sgemm() if cfg.measure_clock else None),
            "ort_cpu": {"provider": "CPUExecutionProvider", "graph_optimization_level": GRAPH_OPT,
                        "execution_mode": "ORT_SEQUENTIAL", "inter_op_num_threads": 1,
                        "intra_op_num_threads": list(cfg.threads),
                        "allow_spinning": cfg.spin}}


# ------------------------------------------------------------------------- FLOPs

# op -> (index of the weight input, index of the bias input or None)
_MAC_OPS = {"Conv": (1, 2), "ConvInteger": (1, None), "QLinearConv": (3, 8),
            "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1, None),
            "MatMulInteger": (1, None), "QLinearMatMul": (3, None)}


@dataclass
class FlopCount:
    macs: int = 0  # multiply-accumulates of the _MAC_OPS nodes
    adds: int = 0  # their bias additions
    by_op: dict[str, int] = field(default_factory=dict)  # op -> macs + adds
    by_node: dict[str, int] = field(default_factory=dict)  # node name -> macs + adds
    unknown: list[str] = field(default_factory=list)  # _MAC_OPS nodes with unknown shapes

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.adds

    @property
    def gflop(self) -> float:
        return self.flops / 1e9


def count_flops(path: str | Path) -> FlopCount:
    """FLOPs of one inference, from the graph: onnx shape inference (dynamic dims set to 1)
    then MACs per node: Conv prod(Y) x prod(W[1:]) (W is Cout, Cin/g, kh, kw); ConvTranspose
    prod(X) x prod(W[1:]) (W is Cin, Cout/g, kh, kw); Gemm prod(Y) x K; MatMul prod(Y) x K.
    FLOPs = 2 x MACs + one add per output element when a bias is given. Other ops: 0."""
    import onnx

    model = _load_onnx(path)
    for vi in model.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # onnx raises several types; the file already loaded fine
        raise BenchError(f"{path}: ONNX shape inference failed ({e}); cannot count FLOPs") from e
    g = model.graph
    shapes: dict[str, tuple[int, ...]] = {i.name: tuple(i.dims) for i in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes.setdefault(vi.name, tuple(d.dim_value for d in dims))
    out = FlopCount()
    for i, node in enumerate(g.node):
        if node.op_type not in _MAC_OPS or node.domain not in ("", "ai.onnx"):
            continue
        w_i, b_i = _MAC_OPS[node.op_type]
        w = shapes.get(node.input[w_i]) if len(node.input) > w_i else None
        x = shapes.get(node.input[0])
        y = shapes.get(node.output[0])
        name = node.name or f"{node.op_type}_{i}"
        if w is None or y is None or (node.op_type.startswith("ConvT") and x is None):
            out.unknown.append(name)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        n_out = int(np.prod(y))
        if node.op_type == "ConvTranspose":
            macs = int(np.prod(x)) * int(np.prod(w[1:]))  # every input pixel x (Cout/g) x k
        elif "Conv" in node.op_type:
            macs = n_out * int(np.prod(w[1:]))  # every output pixel x (Cin/g) x k
        elif node.op_type == "Gemm":
            macs = n_out * (w[1] if attrs.get("transB", 0) else w[0])
        else:  # MatMul family: (..., M, K) @ (..., K, N), or (K,) for a vector B
            macs = n_out * (w[-2] if len(w) > 1 else w[0])
        bias = b_i is not None and len(node.input) > b_i and node.input[b_i] != ""
        adds = n_out if bias else 0
        out.macs += macs
        out.adds += adds
        out.by_op[node.op_type] = out.by_op.get(node.op_type, 0) + macs + adds
        out.by_node[name] = macs + adds
    if out.unknown:
        log.warning("%s: %d MAC nodes with unknown shapes not counted: %s", path,
                    len(out.unknown), ", ".join(out.unknown[:5]))
    return out


# ------------------------------------------------------------------------- sessions and inputs

def _load_onnx(path: str | Path):
    """The ONNX model, or one line naming the file: missing, empty, not ONNX, truncated."""
    from hemoedge.artifact import load_onnx
    from hemoedge.errors import ArtifactError

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: no such ONNX file")
    try:
        return load_onnx(path)
    except ArtifactError as e:
        raise BenchError(str(e)) from e


def session(path: str | Path | bytes, threads: int, spin: bool = True):
    """An onnxruntime CPU session with the benchmark's fixed options (a path or model bytes)."""
    from hemoedge.pipeline import ort_session

    try:
        return ort_session(path, threads=threads, optimization=GRAPH_OPT, spin=spin)
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(f"{path}: onnxruntime cannot load it ({first[:200]})") from e


_NP = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
       "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
       "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def random_feeds(sess, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs of each declared shape (dynamic dims = 1): floats uniform 0..1, ints 0."""
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        dtype = _NP.get(i.type)
        if dtype is None:
            raise BenchError(f"input {i.name!r} has type {i.type}; the harness makes only "
                             f"{sorted(_NP)}")
        if np.issubdtype(dtype, np.floating):
            feeds[i.name] = rng.random(shape, dtype=np.float32).astype(dtype)
        else:
            feeds[i.name] = np.zeros(shape, dtype)
    return feeds


def _real_feeds(sess, arrays: list[np.ndarray]) -> list[dict[str, np.ndarray]] | None:
    """The given (1, C, H, W) arrays as feeds when the model has one matching input."""
    ins = sess.get_inputs()
    if len(ins) != 1 or not arrays:
        return None
    i = ins[0]
    want = [d if isinstance(d, int) and d > 0 else None for d in i.shape]
    if len(want) != arrays[0].ndim or any(w not in (None, s) for w, s in
                                          zip(want, arrays[0].shape, strict=True)):
        return None
    dtype = _NP.get(i.type, np.float32)
    return [{i.name: a.astype(dtype)} for a in arrays]


def _precision_of(path: Path) -> str:
    """fp32 / fp16 / int8 from an artifact file name, else guessed from the graph."""
    m = re.search(r"\.(fp32|fp16|int8)\.onnx$", path.name)
    if m:
        return m.group(1)
    model = _load_onnx(path)
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul"}:
        return "int8"
    if any(t.data_type == 10 for t in model.graph.initializer):  # TensorProto.FLOAT16
        return "fp16"
    return "fp32"


# ------------------------------------------------------------------------- frames

@dataclass
class Frames:
    images: list[np.ndarray]  # (H, W, 3) uint8 RGB camera-sized photos
    nails: list[tuple[float, float, float, float] | None]  # ground-truth nail xyxy, if known
    source: str


def load_frames(data: Path | None, k: int, seed: int) -> Frames:
    """Up to k photos (and their first nail box) from a Yakimov-layout folder; with no folder,
    synthesise k patients into a temporary folder (hemoedge.data.synth, seeded)."""
    from hemoedge.data import yakimov

    if data is None:
        from hemoedge.data.synth import synthesize

        with tempfile.TemporaryDirectory(prefix="hemoedge-bench-") as tmp:
            root = synthesize(Path(tmp) / "frames", patients=k, sessions=min(k, 2), seed=seed,
                              progress=False)
            fr = _frames_from(yakimov, root, k)
        fr.source = f"synthetic, {k} patients, seed {seed}"
        return fr
    return _frames_from(yakimov, Path(data), k)


def _frames_from(yakimov, root: Path, k: int) -> Frames:
    ds = yakimov.load(root)
    recs = ds.records[:k]
    if not recs:
        raise BenchError(f"{root}: no usable photos for the per-frame benchmark "
                         "(expected metadata.csv + photo/*.jpg in the Yakimov layout)")
    return Frames([yakimov.read_rgb(r.photo) for r in recs],
                  [(r.nail_xyxy() or [None])[0] for r in recs], str(root))


def _model_inputs(art: Artifact, frames: Frames) -> dict[str, list[np.ndarray]]:
    """Real inputs per role: letterboxed frames for the detector, preprocessed ground-truth
    nail crops (centre crop when there is no box) for the estimator."""
    from hemoedge.preprocess import crop, letterbox, resize_crop

    out: dict[str, list[np.ndarray]] = {}
    if "detector" in art.models:
        p = art.spec("detector").preprocess
        out["detector"] = [letterbox(im, p)[0] for im in frames.images]
    if "estimator" in art.models:
        p = art.spec("estimator").preprocess
        out["estimator"] = [resize_crop(crop(im, box or _centre(im)), p)
                            for im, box in zip(frames.images, frames.nails, strict=True)]
    return out


def _centre(img: np.ndarray) -> tuple[float, float, float, float]:
    h, w = img.shape[:2]
    return (w * 0.4, h * 0.4, w * 0.6, h * 0.6)


STAGES = ("letterbox", "detector", "decode", "crop_resize", "estimator")  # OnnxPipeline.frame


class FramePath:
    """The two-stage per-frame work exactly as the app runs it: hemoedge.pipeline.OnnxPipeline
    .frame (letterbox -> detector -> decode + NMS -> best nail -> crop + resize_crop ->
    estimator). When the detector finds no nail the app skips the estimator; here the
    ground-truth box (or the centre) is then cropped and estimated inside the same timed
    call, so every timed frame pays for both models. Calling it returns whether the detector
    found a nail. Stage times (STAGES, ms) of every frame go to `stage_ms` (for a frame
    without a nail, crop_resize and estimator are those of the fallback crop)."""

    def __init__(self, art: Artifact, det: str, est: str, threads: int, spin: bool = True,
                 sessions: Callable[[Path, int], Any] | None = None) -> None:
        from hemoedge.pipeline import OnnxPipeline

        det_path, est_path = art.path("detector", det), art.path("estimator", est)
        self.pipe = OnnxPipeline(det_path, est_path, threads)
        if sessions is not None or not spin:
            # this module's sessions have hemoedge.pipeline.session's options plus the spin
            # setting; `sessions` (e.g. a cache shared with the per-model jobs) saves memory
            make = sessions or (lambda path, t: session(path, t, spin))
            self.pipe.det, self.pipe.est = make(det_path, threads), make(est_path, threads)
        self.stage_ms: dict[str, list[float]] = {k: [] for k in STAGES}
        self.record = True  # False: calls are not added to stage_ms

    def reset(self) -> None:
        for v in self.stage_ms.values():
            v.clear()

    def __call__(self, img: np.ndarray, fallback: tuple[float, float, float, float]) -> bool:
        from hemoedge.preprocess import crop, resize_crop

        r = self.pipe.frame(img)
        ms = r.ms
        if r.nail is None:  # what OnnxPipeline.frame does after a detection, timed the same way
            t0 = time.perf_counter_ns()
            x = resize_crop(crop(img, fallback), self.pipe.est_spec.preprocess)
            t1 = time.perf_counter_ns()
            self.pipe.est.run(None, {self.pipe.est_spec.input_name: x})
            t2 = time.perf_counter_ns()
            ms = {**r.ms, "crop_resize": (t1 - t0) / 1e6, "estimator": (t2 - t1) / 1e6}
        if self.record:
            for k in STAGES:
                self.stage_ms[k].append(ms[k])
        return r.nail is not None


# ------------------------------------------------------------------------- work units

@dataclass(frozen=True)
class Unit:
    kind: str  # "model" (one ONNX file at t threads) or "frame" (a pairing at t threads)
    threads: int
    role: str = ""  # detector | estimator | model role
    precision: str = ""
    path: Path | None = None
    variant: str = ""
    det: str = ""  # frame units: detector precision
    est: str = ""  # frame units: estimator precision
    first_thread: bool = False  # emits the thread-independent flops.<role>.gflop

    @property
    def label(self) -> str:
        return f"{self.variant} @{self.threads}t" + (" frame" if self.kind == "frame" else "")


def units(cfg: CpuBenchConfig, art: Artifact | None) -> list[Unit]:
    """Every unit in a fixed order (artifact models, --model, pairings), then the shard."""
    out: list[Unit] = []
    if art is not None:
        for role in ROLES:
            for p in art.precisions(role):
                for k, t in enumerate(cfg.threads):
                    out.append(Unit("model", t, role, p, art.path(role, p, verify=False),
                                    role_variant(role, p), first_thread=k == 0))
    if cfg.model is not None:
        role = _role_of(cfg.model)
        for k, t in enumerate(cfg.threads):
            out.append(Unit("model", t, role, _precision_of(cfg.model), cfg.model,
                            f"model={cfg.model.stem}", first_thread=k == 0))
    if art is not None:
        for d in art.precisions("detector"):
            for e in art.precisions("estimator"):
                for t in cfg.threads:
                    out.append(Unit("frame", t, variant=variant_name(d, e), det=d, est=e))
    if cfg.shard is not None:
        i, n = cfg.shard
        out = out[i - 1::n]
    return out


def _role_of(path: Path) -> str:
    """The ModelSpec role from the file's metadata_props (hemoedge exports), else "model"."""
    from hemoedge.spec import METADATA_KEY

    for p in _load_onnx(path).metadata_props:
        if p.key == METADATA_KEY:
            try:
                role = json.loads(p.value).get("role", "")
            except json.JSONDecodeError:
                role = ""
            if role in ROLES:
                return role
    return "model"


# ------------------------------------------------------------------------- measuring

def _params(u: Unit, cfg: CpuBenchConfig) -> dict[str, Any]:
    """Metric params: the thread count, and spin=False only when spin-wait was turned off (so
    the default run's metric keys stay {"threads": t})."""
    return {"threads": u.threads} if cfg.spin else {"threads": u.threads, "spin": False}


@dataclass
class _Job:
    """One unit ready to time: `call` is one timed operation, `finish` turns the samples
    (ms) into metrics; `recording` is False during untimed calls."""

    unit: Unit
    call: Callable[[], Any]
    finish: Callable[[np.ndarray], None]
    recording: list[bool] = field(default_factory=lambda: [True])


def _model_job(u: Unit, cfg: CpuBenchConfig, arrays: list[np.ndarray] | None, res: Results,
               pk: dict[str, Any], flops: FlopCount, sessions: Callable[[Path, int], Any]) -> _Job:
    """Cold start, memory and FLOPs now; latency later, through the returned job."""
    assert u.path is not None  # model units always carry their file
    prefix, kw = f"cpu.{u.role}", _params(u, cfg)
    sess = sessions(u.path, u.threads)
    inputs = _real_feeds(sess, arrays) if arrays else None
    res.env.setdefault("cpu_inputs", {})[u.variant] = "real" if inputs else "random"
    if not inputs:  # --model files, or a model whose input does not match its spec
        inputs = [random_feeds(sess, np.random.default_rng([cfg.seed, k]))
                  for k in range(cfg.frames)]
    # cold start: a fresh session + its first run, cold_starts times
    cold = []
    for _ in range(cfg.cold_starts):
        t = Timer()
        with t:
            session(u.path, u.threads, cfg.spin).run(None, inputs[0])
        cold.append(t.ms[0])
    s = summarize(cold, seed=cfg.seed)
    res.add(f"{prefix}.cold_start_ms", u.variant, s.p50, unit="ms", better="lower", n=s.n,
            ci95=list(s.ci95), **kw)
    if u.first_thread:
        res.add(f"flops.{u.role}.gflop", u.variant, flops.gflop, unit="GFLOP", better="none")
    if cfg.memory:
        rss = _peak_rss(u.path, u.threads, min(cfg.runs, 20), cfg.spin)
        res.add(f"{prefix}.peak_rss_bytes", u.variant, rss["peak"], unit="bytes",
                better="lower", n=1, **kw)
        res.add(f"{prefix}.peak_rss_delta_bytes", u.variant, rss["peak"] - rss["before"],
                unit="bytes", better="lower", n=1, **kw)
    it = iter(range(1 << 62))

    def call() -> None:
        sess.run(None, inputs[next(it) % len(inputs)])

    def finish(ms: np.ndarray) -> None:
        lat = summarize(ms, seed=cfg.seed)
        lat.add_to(res, f"{prefix}.latency_ms", u.variant, **kw)
        if flops.flops > 0:
            _efficiency(res, prefix, u, lat, flops, pk, kw)

    return _Job(u, call, finish)


def _efficiency(res: Results, prefix: str, u: Unit, lat: Summary, flops: FlopCount,
                pk: dict[str, Any], kw: dict[str, Any]) -> None:
    cores = min(u.threads, machine()["cores"])
    key = "gflops_per_core_int8" if u.precision == "int8" else "gflops_per_core_fp32"
    peak_gflops = pk[key] * cores  # env.cpu_peak says how; not a param (keys stay stable)

    def rate(ms: float) -> float:
        return flops.gflop / (ms / 1e3)

    ci = [rate(lat.ci95[1]), rate(lat.ci95[0])]  # a slower median gives a lower rate
    res.add(f"{prefix}.gflops_per_s", u.variant, rate(lat.p50), unit="GFLOP/s",
            better="higher", n=lat.n, ci95=ci, **kw)
    if peak_gflops > 0:  # 0 only with no clock found and no sgemm measured
        res.add(f"{prefix}.efficiency", u.variant, rate(lat.p50) / peak_gflops,
                unit="fraction", better="higher", n=lat.n,
                ci95=[c / peak_gflops for c in ci], **kw)


def _frame_job(u: Unit, cfg: CpuBenchConfig, art: Artifact, frames: Frames, res: Results,
               sessions: Callable[[Path, int], Any]) -> _Job:
    kw = _params(u, cfg)
    fp = FramePath(art, u.det, u.est, u.threads, cfg.spin, sessions)
    fallbacks = [b or _centre(im) for im, b in zip(frames.images, frames.nails, strict=True)]
    k = len(frames.images)
    it = iter(range(1 << 62))
    found: list[bool] = []
    job = _Job(u, lambda: None, lambda ms: None)

    def call() -> None:
        i = next(it) % k
        fp.record = job.recording[0]
        hit = fp(frames.images[i], fallbacks[i])
        if job.recording[0]:
            found.append(hit)

    def finish(ms: np.ndarray) -> None:
        summarize(ms, seed=cfg.seed).add_to(res, "cpu.frame_ms", u.variant, **kw)
        res.add("cpu.frame.nail_found_rate", u.variant, float(np.mean(found)),
                unit="fraction", better="higher", n=len(found), **kw)
        for stage, st_ms in fp.stage_ms.items():  # where a frame's time goes
            if st_ms:
                st = summarize(st_ms, seed=cfg.seed)
                res.add(f"cpu.frame.{stage}_ms.p50", u.variant, st.p50, unit="ms",
                        better="lower", n=st.n, ci95=list(st.ci95), **kw)

    job.call, job.finish = call, finish
    return job


def _time_jobs(jobs: list[_Job], cfg: CpuBenchConfig, step: Callable[[], Any]) -> None:
    """Warm every job up, then time them round-robin in blocks of cfg.block runs (one
    untimed call before each block absorbs the switch from the previous job: caches, and
    the previous session's spinning threads), so slow drifts in machine load hit every
    variant alike instead of whichever happened to run during them."""
    for j in jobs:
        j.recording[0] = False
        for _ in range(cfg.warmup):
            j.call()
            step()
    samples: dict[int, list[np.ndarray]] = {id(j): [] for j in jobs}
    block = cfg.block or cfg.runs
    done = 0
    while done < cfg.runs:
        b = min(block, cfg.runs - done)
        for j in jobs:
            j.recording[0] = False
            j.call()
            j.recording[0] = True
            samples[id(j)].append(Timer.measure(j.call, b, 0, on_step=step))
        done += b
    for j in jobs:
        j.finish(np.concatenate(samples[id(j)]))


def _peak_rss(path: Path, threads: int, runs: int, spin: bool = True) -> dict[str, int]:
    """Peak RSS of a fresh interpreter that loads only this model and runs it `runs` times."""
    cmd = [sys.executable, "-m", "hemoedge.bench.cpu", "--rss-child", str(path), str(threads),
           str(runs), str(int(spin))]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{path}: the peak-RSS child process timed out after 600 s") from e
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"{path}: the peak-RSS child process failed ({tail})")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _vm_kb(field_name: str) -> int:
    m = re.search(rf"^{field_name}:\s*(\d+)\s*kB", _read("/proc/self/status"), re.M)
    return int(m.group(1)) * 1024 if m else 0


def _rss_child(argv: list[str]) -> int:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across fork + exec, so a
    # child would report the (larger) benchmarking parent's RSS at fork time.
    path, threads, runs, spin = argv[0], int(argv[1]), int(argv[2]), argv[3] == "1"
    import onnxruntime  # noqa: F401  (counted in `before`, like numpy)

    before = _vm_kb("VmRSS")
    sess = session(path, threads, spin)
    feeds = random_feeds(sess, np.random.default_rng(0))
    for _ in range(runs):
        sess.run(None, feeds)
    print(json.dumps({"peak": _vm_kb("VmHWM"), "before": before}))
    return 0


# ------------------------------------------------------------------------- entry points

def run(cfg: CpuBenchConfig) -> Results:
    """Measure every unit of this shard; return the new metrics, variants and environment."""
    art = Artifact.load(cfg.art) if cfg.art is not None else None
    if cfg.model is not None:
        _load_onnx(cfg.model)  # fail on a bad file before any timing
    work = units(cfg, art)
    if art is not None:  # every artifact file this shard reads, against the manifest
        for u in work:
            if u.kind == "frame":
                art.path("detector", u.det), art.path("estimator", u.est)
            elif u.path is not None and u.variant.startswith(("det=", "est=")):
                art.verify(u.path.name)
    for path in sorted({u.path for u in work if u.path is not None}):
        _load_onnx(path)
    res = Results(env=environment(cfg))
    if cfg.command:
        res.commands.append(cfg.command)
    pk = res.env["cpu_peak"]
    need_frames = art is not None and any(u.kind == "frame" or u.role in ROLES for u in work)
    frames = load_frames(cfg.data, cfg.frames, cfg.seed) if need_frames else None
    if frames is not None:
        res.env["cpu_frames"] = frames.source
    real = _model_inputs(art, frames) if frames is not None else {}
    flops_cache: dict[Path, FlopCount] = {}
    cache_: dict[tuple[Path, int], Any] = {}

    def sessions(path: Path, threads: int):  # one session per file x threads, shared by jobs
        if (path, threads) not in cache_:
            cache_[path, threads] = session(path, threads, cfg.spin)
        return cache_[path, threads]

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    blocks = -(-cfg.runs // (cfg.block or cfg.runs))  # ceil: one untimed call per block
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not cfg.progress, transient=True) as bar:
        prep = bar.add_task("bench cpu: cold starts, memory", total=len(work))
        jobs: list[_Job] = []
        for u in work:
            bar.update(prep, description=f"bench cpu: preparing {u.label}")
            if u.kind == "frame":
                assert art is not None and frames is not None  # units() makes frames only then
                res.variants.setdefault(u.variant, {}).update(
                    detector=art.path("detector", u.det).name,
                    estimator=art.path("estimator", u.est).name)
                jobs.append(_frame_job(u, cfg, art, frames, res, sessions))
            else:
                assert u.path is not None
                in_art = u.variant.startswith(("det=", "est="))  # else a --model file
                key = u.role if in_art else "model"
                res.variants.setdefault(u.variant, {})[key] = (
                    u.path.name if in_art else str(u.path))
                if u.path not in flops_cache:
                    flops_cache[u.path] = count_flops(u.path)
                jobs.append(_model_job(u, cfg, real.get(u.role) if in_art else None, res, pk,
                                       flops_cache[u.path], sessions))
            bar.advance(prep)
        timing = bar.add_task(f"bench cpu: timing {len(jobs)} variants, interleaved",
                              total=len(jobs) * (cfg.warmup + cfg.runs + blocks))
        _time_jobs(jobs, cfg, lambda: bar.advance(timing))
    return res


def _command(args: Any) -> str:
    """The invoking command (`results.invocation`); rebuilt from `args` only when the stage is
    called without the command line (tests)."""
    if getattr(args, "invocation", None):
        return args.invocation
    parts = ["hemoedge", "bench", "cpu"]
    if getattr(args, "data", None):
        parts.append(f"--data={args.data}")  # for when cli.py gains --data
    elif os.environ.get("HEMOEDGE_DATA"):
        parts.insert(0, f"HEMOEDGE_DATA={os.environ['HEMOEDGE_DATA']}")
    if getattr(args, "art", None):
        parts.append(str(args.art))
    parts += ["--threads", ",".join(str(t) for t in args.threads)]
    if getattr(args, "model", None):
        parts += ["--model", str(args.model)]
    if getattr(args, "quick", False):
        parts.append("--quick")
    else:
        parts += ["--runs", str(args.runs), "--warmup", str(args.warmup)]
    if getattr(args, "shard", None):
        parts += ["--shard", f"{args.shard[0]}/{args.shard[1]}"]
    if getattr(args, "no_spin", False):
        parts.append("--no-spin")
    if getattr(args, "results", None):
        parts += ["--results", str(args.results)]
    return shlex.join(parts)


def config_from_args(args: Any) -> CpuBenchConfig:
    quick = bool(getattr(args, "quick", False))
    data = getattr(args, "data", None) or os.environ.get("HEMOEDGE_DATA") or None
    return CpuBenchConfig(
        art=Path(args.art) if getattr(args, "art", None) else None,
        model=Path(args.model) if getattr(args, "model", None) else None,
        threads=tuple(args.threads), data=Path(data) if data else None,
        warmup=QUICK_WARMUP if quick else args.warmup, runs=QUICK_RUNS if quick else args.runs,
        cold_starts=profile(quick).cold_starts, shard=getattr(args, "shard", None),
        spin=not getattr(args, "no_spin", False),
        progress=sys.stderr.isatty(), command=_command(args))


def results_path(args: Any) -> Path | None:
    """--results, else ART/results.json; None for `--model` alone (nothing is written beside
    a model file nobody asked to write to)."""
    if getattr(args, "results", None):
        return Path(args.results)
    if getattr(args, "art", None):
        return Path(args.art) / "results.json"
    return None


def cli(args: Any) -> int:
    cfg = config_from_args(args)
    new = run(cfg)
    out = results_path(args)
    if out is None:
        _print_table(new)
        print(f"{len(new.metrics)} metrics measured; not written (add --results FILE to keep them)")
        return 0
    merge_stage(out, new)  # a re-run replaces its figures; this run's machine wins
    _print_table(new)
    print(f"{len(new.metrics)} metrics appended to {out}")
    return 0


def _print_table(res: Results) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table("metric", "variant", "threads", "p50 ms", "95 % CI", "p90 ms", "n")
    for m in res.metrics:
        if m.name.endswith(".p50"):
            p90 = res.get(m.name[:-4] + ".p90", m.variant, **m.params)
            ci = f"{m.ci95[0]:.2f}-{m.ci95[1]:.2f}" if m.ci95 else ""
            t.add_row(m.name[:-4], m.variant, str(m.params.get("threads", "")),
                      f"{m.value:.2f}", ci, f"{p90.value:.2f}" if p90 else "", str(m.n))
    Console(width=max(Console().width, 120)).print(t)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--rss-child":
        try:
            sys.exit(_rss_child(sys.argv[2:]))
        except HemoedgeError as e:
            print(f"hemoedge: error: {e}", file=sys.stderr)
            sys.exit(2)
    print("usage: hemoedge bench cpu ART (this module's own entry is internal)", file=sys.stderr)
    sys.exit(2)
