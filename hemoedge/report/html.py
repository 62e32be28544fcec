"""`hemoedge report`: one self-contained HTML page (figures inlined as SVG, no URL of any kind,
opens offline) plus a Markdown summary, from results.json alone.

Every section reads only the metrics it needs; a section whose metrics are absent is replaced
by a one-line note, so a CPU-only or accuracy-only run still renders.
"""

from __future__ import annotations

import html as _html
import io
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hemoedge.report.choose import Constraints, collect, covers, lookup, parse_variant
from hemoedge.report.results import Metric, Results, merge

log = logging.getLogger(__name__)

TARGETS = ("cpu", "web")
ROLE_KEY = {"detector": "det", "estimator": "est"}  # parity metric role -> variant key
LATENCY_RE = re.compile(r"^(cpu|web)\.(?:(\w+)\.latency_ms|(frame_ms))\.p50$")
CAPTURE_FRAME = "web.capture.grab_ms"
CAPTURE_KEYS = ("frame", "t_grab", "t_det_start", "t_est_end", "t_result")
FIG_WIDTH = 8.0  # inches; 100 dpi in the SVG
NA = "-"  # table cell for an absent figure


@dataclass
class Section:
    title: str
    html: str  # body, already escaped
    md: str = ""  # Markdown body ("" = title only in the summary)


def esc(x: object) -> str:
    return _html.escape(str(x), quote=True)


# --- pure analysis ---------------------------------------------------------------------------

def pareto_dominated(points: dict[str, tuple[float, float]]) -> set[str]:
    """Names of dominated points, both axes lower-is-better: p is dominated when some q is no
    worse on both axes and strictly better on at least one."""
    out = set()
    for p, (px, py) in points.items():
        for q, (qx, qy) in points.items():
            if q != p and qx <= px and qy <= py and (qx < px or qy < py):
                out.add(p)
                break
    return out


def variant_rows(results: Results) -> list[str]:
    """Every variant string in the file: pairings (more keys) first, then single models."""
    names = {v for v in results.variants if v} | {m.variant for m in results.metrics if m.variant}
    return sorted(names, key=lambda v: (-len(parse_variant(v)), v))


def _ci(m: Metric) -> list[float] | None:
    """The metric's ci95 as two finite floats, or None (null bounds are written for inf/nan)."""
    ci = m.ci95
    if not ci or len(ci) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                         for v in ci):
        return None
    return sorted(float(v) for v in ci)


def _ms(m: Metric | None) -> str:
    if m is None:
        return NA
    t = m.params.get("threads")
    return f"{m.value:.2f} ms" + (f" (t{t})" if t is not None else "")


def _latency(results: Results, target: str, v: str) -> Metric | None:
    for name in (f"{target}.frame_ms.p50", f"{target}.detector.latency_ms.p50",
                 f"{target}.estimator.latency_ms.p50"):
        m = lookup(results, name, v, exact=True)
        if m is not None:
            return m
    return None


def _parity(results: Results, v: str) -> str:
    pairs = parse_variant(v)
    if "engine" in pairs:  # a quantiser peer's file (bench/peers.py): parity is not measured
        return NA
    parts = []
    for role, stat in (("detector", "max_abs"), ("estimator", "hb_max_abs")):
        ms = [m for m in results.metrics
              if m.name.startswith(f"parity.{role}.") and m.name.endswith(f".{stat}")
              and len(m.name.split(".")) == 4
              and pairs.get(ROLE_KEY[role]) == m.name.split(".")[2] and math.isfinite(m.value)
              and (not m.variant or covers(m.variant, v))]  # sweep: this backbone's only
        if ms:
            worst = max(ms, key=lambda m: m.value)
            unit = f" {worst.unit}" if worst.unit and worst.unit != "px" else ""
            parts.append(f"{ROLE_KEY[role]} {worst.value:.2g}{unit}")
    return ", ".join(parts) or NA


def table_rows(results: Results) -> list[dict[str, str]]:
    rows = []
    for v in variant_rows(results):
        det = lookup(results, "size.detector.bytes", v, threads=None)
        est = lookup(results, "size.estimator.bytes", v, threads=None)
        sizes = [m.value for m in (det, est) if m is not None]
        mae = lookup(results, "acc.e2e.hb_mae", v, exact=True, threads=None) or \
            lookup(results, "acc.hb_mae", v, exact=True, threads=None)
        delta = lookup(results, "acc.e2e.hb_mae_delta", v, exact=True, threads=None) or \
            lookup(results, "acc.hb_mae_delta", v, exact=True, threads=None)
        nail = lookup(results, "acc.det.nail.map50", v, threads=None)
        rows.append({
            "variant": v,
            "size": f"{sum(sizes) / 1e6:.2f} MB" if sizes else NA,
            "cpu": _ms(_latency(results, "cpu", v)),
            "web": _ms(_latency(results, "web", v)),
            "hb_mae": f"{mae.value:.3f}" + (" (e2e)" if mae.name.startswith("acc.e2e") else "")
            if mae else NA,
            "delta": f"{delta.value:+.3f}" if delta else NA,
            "map50": f"{nail.value:.3f}" if nail else NA,
            "parity": _parity(results, v),
        })
    return rows


ROW_HEAD = (("variant", "Variant"), ("size", "Size"), ("cpu", "CPU p50"), ("web", "Web p50"),
            ("hb_mae", "Hb MAE g/dL"), ("delta", "Δ MAE vs fp32"), ("map50", "nail mAP50"),
            ("parity", "Parity max abs diff"))


def pareto_points(results: Results, target: str) -> dict[str, tuple[float, float]]:
    """variant -> (frame ms p50 on target, Hb MAE delta g/dL) for pairings with both figures."""
    cands = collect(results, Constraints(target=target, max_hb_mae_delta=None))
    return {c.variant: (c.frame_ms, c.hb_mae_delta) for c in cands if c.hb_mae_delta is not None}


# --- figures ------------------------------------------------------------------------------------

def _pyplot():
    from hemoedge import offline

    offline.configure()  # MPLCONFIGDIR inside the project home, before matplotlib loads
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_SVG_STRIP = (re.compile(r"<\?xml[^>]*\?>\s*"), re.compile(r"<!DOCTYPE[^>]*>\s*"),
              re.compile(r"<metadata>.*?</metadata>\s*", re.S),
              re.compile(r'\s+xmlns(:\w+)?="[^"]*"'))


def fig_svg(fig, salt: str) -> str:
    """Inline SVG without XML prolog, metadata or namespace URLs (HTML parses <svg> as SVG)."""
    plt = _pyplot()
    buf = io.StringIO()
    with plt.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    svg = buf.getvalue()
    for pat in _SVG_STRIP:
        svg = pat.sub("", svg)
    return f'<figure class="fig">{svg}</figure>'


def _pareto_section(results: Results) -> Section:
    plt = _pyplot()
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
        raise _Absent("no pairing has both a frame time (cpu.frame_ms.p50 / web.frame_ms.p50) "
                      "and an Hb MAE delta")
    body = (f'<div class="figs">{"".join(figs)}</div>'
            + "".join(f'<p class="note">{esc(n)}</p>' for n in notes))
    body = ('<p>Both axes lower is better. Filled: on the Pareto front; hollow grey: dominated '
            '(another pairing is at least as fast and at least as accurate).</p>') + body
    return Section("Accuracy vs latency (Pareto)", body, "\n".join(md + [f"- {n}" for n in notes]))


def _bands() -> list[str]:
    try:
        from hemoedge.severity import SEVERITY_BANDS

        return [b[0] for b in SEVERITY_BANDS]
    except ImportError:  # pragma: no cover - the module ships with the package
        return []


def _severity_section(results: Results) -> Section:
    ms = [m for m in results.metrics if m.name.startswith("acc.hb_mae.band.")
          and math.isfinite(m.value)]
    if not ms:
        raise _Absent("no acc.hb_mae.band.* metrics (run `hemoedge eval`)")
    order = _bands()
    bands = sorted({m.name[len("acc.hb_mae.band."):] for m in ms},
                   key=lambda b: (order.index(b) if b in order else len(order), b))
    variants = sorted({m.variant for m in ms})
    plt = _pyplot()
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
            ci = _ci(m) or [m.value, m.value]
            lo.append(max(m.value - ci[0], 0))
            hi.append(max(ci[1] - m.value, 0))
        ax.bar(xs, ys, width * 0.95, yerr=[lo, hi], capsize=3, label=v or "-")
    ax.set_xticks(range(len(bands)), [f"{b} g/dL" for b in bands])
    ax.set_ylabel("Hb MAE (g/dL)")
    ax.set_title("error per severity band (bars: ci95 where measured)")
    ax.legend(fontsize=7)
    return Section("Error per severity band", fig_svg(fig, "severity"),
                   f"{len(variants)} variant(s) x {len(bands)} band(s).")


def _latency_groups(results: Results) -> dict[str, list[dict]]:
    """target -> one dict per (model/frame, variant, threads) with p50/p90/p99/ci95/samples."""
    out: dict[str, list[dict]] = {}
    for m in results.metrics:
        mt = LATENCY_RE.match(m.name)
        if not mt or not math.isfinite(m.value):
            continue
        target, model = mt.group(1), mt.group(2) or "frame"
        base = m.name[: -len(".p50")]
        threads = m.params.get("threads")
        kw = {"threads": threads} if threads is not None else {}
        g = {"label": f"{model} {m.variant}" + (f" t{threads}" if threads is not None else ""),
             "p50": m.value, "ci95": _ci(m),
             "samples": m.params.get("samples")}
        for q in ("p90", "p99", "mean"):
            other = results.get(f"{base}.{q}", m.variant, **kw)
            g[q] = other.value if other is not None and math.isfinite(other.value) else None
        out.setdefault(target, []).append(g)
    return out


def _latency_section(results: Results) -> Section:
    groups = _latency_groups(results)
    if not groups:
        raise _Absent("no cpu.*/web.* latency metrics (run `hemoedge bench cpu` / `bench web`)")
    plt = _pyplot()
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


def _size_section(results: Results) -> Section:
    ms = [m for m in results.metrics if m.name in ("size.detector.bytes", "size.estimator.bytes")
          and math.isfinite(m.value)]
    if not ms:
        raise _Absent("no size.detector.bytes / size.estimator.bytes metrics (written by "
                      "`hemoedge eval`)")
    latest = {(m.name, m.variant): m for m in ms}
    items = sorted(latest.values(), key=lambda m: (m.name, m.variant))
    plt = _pyplot()
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


def _first_visit_section(results: Results) -> Section:
    """What a first visit downloads per pairing (bench web's web.first_visit.*)."""
    ms = {m.variant: m for m in results.metrics
          if m.name == "web.first_visit.bytes" and math.isfinite(m.value)}
    if not ms:
        raise _Absent("no web.first_visit.bytes metrics (run `hemoedge bench web`)")
    rows, md = [], ["| pairing | on the wire | requests | URLs fetched twice |", "|---|---|---|---|"]
    for v, m in sorted(ms.items()):
        dup = m.params.get("duplicate_urls") or []
        req = m.params.get("requests", "-")
        rows.append(f"<tr><td>{esc(v)}</td><td>{m.value / 1e6:.2f} MB</td><td>{esc(req)}</td>"
                    f"<td>{len(dup)}{(' (' + esc(', '.join(dup)) + ')') if dup else ''}</td></tr>")
        md.append(f"| {v} | {m.value / 1e6:.2f} MB | {req} | {len(dup)} |")
    html = ("<table><tr><th>pairing</th><th>on the wire</th><th>requests</th>"
            "<th>URLs fetched twice</th></tr>" + "".join(rows) + "</table>"
            '<p class="note">Response headers and bodies as sent (compressed) until every file '
            "is in the service worker's cache; from Playwright's network events (CDP "
            "encodedDataLength).</p>")
    return Section("First visit (web)", html, "\n".join(md))


DEVICE_COLUMNS = (  # (header, metric, format) of the per-slowdown tables
    ("detector p50", "web.detector.latency_ms.p50", "{:.1f} ms"),
    ("estimator p50", "web.estimator.latency_ms.p50", "{:.1f} ms"),
    ("detector x", "web.slowdown.detector.latency_ratio", "{:.2f}x"),
    ("frame p50", "web.frame_ms.p50", "{:.1f} ms"),
    ("interval mean", "web.capture.interval_ms.mean", "{:.2f} ms"),
    ("max dev", "web.capture.max_dev_ms", "{:.1f} ms"),
    ("dropped", "web.capture.dropped_frames", "{:.0f}"),
    ("result after last grab", "web.capture.result_ms", "{:.0f} ms"),
    ("Hb error", "web.capture.hb_error", "{:.2f} g/dL"),
    ("auto-tune", "web.autotune.decide_ms", "{:.0f} ms"),
)


def _device_section(results: Results) -> Section:
    """One table per emulated CPU slowdown (bench web --device-class / --cpu-slowdown)."""
    by: dict[tuple[float, str], list[Metric]] = {}
    for m in results.metrics:
        if m.name.startswith("web.") and "device_class" in m.params:
            key = (float(m.params.get("cpu_slowdown", 1.0)), str(m.params["device_class"]))
            by.setdefault(key, []).append(m)
    if not by:
        raise _Absent("no emulated device class (run `hemoedge bench web ART --device-class "
                      "mid-range-phone`)")
    html, md = [], []
    for (f, cls), ms in sorted(by.items()):
        rows = sorted({(m.variant, m.params.get("threads")) for m in ms
                       if m.variant and m.params.get("threads") is not None},
                      key=lambda r: (r[0], r[1] or 0))
        head = ["variant", "threads", *(c[0] for c in DEVICE_COLUMNS), "setting"]
        html.append(f"<h3>{esc(cls)}: CPU {f:g}x slower</h3><table><tr>"
                    + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
        md += [f"### {cls}: CPU {f:g}x slower", "", "| " + " | ".join(head) + " |",
               "|" + "---|" * len(head)]
        for v, t in rows:
            cells = [v, str(t)]
            for _, name, spec in DEVICE_COLUMNS:
                m = next((x for x in reversed(ms) if x.name == name and x.variant == v
                          and x.params.get("threads") == t), None)
                cells.append(spec.format(m.value) if m is not None else NA)
            tune = next((x for x in reversed(ms) if x.name == "web.autotune.decide_ms"
                         and x.variant == v and x.params.get("threads") == t), None)
            cells.append(str(tune.params.get("setting", NA)) if tune is not None else NA)
            if all(c == NA for c in cells[2:]):
                continue
            html.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
            md.append("| " + " | ".join(cells) + " |")
        html.append("</table>")
        mech = next((m.params["slowdown_mechanism"] for m in ms
                     if "slowdown_mechanism" in m.params), None)
        if mech:
            html.append(f'<p class="note">Mechanism: {esc(mech)}.</p>')
            md += ["", f"Mechanism: {mech}."]
        md.append("")
    return Section("Device classes (web)", "".join(html), "\n".join(md).rstrip())


STAGE_RE = re.compile(r"^(cpu|web)\.frame\.(\w+)_ms\.p50$")


def frame_stages(results: Results) -> dict[str, dict[str, dict[str, float]]]:
    """target -> "variant tN" -> stage -> p50 ms, from {cpu,web}.frame.<stage>_ms.p50."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m in results.metrics:
        mt = STAGE_RE.match(m.name)
        if mt and math.isfinite(m.value):
            t = m.params.get("threads")
            label = m.variant + (f" t{t}" if t is not None else "")
            out.setdefault(mt.group(1), {}).setdefault(label, {})[mt.group(2)] = m.value
    return out


def _stages_section(results: Results) -> Section:
    data = frame_stages(results)
    if not data:
        raise _Absent("no cpu.frame.<stage>_ms.p50 / web.frame.<stage>_ms.p50 metrics")
    plt = _pyplot()
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


def capture_frames(results: Results) -> dict[str, list[dict]]:
    """variant -> per-frame timing dicts (CAPTURE_KEYS) from web.capture.grab_ms metrics."""
    out: dict[str, list[dict]] = {}
    for m in results.metrics:
        if m.name == CAPTURE_FRAME and all(k in m.params for k in CAPTURE_KEYS):
            try:
                row = {k: float(m.params[k]) for k in CAPTURE_KEYS}
            except (TypeError, ValueError):
                log.warning("skipping malformed %s params %r", CAPTURE_FRAME, m.params)
                continue
            out.setdefault(m.variant, []).append(row)
    return {v: sorted(rows, key=lambda r: r["frame"]) for v, rows in out.items()}


def _capture_section(results: Results) -> Section:
    frames = capture_frames(results)
    summary = [m for m in results.metrics if m.name.startswith("web.capture.")
               and m.name != CAPTURE_FRAME]
    if not frames and not summary:
        raise _Absent("no web.capture.* metrics (run `hemoedge bench web ART --capture`)")
    parts, md = [], []
    if summary:
        rows = "".join(f"<tr><td>{esc(m.name)}</td><td>{esc(m.variant or '-')}</td>"
                       f"<td>{m.value:.4g} {esc(m.unit)}</td></tr>" for m in summary)
        parts.append("<table><tr><th>metric</th><th>variant</th><th>value</th></tr>"
                     f"{rows}</table>")
        md += [f"- {m.name} `{m.variant or '-'}`: {m.value:.4g} {m.unit}" for m in summary]
    if frames:
        plt = _pyplot()
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


def _env_section(results: Results) -> Section:
    if not results.env:
        raise _Absent("no environment recorded")
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_plain(v))}</td></tr>"
                   for k, v in sorted(results.env.items()))
    md = "\n".join(f"- {k}: {_plain(v)}" for k, v in sorted(results.env.items()))
    return Section("Environment", f"<table>{rows}</table>", md)


def _commands_section(results: Results) -> Section:
    if not results.commands:
        raise _Absent("no commands recorded in results.commands")
    body = "<pre>" + esc("\n".join(results.commands)) + "</pre>"
    return Section("Commands", body, "```\n" + "\n".join(results.commands) + "\n```")


def _all_metrics_section(results: Results) -> Section:
    if not results.metrics:
        raise _Absent("the results file has no metrics")
    rows = []
    for m in results.metrics:
        params = {k: v for k, v in m.params.items() if k != "samples"}
        ci = _ci(m)
        ci = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        rows.append(f"<tr><td>{esc(m.name)}</td><td>{esc(m.variant or '-')}</td>"
                    f"<td>{m.value:.5g}</td><td>{esc(m.unit)}</td><td>{esc(ci)}</td>"
                    f"<td>{esc(m.n if m.n is not None else '')}</td>"
                    f"<td>{esc(json.dumps(params) if params else '')}</td></tr>")
    body = (f"<details><summary>{len(results.metrics)} metrics</summary><table><tr>"
            "<th>name</th><th>variant</th><th>value</th><th>unit</th><th>ci95</th><th>n</th>"
            f"<th>params</th></tr>{''.join(rows)}</table></details>")
    return Section("All metrics", body, f"{len(results.metrics)} metrics.")


class _Absent(Exception):
    """A section's metrics are absent: the message is the one-line note shown instead."""


def _plain(v: object) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


# --- page -------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:24px auto;
max-width:1100px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f5f5f5}.note{color:#777;font-style:italic}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:12px}
figure.fig{margin:8px 0}figure.fig svg{max-width:100%;height:auto}
.figs{display:flex;flex-wrap:wrap;gap:8px}.figs figure.fig{flex:1 1 480px;min-width:0}
h3{font-size:15px;margin:14px 0 4px}tr.skipped td,tr.failed td{color:#777}
"""

SECTIONS: tuple[tuple[str, Callable[[Results], Section]], ...] = (
    ("Accuracy vs latency (Pareto)", _pareto_section),
    ("Error per severity band", _severity_section),
    ("Latency distributions", _latency_section),
    ("Frame time by stage", _stages_section),
    ("Model sizes", _size_section),
    ("Capture", _capture_section),
    ("Environment", _env_section),
    ("Commands", _commands_section),
    ("All metrics", _all_metrics_section),
)


def _variant_table(results: Results) -> Section:
    rows = table_rows(results)
    if not rows:
        raise _Absent("no variants in the results")
    head = "".join(f"<th>{esc(h)}</th>" for _, h in ROW_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{esc(r[k])}</td>" for k, _ in ROW_HEAD) + "</tr>"
                   for r in rows)
    md = ["| " + " | ".join(h for _, h in ROW_HEAD) + " |", "|" + "---|" * len(ROW_HEAD)]
    md += ["| " + " | ".join(r[k].replace("|", "\\|") for k, _ in ROW_HEAD) + " |"
           for r in rows]
    note = ('<p class="note">Latency: per-frame p50 for pairings, per-model p50 for single '
            'models, at 2 threads where measured. Δ MAE: the variant\'s Hb MAE minus the fp32 '
            'reference (e2e = detector + estimator on photos).</p>')
    return Section("Variants", f"<table><tr>{head}</tr>{body}</table>{note}", "\n".join(md))


# --- quantiser peers (hemoedge quantize ART --engine ...; hemoedge/bench/peers.py) -------------

PEER_KEY = "engine"  # variant key of a peer quantiser's files ("det=int8,est=int8,engine=ort")
PEER_HEAD = (("quantiser", "Quantiser"), ("found", "Nail found (e2e)"),
             ("p95", "e2e p95 |ΔHb| g/dL"), ("band", "e2e band agreement"),
             ("det_x", "Detector CPU time / fp32"), ("est_x", "Estimator CPU time / fp32"),
             ("mb", "int8 MB (det + est)"))


def peer_engines(results: Results) -> list[str]:
    return sorted({e for m in results.metrics
                   if (e := parse_variant(m.variant).get(PEER_KEY))})


def peer_rows(results: Results) -> list[dict[str, str]]:
    """hemoedge's int8 and each peer engine's: e2e figures of the int8 + int8 pairing (vs the
    fp32 pipeline), latency ratios per model file, detector + estimator bytes."""
    def get(name: str, v: str) -> Metric | None:
        m = results.get(name, v)
        return m if m is not None and math.isfinite(m.value) else None

    def fmt(m: Metric | None, spec: str) -> str:
        return NA if m is None else format(m.value, spec)

    def ratio(m: Metric | None) -> str:
        if m is None:
            return NA
        ci = _ci(m)
        return f"{m.value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    rows = []
    for name in ("hemoedge", *peer_engines(results)):
        tail = "" if name == "hemoedge" else f",{PEER_KEY}={name}"
        pair, det, est = f"det=int8,est=int8{tail}", f"det=int8{tail}", f"est=int8{tail}"
        sizes = [get("size.detector.bytes", det), get("size.estimator.bytes", est)]
        row = {"quantiser": name,
               "found": fmt(get("acc.e2e.nail_found_rate", pair), ".0%"),
               "p95": fmt(get("acc.e2e.abs_delta.p95", pair), ".3f"),
               "band": fmt(get("acc.e2e.band_agreement", pair), ".1%"),
               "det_x": ratio(get("cpu.detector.latency_ratio_vs_fp32", det)),
               "est_x": ratio(get("cpu.estimator.latency_ratio_vs_fp32", est)),
               "mb": f"{sum(m.value for m in sizes) / 1e6:.2f}" if all(sizes) else NA}
        if any(row[k] != NA for k, _ in PEER_HEAD[1:]):
            rows.append(row)
    return rows


def _peers_section(results: Results) -> Section:
    rows = peer_rows(results) if peer_engines(results) else []
    if not rows:
        raise _Absent("no quantiser peers (`hemoedge quantize ART --engine ort,nncf`, then "
                      "`hemoedge eval ART`)")
    head = "".join(f"<th>{esc(h)}</th>" for _, h in PEER_HEAD)
    body = "".join("<tr>" + "".join(f"<td>{esc(r[k])}</td>" for k, _ in PEER_HEAD) + "</tr>"
                   for r in rows)
    md = ["| " + " | ".join(h.replace("|", "\\|") for _, h in PEER_HEAD) + " |",
          "|" + "---|" * len(PEER_HEAD)]
    md += ["| " + " | ".join(r[k] for k, _ in PEER_HEAD) + " |" for r in rows]
    note = ("Each quantiser's int8 detector + int8 estimator, built from the same fp32 files "
            "and the same calibration inputs, on the same test photos, against the fp32 "
            "pipeline. Latency: onnxruntime CPU, 1 thread, the median per-round ratio to fp32 "
            "timed interleaved in one run [bootstrap 95 % interval]; below 1 is faster. "
            "Settings of each engine: docs/peers.md.")
    return Section("Quantiser peers", f'<table><tr>{head}</tr>{body}</table>'
                   f'<p class="note">{esc(note)}</p>', "\n".join(md) + "\n\n" + note)


def _sweep_section(results: Results) -> Section:
    from hemoedge.report.sweep_view import sweep_section  # imports this module

    return sweep_section(results)


def render(results: Results) -> tuple[str, str]:
    """(html, markdown) for a results object; pure apart from matplotlib's rendering."""
    from hemoedge.report.sweep_view import has_backbones

    sections: list[Section] = []
    # the sweep section only when some variant names a backbone (a `hemoedge sweep` run)
    sweep = (("Backbone sweep", _sweep_section),) if has_backbones(results) else ()
    peers = (("Quantiser peers", _peers_section),) if peer_engines(results) else ()
    secs = list(SECTIONS)
    if any(m.name == "web.first_visit.bytes" for m in results.metrics):  # bench web's figures
        at = next((i + 1 for i, (t, _) in enumerate(secs) if t == "Model sizes"), len(secs))
        secs.insert(at, ("First visit (web)", _first_visit_section))
    if any("device_class" in m.params for m in results.metrics):  # emulated slower devices
        secs.append(("Device classes (web)", _device_section))
    for title, fn in (*sweep, ("Variants", _variant_table), *peers, *secs):
        try:
            sections.append(fn(results))
        except _Absent as e:
            sections.append(Section(title, f'<p class="note">Omitted: {esc(e)}.</p>',
                                    f"_Omitted: {e}._"))
    title = "hemoedge report"
    n_var = len(variant_rows(results))
    lead = (f"{len(results.metrics)} metrics, {n_var} variants. Generated from results.json "
            "only; this page makes no network request.")
    html_out = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                f"<title>{title}</title><style>{CSS}</style></head><body>"
                f"<h1>{title}</h1><p>{esc(lead)}</p>"
                + "".join(f"<section><h2>{esc(s.title)}</h2>{s.html}</section>" for s in sections)
                + "</body></html>\n")
    md_out = f"# {title}\n\n{lead}\n\n" + "\n\n".join(
        f"## {s.title}\n\n{s.md}".rstrip() for s in sections) + "\n"
    return html_out, md_out


def cli(args) -> int:
    paths = [Path(p) for p in (args.results if isinstance(args.results, list)
                               else [args.results])]
    results = merge(paths)  # also unions the shards' sweep entries
    html_path = Path(args.html) if args.html else paths[0].with_name("report.html")
    md_path = Path(args.md) if args.md else html_path.with_suffix(".md")
    html_out, md_out = render(results)
    for path, text in ((html_path, html_out), (md_path, md_out)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"report: {html_path}\nsummary: {md_path}")
    return 0
