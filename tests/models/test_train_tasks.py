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


def _answer_spread(model, crops, seed=5):
    """Mean |answer(crop A) - answer(crop B)| over two independent jittered draws of each nail."""
    model.eval()
    rng = np.random.default_rng(seed)
    a, b = crops.draw(rng), crops.draw(rng)
    with torch.no_grad():
        return float((model(torch.from_numpy(a)) - model(torch.from_numpy(b))).abs().mean())


def test_consistency_training_makes_the_answer_follow_the_box_less(parts):
    from dataclasses import replace

    from hemoedge.models.train import CropSampler, fine_tune

    plain = create("tiny", backbone=SMALL, est_epochs=3, consistency=0.0,
                   feature_consistency=0.0)
    spread = {}
    for name, recipe in (("plain", plain),
                         ("consistent", replace(plain, consistency=1000.0,
                                                feature_consistency=10.0))):
        torch.manual_seed(0)
        model = estimator.Estimator(SMALL)
        crops = CropSampler(parts["train"], 224, recipe.crop_jitter)
        tuned = fine_tune(model, recipe, crops, seed=0)
        assert tuned["paired_crops"] == (name == "consistent")
        spread[name] = _answer_spread(model, crops)
    assert spread["consistent"] < 0.5 * spread["plain"], spread


def test_fine_tuning_from_a_regression_checkpoint_starts_from_its_answers(parts, tmp_path):
    """Its head answers in g/dL; fine-tuning works in standardised Hb, so the head is rescaled
    (w / sd, (b - mu) / sd) before the first step instead of starting from a shock."""
    from hemoedge.models.train import CropSampler, fine_tune

    first, _ = train_estimator(create("tiny", backbone=SMALL), parts, tmp_path, seed=0)
    model, _ = estimator.load(first)
    w, b = model.head.weight.detach().clone(), float(model.head.bias)
    crops = CropSampler(parts["train"], 224, create("tiny").crop_jitter)
    # a learning rate too small to move anything: only the head's rescaling shows
    fine_tune(model, create("tiny", backbone=SMALL, est_lr=1e-12), crops, seed=0,
              head_in_gdl=True)
    mu, sd = float(crops.hb.mean()), float(crops.hb.std() + 1e-6)
    torch.testing.assert_close(model.head.weight.detach(), w / sd, rtol=1e-4, atol=1e-7)
    assert float(model.head.bias) == pytest.approx((b - mu) / sd, rel=1e-4)


def test_consistent_ridge_is_ridge_without_the_penalty_and_steadier_with_it():
    from sklearn.linear_model import Ridge

    from hemoedge.models.train import consistent_ridge

    rng = np.random.default_rng(0)
    n, dim = 60, 12
    signal = rng.normal(size=(n, dim))
    y = signal[:, 0] * 2.0 + 10.0
    # three crops of each nail: the same signal, plus a crop-dependent wobble on every feature
    f = np.concatenate([signal + 0.5 * rng.normal(size=(n, dim)) * (k > 0) for k in range(3)])
    yy = np.tile(y, 3)
    w0, b0 = consistent_ridge(f, yy, alpha=3.0, consistency=0.0, copies=3)
    ref = Ridge(alpha=3.0).fit(f, yy)
    np.testing.assert_allclose(w0, ref.coef_, rtol=1e-6, atol=1e-9)
    assert b0 == pytest.approx(ref.intercept_)

    def spread(w):  # mean |answer(copy k) - answer(exact)| over the jittered copies
        blocks = f.reshape(3, n, dim) @ w
        return float(np.abs(blocks[1:] - blocks[0]).mean())

    w30, _ = consistent_ridge(f, yy, alpha=3.0, consistency=30.0, copies=3)
    assert spread(w30) < 0.5 * spread(w0)
