"""Hb bands. Two different things, kept apart on purpose:

* SEVERITY_BANDS: the four bands the suite reports per-band error in:
  <8, 8-11, 11-13, >=13 g/dL.
* who_category(): the WHO anaemia category the app shows (WHO 2011, non-pregnant adults):
  severe < 8, moderate 8-10.9, mild 11 to below the sex-specific threshold, none at or above it.
  Threshold 12 g/dL for women (and the default when sex is not given), 13 g/dL for men.
"""

from __future__ import annotations

from hemoedge.names import ANAEMIA_THRESHOLD_GDL

SEVERITY_BANDS = (("<8", 0.0, 8.0), ("8-11", 8.0, 11.0), ("11-13", 11.0, 13.0), (">=13", 13.0, 99.0))
# g/dL; women's threshold (the default) is the suite's one anaemia threshold
ANAEMIA_THRESHOLD = {"female": ANAEMIA_THRESHOLD_GDL, "male": 13.0, None: ANAEMIA_THRESHOLD_GDL}
SEVERE_BELOW_GDL = 8.0
MODERATE_BELOW_GDL = 11.0


def who_thresholds() -> dict:
    """The WHO category's thresholds as the app reads them from its build manifest (`who` in
    models.json; webapp/src/aggregate.js has no numbers of its own). Sex '' = not given."""
    return {"severeBelow": SEVERE_BELOW_GDL, "moderateBelow": MODERATE_BELOW_GDL,
            "anaemiaBelow": {("" if k is None else k): v for k, v in ANAEMIA_THRESHOLD.items()}}


def severity_band(hb_gdl: float) -> str:
    for name, lo, hi in SEVERITY_BANDS:
        if lo <= hb_gdl < hi:
            return name
    return SEVERITY_BANDS[0][0] if hb_gdl < 0 else SEVERITY_BANDS[-1][0]


def who_category(hb_gdl: float, sex: str | None = None) -> str:
    if sex not in ANAEMIA_THRESHOLD:
        raise ValueError(f"sex must be 'female', 'male' or None, got {sex!r}")
    if hb_gdl < SEVERE_BELOW_GDL:
        return "severe"
    if hb_gdl < MODERATE_BELOW_GDL:
        return "moderate"
    if hb_gdl < ANAEMIA_THRESHOLD[sex]:
        return "mild"
    return "none"
