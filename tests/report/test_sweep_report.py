"""The "Backbone sweep" report section, from a fabricated sweep built in code: two regression
backbones, one classification backbone and one skipped entry."""

from __future__ import annotations

import re

import pytest
from report_fixtures import make_results

from hemoedge.report.html import render
from hemoedge.report.results import Results
from hemoedge.report.sweep_view import has_backbones, sweep_rows

PRECISIONS = ("fp32", "fp16", "int8")
DET_BYTES = 3.4e6
# label -> timm name, input size, params (M), est bytes per precision
REG = {"mobilenetv4_conv_small": ("mobilenetv4_conv_small", 224, 2.5,
                                  {"fp32": 10.0e6, "fp16": 5.0e6, "int8": 2.8e6}),
       "efficientnet_b0": ("efficientnet_b0", 224, 4.0,
                           {"fp32": 21.0e6, "fp16": 10.5e6, "int8": 5.6e6})}
# label -> precision -> (e2e Hb MAE g/dL, web frame p50 ms)
REG_FIG = {"mobilenetv4_conv_small": {"fp32": (1.20, 30.0), "fp16": (1.202, 31.0),
                                      "int8": (1.23, 33.0)},
           "efficientnet_b0": {"fp32": (1.05, 45.0), "fp16": (1.051, 47.0),
                               "int8": (1.07, 44.0)}}
CLS_LABEL = "resnet18:cls"
CLS_EST_BYTES = {"fp32": 46.0e6, "fp16": 23.0e6, "int8": 11.7e6}
# precision -> (e2e AUROC, sensitivity, specificity, web frame p50 ms)
CLS_FIG = {"fp32": (0.90, 0.85, 0.88, 40.0), "fp16": (0.899, 0.85, 0.87, 42.0),
           "int8": (0.87, 0.80, 0.86, 38.0)}
SKIPPED = "mobilenetv3_large_100@192"
SKIP_REASON = "projected training 37 min > --max-train-min 15"


def _pair(label: str, est: str, det: str = "int8") -> str:
    # deliberately varied key order: readers must parse, not assume positions
    return {"fp32": f"backbone={label},det={det},est={est}",
            "fp16": f"det={det},est={est},backbone={label}",
            "int8": f"est={est},backbone={label},det={det}"}[est]


def make_sweep_results(fast_mae: float = 1.20) -> Results:
    """`fast_mae`: e2e Hb MAE of mobilenetv4_conv_small's fp32 pipeline (the fastest backbone);
    its fp16/int8 pairings keep the same deltas."""
    reg_fig = {k: dict(v) for k, v in REG_FIG.items()}
    shift = fast_mae - 1.20
    reg_fig["mobilenetv4_conv_small"] = {p: (mae + shift, ms) for p, (mae, ms)
                                         in REG_FIG["mobilenetv4_conv_small"].items()}
    entries = [{"label": lab, "backbone": timm, "size": size, "task": "regression",
                "status": "done", "reason": "", "params_m": params, "train_s": 300.0,
                "projected_train_s": 290.0} for lab, (timm, size, params, _) in REG.items()]
    entries.append({"label": CLS_LABEL, "backbone": "resnet18", "size": 224,
                    "task": "classification", "status": "done", "reason": "", "params_m": 11.2,
                    "train_s": 500.0, "projected_train_s": 480.0})
    entries.append({"label": SKIPPED, "backbone": "mobilenetv3_large_100", "size": 192,
                    "task": "regression", "status": "skipped", "reason": SKIP_REASON,
                    "params_m": 5.5, "train_s": None, "projected_train_s": 2220.0})
    r = Results(env={"cores": 2, "sweep": {
        "entries": entries, "anaemia_threshold_gdl": 12.0, "det_precision": "int8",
        "threads": 2, "command": "hemoedge sweep --task both --max-train-min 15",
        "machine": "2-core Xeon test box"}})

    def timing(name: str, v: str, ms: float) -> None:
        for t, scale in ((1, 1.6), (2, 1.0)):
            r.add(name, v, ms * scale, "ms", "lower", n=60,
                  ci95=[ms * scale - 0.5, ms * scale + 0.5], threads=t)

    for label in [*REG, CLS_LABEL]:
        r.add("sweep.params_m", f"backbone={label}",
              REG[label][2] if label in REG else 11.2, "M", "none")
        r.add("sweep.train_s", f"backbone={label}", 300.0, "s", "lower")
        r.add("size.detector.bytes", f"det=int8,backbone={label}", DET_BYTES, "bytes", "lower")
        for p in PRECISIONS:
            model = f"backbone={label},est={p}"
            est_bytes = REG[label][3][p] if label in REG else CLS_EST_BYTES[p]
            r.add("size.estimator.bytes", model, est_bytes, "bytes", "lower")
            pair = _pair(label, p)
            if label in REG:
                mae, ms = reg_fig[label][p]
                ref = reg_fig[label]["fp32"][0]
                r.add("acc.e2e.hb_mae", pair, mae, "g/dL", "lower", n=50)
                r.add("acc.e2e.hb_mae_delta", pair, mae - ref, "g/dL", "lower", n=50)
                r.add("acc.e2e.abs_delta.p95", pair, 3 * (mae - ref), "g/dL", "lower", n=50)
                r.add("acc.e2e.band_agreement", pair, 0.97, "", "higher", n=50)
                r.add("acc.hb_mae", model, mae - 0.05, "g/dL", "lower", n=50)
                r.add("acc.hb_mae_delta", model, mae - ref, "g/dL", "lower", n=50)
                r.add("acc.hb_r2", model, 0.6, "", "higher", n=50)
            else:
                auc, sens, spec, ms = CLS_FIG[p]
                ref = CLS_FIG["fp32"]
                for name, val, refv in (("auroc", auc, ref[0]), ("sensitivity", sens, ref[1]),
                                        ("specificity", spec, ref[2])):
                    for pre, v in (("acc.cls.", model), ("acc.e2e.cls.", pair)):
                        r.add(pre + name, v, val, "", "higher", n=50)
                        r.add(f"{pre}{name}_delta", v, val - refv, "", "higher", n=50)
                r.add("acc.e2e.cls.agreement", pair, 1.0 if p == "fp32" else 0.96, "", "higher")
            timing("web.frame_ms.p50", pair, ms)
            timing("cpu.frame_ms.p50", pair, ms / 4)
            timing("web.estimator.latency_ms.p50", model, ms / 3)
            timing("cpu.estimator.latency_ms.p50", model, ms / 12)
    # a CPU pairing with the fp32 detector: not the table's detector, must not leak into it
    timing("cpu.frame_ms.p50", _pair("efficientnet_b0", "fp32", det="fp32"), 99.0)
    r.add("size.detector.bytes", "backbone=efficientnet_b0,det=fp32", 12.1e6, "bytes", "lower")
    return r


@pytest.fixture
def sweep() -> Results:
    return make_sweep_results()


def _section(html: str, title: str) -> str:
    m = re.search(rf"<section><h2>{re.escape(title)}</h2>(.*?)</section>", html, re.S)
    assert m, f"no section {title!r}"
    return m.group(1)


def _md_section(md: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", md, re.S | re.M)
    assert m, f"no Markdown section {title!r}"
    return m.group(1)


def test_section_only_with_backbone_keys(sweep):
    assert has_backbones(sweep) and not has_backbones(make_results())
    html, md = render(make_results())
    assert "Backbone sweep" not in html and "Backbone sweep" not in md
    html, md = render(sweep)
    assert html.index("<h2>Backbone sweep</h2>") < html.index("<h2>Variants</h2>")
    assert "## Backbone sweep" in md


def test_rows_hold_the_right_figures(sweep):
    rows = {(r.label, r.est): r for r in sweep_rows(sweep)}
    assert len(rows) == 10  # 3 backbones x 3 precisions + the skipped entry
    r = rows[("efficientnet_b0", "int8")]
    assert (r.backbone, r.size, r.task, r.params_m) == ("efficientnet_b0", 224, "regression", 4.0)
    assert r.mae == pytest.approx(1.07) and r.mae_delta == pytest.approx(0.02)
    assert r.mae_source == "e2e"
    assert r.web_ms == pytest.approx(44.0) and r.web_ci == pytest.approx([43.5, 44.5])
    assert r.cpu_ms == pytest.approx(11.0)  # det=int8, threads=2: not the det=fp32 99 ms
    assert r.est_bytes == pytest.approx(5.6e6) and r.total_bytes == pytest.approx(9.0e6)
    c = rows[(CLS_LABEL, "int8")]
    assert (c.task, c.backbone) == ("classification", "resnet18")
    assert (c.auroc, c.sensitivity, c.specificity) == pytest.approx((0.87, 0.80, 0.86))
    assert c.auroc_delta == pytest.approx(-0.03) and c.mae is None
    s = rows[(SKIPPED, "")]
    assert (s.status, s.reason, s.size, s.params_m) == ("skipped", SKIP_REASON, 192, 5.5)
    # order: regression (entry order, fp32/fp16/int8, then the skipped one), classification
    assert [(r.label, r.est) for r in sweep_rows(sweep)][:4] == [
        ("mobilenetv4_conv_small", "fp32"), ("mobilenetv4_conv_small", "fp16"),
        ("mobilenetv4_conv_small", "int8"), ("efficientnet_b0", "fp32")]
    assert [r.task for r in sweep_rows(sweep)][-3:] == ["classification"] * 3


def test_pareto_star_on_the_front_within_each_task(sweep):
    stars = {(r.label, r.est) for r in sweep_rows(sweep) if r.pareto}
    # regression: fastest (mnv4 fp32 30 ms), most accurate (effnet fp32 1.05), and effnet int8
    # (44 ms, 1.07: faster than effnet fp32, more accurate than every mnv4 pairing);
    # classification is ranked on its own: int8 fastest, fp32 best AUROC, fp16 dominated
    assert stars == {("mobilenetv4_conv_small", "fp32"), ("efficientnet_b0", "fp32"),
                     ("efficientnet_b0", "int8"), (CLS_LABEL, "fp32"), (CLS_LABEL, "int8")}


def test_html_table_and_plots(sweep):
    html, _ = render(sweep)
    body = _section(html, "Backbone sweep")
    assert "command: hemoedge sweep --task both --max-train-min 15" in body
    assert "machine: 2-core Xeon test box" in body
    row = re.search(r"<tr><td>efficientnet_b0</td>.*?<td>int8</td>(.*?)</tr>", body).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells == ["1.070", "+0.020", "44.0 [43.5, 44.5]", "11.0", "5.60", "9.00", "★"]
    row = re.search(r"<tr><td>resnet18:cls</td>.*?<td>fp16</td>(.*?)</tr>", body).group(1)
    assert re.findall(r"<td>(.*?)</td>", row) == [
        "0.899", "0.850", "0.870", "-0.001", "42.0 [41.5, 42.5]", "10.5", "23.00", "26.40", ""]
    # the skipped entry: its reason across the 7 figure columns (">" escaped)
    assert ('<td colspan="7" class="note">skipped: projected training 37 min &gt; '
            "--max-train-min 15</td>") in body
    assert body.count("<td>★</td>") == 5
    assert body.count("<svg") == 2  # one figure per task, two panels each
    assert "Classification (anaemic = Hb &lt; 12.0 g/dL" in body
    assert re.search(r"https?://", html) is None  # still self-contained
    # the rest of the report still renders the sweep's metrics
    assert "Omitted: no variants" not in html


def test_markdown_table(sweep):
    _, md = render(sweep)
    sec = _md_section(md, "Backbone sweep")
    assert "| Backbone | timm model | Input px | Params (M) | Est. precision | e2e Hb MAE (g/dL)" \
        in sec
    assert ("| mobilenetv4_conv_small | mobilenetv4_conv_small | 224 | 2.50 | fp32 | 1.200 | "
            "+0.000 | 30.0 [29.5, 30.5] | 7.5 | 10.00 | 13.40 | ★ |") in sec
    assert (f"| {SKIPPED} | mobilenetv3_large_100 | 192 | 5.50 | skipped | "
            f"skipped: {SKIP_REASON} | - |") in sec
    assert "| e2e AUROC | Sensitivity | Specificity | Δ AUROC vs fp32 |" in sec
    assert sum(1 for line in sec.splitlines() if line.startswith("| resnet18:cls |")) == 3


def test_estimator_only_accuracy_is_marked():
    r = make_sweep_results()
    r.metrics = [m for m in r.metrics if not m.name.startswith("acc.e2e.")]
    rows = {(x.label, x.est): x for x in sweep_rows(r)}
    x = rows[("efficientnet_b0", "fp16")]
    assert x.mae == pytest.approx(1.001) and x.mae_source == "crops"
    assert rows[(CLS_LABEL, "fp32")].auroc == pytest.approx(0.90)
    html, _ = render(r)
    assert "1.001 (crops)" in _section(html, "Backbone sweep")


def test_sweep_without_env_infers_from_labels():
    r = make_sweep_results()
    r.env = {}
    rows = {(x.label, x.est): x for x in sweep_rows(r)}
    assert (SKIPPED, "") not in rows  # nothing tells of the skipped entry
    c = rows[(CLS_LABEL, "fp32")]
    assert (c.task, c.backbone, c.size, c.params_m) == ("classification", "resnet18", 224, 11.2)
    html, _ = render(r)
    assert _section(html, "Backbone sweep").count("<svg") == 2
