"""Same bytes on another instruction set, measured: the same code run natively (AVX-512) and
under qemu-user emulating an AVX2 + FMA CPU without AVX-512 (`-cpu Haswell`), where numpy,
PyTorch and onnxruntime each pick their AVX2 code paths.

What is compared: the exported estimator (BatchNormalization folded), synthetic photos, the
calibration range grid, and a whole int8 quantisation (calibration, accuracy-aware search on
the reference, the written files). Before the export folded BatchNormalization itself, the
estimator's weights differed in the last bit between the two (docs/quantize.md).

Skipped where it would prove nothing: without qemu-user, or on a host without AVX-512 (qemu's
TCG emulates AVX2 but not AVX-512, so both runs would take the same paths).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

QEMU = shutil.which("qemu-x86_64")


def _host_avx512() -> bool:
    try:
        return " avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


pytestmark = [
    pytest.mark.skipif(QEMU is None, reason="qemu-user (qemu-x86_64) not installed"),
    pytest.mark.skipif(not _host_avx512(), reason="host has no AVX-512: qemu cannot show "
                                                  "another instruction set than the host's"),
]

SCRIPT = r"""
import hashlib, json, sys, tempfile
from pathlib import Path
import numpy as np

sys.path.insert(0, sys.argv[1])  # tests/quantize: qtiny
features = np._core._multiarray_umath.__cpu_features__
out = {"avx512f": bool(features.get("AVX512F")), "avx2": bool(features.get("AVX2"))}

def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]

# the calibration range grid
from hemoedge.quantize.int8 import snap_range
r = np.random.default_rng(1)
lo, hi = snap_range(-r.lognormal(0, 3, 50000).astype(np.float32),
                    r.lognormal(0, 3, 50000).astype(np.float32))
out["range_grid"] = sha(lo.tobytes() + hi.tobytes())

# the SQNR figures that rank the search's candidates
from hemoedge.quantize.sensitivity import _sqnr
sig = r.normal(size=(64, 8, 50))
db = [_sqnr(sig, sig * r.uniform(1e-3, 0.3, size=(64, 1, 1)) * r.normal(size=sig.shape),
            axis_sum=(1, 2)) for _ in range(4)]
out["sqnr"] = sha(np.concatenate(db).tobytes())

# synthetic photos (rendered with exp, log, sin, cos, powers): the float render itself, which
# shows a last-bit difference that 8-bit rounding hides in most photos, and a small set on disk
from hemoedge.data import render
from hemoedge.data.synth import synthesize
h = hashlib.sha256()
for i in range(3):
    s = render.random_session(np.random.default_rng([9, i]), "s")
    p = render.Patient(7.0 + 3 * i, 0.5 * i, (1.0, 0.97, 1.03), seed=100 + i)
    lin, nails, _ = render.render(p, s)
    h.update(lin.tobytes() + s.camera_gain().tobytes())
    h.update(render.camera(lin, s, np.random.default_rng(i)).tobytes() + str(nails).encode())
out["render"] = h.hexdigest()[:16]
with tempfile.TemporaryDirectory() as d:
    root = synthesize(Path(d) / "set", patients=3, sessions=1, seed=5, progress=False)
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    out["synth"] = h.hexdigest()[:16]

# the exported estimator (default checkpoint)
from hemoedge.export.onnx_export import torch_to_onnx
from hemoedge.models import estimator as est_mod
from hemoedge.spec import estimator_spec
m, info = est_mod.load(None)
out["estimator_export"] = sha(torch_to_onnx(m, estimator_spec(size=info["input_size"],
                                                              task=info["task"])))

# a whole int8 quantisation of the tiny models
import qtiny
from hemoedge.artifact import Artifact
from hemoedge.quantize import run
records, _, read = qtiny.dataset()
with tempfile.TemporaryDirectory() as d:
    art = qtiny.make_art(Path(d) / "art")
    run.run(run.QuantizeConfig(art=art, variants=("int8",), samples=12, val_samples=6,
                               max_size_ratio=None, float_decode=False),
            splits=qtiny.splits(records), read=read)
    files = Artifact.load(art).files
    out["int8"] = {k: [v["sha256"], [e["name"] for e in v["quantization"]["excluded_nodes"]],
                       v["quantization"]["measured_val_error"]]
                   for k, v in sorted(files.items()) if k.endswith(".int8.onnx")}
print("RESULT " + json.dumps(out))
"""


def _run(emulate: bool) -> dict:
    tests_q = str(Path(__file__).parent / "quantize")
    cmd = [sys.executable, "-c", SCRIPT, tests_q]
    if emulate:
        cmd = [QEMU, "-cpu", "Haswell", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, (p.returncode, p.stderr[-2000:])
    return json.loads(lines[-1][len("RESULT "):])


def test_same_bytes_under_an_emulated_avx2_cpu():
    here, other = _run(False), _run(True)
    # the contrast is real: numpy dispatches AVX-512 code here and not under the emulator
    assert here["avx512f"] and not other["avx512f"] and other["avx2"]
    for key in ("range_grid", "sqnr", "render", "synth", "estimator_export", "int8"):
        assert other[key] == here[key], key
