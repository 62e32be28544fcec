"""The report's figure sections, each drawn with matplotlib and inlined as SVG: accuracy vs
latency (Pareto), error per severity band, latency distributions, model sizes, frame time by
stage and the capture timeline. Each raises Absent when its metrics are missing.
"""

from __future__ import annotations

import math

from hemoedge.report.gather import (
    CAPTURE_FRAME,
    TARGETS,
    capture_frames,
    frame_stages,
    latency_groups,
    pareto_points,
)
from hemoedge.report.htmlparts import Absent, Section, esc
from hemoedge.report.plots import FIG_WIDTH, fig_svg, pareto_dominated, pyplot
from hemoedge.report.query import ci95
from hemoedge.report.results import Results
from hemoedge.severity import SEVERITY_BANDS


def pareto_section(results: Results) -> Section:
    plt = pyplot()
    figs, md, notes = [], [], []
    for target in TARGETS:
        pts = pareto_points(results, target)
        if not pts:
            notes.append(f"{target}: no pairing has both {target}.frame_ms.p50 and an Hb MAE "
                         "delta; omitted.")
            continue
        dom = pareto_dominated(pts)
        fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.75, 4.2))
        front = sorted((xy, v) for v, xy in pts.items() if v not in dom)
        ax.step([xy[0] for xy, _ in front], [xy[1] for xy, _ in front], where="post",
                color="#1f77b4", lw=1, alpha=0.6, label="Pareto front")
        for v, (x, y) in pts.items():
            d = v in dom
            ax.scatter([x], [y], s=50, marker="o", facecolors="none" if d else "#1f77b4",
                       edgecolors="#999" if d else "#1f77b4", zorder=3)
            ax.annotate(v, (x, y), textcoords="offset points",
                        xytext=(5, 4), fontsize=7, color="#777" if d else "#000")
        ax.axhline(0, color="#ccc", lw=0.8)
        ax.set_xlabel(f"{target} frame time p50 (ms)")
        ax.set_ylabel("Hb MAE delta vs fp32 (g/dL)")
        ax.set_title(f"accuracy vs latency, target {target}")
        ax.legend(loc="best", fontsize=7)
        figs.append(fig_svg(fig, f"pareto-{target}"))
        md.append(f"- **{target}**: Pareto front " + ", ".join(
            f"`{v}` ({x:.1f} ms, {y:+.3f} g/dL)" for (x, y), v in front)
                  + (("; dominated: " + ", ".join(f"`{v}`" for v in sorted(dom))) if dom else ""))
    if not figs:
        raise Absent("no pairing has both a frame time (cpu.frame_ms.p50 / web.frame_ms.p50) "
                      "and an Hb MAE delta")
    body = (f'<div class="figs">{"".join(figs)}</div>'
            + "".join(f'<p class="note">{esc(n)}</p>' for n in notes))
    body = ('<p>Both axes lower is better. Filled: on the Pareto front; hollow grey: dominated '
            '(another pairing is at least as fast and at least as accurate).</p>') + body
    return Section("Accuracy vs latency (Pareto)", body, "\n".join(md + [f"- {n}" for n in notes]))


def severity_section(results: Results) -> Section:
    ms = [m for m in results.metrics if m.name.startswith("acc.hb_mae.band.")
          and math.isfinite(m.value)]
    if not ms:
        raise Absent("no acc.hb_mae.band.* metrics (run `hemoedge eval`)")
    order = [b[0] for b in SEVERITY_BANDS]
    bands = sorted({m.name[len("acc.hb_mae.band."):] for m in ms},
                   key=lambda b: (order.index(b) if b in order else len(order), b))
    variants = sorted({m.variant for m in ms})
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.75, 3.8))
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        xs, ys, lo, hi = [], [], [], []
        for j, b in enumerate(bands):
            m = next((m for m in reversed(ms) if m.variant == v and m.name.endswith("." + b)),
                     None)
            if m is None:
                continue
            xs.append(j + (i - (len(variants) - 1) / 2) * width)
            ys.append(m.value)
            ci = ci95(m) or [m.value, m.value]
            lo.append(max(m.value - ci[0], 0))
            hi.append(max(ci[1] - m.value, 0))
        ax.bar(xs, ys, width * 0.95, yerr=[lo, hi], capsize=3, label=v or "-")
    ax.set_xticks(range(len(bands)), [f"{b} g/dL" for b in bands])
    ax.set_ylabel("Hb MAE (g/dL)")
    ax.set_title("error per severity band (bars: ci95 where measured)")
    ax.legend(fontsize=7)
    return Section("Error per severity band", fig_svg(fig, "severity"),
                   f"{len(variants)} variant(s) x {len(bands)} band(s).")


def latency_section(results: Results) -> Section:
    groups = latency_groups(results)
    if not groups:
        raise Absent("no cpu.*/web.* latency metrics (run `hemoedge bench cpu` / `bench web`)")
    plt = pyplot()
    figs, md = [], []
    for target in TARGETS:
        gs = sorted(groups.get(target, []), key=lambda g: g["label"])
        if not gs:
            md.append(f"- {target}: no latency metrics.")
            continue
        fig, ax = plt.subplots(figsize=(FIG_WIDTH, 0.6 + 0.32 * len(gs)))
        for y, g in enumerate(gs):
            s = g["samples"]
            if isinstance(s, list) and len(s) > 1:
                ax.boxplot([s], positions=[y], orientation="horizontal", widths=0.5,
                           showfliers=False, manage_ticks=False)
            else:
                tail = [q for q in (g["p90"], g["p99"]) if q is not None]
                if tail:
                    ax.plot([g["p50"], max(tail)], [y, y], color="#aaa", lw=3,
                            solid_capstyle="butt")
                for q, mk in (("p90", "|"), ("p99", "x")):
                    if g[q] is not None:
                        ax.plot([g[q]], [y], marker=mk, color="#555", ms=7)
            if g["ci95"]:
                ax.plot(g["ci95"], [y, y], color="#1f77b4", lw=6, alpha=0.5,
                        solid_capstyle="butt")
            ax.plot([g["p50"]], [y], marker="o", color="#1f77b4", ms=5)
        ax.set_yticks(range(len(gs)), [g["label"] for g in gs], fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("ms (log scale)")
        ax.set_title(f"{target} latency: p50 (dot) with ci95 (band), p90 (|), p99 (x); "
                     "box where raw samples exist", fontsize=9)
        ax.grid(axis="x", which="both", color="#eee")
        figs.append(fig_svg(fig, f"latency-{target}"))
        md.append(f"- {target}: {len(gs)} latency series.")
    note = ('<p class="note">Without raw samples the distribution is drawn from the reported '
            'p50/p90/p99 and the bootstrap 95 % interval of the median.</p>')
    return Section("Latency distributions", note + "".join(figs), "\n".join(md))


def size_section(results: Results) -> Section:
    ms = [m for m in results.metrics if m.name in ("size.detector.bytes", "size.estimator.bytes")
          and math.isfinite(m.value)]
    if not ms:
        raise Absent("no size.detector.bytes / size.estimator.bytes metrics (written by "
                      "`hemoedge eval`)")
    latest = {(m.name, m.variant): m for m in ms}
    items = sorted(latest.values(), key=lambda m: (m.name, m.variant))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.75, 0.6 + 0.35 * len(items)))
    colors = {"size.detector.bytes": "#1f77b4", "size.estimator.bytes": "#ff7f0e"}
    ax.barh(range(len(items)), [m.value / 1e6 for m in items],
            color=[colors[m.name] for m in items])
    for y, m in enumerate(items):
        ax.text(m.value / 1e6, y, f" {m.value / 1e6:.2f} MB", va="center", fontsize=7)
    ax.set_yticks(range(len(items)),
                  [f"{m.name.split('.')[1]} {m.variant}" for m in items], fontsize=7)
    ax.set_xlabel("MB (10^6 bytes)")
    ax.set_title("model file sizes")
    md = ", ".join(f"{m.name.split('.')[1]} `{m.variant}` {m.value / 1e6:.2f} MB" for m in items)
    return Section("Model sizes", fig_svg(fig, "sizes"), md)


def stages_section(results: Results) -> Section:
    data = frame_stages(results)
    if not data:
        raise Absent("no cpu.frame.<stage>_ms.p50 / web.frame.<stage>_ms.p50 metrics")
    plt = pyplot()
    figs, md = [], []
    for target in TARGETS:
        rows = data.get(target)
        if not rows:
            continue
        labels = sorted(rows)
        stages = list(dict.fromkeys(k for lab in labels for k in rows[lab]))
        fig, ax = plt.subplots(figsize=(FIG_WIDTH * 0.75, 0.8 + 0.3 * len(labels)))
        left = [0.0] * len(labels)
        for st in stages:
            w = [rows[lab].get(st, 0.0) for lab in labels]
            ax.barh(range(len(labels)), w, left=left, label=st)
            left = [a + b for a, b in zip(left, w, strict=True)]
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("ms (sum of per-stage p50)")
        ax.invert_yaxis()
        ax.set_title(f"{target}: where the frame time goes", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        figs.append(fig_svg(fig, f"stages-{target}"))
        md.append(f"- {target}: " + "; ".join(
            f"`{lab}` " + ", ".join(f"{k} {v:.1f}" for k, v in rows[lab].items())
            for lab in labels) + " (ms)")
    return Section("Frame time by stage", f'<div class="figs">{"".join(figs)}</div>',
                   "\n".join(md))


def capture_section(results: Results) -> Section:
    frames = capture_frames(results)
    summary = [m for m in results.metrics if m.name.startswith("web.capture.")
               and m.name != CAPTURE_FRAME]
    if not frames and not summary:
        raise Absent("no web.capture.* metrics (run `hemoedge bench web ART --capture`)")
    parts, md = [], []
    if summary:
        rows = "".join(f"<tr><td>{esc(m.name)}</td><td>{esc(m.variant or '-')}</td>"
                       f"<td>{m.value:.4g} {esc(m.unit)}</td></tr>" for m in summary)
        parts.append("<table><tr><th>metric</th><th>variant</th><th>value</th></tr>"
                     f"{rows}</table>")
        md += [f"- {m.name} `{m.variant or '-'}`: {m.value:.4g} {m.unit}" for m in summary]
    if frames:
        plt = pyplot()
        for v, rows in frames.items():
            t0 = min(r["t_grab"] for r in rows)
            fig, ax = plt.subplots(figsize=(FIG_WIDTH, 0.8 + 0.12 * len(rows)))
            for r in rows:
                y = r["frame"]
                ax.barh(y, r["t_est_end"] - r["t_det_start"], left=r["t_det_start"] - t0,
                        height=0.7, color="#1f77b4")
                ax.plot([r["t_grab"] - t0], [y], marker="|", color="#000", ms=8)
                ax.plot([r["t_result"] - t0], [y], marker=".", color="#d62728", ms=5)
            ax.invert_yaxis()
            ax.set_xlabel("ms since the first grab")
            ax.set_ylabel("frame")
            ax.set_title(f"capture timeline {v or '-'}: grab (|), inference span (bar), "
                         "result (red dot)", fontsize=9)
            parts.append(fig_svg(fig, f"capture-{v}"))
            md.append(f"- timeline `{v or '-'}`: {len(rows)} frames")
    else:
        parts.append('<p class="note">No per-frame capture data (web.capture.grab_ms); '
                     'timeline omitted.</p>')
    return Section("Capture", "".join(parts), "\n".join(md))
