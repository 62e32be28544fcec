"""The "Devices (web)" section's plot: per device x pairing x threads, the frame p50 (the
per-frame work as the app runs it) next to the bare detector and estimator `session.run` p50,
each with a whisker to its p90, so which device is slow where shows at a glance."""

from __future__ import annotations

from hemoedge.names import parse_variant
from hemoedge.report.plots import FIG_WIDTH, fig_svg, pyplot
from hemoedge.report.results import Metric, Results, variant_name

# (label, metric prefix, which variant of the pairing holds it)
SERIES = (("frame (as the app runs it)", "web.frame_ms", "pairing"),
          ("detector session.run", "web.detector.latency_ms", "det"),
          ("estimator session.run", "web.estimator.latency_ms", "est"))
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")


def _pairing(variant: str) -> tuple[str, str, str | None] | None:
    """(det, est, ep) of a pairing's variant ('det=int8,est=fp32[,ep=webgpu]'), else None."""
    p = parse_variant(variant)
    if not (p.get("det") and p.get("est")) or set(p) - {"det", "est", "ep"}:
        return None
    return p["det"], p["est"], p.get("ep")


def device_rows(results: Results, devices: list[str]) -> list[dict]:
    """One row per device x pairing x threads with any of SERIES: {label, device, values:
    [(p50, p90 or None) or None per series]}."""
    rows = []
    for dev in devices:
        ms = [m for m in results.metrics if m.params.get("device") == dev]

        def get(name: str, variant: str, t: object, ms: list[Metric] = ms) -> float | None:
            m = next((x for x in reversed(ms) if x.name == name and x.variant == variant
                      and x.params.get("threads") == t), None)
            return None if m is None else float(m.value)

        keys = sorted({(m.variant, m.params.get("threads")) for m in ms
                       if _pairing(m.variant) and m.params.get("threads") is not None},
                      key=lambda k: (k[0], k[1]))
        for v, t in keys:
            det, est, ep = _pairing(v)
            of = {"pairing": v, "det": variant_name(det=det, ep=ep),
                  "est": variant_name(est=est, ep=ep)}
            vals = []
            for _, prefix, which in SERIES:
                p50 = get(prefix + ".p50", of[which], t)
                vals.append(None if p50 is None else (p50, get(prefix + ".p90", of[which], t)))
            if any(vals):
                rows.append({"label": f"{dev} · {v} · {t} thr", "device": dev, "values": vals})
    return rows


def device_plot(results: Results, devices: list[str]) -> tuple[str, str]:
    """(inline SVG figure, Markdown line); ("", "") unless at least two devices have figures
    to compare (one device's are in the table, and no plot is drawn empty)."""
    rows = device_rows(results, devices)
    if len({r["device"] for r in rows}) < 2:
        return "", ""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 0.8 + 0.55 * len(rows)))
    h = 0.8 / len(SERIES)
    for k, ((label, _, _), colour) in enumerate(zip(SERIES, COLOURS, strict=True)):
        ys, p50s, whisk = [], [], []
        for i, r in enumerate(rows):
            v = r["values"][k]
            if v is None:
                continue
            ys.append(i + (k - (len(SERIES) - 1) / 2) * h)
            p50s.append(v[0])
            whisk.append(max(v[1] - v[0], 0.0) if v[1] is not None else 0.0)
        if ys:
            ax.barh(ys, p50s, h * 0.9, xerr=[[0.0] * len(ys), whisk], capsize=2,
                    color=colour, label=label, error_kw={"elinewidth": 1, "ecolor": "#444"})
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms (p50; whisker to p90)")
    ax.set_title("devices (web): frame p50 and bare session.run p50 per device, pairing and "
                 "threads", fontsize=9)
    ax.grid(axis="x", color="#eee")
    ax.legend(fontsize=7, loc="lower right")
    n_dev = len({r["device"] for r in rows})
    return (fig_svg(fig, "devices-web"),
            f"Plot: {n_dev} devices x {len(rows)} pairing/thread rows (frame, detector and "
            "estimator p50, whiskers to p90).")
