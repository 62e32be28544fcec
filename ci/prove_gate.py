#!/usr/bin/env python3
"""Prove the CI gate: how often it fails on unchanged code (false alarms) and whether,
and how fast, it catches regressions injected for real.

    .venv/bin/python ci/prove_gate.py                      # 10 false-alarm runs + detection
    .venv/bin/python ci/prove_gate.py --runs 2 --art runs/quick/art --data runs/quick/data

1. The quick artifact: `hemoedge run --quick`'s own data/export/quantize stages (the same
   stage configs, taken from hemoedge.pipeline_run.stages and called as a library) into
   OUT/quick, or --art/--data to reuse one. It is built once; every later step re-runs only
   the timing and accuracy stages (`hemoedge eval` and `hemoedge bench cpu --quick`, again
   pipeline_run's configs on this artifact).
2. The baseline: --baseline (default ci/baseline.json) if it exists; otherwise (or with
   --fresh-baseline) one reference run of the same stages is made the baseline
   (OUT/baseline.json, exactly what `hemoedge gate --update-baseline` writes).
3. False alarms: --runs times, unchanged artifact: eval + bench + gate. Every non-zero exit
   counts (1 = a failing budget, 2 = a missing metric).
4. Detection, each on a copy of the artifact, then eval + bench + gate, timed to the verdict:
   (a) slowed: extra MatMuls on the output path of --slow-variant (default det=int8), sized to
       make it --slowdown times slower (measured, output unchanged; ci/inject.py);
   (b) worse estimator: noise on the Ridge head weights of every estimator precision;
   (c) capture loop that waits for inference (the web app's ?seedloop=1): needs
       `hemoedge bench web` with a way to select that mode; reported "not run" otherwise.
5. OUT/summary.json and OUT/summary.md (counts, times, verdicts), and a table on stdout.

A false alarm is a failing budget that passes on the unchanged reference (budgets the unchanged
artifact fails every time are reported as standing failures), or a missing metric.

Exit code: 0 when there were no false alarms and every regression that ran was caught (and
none crashed); 1 otherwise; 2 on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "ci"))  # inject.py, the injected regressions

from hemoedge.errors import HemoedgeError  # noqa: E402
from hemoedge.names import SHIPPED_VARIANT, cpu_latency  # noqa: E402

log = logging.getLogger("prove_gate")
PLACEHOLDER = Path("/__prove_gate__")  # stand-in run folder whose paths are substituted


# --- running hemoedge stages in this process --------------------------------------------------

def hemo(stage, logfile: Path) -> int:
    """Run one stage in-process as a library (hemoedge.stages, like pipeline_run), its output
    to logfile after the `hemoedge ...` command it is equivalent to."""
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("a") as f, contextlib.redirect_stdout(f):
        print(f"$ {stage.command}", flush=True)
        return stage()


def run_stage(label: str, art: Path, data: Path, results: Path, **changes: Any):
    """The stage `hemoedge run --quick` calls for `label` (eval, bench cpu, bench web), on this
    art/data/results; `changes` set config fields (e.g. seedloop=True)."""
    import dataclasses

    from hemoedge import stages as st
    from hemoedge.pipeline_run import RunConfig, stages

    make = {"eval": st.evaluate, "bench cpu": st.bench_cpu, "bench web": st.bench_web}
    cfg = RunConfig(out=PLACEHOLDER, quick=True, data=data, gate=False)
    for s in stages(cfg):
        if s.label == label and label in make:
            return make[label](dataclasses.replace(s.config, art=art, **changes), results)
    raise HemoedgeError(f"hemoedge.pipeline_run has no stage {label!r}")


def build_quick(out: Path, data: Path | None, detector: str | None,
                estimator: str | None) -> tuple[Path, Path, float]:
    """data (unless given) + export + quantize exactly as `hemoedge run --quick`."""
    import dataclasses

    from hemoedge import stages as st
    from hemoedge.pipeline_run import RunConfig, stages

    cfg = RunConfig(out=out, quick=True, data=data, gate=False)
    t0 = time.perf_counter()
    for stage in stages(cfg):
        if stage.label not in ("data", "export", "quantize"):
            continue
        if stage.label == "export":
            stage = st.export(dataclasses.replace(
                stage.config, detector=Path(detector) if detector else None,
                estimator=Path(estimator) if estimator else None))
        print(f"  building: {stage.command}", flush=True)
        code = hemo(stage, out / "build.log")
        if code != 0:
            raise HemoedgeError(f"stage {stage.label} exited {code}; see {out / 'build.log'}")
    return out / "art", (data or out / "data"), time.perf_counter() - t0


@dataclass
class Measured:
    results: Path
    eval_s: float
    bench_s: float
    loadavg: float = 0.0  # 1-minute load average when the run started (shared machine)
    gate_s: float = 0.0
    exit_code: int | None = None
    failures: list[str] = field(default_factory=list)  # failing "fail" budgets
    not_significant: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return self.eval_s + self.bench_s + self.gate_s


def measure(art: Path, data: Path, folder: Path) -> Measured:
    """The per-iteration stages: eval + bench cpu --quick into folder/results.json."""
    folder.mkdir(parents=True, exist_ok=True)
    res = folder / "results.json"
    res.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    times = []
    for label in ("eval", "bench cpu"):
        t0 = time.perf_counter()
        code = hemo(run_stage(label, art, data, res), folder / "stages.log")
        times.append(time.perf_counter() - t0)
        if code != 0:
            raise HemoedgeError(f"{label} exited {code}; see {folder / 'stages.log'}")
    return Measured(res, *times, loadavg=load)


def gate(m: Measured, budgets, baseline) -> Measured:
    from hemoedge.gate import evaluate, fmt, to_markdown, write_junit
    from hemoedge.report.results import Results

    t0 = time.perf_counter()
    res = evaluate(Results.load(m.results), budgets, baseline)
    (m.results.parent / "gate.md").write_text(to_markdown(res))
    write_junit(res, m.results.parent / "gate.xml")
    m.gate_s = time.perf_counter() - t0
    m.exit_code = res.exit_code
    m.failures = [c.budget.name for c in res.failures]
    m.missing = [c.describe() for c in res.missing]
    m.not_significant = [c.budget.name for c in res.checks if c.verdict == "not significant"]
    m.checks = [{"budget": c.budget.name, "kind": c.budget.kind, "severity": c.budget.severity,
                 "verdict": c.verdict, "value": c.value,
                 "interval": list(c.interval) if c.interval else None,
                 "limit": f"{c.op} {fmt(c.threshold)}" if c.threshold is not None else None}
                for c in res.checks]
    return m


# End-to-end accuracy budgets need a detector that finds nails. For an artifact whose detector
# is not trained yet, --estimator-accuracy gates the same figures on ground-truth nail crops.
E2E_TO_CROPS = (
    ('metric = "acc.e2e.hb_mae_delta"\nvariant = "det=int8,est=int8"',
     'metric = "acc.hb_mae_delta"\nvariant = "est=int8"'),
    ('metric = "acc.e2e.abs_delta.p95"\nvariant = "det=int8,est=int8"',
     'metric = "acc.hb_abs_delta.p95"\nvariant = "est=int8"'),
    ('metric = "acc.e2e.band_agreement"\nvariant = "det=int8,est=int8"',
     'metric = "acc.band_agreement"\nvariant = "est=int8"'),
    ('metric = "acc.e2e.hb_mae"\nvariant = "det=int8,est=int8"',
     'metric = "acc.hb_mae"\nvariant = "est=int8"'),
)


def crop_budgets(src: Path, dst: Path) -> Path:
    """A copy of the budgets with every acc.e2e.* budget moved to its ground-truth-crop twin."""
    text = src.read_text()
    for a, b in E2E_TO_CROPS:
        if a not in text:
            raise HemoedgeError(f"{src}: expected a budget with {a!r} to move to crops")
        text = text.replace(a, b)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(f"# generated by ci/prove_gate.py --estimator-accuracy from {src}:\n"
                   "# acc.e2e.* budgets (det=int8,est=int8) -> acc.* (est=int8, crops)\n" + text)
    return dst


# --- the proof ---------------------------------------------------------------------------------

@dataclass
class Detection:
    name: str
    what: str
    ran: bool
    caught: bool | None = None
    caught_by: list[str] = field(default_factory=list)
    expected: str = ""  # which budgets should catch it
    inject_s: float = 0.0  # making the regressed artifact
    to_verdict_s: float = 0.0  # eval + bench + gate on it: CI time to the failing verdict
    exit_code: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why it did not run


def copy_art(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("results.json"))
    return dst


def metric(results: Path, name: str, variant: str, **params) -> float | None:
    from hemoedge.report.results import Results

    m = Results.load(results).get(name, variant, **params)
    return None if m is None else float(m.value)


def detect_slow(art: Path, data: Path, out: Path, budgets, baseline, variant: str,
                factor: float, threads: int, unchanged: list[Path] = (),
                standing: frozenset[str] = frozenset()) -> Detection:
    import inject  # ci/inject.py

    role = {"det": "detector", "est": "estimator"}[variant.split("=")[0]]
    precision = variant.split("=")[1]
    d = Detection(f"slowed {variant} x{factor:g}",
                  f"{role}.{precision}.onnx with extra MatMuls on its output path "
                  f"(output unchanged), about {factor:g}x slower", True,
                  expected="a CPU latency ratio budget (cpu.*latency_ms / cpu.frame_ms)")
    t0 = time.perf_counter()
    folder = out / f"detect-slow-{variant.replace('=', '')}-x{factor:g}"
    work = copy_art(art, folder / "art")
    k = inject.calibrate_slowdown(work / f"{role}.{precision}.onnx", factor, threads)
    check = inject.verify_slowdown(work / f"{role}.{precision}.onnx", k, threads)
    inject.rewrite(work, role, precision, lambda m: inject.slow_down(m, k),
                   f"slow_down matmuls={k}")
    d.inject_s = time.perf_counter() - t0
    d.details = {"matmuls": k, "probe_base_ms": check.base_ms, "probe_slow_ms": check.slow_ms,
                 "probe_factor": check.factor, "threads": threads,
                 "matmuls_kept_by_ort_optimiser": check.kept_in_optimised_graph,
                 "max_abs_output_change": check.max_abs_output_change}
    if check.kept_in_optimised_graph != k or check.max_abs_output_change != 0:
        log.warning("slowdown check: %s", check)
    m = gate(measure(work, data, folder), budgets, baseline)
    d.to_verdict_s, d.exit_code = m.total_s, m.exit_code
    lat = metric(m.results, cpu_latency(role), variant, threads=2)
    d.details["bench_latency_ms_p50_2t"] = lat
    if unchanged:  # the slowdown as the gate sees it: this run's int8/fp32 ratio vs unchanged
        import statistics

        ref = variant.split("=")[0] + "=fp32"

        def ratio(p: Path) -> float | None:
            a = metric(p, cpu_latency(role), variant, threads=2)
            b = metric(p, cpu_latency(role), ref, threads=2)
            return a / b if a and b else None

        before = [r for r in map(ratio, unchanged) if r is not None]
        now = ratio(m.results)
        if before and now:
            d.details[f"unchanged_ratio_vs_{ref}_median"] = statistics.median(before)
            d.details[f"slowed_ratio_vs_{ref}"] = now
            d.details["achieved_factor_in_ratio"] = now / statistics.median(before)
    ratio_budgets = {b.name for b in budgets if b.kind == "ratio" and any(
        r.metric.startswith(("cpu.", "web.")) and "_ms" in r.metric for r in b.refs())}
    d.caught_by = m.failures
    d.caught = m.exit_code == 1 and bool(ratio_budgets & (set(m.failures) - standing))
    d.details["checks"] = [c for c in m.checks if c["budget"] in ratio_budgets]
    return d


def detect_worse_estimator(art: Path, data: Path, out: Path, budgets, baseline, rel: float,
                           reference: Path, standing: frozenset[str] = frozenset(),
                           shrink: float = 0.0) -> Detection:
    import inject  # ci/inject.py

    from hemoedge.artifact import Artifact

    d = Detection(f"worse estimator (head x{1 - shrink:g}, noise {rel:g})",
                  f"Ridge head weights of every estimator precision x {1 - shrink:g} x "
                  f"(1 + {rel:g} N(0,1)), seed 0", True, expected="an accuracy budget (acc.*)")
    t0 = time.perf_counter()
    folder = out / "detect-worse-estimator"
    work = copy_art(art, folder / "art")
    for p in Artifact.load(work).precisions("estimator"):
        inject.rewrite(work, "estimator", p,
                       lambda m: inject.perturb_head(m, rel, shrink=shrink),
                       f"perturb_head rel={rel} shrink={shrink}")
    d.inject_s = time.perf_counter() - t0
    m = gate(measure(work, data, folder), budgets, baseline)
    d.to_verdict_s, d.exit_code = m.total_s, m.exit_code
    acc = {b.name for b in budgets if any(r.metric.startswith("acc.") for r in b.refs())}
    d.caught_by = m.failures
    d.caught = m.exit_code == 1 and bool(acc & (set(m.failures) - standing))
    for name, variant in (("acc.e2e.hb_mae", "det=int8,est=int8"), ("acc.hb_mae", "est=fp32"),
                          ("acc.hb_mae", "est=int8")):
        d.details[f"{name} [{variant}]"] = {"unchanged": metric(reference, name, variant),
                                            "injected": metric(m.results, name, variant)}
    d.details["checks"] = [c for c in m.checks if c["budget"] in acc]
    return d


def detect_capture(art: Path, data: Path, out: Path, budgets, baseline, base_results: Path,
                   standing: frozenset[str] = frozenset()) -> Detection:
    """The web app's bench-only ?seedloop=1 capture (grab, wait for inference, sleep 80 ms)
    in place of the pipelined one. A control run of the normal capture comes first: the
    injected run counts as caught only if a web capture budget fails that passed there.
    Both add `hemoedge bench web --capture --quick` (the quick run's stage) to a copy of an
    unchanged run's results (same artifact), so only the browser stage re-runs."""
    d = Detection("capture loop waits for inference",
                  "the web app's ?seedloop=1 capture loop (grab, wait for inference, then sleep "
                  "80 ms) in place of the pipelined loop; `hemoedge bench web --capture "
                  "--quick` with WebBenchConfig.seedloop", False,
                  expected="a web capture budget (web.capture.*)")
    if importlib.util.find_spec("hemoedge.bench.web") is None:
        d.reason = ("`hemoedge bench web` is not part of this build (no hemoedge/bench/web.py), "
                    "so there is no capture benchmark to run the seed loop in")
        return d
    web_budgets = {b.name for b in budgets if any(
        r.metric.startswith("web.capture.") for r in b.refs())}
    d.ran = True
    runs = {}
    for name, seedloop in (("control", False), ("injected", True)):
        folder = out / f"detect-capture-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        res = folder / "results.json"
        shutil.copyfile(base_results, res)
        t0 = time.perf_counter()
        code = hemo(run_stage("bench web", art, data, res, seedloop=seedloop),
                    folder / "stages.log")
        if code != 0:
            raise HemoedgeError(f"bench web exited {code}; see {folder / 'stages.log'}")
        m = gate(Measured(res, 0.0, time.perf_counter() - t0), budgets, baseline)
        runs[name] = m
        d.details[name] = {
            "exit_code": m.exit_code, "failures": m.failures, "web_s": m.total_s,
            "web_checks": [c for c in m.checks if c["budget"] in web_budgets],
            "dropped_frames_worst": metric(res, "web.capture.dropped_frames",
                                           SHIPPED_VARIANT)}
    ctrl, inj = runs["control"], runs["injected"]
    d.to_verdict_s, d.exit_code = inj.total_s, inj.exit_code
    d.caught_by = inj.failures
    new = (set(inj.failures) - set(ctrl.failures) - standing) & web_budgets
    d.caught = inj.exit_code == 1 and bool(new)
    d.details["note"] = ("time = the browser stage + gate only; eval and the CPU benchmark "
                         "are reused from an unchanged run of the same artifact")
    return d


# --- output -----------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    from hemoedge.bench.cpu import machine as m

    info = m()
    return {"cpu": info["cpu"], "cores": info["cores"], "python": platform.python_version(),
            "loadavg_start": list(os.getloadavg())}


def to_markdown(s: dict[str, Any]) -> str:
    fa = s["false_alarms"]
    lines = [
        "## Gate proof (ci/prove_gate.py)", "",
        f"Machine: {s['machine']['cpu']}, {s['machine']['cores']} cores; load average "
        f"{s['machine']['loadavg_start'][0]:.1f} at the start, "
        f"{s['machine']['loadavg_end'][0]:.1f} at the end. Started {s['started']} UTC, "
        f"took {s['total_s'] / 60:.1f} min.", "",
        f"Command: `{s['command']}`", "",
        f"Budgets: `{s['budgets']}`. Baseline: {s['baseline']['source']}.", "",
        "Standing failures (budgets the unchanged artifact fails every time; a model issue, "
        "not noise, and not counted as detections): "
        + (", ".join(s["standing_failures"]) or "none") + ".", "",
        "| check | result | time | notes |", "|---|---|---|---|",
        f"| false alarms (unchanged code) | **{fa['failures']} / {fa['runs']}** runs failed "
        f"({fa['failures_beyond_standing']} beyond the standing failures) "
        f"| {fa['mean_s']:.0f} s per run (eval + bench + gate) | "
        f"{fa['runs_with_not_significant']} run(s) had a breach judged not significant |",
    ]
    for d in s["detections"]:
        if not d["ran"]:
            lines.append(f"| {d['name']} | not run | - | {d['reason']} |")
            continue
        verdict = "**caught**" if d["caught"] else "**missed**"
        by = ", ".join(d["caught_by"]) or "no failing budget"
        lines.append(f"| {d['name']} | {verdict} (exit {d['exit_code']}) | "
                     f"{d['to_verdict_s']:.0f} s to the verdict (+{d['inject_s']:.0f} s to "
                     f"inject) | failing: {by} |")
    lines += ["", "### False-alarm runs", "",
              "| run | exit | failing | not significant | s | load avg at start |",
              "|---|---|---|---|---|---|"]
    for r in fa["per_run"]:
        lines.append(f"| {r['run']} | {r['exit_code']} | {', '.join(r['failures']) or '-'} | "
                     f"{', '.join(r['not_significant']) or '-'} | {r['total_s']:.0f} | "
                     f"{r['loadavg']:.1f} |")
    if fa.get("ratio_ranges"):
        lines += ["", "Timing ratio budgets over the unchanged runs (value, and the widest 95 % "
                  "interval seen):", ""]
        for name, r in fa["ratio_ranges"].items():
            lines.append(f"- {name}: {r['min']:.3f} to {r['max']:.3f} (interval "
                         f"{r['lo']:.3f} to {r['hi']:.3f}); limit {r['limit']}")
    for d in s["detections"]:
        if d["ran"]:
            det = {k: v for k, v in d["details"].items() if k != "checks"}
            lines += ["", f"### {d['name']}", "", d["what"] + ".", ""]
            for c in d["details"].get("checks", []):
                iv = (f" [{c['interval'][0]:.3f}, {c['interval'][1]:.3f}]"
                      if c["interval"] and c["interval"][0] != c["interval"][1] else "")
                value = "n/a" if c["value"] is None else f"{c['value']:.3f}"
                lines.append(f"- {c['budget']} ({c['severity']}): {value}{iv} vs "
                             f"{c['limit']}: **{c['verdict']}**")
            lines += ["", "```json", json.dumps(det, indent=1), "```"]
    return "\n".join(lines) + "\n"


def print_table(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="gate proof")
    for h in ("check", "result", "time", "notes"):
        t.add_column(h, overflow="fold")
    fa = s["false_alarms"]
    t.add_row("false alarms", f"{fa['failures']} / {fa['runs']} failed",
              f"{fa['mean_s']:.0f} s per run", f"{fa['runs_with_not_significant']} run(s) with "
              "a not-significant breach")
    for d in s["detections"]:
        if not d["ran"]:
            t.add_row(d["name"], "not run", "-", d["reason"])
        else:
            t.add_row(d["name"], ("caught" if d["caught"] else "MISSED") +
                      f" (exit {d['exit_code']})", f"{d['to_verdict_s']:.0f} s",
                      ", ".join(d["caught_by"]) or "no failing budget")
    Console(width=max(Console().width, 140)).print(t)


def ratio_ranges(runs: list[Measured]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in runs:
        for c in m.checks:
            if c["kind"] != "ratio" or c["value"] is None or "bytes" in c["budget"]:
                continue
            r = out.setdefault(c["budget"], {"min": c["value"], "max": c["value"],
                                             "lo": float("inf"), "hi": float("-inf"),
                                             "limit": c["limit"]})
            r["min"], r["max"] = min(r["min"], c["value"]), max(r["max"], c["value"])
            if c["interval"]:
                r["lo"], r["hi"] = min(r["lo"], c["interval"][0]), max(r["hi"], c["interval"][1])
    return out


# --- main ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=(
        "Examples: `ci/prove_gate.py` (the full proof, about 25 min on 2 cores); "
        "`ci/prove_gate.py --runs 2 --skip slow,worse` (a smoke run)."))
    p.add_argument("--out", default=str(REPO / "runs/prove-gate"),
                   help="output folder for summary.json/.md (default runs/prove-gate)")
    p.add_argument("--runs", type=int, default=10, help="false-alarm runs on unchanged code")
    p.add_argument("--art", help="reuse this quick artifact (default: build one like "
                   "`hemoedge run --quick`)")
    p.add_argument("--data", help="Yakimov-layout folder the artifact's eval uses (default: "
                   "synthesised like `hemoedge run --quick`; required with --art)")
    p.add_argument("--detector", help="checkpoint for the built artifact (default: embedded)")
    p.add_argument("--estimator", help="checkpoint for the built artifact (default: embedded)")
    p.add_argument("--baseline", default=str(REPO / "ci/baseline.json"),
                   help="baseline to gate against (default ci/baseline.json; made from a "
                   "reference run when absent)")
    p.add_argument("--fresh-baseline", action="store_true",
                   help="make the baseline from a reference run even if --baseline exists")
    p.add_argument("--budgets", help="budgets TOML (default: the package's own, "
                   "hemoedge/gate/budgets.toml, as `hemoedge gate` reads)")
    p.add_argument("--estimator-accuracy", action="store_true",
                   help="gate the end-to-end accuracy budgets on ground-truth crops instead "
                   "(acc.e2e.* -> acc.*, est=int8): for an artifact whose detector finds no "
                   "nails yet")
    p.add_argument("--slow-variant", default="det=int8", help="model to slow down (det=P|est=P)")
    p.add_argument("--slowdown", type=lambda t: [float(x) for x in t.split(",")], default=[2.0],
                   help="slowdown factor(s), comma-separated, e.g. 1.5,2 (default 2)")
    p.add_argument("--slow-threads", type=int, default=2, help="threads for sizing the slowdown")
    p.add_argument("--perturb-rel", type=float, default=0.5,
                   help="relative noise on the estimator head weights (default 0.5)")
    p.add_argument("--perturb-shrink", type=float, default=0.5,
                   help="shrink the estimator head weights towards 0 by this fraction "
                   "(default 0.5: an under-fitted head)")
    p.add_argument("--skip", default="", help="comma-separated: slow, worse, capture")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    if a.runs < 0:
        p.error("--runs must be >= 0")
    if a.art and not a.data:
        p.error("--art needs --data (the folder its eval reads)")
    a.skip = {x.strip() for x in a.skip.split(",") if x.strip()}
    if a.skip - {"slow", "worse", "capture"}:
        p.error(f"--skip takes slow, worse, capture; got {sorted(a.skip)}")
    return a


def prove(a: argparse.Namespace) -> dict[str, Any]:
    from hemoedge.gate import PACKAGED_BUDGETS, load_budgets, update_baseline
    from hemoedge.report.results import Results

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    t_start = time.perf_counter()
    s: dict[str, Any] = {"schema": "hemoedge.prove-gate/1",
                         "started": started.strftime("%Y-%m-%d %H:%M"),
                         "command": " ".join([Path(sys.executable).name, "ci/prove_gate.py",
                                              *sys.argv[1:]]),
                         "machine": machine()}
    budgets_path = Path(a.budgets) if a.budgets else PACKAGED_BUDGETS
    if a.estimator_accuracy:
        budgets_path = crop_budgets(budgets_path, out / "budgets-crops.toml")
    s["budgets"] = str(budgets_path)
    budgets = load_budgets(budgets_path)

    if a.art:
        art, data, build_s = Path(a.art), Path(a.data), 0.0
        s["artifact"] = {"path": str(art), "built": False}
    else:
        art, data, build_s = build_quick(out / "quick", Path(a.data) if a.data else None,
                                         a.detector, a.estimator)
        s["artifact"] = {"path": str(art), "built": True, "build_s": build_s}
    print(f"artifact: {art}; data: {data}", flush=True)

    base_path = Path(a.baseline)
    if base_path.is_file() and not a.fresh_baseline:
        s["baseline"] = {"path": str(base_path), "source": f"{base_path} (committed)"}
        reference = None
    else:
        print("baseline: a reference run of the same stages", flush=True)
        ref = measure(art, data, out / "reference")
        reference = ref.results
        base_path = out / "baseline.json"
        update_baseline(Results.load(ref.results), budgets, base_path)
        why = "--fresh-baseline" if a.fresh_baseline else f"{a.baseline} absent"
        s["baseline"] = {"path": str(base_path), "source": f"a reference run on the same "
                         f"artifact ({why}), written like `hemoedge gate --update-baseline`",
                         "reference_s": ref.total_s}
    baseline = Results.load(base_path)
    ref_failures = None
    if reference is not None:  # the reference run gated against the baseline made from it
        ref_failures = gate(Measured(reference, 0.0, 0.0), budgets, baseline).failures

    runs: list[Measured] = []
    for i in range(1, a.runs + 1):
        m = gate(measure(art, data, out / "false-alarms" / f"run-{i:02d}"), budgets, baseline)
        runs.append(m)
        print(f"false-alarm run {i}/{a.runs}: exit {m.exit_code}"
              + (f"; failing: {', '.join(m.failures)}" if m.failures else "")
              + (f"; missing: {'; '.join(m.missing)}" if m.missing else "")
              + (f"; not significant: {', '.join(m.not_significant)}"
                 if m.not_significant else "") + f" ({m.total_s:.0f} s)", flush=True)
    reference = reference or (runs[0].results if runs else None)
    # standing failures: budgets the unchanged artifact fails every time (a model that misses
    # a budget, not noise); the detections count only failures beyond these
    if ref_failures is not None:
        standing = frozenset(ref_failures)
    else:
        standing = frozenset.intersection(*(frozenset(m.failures) for m in runs)) \
            if runs else frozenset()
    s["standing_failures"] = sorted(standing)
    s["false_alarms"] = {
        "runs": len(runs), "failures": sum(m.exit_code != 0 for m in runs),
        "failures_beyond_standing": sum(bool(set(m.failures) - standing) or bool(m.missing)
                                        for m in runs),
        "exit_codes": [m.exit_code for m in runs],
        "runs_with_not_significant": sum(bool(m.not_significant) for m in runs),
        "mean_s": sum(m.total_s for m in runs) / len(runs) if runs else 0.0,
        "per_run": [{"run": i + 1, "exit_code": m.exit_code, "failures": m.failures,
                     "missing": m.missing, "not_significant": m.not_significant,
                     "eval_s": m.eval_s, "bench_s": m.bench_s, "gate_s": m.gate_s,
                     "loadavg": m.loadavg,
                     "total_s": m.total_s, "checks": m.checks} for i, m in enumerate(runs)],
        "ratio_ranges": ratio_ranges(runs)}

    dets: list[Detection] = []

    def attempt(name: str, fn) -> None:
        """One detection; a crash is recorded (with its message) instead of losing the rest."""
        print(f"detection: {name}", flush=True)
        try:
            dets.append(fn())
        except Exception as e:  # recorded in the summary, the proof continues
            log.exception("detection %s failed", name)
            dets.append(Detection(name, "", False, reason=f"error: {type(e).__name__}: {e}"))

    if "slow" not in a.skip:
        for f in a.slowdown:
            attempt(f"slowed {a.slow_variant} x{f:g}", lambda f=f: detect_slow(
                art, data, out, budgets, baseline, a.slow_variant, f, a.slow_threads,
                [m.results for m in runs], standing))
    if "worse" not in a.skip:
        if reference is None:
            reference = measure(art, data, out / "reference").results
            if not runs:  # standing failures from this reference run, gated like the rest
                standing = frozenset(gate(Measured(reference, 0.0, 0.0), budgets,
                                          baseline).failures)
                s["standing_failures"] = sorted(standing)
        attempt("worse estimator", lambda: detect_worse_estimator(
            art, data, out, budgets, baseline, a.perturb_rel, reference, standing,
            a.perturb_shrink))
    if "capture" not in a.skip:
        base = runs[-1].results if runs else reference
        if base is None:
            base = measure(art, data, out / "reference").results
        attempt("capture loop waits for inference", lambda: detect_capture(
            art, data, out, budgets, baseline, base, standing))
    s["detections"] = [asdict(d) for d in dets]
    s["machine"]["loadavg_end"] = list(os.getloadavg())
    s["total_s"] = time.perf_counter() - t_start
    (out / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
    (out / "summary.md").write_text(to_markdown(s))
    return s


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from hemoedge import offline

    offline.configure()
    try:
        s = prove(a)
    except HemoedgeError as e:
        print(f"prove_gate: error: {e}", file=sys.stderr)
        return 2
    print_table(s)
    print(f"summary: {Path(a.out) / 'summary.json'}, {Path(a.out) / 'summary.md'}")
    ok = s["false_alarms"]["failures_beyond_standing"] == 0 and all(
        d["caught"] for d in s["detections"] if d["ran"]) and not any(
        d["reason"].startswith("error:") for d in s["detections"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
