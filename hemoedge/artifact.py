"""Artifact folder (ART): manifest.json plus one ONNX file per model x precision.

    ART/manifest.json
    ART/detector.fp32.onnx, ART/detector.fp16.onnx, ART/detector.int8.onnx, ...
    ART/estimator.fp32.onnx, ...

The manifest records, per file: model role, precision, sha256, bytes, opset, I/O names and
shapes, op census and quantisation settings; per model: the ModelSpec (preprocessing, class
names) and the source checkpoint's sha256; and the tool versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemoedge.errors import HemoedgeError
from hemoedge.spec import ModelSpec

SCHEMA = "hemoedge.artifact/1"
ROLES = ("detector", "estimator")
PRECISIONS = ("fp32", "fp16", "int8")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_name(role: str, precision: str) -> str:
    return f"{role}.{precision}.onnx"


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("hemoedge", "torch", "onnx", "onnxruntime", "timm", "ultralytics", "onnxslim"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def describe_onnx(path: str | Path) -> dict[str, Any]:
    """sha256, bytes, opset, I/O names/shapes/dtypes and op census of an ONNX file."""
    import onnx

    model = onnx.load(str(path))

    def io(vi) -> dict:
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return {"name": vi.name, "shape": dims,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}

    init = {i.name for i in model.graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return {
        "sha256": sha256_file(path),
        "bytes": os.path.getsize(path),
        "opset": opset,
        "inputs": [io(v) for v in model.graph.input if v.name not in init],
        "outputs": [io(v) for v in model.graph.output],
        "op_census": dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
    }


@dataclass
class Artifact:
    root: Path
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> {spec, source}
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # file name -> facts
    versions: dict[str, str] = field(default_factory=tool_versions)

    # ------------------------------------------------------------------ reading
    @staticmethod
    def load(root: str | Path) -> Artifact:
        root = Path(root)
        mf = root / "manifest.json"
        if not mf.is_file():
            raise HemoedgeError(f"{root}: not an artifact folder (no manifest.json); "
                                "create one with `hemoedge export --out DIR`")
        try:
            d = json.loads(mf.read_text())
        except json.JSONDecodeError as e:
            raise HemoedgeError(f"{mf}: not valid JSON ({e})") from e
        if d.get("schema") != SCHEMA:
            raise HemoedgeError(f"{mf}: expected schema {SCHEMA!r}, found {d.get('schema')!r}")
        return Artifact(root, d.get("models", {}), d.get("files", {}), d.get("versions", {}))

    def spec(self, role: str) -> ModelSpec:
        if role not in self.models:
            raise HemoedgeError(f"{self.root}: artifact has no {role} (has {sorted(self.models)})")
        return ModelSpec.from_json(json.dumps(self.models[role]["spec"]))

    def path(self, role: str, precision: str) -> Path:
        name = file_name(role, precision)
        if name not in self.files:
            have = sorted(self.files)
            raise HemoedgeError(f"{self.root}: no {name} in the artifact (has {have}); "
                                f"make it with `hemoedge quantize {self.root} --variants {precision}`")
        return self.root / name

    def precisions(self, role: str) -> list[str]:
        return [p for p in PRECISIONS if file_name(role, p) in self.files]

    # ------------------------------------------------------------------ writing
    def set_model(self, role: str, spec: ModelSpec, source: dict[str, Any]) -> None:
        self.models[role] = {"spec": json.loads(spec.to_json()), "source": source}

    def add_file(self, role: str, precision: str, quantization: dict[str, Any] | None = None,
                 **extra: Any) -> dict[str, Any]:
        """Record a file already written into root (describe it from disk)."""
        name = file_name(role, precision)
        facts = {"model": role, "precision": precision, **describe_onnx(self.root / name),
                 "quantization": quantization, **extra}
        self.files[name] = facts
        return facts

    def save(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        d = {"schema": SCHEMA, "versions": self.versions, "models": self.models,
             "files": dict(sorted(self.files.items()))}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".manifest.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(d, f, indent=1, sort_keys=True)
            f.write("\n")
        out = self.root / "manifest.json"
        os.replace(tmp, out)
        return out


def copy_role(src: Artifact, dst: Artifact, role: str) -> list[str]:
    """Replace dst's `role` (its spec, source and every precision's file) with src's: e.g. one
    exported and quantised detector shared by several estimator artifacts. Files are copied
    under a temporary name and renamed; dst's manifest is saved last."""
    if role not in src.models:
        raise HemoedgeError(f"{src.root}: artifact has no {role} to copy")
    names = [n for n, f in src.files.items() if f["model"] == role]
    for n in [n for n, f in dst.files.items() if f["model"] == role and n not in names]:
        (dst.root / n).unlink(missing_ok=True)
        del dst.files[n]
    for n in names:
        fd, tmp = tempfile.mkstemp(dir=dst.root, prefix=f".{n}.", suffix=".tmp")
        os.close(fd)
        shutil.copyfile(src.root / n, tmp)
        os.replace(tmp, dst.root / n)
        dst.files[n] = dict(src.files[n])
    dst.models[role] = json.loads(json.dumps(src.models[role]))
    dst.save()
    return names


def record_sizes(art: Artifact, results) -> None:
    """size.<role>.bytes for every file (variant det=P / est=P), replacing earlier figures."""
    from hemoedge.report.results import variant_name

    results.metrics = [m for m in results.metrics if not m.name.startswith("size.")]
    for facts in art.files.values():
        role, prec = facts["model"], facts["precision"]
        v = variant_name(det=prec) if role == "detector" else variant_name(est=prec)
        results.add(f"size.{role}.bytes", v, facts["bytes"], "bytes", "lower")
