"""Shared checkpoint I/O: weights_only loading with one-line errors, fp16 state-dict saving."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from hemoedge.errors import CheckpointError

PICKLED = object()  # returned when the file needs a full (unsafe) unpickler


def save(ckpt: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


FP16_MAX = 65504.0


def half_state_dict(model: torch.nn.Module, half: bool = True) -> dict:
    """fp16 tensors to halve the file; a tensor with values fp16 cannot hold (e.g. a folded
    head weight, or BatchNorm running variances of a briefly trained net) stays fp32 instead of
    turning into inf."""
    def conv(v: torch.Tensor) -> torch.Tensor:
        if not (half and v.is_floating_point()) or (v.numel() and v.abs().max() >= FP16_MAX):
            return v
        return v.half()
    return {k: conv(v).contiguous() for k, v in model.state_dict().items()}


def load_weights_only(path: Path, what: str):
    """torch.load(weights_only=True) -> the object, or PICKLED if it holds Python objects."""
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a torch checkpoint (expected a .pt/.pth zip archive)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return PICKLED
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: corrupt torch checkpoint ({e})") from e
