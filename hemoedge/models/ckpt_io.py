"""Shared checkpoint I/O: weights_only loading with one-line errors, fp16 state-dict saving."""

from __future__ import annotations

import pickle
import re
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


def global_name(obj) -> str:
    """The name a pickle stores for a class or function: module.qualname."""
    return f"{obj.__module__}.{obj.__qualname__}"


class _Rebuild:
    """Stands in for an allow-listed class under its pickled name. torch's weights_only
    unpickler would also let a file *call* an allowed class with arguments of its choosing
    (REDUCE), and a constructor can do anything (DetectionModel(cfg) eval()s the cfg's
    `activation`). Through this stand-in the file can only get a bare instance - what pickle
    writes for a module or a namespace: NEWOBJ or a no-argument REDUCE, no __init__ - whose
    __dict__ the unpickler then fills with plain data (BUILD)."""

    def __init__(self, cls: type):
        self.cls = cls
        self.__new__ = self._new  # the unpickler's NEWOBJ calls cls.__new__(cls, *args)

    def _new(self, _cls, *args):
        return self(*args)

    def __call__(self, *args, **kwargs):
        if args or kwargs:
            raise pickle.UnpicklingError(f"call of {global_name(self.cls)} with "
                                         "arguments (only a bare instance is rebuilt)")
        return self.cls.__new__(self.cls)


def load_allow_listed(path: Path, what: str, allowed: list[type], hint: str = ""):
    """torch.load(weights_only=True) that also rebuilds instances of exactly the classes in
    `allowed` (inside torch.serialization.safe_globals). A file naming any other global is
    refused before anything is unpickled; one calling an allowed class with arguments is
    refused when it tries: CheckpointError naming the file and the global. Note: torch also
    accepts globals another library registered process-wide with add_safe_globals; hemoedge
    registers none."""
    names = {global_name(c): c for c in allowed}
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (RuntimeError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: corrupt torch checkpoint ({e})") from e
    refused = [n for n in needed if n not in names]
    if refused:
        shown = ", ".join(refused[:5]) + (f" (+{len(refused) - 5} more)" if len(refused) > 5
                                          else "")
        raise CheckpointError(_refusal(path, f"global {shown}: outside the {what} allow-list",
                                       hint))
    # under its pickled name a file gets the stand-in; the class itself sits under a name no
    # GLOBAL opcode can spell (a newline), so BUILD accepts its instances and nothing else
    entries = [(_Rebuild(c), n) for n, c in names.items()] + \
        [(c, f"hemoedge-rebuilt\n{n}") for n, c in names.items()]
    try:
        with torch.serialization.safe_globals(entries):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        call = re.search(r"call of \S+ with arguments", str(e))
        inner = str(e).split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0]
        reason = f"global {m.group(1)}: outside the {what} allow-list" if m else \
            call.group(0) if call else inner or "unsupported pickle content"
        raise CheckpointError(_refusal(path, reason, hint)) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: corrupt torch checkpoint ({e})") from e


def _refusal(path: Path, reason: str, hint: str) -> str:
    return (f"{path}: refused {reason}; unpickling it could run code, so nothing was loaded"
            f"{'. ' + hint if hint else ''}")
