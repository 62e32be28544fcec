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


def test_choose_for_a_remote_device_ranks_by_its_model_timings(tmp_path, capsys):
    """A phone reached through --connect has no fake camera: bench web records its two models'
    session.run times only. `choose --device` sums them into the pairing's frame time (and says
    so), from that device's figures alone - never this machine's."""
    from hemoedge.cli import main

    r = make_results()
    phone = {"det=fp32": 90.0, "det=int8": 40.0, "est=fp32": 20.0, "est=int8": 35.0}
    for v, ms in phone.items():
        role = "detector" if v.startswith("det") else "estimator"
        r.add(f"web.{role}.latency_ms.p50", v, ms, "ms", "lower", threads=2, device="pixel-7")
    path = r.save(tmp_path / "results.json")
    assert main(["choose", str(path), "--device", "pixel-7"]) == 0
    out = capsys.readouterr().out
    assert "device pixel-7: frame time = detector + estimator session.run p50" in out
    # int8 estimator is slower on this phone: det=int8,est=fp32 at 40 + 20 ms
    assert "recommended: det=int8,est=fp32" in out and "60.0 ms per frame" in out
    assert main(["choose", str(path), "--device", "nokia"]) == 2  # no such device: exit 2
    assert "no web figures for device 'nokia'" in capsys.readouterr().err


def test_missing_accuracy_is_named_not_guessed(results):
    results.metrics = [m for m in results.metrics if not m.name.startswith("acc.")]
    ch = choose(results, Constraints(target="cpu"))
    assert not ch.ok and ch.binding == ["--max-hb-mae-delta"]
    assert ch.reasons[0] == "--max-hb-mae-delta cannot be met: no pairing has that figure"
    assert "run `hemoedge eval ART --results R`" in ch.reasons[1]
    # without an accuracy constraint the fastest pairing is recommended anyway
    assert choose(results, Constraints(target="cpu", max_hb_mae_delta=None)).ok


# --- backbone sweeps (fixture: tests/report/test_sweep_report.py) -----------------------------

from test_sweep_report import CLS_LABEL, SKIP_REASON, SKIPPED, make_sweep_results  # noqa: E402

from hemoedge.report.choose import format_choice  # noqa: E402

MNV4 = "backbone=mobilenetv4_conv_small,det=int8,est=fp32"
EFF_INT8 = "est=int8,backbone=efficientnet_b0,det=int8"


def test_sweep_picks_the_faster_backbone_that_meets_constraints():
    # mobilenetv4 fp32 pipeline: 30 ms, MAE 1.12 = best (efficientnet fp32 1.05) + 0.07
    ch = choose(make_sweep_results(fast_mae=1.12), Constraints(target="web"))
    assert ch.ok and ch.multi_backbone
    assert ch.recommended.variant == MNV4
    assert ch.recommended.backbone == "mobilenetv4_conv_small"
    assert ch.recommended.hb_mae == pytest.approx(1.12)
    assert ch.recommended.hb_mae_over_best == pytest.approx(0.07)
    assert ch.recommended.bytes == pytest.approx(13.4e6)
    assert not ch.rejected  # every regression pairing within 0.10 of the best and 0.05 delta
    # classification pairings are not candidates here, only a note
    variants = {x.variant for x in [ch.recommended, *ch.runners_up]}
    assert len(variants) == 6 and not any(CLS_LABEL in v for v in variants)
    assert any("3 pairing(s) of task classification not ranked" in n for n in ch.notes)
    runner = next(x for x in ch.runners_up if x.variant == EFF_INT8)
    # across backbones the cost compares absolute MAEs, not deltas against different references
    assert cost(runner, ch.recommended) == "+14.0 ms/frame, -0.050 g/dL MAE, -4.40 MB"
    assert any("Hb MAE 1.120 g/dL (e2e)" in r for r in ch.reasons)
    assert any(r.startswith("backbone mobilenetv4_conv_small (timm mobilenetv4_conv_small, "
                            "input 224, 2.50 M params)") for r in ch.reasons)


def test_sweep_rejects_fast_backbone_far_from_the_best():
    results = make_sweep_results()  # mobilenetv4 fp32 MAE 1.20 = best 1.05 + 0.15
    ch = choose(results, Constraints(target="web"))
    assert ch.recommended.variant == EFF_INT8  # 44 ms, MAE 1.07, delta 0.02
    assert ch.recommended.hb_mae_over_best == pytest.approx(0.02)
    rejected = {x.variant: x for x in ch.rejected}
    assert set(rejected) == {MNV4, "det=int8,est=fp16,backbone=mobilenetv4_conv_small",
                             "est=int8,backbone=mobilenetv4_conv_small,det=int8"}
    assert all(x.violations == ["--max-hb-mae-over-best"] for x in rejected.values())
    assert rejected[MNV4].hb_mae_over_best == pytest.approx(0.15)
    out = format_choice(ch)
    assert out.startswith("target web, task regression; constraints: --max-hb-mae-delta 0.05, "
                          "--max-hb-mae-over-best 0.1\n")
    assert (f"  {MNV4}: violates --max-hb-mae-over-best (30.0 ms, +0.000 g/dL, "
            "Hb MAE 1.200 g/dL (e2e), 13.40 MB)") in out
    assert "best backbone's fp32 pipeline (efficientnet_b0, 1.050 g/dL e2e), i.e. at most " \
        "1.150 g/dL" in out
    assert f"note: sweep entry {SKIPPED} skipped: {SKIP_REASON}" in out
    # the rule can be switched off, and an absolute limit used instead
    ch = choose(results, Constraints(target="web", max_hb_mae_over_best=None))
    assert ch.recommended.variant == MNV4
    ch = choose(results, Constraints(target="web", max_hb_mae_over_best=None, max_hb_mae=1.1))
    assert ch.recommended.variant == EFF_INT8
    assert {tuple(x.violations) for x in ch.rejected} == {("--max-hb-mae",)}
    # nothing under 1.0 g/dL: --max-hb-mae binds, naming the closest pairing and its MAE
    ch = choose(results, Constraints(target="web", max_hb_mae=1.0))
    assert not ch.ok and ch.binding == ["--max-hb-mae"]
    assert ch.reasons[0] == ("--max-hb-mae 1.0 binds: --max-hb-mae 1.050 would admit "
                             "backbone=efficientnet_b0,det=int8,est=fp32 "
                             "(Hb MAE 1.050 g/dL (e2e))")


def test_sweep_classification_task_uses_auroc_constraints():
    results = make_sweep_results()
    ch = choose(results, Constraints(target="web", task="classification"))
    # int8 is fastest (38 ms) but loses 0.03 AUROC > --max-auroc-drop 0.02
    assert ch.recommended.variant == f"backbone={CLS_LABEL},det=int8,est=fp32"
    assert ch.recommended.task == "classification"
    assert ch.recommended.auroc == pytest.approx(0.90)
    assert [x.variant for x in ch.rejected] == [f"est=int8,backbone={CLS_LABEL},det=int8"]
    assert ch.rejected[0].violations == ["--max-auroc-drop"]
    assert ch.rejected[0].auroc_drop == pytest.approx(0.03)
    assert not ch.multi_backbone  # one classification backbone: no cross-backbone rule
    assert ch.reasons[1] == ("AUROC 0.900 (e2e); AUROC drop vs fp32 +0.000 <= 0.02; "
                             "sensitivity 0.850, specificity 0.880")
    assert any("6 pairing(s) of task regression not ranked" in n for n in ch.notes)
    out = format_choice(ch)
    assert out.startswith("target web, task classification; constraints: "
                          "--max-auroc-drop 0.02\n")
    assert "violates --max-auroc-drop (38.0 ms, AUROC 0.870 (e2e), AUROC drop +0.030, " \
        "15.10 MB)" in out
    ch = choose(results, Constraints(target="web", task="classification", max_auroc_drop=0.05))
    assert ch.recommended.variant == f"est=int8,backbone={CLS_LABEL},det=int8"
    assert cost(ch.runners_up[0], ch.recommended) == "+2.0 ms/frame, +0.030 AUROC, +34.30 MB"
    ch = choose(results, Constraints(target="web", task="classification", min_auroc=0.95))
    assert not ch.ok and ch.binding == ["--min-auroc"]
    assert ch.reasons[0] == (f"--min-auroc 0.95 binds: --min-auroc 0.900 would admit "
                             f"backbone={CLS_LABEL},det=int8,est=fp32 (AUROC 0.900 (e2e))")


def test_task_with_no_pairings_is_bad_input(results):
    with pytest.raises(ResultsError, match=r"no classification pairing has web\.frame_ms\.p50"):
        choose(results, Constraints(task="classification"))
    with pytest.raises(ResultsError, match="--task must be one of"):
        Constraints(task="segmentation")


def test_single_artifact_output_unchanged(results):
    ch = choose(results, Constraints(target="web"))
    assert not ch.multi_backbone and not ch.notes
    assert all(x.backbone is None and x.task == "regression" and x.hb_mae_over_best is None
               for x in [ch.recommended, *ch.runners_up])
    out = format_choice(ch)
    assert out.splitlines()[:6] == [
        "target web; constraints: --max-hb-mae-delta 0.05",
        "recommended: det=int8,est=fp32",
        "  - fastest of 9 pairing(s) meeting every constraint on target web: 41.2 ms per frame "
        "(p50, threads=2)",
        "  - Hb MAE delta +0.006 g/dL (e2e) <= 0.05; Hb MAE 1.156 g/dL (e2e)",
        "  - per patient against the fp32 pipeline: p95 |dHb| 0.018 g/dL, severity band kept "
        "for 99.7% (acc.ref.e2e.abs_delta.p95)",
        "  - size 13.40 MB"]
    # a loose --max-hb-mae-over-best has nothing to compare against with one artifact
    tight = choose(results, Constraints(target="web", max_hb_mae_over_best=0.0))
    assert tight.recommended.variant == "det=int8,est=fp32" and not tight.rejected


def test_cli_sweep_shards_and_new_flags(tmp_path, capsys):
    full = make_sweep_results()
    entries = full.env["sweep"]["entries"]
    a = Results(env={"sweep": {**full.env["sweep"], "entries": entries[:2]}})
    b = Results(env={"sweep": {**full.env["sweep"], "entries": entries[2:]}})
    half = len(full.metrics) // 2
    a.metrics, b.metrics = full.metrics[:half], full.metrics[half:]
    paths = [str(a.save(tmp_path / "a.json")), str(b.save(tmp_path / "b.json"))]
    # flags cli.py may not define yet fall back to the Constraints defaults
    args = Namespace(results=paths, target="web", max_frame_ms=None, max_hb_mae_delta=0.05)
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert f"recommended: {EFF_INT8}" in out
    assert f"note: sweep entry {SKIPPED} skipped" in out  # entry from the second shard
    args.task = "classification"
    args.min_auroc = 0.95
    assert cli(args) == 1
    assert "binding: --min-auroc" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [-3.0, float("nan"), float("inf")])
def test_negative_or_non_finite_frame_time_is_invalid_input(results, bad):
    """A frame time below 0 or not finite is a broken results file, never a recommendation."""
    for m in results.metrics:
        if m.name == "web.frame_ms.p50" and m.variant == "det=int8,est=int8":
            m.value = bad
    with pytest.raises(ResultsError, match=r"web\.frame_ms\.p50 of det=int8,est=int8 "
                                           r"\(threads=\d\) is .*finite number of ms >= 0"):
        choose(results, Constraints(target="web"))


def test_max_first_visit_mb_uses_the_bench_web_wire_figure(results):
    # what bench web measures on the wire (compressed app + WASM + models)
    for v, b in (("det=int8,est=fp32", 14.3e6), ("det=int8,est=fp16", 9.9e6),
                 ("det=int8,est=int8", 8.1e6)):
        results.add("web.first_visit.bytes", v, b, "bytes", "lower", threads=2)
    ch = choose(results, Constraints(target="web", max_first_visit_mb=12))
    assert ch.ok and ch.recommended.variant == "det=int8,est=fp16"
    assert ch.recommended.first_visit_source == "wire"
    assert "first visit 9.90 MB (on the wire, bench web) <= 12 MB" in ch.reasons
    rej = {x.variant: x.violations for x in ch.rejected}
    assert "--max-first-visit-mb" in rej["det=int8,est=fp32"]
    ch = choose(results, Constraints(target="web", max_first_visit_mb=5))
    assert not ch.ok and "--max-first-visit-mb" in ch.binding
    assert any("--max-first-visit-mb 8.10 would admit det=int8,est=int8" in r
               for r in ch.reasons), ch.reasons


def test_max_first_visit_mb_falls_back_to_model_bytes(results, tmp_path, capsys):
    ch = choose(results, Constraints(target="web", max_first_visit_mb=9))
    assert ch.ok and ch.recommended.first_visit_source == "model files"
    assert ch.recommended.first_visit_mb <= 9
    path = results.save(tmp_path / "r.json")
    args = Namespace(results=str(path), target="web", max_frame_ms=None, max_bytes=None,
                     max_hb_mae_delta=0.05, max_first_visit_mb=9.0)
    assert cli(args) == 0
    assert "first visit" in capsys.readouterr().out


# --- device classes (bench web --device-class) -------------------------------------------------

def _with_mid_range_phone(results):
    """The fixture's web figures again as an emulated 4x slower device, 4x the frame time, with
    det=int8,est=int8 the only pairing whose frame still fits 100 ms there."""
    slow = []
    for m in results.metrics:
        if m.name.startswith("web."):
            from copy import deepcopy

            s = deepcopy(m)
            s.value = m.value * 4 if m.unit == "ms" else m.value
            if s.name == "web.frame_ms.p50" and s.variant == "det=int8,est=int8":
                s.value = 90.0
            s.params.update(device_class="mid-range-phone", cpu_slowdown=4.0)
            slow.append(s)
    results.metrics += slow
    return results


def test_choose_answers_for_a_device_class(results, tmp_path, capsys):
    path = _with_mid_range_phone(results).save(tmp_path / "r.json")
    args = dict(results=[str(path)], target="web", max_frame_ms=100.0, max_hb_mae_delta=0.05)
    assert cli(Namespace(**args, device_class="mid-range-phone")) == 0
    out = capsys.readouterr().out
    assert out.startswith("device class mid-range-phone (cpu slowdown 4x)")
    assert "recommended: det=int8,est=int8" in out
    # without --device-class: the desktop figures (no device_class param), never the emulated
    assert cli(Namespace(**args)) == 0
    out = capsys.readouterr().out
    assert out.startswith("device class desktop") and "recommended: det=int8,est=fp32" in out


def test_unknown_device_class_is_bad_input(results, tmp_path):
    path = _with_mid_range_phone(results).save(tmp_path / "r.json")
    with pytest.raises(ResultsError, match=r"no web figures for device class 'low-end-phone'.*"
                                           r"there are: desktop, mid-range-phone"):
        cli(Namespace(results=[str(path)], target="web", device_class="low-end-phone"))


def test_per_patient_fidelity_constraints(results):
    """--max-hb-shift / --min-band-agreement: what a mean hides, on the machine-independent
    reference figure where eval recorded one."""
    ch = choose(results, Constraints(target="web"))
    best = ch.recommended
    assert best.variant == "det=int8,est=fp32"
    assert best.fidelity_source == "acc.ref.e2e.abs_delta.p95"  # the reference before kernels
    assert any(r.startswith("per patient against the fp32 pipeline: p95 |dHb| ")
               for r in ch.reasons), ch.reasons
    results.add("acc.ref.e2e.abs_delta.p95", best.variant, 0.5, "g/dL", "lower")
    ch = choose(results, Constraints(target="web", max_hb_shift=0.2))
    assert ch.recommended.variant != best.variant
    assert "--max-hb-shift" in {x.variant: x.violations for x in ch.rejected}[best.variant]
    assert ch.recommended.hb_shift <= 0.2
    ch = choose(results, Constraints(target="web", min_band_agreement=1.0))
    assert ch.ok and ch.recommended.variant == "det=fp32,est=fp32"  # the only one with no delta
    assert ch.recommended.band_agreement == 1.0
    ch = choose(results, Constraints(target="web", max_hb_shift=1e-6,
                                     min_band_agreement=1.0, max_frame_ms=1.0))
    assert not ch.ok
    with pytest.raises(ResultsError, match="share of patients, 0-1"):
        Constraints(min_band_agreement=1.5)
