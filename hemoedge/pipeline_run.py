"""`hemoedge run`: every stage, on the embedded default models, into runs/<name>/.

Each stage is invoked through the same argument parser as the command line, so the
commands recorded in results.json are exactly what a person can rerun.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hemoedge.errors import HemoedgeError
from hemoedge.profile import Profile, profile
from hemoedge.report.results import Results, command_line

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


def stages(cfg: RunConfig) -> list[tuple[str, list[str], str]]:
    """(label, argv, module that must exist) in order."""
    out, art, res = cfg.out, cfg.out / "art", cfg.out / "results.json"
    data = cfg.data or out / "data"
    q = ["--quick"] if cfg.quick else []
    pr = cfg.profile
    s: list[tuple[str, list[str], str]] = []
    if cfg.data is None and not (data / "metadata.csv").is_file():
        s.append(("data", ["data", "synth", "--out", str(data), "--patients", str(cfg.patients),
                           "--sessions", str(pr.sessions)], "hemoedge.data.synth"))
    s += [
        ("export", ["export", "--out", str(art)], "hemoedge.export.onnx_export"),
        ("quantize", ["quantize", str(art), "--calib", str(data), *pr.quantize_args()],
         "hemoedge.quantize.run"),
        ("parity", ["parity", str(art), "--data", str(data), "--images", str(pr.parity_images),
                    "--results", str(res)], "hemoedge.export.parity"),
        ("eval", ["eval", str(art), "--data", str(data), "--results", str(res)],
         "hemoedge.bench.accuracy"),
        ("bench cpu", ["bench", "cpu", str(art), "--data", str(data), "--results", str(res), *q],
         "hemoedge.bench.cpu"),
        ("bench web", ["bench", "web", str(art), "--results", str(res), "--capture", *q],
         "hemoedge.bench.web"),
        ("web parity", ["parity", str(art), "--web", "--data", str(data),
                        "--images", str(pr.web_parity_images), "--results", str(res)],
         "hemoedge.bench.webparity"),
        ("report", ["report", str(res), "--html", str(out / "report.html"),
                    "--md", str(out / "report.md")], "hemoedge.report.html"),
        ("choose", ["choose", str(res), "--target",
                    "web" if _available("hemoedge.bench.web") else "cpu"], "hemoedge.report.choose"),
        ("webapp", ["webapp", "build", "--art", str(art), "--out", str(out / "webapp")],
         "hemoedge.web.build"),
    ]
    if cfg.gate and cfg.baseline.is_file():
        s.append(("gate", ["gate", str(res), "--baseline", str(cfg.baseline), "--md",
                           str(out / "gate.md"), "--junit", str(out / "gate.xml"),
                           "--benchmark-json", str(out / "benchmark.json")], "hemoedge.gate"))
    return s


def run(cfg: RunConfig) -> int:
    from hemoedge.cli import call

    cfg.out.mkdir(parents=True, exist_ok=True)
    verdicts: list[str] = []
    timings = []
    res_path = cfg.out / "results.json"
    if res_path.is_file():  # a run starts a fresh results file; the last one is kept aside
        os.replace(res_path, cfg.out / "results.prev.json")
    if cfg.data is None and (cfg.out / "data" / "metadata.csv").is_file():
        print(f"reusing the synthetic set in {cfg.out / 'data'}")
    for label, argv, module in stages(cfg):
        if not _available(module):
            log.warning("stage %s: %s is not part of this build yet; skipped", label, module)
            continue
        cmd = command_line(argv)
        print(f"==> {cmd}", flush=True)
        t0 = time.perf_counter()
        code = call(argv)
        timings.append((label, time.perf_counter() - t0))
        if res_path.is_file():
            res = Results.load(res_path)
            if cmd not in res.commands:  # a stage that records no command of its own
                res.add_command(cmd)
                res.save(res_path)
        if code == 1:
            verdicts.append(f"{label}: verdict failure (exit 1)")
        elif code != 0:
            raise HemoedgeError(f"stage {label} failed with exit code {code}: {cmd}")
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
