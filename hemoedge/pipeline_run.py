"""`hemoedge run`: every stage, on the embedded default models, into runs/<name>/.

Each stage is called as a library (hemoedge.stages: its config and the function its command
line calls); the command recorded for it in results.json is the `hemoedge ...` line built from
that config, which a person can paste back to rerun the stage.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hemoedge.errors import HemoedgeError
from hemoedge.names import SHIPPED
from hemoedge.profile import Profile, profile
from hemoedge.report.results import Results

if TYPE_CHECKING:
    from hemoedge.stages import Stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    out: Path
    quick: bool = False  # small data and few timing runs: the CI form
    data: Path | None = None  # a Yakimov-layout folder; None: synthesise one
    gate: bool = True  # finish with the CI gate against the committed baseline
    baseline: Path | None = None  # None: ci/baseline.json (quick) or ci/baseline-full.json

    def __post_init__(self) -> None:
        if self.baseline is None:  # accuracy baselines hold for one data configuration only
            name = "baseline.json" if self.quick else "baseline-full.json"
            object.__setattr__(self, "baseline", Path("ci") / name)

    @property
    def profile(self) -> Profile:
        return profile(self.quick)

    @property
    def patients(self) -> int:
        return self.profile.patients


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def stages(cfg: RunConfig) -> list[Stage]:
    """The stages in order, each a config for a stage function (hemoedge.stages) with the
    `hemoedge ...` command that does the same (`Stage.argv`, `Stage.command`). A stage whose
    module is not part of this build is listed unavailable (`Stage.available()`)."""
    from hemoedge import stages as st

    out, art, res = cfg.out, cfg.out / "art", cfg.out / "results.json"
    data = cfg.data or out / "data"
    pr = cfg.profile
    s: list[Stage] = []

    def add(label: str, module: str, make: Callable[[], Stage]) -> None:
        s.append(make() if _available(module) else st.unavailable(label, module))

    def export() -> Stage:
        from hemoedge.export.onnx_export import ExportConfig

        return st.export(ExportConfig(out=art))

    def parity() -> Stage:
        from hemoedge.export.parity import ParityConfig

        return st.parity(ParityConfig(art=art, data=data, images=pr.parity_images), res)

    def evaluate() -> Stage:
        from hemoedge.bench.accuracy import EvalConfig

        return st.evaluate(EvalConfig(art=art, data=data), res)

    def web_parity() -> Stage:
        from hemoedge.bench.webparity import WebParityConfig

        return st.web_parity(WebParityConfig(art=art, data=data, images=pr.web_parity_images),
                             res)

    def webapp() -> Stage:
        from hemoedge.web.build import BuildConfig

        return st.webapp(BuildConfig(art=art, detector=SHIPPED[0], estimator=SHIPPED[1],
                                     out=out / "webapp"))

    def choose() -> Stage:
        from hemoedge.report.choose import ChooseConfig, Constraints

        target = "web" if _available("hemoedge.bench.web") else "cpu"
        return st.choose(ChooseConfig(results=[res], constraints=Constraints(target=target)))

    if cfg.data is None and not (data / "metadata.csv").is_file():
        add("data", "hemoedge.data.synth", lambda: st.synth(st.SynthConfig(
            out=data, patients=cfg.patients, sessions=pr.sessions)))
    add("export", "hemoedge.export.onnx_export", export)
    add("quantize", "hemoedge.quantize.run", lambda: st.quantize(pr.quantize_config(art, data)))
    add("parity", "hemoedge.export.parity", parity)
    add("eval", "hemoedge.bench.accuracy", evaluate)
    add("bench cpu", "hemoedge.bench.cpu",
        lambda: st.bench_cpu(pr.cpu_bench_config(art, data), res))
    add("bench web", "hemoedge.bench.web",
        lambda: st.bench_web(pr.web_bench_config(art, capture=True), res))
    add("web parity", "hemoedge.bench.webparity", web_parity)
    add("report", "hemoedge.report.html", lambda: st.report(st.ReportConfig(
        results=[res], html=out / "report.html", md=out / "report.md")))
    add("choose", "hemoedge.report.choose", choose)
    add("webapp", "hemoedge.web.build", webapp)
    if cfg.gate and cfg.baseline.is_file():
        add("gate", "hemoedge.gate", lambda: st.gate(st.GateConfig(
            results=[res], baseline=cfg.baseline, md=out / "gate.md", junit=out / "gate.xml",
            benchmark_json=out / "benchmark.json")))
    return s


def run(cfg: RunConfig) -> int:
    cfg.out.mkdir(parents=True, exist_ok=True)
    verdicts: list[str] = []
    timings = []
    res_path = cfg.out / "results.json"
    if res_path.is_file():  # a run starts a fresh results file; the last one is kept aside
        os.replace(res_path, cfg.out / "results.prev.json")
    if cfg.data is None and (cfg.out / "data" / "metadata.csv").is_file():
        print(f"reusing the synthetic set in {cfg.out / 'data'}")
    for stage in stages(cfg):
        if not stage.available():
            log.warning("stage %s: %s is not part of this build yet; skipped", stage.label,
                        stage.module)
            continue
        cmd = stage.command
        print(f"==> {cmd}", flush=True)
        t0 = time.perf_counter()
        code = stage()
        timings.append((stage.label, time.perf_counter() - t0))
        if res_path.is_file():
            res = Results.load(res_path)
            if cmd not in res.commands:  # a stage that records no command of its own
                res.add_command(cmd)
                res.save(res_path)
        if code == 1:
            verdicts.append(f"{stage.label}: verdict failure (exit 1)")
        elif code != 0:
            raise HemoedgeError(f"stage {stage.label} failed with exit code {code}: {cmd}")
    if cfg.gate and not cfg.baseline.is_file():
        print(f"gate skipped: no baseline at {cfg.baseline} (create one with "
              f"`hemoedge gate {res_path} --update-baseline --baseline {cfg.baseline}`)")
    print("\nstage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings))
    print(f"results: {cfg.out / 'results.json'}")
    for v in verdicts:
        print(f"  ! {v}")
    return 1 if verdicts else 0


def cli(args) -> int:
    return run(RunConfig(out=Path(args.out), quick=args.quick,
                         data=Path(args.data) if args.data else None))
