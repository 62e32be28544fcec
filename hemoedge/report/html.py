"""`hemoedge report`: one self-contained HTML page (figures inlined as SVG, no URL of any kind,
opens offline) plus a Markdown summary, from results.json alone.

Every section reads only the metrics it needs; a section whose metrics are absent is replaced
by a one-line note, so a CPU-only or accuracy-only run still renders.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hemoedge.report.deviceplot import device_plot
from hemoedge.report.epview import ep_section, has_eps
from hemoedge.report.figures import (
    capture_section,
    latency_section,
    pareto_section,
    severity_section,
    size_section,
    stages_section,
)
from hemoedge.report.gather import (
    CAPTURE_FRAME,
    CAPTURE_KEYS,
    LATENCY_RE,
    PEER_HEAD,
    PEER_KEY,
    ROW_HEAD,
    STAGE_RE,
    TARGETS,
    capture_frames,
    frame_stages,
    latency_groups,
    pareto_points,
    peer_engines,
    peer_rows,
    table_rows,
    variant_rows,
)
from hemoedge.report.htmlparts import NA, Absent, Section, esc, plain
from hemoedge.report.plots import FIG_WIDTH, fig_svg, pareto_dominated
from hemoedge.report.query import ci95
from hemoedge.report.results import Metric, Results, merge
from hemoedge.report.sweep_view import has_backbones, sweep_section

# what tests, bench/peers.py and older callers import from here
__all__ = ["CAPTURE_FRAME", "CAPTURE_KEYS", "CSS", "FIG_WIDTH", "LATENCY_RE", "NA", "PEER_HEAD",
           "PEER_KEY", "ROW_HEAD", "SECTIONS", "STAGE_RE", "TARGETS", "Section",
           "capture_frames", "cli", "esc", "fig_svg", "frame_stages", "latency_groups",
           "pareto_dominated", "pareto_points", "peer_engines", "peer_rows", "render",
           "table_rows", "variant_rows"]


# --- table sections ---------------------------------------------------------------------------

def _first_visit_section(results: Results) -> Section:
    """What a first visit downloads per pairing (bench web's web.first_visit.*)."""
    ms = {m.variant: m for m in results.metrics
          if m.name == "web.first_visit.bytes" and math.isfinite(m.value)}
    if not ms:
        raise Absent("no web.first_visit.bytes metrics (run `hemoedge bench web`)")
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
        raise Absent("no emulated device class (run `hemoedge bench web ART --device-class "
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


REMOTE_COLUMNS = (  # (header, metric, format) of the device x variant table
    ("session.run p50", ("web.detector.latency_ms.p50", "web.estimator.latency_ms.p50"),
     "{:.1f} ms"),
    ("session create p50", ("web.detector.session_ms.p50", "web.estimator.session_ms.p50"),
     "{:.0f} ms"),
    ("models ready", ("web.models_ready_ms.p50",), "{:.0f} ms"),
    ("cold start", ("web.cold_start_ms",), "{:.0f} ms"),
    ("warm start", ("web.warm_start_ms",), "{:.0f} ms"),
    ("offline reload", ("web.offline_reload_ms",), "{:.0f} ms"),
    ("first visit", ("web.first_visit.bytes",), "{:.0f}"),
    ("frame p50", ("web.frame_ms.p50",), "{:.1f} ms"),
    ("dropped frames", ("web.capture.dropped_frames",), "{:.0f}"),
)


def remote_devices(results: Results) -> list[str]:
    """The devices (bench web --connect) with figures in `results`, in order of appearance."""
    return list(dict.fromkeys(str(m.params["device"]) for m in results.metrics
                              if m.name.startswith("web.") and "device" in m.params))


def _remote_section(results: Results) -> Section:
    """One device x variant table of the devices measured through --connect (`device` param),
    and each device's status (env.web_devices)."""
    devices = remote_devices(results)
    if not devices:
        raise Absent("no remote device (run `hemoedge bench web ART --connect ENDPOINT`)")
    info = results.env.get("web_devices", {})
    head = ["device", "variant", "threads", *(c[0] for c in REMOTE_COLUMNS)]
    html = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dev in devices:
        ms = [m for m in results.metrics if m.params.get("device") == dev]
        rows = sorted({(m.variant, m.params.get("threads")) for m in ms
                       if m.variant and m.params.get("threads") is not None},
                      key=lambda r: (r[0], r[1] or 0))
        for v, t in rows:
            cells = [dev, v, str(t)]
            for _, names, spec in REMOTE_COLUMNS:
                m = next((x for x in reversed(ms) if x.name in names and x.variant == v
                          and x.params.get("threads") == t), None)
                if m is None:
                    cells.append(NA)
                elif m.name == "web.first_visit.bytes":
                    cells.append(f"{m.value / 1e6:.2f} MB")
                else:
                    cells.append(spec.format(m.value))
            if all(c == NA for c in cells[3:]):
                continue
            html.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
            md.append("| " + " | ".join(cells) + " |")
    html.append("</table>")
    plot, plot_md = device_plot(results, devices)  # two devices or more: frame and bare p50s
    if plot:
        html.append(plot)
        md += ["", plot_md]
    notes = []
    for dev, d in info.items():
        if d.get("status") == "ok":
            notes.append(f"{dev}: {d.get('browser', '')}, hardwareConcurrency "
                         f"{d.get('hardware_concurrency')}, {d.get('user_agent', '')}")
        else:
            notes.append(f"{dev}: {d.get('status')}: {d.get('reason') or d.get('error')}")
    if notes:
        html.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
        md += [""] + [f"- {n}" for n in notes]
    html.append('<p class="note">Remote browsers measure the models in the app\'s worker, '
                "the start figures and the frames of captures fed through the app's bench hook "
                "(params.camera = bench-hook: no fake camera there); no seed or memory figures. "
                "These figures are left out of every other section.</p>")
    return Section("Devices (web)", "".join(html), "\n".join(md).rstrip())


def _env_section(results: Results) -> Section:
    if not results.env:
        raise Absent("no environment recorded")
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(plain(v))}</td></tr>"
                   for k, v in sorted(results.env.items()))
    md = "\n".join(f"- {k}: {plain(v)}" for k, v in sorted(results.env.items()))
    return Section("Environment", f"<table>{rows}</table>", md)


def _commands_section(results: Results) -> Section:
    if not results.commands:
        raise Absent("no commands recorded in results.commands")
    body = "<pre>" + esc("\n".join(results.commands)) + "</pre>"
    return Section("Commands", body, "```\n" + "\n".join(results.commands) + "\n```")


def _all_metrics_section(results: Results) -> Section:
    if not results.metrics:
        raise Absent("the results file has no metrics")
    rows = []
    for m in results.metrics:
        params = {k: v for k, v in m.params.items() if k != "samples"}
        ci = ci95(m)
        ci = f"[{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        rows.append(f"<tr><td>{esc(m.name)}</td><td>{esc(m.variant or '-')}</td>"
                    f"<td>{m.value:.5g}</td><td>{esc(m.unit)}</td><td>{esc(ci)}</td>"
                    f"<td>{esc(m.n if m.n is not None else '')}</td>"
                    f"<td>{esc(json.dumps(params) if params else '')}</td></tr>")
    body = (f"<details><summary>{len(results.metrics)} metrics</summary><table><tr>"
            "<th>name</th><th>variant</th><th>value</th><th>unit</th><th>ci95</th><th>n</th>"
            f"<th>params</th></tr>{''.join(rows)}</table></details>")
    return Section("All metrics", body, f"{len(results.metrics)} metrics.")


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
    ("Accuracy vs latency (Pareto)", pareto_section),
    ("Error per severity band", severity_section),
    ("Latency distributions", latency_section),
    ("Frame time by stage", stages_section),
    ("Model sizes", size_section),
    ("Capture", capture_section),
    ("Environment", _env_section),
    ("Commands", _commands_section),
    ("All metrics", _all_metrics_section),
)


def _variant_table(results: Results) -> Section:
    rows = table_rows(results)
    if not rows:
        raise Absent("no variants in the results")
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


def _peers_section(results: Results) -> Section:
    rows = peer_rows(results) if peer_engines(results) else []
    if not rows:
        raise Absent("no quantiser peers (`hemoedge quantize ART --engine ort,nncf`, then "
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


def render(results: Results) -> tuple[str, str]:
    """(html, markdown) for a results object; pure apart from matplotlib's rendering."""
    sections: list[Section] = []
    # the sweep section only when some variant names a backbone (a `hemoedge sweep` run)
    sweep = (("Backbone sweep", sweep_section),) if has_backbones(results) else ()
    peers = (("Quantiser peers", _peers_section),) if peer_engines(results) else ()
    secs = list(SECTIONS)
    full = results
    if remote_devices(results):  # --connect devices: their own table, no other section mixes
        results = Results(env=full.env, variants=full.variants, commands=full.commands)
        results.metrics = [m for m in full.metrics if "device" not in m.params]
        secs.append(("Devices (web)", lambda _r: _remote_section(full)))
    if any(m.name == "web.first_visit.bytes" for m in results.metrics):  # bench web's figures
        at = next((i + 1 for i, (t, _) in enumerate(secs) if t == "Model sizes"), len(secs))
        secs.insert(at, ("First visit (web)", _first_visit_section))
    if any("device_class" in m.params for m in results.metrics):  # emulated slower devices
        secs.append(("Device classes (web)", _device_section))
    if has_eps(results):  # bench web --ep / parity --web --ep: providers besides WASM
        secs.append(("Execution providers (web)", ep_section))
    for title, fn in (*sweep, ("Variants", _variant_table), *peers, *secs):
        try:
            sections.append(fn(results))
        except Absent as e:
            sections.append(Section(title, f'<p class="note">Omitted: {esc(e)}.</p>',
                                    f"_Omitted: {e}._"))
    title = "hemoedge report"
    n_var = len(variant_rows(results))
    lead = (f"{len(full.metrics)} metrics, {n_var} variants. Generated from results.json "
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


@dataclass(frozen=True)
class ReportConfig:
    """`hemoedge report`: the results files (shards are merged) and the two pages written."""
    results: list[Path]
    html: Path | None = None  # None: report.html next to the first results file
    md: Path | None = None  # None: the HTML path with .md


def config_from_args(args) -> ReportConfig:
    paths = args.results if isinstance(args.results, list) else [args.results]
    return ReportConfig(results=[Path(p) for p in paths],
                        html=Path(args.html) if args.html else None,
                        md=Path(args.md) if args.md else None)


def cli(args) -> int:
    return main(config_from_args(args))


def main(cfg: ReportConfig) -> int:
    """`hemoedge report` once its config is known (also what `run` and `sweep` call)."""
    results = merge(cfg.results)  # also unions the shards' sweep entries
    html_path = cfg.html or cfg.results[0].with_name("report.html")
    md_path = cfg.md or html_path.with_suffix(".md")
    html_out, md_out = render(results)
    for path, text in ((html_path, html_out), (md_path, md_out)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"report: {html_path}\nsummary: {md_path}")
    return 0
