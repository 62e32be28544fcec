"""Ultralytics checkpoints load with weights_only and an explicit allow-list: a standard YOLOv8
detector needs no flag; a file naming any other global is refused (exit 2) and never runs."""

from __future__ import annotations

import os
from copy import deepcopy
from datetime import datetime
from pathlib import Path

import pytest
import torch

from hemoedge import offline
from hemoedge.errors import CheckpointError
from hemoedge.models import ckpt_io, detector


def _write_ultralytics_checkpoints(d: Path) -> dict[str, Path]:
    """A YOLOv8n nc=2 saved the three ways ultralytics writes a detector .pt (no download, no
    training): the trainer's last.pt (save_model's dict: fp16 EMA model - here carrying the
    training args as the trainer's IterableSimpleNamespace, as trainers that copy args onto the
    EMA write it - model None, optimizer state dict, train_args as vars(args), date,
    version...), best.pt after the trainer's final strip_optimizer, and Model.save of a YOLO
    built from the yaml."""
    offline.configure()
    from ultralytics import YOLO, __version__
    from ultralytics.cfg import get_cfg
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.torch_utils import strip_optimizer

    torch.manual_seed(0)
    yolo = YOLO(str(detector.YAML))
    model = yolo.model
    args = get_cfg(DEFAULT_CFG, {"model": "yolov8n-nc2.yaml", "data": "nails.yaml", "imgsz": 320,
                                 "epochs": 1})
    model.args = args  # the trainer sets model.args = self.args (an IterableSimpleNamespace)
    model.names = {0: "nail", 1: "skin"}
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the outputs differ per layer
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sum((p * p).sum() for p in model.parameters()).backward()  # one real step: state
    optimizer.step()
    last, best, saved = d / "last.pt", d / "best.pt", d / "saved.pt"
    torch.save({"epoch": 0, "best_fitness": 0.1,
                "stopper": {"best_fitness": 0.1, "best_epoch": 0}, "model": None,
                "ema": deepcopy(model).half(), "updates": 1, "modelopt": None,
                "optimizer": optimizer.state_dict(), "scaler": {}, "train_args": vars(args),
                "train_metrics": {"metrics/mAP50(B)": 0.1, "fitness": 0.1},
                "train_results": {}, "date": datetime.now().astimezone().isoformat(),
                "version": __version__, "license": "AGPL-3.0 (https://ultralytics.com/license)",
                "docs": "https://docs.ultralytics.com"}, last)
    strip_optimizer(last, str(best))
    model.names = {0: "nail", 1: "skin"}
    yolo.save(saved)
    return {"last": last, "best": best, "saved": saved}


@pytest.fixture(scope="module")
def ul_ckpts(tmp_path_factory) -> dict[str, Path]:
    return _write_ultralytics_checkpoints(tmp_path_factory.mktemp("ultralytics"))


def _raw(out):
    return out[0] if isinstance(out, (tuple, list)) else out


@pytest.mark.parametrize("kind", ["last", "best", "saved"])
def test_standard_checkpoint_loads_without_flag_same_as_ultralytics(ul_ckpts, kind):
    from ultralytics.nn.tasks import load_checkpoint

    path = ul_ckpts[kind]
    with pytest.raises(Exception):  # noqa: B017 - it is a pickle: plain weights_only refuses it
        torch.load(path, weights_only=True)
    model, info = detector.load(path)
    assert info["format"] == "ultralytics" and info["names"] == ["nail", "skin"]
    ref, _ = load_checkpoint(str(path), device="cpu", fuse=False)  # ultralytics' unsafe loader
    x = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = _raw(model(x)), _raw(ref.float().eval()(x))
        assert ours.shape == (1, 6, 2100)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
        ours = detector.set_export_mode(model)(x)
        theirs = detector.set_export_mode(ref)(x)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_allow_list_is_exactly_what_the_checkpoints_name(ul_ckpts):
    named = set()
    for path in ul_ckpts.values():
        named |= set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    allowed = [ckpt_io.global_name(g) for g in detector.ultralytics_globals()]
    assert len(allowed) == len(set(allowed)) == 16
    assert set(allowed) == named


def test_standard_checkpoint_exports_without_flag(ul_ckpts, random_checkpoints, tmp_path):
    from hemoedge.cli import main

    out = tmp_path / "art"
    assert main(["export", "--detector", str(ul_ckpts["best"]), "--estimator",
                 str(random_checkpoints[1]), "--out", str(out), "--simplifier", "none"]) == 0
    assert (out / "detector.fp32.onnx").is_file() and (out / "manifest.json").is_file()
    assert "trusted_pickle" not in (out / "manifest.json").read_text()


class _System:
    """Unpickling this calls os.system: a file naming a global outside the allow-list."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Construct:
    """Unpickling this calls an allowed class with arguments: DetectionModel(cfg) eval()s the
    cfg's activation, so a file that may call it can run code."""

    def __init__(self, marker: Path):
        import yaml

        self.cfg = {**yaml.safe_load(detector.YAML.read_text()),
                    "activation": f"__import__('pathlib').Path({str(marker)!r}).touch() "
                                  "or nn.SiLU()"}

    def __reduce__(self):
        from ultralytics.nn.tasks import DetectionModel

        return (DetectionModel, (self.cfg,))


def test_an_allowed_class_cannot_be_called_with_arguments(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Construct(marker), "train_args": {}}, evil)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(evil) == [
        "ultralytics.nn.tasks.DetectionModel"]  # on the list: only the call is refused
    with pytest.raises(CheckpointError, match=r"evil.pt: refused call of "
                                              r"ultralytics.nn.tasks.DetectionModel with argu"):
        detector.load(evil)
    assert not marker.exists()


class Custom(torch.nn.Module):  # a custom block: not on the list
    def forward(self, x):
        return x


def test_global_outside_the_allow_list_is_refused_naming_it(ul_ckpts, tmp_path, capsys):
    from hemoedge.cli import main

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    ckpt = torch.load(ul_ckpts["best"], weights_only=False)
    ckpt["train_args"]["name"] = _System(marker)  # a standard file plus one os.system call
    torch.save(ckpt, evil)
    system = ckpt_io.global_name(os.system)  # posix.system
    with pytest.raises(CheckpointError, match=rf"evil.pt: refused global {system}:.*"
                                              r"--trust-checkpoint"):
        detector.load(evil)
    out = tmp_path / "art"
    assert main(["export", "--detector", str(evil), "--out", str(out)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(err) == 1 and str(evil) in err[0] and system in err[0], err
    assert not marker.exists() and not out.exists()


def test_custom_module_needs_trust_checkpoint(ul_ckpts, tmp_path):
    ckpt = torch.load(ul_ckpts["best"], weights_only=False)
    ckpt["model"].model[0].act = Custom()  # SiLU -> a custom class
    custom = tmp_path / "custom.pt"
    torch.save(ckpt, custom)
    with pytest.raises(CheckpointError, match=rf"refused global {__name__}\.Custom:"):
        detector.load(custom)
    model, info = detector.load(custom, trust_pickle=True)  # the escape hatch: unrestricted
    assert isinstance(model.model[0].act, Custom) and info["format"] == "ultralytics"


@pytest.mark.parametrize("edit", [
    {"activation": "__import__('pathlib').Path('MARKER').touch()"},
    {"activation": "nn.LeakyReLU(__import__('pathlib').Path('MARKER').touch())"},
    {"layer": "check_requirements"},
])
def test_hemoedge_format_yaml_cannot_run_code(random_checkpoints, tmp_path, edit):
    marker = tmp_path / "pwned"
    ckpt = torch.load(random_checkpoints[0], weights_only=True)
    if "activation" in edit:
        ckpt["yaml"]["activation"] = edit["activation"].replace("MARKER", str(marker))
    else:
        ckpt["yaml"]["backbone"][0] = [-1, 1, edit["layer"], [f"pkg-{marker.name}"]]
    evil = tmp_path / "evil.pt"
    torch.save(ckpt, evil)
    with pytest.raises(CheckpointError, match=r"evil.pt: refused model yaml"):
        detector.load(evil)
    assert not marker.exists()
