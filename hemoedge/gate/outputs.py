"""The gate's outputs: a terminal table, Markdown, JUnit XML, github-action-benchmark JSON.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from hemoedge.gate.budgets import VERDICTS
from hemoedge.gate.checks import Check, GateResult
from hemoedge.gate.stats import _iv, fmt

log = logging.getLogger(__name__)


# --- outputs ------------------------------------------------------------------------------------

def _row(c: Check) -> dict[str, str]:
    b = c.budget
    verdict = c.verdict + (" (warn only)" if c.warned else "")
    if c.verdict in ("missing", "skipped"):
        value = "-"
    else:
        value = fmt(c.value) + (_iv(c.interval) if c.method != "exact" else "")
        if c.unit and c.unit != "x":
            value += f" {c.unit}"
    if b.kind == "ratio" and c.numerator is not None:
        value += f" = {fmt(c.numerator)} / {fmt(c.denominator)}"
    what = b.ref.label() + (f" / {b.denominator.label()}" if b.denominator else "")
    return {"budget": b.name, "kind": b.kind + (" (warn)" if b.severity == "warn" else ""),
            "metric": what, "value": value,
            "baseline": fmt(c.baseline) if c.baseline is not None else "-",
            "budget_limit": f"{c.op} {fmt(c.threshold)}" if c.threshold is not None else "-",
            "verdict": verdict, "method": c.method,
            "note": c.note or (c.describe() if c.verdict == "missing" else "")}


def _headline(res: GateResult) -> str:
    n = len(res.checks)
    counts = {v: sum(c.verdict == v for c in res.checks) for v in VERDICTS}
    state = "MISSING METRICS" if res.missing else "FAIL" if res.failures else "PASS"
    return (f"gate {state}: {n} budgets: {counts['pass']} pass, {len(res.failures)} fail, "
            f"{len(res.warnings)} warn-only fail, {counts['not significant']} not significant, "
            f"{counts['missing']} missing, {counts['skipped']} skipped")


def to_markdown(res: GateResult) -> str:
    cols = ("budget", "kind", "metric", "value", "baseline", "budget_limit", "verdict",
            "method", "note")
    head = ("Budget", "Kind", "Metric [variant]", "Value [95 % interval]", "Baseline", "Budget",
            "Verdict", "Method", "Note")
    lines = [f"## hemoedge {_headline(res)}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in res.checks:
        r = _row(c)
        cells = [r[k].replace("|", "\\|") for k in cols]
        if c.failed:
            cells[6] = f"**{cells[6]}**"
        lines.append("| " + " | ".join(cells) + " |")
    if res.failures:
        lines += ["", "### Failures", ""] + [f"- {c.describe()}" for c in res.failures]
    if res.warnings:
        lines += ["", "### Report-only (warn) budgets not met", ""] + \
            [f"- {c.describe()}" for c in res.warnings]
    if res.missing:
        lines += ["", "### Missing metrics (bad input)", ""] + \
            [f"- {c.describe()}" for c in res.missing]
    lines += ["", "A breach counts as a failure only when the whole 95 % interval lies beyond "
              "the budget; otherwise it is reported as *not significant*."]
    return "\n".join(lines) + "\n"


def write_junit(res: GateResult, path: str | Path) -> Path:
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

    suite = TestSuite("hemoedge.gate")
    for c in res.checks:
        r = _row(c)
        case = TestCase(c.budget.name, classname=f"gate.{c.budget.kind}")
        text = " | ".join(f"{k}: {v}" for k, v in r.items() if v and v != "-")
        if c.failed:
            case.result = [Failure(c.describe())]
        elif c.verdict == "missing":
            case.result = [Error(c.describe())]
        elif c.verdict == "skipped":
            case.result = [Skipped(c.note)]
        case.system_out = text
        suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xml.write(str(path), pretty=True)
    return path


def benchmark_entries(res: GateResult) -> dict[str, list[dict]]:
    """github-action-benchmark entries: {"smaller": [...], "bigger": [...]} of {name, unit, value}.
    Ratio budgets with a max are smaller-is-better; otherwise the metric's own `better` decides
    (falling back to the budget's direction)."""
    out: dict[str, list[dict]] = {"smaller": [], "bigger": []}
    seen = set()
    for c in res.checks:
        if c.value is None or c.verdict in ("missing", "skipped") or not math.isfinite(c.value):
            continue
        b = c.budget
        if b.kind == "ratio":
            den = b.denominator
            name = f"{b.ref.label()} / " + (den.label() if den.metric != b.ref.metric
                                             else f"[{den.variant or '-'}]")
            better = "smaller" if c.op == "<=" else "bigger"
        else:
            p = ",".join(f"{k}={v}" for k, v in b.ref.params)
            name = f"{b.ref.metric} [{b.ref.variant}]" + (f" {p}" if p else "")
            better = "smaller" if c.op == "<=" else "bigger"
            if b.better:
                better = "smaller" if b.better == "lower" else "bigger"
        if name in seen:
            continue
        seen.add(name)
        entry = {"name": name, "unit": c.unit or "", "value": c.value}
        if c.interval and all(math.isfinite(v) for v in c.interval) and c.method != "exact":
            entry["range"] = f"{fmt(c.interval[0])}..{fmt(c.interval[1])}"
        entry["extra"] = f"budget {c.op} {fmt(c.threshold)}: {c.verdict}"
        out[better].append(entry)
    return out


def write_benchmark_json(res: GateResult, path: str | Path) -> list[Path]:
    """Write `path` (customSmallerIsBetter) and `<stem>.bigger.json` (customBiggerIsBetter)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = benchmark_entries(res)
    bigger = path.with_name(path.stem + ".bigger" + (path.suffix or ".json"))
    path.write_text(json.dumps(entries["smaller"], indent=1) + "\n")
    bigger.write_text(json.dumps(entries["bigger"], indent=1) + "\n")
    return [path, bigger]


def print_table(res: GateResult) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    styles = {"pass": "green", "fail": "bold red", "not significant": "yellow",
              "missing": "bold magenta", "skipped": "dim"}
    t = Table(title="hemoedge gate", show_lines=False)
    for h in ("Budget", "Kind", "Metric [variant]", "Value [95 % interval]", "Baseline",
              "Budget", "Verdict", "Method / note"):
        t.add_column(h, overflow="fold")
    for c in res.checks:
        r = _row(c)
        style = "yellow" if c.warned else styles[c.verdict]
        note = "; ".join(x for x in (r["method"], r["note"]) if x)
        t.add_row(*(escape(r[k]) for k in ("budget", "kind", "metric", "value", "baseline",
                                           "budget_limit")),
                  f"[{style}]{escape(r['verdict'])}[/]", escape(note))
    console = Console(width=max(Console().width, 160))
    console.print(t)
    console.print(_headline(res))
    for c in res.failures:
        console.print(f"[bold red]FAIL[/] {escape(c.describe())}")
    for c in res.warnings:
        console.print(f"[yellow]WARN[/] {escape(c.describe())}")
