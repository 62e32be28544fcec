"""The machine the CPU benchmark runs on: CPU model, ISA flags, cores, clock, and the peak
FLOP/s its figures are compared with (bench cpu's `cpu.<role>.efficiency`).

Peak FLOP/s: cores x GHz x FMA units x fp32 SIMD lanes x 2, with lanes from /proc/cpuinfo flags
(avx512f 16, avx2+fma 8, avx 8 without FMA, else 4), FMA units assumed 2 for AVX-512/AVX2 server
parts (1 for AVX/SSE), and the clock from, in order: cpufreq cpuinfo_max_freq, lscpu "CPU max
MHz", the "@ x.xxGHz" in the model name, /proc/cpuinfo "cpu MHz" -- raised to the lowest clock
consistent with a measured single-thread onnxruntime sgemm when that beats it. int8 models are
compared with the int8 peak: 4x fp32 with avx512_vnni/avx_vnni, 2x without; AMX is not counted.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.bench.cpu_inputs import session
from hemoedge.bench.stats import Timer

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
             "amx_bf16")



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
