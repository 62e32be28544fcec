"""`hemoedge sweep`: which estimator backbone (and task type) is worth shipping to the edge.

For every entry (a timm backbone, an input size, a task) the sweep calls the project's own
stages as a library (hemoedge.stages: a config and the function its command line calls) and
records for each the equivalent command, which a person can paste back to rerun it:

    train     hemoedge train --only estimator --backbone B --est-size S --task T ...
    export    hemoedge export --estimator <trained> --out <entry>/art
    detector  the shared detector (exported and quantised once) copied into the entry's artifact
    quantize  hemoedge quantize <entry>/art --roles estimator ...
    parity    hemoedge parity <entry>/art ...
    eval      hemoedge eval <entry>/art ...
    bench cpu hemoedge bench cpu <entry>/art --threads 2 ...
    bench web hemoedge bench web <entry>/art --threads 2 --quick --pairings int8:fp32,... --no-seed

Entries that share a backbone and input size train the backbone once: the second (e.g. the
classification head after the regression one) starts from the first's checkpoint with
`--est-epochs 0` and fits only its head on the same frozen features.

Before training, each entry is checked against the machine: fp32 weights above
--max-model-mb are skipped (too big to ship to a phone's browser), and so are entries whose
training, projected from two timed optimiser steps, would exceed --max-train-min. The reasons
are written into results.json and the report.

Resumable: every finished stage leaves a marker (<out>/entries/<label>/done/<stage>) and its
own results file; a rerun skips finished stages and reruns the one that was interrupted.
Shardable: --shard i/n takes entries i, i+n, ...; shards that share <out> merge themselves,
shards on separate machines merge with `hemoedge sweep --merge A/results.json B/results.json`.

Results: one results.json whose variant strings carry `backbone=<label>` (e.g.
"backbone=efficientnet_b0,det=int8,est=int8"), env["sweep"] describing every entry, plus
sweep.params_m and sweep.train_s per backbone; then the report (HTML + Markdown).

The entries, SweepConfig, the feasibility check and an entry's folder are in
hemoedge/sweep_entries.py (importable from here too).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from hemoedge.errors import HemoedgeError
from hemoedge.names import PRECISIONS, REFERENCE_PRECISION
from hemoedge.report.results import Results, command_line, invocation
from hemoedge.sweep_entries import (
    DEFAULT_ENTRIES,
    QUICK_ENTRIES,
    STAGES,
    WHO_THRESHOLD,
    Entry,
    EntryDir,
    SweepConfig,
    _count_train_crops,
    feasibility,
)

if TYPE_CHECKING:
    from hemoedge.stages import Stage

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ stages

Runner = Callable[["Stage"], int]


def library_runner(stage: Stage) -> int:
    """Run one stage as a library (hemoedge.stages): its config, its function."""
    return stage()


class Sweep:
    def __init__(self, cfg: SweepConfig, runner: Runner = library_runner,
                 say: Callable[[str], None] = lambda s: print(s, flush=True)):
        self.cfg = cfg
        self.run_stage = runner
        self.say = say
        self.data = cfg.data or cfg.out / "data"
        self.t0 = time.perf_counter()

    # -- shared inputs ----------------------------------------------------------------
    def prepare(self) -> tuple[Path, int]:
        """The data set and the shared detector artifact, inputs checked before anything is
        written: returns the detector artifact and the number of training crops."""
        from hemoedge import stages as st
        from hemoedge.export.onnx_export import ExportConfig

        cfg = self.cfg
        if cfg.data is not None:
            crops = _count_train_crops(self.data, cfg.seed)  # a bad --data stops here
        if cfg.detector_art is not None:
            from hemoedge.artifact import Artifact

            art = Artifact.load(cfg.detector_art)
            for p in (REFERENCE_PRECISION, cfg.det_precision):
                art.path("detector", p)  # a clear error if the variant is missing
        cfg.out.mkdir(parents=True, exist_ok=True)
        if cfg.data is None and not (self.data / "metadata.csv").is_file():
            if self.data.exists():  # an interrupted synthesis
                shutil.rmtree(self.data)
            self._run("data", st.synth(st.SynthConfig(
                out=self.data, patients=cfg.patients, sessions=cfg.profile.sweep_sessions,
                seed=cfg.seed + 1)))
        if cfg.data is None:
            crops = _count_train_crops(self.data, cfg.seed)
        if cfg.detector_art is not None:
            return cfg.detector_art, crops
        det = cfg.out / "detector"
        marker = det / ".sweep-done"
        if not marker.is_file():
            self._run("detector export", st.export(ExportConfig(out=det)))
            self._run("detector quantize", st.quantize(cfg.profile.quantize_config(
                det, self.data, roles=("detector",))))
            marker.write_text("done\n")
        return det, crops

    def _run(self, what: str, stage: Stage) -> str:
        cmd = stage.command
        self.say(f"==> {cmd}")
        code = self.run_stage(stage)
        if code not in (0, 1):  # 1 is a verdict (e.g. int8 missed its tolerance): keep going
            raise HemoedgeError(f"{what} failed with exit code {code}: {cmd}")
        return cmd

    # -- one entry ----------------------------------------------------------------------
    def plan(self, e: Entry, crops: int) -> dict:
        d = EntryDir(self.cfg.out, e)
        key = {"epochs": self.cfg.fine_tune_epochs, "max_train_min": self.cfg.max_train_min,
               "max_model_mb": self.cfg.max_model_mb, "train_crops": crops}
        if d.plan.is_file():
            p = json.loads(d.plan.read_text())
            if p.get("key") == key:
                return p
        self.say(f"[{e.label}] checking what it costs here (two timed training steps)")
        p = {"key": key, **feasibility(e, self.cfg, crops)}
        d.root.mkdir(parents=True, exist_ok=True)
        d.plan.write_text(json.dumps(p, indent=1) + "\n")
        return p

    def stage(self, stage: str, e: Entry, d: EntryDir, det_art: Path,
              init: Path | None) -> Stage:
        """The library call (config + function, hemoedge.stages) of one stage of one entry."""
        from hemoedge import stages as st
        from hemoedge.bench.accuracy import EvalConfig
        from hemoedge.export.onnx_export import ExportConfig
        from hemoedge.export.parity import ParityConfig

        cfg, data, pr = self.cfg, self.data, self.cfg.profile
        if stage == "train":
            return st.train(st.TrainConfig(
                only="estimator", data=data, out=d.train, backbone=e.backbone, est_size=e.size,
                task=e.task, anaemia_threshold=cfg.anaemia_threshold, seed=cfg.seed,
                est_epochs=0 if init else cfg.fine_tune_epochs,
                est_init=str(init) if init else None))
        if stage == "export":
            return st.export(ExportConfig(out=d.art, detector=_detector_fp32(det_art),
                                          estimator=d.train / "estimator.pt"))
        if stage == "quantize":
            return st.quantize(pr.quantize_config(d.art, data, roles=("estimator",)))
        res = d.results(stage)
        if stage == "parity":
            return st.parity(ParityConfig(art=d.art, data=data, images=pr.parity_images), res)
        if stage == "eval":
            return st.evaluate(EvalConfig(art=d.art, data=data), res)
        if stage == "bench cpu":
            return st.bench_cpu(pr.cpu_bench_config(d.art, data, threads=(cfg.threads,)), res)
        if stage == "bench web":
            from hemoedge.profile import QUICK

            ests = (REFERENCE_PRECISION, "int8") if cfg.quick else PRECISIONS
            return st.bench_web(QUICK.web_bench_config(
                d.art, threads=(cfg.threads,), seed=False,
                pairings=tuple((cfg.det_precision, p) for p in ests)), res)
        raise ValueError(stage)

    def argv(self, stage: str, e: Entry, d: EntryDir, det_art: Path,
             init: Path | None) -> list[str]:
        """The `hemoedge ...` argv equivalent to `stage(...)` (what is recorded)."""
        return self.stage(stage, e, d, det_art, init).argv

    def run_entry(self, e: Entry, det_art: Path, init: Path | None, k: int, n: int) -> dict:
        d = EntryDir(self.cfg.out, e)
        stages = self.cfg.stages
        for i, stage in enumerate(stages, 1):
            if d.done(stage):
                continue
            elapsed = (time.perf_counter() - self.t0) / 60
            self.say(f"[{k}/{n} {e.label}] stage {i}/{len(stages)}: {stage} "
                     f"({elapsed:.1f} min into the sweep)")
            t0 = time.perf_counter()
            d.results(stage).unlink(missing_ok=True)  # an interrupted attempt's partial figures
            if stage == "detector":
                from hemoedge.artifact import Artifact, copy_role

                names = copy_role(Artifact.load(det_art), Artifact.load(d.art), "detector")
                cmd = f"(copy {', '.join(names)} from {det_art})"
            else:
                if stage == "export" and d.art.exists():
                    shutil.rmtree(d.art)  # export refuses nothing, but start clean
                cmd = self._run(f"{e.label} {stage}", self.stage(stage, e, d, det_art, init))
            d.finish(stage, cmd, time.perf_counter() - t0,
                     **({"init": str(init)} if stage == "train" and init else {}))
        return {"status": "done", "reason": ""}

    # -- the whole sweep ------------------------------------------------------------------
    def run(self) -> tuple[Results, int]:
        cfg = self.cfg
        det_art, crops = self.prepare()
        mine = cfg.mine()
        status: dict[str, dict] = {}
        trained: dict[tuple[str, int], Path] = {}
        failed = 0
        for k, e in enumerate(mine, 1):
            p = self.plan(e, crops)
            if not p.get("ok"):
                self.say(f"[{k}/{len(mine)} {e.label}] skipped: {p['reason']}")
                status[e.label] = {"status": "skipped", "reason": p["reason"]}
                continue
            d = EntryDir(cfg.out, e)
            if d.done("train"):  # resumed: the marker says what it started from
                init = Path(d.stage_info("train")["init"]) if d.stage_info("train").get("init") \
                    else None
            else:
                init = trained.get((e.backbone, e.size))
            try:
                status[e.label] = self.run_entry(e, det_art, init, k, len(mine))
            except (HemoedgeError, RuntimeError, ValueError, OSError) as ex:
                failed += 1
                status[e.label] = {"status": "failed", "reason": f"{type(ex).__name__}: {ex}"}
                self.say(f"[{k}/{len(mine)} {e.label}] FAILED: {ex}")
                continue
            trained.setdefault((e.backbone, e.size), d.train / "estimator.pt")
        res = collect(cfg, status)
        out = cfg.out / "results.json"
        res.save(out)
        self.say(f"sweep results: {out} ({len(res.metrics)} metrics, "
                 f"{(time.perf_counter() - self.t0) / 60:.1f} min)")
        return res, failed


def _detector_fp32(art: Path) -> Path:
    from hemoedge.artifact import Artifact

    return Artifact.load(art).path("detector", "fp32")


# ------------------------------------------------------------------------------ results

def relabel(res: Results, label: str) -> Results:
    """Every variant string gains backbone=<label> (the run-wide "" becomes backbone=<label>)."""
    def v(x: str) -> str:
        return f"backbone={label}" + (f",{x}" if x else "")

    out = Results(env=dict(res.env), commands=list(res.commands))
    out.variants = {v(k): dict(files) for k, files in res.variants.items()}
    for m in res.metrics:
        m.variant = v(m.variant)
        out.metrics.append(m)
    return out


def entry_results(cfg: SweepConfig, e: Entry) -> Results | None:
    """The merged, relabelled results of a finished entry (None if it has not finished)."""
    d = EntryDir(cfg.out, e)
    stages = [s for s in STAGES if cfg.web or s != "bench web"]
    if not all(d.done(s) for s in stages):  # (--no-bench: evaluated, not yet benchmarked)
        return None
    res = Results()
    for s in stages:
        if d.results(s).is_file():
            res.extend(Results.load(d.results(s)))
        cmd = d.stage_info(s).get("command", "")
        if cmd.startswith("hemoedge ") and cmd not in res.commands:
            res.commands.append(cmd)
    out = relabel(res, e.label)
    plan = json.loads(d.plan.read_text()) if d.plan.is_file() else {}
    v = f"backbone={e.label}"
    if "params_m" in plan:
        out.add("sweep.params_m", v, plan["params_m"], "M", "lower")
    train = json.loads((d.train / "train_summary.json").read_text()) \
        if (d.train / "train_summary.json").is_file() else {}
    t = d.stage_info("train").get("seconds")
    if t is not None:
        out.add("sweep.train_s", v, t, "s", "lower",
                fine_tune_s=train.get("estimator", {}).get("fine_tune_s"))
    return out


def collect(cfg: SweepConfig, status: dict[str, dict]) -> Results:
    """Every finished entry under cfg.out (any shard's), relabelled and merged, with
    env["sweep"] describing every entry of the sweep."""
    res = Results()
    infos = []
    for e in cfg.entries:
        r = entry_results(cfg, e)
        d = EntryDir(cfg.out, e)
        plan = json.loads(d.plan.read_text()) if d.plan.is_file() else {}
        st = status.get(e.label)
        if r is not None:
            res.extend(r)
            st = {"status": "done", "reason": ""}
        elif st is None or st["status"] == "done":
            st = ({"status": "skipped", "reason": plan["reason"]} if plan and not plan.get("ok")
                  else {"status": "pending", "reason": "benchmarks not run yet" if d.done("eval")
                        else "not run (another shard, or not yet)"})
        infos.append({"label": e.label, **asdict(e), **st,
                      "params_m": plan.get("params_m"),
                      "projected_train_s": plan.get("projected_train_s"),
                      "train_s": d.stage_info("train").get("seconds")})
    res.env["sweep"] = {
        "entries": infos, "anaemia_threshold_gdl": cfg.anaemia_threshold,
        "det_precision": cfg.det_precision, "threads": cfg.threads, "quick": cfg.quick,
        "fine_tune_epochs": cfg.fine_tune_epochs, "data": str(cfg.data or cfg.out / "data"),
        "machine": _machine(res.env),
        "max_train_min": cfg.max_train_min, "max_model_mb": cfg.max_model_mb,
        "command": cfg.command,
    }
    return res


def _machine(env: dict) -> str:
    """'Intel(R) Xeon(R) Processor @ 2.30GHz, 2 cores, 24 GiB, Linux 6.1 (host vm)'."""
    cpu = env.get("cpu") or platform.processor() or platform.machine()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        ram = f", {mem:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        ram = ""
    browser = f"; {env['browser']}, onnxruntime-web {env.get('onnxruntime_web', '?')}" \
        if env.get("browser") else ""
    return (f"{cpu}, {os.cpu_count()} cores{ram}, {platform.system()} {platform.release()} "
            f"(host {platform.node()}); onnxruntime {env.get('onnxruntime', '?')}{browser}")


def merge_sweeps(paths: Sequence[Path]) -> Results:
    """Shards run on separate machines: metrics concatenated, entries united (an entry's
    status comes from the shard that finished it: see Results.extend)."""
    out = Results()
    for p in paths:
        r = Results.load(p)
        if not r.env.get("sweep"):
            raise HemoedgeError(f"{p}: not a sweep results file (no env.sweep)")
        out.extend(r)
    return out


# ------------------------------------------------------------------------------ command line

def config_from_args(args) -> SweepConfig:
    quick = bool(args.quick)
    if args.backbones:
        entries = tuple(Entry.parse(t) for t in args.backbones)
    else:
        entries = QUICK_ENTRIES if quick else DEFAULT_ENTRIES
    kw = {}
    for name in ("epochs", "max_train_min", "max_model_mb", "threads"):
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    if args.anaemia_threshold is not None:
        kw["anaemia_threshold"] = args.anaemia_threshold
    return SweepConfig(out=Path(args.out), entries=entries,
                       data=Path(args.data) if args.data else None, quick=quick,
                       shard=args.shard, detector_art=Path(args.detector_art)
                       if args.detector_art else None, web=not args.no_web,
                       bench=not getattr(args, "no_bench", False),
                       command=invocation(args, command_line(sys.argv[1:]) if sys.argv else ""),
                       **kw)


def report(res_path: Path, out: Path) -> None:
    from hemoedge import stages as st

    st.report(st.ReportConfig(results=[res_path], html=out / "report.html",
                              md=out / "report.md"))()


def cli(args) -> int:
    out = Path(args.out)
    if args.merge:
        res = merge_sweeps([Path(p) for p in args.merge])
        res.save(out / "results.json")
        print(f"merged {len(args.merge)} sweep results into {out / 'results.json'}")
        report(out / "results.json", out)
        print_summary(res)
        return 0
    cfg = config_from_args(args)
    if args.restart and cfg.out.exists():
        shutil.rmtree(cfg.out / "entries", ignore_errors=True)
    sweep = Sweep(cfg)
    res, failed = sweep.run()
    report(cfg.out / "results.json", cfg.out)
    print_summary(res)
    return 1 if failed else 0


def print_summary(res: Results) -> None:
    """One line per entry x estimator precision: accuracy, web and CPU frame time, bytes (the
    report's own rows, hemoedge.report.sweep_view.sweep_rows)."""
    from rich.console import Console
    from rich.table import Table

    from hemoedge.report.sweep_view import sweep_rows

    sw = res.env["sweep"]
    t = Table(title=f"backbone sweep (det={sw.get('det_precision', 'int8')}, "
                    f"{sw.get('threads', 2)} threads)")
    for c in ("backbone", "task", "est", "accuracy (e2e)", "web ms/frame", "cpu ms/frame",
              "est MB", "status"):
        t.add_column(c)

    def f(x: float | None, spec: str = ".1f") -> str:
        return "-" if x is None else format(x, spec)

    for r in sweep_rows(res):
        if r.status != "done" or not r.est:
            t.add_row(r.label, r.task, "-", "-", "-", "-", "-", f"{r.status}: {r.reason}")
            continue
        acc = (f"AUROC {f(r.auroc, '.3f')}" if r.task == "classification"
               else f"MAE {f(r.mae, '.3f')} g/dL")
        t.add_row(r.label, r.task, r.est, acc, f(r.web_ms), f(r.cpu_ms),
                  f(None if r.est_bytes is None else r.est_bytes / 1e6, ".2f"), "done")
    Console(width=max(Console().width, 140)).print(t)


__all__ = ["DEFAULT_ENTRIES", "QUICK_ENTRIES", "STAGES", "WHO_THRESHOLD", "Entry", "EntryDir",
           "Sweep", "SweepConfig", "cli", "collect", "feasibility", "merge_sweeps", "relabel"]
