import pytest
import torch

from hemoedge.errors import CheckpointError, HemoedgeError
from hemoedge.models import detector, estimator
from hemoedge.models.registry import create, names


def test_registry_lists_valid_names_on_error():
    assert "default" in names()
    assert create("default").backbone == "mobilenetv4_conv_small"
    assert create("default", backbone="efficientnet_b0").backbone == "efficientnet_b0"
    with pytest.raises(HemoedgeError, match="unknown recipe 'nope'; valid recipes: default"):
        create("nope")


def test_estimator_seed_format_round_trip(tmp_path):
    torch.manual_seed(0)
    model = estimator.Estimator().eval()
    path = estimator.save(model, tmp_path / "e.pth", half=False)
    raw = torch.load(path, weights_only=True)
    assert raw["backbone"] == "mobilenetv4_conv_small" and raw["cnn_dim"] == 1280
    assert all(k.startswith(("backbone.", "head.")) for k in raw["model_state_dict"])
    loaded, info = estimator.load(path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert info == {"backbone": "mobilenetv4_conv_small", "cnn_dim": 1280, "input_size": 224,
                    "task": "regression"}


def test_estimator_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        estimator.load(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        estimator.load(tmp_path / "text.pt")
    torch.save({"weights": {}}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match=r"missing \['backbone', 'cnn_dim', 'model_state_dict'\]"):
        estimator.load(tmp_path / "wrong.pt")
    good = estimator.save(estimator.Estimator(), tmp_path / "good.pt")
    data = good.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt"):
        estimator.load(tmp_path / "cut.pt")
    torch.save({"backbone": "no_such_net", "cnn_dim": 8, "model_state_dict": {}}, tmp_path / "b.pt")
    with pytest.raises(CheckpointError, match="unknown timm backbone 'no_such_net'"):
        estimator.load(tmp_path / "b.pt")


def test_detector_round_trip_and_export_mode(random_checkpoints):
    model, info = detector.load(random_checkpoints[0])
    assert info["names"] == ["nail", "skin"] and info["format"] == "hemoedge.detector/1"
    model = detector.set_export_mode(model)
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 320, 320))
    assert tuple(y.shape) == (1, 6, 2100)


def test_detector_rejects_other_torch_files(tmp_path):
    torch.save({"something": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="neither a hemoedge detector nor an ultralytics"):
        detector.load(tmp_path / "x.pt")


class _Payload:
    """Unpickling this object creates a file: what a hostile checkpoint would do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_detector_is_refused_and_never_unpickled(tmp_path):
    import torch

    from hemoedge.cli import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        detector.load(evil)
    assert not marker.exists()
    out = tmp_path / "art"
    assert main(["export", "--detector", str(evil), "--out", str(out)]) == 2
    assert not marker.exists() and not out.exists()
