import math

import pytest

from hemoedge import anaemia


def test_metrics_by_hand():
    # Hb: 3 anaemic (< 12), 3 not; logits: two anaemic caught, one missed, one false alarm
    hb = [8.0, 10.0, 11.9, 12.0, 13.0, 15.0]
    logits = [2.0, 0.5, -0.2, 0.1, -1.0, -3.0]
    m = anaemia.metrics(logits, hb)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 / 3)
    # AUROC: of the 9 (anaemic, healthy) pairs, only (-0.2 vs 0.1) is ranked wrongly
    assert m["auroc"] == pytest.approx(8 / 9)


def test_threshold_is_configurable_and_one_class_gives_nan_auroc():
    m = anaemia.metrics([1.0, -1.0], [12.5, 14.0], threshold=13.0)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0
    one = anaemia.metrics([1.0, 2.0], [14.0, 15.0])
    assert math.isnan(one["auroc"]) and math.isnan(one["sensitivity"])


def test_agreement():
    assert anaemia.agreement([1.0, -1.0, 0.0], [0.5, 1.0, -0.1]) == pytest.approx(1 / 3)


def test_one_threshold_in_python_and_in_the_app():
    """The anaemia threshold is hemoedge.names.ANAEMIA_THRESHOLD_GDL in Python; the app has no
    number of its own: the build writes hemoedge.severity's thresholds into models.json."""
    import re
    from pathlib import Path

    from hemoedge import names, severity
    from hemoedge.models.registry import Recipe

    t = names.ANAEMIA_THRESHOLD_GDL
    assert severity.ANAEMIA_THRESHOLD["female"] is t and severity.ANAEMIA_THRESHOLD[None] is t
    assert severity.who_category(t - 0.01) == "mild" and severity.who_category(t) == "none"
    assert Recipe.__dataclass_fields__["anaemia_threshold"].default is t
    who = severity.who_thresholds()
    assert who["anaemiaBelow"] == {"female": t, "male": 13.0, "": t}
    web = Path(__file__).resolve().parents[1] / "webapp"
    for f in [web / "index.html", *sorted((web / "src").glob("*.js"))]:
        text = re.sub(r"//.*|<!--.*?-->", "", f.read_text())
        assert not re.search(r"\b(8|11|12|13)(\.0)? ?g/dL|\b(8|11|12|13)\.0\b", text), f.name
