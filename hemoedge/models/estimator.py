"""Estimator: a timm backbone -> pooled features -> Ridge head folded into one Linear.

Checkpoint format (the seed's, which hemoedge also writes): a torch file holding
`backbone` (timm model name), `cnn_dim` (pooled feature size) and `model_state_dict` with
`backbone.*` and `head.*` keys. hemoedge adds `input_size`, `task` ("regression": the output is
Hb in g/dL; "classification": the output is the anaemia logit), `anaemia_threshold_gdl`
(classification) and the fitted head's settings.
Loaded with torch.load(weights_only=True).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hemoedge.errors import CheckpointError
from hemoedge.models import ckpt_io
from hemoedge.names import ANAEMIA_THRESHOLD_GDL

DEFAULT = Path(__file__).parent / "default" / "estimator.pt"


class Estimator(nn.Module):
    """(N, 3, S, S) ImageNet-normalised crops -> (N, 1) Hb in g/dL (or a logit for
    the classification task)."""

    def __init__(self, backbone: str = "mobilenetv4_conv_small", cnn_dim: int | None = None):
        super().__init__()
        import timm

        try:
            self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        except RuntimeError as e:  # timm: "Unknown model"
            raise CheckpointError(f"unknown timm backbone {backbone!r} ({e})") from e
        self.backbone_name = backbone
        # mobilenetv4: the pooled size is head_hidden_size (1280), not num_features (960)
        dim = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        if cnn_dim is not None and cnn_dim != dim:
            raise CheckpointError(f"{backbone}: checkpoint says cnn_dim={cnn_dim}, model has {dim}")
        self.cnn_dim = int(dim)
        self.head = nn.Linear(self.cnn_dim, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # (N, cnn_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (N, 1)


def save(model: Estimator, path: str | Path, input_size: int = 224, task: str = "regression",
         half: bool = True, extra: dict | None = None) -> Path:
    ckpt = {"backbone": model.backbone_name, "cnn_dim": model.cnn_dim,
            "model_state_dict": ckpt_io.half_state_dict(model, half),
            "input_size": input_size, "task": task, **(extra or {})}
    return ckpt_io.save(ckpt, path)


def check_finite_weights(model: nn.Module, path: str | Path) -> None:
    """CheckpointError naming the file and tensor if a weight or buffer holds NaN or Inf: such
    a model can only output non-finite numbers, which must never pass export or parity."""
    for name, v in list(model.state_dict().items()):
        if v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise CheckpointError(f"{path}: {name} holds {bad} non-finite value(s) (NaN/Inf); "
                                  "refusing a checkpoint that cannot give finite outputs")


def load(path: str | Path | None = None) -> tuple[Estimator, dict]:
    path = Path(path) if path else DEFAULT
    ckpt = ckpt_io.load_weights_only(path, "estimator")
    if ckpt is ckpt_io.PICKLED:
        raise CheckpointError(f"{path}: holds Python objects, not plain weights; expected a dict "
                              "with backbone, cnn_dim, model_state_dict")
    missing = [k for k in ("backbone", "cnn_dim", "model_state_dict")
               if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not an estimator checkpoint: missing {missing} "
                              "(expected backbone, cnn_dim, model_state_dict)")
    model = Estimator(ckpt["backbone"], int(ckpt["cnn_dim"]))
    sd = ckpt["model_state_dict"]
    bad = [k for k in sd if not k.startswith(("backbone.", "head."))]
    if bad:
        raise CheckpointError(f"{path}: unexpected keys {bad[:3]}; expected backbone.* and head.*")
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit {ckpt['backbone']} ({e})") from e
    check_finite_weights(model, path)
    info = {"backbone": ckpt["backbone"], "cnn_dim": int(ckpt["cnn_dim"]),
            "input_size": int(ckpt.get("input_size", 224)), "task": ckpt.get("task", "regression")}
    if info["task"] not in ("regression", "classification"):
        raise CheckpointError(f"{path}: task {info['task']!r}; expected regression or "
                              "classification")
    if info["task"] == "classification":
        info["anaemia_threshold_gdl"] = float(ckpt.get("anaemia_threshold_gdl",
                                                       ANAEMIA_THRESHOLD_GDL))
    return model.eval(), info
