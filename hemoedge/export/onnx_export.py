"""`hemoedge export`: detector and estimator -> ONNX opset 13, simplified, checked, described.

The legacy TorchScript exporter is used (dynamo=False): the dynamo exporter cannot produce
opset 13 (it silently stays at 18). Static shapes 1x3x320x320 and 1x3x224x224.
A simplified graph is kept only if it gives the same outputs as the unsimplified one on
real-looking photos; otherwise the unsimplified graph is kept and the manifest says why.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hemoedge.artifact import Artifact, file_name, sha256_file
from hemoedge.errors import ExportError
from hemoedge.names import ANAEMIA_THRESHOLD_GDL
from hemoedge.spec import METADATA_KEY, OPSET, ModelSpec, detector_spec, estimator_spec

log = logging.getLogger(__name__)

SIMPLIFY_TOL = 1e-4  # max abs difference allowed between simplified and unsimplified outputs
SUPPORTED_OPSETS = range(11, 22)  # accepted for ONNX files from elsewhere


@dataclass(frozen=True)
class ExportConfig:
    out: Path
    detector: Path | None = None  # None: the embedded default checkpoint
    estimator: Path | None = None
    simplifier: str = "onnxslim"  # "onnxslim", "onnxsim" or "none"
    check_images: int = 4  # real-looking photos for the simplifier check
    trust_checkpoint: bool = False  # allow a pickled (ultralytics) detector: it can run code

    def __post_init__(self) -> None:
        if self.simplifier not in ("onnxslim", "onnxsim", "none"):
            raise ExportError(f"unknown simplifier {self.simplifier!r}; use onnxslim, onnxsim or none")


# ------------------------------------------------------------------------------ torch -> onnx


def torch_to_onnx(model: torch.nn.Module, spec: ModelSpec) -> bytes:
    """ONNX bytes of an eval-mode model; BatchNormalization folded into its Conv by
    hemoedge in float64 (fold.py), not by torch.onnx's float32 kernels, whose last bits depend
    on the CPU's instruction set."""
    import onnx

    from hemoedge.export.fold import fold_batchnorm

    model = model.eval()
    x = torch.zeros(spec.input_shape)
    buf = io.BytesIO()
    with torch.no_grad():
        # PRESERVE on an eval-mode model: eval semantics, BatchNormalization kept as nodes
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=OPSET,
                          input_names=[spec.input_name], output_names=[spec.output_name],
                          do_constant_folding=True, training=torch.onnx.TrainingMode.PRESERVE)
    proto = onnx.load_from_string(buf.getvalue())
    fold_batchnorm(proto)
    return proto.SerializeToString()


def simplify(model_bytes: bytes, simplifier: str):
    import onnx

    model = onnx.load_from_string(model_bytes)
    if simplifier == "none":
        return model
    if simplifier == "onnxslim":
        import onnxslim

        return onnxslim.slim(model)
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError("onnxsim could not validate its simplified graph")
    return simplified


def _session(model_or_bytes):
    from hemoedge.pipeline import ort_session

    return ort_session(model_or_bytes)  # onnxruntime's default threads, ORT_ENABLE_ALL


def check_inputs(spec: ModelSpec, images: list[np.ndarray]) -> list[np.ndarray]:
    """Preprocessed network inputs from real-looking photos (nail crops for the estimator)."""
    from hemoedge.preprocess import crop, letterbox, resize_crop

    xs = []
    for img, nails in images:
        if spec.role == "detector":
            xs.append(letterbox(img, spec.preprocess)[0])
        else:
            t, l, b, r = nails[0]
            xs.append(resize_crop(crop(img, (l, t, r, b)), spec.preprocess))
    return xs


def finalise(model, spec: ModelSpec, source_sha: str, precision: str = "fp32"):
    """Metadata, full checker, shape inference."""
    import onnx

    del model.metadata_props[:]
    for k, v in ((METADATA_KEY, spec.to_json()), ("hemoedge.source_sha256", source_sha),
                 ("hemoedge.precision", precision)):
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "hemoedge"
    model.doc_string = f"hemoedge {spec.role} ({precision}); not a medical device"
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{spec.role}: exported graph fails onnx.checker ({e})") from e
    return model


def export_model(model: torch.nn.Module, spec: ModelSpec, source_sha: str, simplifier: str,
                 images: list) -> tuple[object, dict]:
    """-> (onnx ModelProto, facts about simplification)."""
    try:
        raw = torch_to_onnx(model, spec)
    except Exception as e:  # torch.onnx raises many types; name the model
        raise ExportError(f"{spec.role}: torch.onnx.export failed at opset {OPSET} "
                          f"(torch {torch.__version__}): {e}") from e
    facts: dict = {"simplifier": simplifier}
    _check_outputs_finite(raw, spec, images)
    simplified = simplify(raw, simplifier)
    if simplifier != "none":
        worst = 0.0
        ref, new = _session(raw), _session(simplified)  # one session each, not one per image
        for x in check_inputs(spec, images):
            a = ref.run(None, {spec.input_name: x})[0]
            b = new.run(None, {spec.input_name: x})[0]
            worst = max(worst, float(np.max(np.abs(a - b))))
        facts["simplify_max_abs"] = worst
        if worst > SIMPLIFY_TOL:
            import onnx

            log.warning("%s: %s changed outputs by %.3g (> %g); keeping the unsimplified graph",
                        spec.role, simplifier, worst, SIMPLIFY_TOL)
            facts["simplifier_rejected"] = f"max abs {worst:.3g} > {SIMPLIFY_TOL}"
            simplified = onnx.load_from_string(raw)
    return finalise(simplified, spec, source_sha), facts


def _check_outputs_finite(model_bytes: bytes, spec: ModelSpec, images: list) -> None:
    """ExportError if the exported graph gives a NaN or Inf on the check photos: such a
    model is never written (a non-finite output can only fail, never pass)."""
    sess = _session(model_bytes)
    for x in check_inputs(spec, images):
        out = sess.run(None, {spec.input_name: x})[0]
        if not np.isfinite(out).all():
            raise ExportError(f"{spec.role}: the exported graph outputs non-finite values "
                              f"(NaN/Inf) on a check photo ({int((~np.isfinite(out)).sum())} "
                              "of them); refusing to write it")


# ------------------------------------------------------------------------------ ONNX from elsewhere


def adopt_onnx(path: Path, spec: ModelSpec):
    """Validate an existing ONNX file against the role's spec; add our metadata."""
    from hemoedge.artifact import check_finite, load_onnx
    from hemoedge.errors import ArtifactError

    try:
        model = load_onnx(path, "ONNX file")
        check_finite(model, path)
    except ArtifactError as e:
        raise ExportError(str(e)) from e
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"{path}: opset {opset} is not supported (expected 11-21; this suite "
                          f"exports {OPSET})")
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ExportError(f"{path}: expected 1 input and 1 output, found {len(inputs)} and "
                          f"{len(model.graph.output)}")
    shape_out = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if spec.role == "detector" and (len(shape_out) != 3 or shape_out[1] != 6):
        raise ExportError(f"{path}: output shape {shape_out} does not look like a 2-class "
                          "YOLOv8 head (expected (1, 6, anchors))")
    if spec.role == "estimator" and shape_out[-1:] != [1]:
        raise ExportError(f"{path}: output shape {shape_out}; expected (N, 1) Hb in g/dL")
    # rename I/O to the spec's names so every consumer can rely on them
    _rename(model, inputs[0].name, spec.input_name)
    _rename(model, model.graph.output[0].name, spec.output_name)
    return finalise(model, spec, sha256_file(path)), {"adopted_from": str(path), "source_opset": opset}


def _rename(model, old: str, new: str) -> None:
    if old == new:
        return
    for vi in list(model.graph.input) + list(model.graph.output):
        if vi.name == old:
            vi.name = new
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


# ------------------------------------------------------------------------------ entry


def export(cfg: ExportConfig) -> Artifact:
    """Write ART/{detector,estimator}.fp32.onnx + manifest.json. Nothing half-written: files
    are built in a temp folder beside ART and moved in at the end."""
    from hemoedge.data.synth import sample_photos
    from hemoedge.errors import check_output_dir
    from hemoedge.models import detector as det_mod
    from hemoedge.models import estimator as est_mod

    check_output_dir(cfg.out, "artifact folder (--out)")
    images = [(img, nails) for img, nails, _ in sample_photos(cfg.check_images)]
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cfg.out.parent, prefix=f".{cfg.out.name}.export."))
    try:
        art = Artifact(tmp)
        for role in ("detector", "estimator"):
            src = getattr(cfg, role) or (det_mod.DEFAULT if role == "detector" else est_mod.DEFAULT)
            src = Path(src)
            if src.suffix == ".onnx":
                spec = detector_spec() if role == "detector" else estimator_spec()
                model, facts = adopt_onnx(src, spec)
            elif role == "detector":
                torch_model, info = det_mod.load(src, trust_pickle=cfg.trust_checkpoint)
                spec = detector_spec(size=int(info.get("imgsz", 320)), num_classes=len(info["names"]))
                model, facts = export_model(det_mod.set_export_mode(torch_model), spec,
                                            sha256_file(src), cfg.simplifier, images)
            else:
                torch_model, info = est_mod.load(src)
                spec = estimator_spec(size=info["input_size"], task=info["task"],
                                      anaemia_threshold_gdl=info.get("anaemia_threshold_gdl",
                                                                     ANAEMIA_THRESHOLD_GDL))
                model, facts = export_model(torch_model, spec, sha256_file(src), cfg.simplifier,
                                            images)
            import onnx

            onnx.save(model, str(tmp / file_name(role, "fp32")))
            art.set_model(role, spec, {"path": str(src.resolve()), "sha256": sha256_file(src),
                                       **({"trusted_pickle": True} if role == "detector"
                                          and cfg.trust_checkpoint else {}), **facts})
            art.add_file(role, "fp32")
            log.info("%s: %s (%d bytes)", role, file_name(role, "fp32"),
                     art.files[file_name(role, "fp32")]["bytes"])
        cfg.out.mkdir(parents=True, exist_ok=True)
        for name in art.files:
            os.replace(tmp / name, cfg.out / name)
        art.root = cfg.out
        art.save()  # the manifest last: it names only files already in place
        return art
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def default_artifact() -> Path:
    """The embedded default models exported once into the project's cache folder."""
    from hemoedge import offline
    from hemoedge.models import detector as det_mod
    from hemoedge.models import estimator as est_mod

    key = (sha256_file(det_mod.DEFAULT)[:12] + sha256_file(est_mod.DEFAULT)[:12])
    out = offline.home() / "artifacts" / key
    if not (out / "manifest.json").is_file():
        export(ExportConfig(out=out))
    return out


def config_from_args(args) -> ExportConfig:
    return ExportConfig(out=Path(args.out),
                        detector=Path(args.detector) if args.detector else None,
                        estimator=Path(args.estimator) if args.estimator else None,
                        simplifier=args.simplifier,
                        trust_checkpoint=bool(getattr(args, "trust_checkpoint", False)))


def cli(args) -> int:
    return main(config_from_args(args))


def main(cfg: ExportConfig) -> int:
    """`hemoedge export` once its config is known (also what `hemoedge run` calls)."""
    art = export(cfg)
    for name, f in art.files.items():
        print(f"{cfg.out / name}: {f['bytes'] / 1e6:.2f} MB, opset {f['opset']}, "
              f"in {f['inputs'][0]['name']}{f['inputs'][0]['shape']} -> "
              f"out {f['outputs'][0]['name']}{f['outputs'][0]['shape']}, sha256 {f['sha256'][:12]}")
    return 0
