"""The one results merge (report/results.py): a stage re-run replaces its figures, disjoint
figures merge, files of one run that disagree are refused."""

import pytest

from hemoedge.errors import ResultsError
from hemoedge.report.results import Results, append_stage, merge, merge_stage


def _res(*metrics, env=None, cmd=None):
    r = Results(env=dict(env or {}))
    for name, variant, value, params in metrics:
        r.add(name, variant, value, **params)
    if cmd:
        r.add_command(cmd)
    return r


def test_a_rerun_replaces_and_disjoint_figures_stay(tmp_path):
    p = tmp_path / "r.json"
    merge_stage(p, _res(("cpu.x.p50", "det=int8", 1.0, {"threads": 1, "samples": [1.0]}),
                        ("cpu.x.p50", "det=int8", 2.0, {"threads": 2}),
                        env={"cpu": "a", "keep": 1}, cmd="hemoedge bench cpu"))
    merge_stage(p, _res(("cpu.x.p50", "det=int8", 3.0, {"threads": 1, "samples": [3.0]}),
                        env={"cpu": "b"}, cmd="hemoedge bench cpu"))
    r = Results.load(p)
    got = sorted((m.params["threads"], m.value) for m in r.metrics)
    assert got == [(1, 3.0), (2, 2.0)]  # threads=1 replaced (samples differ), threads=2 kept
    assert r.env == {"cpu": "b", "keep": 1}  # the new run's machine wins key by key
    assert r.commands == ["hemoedge bench cpu"]


def test_replaces_prefix_drops_what_a_rerun_no_longer_writes(tmp_path):
    p = tmp_path / "r.json"
    merge_stage(p, _res(("acc.a", "est=fp32", 1.0, {}), ("acc.b", "est=fp32", 1.0, {}),
                        ("parity.x", "est=fp32", 1.0, {})))
    merge_stage(p, _res(("acc.a", "est=fp32", 2.0, {})), replaces="acc.")
    assert sorted((m.name, m.value) for m in Results.load(p).metrics) == [
        ("acc.a", 2.0), ("parity.x", 1.0)]


def test_append_stage_is_the_same_merge():
    assert append_stage is merge_stage


def test_files_of_one_run_merge_and_conflicts_are_refused(tmp_path):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    _res(("m", "det=int8", 1.0, {"threads": 1})).save(a)
    _res(("m", "det=int8", 2.0, {"threads": 2}), ("m", "det=int8", 1.0, {"threads": 1})).save(b)
    assert len(merge([a, b]).metrics) == 2
    _res(("m", "det=int8", 9.0, {"threads": 1})).save(c)
    with pytest.raises(ResultsError, match="conflicts"):
        merge([a, c])


def test_a_web_rerun_replaces_its_pooled_timings(tmp_path):
    """bench web records per-repeat medians and their spread next to a pooled timing; they
    change on every re-run, so they must not make a re-run's figure a new one."""
    p = tmp_path / "r.json"
    merge_stage(p, _res(("web.detector.latency_ms.p50", "det=int8", 11.0,
                         {"threads": 2, "repeats": [10.5, 11.5], "spread_pct": 9.1})))
    merge_stage(p, _res(("web.detector.latency_ms.p50", "det=int8", 12.0,
                         {"threads": 2, "repeats": [11.9, 12.2], "spread_pct": 2.5})))
    assert [m.value for m in Results.load(p).metrics] == [12.0]


def test_the_gate_baseline_matches_figures_the_way_a_rerun_does():
    from hemoedge.gate.baseline import baseline_diff
    old = _res(("web.x.p50", "det=int8", 11.0, {"threads": 2, "repeats": [11.0], "spread_pct": 0}))
    new = _res(("web.x.p50", "det=int8", 11.0, {"threads": 2, "repeats": [10.0, 12.0],
                                                "spread_pct": 18.2}))
    assert baseline_diff(old, new) == []


def test_a_web_rerun_replaces_a_figure_whose_outcome_params_changed(tmp_path):
    p = tmp_path / "r.json"
    merge_stage(p, _res(("web.first_visit_bytes", "det=int8,est=fp32", 14.2e6,
                         {"threads": 2, "values": [14.2e6] * 3, "requests": 25,
                          "fetched_twice": ["/sw.js"]})))
    merge_stage(p, _res(("web.first_visit_bytes", "det=int8,est=fp32", 14.1e6,
                         {"threads": 2, "values": [14.1e6] * 3, "requests": 24,
                          "fetched_twice": []})))
    assert [m.value for m in Results.load(p).metrics] == [14.1e6]
