"""The "Backbone sweep" report section: one row per (backbone label, estimator precision),
Pareto marks within a task, and accuracy-vs-latency / accuracy-vs-size plots per task.

Reads only results.json: metric variants carrying "backbone=<label>" and results.env["sweep"]
(entries with label, timm backbone, input size, task, status, reason, params_m). Variant
strings are parsed as key=value sets, never by position.
"""

from __future__ import annotations

from dataclasses import dataclass

from hemoedge.errors import HemoedgeError
from hemoedge.names import ANAEMIA_THRESHOLD_GDL, PRECISIONS, parse_variant
from hemoedge.report.htmlparts import NA, Section, esc
from hemoedge.report.plots import FIG_WIDTH, fig_svg, pareto_dominated, pyplot
from hemoedge.report.query import (
    BACKBONE,
    CLS_PREFIXES,
    HB_PREFIXES,
    PREFERRED_THREADS,
    TASKS,
    ci95,
    exact_pairs,
    lookup,
    sweep_entries,
    sweep_info,
)
from hemoedge.report.results import Metric, Results
from hemoedge.sweep import Entry

PRECISION_ORDER = PRECISIONS
MARKERS = {"fp32": ("o", "#1f77b4"), "fp16": ("s", "#ff7f0e"), "int8": ("^", "#2ca02c")}
OTHER_MARKER = ("D", "#7f7f7f")
STAR = "★"


@dataclass
class SweepRow:
    label: str
    backbone: str  # timm name
    size: int | None
    task: str  # "regression" | "classification"
    params_m: float | None
    status: str = "done"  # "done" | "skipped" | "failed"
    reason: str = ""
    est: str = ""  # estimator precision ("" on skipped/failed rows)
    mae: float | None = None  # g/dL, e2e where measured
    mae_source: str = ""  # "e2e" or "crops" (estimator only)
    mae_delta: float | None = None
    auroc: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    auroc_delta: float | None = None
    cls_source: str = ""
    web_ms: float | None = None  # frame p50
    web_ci: list[float] | None = None
    cpu_ms: float | None = None
    est_bytes: float | None = None
    det_bytes: float | None = None
    pareto: bool = False  # not dominated on (accuracy, web frame ms) within the task

    @property
    def key(self) -> str:
        return f"{self.label}|{self.est}"

    @property
    def total_bytes(self) -> float | None:
        if self.est_bytes is None or self.det_bytes is None:
            return None
        return self.est_bytes + self.det_bytes

    @property
    def total_mb(self) -> float | None:
        b = self.total_bytes
        return b / 1e6 if b is not None else None

    @property
    def accuracy(self) -> float | None:
        """The task's headline figure as plotted: e2e Hb MAE or e2e AUROC."""
        return self.auroc if self.task == "classification" else self.mae

    @property
    def loss(self) -> float | None:
        """Accuracy as lower-is-better (for Pareto dominance)."""
        a = self.accuracy
        if a is None:
            return None
        return -a if self.task == "classification" else a


def has_backbones(results: Results) -> bool:
    return any(BACKBONE in parse_variant(m.variant) for m in results.metrics if m.variant)


def _variant(pairs: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(pairs.items()))


def _value(m: Metric | None) -> float | None:
    return m.value if m is not None else None


def _labels(results: Results) -> dict[str, set[str]]:
    """backbone label -> estimator precisions seen in metric variants."""
    out: dict[str, set[str]] = {}
    for m in results.metrics:
        pairs = parse_variant(m.variant) if m.variant else {}
        if BACKBONE in pairs:
            precs = out.setdefault(pairs[BACKBONE], set())
            if pairs.get("est"):
                precs.add(pairs["est"])
    return out


def _guess_task(results: Results, label: str) -> str:
    names = {m.name for m in results.metrics
             if m.variant and parse_variant(m.variant).get(BACKBONE) == label}
    cls = any(n.startswith(CLS_PREFIXES) for n in names)
    hb = any(n.startswith(HB_PREFIXES) for n in names)
    return "classification" if cls and not hb else "regression"


def _entry_row(label: str, e: dict, results: Results) -> SweepRow:
    try:  # the label's own grammar: NAME[@SIZE][:cls]
        parsed = Entry.parse(label)
    except HemoedgeError:
        parsed = None
    size = e.get("size")
    if not isinstance(size, int):
        size = parsed.size if parsed else None
    params = e.get("params_m")
    if not isinstance(params, (int, float)):
        params = _value(exact_pairs(results, "sweep.params_m", {BACKBONE: label}))
    task = e.get("task") if e.get("task") in TASKS else _guess_task(results, label)
    timm = e.get("backbone") or (parsed.backbone if parsed else label)
    return SweepRow(label, str(timm), size, task, params,
                    str(e.get("status") or "done"), str(e.get("reason") or ""))


def _precision_order(p: str) -> tuple:
    return (PRECISION_ORDER.index(p) if p in PRECISION_ORDER else len(PRECISION_ORDER), p)


def sweep_rows(results: Results) -> list[SweepRow]:
    """One row per (label, estimator precision), and one per skipped/failed entry; regression
    rows first, each task in the sweep's entry order, precisions fp32, fp16, int8."""
    info = sweep_info(results)
    det = str(info.get("det_precision") or "int8")
    threads = info.get("threads") if isinstance(info.get("threads"), int) else PREFERRED_THREADS
    entries = sweep_entries(results)
    seen = _labels(results)
    labels = list(entries) + sorted(set(seen) - set(entries))
    rows = []
    for label in labels:
        base = _entry_row(label, entries.get(label, {}), results)
        precs = sorted(seen.get(label, set()), key=_precision_order)
        if base.status != "done" or not precs:
            if base.status == "done":
                base.reason = "no per-precision metrics in the results"
            rows.append(base)
            continue
        for est in precs:
            r = SweepRow(**{**base.__dict__, "est": est})
            pair = {BACKBONE: label, "det": det, "est": est}
            model = {BACKBONE: label, "est": est}
            if r.task == "classification":
                auc = exact_pairs(results, "acc.e2e.cls.auroc", pair)
                pre, r.cls_source = ("acc.e2e.cls.", "e2e") if auc is not None else \
                    ("acc.cls.", "crops")
                where = pair if auc is not None else model
                r.auroc = _value(exact_pairs(results, pre + "auroc", where))
                r.sensitivity = _value(exact_pairs(results, pre + "sensitivity", where))
                r.specificity = _value(exact_pairs(results, pre + "specificity", where))
                r.auroc_delta = _value(exact_pairs(results, pre + "auroc_delta", where))
                if r.auroc is None:
                    r.cls_source = ""
            else:
                mae = exact_pairs(results, "acc.e2e.hb_mae", pair)
                if mae is not None:
                    r.mae, r.mae_source = mae.value, "e2e"
                    r.mae_delta = _value(exact_pairs(results, "acc.e2e.hb_mae_delta", pair))
                else:
                    mae = exact_pairs(results, "acc.hb_mae", model)
                    if mae is not None:
                        r.mae, r.mae_source = mae.value, "crops"
                        r.mae_delta = _value(exact_pairs(results, "acc.hb_mae_delta", model))
            web = exact_pairs(results, "web.frame_ms.p50", pair, threads)
            if web is not None:
                r.web_ms, r.web_ci = web.value, ci95(web)
            r.cpu_ms = _value(exact_pairs(results, "cpu.frame_ms.p50", pair, threads))
            r.est_bytes = _value(exact_pairs(results, "size.estimator.bytes", model)
                                 or lookup(results, "size.estimator.bytes", _variant(model),
                                           threads=None, same=(BACKBONE,)))
            r.det_bytes = _value(exact_pairs(results, "size.detector.bytes",
                                        {BACKBONE: label, "det": det})
                                 or lookup(results, "size.detector.bytes", _variant(pair),
                                           threads=None))
            rows.append(r)
    mark_pareto(rows)
    order = {t: i for i, t in enumerate(TASKS)}
    return sorted(rows, key=lambda r: order.get(r.task, len(order)))  # stable within a task


def mark_pareto(rows: list[SweepRow]) -> None:
    """Set .pareto on rows not dominated on (accuracy, web frame p50) within their task."""
    for task in {r.task for r in rows}:
        mine = [r for r in rows if r.task == task and r.status == "done" and r.est
                and r.web_ms is not None and r.loss is not None]
        front = {r.key for r in mine} - pareto_dominated({r.key: (r.web_ms, r.loss)
                                                          for r in mine})
        for r in rows:
            if r.task == task:
                r.pareto = r.key in front


# --- table ----------------------------------------------------------------------------------

COMMON_HEAD = (("label", "Backbone"), ("timm", "timm model"), ("size", "Input px"),
               ("params", "Params (M)"), ("est", "Est. precision"))
ACC_HEAD = {
    "regression": (("mae", "e2e Hb MAE (g/dL)"), ("mae_delta", "Δ MAE vs fp32")),
    "classification": (("auroc", "e2e AUROC"), ("sens", "Sensitivity"), ("spec", "Specificity"),
                       ("auroc_delta", "Δ AUROC vs fp32")),
}
TAIL_HEAD = (("web", "Web frame p50 ms [ci95]"), ("cpu", "CPU frame p50 ms"),
             ("est_mb", "Estimator MB"), ("total_mb", "Det.+est. MB"), ("pareto", "Pareto"))


def head(task: str) -> tuple[tuple[str, str], ...]:
    return COMMON_HEAD + ACC_HEAD[task] + TAIL_HEAD


def _f(v: float | None, fmt: str) -> str:
    return NA if v is None else format(v, fmt)


def cells(r: SweepRow) -> dict[str, str]:
    """The row's table cells, formatted (keys of head(r.task))."""
    out = {"label": r.label, "timm": r.backbone, "size": _f(r.size, "d"),
           "params": _f(r.params_m, ".2f"), "est": r.est or r.status}
    if r.status != "done" or not r.est:
        acc_keys = [k for k, _ in ACC_HEAD[r.task]]
        out.update({k: NA for k, _ in ACC_HEAD[r.task] + TAIL_HEAD})
        out[acc_keys[0]] = f"{r.status}: {r.reason}" if r.reason else r.status
        return out
    if r.task == "classification":
        suffix = " (crops)" if r.cls_source == "crops" else ""
        out.update(auroc=_f(r.auroc, ".3f") + (suffix if r.auroc is not None else ""),
                   sens=_f(r.sensitivity, ".3f"), spec=_f(r.specificity, ".3f"),
                   auroc_delta=_f(r.auroc_delta, "+.3f"))
    else:
        suffix = " (crops)" if r.mae_source == "crops" else ""
        out.update(mae=_f(r.mae, ".3f") + (suffix if r.mae is not None else ""),
                   mae_delta=_f(r.mae_delta, "+.3f"))
    web = _f(r.web_ms, ".1f")
    if r.web_ci is not None:
        web += f" [{r.web_ci[0]:.1f}, {r.web_ci[1]:.1f}]"
    total = r.total_bytes
    out.update(web=web, cpu=_f(r.cpu_ms, ".1f"),
               est_mb=_f(r.est_bytes / 1e6 if r.est_bytes is not None else None, ".2f"),
               total_mb=_f(total / 1e6 if total is not None else None, ".2f"),
               pareto=STAR if r.pareto else "")
    return out


def _html_table(task: str, rows: list[SweepRow]) -> str:
    cols = head(task)
    n_acc = len(ACC_HEAD[task]) + len(TAIL_HEAD)
    out = ["<table class=\"sweep\"><tr>" + "".join(f"<th>{esc(h)}</th>" for _, h in cols)
           + "</tr>"]
    for r in rows:
        c = cells(r)
        lead = "".join(f"<td>{esc(c[k])}</td>" for k, _ in COMMON_HEAD)
        if r.status != "done" or not r.est:
            out.append(f"<tr class=\"{esc(r.status)}\">{lead}<td colspan=\"{n_acc}\" "
                       f"class=\"note\">{esc(c[ACC_HEAD[task][0][0]])}</td></tr>")
        else:
            out.append("<tr>" + lead + "".join(f"<td>{esc(c[k])}</td>"
                                               for k, _ in cols[len(COMMON_HEAD):]) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _md_table(task: str, rows: list[SweepRow]) -> str:
    cols = head(task)
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        c = cells(r)
        lines.append("| " + " | ".join(c[k].replace("|", "\\|") for k, _ in cols) + " |")
    return "\n".join(lines)


def _task_title(task: str, info: dict) -> str:
    if task == "classification":
        thr = info.get("anaemia_threshold_gdl", ANAEMIA_THRESHOLD_GDL)
        return f"Classification (anaemic = Hb < {thr} g/dL; AUROC higher is better)"
    return "Regression (Hb in g/dL; MAE lower is better)"


# --- plots ----------------------------------------------------------------------------------

def _panel(ax, rows: list[SweepRow], xattr: str, xlabel: str, task: str) -> None:
    pts = {r.key: (getattr(r, xattr), r.loss) for r in rows}
    dom = pareto_dominated(pts)
    front = sorted((x, -loss if task == "classification" else loss)
                   for k, (x, loss) in pts.items() if k not in dom)
    ax.step([x for x, _ in front], [y for _, y in front], where="post", color="#444", lw=1,
            alpha=0.6, label="Pareto front")
    for est in sorted({r.est for r in rows}, key=_precision_order):  # legend: filled markers
        marker, colour = MARKERS.get(est, OTHER_MARKER)
        ax.scatter([], [], s=46, marker=marker, color=colour, label=f"est {est}")
    for r in rows:
        x, y = getattr(r, xattr), r.accuracy
        marker, colour = MARKERS.get(r.est, OTHER_MARKER)
        d = r.key in dom
        ax.scatter([x], [y], s=46, marker=marker, facecolors="none" if d else colour,
                   edgecolors=colour, zorder=3)
        ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=6.5,
                    color="#777" if d else "#000")
    ax.margins(x=0.12, y=0.08)  # room for the labels
    ax.set_xlabel(xlabel)
    ax.set_ylabel("e2e AUROC (higher is better)" if task == "classification"
                  else "e2e Hb MAE g/dL (lower is better)")
    ax.grid(color="#eee")
    ax.legend(fontsize=7, loc="best")


def sweep_plots(rows: list[SweepRow]) -> list[str]:
    """One inline SVG per task: accuracy vs web frame p50, and accuracy vs total MB."""
    figs = []
    for task in TASKS:
        done = [r for r in rows if r.task == task and r.status == "done" and r.est
                and r.accuracy is not None]
        lat = [r for r in done if r.web_ms is not None]
        size = [r for r in done if r.total_bytes is not None]
        if not lat and not size:
            continue
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(FIG_WIDTH * 1.25, 4.2))
        for ax, pts, attr, xlabel in (
                (axes[0], lat, "web_ms", "web frame time p50 (ms)"),
                (axes[1], size, "total_mb", "detector + estimator (MB)")):
            if pts:
                _panel(ax, pts, attr, xlabel, task)
            else:
                ax.text(0.5, 0.5, "no figures", ha="center", va="center",
                        transform=ax.transAxes)
        fig.suptitle(f"{task}: accuracy vs latency and vs size (filled: Pareto front)",
                     fontsize=9)
        figs.append(fig_svg(fig, f"sweep-{task}"))
    return figs


# --- the section ----------------------------------------------------------------------------

def sweep_section(results: Results) -> Section:
    info = sweep_info(results)
    rows = sweep_rows(results)
    det = info.get("det_precision") or "int8"
    threads = info.get("threads") if isinstance(info.get("threads"), int) else PREFERRED_THREADS
    facts = [f"command: {info['command']}" if info.get("command") else "",
             f"machine: {info['machine']}" if info.get("machine") else ""]
    facts = [f for f in facts if f]
    n_done = len({r.label for r in rows if r.status == "done" and r.est})
    n_other = len([r for r in rows if r.status != "done" or not r.est])
    lead = (f"{n_done} backbone(s) measured" + (f", {n_other} skipped or failed" if n_other
                                                else "")
            + f". Every pairing uses the det={det} detector; frame times are p50 at "
            f"threads={threads} (web: onnxruntime-web in Chromium, CPU: onnxruntime). Δ: "
            f"versus the same backbone's fp32 pipeline. {STAR}: not dominated on (accuracy, "
            "web frame p50) within the task. (crops): estimator on ground-truth crops, no "
            "end-to-end figure.")
    html_parts = [f"<p>{esc(f)}</p>" for f in facts] + [f"<p>{esc(lead)}</p>"]
    md_parts = [f"- {f}" for f in facts] + ["", lead]
    for task in TASKS:
        task_rows = [r for r in rows if r.task == task]
        if not task_rows:
            continue
        title = _task_title(task, info)
        html_parts.append(f"<h3>{esc(title)}</h3>" + _html_table(task, task_rows))
        md_parts += ["", f"### {title}", "", _md_table(task, task_rows)]
    figs = sweep_plots(rows)
    if figs:
        html_parts.append(f'<div class="figs">{"".join(figs)}</div>')
    else:
        html_parts.append('<p class="note">No entry has both an accuracy figure and a web '
                          'frame time or size; plots omitted.</p>')
    return Section("Backbone sweep", "".join(html_parts), "\n".join(md_parts).strip())
