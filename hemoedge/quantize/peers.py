"""Peer int8 builds: standard quantisers run on the artifact's own fp32 files and on exactly the
calibration inputs hemoedge's int8 uses, so `hemoedge eval` can put them side by side
(docs/peers.md).

    hemoedge quantize ART --engine ort,nncf     (hemoedge's own int8 stays the default build)

    ART/peers/<engine>/detector.int8.onnx, estimator.int8.onnx   metadata_props of the fp32 file
    ART/peers/<engine>/peer.json                                  engine, version, settings, files

Engines (`@register(name)`, `check(names)`; an unknown name lists the valid ones):
  ort   onnxruntime.quantization: quant_pre_process, then quantize_static with its documented
        defaults (QDQ, int8 activations and weights, per-tensor, MinMax)
  nncf  nncf.quantize(onnx model, nncf.Dataset(calibration inputs)) with its defaults; an
        optional extra (`pip install -e '.[peers]'`); NNCF_CI=1 keeps its telemetry off

Every file is built in a hidden folder inside ART/peers/ and renamed into place when finished;
peer.json is rewritten (atomically) after each file, so it always describes what is on disk.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoedge.errors import QuantizeError
from hemoedge.quantize.int8 import quiet

log = logging.getLogger(__name__)

PEERS_DIR = "peers"
PEER_JSON = "peer.json"
SCHEMA = "hemoedge.peer/1"
INSTALL = "pip install -e '.[peers]'"

# (fp32 model, destination, calibration inputs, work folder) -> the settings used
BuildFn = Callable[[Path, Path, Sequence[np.ndarray], Path], dict[str, Any]]


@dataclass(frozen=True)
class Engine:
    name: str
    build: BuildFn
    package: str  # distribution whose version is recorded
    module: str  # importable module the engine needs
    optional: bool  # an optional extra (INSTALL) rather than a hemoedge dependency

    def version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.package)
        except PackageNotFoundError:
            return "absent"

    def missing(self) -> str | None:
        """Why the engine cannot run here (one line), or None."""
        if importlib.util.find_spec(self.module.split(".")[0]) is not None:
            return None
        how = f"install it with: {INSTALL}" if self.optional else "reinstall hemoedge"
        return f"--engine {self.name} needs the package {self.package}, which is not installed ({how})"


ENGINES: dict[str, Engine] = {}


def register(name: str, package: str, module: str | None = None, optional: bool = False):
    """Register `fn(src, dst, calib, workdir) -> settings` as the peer engine `name`."""
    def deco(fn: BuildFn) -> BuildFn:
        ENGINES[name] = Engine(name, fn, package, module or package, optional)
        return fn
    return deco


def check(names: Iterable[str]) -> tuple[str, ...]:
    """The requested engine names, de-duplicated in order; QuantizeError (exit 2) for an unknown
    name or an engine whose package is not installed."""
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    bad = [n for n in names if n not in ENGINES]
    if bad:
        raise QuantizeError(f"unknown --engine {', '.join(bad)}; valid engines: "
                            f"{', '.join(sorted(ENGINES))} (hemoedge's own int8 is always built "
                            "by --variants int8)")
    for n in names:
        reason = ENGINES[n].missing()
        if reason:
            raise QuantizeError(reason)
    return names


def folder(art_root: str | Path, engine: str) -> Path:
    return Path(art_root) / PEERS_DIR / engine


def engines_in(art_root: str | Path) -> list[str]:
    """Engines with a peer.json under ART/peers/, sorted."""
    root = Path(art_root) / PEERS_DIR
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / PEER_JSON).is_file())


def load_peer(art_root: str | Path, engine: str) -> dict[str, Any]:
    path = folder(art_root, engine) / PEER_JSON
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise QuantizeError(f"{path}: not a readable peer record ({e})") from e
    if d.get("schema") != SCHEMA:
        raise QuantizeError(f"{path}: expected schema {SCHEMA!r}, found {d.get('schema')!r}")
    return d


# ------------------------------------------------------------------ helpers

def _input_name(path: Path) -> str:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    init = {i.name for i in g.initializer}
    return next(i.name for i in g.input if i.name not in init)


def _defaults(fn: Callable, skip: Sequence[str] = ()) -> dict[str, str]:
    """The keyword defaults of `fn` as the installed version declares them (recorded as text)."""
    return {k: str(p.default) for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty and k not in skip}


def inputs_sha256(arrays: Sequence[np.ndarray]) -> str:
    """One digest of a list of arrays (dtype, shape and bytes, in order): proves two builds saw
    the same calibration inputs."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _write_json(path: Path, d: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(d, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------ the engines

@register("ort", package="onnxruntime", module="onnxruntime.quantization")
def build_ort(src: Path, dst: Path, calib: Sequence[np.ndarray], wd: Path) -> dict[str, Any]:
    """onnxruntime's documented recipe: quant_pre_process, then quantize_static with every
    setting at its default (only the model paths and the calibration reader are passed)."""
    from onnxruntime.quantization import quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from hemoedge.quantize.int8 import ListReader

    pre = wd / "pre.onnx"
    with quiet("peer quantiser"):
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(dst), ListReader(_input_name(pre), calib))
    return {"pre_process": "onnxruntime.quantization.shape_inference.quant_pre_process "
                           "(defaults)",
            "call": "quantize_static(pre_processed, out, calibration_data_reader) with defaults",
            "defaults": _defaults(quantize_static, ("calibration_data_reader",))}


@register("nncf", package="nncf", optional=True)
def build_nncf(src: Path, dst: Path, calib: Sequence[np.ndarray], wd: Path) -> dict[str, Any]:
    """NNCF post-training quantisation of the ONNX model with its defaults."""
    os.environ.setdefault("NNCF_CI", "1")  # before nncf is imported: no telemetry
    import nncf
    import onnx

    model = onnx.load(str(src))
    name = _input_name(src)
    with quiet("peer quantiser"):
        q = nncf.quantize(model, nncf.Dataset(list(calib), lambda x: {name: x}))
    onnx.save(q, str(dst))
    return {"call": "nncf.quantize(onnx.ModelProto, nncf.Dataset(calib, to_feed_dict)) with "
                    "defaults",
            "defaults": _defaults(nncf.quantize),
            "subset_size_used": min(300, len(calib)),
            "telemetry": "off (NNCF_CI=1)"}


# ------------------------------------------------------------------ building

def build_file(engine: Engine, src: Path, out_dir: Path, role: str,
               calib: Sequence[np.ndarray]) -> tuple[Path, dict[str, Any], float]:
    """One peer file, written atomically into out_dir with src's metadata_props."""
    from hemoedge.artifact import file_name
    from hemoedge.quantize.int8 import copy_metadata

    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / file_name(role, "int8")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{engine.name}.{role}.") as wd_:
        wd = Path(wd_)
        tmp = wd / dst.name
        try:
            settings = engine.build(src, tmp, calib, wd)
            copy_metadata(src, tmp)
        except QuantizeError:
            raise
        except Exception as e:
            first = (str(e).strip().splitlines() or [""])[0]
            raise QuantizeError(f"{src}: --engine {engine.name} failed on the {role} "
                                f"({type(e).__name__}: {first})") from e
        os.replace(tmp, dst)  # same filesystem: ART/peers/.<engine>.<role>.*/ -> ART/peers/<e>/
    return dst, settings, time.perf_counter() - t0


def build(cfg, splits: dict[str, list] | None = None, read: Callable | None = None,
          progress: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Build every engine of cfg.engines for cfg.roles into ART/peers/<engine>/, calibrated on
    hemoedge.quantize.run.model_inputs(...)[role].calib. Returns engine -> peer.json."""
    from hemoedge.artifact import Artifact, describe_onnx, file_name
    from hemoedge.quantize import run

    names = check(cfg.engines)
    if not names:
        return {}
    art = Artifact.load(cfg.art)
    splits = splits if splits is not None else run.load_splits(cfg.data, cfg.split_seed)
    if not splits.get("train"):
        raise QuantizeError("the train split is empty; peer engines calibrate on train photos")
    calib = {role: list(inp.calib) for role, inp in run.model_inputs(art, splits, cfg, read).items()}
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        eng = ENGINES[name]
        dest = folder(art.root, name)
        dest.mkdir(parents=True, exist_ok=True)
        record = (load_peer(art.root, name) if (dest / PEER_JSON).is_file()
                  else {"schema": SCHEMA, "engine": name, "files": {}})
        record.update(engine=name, package=eng.package, version=eng.version())
        for role in cfg.roles:
            src = art.path(role, "fp32")
            if progress:
                progress(f"peer {name}: quantising the {role} ({len(calib[role])} samples)")
            dst, settings, secs = build_file(eng, src, dest, role, calib[role])
            facts = describe_onnx(dst)
            record["settings"] = settings
            record["files"][file_name(role, "int8")] = {
                "model": role, "precision": "int8", "engine": name,
                "source": {"file": file_name(role, "fp32"),
                           "sha256": art.files[file_name(role, "fp32")]["sha256"]},
                "calibration": {"samples": len(calib[role]),
                                "inputs_sha256": inputs_sha256(calib[role]),
                                "from": "hemoedge.quantize.run.model_inputs(...).calib"},
                "build_s": round(secs, 2), **facts}
            _write_json(dest / PEER_JSON, record)
            log.info("peer %s: %s %.2f MB, %d QuantizeLinear, %.1f s", name, dst.name,
                     facts["bytes"] / 1e6, facts["op_census"].get("QuantizeLinear", 0), secs)
        out[name] = record
    return out
