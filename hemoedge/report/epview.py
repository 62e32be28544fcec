"""The report's "Execution providers (web)" section: per onnxruntime-web provider other than
WASM (bench web --ep, parity --web --ep), whether it ran, why not, and what it measured next to
the same variant on WASM.
"""

from __future__ import annotations

from hemoedge.names import EP_KEY, ep_of
from hemoedge.report.htmlparts import NA, Absent, Section, esc
from hemoedge.report.results import Metric, Results

AVAILABLE = ("web.ep.available", "web.parity.ep.available")
# (header, metric): figures shown for the provider and, in brackets, for WASM
FIGURES = (("session.run p50 (WASM)", "latency_ms.p50"), ("frame p50 (WASM)", "web.frame_ms.p50"))


def has_eps(results: Results) -> bool:
    return any(m.name in AVAILABLE for m in results.metrics)


def _wasm_variant(variant: str) -> str:
    return ",".join(kv for kv in variant.split(",") if not kv.startswith(f"{EP_KEY}="))


def _figure(results: Results, suffix: str, variant: str, threads: object) -> Metric | None:
    def hit(m: Metric) -> bool:
        return m.variant == variant and m.params.get("threads") == threads and (
            m.name == suffix if suffix.startswith("web.") else
            m.name.startswith("web.") and m.name.endswith(f".{suffix}") and
            m.name.count(".") == 3)  # web.<role>.latency_ms.p50

    return next((m for m in reversed(results.metrics) if hit(m)), None)


def ep_section(results: Results) -> Section:
    rows = [m for m in results.metrics if m.name in AVAILABLE]
    if not rows:
        raise Absent("no execution provider besides WASM measured (run `hemoedge bench web ART "
                     "--ep wasm,webgpu`)")
    head = ["variant", "threads", "source", "ran on it", *(h for h, _ in FIGURES), "adapter",
            "reason"]
    html = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    md = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in sorted(rows, key=lambda x: (ep_of(x.variant), x.variant, x.name,
                                         x.params.get("threads") or 0)):
        t = m.params.get("threads")
        cells = [m.variant, str(t), "parity" if "parity" in m.name else "bench",
                 "yes" if m.value == 1 else "no"]
        for _, suffix in FIGURES:
            got = _figure(results, suffix, m.variant, t)
            ref = _figure(results, suffix, _wasm_variant(m.variant), t)
            cells.append((f"{got.value:.1f} ms" if got else NA)
                         + (f" ({ref.value:.1f} ms)" if ref else ""))
        cells += [str(m.params.get("adapter") or NA), str(m.params.get("reason") or NA)]
        html.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
        md.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    html.append("</table>")
    note = ("Each provider's figures are a variant of their own (ep=NAME); a provider that "
            "fell back to WASM has no timings under its variant. WASM's figure of the same "
            "models is in brackets.")
    html.append(f'<p class="note">{esc(note)}</p>')
    md += ["", note]
    return Section("Execution providers (web)", "".join(html), "\n".join(md))
