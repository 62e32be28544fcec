"""The stages as a library: what `hemoedge run`, `hemoedge sweep` and ci/prove_gate.py call.

Each function below takes a stage's config and returns a `Stage`: the config, the function
that does the work (the same one the stage's command line calls) and the `hemoedge ...`
command that does the same thing, built from the config by one helper (`cli.argv_for`), so
the command recorded in results.json can be pasted back. A config field the command line
cannot express, set away from its default, is refused (ValueError): a recorded command never
claims less than what ran.

Every stage's module defines its frozen config and the function taking it (`main(cfg)`, the
one its `cli(args)` calls once it has mapped the parsed arguments to a config). The configs of
data synth, train, report, choose and gate are re-exported here (SynthConfig, TrainConfig,
ReportConfig, ChooseConfig, GateConfig).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemoedge.names import SHIPPED_VARIANT
from hemoedge.report.results import command_line

if TYPE_CHECKING:
    from hemoedge.data.synth import SynthConfig
    from hemoedge.gate import GateConfig
    from hemoedge.models.train import TrainConfig
    from hemoedge.report.choose import ChooseConfig
    from hemoedge.report.html import ReportConfig

# configs re-exported from their stage's module, imported on first use (a build may lack one)
_CONFIGS = {"SynthConfig": "hemoedge.data.synth", "TrainConfig": "hemoedge.models.train",
            "ReportConfig": "hemoedge.report.html", "ChooseConfig": "hemoedge.report.choose",
            "GateConfig": "hemoedge.gate"}


def __getattr__(name: str) -> Any:
    if name in _CONFIGS:
        return getattr(importlib.import_module(_CONFIGS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Stage:
    label: str  # "bench cpu": progress lines and error messages
    cmd: tuple[str, ...]  # ("bench", "cpu"): the command-line sub-command
    config: Any  # what `func` receives
    options: Mapping[str, Any]  # the parsed command-line arguments equivalent to `config`
    func: Callable[..., int]
    module: str  # must be importable for the stage to run (a build may lack one)
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # e.g. results=Path

    @property
    def argv(self) -> list[str]:
        from hemoedge.cli import argv_for

        return argv_for(self.cmd, self.options)

    @property
    def command(self) -> str:
        return command_line(self.argv)

    def available(self) -> bool:
        return bool(self.cmd) and importlib.util.find_spec(self.module) is not None

    def __call__(self) -> int:
        """Check the output paths (exit 2, nothing written), then run the stage."""
        from hemoedge.cli import check_stage_outputs

        check_stage_outputs(self.cmd, self.options)
        return int(self.func(self.config, **self.kwargs) or 0)


def unavailable(label: str, module: str) -> Stage:
    """A stage whose module is not part of this build (`available()` is false)."""
    def missing(cfg: Any) -> int:
        raise ModuleNotFoundError(f"stage {label}: {module} is not part of this build")
    return Stage(label, (), None, {}, missing, module)


def _stage(label: str, cmd: tuple[str, ...], cfg: Any, options: dict[str, Any],
           func: Callable[..., int], module: str, **kwargs: Any) -> Stage:
    """A Stage whose config records its own command (`command` field) gets it here."""
    s = Stage(label, cmd, cfg, options, func, module, kwargs)
    if dataclasses.is_dataclass(cfg) and "command" in {f.name for f in dataclasses.fields(cfg)}:
        s = dataclasses.replace(s, config=dataclasses.replace(cfg, command=s.command))
    return s


def _defaults(cfg: Any, covered: set[str], what: str) -> None:
    """ValueError if a field the command line cannot express is set away from its default."""
    for f in dataclasses.fields(cfg):
        if f.name in covered or f.name == "command":
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING  # type: ignore[misc]
            else dataclasses.MISSING)
        if getattr(cfg, f.name) != default:
            raise ValueError(f"{what}: {f.name}={getattr(cfg, f.name)!r} has no command-line "
                             "option; the recorded command would not reproduce it")


def _unless(value: Any, default: Any) -> Any:
    """value, or None (left out of the command) when it is the default."""
    return None if value == default else value


def _opt(p: Path | None) -> str | None:
    return None if p is None else str(p)


# ------------------------------------------------------------------ data synth, train

def synth(cfg: SynthConfig) -> Stage:
    from hemoedge.data import synth as mod

    opts = {"out": str(cfg.out), "patients": cfg.patients, "sessions": cfg.sessions,
            "seed": _unless(cfg.seed, 0)}
    return _stage("data", ("data", "synth"), cfg, opts, mod.main, "hemoedge.data.synth")


def train(cfg: TrainConfig) -> Stage:
    from hemoedge.models import train as mod

    opts = {"only": cfg.only, "data": _opt(cfg.data), "out": str(cfg.out),
            "recipe": _unless(cfg.recipe, "default"), "backbone": cfg.backbone,
            "est_size": cfg.est_size, "task": cfg.task,
            "anaemia_threshold": cfg.anaemia_threshold, "seed": cfg.seed,
            "det_epochs": cfg.det_epochs, "est_epochs": cfg.est_epochs,
            "est_init": cfg.est_init, "est_lr": cfg.est_lr,
            "consistency": cfg.consistency, "feature_consistency": cfg.feature_consistency,
            "det_hours": cfg.det_hours}
    return _stage("train", ("train",), cfg, opts, mod.main, "hemoedge.models.train")


# ------------------------------------------------------------------ export, quantize, parity

def export(cfg) -> Stage:
    """cfg: hemoedge.export.onnx_export.ExportConfig."""
    from hemoedge.export import onnx_export as mod

    _defaults(cfg, {"out", "detector", "estimator", "simplifier", "trust_checkpoint"}, "export")
    opts = {"out": str(cfg.out), "detector": _opt(cfg.detector),
            "estimator": _opt(cfg.estimator), "simplifier": _unless(cfg.simplifier, "onnxslim"),
            "trust_checkpoint": cfg.trust_checkpoint}
    return _stage("export", ("export",), cfg, opts, mod.main, "hemoedge.export.onnx_export")


def quantize(cfg) -> Stage:
    """cfg: hemoedge.quantize.run.QuantizeConfig."""
    from hemoedge.quantize import run as mod
    from hemoedge.quantize.sensitivity import SearchConfig

    default = mod.QuantizeConfig(art=cfg.art)
    if dataclasses.replace(cfg.search, max_steps=SearchConfig().max_steps,
                           max_trials=SearchConfig().max_trials) != SearchConfig():
        raise ValueError("quantize: only the search's max_steps and max_trials have "
                         "command-line options")
    _defaults(cfg, {"art", "roles", "data", "variants", "method", "samples", "est_samples",
                    "val_samples",
                    "search", "tolerance_hb", "tolerance_det_score", "tolerance_det_box_px",
                    "sampling", "output_correction", "float_decode", "float_stem", "float_output",
                    "engines"},
              "quantize")
    opts = {"art": str(cfg.art), "roles": _unless(list(cfg.roles), list(default.roles)),
            "calib": _opt(cfg.data), "variants": _unless(list(cfg.variants),
                                                         list(default.variants)),
            "method": _unless(cfg.method, default.method), "samples": cfg.samples,
            "est_samples": _unless(cfg.est_samples, default.est_samples),
            "val_samples": _unless(cfg.val_samples, default.val_samples),
            "max_steps": _unless(cfg.search.max_steps, SearchConfig().max_steps),
            "max_trials": _unless(cfg.search.max_trials, SearchConfig().max_trials),
            "tolerance_hb": _unless(cfg.tolerance_hb, default.tolerance_hb),
            "tolerance_det_score": _unless(cfg.tolerance_det_score, default.tolerance_det_score),
            "tolerance_det_box_px": _unless(cfg.tolerance_det_box_px,
                                            default.tolerance_det_box_px),
            "calib_sampling": _unless(cfg.sampling, default.sampling),
            "no_output_correction": not cfg.output_correction,
            "quantize_decode": not cfg.float_decode,
            "quantize_stem": not cfg.float_stem,
            "quantize_output": not cfg.float_output,
            "engine": list(cfg.engines) or None}
    return _stage("quantize", ("quantize",), cfg, opts, mod.main, "hemoedge.quantize.run")


def parity(cfg, results: Path | None = None) -> Stage:
    """cfg: hemoedge.export.parity.ParityConfig."""
    from hemoedge.export import parity as mod

    opts = {"art": str(cfg.art), "data": _opt(cfg.data), "images": cfg.images,
            "results": _opt(results)}
    return _stage("parity", ("parity",), cfg, opts, mod.main, "hemoedge.export.parity",
                  results=results)


# ------------------------------------------------------------------ eval

def evaluate(cfg, results: Path | None = None) -> Stage:
    """cfg: hemoedge.bench.accuracy.EvalConfig."""
    _defaults(cfg, {"art", "data", "split"}, "eval")
    opts = {"art": str(cfg.art), "data": _opt(cfg.data), "split": _unless(cfg.split, "test"),
            "results": _opt(results)}
    return _stage("eval", ("eval",), cfg, opts, _eval, "hemoedge.bench.accuracy",
                  results=results)


def _eval(cfg, results: Path | None = None) -> int:
    """What `hemoedge eval` does: the variants' accuracy, then the quantiser peers' when
    ART/peers/ exists (hemoedge.bench.peers.eval_main)."""
    from hemoedge.bench import peers

    return peers.eval_main(cfg, results)


# ------------------------------------------------------------------ benchmarks

def bench_cpu(cfg, results: Path | None = None) -> Stage:
    """cfg: hemoedge.bench.cpu.CpuBenchConfig; the quick profile's sizes become --quick."""
    from hemoedge.bench import cpu as mod
    from hemoedge.profile import FULL, QUICK

    _defaults(cfg, {"art", "model", "threads", "data", "warmup", "runs", "cold_starts",
                    "shard", "spin", "progress"}, "bench cpu")
    quick = (cfg.warmup, cfg.runs, cfg.cold_starts) == (QUICK.bench_warmup, QUICK.bench_runs,
                                                         QUICK.cold_starts)
    if not quick and cfg.cold_starts != FULL.cold_starts:
        raise ValueError(f"bench cpu: cold_starts={cfg.cold_starts} has no command-line option "
                         "(--quick sets the quick profile's)")
    opts = {"art": _opt(cfg.art), "data": _opt(cfg.data),
            "threads": _unless(list(cfg.threads), [1, 2]), "model": _opt(cfg.model),
            "runs": None if quick else _unless(cfg.runs, 200),
            "warmup": None if quick else _unless(cfg.warmup, 20),
            "quick": quick, "shard": cfg.shard, "no_spin": not cfg.spin,
            "results": _opt(results)}
    return _stage("bench cpu", ("bench", "cpu"), cfg, opts, mod.main, "hemoedge.bench.cpu",
                  results=results)


def bench_web(cfg, results: Path | None = None) -> Stage:
    """cfg: hemoedge.bench.web.WebBenchConfig (its quick_form becomes --quick)."""
    from hemoedge.bench import web as mod

    covered = {"art", "threads", "pairings", "capture", "seed", "seedloop", "quick", "shard",
               "runs", "warmup", "captures", "repeats", "video_frames"}
    _defaults(cfg, covered, "bench web")
    form = mod.WebBenchConfig.quick_form if cfg.quick else mod.WebBenchConfig
    sizes = ("runs", "warmup", "captures", "repeats", "video_frames")
    if any(getattr(cfg, k) != getattr(form(art=cfg.art), k) for k in sizes):
        raise ValueError("bench web: runs/warmup/captures/repeats have no command-line option "
                         "(--quick sets the quick form's)")
    opts = {"art": str(cfg.art), "threads": _unless(list(cfg.threads), [1, 2]),
            "capture": cfg.capture, "quick": cfg.quick,
            "pairings": [tuple(p) for p in cfg.pairings] if cfg.pairings else None,
            "no_seed": not cfg.seed, "seedloop": cfg.seedloop, "shard": cfg.shard,
            "results": _opt(results)}
    return _stage("bench web", ("bench", "web"), cfg, opts, _bench_web, "hemoedge.bench.web",
                  results=results)


def _bench_web(cfg, results: Path | None = None) -> int:
    """What `hemoedge bench web` does once it has its config (hemoedge.bench.webcli.main)."""
    from hemoedge.bench import webcli

    return webcli.main(cfg, results or cfg.art / "results.json")


def web_parity(cfg, results: Path | None = None) -> Stage:
    """cfg: hemoedge.bench.webparity.WebParityConfig."""
    _defaults(cfg, {"art", "data", "images"}, "parity --web")
    opts = {"art": str(cfg.art), "web": True, "data": _opt(cfg.data), "images": cfg.images,
            "results": _opt(results)}
    return _stage("web parity", ("parity",), cfg, opts, _web_parity, "hemoedge.bench.webparity",
                  results=results)


def _web_parity(cfg, results: Path | None = None) -> int:
    """What `hemoedge parity --web` does once it has its config (webparity.main)."""
    from hemoedge.bench import webparity

    return webparity.main(cfg, results)


# ------------------------------------------------------------------ report, choose, app, gate

def report(cfg: ReportConfig) -> Stage:
    from hemoedge.report import html as mod

    opts = {"results": [str(p) for p in cfg.results], "html": _opt(cfg.html),
            "md": _opt(cfg.md)}
    return _stage("report", ("report",), cfg, opts, mod.main, "hemoedge.report.html")


def choose(cfg: ChooseConfig) -> Stage:
    from hemoedge.report import choose as mod

    c, default = cfg.constraints, mod.Constraints()
    opts = {"results": [str(p) for p in cfg.results], "target": c.target,
            "task": _unless(c.task, default.task),
            **{fld: _unless(getattr(c, fld), getattr(default, fld)) for _, fld, *_ in mod.CHECKS},
            "device_class": cfg.device_class, "device": cfg.device, "ep": cfg.ep}
    return _stage("choose", ("choose",), cfg, opts, mod.main, "hemoedge.report.choose")


def webapp(cfg) -> Stage:
    """cfg: hemoedge.web.build.BuildConfig."""
    from hemoedge.web import build as mod

    _defaults(cfg, {"art", "detector", "estimator", "out", "compress", "base",
                    "coi_serviceworker", "autotune", "ort_dist"}, "webapp build")
    opts = {"art": str(cfg.art), "variant": _unless(cfg.variant, SHIPPED_VARIANT),
            "out": str(cfg.out), "base": _unless(cfg.base, "/"), "no_compress": not cfg.compress,
            "coi_serviceworker": cfg.coi_serviceworker,
            "autotune_variants": ",".join(cfg.autotune) or None, "ort_dist": _opt(cfg.ort_dist)}
    return _stage("webapp", ("webapp", "build"), cfg, opts, mod.main, "hemoedge.web.build")


def gate(cfg: GateConfig) -> Stage:
    from hemoedge import gate as mod

    opts = {"results": [str(p) for p in cfg.results], "baseline": _opt(cfg.baseline),
            "budgets": _opt(_unless(cfg.budgets, mod.PACKAGED_BUDGETS)), "md": _opt(cfg.md),
            "junit": _opt(cfg.junit), "benchmark_json": _opt(cfg.benchmark_json),
            "update_baseline": cfg.update_baseline}
    return _stage("gate", ("gate",), cfg, opts, mod.main, "hemoedge.gate")
