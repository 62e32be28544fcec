"""Shared fixtures: tiny generated data and tiny-trained/random models, built once per session
under pytest's tmp folders (never written into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HEMOEDGE_HOME", str(Path(__file__).resolve().parent.parent / ".hemoedge-home"))
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """12 patients in 4 sessions, the Yakimov layout."""
    from hemoedge.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("data") / "set", patients=12, sessions=4, seed=3,
                      progress=False)


@pytest.fixture(scope="session")
def random_checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """Random-weight detector (YOLOv8n nc=2) and estimator (mobilenetv4_conv_small) in the
    formats hemoedge ships."""
    from hemoedge.models import detector, estimator

    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    det = detector.save(detector.build(), d / "detector.pt")
    est = estimator.save(estimator.Estimator(), d / "estimator.pt")
    return det, est


@pytest.fixture(scope="session")
def tiny_art(tmp_path_factory, random_checkpoints) -> Path:
    from hemoedge.export.onnx_export import ExportConfig, export

    out = tmp_path_factory.mktemp("art") / "art"
    export(ExportConfig(out=out, detector=random_checkpoints[0], estimator=random_checkpoints[1]))
    return out
