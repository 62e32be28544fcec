"""`hemoedge gate`: budgets + results.json [+ a baseline] -> verdict.

The budgets default to the suite's own, shipped in the package (hemoedge/gate/budgets.toml,
PACKAGED_BUDGETS), so an installed hemoedge gates anywhere. The baseline is one trusted run's
results, not configuration: --baseline FILE, else ci/baseline.json when the working directory
has one (a checkout); with neither, the baseline budgets are not judged ("skipped", with the
note NO_BASELINE) while the absolute and ratio budgets still are.

Three budget kinds (see docs/gate.md for the file format):
  absolute  one metric against a fixed max/min;
  baseline  one metric not worse than the baseline by more than X (or X %);
  ratio     numerator metric / denominator metric from the same run against a max/min.

Noise: shared machines make single timings unreliable, so a breach is a "fail" only when the
whole 95 % interval of the compared figure lies beyond the threshold. The interval comes from
raw samples (params["samples"], bootstrap with scipy.stats) or from the metrics' ci95 (for a
ratio, conservative interval arithmetic [lo_a/hi_b, hi_a/lo_b]). A breach whose interval
straddles the threshold is "not significant"; a timing breach with no interval at all is also
"not significant". Figures without an interval that are not timings (bytes, accuracy) are
compared exactly.

Exit codes: 0 pass; 1 any failing budget; 2 bad input (malformed TOML, wrong schema, a metric
a budget names is missing, a --baseline FILE that is absent although a budget needs it, or
unreadable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hemoedge.errors import ResultsError
from hemoedge.gate.baseline import (  # noqa: F401  (the gate's public names)
    DEFAULT_BASELINE,
    NO_BASELINE,
    _base_key,
    baseline_diff,
    make_baseline,
    update_baseline,
)
from hemoedge.gate.budgets import (  # noqa: F401  (the gate's public names)
    ANY_VARIANT,
    BOOTSTRAP_RESAMPLES,
    BUDGET_KEYS,
    KINDS,
    MAX_NAMED,
    NOISE,
    PACKAGED_BUDGETS,
    REF_KEYS,
    SEVERITIES,
    TIME_UNITS,
    VERDICTS,
    Budget,
    MetricRef,
    _num,
    _ref,
    load_budgets,
    parse_budgets,
)
from hemoedge.gate.checks import (  # noqa: F401  (the gate's public names)
    Check,
    GateResult,
    _evaluate_one,
    _find,
    _refuse_non_finite,
    evaluate,
)
from hemoedge.gate.outputs import (  # noqa: F401  (the gate's public names)
    _headline,
    _row,
    benchmark_entries,
    print_table,
    to_markdown,
    write_benchmark_json,
    write_junit,
)
from hemoedge.gate.stats import (  # noqa: F401  (the gate's public names)
    _interval,
    _is_timing,
    _iv,
    _judge,
    _stat_for,
    bootstrap_ratio,
    fmt,
    ratio_interval,
)
from hemoedge.report.results import Results, merge

# --- command line --------------------------------------------------------------------------

def _missing_message(res: GateResult, baseline_path: Path) -> str:
    from_base = [c for c in res.missing if c.missing_from == "baseline"]
    from_res = [c for c in res.missing if c.missing_from == "results"]
    parts = []
    if from_res:
        refs: dict[str, list[str]] = {}
        for c in from_res:
            refs.setdefault(c.missing_ref.label(), []).append(repr(c.budget.name))
        shown = [f"{ref} (budget {', '.join(names)})" for ref, names in refs.items()]
        more = f"; and {len(shown) - MAX_NAMED} more (see the table)" \
            if len(shown) > MAX_NAMED else ""
        parts.append("results lack metric(s) named by budgets: " + "; ".join(
            shown[:MAX_NAMED]) + more)
    if from_base:
        names = ", ".join(repr(c.budget.name) for c in from_base[:MAX_NAMED]) + (
            f" and {len(from_base) - MAX_NAMED} more" if len(from_base) > MAX_NAMED else "")
        if not baseline_path.is_file():
            parts.append(f"{baseline_path} not found but budget(s) {names} compare against it; "
                         "create it on purpose from a trusted run with `hemoedge gate "
                         f"RESULTS.json --update-baseline --baseline {baseline_path}`")
        else:
            parts.append(f"{baseline_path} lacks " + "; ".join(
                c.missing_ref.label() for c in from_base) + f" (budget(s) {names}); refresh it "
                "with `hemoedge gate RESULTS.json --update-baseline" + (
                "" if baseline_path == DEFAULT_BASELINE else f" --baseline {baseline_path}") + "`")
    return "; ".join(parts)


@dataclass(frozen=True)
class GateConfig:
    """`hemoedge gate`: the results files (shards are merged), the budgets and the baseline,
    the optional outputs; `update_baseline` writes the baseline from the results instead."""
    results: list[Path]
    baseline: Path | None = None  # None: DEFAULT_BASELINE if it exists (else not judged)
    budgets: Path = PACKAGED_BUDGETS
    md: Path | None = None
    junit: Path | None = None
    benchmark_json: Path | None = None
    update_baseline: bool = False


def config_from_args(args) -> GateConfig:
    paths = args.results if isinstance(args.results, list) else [args.results]

    def opt(v) -> Path | None:
        return Path(v) if v else None

    return GateConfig(results=[Path(p) for p in paths], baseline=opt(args.baseline),
                      budgets=opt(args.budgets) or PACKAGED_BUDGETS, md=opt(args.md),
                      junit=opt(args.junit), benchmark_json=opt(args.benchmark_json),
                      update_baseline=bool(args.update_baseline))


def cli(args) -> int:
    return main(config_from_args(args))


def _write_baseline(results: Results, budgets_path: Path, baseline_path: Path) -> int:
    """--update-baseline: write the baseline from these results and print the diff."""
    budgets = load_budgets(budgets_path) if budgets_path.is_file() else None
    existed = baseline_path.is_file()
    rows = update_baseline(results, budgets, baseline_path)
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=escape(f"baseline diff ({baseline_path})"))
    for h in ("metric [variant] (params)", "old", "new"):
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*(escape(x) for x in r))
    console = Console(width=max(Console().width, 140))
    console.print(t)
    verb = "updated" if existed else "created"
    console.print(escape(f"{verb} {baseline_path}: {len(rows)} metric(s) changed; commit "
                         "it on purpose"))
    return 0


def main(cfg: GateConfig) -> int:
    """`hemoedge gate` once its config is known (also what `run` and ci/prove_gate.py call):
    exit 0 pass, 1 a failing budget; bad input raises (exit 2) before anything is written."""
    results = merge(cfg.results)
    baseline_path = cfg.baseline or DEFAULT_BASELINE
    if cfg.update_baseline:
        return _write_baseline(results, cfg.budgets, baseline_path)

    budgets = load_budgets(cfg.budgets)
    found = baseline_path.is_file()
    baseline = Results.load(baseline_path) if found else None
    # a baseline named on purpose must be there; the default one is optional
    res = evaluate(results, budgets, baseline, no_baseline="" if cfg.baseline else NO_BASELINE)
    if not found and any(c.missing_from == "baseline" for c in res.missing):
        raise ResultsError(_missing_message(res, baseline_path))
    print_table(res)
    md = to_markdown(res)
    if cfg.md:
        cfg.md.parent.mkdir(parents=True, exist_ok=True)
        # $GITHUB_STEP_SUMMARY is shared by a job's steps: append there, overwrite elsewhere
        mode = "a" if str(cfg.md) == os.environ.get("GITHUB_STEP_SUMMARY") else "w"
        with cfg.md.open(mode, encoding="utf-8") as f:
            f.write(md)
        print(f"markdown summary: {cfg.md}")
    if cfg.junit:
        print(f"junit xml: {write_junit(res, cfg.junit)}")
    if cfg.benchmark_json:
        written = write_benchmark_json(res, cfg.benchmark_json)
        print("github-action-benchmark json: " + ", ".join(str(p) for p in written))
    unjudged = sum(c.note == NO_BASELINE for c in res.checks)
    if unjudged:
        print(f"{unjudged} baseline budget(s) not judged: {DEFAULT_BASELINE} is not in "
              f"{Path.cwd()}; {NO_BASELINE}")
    if res.missing:
        raise ResultsError(_missing_message(res, baseline_path))
    return res.exit_code
