"""Regressions injected on purpose, to prove that the CI gate catches them (ci/prove_gate.py,
tests/test_gate_quick.py). Nothing here runs in a normal pipeline.

    slow_down(model, matmuls)       extra real work on the output path, output unchanged
    perturb_head(model, rel)        noise on the estimator's Ridge head weights (Hb gets worse)
    rewrite(art, role, precision, transform, note)   apply one to an artifact file in place
    calibrate_slowdown(path, factor)                  how many extra MatMuls make it `factor`x

The slowed graph computes, from the model's own input,

    y0 = Reshape(input, [-1, width]);  y_i = MatMul(y_{i-1}, Q)  (i = 1..k, Q orthogonal)
    output' = output + 0 * ReduceMean(y_k)

Every MatMul depends on the input, so onnxruntime cannot constant-fold the chain; the inputs of
the k MatMuls differ, so common-subexpression elimination cannot merge them; Q is orthogonal,
so y_k keeps the input's norm (never inf, so 0 * y stays exactly 0 and the output is
bit-identical); onnxruntime has no "multiply by zero" rewrite. One Q is shared by all k MatMuls
so the file grows by width^2 * 4 bytes only (64 KiB at width 128): a size budget must not be
what catches a slowdown. `verify_slowdown` checks all of this by timing and by reading
onnxruntime's optimised graph.
"""

from __future__ import annotations

import copy
import logging
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hemoedge.artifact import Artifact, file_name
from hemoedge.errors import BenchError

log = logging.getLogger(__name__)

PREFIX = "hemoedge_inject"  # names of every node/initializer this module adds
HEAD_WEIGHT = "head.weight"  # the estimator's Ridge head (hemoedge.models.estimator export)


def slow_down(model, matmuls: int, width: int = 128, seed: int = 0):
    """A copy of `model` (onnx.ModelProto) doing `matmuls` extra (N, width) @ (width, width)
    MatMuls on its first input, added to its first output times zero."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if matmuls < 1:
        raise BenchError(f"slow_down needs matmuls >= 1, got {matmuls}")
    m = copy.deepcopy(model)
    g = m.graph
    inp, out = g.input[0], g.output[0]
    for vi, what in ((inp, "input"), (out, "output")):
        if vi.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise BenchError(f"slow_down supports float32 {what}s only; {vi.name!r} is "
                             f"{TensorProto.DataType.Name(vi.type.tensor_type.elem_type)}")
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    if not dims or any(d <= 0 for d in dims) or math.prod(dims) % width:
        raise BenchError(f"slow_down needs a static input whose size divides by {width}; "
                         f"{inp.name!r} has shape {dims}")
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((width, width)))
    p = PREFIX
    g.initializer.extend([
        numpy_helper.from_array(np.array([-1, width], np.int64), f"{p}_shape"),
        numpy_helper.from_array(q.astype(np.float32), f"{p}_q"),
        numpy_helper.from_array(np.array(0.0, np.float32), f"{p}_zero"),
    ])
    pre = f"{p}_{out.name}_pre"
    for node in g.node:  # the original producer now writes `pre`; `out` is rebuilt below
        node.output[:] = [pre if o == out.name else o for o in node.output]
        node.input[:] = [pre if i == out.name else i for i in node.input]
    nodes = [helper.make_node("Reshape", [inp.name, f"{p}_shape"], [f"{p}_y0"],
                              name=f"{p}_reshape")]
    for i in range(1, matmuls + 1):
        nodes.append(helper.make_node("MatMul", [f"{p}_y{i - 1}", f"{p}_q"], [f"{p}_y{i}"],
                                      name=f"{p}_matmul{i}"))
    nodes += [
        helper.make_node("ReduceMean", [f"{p}_y{matmuls}"], [f"{p}_mean"], keepdims=0,
                         name=f"{p}_mean"),
        helper.make_node("Mul", [f"{p}_mean", f"{p}_zero"], [f"{p}_nothing"], name=f"{p}_mul0"),
        helper.make_node("Add", [pre, f"{p}_nothing"], [out.name], name=f"{p}_add"),
    ]
    g.node.extend(nodes)
    helper.set_model_props(m, {**{x.key: x.value for x in m.metadata_props},
                               f"{p}.slow_down": f"matmuls={matmuls} width={width}"})
    onnx.checker.check_model(m)
    return m


def perturb_head(model, rel: float = 0.5, seed: int = 0, weight: str = HEAD_WEIGHT,
                 shrink: float = 0.0):
    """A copy of `model` whose initializer `weight` gets multiplicative Gaussian noise and an
    optional shrink towards zero (an under-fitted head, e.g. a wrong ridge alpha):
    w * (1 - shrink) * (1 + rel * N(0, 1)), seeded. Noise alone barely moves the Hb MAE of
    a trained head (1280 correlated positive features average it out), so the proof uses
    both. float16 weights stay float16. In a QDQ int8 model whose
    head was quantised (`<weight>_quantized` + `_scale` + `_zero_point`), the dequantised
    weights get the same noise and are quantised back with the same scale and zero point."""
    from onnx import helper, numpy_helper

    m = copy.deepcopy(model)
    inits = {t.name: t for t in m.graph.initializer}
    q = f"{weight}_quantized"
    if weight not in inits and q not in inits:
        names = [t.name for t in m.graph.initializer if "head" in t.name][:8]
        raise BenchError(f"no initializer {weight!r} (or {q!r}) to perturb (initializers with "
                         f"'head' in the name: {names or 'none'})")
    rng = np.random.default_rng(seed)
    if weight in inits:
        w = numpy_helper.to_array(inits[weight])
        w2 = (w.astype(np.float64) * (1 - shrink) * (1 + rel * rng.standard_normal(w.shape))
              ).astype(w.dtype)
        inits[weight].CopyFrom(numpy_helper.from_array(w2, weight))
    else:
        qw = numpy_helper.to_array(inits[q])
        scale = numpy_helper.to_array(inits[f"{weight}_scale"]).astype(np.float64)
        zp = numpy_helper.to_array(inits[f"{weight}_zero_point"]).astype(np.float64)
        if scale.ndim == 1 and qw.ndim > 1:  # per-channel along axis 0
            scale = scale.reshape((-1,) + (1,) * (qw.ndim - 1))
            zp = zp.reshape(scale.shape)
        w = (qw.astype(np.float64) - zp) * scale
        w2 = w * (1 - shrink) * (1 + rel * rng.standard_normal(w.shape))
        info = np.iinfo(qw.dtype)
        q2 = np.clip(np.round(w2 / scale + zp), info.min, info.max).astype(qw.dtype)
        inits[q].CopyFrom(numpy_helper.from_array(q2, q))
    helper.set_model_props(m, {**{x.key: x.value for x in m.metadata_props},
                               f"{PREFIX}.perturb_head": f"rel={rel} shrink={shrink} "
                                                         f"seed={seed}"})
    return m


def rewrite(art_dir: str | Path, role: str, precision: str, transform: Callable,
            note: str) -> Path:
    """Apply transform(ModelProto) -> ModelProto to one artifact file in place and refresh its
    manifest entry (bytes, sha256), keeping its quantisation facts and noting the injection."""
    import onnx

    art = Artifact.load(art_dir)
    path = art.path(role, precision)
    onnx.save(transform(onnx.load(str(path))), str(path))
    old = art.files[file_name(role, precision)]
    extra = {k: v for k, v in old.items()
             if k not in ("model", "precision", "quantization") and k not in _described(path)}
    art.add_file(role, precision, old.get("quantization"), **extra, injected=note)
    art.save()
    return path


def _described(path: Path) -> set[str]:
    from hemoedge.artifact import describe_onnx

    return set(describe_onnx(path))


# --- verification -------------------------------------------------------------------------

def _time(model_or_path, threads: int, runs: int, warmup: int = 3) -> float:
    """Fastest ms of `runs` session.run calls with random inputs (the CPU benchmark's session
    options). The minimum, not the median: other processes on a shared machine only ever
    add time, so the minimum is the steadiest estimate of the work itself."""
    from hemoedge.bench.cpu import random_feeds, session
    from hemoedge.bench.stats import Timer

    src = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") \
        else model_or_path
    sess = session(src, threads)
    feeds = random_feeds(sess, np.random.default_rng(0))
    return float(np.min(Timer.measure(lambda: sess.run(None, feeds), runs, warmup)))


def optimised_matmuls(model, threads: int = 1) -> int:
    """How many of our MatMuls survive in onnxruntime's optimised graph (ORT_ENABLE_ALL)."""
    import onnx

    from hemoedge.pipeline import ort_session

    with tempfile.TemporaryDirectory(prefix="hemoedge-inject-") as tmp:
        opt_path = Path(tmp) / "opt.onnx"
        ort_session(model.SerializeToString(), threads=threads, optimization="ORT_ENABLE_ALL",
                    optimized_model_path=opt_path)
        opt = onnx.load(str(opt_path))
    return sum(1 for n in opt.graph.node if n.name.startswith(f"{PREFIX}_matmul")
               or (n.op_type in ("MatMul", "FusedMatMul") and any(
                   i == f"{PREFIX}_q" for i in n.input)))


@dataclass(frozen=True)
class Slowdown:
    matmuls: int  # extra MatMuls inserted
    base_ms: float  # fastest ms of the original model (threads, random inputs)
    slow_ms: float  # fastest ms of the slowed model
    per_matmul_ms: float  # measured cost of one extra MatMul
    kept_in_optimised_graph: int  # our MatMuls left after onnxruntime's optimiser
    max_abs_output_change: float  # slowed vs original output on the same input (0 expected)

    @property
    def factor(self) -> float:
        return self.slow_ms / self.base_ms


def calibrate_slowdown(path: str | Path, factor: float, threads: int = 2, runs: int = 30,
                       width: int = 128, probe: int = 4) -> int:
    """Extra MatMuls that make the model at `path` about `factor` times slower, from a
    timed probe with `probe` MatMuls. Raises if the probe is not measurably slower."""
    import onnx

    if factor <= 1:
        raise BenchError(f"a slowdown factor must be > 1, got {factor}")
    model = onnx.load(str(path))
    base = _time(str(path), threads, runs)
    slow = _time(slow_down(model, probe, width), threads, runs)
    per = (slow - base) / probe
    if per <= 0.01 * base / probe:
        raise BenchError(f"{path}: {probe} extra MatMuls did not slow it down measurably "
                         f"({base:.3f} -> {slow:.3f} ms); was the chain optimised away?")
    return max(1, math.ceil((factor - 1) * base / per))


def verify_slowdown(path: str | Path, matmuls: int, threads: int = 2, runs: int = 30,
                    width: int = 128) -> Slowdown:
    """Time the original and the slowed model; check the optimiser kept the MatMuls and the
    output is unchanged."""
    import onnx

    from hemoedge.bench.cpu import random_feeds, session

    model = onnx.load(str(path))
    slow = slow_down(model, matmuls, width)
    kept = optimised_matmuls(slow, threads)
    base_ms, slow_ms = _time(str(path), threads, runs), _time(slow, threads, runs)
    a, b = session(str(path), 1), session(slow.SerializeToString(), 1)
    feeds = random_feeds(a, np.random.default_rng(1))
    diff = max(float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
               for x, y in zip(a.run(None, feeds), b.run(None, feeds), strict=True))
    per = (slow_ms - base_ms) / matmuls
    return Slowdown(matmuls, base_ms, slow_ms, per, kept, diff)
