"""Detector: ultralytics YOLOv8n (nc=2: nail, skin) built from yaml, and its checkpoints.

Checkpoint formats read:
* hemoedge's own (`format: hemoedge.detector/1`: yaml dict + state_dict), loaded with
  torch.load(weights_only=True) - the shipped default is one;
* an ultralytics `.pt` (a pickled model object), only when the caller says it trusts the file
  (`load(..., trust_pickle=True)`, the CLI's --trust-checkpoint): ultralytics' own loader
  unpickles arbitrary objects, and unpickling can run any code the file names.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import yaml

from hemoedge import offline
from hemoedge.errors import CheckpointError
from hemoedge.models import ckpt_io
from hemoedge.models.estimator import check_finite_weights
from hemoedge.spec import CLASS_NAMES

log = logging.getLogger(__name__)

FORMAT = "hemoedge.detector/1"
YAML = Path(__file__).with_name("yolov8n-nc2.yaml")
DEFAULT = Path(__file__).parent / "default" / "detector.pt"


def build(cfg: dict | None = None, nc: int = 2):
    offline.configure()
    from ultralytics.nn.tasks import DetectionModel

    cfg = cfg or yaml.safe_load(YAML.read_text())
    cfg = {**cfg, "nc": nc}
    return DetectionModel(cfg, nc=nc, verbose=False)


def set_export_mode(model) -> torch.nn.Module:
    """Fuse conv+bn, eval, raw (1, 4 + nc, A) output: what the ONNX file and parity use."""
    from ultralytics.nn.modules import Detect

    model = model.float().eval()
    model = model.fuse(verbose=False)
    for m in model.modules():
        if isinstance(m, Detect):
            m.export = True
            m.format = "onnx"
            m.dynamic = False
    return model


def save(model, path: str | Path, names=CLASS_NAMES, imgsz: int = 320, half: bool = True,
         extra: dict | None = None) -> Path:
    """Save in hemoedge's weights_only-loadable format (fp16 tensors by default: half the bytes)."""
    ckpt = {"format": FORMAT, "yaml": dict(model.yaml), "names": list(names), "imgsz": imgsz,
            "state_dict": ckpt_io.half_state_dict(model, half), **(extra or {})}
    return ckpt_io.save(ckpt, path)


def load(path: str | Path | None = None, trust_pickle: bool = False):
    """-> (model in eval mode, info dict). Raises CheckpointError with the reason.

    An ultralytics .pt pickles Python objects, and unpickling a file can run any code it
    names: such a file is refused unless `trust_pickle` (the CLI's --trust-checkpoint) says
    the caller trusts where it came from. hemoedge's own format loads with weights_only."""
    path = Path(path) if path else DEFAULT
    ckpt = ckpt_io.load_weights_only(path, "detector")
    if ckpt is ckpt_io.PICKLED:
        if not trust_pickle:
            raise CheckpointError(
                f"{path}: holds pickled Python objects (an ultralytics .pt?); unpickling can run "
                "arbitrary code, so it is not loaded. If you trust where the file came from, "
                "pass --trust-checkpoint")
        return _load_ultralytics(path)  # an ultralytics .pt pickles model objects
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        model = build(ckpt["yaml"], nc=len(ckpt["names"]))
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in ckpt["state_dict"].items()})
        except RuntimeError as e:
            raise CheckpointError(f"{path}: weights do not fit the YOLOv8 graph ({e})") from e
        check_finite_weights(model, path)
        model.names = dict(enumerate(ckpt["names"]))
        return model.eval(), {"format": FORMAT, "names": ckpt["names"], "imgsz": ckpt["imgsz"]}
    raise CheckpointError(f"{path}: a torch file, but neither a hemoedge detector nor an "
                          "ultralytics checkpoint (no 'format' or 'model' entry)")


def _load_ultralytics(path: Path):
    offline.configure()
    log.warning("%s: loading an ultralytics pickle (unsafe unpickling: trusted files only)", path)
    try:
        from ultralytics.nn.tasks import load_checkpoint

        model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
    except Exception as e:  # ultralytics raises many kinds here; name the file
        raise CheckpointError(f"{path}: not a loadable ultralytics checkpoint ({e})") from e
    names = model.names if isinstance(model.names, (list, tuple)) else \
        [model.names[i] for i in sorted(model.names)]
    nc = int(getattr(model, "nc", len(names)))
    if nc != 2:
        raise CheckpointError(f"{path}: detector has {nc} classes {names}; expected 2 "
                              f"({', '.join(CLASS_NAMES)})")
    check_finite_weights(model, path)
    return model.float().eval(), {"format": "ultralytics", "names": list(names),
                                  "imgsz": int(getattr(model, "args", {}).get("imgsz", 320))
                                  if isinstance(getattr(model, "args", None), dict) else 320}
