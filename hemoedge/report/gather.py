"""The figures the report shows, gathered from a Results (no HTML, no plotting): the variant
table's rows, the Pareto points per target, latency series, per-stage frame times, per-frame
capture timings and the quantiser-peer rows.
"""

from __future__ import annotations

import logging
import math
import re

from hemoedge.names import ROLE_KEY, parse_variant
from hemoedge.report.candidates import Constraints, collect
from hemoedge.report.htmlparts import NA
from hemoedge.report.query import ci95, covers, lookup
from hemoedge.report.results import Metric, Results

log = logging.getLogger(__name__)

TARGETS = ("cpu", "web")
LATENCY_RE = re.compile(r"^(cpu|web)\.(?:(\w+)\.latency_ms|(frame_ms))\.p50$")
CAPTURE_FRAME = "web.capture.grab_ms"
CAPTURE_KEYS = ("frame", "t_grab", "t_det_start", "t_est_end", "t_result")
STAGE_RE = re.compile(r"^(cpu|web)\.frame\.(\w+)_ms\.p50$")


def variant_rows(results: Results) -> list[str]:
    """Every variant string in the file: pairings (more keys) first, then single models."""
    names = {v for v in results.variants if v} | {m.variant for m in results.metrics if m.variant}
    return sorted(names, key=lambda v: (-len(parse_variant(v)), v))


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


def latency_groups(results: Results) -> dict[str, list[dict]]:
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
             "p50": m.value, "ci95": ci95(m),
             "samples": m.params.get("samples")}
        for q in ("p90", "p99", "mean"):
            other = results.get(f"{base}.{q}", m.variant, **kw)
            g[q] = other.value if other is not None and math.isfinite(other.value) else None
        out.setdefault(target, []).append(g)
    return out


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
        ci = ci95(m)
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
