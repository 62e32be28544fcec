from __future__ import annotations

from argparse import Namespace

import pytest
from report_fixtures import make_results

from hemoedge.errors import ResultsError
from hemoedge.report.choose import Constraints, choose, cli, cost, covers, parse_variant
from hemoedge.report.results import Results


def test_variant_strings_are_opaque_pairs():
    assert parse_variant("det=int8,est=fp32,backbone=efficientnet_b0") == {
        "det": "int8", "est": "fp32", "backbone": "efficientnet_b0"}
    assert covers("det=int8", "det=int8,est=fp32")
    assert covers("est=fp32,backbone=b0", "det=int8,est=fp32,backbone=b0")
    assert not covers("est=fp32,backbone=b1", "det=int8,est=fp32,backbone=b0")
    assert not covers("det=int8,est=fp32", "det=int8")


def test_web_picks_int8_detector_fp32_estimator(results):
    ch = choose(results, Constraints(target="web", max_hb_mae_delta=0.05))
    assert ch.ok and ch.recommended.variant == "det=int8,est=fp32"
    assert ch.recommended.frame_ms == pytest.approx(41.2)
    assert ch.recommended.threads == 2
    assert ch.recommended.bytes == pytest.approx(13.4e6)
    assert ch.recommended.hb_source == "e2e"
    assert [c.variant for c in ch.runners_up[:2]] == ["det=int8,est=fp16", "det=int8,est=int8"]
    assert cost(ch.runners_up[0], ch.recommended) == "+0.5 ms/frame, +0.001 g/dL MAE, -5.00 MB"
    assert len(ch.runners_up) == 8 and not ch.rejected


def test_cpu_target_and_accuracy_constraint(results):
    ch = choose(results, Constraints(target="cpu", max_hb_mae_delta=0.05))
    assert ch.recommended.variant == "det=int8,est=int8"  # natively int8 helps both models
    ch = choose(results, Constraints(target="cpu", max_hb_mae_delta=0.01))
    assert ch.recommended.variant == "det=int8,est=fp16"
    assert {c.variant for c in ch.rejected} == {
        "det=int8,est=int8", "det=fp32,est=int8", "det=fp16,est=int8"}
    assert all(c.violations == ["--max-hb-mae-delta"] for c in ch.rejected)


def test_max_bytes(results):
    ch = choose(results, Constraints(target="cpu", max_bytes=7e6))
    assert ch.recommended.variant == "det=int8,est=int8" and not ch.runners_up


def test_nothing_satisfies_names_binding_constraint(results):
    ch = choose(results, Constraints(target="web", max_frame_ms=30))
    assert not ch.ok and ch.binding == ["--max-frame-ms"]
    assert "--max-frame-ms 41.200 would admit det=int8,est=fp32" in ch.reasons[0]


def test_two_binding_constraints(results):
    # det=int8,est=fp32: 41.2 ms but 13.4 MB; det=int8,est=int8: 6.2 MB but 43.0 ms
    ch = choose(results, Constraints(target="web", max_frame_ms=42, max_bytes=7e6))
    assert not ch.ok
    assert ch.binding == ["--max-bytes", "--max-frame-ms"]


def test_falls_back_to_estimator_only_accuracy_and_says_so(results):
    results.metrics = [m for m in results.metrics if not m.name.startswith("acc.e2e.")]
    ch = choose(results, Constraints(target="web"))
    assert ch.recommended.hb_source == "est-only"
    assert ch.recommended.hb_mae_delta == pytest.approx(0.0)  # est=fp32
    assert any("estimator-only acc.hb_mae_delta" in n for n in ch.notes)


def test_prefers_two_threads_else_best_available(results):
    results.metrics = [m for m in results.metrics if not (
        m.name == "web.frame_ms.p50" and m.variant == "det=int8,est=fp32"
        and m.params.get("threads") == 2)]
    ch = choose(results, Constraints(target="web"))
    cand = next(c for c in [ch.recommended, *ch.runners_up] if c.variant == "det=int8,est=fp32")
    assert cand.threads == 1 and cand.frame_ms == pytest.approx(40.6 + 15.4 + 6.0)
    assert any("used threads=1" in n for n in ch.notes)


def test_backbone_variants_most_specific_size_wins():
    r = Results()
    v = "det=int8,est=fp32,backbone=efficientnet_b0"
    r.add("web.frame_ms.p50", v, 50.0, "ms", "lower", threads=2)
    r.add("acc.e2e.hb_mae_delta", v, 0.01, "g/dL", "lower")
    r.add("size.detector.bytes", "det=int8", 3.4e6, "bytes", "lower")
    r.add("size.estimator.bytes", "est=fp32", 10.0e6, "bytes", "lower")  # other backbone
    r.add("size.estimator.bytes", "est=fp32,backbone=efficientnet_b0", 21.0e6, "bytes", "lower")
    r.add("size.estimator.bytes", "est=fp32,backbone=mobilenetv4", 9.0e6, "bytes", "lower")
    ch = choose(r, Constraints(target="web"))
    assert ch.recommended.variant == v
    assert ch.recommended.bytes == pytest.approx(24.4e6)


def test_no_frame_metrics_is_bad_input():
    with pytest.raises(ResultsError, match=r"no cpu\.frame_ms\.p50 metrics"):
        choose(Results(), Constraints(target="cpu"))
    with pytest.raises(ResultsError, match=r"no web\.frame_ms\.p50 metrics.*bench web"):
        choose(make_results(web=False), Constraints(target="web"))
    with pytest.raises(ResultsError, match="--target must be one of"):
        Constraints(target="gpu")


def test_cli_exit_codes(tmp_path, capsys):
    path = make_results().save(tmp_path / "results.json")
    args = Namespace(results=str(path), target="web", max_frame_ms=None,
                     max_hb_mae_delta=0.05, max_bytes=None)
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "recommended: det=int8,est=fp32" in out and "runners-up" in out
    args.max_frame_ms = 30.0
    assert cli(args) == 1
    out = capsys.readouterr().out
    assert "nothing satisfies the constraints; binding: --max-frame-ms" in out


def test_missing_accuracy_is_named_not_guessed(results):
    results.metrics = [m for m in results.metrics if not m.name.startswith("acc.")]
    ch = choose(results, Constraints(target="cpu"))
    assert not ch.ok and ch.binding == ["--max-hb-mae-delta"]
    assert ch.reasons[0] == "--max-hb-mae-delta cannot be met: no pairing has that figure"
    assert "run `hemoedge eval ART --results R`" in ch.reasons[1]
    # without an accuracy constraint the fastest pairing is recommended anyway
    assert choose(results, Constraints(target="cpu", max_hb_mae_delta=None)).ok
