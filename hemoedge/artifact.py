"""Artifact folder (ART): manifest.json plus one ONNX file per model x precision.

    ART/manifest.json
    ART/detector.fp32.onnx, ART/detector.fp16.onnx, ART/detector.int8.onnx, ...
    ART/estimator.fp32.onnx, ...

The manifest records, per file: model role, precision, sha256, bytes, opset, I/O names and
shapes, op census and quantisation settings; per model: the ModelSpec (preprocessing, class
names) and the source checkpoint's sha256; and the tool versions.

Every reader gets its model files through `Artifact.path`, which checks the file against the
manifest (`Artifact.verify`: present, not empty, the recorded sha256, a parseable ONNX model
with finite weights) and raises ArtifactError naming the file otherwise: one check, in one
place, for parity, eval, the benchmarks, quantize and the web app build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemoedge.errors import ArtifactError, HemoedgeError
from hemoedge.names import PRECISIONS, ROLES
from hemoedge.spec import METADATA_KEY, ModelSpec

SCHEMA = "hemoedge.artifact/1"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, text: str) -> Path:
    """Write a text file atomically (temporary file beside it, then rename), with the mode a
    plain open() would give it (0666 less the umask, e.g. 0644; mkstemp alone makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def load_onnx(path: str | Path, what: str = "ONNX model"):
    """onnx.load with one-line errors naming the file: missing, empty (0 bytes), not an ONNX
    model (does not parse, or parses into a model with no graph or no opset)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: {what} not found")
    size = path.stat().st_size
    if size == 0:
        raise ArtifactError(f"{path}: empty file (0 bytes), not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # DecodeError, ValueError, ... on a truncated or foreign file
        raise ArtifactError(f"{path}: not an ONNX model, or truncated ({size} bytes; "
                            f"{e.__class__.__name__})") from e
    if not model.HasField("graph") or not model.graph.node:
        raise ArtifactError(f"{path}: not an ONNX model ({size} bytes, no graph nodes)")
    if not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        raise ArtifactError(f"{path}: not a usable ONNX model (no ai.onnx opset import)")
    return model


def check_finite(model, path: str | Path) -> None:
    """ArtifactError if a float weight (initializer or Constant) holds NaN or Inf: a model
    like that can only produce non-finite numbers, never a pass."""
    import numpy as np
    from onnx import numpy_helper

    tensors = list(model.graph.initializer) + [
        a.t for n in model.graph.node if n.op_type == "Constant"
        for a in n.attribute if a.name == "value" and a.HasField("t")]
    for tp in tensors:
        try:
            arr = numpy_helper.to_array(tp)
        except Exception:  # an external or exotic tensor: onnxruntime judges it
            continue
        if arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ArtifactError(f"{path}: weight {tp.name or '(constant)'!r} holds {bad} "
                                "non-finite value(s) (NaN/Inf); refusing a model that cannot "
                                "give finite outputs")


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

    model = load_onnx(path)

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
        except (UnicodeDecodeError, OSError) as e:
            raise HemoedgeError(f"{mf}: not readable ({e.__class__.__name__})") from e
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise HemoedgeError(f"{mf}: expected schema {SCHEMA!r}, found {found!r}")
        models, files = d.get("models", {}), d.get("files", {})
        if not isinstance(models, dict) or not all(
                isinstance(m, dict) and isinstance(m.get("spec"), dict)
                and isinstance(m.get("source", {}), dict) for m in models.values()):
            raise HemoedgeError(f"{mf}: 'models' must map each role to {{spec, source}}")
        if not isinstance(files, dict) or not all(
                isinstance(f, dict) and f.get("model") in ROLES for f in files.values()):
            raise HemoedgeError(f"{mf}: 'files' must map each file name to its facts "
                                f"(model one of {list(ROLES)}, precision, sha256, ...)")
        return Artifact(root, models, files, d.get("versions", {}))

    def spec(self, role: str) -> ModelSpec:
        if role not in self.models:
            raise HemoedgeError(f"{self.root}: artifact has no {role} (has {sorted(self.models)})")
        try:
            return ModelSpec.from_json(json.dumps(self.models[role]["spec"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise HemoedgeError(f"{self.root / 'manifest.json'}: the {role} spec is malformed "
                                f"({what}); re-export with `hemoedge export`") from e

    def path(self, role: str, precision: str, verify: bool = True) -> Path:
        """The file of one role and precision, checked against the manifest (`verify`)
        unless verify=False (listing only, nothing read)."""
        name = file_name(role, precision)
        if name not in self.files:
            have = sorted(self.files)
            raise HemoedgeError(f"{self.root}: no {name} in the artifact (has {have}); "
                                f"make it with `hemoedge quantize {self.root} --variants {precision}`")
        if verify:
            self.verify(name)
        return self.root / name

    def verify(self, name: str) -> Path:
        """ArtifactError naming the file unless ART/name is what the manifest recorded: present,
        not empty, the same sha256, a parseable ONNX model whose weights are all finite and
        whose embedded spec (if any) parses. Cached per file state, so readers may call it
        freely."""
        path = self.root / name
        want = (self.files.get(name) or {}).get("sha256")
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in {self.root / 'manifest.json'} but missing")
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if want and _VERIFIED.get(key) == want:
            return path
        if st.st_size == 0:
            raise ArtifactError(f"{path}: empty file (0 bytes), not an ONNX model")
        if not isinstance(want, str) or len(want) != 64:
            raise ArtifactError(f"{path}: the manifest records no sha256 for it; re-export or "
                                "re-quantise the artifact")
        got = sha256_file(path)
        if got != want:
            raise ArtifactError(f"{path}: sha256 {got[:12]}... differs from the manifest's "
                                f"{want[:12]}...: the file changed since it was recorded; "
                                "re-export or re-quantise")
        model = load_onnx(path)
        check_finite(model, path)
        props = {p.key: p.value for p in model.metadata_props}
        if METADATA_KEY in props:
            try:
                ModelSpec.from_json(props[METADATA_KEY])
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise ArtifactError(f"{path}: its {METADATA_KEY!r} metadata is malformed "
                                    f"({e.__class__.__name__}: {e})") from e
        _VERIFIED[key] = want
        return path

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
        return write_atomic(self.root / "manifest.json",
                            json.dumps(d, indent=1, sort_keys=True) + "\n")


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (file, size, mtime) -> sha256 verified


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
        src.verify(n)
        fd, tmp = tempfile.mkstemp(dir=dst.root, prefix=f".{n}.", suffix=".tmp")
        os.close(fd)
        shutil.copyfile(src.root / n, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
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
