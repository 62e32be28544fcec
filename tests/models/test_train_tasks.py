"""Estimator recipes beyond the default: input size, the anaemia classification head, starting
from another checkpoint's backbone; fp16 checkpoints that cannot hold a tensor."""

import numpy as np
import pytest
import torch

from hemoedge.data import yakimov
from hemoedge.errors import HemoedgeError
from hemoedge.models import ckpt_io, estimator
from hemoedge.models.registry import create
from hemoedge.models.train import _features, crop_tensors, train_estimator

SMALL = "mobilenetv3_small_050"


@pytest.fixture(scope="module")
def parts(tiny_data):
    return yakimov.split(yakimov.load(tiny_data).records, seed=0)


def test_classification_head_outputs_the_anaemia_logit(parts, tmp_path):
    # threshold 13 g/dL so that the 12-patient set holds both classes
    recipe = create("tiny", backbone=SMALL, est_size=192, task="classification",
                    anaemia_threshold=13.0)
    path, metrics = train_estimator(recipe, parts, tmp_path, seed=0)
    assert {"logistic_c", "val_patient_auroc", "val_patient_sensitivity"} <= set(metrics)
    model, info = estimator.load(path)
    assert info == {"backbone": SMALL, "cnn_dim": 1024, "input_size": 192,
                    "task": "classification", "anaemia_threshold_gdl": 13.0}
    x, y, _ = crop_tensors(parts["train"], 192)
    with torch.no_grad():
        logit = model(torch.from_numpy(x))[:, 0].numpy()
    anaemic = y < 13.0
    assert anaemic.any() and (~anaemic).any()
    # the head was fit on these crops: it ranks them (AUROC on its own training set)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(anaemic, logit) > 0.8
    assert np.isfinite(model.head.weight.detach().numpy()).all()


def test_est_init_with_zero_epochs_reuses_the_backbone(parts, tmp_path):
    first, _ = train_estimator(create("tiny", backbone=SMALL), parts, tmp_path / "a", seed=0)
    recipe = create("tiny", backbone=SMALL, task="classification", anaemia_threshold=13.0,
                    est_init=str(first), est_epochs=0)
    second, metrics = train_estimator(recipe, parts, tmp_path / "b", seed=0)
    assert metrics["fine_tune_steps"] == 0
    a, _ = estimator.load(first)
    b, _ = estimator.load(second)
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x, _, _ = crop_tensors(parts["val"], 224)
    assert np.array_equal(_features(a, x[:4]), _features(b, x[:4]))
    with pytest.raises(HemoedgeError, match="wants"):
        train_estimator(create("tiny", backbone="lcnet_050", est_init=str(first)), parts,
                        tmp_path / "c", seed=0)


def test_recipe_validation():
    with pytest.raises(HemoedgeError, match="threshold"):
        create("tiny", anaemia_threshold=0.0)
    with pytest.raises(HemoedgeError, match="multiples of 32"):
        create("tiny", est_size=200)
    with pytest.raises(HemoedgeError, match="task"):
        create("tiny", task="segmentation")


def test_fp16_checkpoint_keeps_tensors_fp16_cannot_hold():
    m = torch.nn.BatchNorm2d(2)
    m.running_var.fill_(1e6)  # beyond fp16's 65504
    m.weight.data.fill_(0.5)
    sd = ckpt_io.half_state_dict(m)
    assert sd["running_var"].dtype == torch.float32 and torch.isfinite(sd["running_var"]).all()
    assert sd["weight"].dtype == torch.float16
