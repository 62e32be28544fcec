from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest

from hemoedge.cli import main
from hemoedge.errors import ResultsError
from hemoedge.gate import (
    Budget,
    MetricRef,
    benchmark_entries,
    cli,
    evaluate,
    parse_budgets,
    ratio_interval,
    to_markdown,
    write_benchmark_json,
    write_junit,
)
from hemoedge.report.results import Results, merge

RATIO_TOML = """
[[budget]]
name = "det ratio"
kind = "ratio"
numerator = { metric = "cpu.detector.latency_ms.p50", variant = "det=int8", params = {threads=2} }
denominator = { metric = "cpu.detector.latency_ms.p50", variant = "det=fp32", params = {threads=2} }
max = 0.9
"""

ACC_TOML = """
[[budget]]
name = "mae delta"
metric = "acc.e2e.hb_mae_delta"
variant = "det=int8,est=int8"
max = 0.05

[[budget]]
name = "mae delta target"
metric = "acc.e2e.hb_mae_delta"
variant = "det=int8,est=int8"
max = 0.02
severity = "warn"

[[budget]]
name = "band agreement"
metric = "acc.e2e.band_agreement"
variant = "det=int8,est=int8"
min = 0.95

[[budget]]
name = "mae vs baseline"
kind = "baseline"
metric = "acc.e2e.hb_mae"
variant = "det=int8,est=int8"
max_worse = 0.05

[[budget]]
name = "map50 vs baseline"
kind = "baseline"
metric = "acc.det.nail.map50"
variant = "det=int8"
max_worse_pct = 2

[[budget]]
name = "dropped frames"
metric = "web.capture.dropped_frames"
variant = "*"
max = 0
when_present = true
"""


def timing(r: Results, variant: str, p50: float, ci: list[float] | None, **params) -> None:
    r.add("cpu.detector.latency_ms.p50", variant, p50, "ms", "lower", n=200, ci95=ci,
          threads=2, **params)


def ratio_results(int8: tuple, fp32: tuple = (7.6, [7.5, 7.7])) -> Results:
    r = Results()
    timing(r, "det=int8", *int8)
    timing(r, "det=fp32", *fp32)
    return r


def acc_results(delta=0.03, band=0.98, mae=1.2, map50=0.90) -> Results:
    r = Results()
    r.add("acc.e2e.hb_mae_delta", "det=int8,est=int8", delta, "g/dL", "lower", n=50)
    r.add("acc.e2e.band_agreement", "det=int8,est=int8", band, "", "higher", n=50)
    r.add("acc.e2e.hb_mae", "det=int8,est=int8", mae, "g/dL", "lower", n=50)
    r.add("acc.det.nail.map50", "det=int8", map50, "", "higher", n=50)
    return r


# --- interval arithmetic and verdicts -------------------------------------------------------

def test_ratio_interval_hand_computed():
    assert ratio_interval((5.0, 6.0), (7.0, 8.0)) == pytest.approx((5 / 8, 6 / 7))
    assert ratio_interval((5.2, 5.4), (7.5, 7.7)) == pytest.approx((0.675325, 0.72), rel=1e-5)
    assert ratio_interval((1.0, 2.0), (0.0, 1.0))[1] == float("inf")


def test_ratio_pass():
    res = evaluate(ratio_results((5.3, [5.2, 5.4])), parse_budgets(RATIO_TOML), None)
    (c,) = res.checks
    assert c.verdict == "pass" and res.exit_code == 0
    assert c.value == pytest.approx(5.3 / 7.6)
    assert c.interval == pytest.approx((5.2 / 7.7, 5.4 / 7.5))
    assert (c.numerator, c.denominator, c.threshold, c.op) == (5.3, 7.6, 0.9, "<=")
    assert c.method == "ci95 interval arithmetic"


def test_ratio_fail_when_whole_interval_beyond():
    res = evaluate(ratio_results((7.3, [7.2, 7.4])), parse_budgets(RATIO_TOML), None)
    (c,) = res.checks
    # [7.2/7.7, 7.4/7.5] = [0.935, 0.987], entirely above 0.9
    assert c.verdict == "fail" and c.interval[0] == pytest.approx(7.2 / 7.7)
    assert res.failures == [c] and res.exit_code == 1


def test_ratio_not_significant_when_interval_straddles():
    res = evaluate(ratio_results((7.0, [6.0, 8.0]), (7.6, [7.0, 8.2])),
                   parse_budgets(RATIO_TOML), None)
    (c,) = res.checks
    # point 0.921 > 0.9 but interval [6/8.2, 8/7] = [0.732, 1.143] straddles it
    assert c.verdict == "not significant" and res.exit_code == 0 and not res.failures
    assert c.interval == pytest.approx((6.0 / 8.2, 8.0 / 7.0))


def test_timing_without_any_interval_is_not_significant():
    res = evaluate(ratio_results((7.3, None), (7.6, None)), parse_budgets(RATIO_TOML), None)
    assert res.checks[0].verdict == "not significant"
    assert res.checks[0].method == "no interval"


def test_ratio_bootstrap_on_raw_samples():
    rng = np.random.default_rng(1)
    fp32 = list(7.6 + rng.normal(0, 0.1, 60))
    slow = list(7.3 + rng.normal(0, 0.1, 60))  # ratio ~0.96: a real regression
    noisy = list(np.linspace(4.0, 10.2, 60))  # median 7.1: ratio 0.93 but very noisy
    for samples, verdict in ((slow, "fail"), (noisy, "not significant")):
        r = Results()
        timing(r, "det=int8", float(np.median(samples)), None, samples=samples)
        timing(r, "det=fp32", float(np.median(fp32)), None, samples=fp32)
        (c,) = evaluate(r, parse_budgets(RATIO_TOML), None).checks
        assert c.method == "bootstrap n=60/60"
        assert c.verdict == verdict, (c.value, c.interval)


def test_size_ratio_is_exact():
    r = Results()
    r.add("size.detector.bytes", "det=int8", 3.7e6, "bytes", "lower")
    r.add("size.detector.bytes", "det=fp32", 12.1e6, "bytes", "lower")
    budgets = parse_budgets("""
[[budget]]
name = "bytes"
kind = "ratio"
numerator = { metric = "size.detector.bytes", variant = "det=int8" }
denominator = { metric = "size.detector.bytes", variant = "det=fp32" }
max = 0.30
""")
    (c,) = evaluate(r, budgets, None).checks
    assert c.verdict == "fail" and c.method == "exact"  # 0.306 > 0.30, no noise in bytes


def test_absolute_baseline_warn_and_when_present():
    base = acc_results(mae=1.15, map50=0.91)
    res = evaluate(acc_results(), parse_budgets(ACC_TOML), base)
    v = {c.budget.name: c for c in res.checks}
    assert v["mae delta"].verdict == "pass"
    assert v["mae delta target"].verdict == "fail" and v["mae delta target"].warned
    assert v["band agreement"].verdict == "pass"
    assert v["mae vs baseline"].verdict == "pass"
    assert v["mae vs baseline"].threshold == pytest.approx(1.20)
    # map50 higher is better: limit 0.91 - 2 % of 0.91 = 0.8918; 0.90 passes
    assert v["map50 vs baseline"].threshold == pytest.approx(0.8918)
    assert v["map50 vs baseline"].op == ">="
    assert v["dropped frames"].verdict == "skipped"
    assert "when_present" in v["dropped frames"].note
    assert res.ok and res.exit_code == 0 and res.warnings == [v["mae delta target"]]


def test_every_failure_is_collected():
    res = evaluate(acc_results(delta=0.08, band=0.9, mae=1.3, map50=0.85),
                   parse_budgets(ACC_TOML), acc_results(mae=1.15, map50=0.91))
    assert {c.budget.name for c in res.failures} == {
        "mae delta", "band agreement", "mae vs baseline", "map50 vs baseline"}
    assert res.exit_code == 1
    md = to_markdown(res)
    assert md.startswith("## hemoedge gate FAIL") and md.count("**fail**") == 4


def test_any_variant_judges_the_worst():
    r = acc_results()
    r.add("web.capture.dropped_frames", "det=int8,est=fp32", 0, "frames", "lower")
    r.add("web.capture.dropped_frames", "det=fp32,est=fp32", 3, "frames", "lower")
    res = evaluate(r, parse_budgets(ACC_TOML), acc_results())
    c = next(c for c in res.checks if c.budget.name == "dropped frames")
    assert c.verdict == "fail" and c.value == 3


def test_missing_metric_and_lost_shard():
    r = acc_results()
    r.metrics = [m for m in r.metrics if m.name != "acc.e2e.band_agreement"]
    r.add("web.capture.dropped_frames", "det=int8,est=fp32", 0, "frames", "lower")
    res = evaluate(r, parse_budgets(ACC_TOML), acc_results())
    (c,) = res.missing
    assert c.budget.name == "band agreement" and res.exit_code == 2
    # when_present skips only when the metric name is absent from the whole run
    b = Budget("web frame", "absolute", MetricRef("web.frame_ms.p50", "det=int8,est=fp32"),
               max=50.0, when_present=True)
    r.add("web.frame_ms.p50", "det=fp32,est=fp32", 55.0, "ms", "lower")
    assert evaluate(r, [b], None).checks[0].verdict == "missing"


DEVICE_TOML = """
[[budget]]
name = "desktop drops"
metric = "web.capture.dropped_frames"
variant = "det=int8,est=fp32"
max = 0
when_present = true

[[budget]]
name = "phone drops"
metric = "web.capture.dropped_frames"
variant = "det=int8,est=fp32"
device_class = "mid-range-phone"
max = 0
when_present = true
"""


def test_a_budget_judges_only_figures_of_its_device_class():
    desktop = acc_results()
    desktop.add("web.capture.dropped_frames", "det=int8,est=fp32", 0, "frames", "lower")
    v = {c.budget.name: c for c in evaluate(desktop, parse_budgets(DEVICE_TOML), None).checks}
    assert v["desktop drops"].verdict == "pass"
    assert v["phone drops"].verdict == "skipped" and "mid-range-phone" in v["phone drops"].note
    # an emulated phone pass merged into the same file: each budget reads its own figure, in
    # either order (the desktop budget must not judge the phone's 5 drops, nor the reverse)
    for first, second in ((0, 5), (5, 0)):
        r = acc_results()
        r.add("web.capture.dropped_frames", "det=int8,est=fp32", first, "frames", "lower")
        r.add("web.capture.dropped_frames", "det=int8,est=fp32", second, "frames", "lower",
              device_class="mid-range-phone", cpu_slowdown=4.0)
        v = {c.budget.name: c for c in evaluate(r, parse_budgets(DEVICE_TOML), None).checks}
        assert (v["desktop drops"].value, v["phone drops"].value) == (first, second)
        assert {c.budget.name for c in evaluate(r, parse_budgets(DEVICE_TOML), None).failures} \
            == {n for n, x in (("desktop drops", first), ("phone drops", second)) if x}
    # phone figures of another variant only: the phone budget's pairing was lost -> missing
    r = acc_results()
    r.add("web.capture.dropped_frames", "det=fp32,est=fp32", 0, "frames", "lower",
          device_class="mid-range-phone")
    v = {c.budget.name: c for c in evaluate(r, parse_budgets(DEVICE_TOML), None).checks}
    assert v["phone drops"].verdict == "missing" and v["desktop drops"].verdict == "skipped"
    assert "device_class=mid-range-phone" in MetricRef("m", "", (), "mid-range-phone").label()


def test_a_remote_devices_figure_is_judged_only_by_a_budget_naming_that_device():
    r = acc_results()
    r.add("web.capture.dropped_frames", "det=int8,est=fp32", 7, "frames", "lower",
          device="pixel-7", user_agent="Mozilla/5.0 (Linux; Android 14)")
    budgets = parse_budgets(DEVICE_TOML + """
[[budget]]
name = "pixel drops"
metric = "web.capture.dropped_frames"
variant = "det=int8,est=fp32"
device = "pixel-7"
max = 0
""")
    v = {c.budget.name: c for c in evaluate(r, budgets, None).checks}
    assert v["desktop drops"].verdict == "skipped"  # this machine measured nothing
    assert v["pixel drops"].verdict == "fail" and v["pixel drops"].value == 7


# --- budgets file ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, match", [
    ("[[budget]\nname=", "not valid TOML"),
    ("[[budget]]\nname = 'x'\nmetric = 'a'\nmax = 1\nmaximum = 2\n",
     r"unknown key\(s\) \['maximum'\]"),
    ("[[budget]]\nname = 'x'\nmetric = 'a'\n", "exactly one of max or min"),
    ("[[budget]]\nname = 'x'\nkind = 'baseline'\nmetric = 'a'\n", "max_worse"),
    ("[[budget]]\nname = 'x'\nkind = 'speed'\nmetric = 'a'\nmax = 1\n", "kind must be one of"),
    ("[[budget]]\nname = 'x'\nkind = 'ratio'\nmetric = 'a'\nmax = 1\n", "numerator"),
    ("[[budget]]\nname = 'x'\nmetric = 'a'\nmax = 1\nseverity = 'info'\n", "severity"),
    ("[[budget]]\nname = 'x'\nmetric = 'a'\nmax = 1\n[[budget]]\nname = 'x'\nmetric = 'b'\n"
     "max = 1\n", "duplicate name"),
    ("title = 'budgets'\n", "unknown top-level key"),
    ("[[budget]]\nname = 'x'\nmetric = 'a'\nmax = 1\ndevice_class = ''\n", "device_class"),
    ("[[budget]]\nname = 'x'\nmetric = 'a'\nmax = 1\nparams = {device_class = 'p'}\n",
     "not inside params"),
    ("[[budget]]\nname = 'x'\nmetric = 'a'\nmax = 1\nparams = {device = 'p'}\n",
     "not inside params"),
])
def test_bad_budgets(text, match):
    with pytest.raises(ResultsError, match=match):
        parse_budgets(text)


# --- command line and outputs ---------------------------------------------------------------

def _args(tmp_path, results, **kw) -> Namespace:
    d = dict(results=[str(results)], baseline=str(tmp_path / "baseline.json"),
             budgets=str(tmp_path / "budgets.toml"), update_baseline=False, junit=None, md=None,
             benchmark_json=None)
    d.update(kw)
    return Namespace(**d)


def test_cli_outputs_junit_markdown_benchmark(tmp_path, capsys):
    (tmp_path / "budgets.toml").write_text(ACC_TOML + RATIO_TOML)
    r = acc_results(delta=0.08, band=0.9)  # two failures
    r.extend(ratio_results((5.3, [5.2, 5.4])))
    res_path = r.save(tmp_path / "results.json")
    acc_results(mae=1.15, map50=0.91).save(tmp_path / "baseline.json")
    args = _args(tmp_path, res_path, junit=str(tmp_path / "out" / "gate.xml"),
                 md=str(tmp_path / "out" / "gate.md"), benchmark_json=str(tmp_path / "bench.json"))
    assert cli(args) == 1
    out = capsys.readouterr().out
    assert "gate FAIL" in out and "FAIL mae delta" in out

    from junitparser import JUnitXml

    xml = JUnitXml.fromfile(str(tmp_path / "out" / "gate.xml"))
    suites = list(xml) if hasattr(xml, "__iter__") else [xml]
    cases = [c for s in suites for c in s]
    assert len(cases) == 7
    failed = [c.name for c in cases if any(type(x).__name__ == "Failure" for x in c.result)]
    skipped = [c.name for c in cases if any(type(x).__name__ == "Skipped" for x in c.result)]
    assert sorted(failed) == ["band agreement", "mae delta"]  # the warn budget is not a failure
    assert skipped == ["dropped frames"]

    smaller = json.loads((tmp_path / "bench.json").read_text())
    bigger = json.loads((tmp_path / "bench.bigger.json").read_text())
    assert all(set(e) >= {"name", "unit", "value"} and isinstance(e["value"], float)
               for e in smaller + bigger)
    assert {e["name"] for e in bigger} == {"acc.e2e.band_agreement [det=int8,est=int8]",
                                           "acc.det.nail.map50 [det=int8]"}
    ratio = next(e for e in smaller if e["name"] == "cpu.detector.latency_ms.p50 [det=int8] "
                 "(threads=2) / [det=fp32]")
    assert ratio["unit"] == "x" and ratio["value"] == pytest.approx(5.3 / 7.6)
    assert "range" in ratio
    assert "| mae delta |" in (tmp_path / "out" / "gate.md").read_text()


def test_benchmark_entries_shape():
    res = evaluate(ratio_results((5.3, [5.2, 5.4])), parse_budgets(RATIO_TOML), None)
    e = benchmark_entries(res)
    assert set(e) == {"smaller", "bigger"} and e["bigger"] == []
    (only,) = e["smaller"]
    assert only["extra"] == "budget <= 0.9: pass"


def test_junit_counts_missing_as_error(tmp_path):
    r = acc_results()
    r.metrics = r.metrics[:1]
    res = evaluate(r, parse_budgets(ACC_TOML), None)
    path = write_junit(res, tmp_path / "j.xml")
    text = path.read_text()
    # band agreement, mae vs baseline and map50 vs baseline lack their metric
    assert text.count("<error") == 3 and text.count("<failure") == 0
    write_benchmark_json(res, tmp_path / "b.json")
    assert len(json.loads((tmp_path / "b.json").read_text())) == 1


def test_cli_missing_metric_is_exit_2(tmp_path):
    (tmp_path / "budgets.toml").write_text(RATIO_TOML)
    path = ratio_results((5.3, [5.2, 5.4])).save(tmp_path / "r.json")
    r = Results()
    timing(r, "det=int8", 5.3, [5.2, 5.4])
    path = r.save(tmp_path / "r.json")
    with pytest.raises(ResultsError, match=r"cpu\.detector\.latency_ms\.p50 \[det=fp32\] "
                                           r"\(threads=2\) \(budget 'det ratio'\)"):
        cli(_args(tmp_path, path))
    assert main(["gate", str(path), "--budgets", str(tmp_path / "budgets.toml"),
                 "--baseline", str(tmp_path / "none.json")]) == 2


def test_cli_missing_baseline_says_how_to_fix(tmp_path):
    (tmp_path / "budgets.toml").write_text(ACC_TOML)
    path = acc_results().save(tmp_path / "r.json")
    with pytest.raises(ResultsError, match=r"baseline\.json not found.*--update-baseline"):
        cli(_args(tmp_path, path))
    # no budget needs the baseline: no baseline file is fine
    (tmp_path / "budgets.toml").write_text(RATIO_TOML)
    path = ratio_results((5.3, [5.2, 5.4])).save(tmp_path / "r.json")
    assert cli(_args(tmp_path, path)) == 0


def test_update_baseline_writes_and_diffs(tmp_path, capsys):
    (tmp_path / "budgets.toml").write_text(ACC_TOML)
    first = acc_results(mae=1.20)
    timing(first, "det=int8", 5.3, [5.2, 5.4], samples=[5.2, 5.3, 5.4])
    p1 = first.save(tmp_path / "r1.json")
    assert cli(_args(tmp_path, p1, update_baseline=True)) == 0
    out = capsys.readouterr().out
    assert "created" in out and "(absent)" in out
    base = Results.load(tmp_path / "baseline.json")
    assert base.get("acc.e2e.hb_mae", "det=int8,est=int8").value == 1.20
    assert all("samples" not in m.params for m in base.metrics)

    p2 = acc_results(mae=1.25).save(tmp_path / "r2.json")
    assert cli(_args(tmp_path, p2, update_baseline=True)) == 0
    out = capsys.readouterr().out
    assert "updated" in out and "1.2" in out and "1.25" in out and "(removed)" in out
    assert cli(_args(tmp_path, p2)) == 0  # now gates against the new baseline

    # refuses a baseline that lacks what baseline budgets compare against
    bad = Results()
    bad.add("acc.e2e.hb_mae_delta", "det=int8,est=int8", 0.01, "g/dL", "lower")
    with pytest.raises(ResultsError, match="refusing to write"):
        cli(_args(tmp_path, bad.save(tmp_path / "r3.json"), update_baseline=True))


def test_bad_toml_and_bad_results_exit_2(tmp_path):
    res = acc_results().save(tmp_path / "r.json")
    (tmp_path / "budgets.toml").write_text("[[budget]\n")
    assert main(["gate", str(res), "--budgets", str(tmp_path / "budgets.toml")]) == 2
    (tmp_path / "wrong.json").write_text(json.dumps({"schema": "other/1", "metrics": []}))
    (tmp_path / "budgets.toml").write_text(ACC_TOML)
    assert main(["gate", str(tmp_path / "wrong.json"), "--budgets",
                 str(tmp_path / "budgets.toml")]) == 2


def test_markdown_appends_to_github_step_summary(tmp_path, monkeypatch):
    (tmp_path / "budgets.toml").write_text(RATIO_TOML)
    path = ratio_results((5.3, [5.2, 5.4])).save(tmp_path / "r.json")
    summary = tmp_path / "step_summary.md"
    summary.write_text("# earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert cli(_args(tmp_path, path, md=str(summary))) == 0
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and "## hemoedge gate PASS" in text


def test_a_second_file_cannot_override_a_failing_metric(tmp_path):
    """Shards complete each other; a file repeating a metric with another value is refused."""
    (tmp_path / "budgets.toml").write_text(
        'schema = "hemoedge.budgets/1"\n[[budget]]\nname = "mae delta"\nkind = "absolute"\n'
        'metric = "acc.e2e.hb_mae_delta"\nvariant = "det=int8,est=int8"\nmax = 0.05\n')
    fail, override, shard = Results(), Results(), Results()
    fail.add("acc.e2e.hb_mae_delta", "det=int8,est=int8", 0.2, "g/dL", "lower")
    override.add("acc.e2e.hb_mae_delta", "det=int8,est=int8", 0.0, "g/dL", "lower")
    shard.add("acc.e2e.hb_mae_delta", "det=int8,est=int8", 0.2, "g/dL", "lower")  # same figure
    shard.add("size.detector.bytes", "det=int8", 3.4e6, "bytes", "lower")
    paths = [str(x.save(tmp_path / f"{n}.json")) for n, x in
             (("fail", fail), ("override", override), ("shard", shard))]
    budgets = ["--budgets", str(tmp_path / "budgets.toml"), "--baseline", str(tmp_path / "no.json")]
    assert main(["gate", paths[0], *budgets]) == 1
    assert main(["gate", paths[0], paths[1], *budgets]) == 2  # not 0: the override is refused
    with pytest.raises(ResultsError, match=r"conflicts with 0\.2"):
        merge([paths[0], paths[1]])
    merged = merge([paths[0], paths[2]])  # an identical repeat is kept once
    assert len(merged.find("acc.e2e.hb_mae_delta")) == 1 and len(merged.metrics) == 2
    assert main(["gate", paths[0], paths[2], *budgets]) == 1
