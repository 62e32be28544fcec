"""hemoedge.names: the one vocabulary."""

from hemoedge import names
from hemoedge.names import Variant, parse_variant, role_variant, variant_name


def test_variant_round_trip():
    for text in ("det=int8,est=fp32", "det=int8", "est=fp16", "", "det=int8,est=fp32,backbone=x"):
        assert str(Variant.parse(text)) == text


def test_variant_parse_lenient_like_the_readers():
    assert parse_variant(" det=int8 , est=fp32 ") == {"det": "int8", "est": "fp32"}
    assert parse_variant("bare") == {"bare": ""}
    v = Variant.parse("det=int8,est=fp32")
    assert (v.det, v.est, v.get("backbone")) == ("int8", "fp32", None)
    assert Variant.parse("det=int8").covers(v) and not v.covers(Variant.parse("det=int8"))


def test_builders():
    assert variant_name("int8", "fp32") == "det=int8,est=fp32"
    assert variant_name(est="fp16") == "est=fp16" and variant_name() == ""
    assert str(Variant.of("int8", backbone="b")) == "det=int8,backbone=b"
    assert role_variant("detector", "int8") == "det=int8"
    assert names.cpu_latency("estimator") == "cpu.estimator.latency_ms.p50"
    assert names.parity_metric("detector", "fp16", "max_abs") == "parity.detector.fp16.max_abs"


def test_one_definition_everywhere():
    from hemoedge import anaemia, artifact, spec, sweep
    from hemoedge.report import results

    assert names.ANAEMIA_THRESHOLD_GDL == 12.0
    assert anaemia.WHO_THRESHOLD_GDL is names.ANAEMIA_THRESHOLD_GDL
    assert sweep.WHO_THRESHOLD is names.ANAEMIA_THRESHOLD_GDL
    assert spec.estimator_spec(task="classification").extra["anaemia_threshold_gdl"] == 12.0
    assert artifact.ROLES is names.ROLES and artifact.PRECISIONS is names.PRECISIONS
    assert results.variant_name is names.variant_name


def test_the_shipped_pairing_is_defined_once():
    from hemoedge.bench import web, webparity
    from hemoedge.cli import build_parser
    from hemoedge.gate.budgets import PACKAGED_BUDGETS, load_budgets

    assert variant_name(*names.SHIPPED) == names.SHIPPED_VARIANT
    assert web.TUNED == names.SHIPPED and names.SHIPPED in webparity.E2E_PAIRINGS
    args = build_parser().parse_args(["webapp", "build", "--out", "x"])
    assert args.variant == names.SHIPPED_VARIANT
    # the gate's pairing budgets are about the three end-to-end pairings only: the fp32
    # reference, the shipped one and the all-int8 one
    budgets = load_budgets(PACKAGED_BUDGETS)
    refs = [r for b in budgets for r in (b.ref, b.denominator) if r is not None]
    pairings = {r.variant for r in refs if "," in r.variant}
    assert pairings == {variant_name(*p) for p in webparity.E2E_PAIRINGS}
    assert sum(r.variant == names.SHIPPED_VARIANT for r in refs) >= 10


def test_bench_web_measures_the_shipped_pairing_by_default():
    from hemoedge.bench.web import default_pairings

    have = {"detector": ["fp32", "fp16", "int8"], "estimator": ["fp32", "fp16", "int8"]}
    assert default_pairings(have, quick=True) == [names.SHIPPED]
    full = default_pairings(have, quick=False)
    assert names.SHIPPED in full and ("fp32", "fp32") in full and len(full) == 5
    # without fp16 files: the nearest pairing, and no pairing the artifact does not hold
    have = {"detector": ["fp32", "int8"], "estimator": ["fp32", "int8"]}
    assert default_pairings(have, quick=True) == [("int8", "fp32")]
    assert len(default_pairings(have, quick=False)) == 4
