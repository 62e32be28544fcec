import numpy as np
import pytest
import torch

from hemoedge.data import yakimov
from hemoedge.models import estimator
from hemoedge.models.registry import create
from hemoedge.models.train import _features, crop_tensors, train_estimator


def test_estimator_training_folds_the_ridge_head(tiny_data, tmp_path):
    parts = yakimov.split(yakimov.load(tiny_data).records, seed=0)
    # the head on exact crops only, so that a Ridge fit here can reproduce it
    recipe = create("tiny", head_jitter_copies=0)
    path, metrics = train_estimator(recipe, parts, tmp_path, seed=0)
    assert set(metrics) >= {"val_crop_mae", "val_patient_mae", "ridge_alpha", "train_crops"}
    assert metrics["head_fit_crops"] == metrics["train_crops"]
    assert metrics["ridge_alpha"] in recipe.ridge_alphas
    model, info = estimator.load(path)
    assert info["input_size"] == 224
    # the folded Linear reproduces Ridge on the frozen features (fp16 storage: loose tolerance)
    x, y, _ = crop_tensors(parts["train"], 224)
    from sklearn.linear_model import Ridge

    feats = _features(model, x)
    ridge = Ridge(alpha=metrics["ridge_alpha"]).fit(feats, y)
    with torch.no_grad():
        pred = model(torch.from_numpy(x))[:, 0].numpy()
    assert np.abs(pred - ridge.predict(feats)).max() == pytest.approx(0, abs=0.05)


def test_estimator_head_is_fit_on_jittered_copies_too(tiny_data, tmp_path):
    parts = yakimov.split(yakimov.load(tiny_data).records, seed=0)
    recipe = create("tiny", est_epochs=0)
    assert recipe.crop_jitter.active and recipe.head_jitter_copies == 2
    _, metrics = train_estimator(recipe, parts, tmp_path, seed=0)
    assert metrics["head_fit_crops"] == 3 * metrics["train_crops"]
    assert metrics["crop_jitter"] == recipe.crop_jitter.describe()
