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

Peak FLOP/s (results.env["cpu_peak"]) and the machine: hemoedge.bench.machine; FLOP counting:
hemoedge.bench.flops; sessions, feeds and frames: hemoedge.bench.cpu_inputs; the peak-memory
child process: hemoedge.bench.peakmem (its entry point is this module's `--rss-child`). "cores"
is min(threads, usable cores).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.artifact import Artifact
from hemoedge.bench.cpu_inputs import (  # noqa: F401  (re-exported: bench cpu's public names)
    _NP,
    GRAPH_OPT,
    STAGES,
    FramePath,
    Frames,
    _centre,
    _load_onnx,
    _model_inputs,
    _precision_of,
    _real_feeds,
    load_frames,
    random_feeds,
    session,
)
from hemoedge.bench.flops import _MAC_OPS, FlopCount, count_flops  # noqa: F401
from hemoedge.bench.machine import ISA_FLAGS, machine, measure_sgemm, peak  # noqa: F401
from hemoedge.bench.peakmem import _peak_rss, _rss_child, _vm_kb  # noqa: F401
from hemoedge.bench.stats import Summary, Timer, summarize
from hemoedge.errors import BenchError, HemoedgeError
from hemoedge.names import ROLE_KEY, ROLES, role_variant
from hemoedge.profile import QUICK, profile
from hemoedge.report.results import Results, merge_stage, variant_name

log = logging.getLogger(__name__)

QUICK_WARMUP, QUICK_RUNS = QUICK.bench_warmup, QUICK.bench_runs
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
    sizes = {} if quick else {"warmup": args.warmup, "runs": args.runs}  # quick: the profile's
    return profile(quick).cpu_bench_config(
        art=Path(args.art) if getattr(args, "art", None) else None,
        data=Path(data) if data else None,
        model=Path(args.model) if getattr(args, "model", None) else None,
        threads=tuple(args.threads), shard=getattr(args, "shard", None),
        spin=not getattr(args, "no_spin", False), command=_command(args), **sizes)


def results_path(args: Any) -> Path | None:
    """--results, else ART/results.json; None for `--model` alone (nothing is written beside
    a model file nobody asked to write to)."""
    if getattr(args, "results", None):
        return Path(args.results)
    if getattr(args, "art", None):
        return Path(args.art) / "results.json"
    return None


def cli(args: Any) -> int:
    return main(config_from_args(args), results_path(args))


def main(cfg: CpuBenchConfig, results: Path | None = None) -> int:
    """`hemoedge bench cpu` once its config is known: figures into `results` (default
    ART/results.json; with `--model` alone, printed only)."""
    new = run(cfg)
    out = results if results is not None else (cfg.art / "results.json" if cfg.art else None)
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
