"""Anaemia classification: the label, the decision and its metrics, in one place.

anaemic = measured Hb below a threshold (WHO: 12 g/dL for non-pregnant women; configurable).
A classification estimator outputs a logit; the decision is logit >= 0 (probability 0.5).
"""

from __future__ import annotations

import numpy as np

from hemoedge.names import ANAEMIA_THRESHOLD_GDL

WHO_THRESHOLD_GDL = ANAEMIA_THRESHOLD_GDL
METRICS = ("accuracy", "sensitivity", "specificity", "f1", "auroc")


def decisions(logits) -> np.ndarray:
    return (np.asarray(logits, np.float64) >= 0).astype(int)


def agreement(a, b) -> float:
    """Share of cases whose decision is the same under logits a and b."""
    if not len(a):
        return float("nan")
    return float(np.mean(decisions(a) == decisions(b)))


def metrics(logits, hb, threshold: float = WHO_THRESHOLD_GDL) -> dict[str, float]:
    """accuracy, sensitivity, specificity, F1, AUROC of logits against Hb < threshold
    (anaemic = positive; decision at logit >= 0, i.e. probability 0.5). scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

    s, y = np.asarray(logits, np.float64), (np.asarray(hb, np.float64) < threshold).astype(int)
    pred = decisions(s)
    both = 0 < y.sum() < len(y)
    return {"accuracy": float(accuracy_score(y, pred)),
            "sensitivity": float(recall_score(y, pred, zero_division=np.nan)) if y.any()
            else float("nan"),
            "specificity": float(recall_score(1 - y, 1 - pred, zero_division=np.nan))
            if (1 - y).any() else float("nan"),
            "f1": float(f1_score(y, pred, zero_division=0.0)),
            "auroc": float(roc_auc_score(y, s)) if both else float("nan")}


