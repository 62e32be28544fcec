"""Detector: ultralytics YOLOv8n (nc=2: nail, skin) built from yaml, and its checkpoints.

Checkpoint formats read:
* hemoedge's own (`format: hemoedge.detector/1`: yaml dict + state_dict), loaded with
  torch.load(weights_only=True) - the shipped default is one;
* a standard ultralytics YOLOv8 detection `.pt` (a dict holding a pickled `DetectionModel`
  under model/ema, plus train_args, optimizer, date, version...), also loaded with
  torch.load(weights_only=True), inside torch.serialization.safe_globals(ultralytics_globals()):
  the unpickler may build only the classes on that list, and a file naming any other global is
  refused before anything is unpickled (unpickling can run any code a file names);
* any other ultralytics `.pt` (custom modules, other tasks) only when the caller says it trusts
  the file (`load(..., trust_pickle=True)`, the CLI's --trust-checkpoint): then ultralytics'
  own loader unpickles it with no restriction.
"""

from __future__ import annotations

import logging
import re
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


def ultralytics_globals() -> list:
    """The allow-list for ultralytics checkpoints: exactly the globals a standard YOLOv8
    detection checkpoint names, and nothing else (no functions, no builtins).

    Found by loading checkpoints written the way ultralytics writes them (the trainer's
    last.pt, best.pt after strip_optimizer, Model.save; a real 1-epoch training with the
    installed 8.4 wrote files naming the first 15 below) and reading torch's "Unsupported
    global" list (tests/models/test_ultralytics_ckpt.py writes and loads all three):
    * the model: ultralytics.nn.tasks.DetectionModel;
    * its YOLOv8 blocks: Conv, Concat (ultralytics.nn.modules.conv), C2f, Bottleneck, SPPF, DFL
      (ultralytics.nn.modules.block), Detect (ultralytics.nn.modules.head);
    * the torch.nn layers they hold: Sequential, ModuleList, Conv2d, BatchNorm2d, SiLU,
      MaxPool2d, Upsample;
    * ultralytics.utils.IterableSimpleNamespace: the training args in a last.pt whose EMA
      model carries them as the trainer's namespace (trainers that copy args onto the EMA;
      train_args, best.pt and Model.save hold a plain dict). A plain data class.
    Dicts, lists, strings, numbers, tensors and optimizer state are what weights_only accepts
    without a list. An allowed class is only rebuilt as a bare instance whose __dict__ is
    filled with such data: the file cannot call it with arguments (ckpt_io._Rebuild), so no
    constructor and no function named by the file runs."""
    offline.configure()
    from torch import nn
    from ultralytics.nn.modules.block import DFL, SPPF, Bottleneck, C2f
    from ultralytics.nn.modules.conv import Concat, Conv
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import IterableSimpleNamespace

    return [DetectionModel, Conv, Concat, C2f, Bottleneck, SPPF, DFL, Detect,
            nn.Sequential, nn.ModuleList, nn.Conv2d, nn.BatchNorm2d, nn.SiLU, nn.MaxPool2d,
            nn.Upsample, IterableSimpleNamespace]


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

    hemoedge's own format and a standard ultralytics YOLOv8 detection .pt load with
    weights_only (the latter with ultralytics_globals() allowed). A file naming any other
    global is refused, naming it, unless `trust_pickle` (the CLI's --trust-checkpoint) says
    the caller trusts where it came from: then ultralytics' own, unrestricted loader reads it."""
    path = Path(path) if path else DEFAULT
    ckpt = ckpt_io.load_weights_only(path, "detector")
    if ckpt is ckpt_io.PICKLED:
        try:
            ckpt = ckpt_io.load_allow_listed(
                path, "standard ultralytics YOLOv8 detector checkpoint", ultralytics_globals(),
                hint="If you trust where the file came from, pass --trust-checkpoint")
        except CheckpointError:
            if not trust_pickle:
                raise
            return _load_ultralytics(path)  # the caller trusts it: unrestricted unpickling
        return _from_ultralytics_dict(ckpt, path)
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        _check_yaml(ckpt.get("yaml"), path)
        try:
            model = build(ckpt["yaml"], nc=len(ckpt["names"]))
        except Exception as e:  # ultralytics' parser raises many kinds on a bad yaml
            raise CheckpointError(f"{path}: its model yaml does not build ({e})") from e
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


ACTIVATION = re.compile(r"(?:torch\.)?nn\.([A-Za-z]\w*)\(\)")


def _check_yaml(cfg, path: Path) -> None:
    """A checkpoint's model yaml reaches ultralytics' parser, which eval()s `activation` and
    looks layer names up among ultralytics.nn.tasks' globals (functions too): allow only
    torch.nn / ultralytics layer classes and a bare `nn.Xxx()` activation, so a yaml cannot
    run code either."""
    offline.configure()
    from ultralytics.nn import tasks

    def layer_class(name):
        if not isinstance(name, str):
            return None
        obj = getattr(torch.nn, name[3:], None) if name.startswith("nn.") else \
            vars(tasks).get(name)
        return obj if isinstance(obj, type) and issubclass(obj, torch.nn.Module) else None

    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: no model yaml dict in the checkpoint")
    act = cfg.get("activation")
    if act is not None:
        m = ACTIVATION.fullmatch(act) if isinstance(act, str) else None
        if not (m and layer_class(f"nn.{m.group(1)}")):
            raise CheckpointError(f"{path}: refused model yaml activation {act!r} (only a "
                                  "torch.nn class with no arguments, e.g. nn.SiLU())")
    layers = (cfg.get("backbone") or []) + (cfg.get("head") or [])
    for entry in layers:
        name = entry[2] if isinstance(entry, (list, tuple)) and len(entry) == 4 else entry
        if layer_class(name) is None:
            raise CheckpointError(f"{path}: refused model yaml layer {name!r} (only torch.nn and "
                                  "ultralytics layer classes)")


def _from_ultralytics_dict(ckpt, path: Path):
    """The model of an allow-listed ultralytics checkpoint, prepared the way ultralytics'
    load_checkpoint(fuse=False) prepares it (ema over model, fp32, args, eval, inplace)."""
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG_DICT

    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, DetectionModel):
        raise CheckpointError(f"{path}: a torch file, but neither a hemoedge detector nor an "
                              "ultralytics checkpoint (no 'format' or 'model' entry)")
    if ckpt.get("modelopt"):
        raise CheckpointError(f"{path}: a quantization-aware (QAT) ultralytics checkpoint; only "
                              "plain detectors load without --trust-checkpoint")
    train_args = ckpt.get("train_args")
    model = model.float()
    model.args = {**DEFAULT_CFG_DICT, **(dict(train_args) if isinstance(train_args, dict)
                                         else {})}
    model.pt_path = str(path)
    model.task = getattr(model, "task", "detect")
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    model = model.eval()
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = True
        elif isinstance(m, torch.nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None
    return _checked(model, path)


def _load_ultralytics(path: Path):
    offline.configure()
    log.warning("%s: loading an ultralytics pickle (unsafe unpickling: trusted files only)", path)
    try:
        from ultralytics.nn.tasks import load_checkpoint

        model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
    except Exception as e:  # ultralytics raises many kinds here; name the file
        raise CheckpointError(f"{path}: not a loadable ultralytics checkpoint ({e})") from e
    return _checked(model, path)


def _checked(model, path: Path):
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
