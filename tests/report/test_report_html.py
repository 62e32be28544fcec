from __future__ import annotations

import re
from argparse import Namespace

from report_fixtures import make_results

from hemoedge.names import SHIPPED_VARIANT
from hemoedge.report.html import (
    capture_frames,
    cli,
    pareto_dominated,
    pareto_points,
    render,
    table_rows,
)
from hemoedge.report.results import Results


def test_pareto_dominance_hand_made():
    pts = {
        "A": (10.0, 0.00),  # most accurate
        "B": (8.0, 0.02),  # fastest
        "C": (12.0, 0.01),  # slower and less accurate than A
        "D": (8.0, 0.03),  # as fast as B, less accurate
        "E": (10.0, 0.00),  # ties A exactly: neither dominates the other
        "F": (9.0, 0.015),  # between A and B: on the front
    }
    assert pareto_dominated(pts) == {"C", "D"}
    assert pareto_dominated({}) == set()
    assert pareto_dominated({"only": (1.0, 1.0)}) == set()


def test_pareto_points_per_target(results):
    web = pareto_points(results, "web")
    cpu = pareto_points(results, "cpu")
    assert len(web) == len(cpu) == 9
    # measured: in WASM the int8 estimator is slower, so det=int8,est=fp32 dominates est=int8
    assert "det=int8,est=int8" in pareto_dominated(web)
    assert "det=int8,est=int8" not in pareto_dominated(cpu)  # natively it is the fastest
    assert web["det=int8,est=fp32"] == (41.2, 0.006)


def test_render_full_is_self_contained(results):
    html, md = render(results)
    assert html.startswith("<!DOCTYPE html>")
    assert re.search(r"https?://", html) is None  # no URL at all, not even SVG namespaces
    assert "<script" not in html and " src=" not in html and "<link" not in html
    assert html.count("<svg") == 8  # pareto x2, severity, latency x2, stages, sizes, capture
    assert "Omitted" not in html
    for title in ("Variants", "Accuracy vs latency (Pareto)", "Error per severity band",
                  "Latency distributions", "Frame time by stage", "Model sizes", "Capture",
                  "Environment", "Commands"):
        assert f"<h2>{title}</h2>" in html and f"## {title}" in md
    assert "hemoedge bench cpu runs/x/art --results runs/x/results.json" in html
    table = [line for line in md.splitlines() if line.startswith("| det=") or
             line.startswith("| est=")]
    assert len(table) == 15  # 9 pairings + 3 detectors + 3 estimators


def test_table_rows_figures(results):
    rows = {r["variant"]: r for r in table_rows(results)}
    r = rows["det=int8,est=fp32"]
    assert r["size"] == "13.40 MB"  # 3.4 MB + 10.0 MB, found through the model variants
    assert r["cpu"] == "8.10 ms (t2)"  # threads=2 preferred
    assert r["web"] == "41.20 ms (t2)"
    assert r["delta"] == "+0.006"
    assert r["map50"] == "0.904"
    assert rows["det=int8"]["hb_mae"] == "-"
    assert rows["est=int8"]["parity"] == "est 0.03 g/dL"


def test_sections_omitted_with_a_note():
    r = Results()
    r.add("acc.hb_mae", "est=fp32", 1.1, "g/dL", "lower")
    html, md = render(r)
    assert html.count("Omitted:") == 8  # all but the variant table and the metric list
    assert "no web.capture.* metrics" in html and "_Omitted:" in md
    html, _ = render(Results())  # nothing at all still renders
    assert "Omitted: no variants in the results" in html


def test_capture_without_per_frame_data():
    r = make_results(capture=False)
    r.add("web.capture.dropped_frames", "det=int8,est=fp32", 2, "frames", "lower")
    html, _ = render(r)
    assert "timeline omitted" in html
    assert capture_frames(r) == {}
    assert len(capture_frames(make_results())[SHIPPED_VARIANT]) == 30


def test_cpu_only_run_and_raw_samples():
    r = make_results(web=False)
    r.add("cpu.frame_ms.p50", "det=int8,est=fp32", 8.0, "ms", "lower", threads=4,
          samples=[7.5, 8.0, 8.2, 9.1, 7.9])
    html, _ = render(r)
    assert "web: no pairing has both web.frame_ms.p50" in html
    assert html.count("<svg") == 5  # pareto cpu, severity, latency cpu, stages cpu, sizes


def test_cli_merges_shards(tmp_path, capsys):
    full = make_results()
    a, b = Results(env=full.env, variants=full.variants, commands=full.commands), Results()
    a.metrics = full.metrics[: len(full.metrics) // 2]
    b.metrics = full.metrics[len(full.metrics) // 2:]
    pa, pb = a.save(tmp_path / "a" / "results.json"), b.save(tmp_path / "b" / "results.json")
    assert cli(Namespace(results=[str(pa), str(pb)], html=None, md=None)) == 0
    out = tmp_path / "a" / "report.html"
    assert out.is_file() and (tmp_path / "a" / "report.md").is_file()
    assert out.read_text().count("<svg") == 8
    assert str(out) in capsys.readouterr().out


def test_null_ci_bounds_and_nan_values_render():
    r = make_results(web=False, capture=False)
    r.add("acc.hb_mae.band.<8", "est=fp32", 1.5, "g/dL", "lower", ci95=[None, 2.0])
    r.add("cpu.frame_ms.p50", "det=int8,est=int8", float("nan"), "ms", "lower", threads=2)
    r.add("cpu.detector.latency_ms.p50", "det=int8", 5.0, "ms", "lower", ci95=[None, None],
          threads=3)
    loaded = Results.from_dict(r.to_dict())  # null bounds and null values as read from JSON
    html, _ = render(loaded)
    assert html.count("<svg") == 5
