"""`hemoedge webapp build`: the offline PWA for one variant pairing, as a static folder.

    DIST/index.html, DIST/sw.js                 entry points (stable names)
    DIST/<name>.<hash10>.<ext>                  everything else, content-hashed
    DIST/<file>.br, DIST/<file>.gz              precompressed siblings (when smaller)
    DIST/_headers, DIST/nginx.conf              host configuration (docs/deploy.md)
    DIST/build-manifest.json                    logical name -> hashed file, sha256, bytes

The build reads each model's preprocessing from its ONNX metadata_props (hemoedge.spec) and
writes it to the app's model manifest (models.json), so nothing about the models is
hard-coded in the JS. It rewrites relative references between assets to the hashed names
(leaves first), fills the service worker's VERSION and PRECACHE from its own file list, and
builds into a temporary folder renamed into place, so a failed build leaves DIST untouched.
`coi_serviceworker` makes sw.js add COOP/COEP itself (hosts that cannot send headers); `base`
is the URL path the host configs are written for (the app's own URLs are all relative).

This module holds the build steps (config, model specs, the model manifest, the service
worker, writing DIST); the assets and their hashing are in hemoedge.web.assets, the
compressed siblings and host configs in hemoedge.web.hosting.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hemoedge import names
from hemoedge.errors import HemoedgeError
from hemoedge.names import PRECISIONS, WASM
from hemoedge.severity import who_thresholds
from hemoedge.web.assets import (
    ENTRY_POINTS,
    HASH_LEN,
    ICONS,
    ORT_FILES,
    ORT_VERSION,
    TEXT_SUFFIXES,
    Asset,
    hashed_name,
    icon_png,
    resolve,
    source_assets,
)
from hemoedge.web.ep import check_ep, ep_assets, ep_cost_line, ort_manifest, patch_worker
from hemoedge.web.hosting import (
    BROTLI_MODEL_QUALITY,
    BROTLI_TEXT_QUALITY,
    COMPRESS_MIN_BYTES,
    compressed_siblings,
    headers_file,
    nginx_conf,
)
from hemoedge.web.sources import ort_dist, webapp_dir

# names callers and tests import from here; they live in hemoedge.web.assets / .hosting
__all__ = ["BROTLI_MODEL_QUALITY", "BROTLI_TEXT_QUALITY", "COMPRESS_MIN_BYTES", "ENTRY_POINTS",
           "HASH_LEN", "ICONS", "ORT_FILES", "ORT_VERSION", "TEXT_SUFFIXES", "BuildConfig",
           "BuildResult", "build", "cli", "compressed_siblings", "fp16_estimator_within",
           "headers_file", "icon_png", "nginx_conf", "parse_autotune", "parse_variant",
           "postprocess_defaults", "read_spec"]

log = logging.getLogger(__name__)

WEBAPP_DIR = webapp_dir()  # the wheel's copy, else the source tree (hemoedge.web.sources)
SCHEMA = "hemoedge.webapp/1"
# the app's detector cadence: every N-th frame, the nail tracked in between (webapp/src/app.js
# DETECT_EVERY holds the same number). With the tracker following the nail, every 4th frame
# read within 0.025 g/dL of a detection on every frame on four test videos (docs/webapp.md)
DEFAULT_CADENCE = 4
# auto-tune (webapp/src/autotune.js): cadences up to the default trade nothing; longer ones
# trade how fresh the nail box is
AUTOTUNE_CADENCES = (2, 3, 4, 6, 8)
AUTOTUNE_DEFAULT_CADENCE = DEFAULT_CADENCE
AUTOTUNE_HEADROOM = 0.7  # a setting fits when its mean frame work <= 0.7 x 80 ms
AUTOTUNE_BUDGET_MS = 3000  # the tune's whole time on the device
# the app fetches these itself on a first visit; the service worker caches them as they pass
# (precached up front only by an update), so a first visit downloads them once
LAZY_SUFFIXES = (".wasm", ".onnx")


@dataclass(frozen=True)
class BuildConfig:
    # inputs
    art: Path  # artifact folder (manifest.json + {role}.{precision}.onnx)
    detector: str  # precision of the detector file, fp32 | fp16 | int8
    estimator: str  # precision of the estimator file
    # output
    out: Path  # DIST; replaced only if it is empty or a previous build
    # sources
    webapp: Path = WEBAPP_DIR  # index.html, src/*.js, sw.js, ...
    ort_dist: Path | None = None  # onnxruntime-web's dist; None: hemoedge.web.sources.ort_dist
    # shipping
    compress: bool = True  # write precompressed <file>.br / <file>.gz siblings
    base: str = "/"  # URL path the app is served under (host configs only; the app is relative)
    coi_serviceworker: bool = False  # hosts without headers: sw.js adds COOP/COEP itself
    # what the app's on-device auto-tune may choose from, besides the pairing itself:
    # "det=P" / "est=P" items (each another model file shipped); empty: no auto-tune
    autotune: tuple[str, ...] = ()
    autotune_cadences: tuple[int, ...] = AUTOTUNE_CADENCES  # detector every N frames
    ep: str = WASM  # onnxruntime-web execution provider (hemoedge.web.ep; wasm: the default app)

    def __post_init__(self) -> None:
        from hemoedge.web.serve import check_base

        check_base(self.base)
        check_ep(self.ep)
        parse_autotune(",".join(self.autotune))
        if not self.autotune_cadences or any(not 1 <= n <= 30 for n in self.autotune_cadences):
            raise HemoedgeError("auto-tune cadences must be 1..30 frames, got "
                                f"{list(self.autotune_cadences)}")
        for role, p in (("detector", self.detector), ("estimator", self.estimator)):
            if p not in PRECISIONS:
                raise HemoedgeError(
                    f"unknown {role} precision {p!r}; expected one of {list(PRECISIONS)}"
                )

    @property
    def variant(self) -> str:
        return f"det={self.detector},est={self.estimator}"


def parse_autotune(text: str) -> tuple[str, ...]:
    """'det=int8,det=fp32' -> ('det=int8', 'det=fp32'): models auto-tune may choose from."""
    out: list[str] = []
    for item in (s.strip() for s in (text or "").split(",") if s.strip()):
        key, sep, val = item.partition("=")
        if not sep or key not in ("det", "est") or val not in PRECISIONS:
            raise HemoedgeError(f"bad --autotune-variants item {item!r}: expected det=P or est=P "
                                f"with P in {list(PRECISIONS)}, e.g. det=int8,det=fp32")
        if item not in out:
            out.append(item)
    return tuple(out)


@dataclass
class BuildResult:
    out: Path
    version: str  # the service worker's VERSION (hash over every asset)
    files: dict[str, dict] = field(default_factory=dict)  # logical name -> {file, sha256, bytes}
    precache: list[str] = field(default_factory=list)
    # the models shipped only for auto-tune: "role.precision" -> {bytes, sent (compressed)}
    autotune_cost: dict[str, dict] = field(default_factory=dict)


def parse_variant(text: str) -> tuple[str, str]:
    """'det=int8,est=fp32' -> ('int8', 'fp32'): hemoedge.names.parse_variant, held to what the
    app needs (exactly one det=P and one est=Q, known precisions)."""
    pairs = names.parse_variant(text)
    items = [s for s in (text or "").split(",") if s.strip()]
    if len(pairs) != len(items) or any("=" not in s for s in items) or \
            not set(pairs) <= {"det", "est"}:
        raise HemoedgeError(
            f"bad --variant {text!r}: expected 'det=P,est=Q' with P, Q in {list(PRECISIONS)}"
        )
    bad = next((v for v in pairs.values() if v not in PRECISIONS), None)
    if bad is not None:
        raise HemoedgeError(
            f"bad --variant {text!r}: unknown precision {bad!r}; "
            f"expected one of {list(PRECISIONS)}"
        )
    if set(pairs) != {"det", "est"}:
        raise HemoedgeError(
            f"bad --variant {text!r}: the app needs both models, e.g. 'det=int8,est=fp32'"
        )
    return pairs["det"], pairs["est"]


# ---------------------------------------------------------------------------- models
def read_spec(path: Path, role: str) -> dict:
    """The ModelSpec stored in an ONNX file's metadata_props, checked against the graph."""
    import onnx

    from hemoedge.spec import METADATA_KEY, ModelSpec

    if not path.is_file():
        raise HemoedgeError(f"{path}: model file missing (listed in the artifact's manifest)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, ValueError, ... on a bad file
        raise HemoedgeError(f"{path}: not a readable ONNX model ({e})") from e
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise HemoedgeError(
            f"{path}: no {METADATA_KEY!r} in metadata_props; re-export it with `hemoedge export`"
        )
    try:
        spec = ModelSpec.from_json(meta[METADATA_KEY])
    except (ValueError, TypeError, KeyError) as e:
        raise HemoedgeError(
            f"{path}: {METADATA_KEY!r} metadata is not a valid ModelSpec ({e})"
        ) from e
    if spec.role != role:
        raise HemoedgeError(f"{path}: expected a {role} spec, found role {spec.role!r}")
    inputs = {i.name for i in model.graph.input}
    outputs = {o.name for o in model.graph.output}
    if spec.input_name not in inputs or spec.output_name not in outputs:
        raise HemoedgeError(
            f"{path}: spec names input {spec.input_name!r} / output {spec.output_name!r}, "
            f"graph has inputs {sorted(inputs)} / outputs {sorted(outputs)}"
        )
    return json.loads(spec.to_json())


def postprocess_defaults() -> dict:
    """conf / iou / max_det exactly as hemoedge.preprocess.decode_detections defaults them."""
    from hemoedge.preprocess import decode_detections

    p = inspect.signature(decode_detections).parameters
    return {"conf": p["conf"].default, "iou": p["iou"].default, "maxDet": p["max_det"].default}



# ---------------------------------------------------------------------------- fp16 estimator
def fp16_estimator_within(results_path: Path, detector: str, tolerance: float) -> tuple[bool, str]:
    """Does eval show the fp16 estimator within `tolerance` g/dL of fp32 (end-to-end Hb MAE of
    det=D,est=fp16 vs det=D,est=fp32 in results.json)? Returns (ok, the reason in words)."""
    import math

    from hemoedge.report.results import Results

    if not Path(results_path).is_file():
        raise HemoedgeError(f"{results_path}: results file not found (run `hemoedge eval` first)")
    try:
        res = Results.load(results_path)
    except Exception as e:  # any unreadable file is bad input here
        raise HemoedgeError(f"{results_path}: not a readable results file ({e})") from e
    mae = {}
    for est in ("fp16", "fp32"):
        m = res.get("acc.e2e.hb_mae", f"det={detector},est={est}")
        if m is None or not math.isfinite(m.value):
            return False, (f"{results_path} has no finite acc.e2e.hb_mae for "
                           f"det={detector},est={est}; keeping est=fp32")
        mae[est] = m.value
    d = mae["fp16"] - mae["fp32"]
    ok = d <= tolerance
    return ok, (f"e2e Hb MAE det={detector}: est=fp16 {mae['fp16']:.3f} vs est=fp32 "
                f"{mae['fp32']:.3f} g/dL (delta {d:+.3f}, tolerance {tolerance:g}): "
                + ("shipping est=fp16" if ok else "keeping est=fp32"))


def build(cfg: BuildConfig) -> BuildResult:
    """Build the PWA into cfg.out. Raises HemoedgeError on bad input; DIST is then untouched."""
    from hemoedge.artifact import Artifact

    art = Artifact.load(cfg.art)
    models = {}
    for role, prec in (("detector", cfg.detector), ("estimator", cfg.estimator)):
        path = art.path(role, prec)
        models[role] = (prec, path, read_spec(path, role))

    extra: dict[str, list[tuple[str, Path, dict]]] = {"detector": [], "estimator": []}
    for item in cfg.autotune:
        short, _, prec = item.partition("=")
        role = "detector" if short == "det" else "estimator"
        if prec != models[role][0]:
            path = art.path(role, prec)
            extra[role].append((prec, path, read_spec(path, role)))
    assets = {**source_assets(cfg.webapp), **ep_assets(cfg.ep, ort_dist(cfg.ort_dist), cfg.webapp)}
    patch_worker(assets, cfg.ep)
    for role, (prec, path, _) in models.items():
        key = f"models/{role}.{prec}.onnx"
        assets[key] = Asset(key, path.read_bytes())
    for role, lst in extra.items():
        for prec, path, _ in lst:
            key = f"models/{role}.{prec}.onnx"
            assets[key] = Asset(key, path.read_bytes())
    # models and ort files are opaque leaves: their hashed names are known before any rewrite
    leaf = {k: hashed_name(k, a.data) for k, a in assets.items() if not a.text}
    manifest = {
        "schema": SCHEMA,
        "variant": cfg.variant,
        "postprocess": postprocess_defaults(),
        "who": who_thresholds(),  # the app's WHO category (hemoedge.severity)
        "ort": ort_manifest(cfg.ep, leaf, ORT_VERSION),
    }
    for role, (prec, path, spec) in models.items():
        a = assets[f"models/{role}.{prec}.onnx"]
        manifest[role] = {
            "url": f"./{leaf[a.logical]}",
            "precision": prec,
            "source": path.name,
            "sha256": hashlib.sha256(a.data).hexdigest(),
            "bytes": len(a.data),
            "spec": spec,
        }
    if cfg.autotune:
        choices: dict[str, dict] = {}
        for role in ("detector", "estimator"):
            opts = [(models[role][0], models[role][1], models[role][2])] + extra[role]
            choices[role] = {}
            for prec, path, spec in opts:
                a = assets[f"models/{role}.{prec}.onnx"]
                choices[role][prec] = {"url": f"./{leaf[a.logical]}", "precision": prec,
                                       "source": path.name, "bytes": len(a.data), "spec": spec}
        manifest["autotune"] = {
            "choices": choices,
            "cadences": sorted(set(cfg.autotune_cadences)),
            "defaultCadence": AUTOTUNE_DEFAULT_CADENCE,
            "headroom": AUTOTUNE_HEADROOM,
            "intervalMs": 80,
            "budgetMs": AUTOTUNE_BUDGET_MS,
        }
    # app.js loads it as './models.json' (next to it in src/); hashed like everything else
    assets["src/models.json"] = Asset("src/models.json", json.dumps(manifest, indent=1).encode())
    if cfg.coi_serviceworker:  # the page reloads once when the service worker isolates it
        marker = b'<meta name="hemoedge-isolation" content="headers">'
        html = assets["index.html"]
        if html.data.count(marker) != 1:
            raise HemoedgeError(f"{cfg.webapp / 'index.html'}: expected {marker.decode()} once")
        html.data = html.data.replace(
            marker, b'<meta name="hemoedge-isolation" content="service-worker">')
    names = resolve(assets)

    files = {
        k: {"file": names[k], "sha256": hashlib.sha256(a.data).hexdigest(), "bytes": len(a.data)}
        for k, a in sorted(assets.items())
    }
    precache = sorted({f["file"] for f in files.values()})
    version = hashlib.sha256(
        "\n".join(f"{f['file']} {f['sha256']}" for f in files.values()).encode()
    ).hexdigest()[:12]
    sw = (cfg.webapp / "sw.js").read_text()
    for marker, value in (
        ("'__HEMOEDGE_VERSION__'", json.dumps(version)),
        ("/*__HEMOEDGE_PRECACHE__*/[]", json.dumps(precache, indent=1)),
        ("/*__HEMOEDGE_ISOLATE__*/false", json.dumps(cfg.coi_serviceworker)),
        ("/*__HEMOEDGE_LAZY__*/[]", json.dumps([f for f in precache if f.endswith(LAZY_SUFFIXES)])),
    ):
        if sw.count(marker) != 1:
            raise HemoedgeError(
                f"{cfg.webapp / 'sw.js'}: expected the marker {marker} exactly once"
            )
        sw = sw.replace(marker, value)
    out_files: dict[str, bytes] = {names[k]: a.data for k, a in assets.items()}
    out_files["sw.js"] = sw.encode()
    compressed: dict[str, dict[str, int]] = {}
    if cfg.compress:
        for name, data in list(out_files.items()):
            for ext, z in compressed_siblings(name, data).items():
                out_files[name + ext] = z
                compressed.setdefault(name, {})[ext.lstrip(".")] = len(z)
    if not cfg.coi_serviceworker:
        out_files["_headers"] = headers_file(precache, cfg.base, version).encode()
        out_files["nginx.conf"] = nginx_conf(cfg.base, version).encode()
    build_manifest = {
        "schema": SCHEMA,
        "version": version,
        "variant": cfg.variant,
        "onnxruntime_web": ORT_VERSION,
        "isolation": "service-worker" if cfg.coi_serviceworker else "headers",
        "base": cfg.base,
        "files": files,
        "precache": precache,
        "compressed": compressed,
        **({"ep": cfg.ep} if cfg.ep != WASM else {}),
    }
    out_files["build-manifest.json"] = (json.dumps(build_manifest, indent=1) + "\n").encode()
    cost = {}
    for role, lst in extra.items():
        for prec, _, _ in lst:
            name = names[f"models/{role}.{prec}.onnx"]
            sent = min(len(out_files[name + ext]) for ext in ("", ".br", ".gz")
                       if name + ext in out_files)  # what `webapp serve` sends
            cost[f"{role}.{prec}"] = {"bytes": len(out_files[name]), "sent": sent}
    if cfg.autotune:
        build_manifest["autotune"] = {"choices": list(cfg.autotune), "extra_models": cost}
        out_files["build-manifest.json"] = (json.dumps(build_manifest, indent=1) + "\n").encode()
    _write_atomically(cfg.out, out_files)
    log.info("built %s (%s, version %s, %d files)", cfg.out, cfg.variant, version, len(files) + 2)
    return BuildResult(cfg.out, version, files, precache, cost)


def _write_atomically(out: Path, out_files: dict[str, bytes]) -> None:
    out = Path(out)
    if out.exists() and (
        not out.is_dir() or (any(out.iterdir()) and not (out / "build-manifest.json").is_file())
    ):
        raise HemoedgeError(
            f"{out}: exists and is not a previous webapp build; choose another --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.build-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; DIST is meant to be served
    try:
        for name, data in out_files.items():
            (tmp / name).write_bytes(data)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------- CLI
def _check_regression(art: Path) -> None:
    from hemoedge.artifact import Artifact
    from hemoedge.spec import task_of

    if task_of(Artifact.load(art).spec("estimator")) != "regression":
        # the sweep still benchmarks such models in the app (latency only): bench web calls build()
        raise HemoedgeError(f"{art}: the estimator is an anaemia classifier (outputs a logit); "
                            "the app reports Hb in g/dL and needs a regression estimator")


def complete_default(art: Path, det: str, est: str) -> None:
    """The embedded default artifact is exported in fp32 only: make the variant's missing
    fp16/int8 files once, into the same cached folder, with quantize's defaults (int8 takes
    minutes: it calibrates and runs the accuracy-aware search; later builds reuse the files)."""
    from hemoedge.artifact import Artifact, file_name
    from hemoedge.quantize import run as qrun

    files = Artifact.load(art).files
    for role, p in (("detector", det), ("estimator", est)):
        if file_name(role, p) in files:
            continue
        print(f"the embedded default models have no {file_name(role, p)} yet: making it once "
              f"into {art}" + (" (int8: calibration and the accuracy-aware search, minutes)"
                               if p == "int8" else ""), flush=True)
        qrun.main(qrun.QuantizeConfig(art=art, variants=(p,), roles=(role,)))


def cli(args) -> int:
    det, est = parse_variant(args.variant)
    ort = ort_dist(getattr(args, "ort_dist", None))  # before exporting a default artifact
    art = args.art
    if art is None:
        try:
            from hemoedge.export.onnx_export import default_artifact
        except ImportError as e:
            raise HemoedgeError("no --art given and no default artifact available") from e
        art = default_artifact()
        art = art if isinstance(art, str | os.PathLike) else art.root  # a folder or an Artifact
        complete_default(Path(art), det, est)
    _check_regression(Path(art))
    within = getattr(args, "fp16_estimator_within", None)
    if within is not None:
        if not args.results:
            raise HemoedgeError("--fp16-estimator-within needs --results RESULTS.json "
                                "(the eval figures that decide)")
        if not (within >= 0):  # also refuses NaN
            raise HemoedgeError(f"--fp16-estimator-within must be >= 0 g/dL, got {within}")
        if est == "fp32":
            ok, why = fp16_estimator_within(Path(args.results), det, within)
            print(why)
            if ok:
                est = "fp16"
    base = getattr(args, "base", None) or "/"
    autotune = parse_autotune(getattr(args, "autotune_variants", None) or "")
    cfg = BuildConfig(art=Path(art), detector=det, estimator=est, out=Path(args.out),
                      compress=not getattr(args, "no_compress", False), base=base,
                      coi_serviceworker=bool(getattr(args, "coi_serviceworker", False)),
                      autotune=autotune, ort_dist=ort, ep=getattr(args, "ep", None) or WASM)
    return main(cfg)


def main(cfg: BuildConfig) -> int:
    """`hemoedge webapp build` once its config is known (also what `hemoedge run` calls)."""
    _check_regression(cfg.art)
    det, est, base, autotune = cfg.detector, cfg.estimator, cfg.base, cfg.autotune
    res = build(cfg)
    if autotune:
        total = sum(c["bytes"] for c in res.autotune_cost.values())
        total_br = sum(c["sent"] for c in res.autotune_cost.values())
        print(f"auto-tune may choose from det={det},est={est} and {', '.join(autotune)}, "
              f"detector every {'/'.join(map(str, cfg.autotune_cadences))} frames; "
              + (", ".join(f"{k} {c['bytes'] / 1e6:.2f} MB ({c['sent'] / 1e6:.2f} MB compressed)"
                           for k, c in res.autotune_cost.items())
                 or "no extra model files")
              + f": {total / 1e6:.2f} MB more in the build, {total_br / 1e6:.2f} MB more on a "
              "first visit (every choice is downloaded to be timed)")
    if cfg.ep != WASM:
        print(ep_cost_line(cfg.ep, res))
    print(
        f"built {res.out} ({det=}, {est=}; version {res.version}); serve it with "
        f"`hemoedge webapp serve {res.out}" + ("" if base == "/" else f" --base {base}") + "`"
    )
    return 0
