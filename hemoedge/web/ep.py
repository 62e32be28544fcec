"""`hemoedge webapp build --ep NAME`: the app with an onnxruntime-web execution provider other
than WASM (docs/bench-web-ep.md).

The default build (ep "wasm") is exactly what it always was: `ep_assets` returns
hemoedge.web.assets.ort_assets unchanged and nothing else is touched. Any other provider:

    webgpu  ort.webgpu.min.mjs + ort-wasm-simd-threaded.asyncify.{mjs,wasm}: onnxruntime-web
            1.30's WebGPU bundle (its WebGPU provider is the one built into the runtime;
            measured here it gave the right answer where the JSEP bundle's did not)
    webnn   ort.all.min.mjs + ort-wasm-simd-threaded.jsep.{mjs,wasm} (the JSEP bundle, the one
            with WebNN)

Both bundles also hold the WASM provider, so a session the provider cannot run falls back to
it. The worker is patched at build time (`patch_worker`: exact snippets of webapp/src/worker.js,
each expected once) to import that bundle and create its sessions through webapp/ep/ep.js
(shipped as src/ep.js), which tries the provider alone, falls back to WASM explicitly and
reports per session which provider it got (the worker's init returns it as `ep`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hemoedge.errors import HemoedgeError
from hemoedge.names import EPS, WASM
from hemoedge.web.assets import ORT_FILES, Asset, ort_assets


@dataclass(frozen=True)
class Bundle:
    module: str  # the ES module the worker imports (shipped as src/<module>)
    mjs: str  # the runtime's glue module
    wasm: str  # the runtime's WebAssembly


BUNDLES = {
    WASM: Bundle(*ORT_FILES),
    "webgpu": Bundle("ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.mjs",
                     "ort-wasm-simd-threaded.asyncify.wasm"),
    "webnn": Bundle("ort.all.min.mjs", "ort-wasm-simd-threaded.jsep.mjs",
                    "ort-wasm-simd-threaded.jsep.wasm"),
}
# what Chromium needs to offer the provider at all (bench web / parity --web launch it so);
# WebGPU on a headless Linux box without a GPU gets SwiftShader's software adapter this way
BROWSER_ARGS = {WASM: (), "webgpu": ("--enable-unsafe-webgpu",),
                "webnn": ("--enable-features=WebMachineLearningNeuralNetwork",)}
EP_SOURCE = Path("ep") / "ep.js"  # under the webapp sources; shipped as src/ep.js
# worker.js snippet -> its replacement (the provider's module name is filled in)
WORKER_PATCHES = (
    ("import * as ort from './ort.wasm.min.mjs';\n",
     "import * as ort from './{module}';\nimport {{ epCreate, epReport }} from './ep.js';\n"),
    ("const s = await ort.InferenceSession.create(bytes, opts);",
     "const s = await epCreate(ort, M, role, M[role].spec, bytes, opts);"),
    ("sessions[role][prec] = await ort.InferenceSession.create(bytes, opts);",
     "sessions[role][prec] = await epCreate(ort, M, `${{role}}.${{prec}}`, c.spec, bytes, opts);"),
    ("    variant: M.variant,\n", "    variant: M.variant,\n    ep: epReport(M),\n"),
)


def check_ep(ep: str) -> str:
    if ep not in EPS:
        raise HemoedgeError(f"unknown execution provider {ep!r}; expected one of {list(EPS)}")
    return ep


def parse_eps(text: str | None) -> tuple[str, ...]:
    """'wasm,webgpu' -> ('wasm', 'webgpu'); empty or None -> ('wasm',)."""
    out = [check_ep(s.strip()) for s in (text or "").split(",") if s.strip()]
    return tuple(dict.fromkeys(out)) or (WASM,)


def module_key(ep: str) -> str:
    """The logical name of the module the worker imports: src/ort.wasm.min.mjs by default."""
    return f"src/{BUNDLES[ep].module}"


def ep_assets(ep: str, ort_dist: Path, webapp: Path) -> dict[str, Asset]:
    """onnxruntime-web's files for this provider (the default's are ort_assets' own), plus
    src/ep.js for any other provider (patch_worker then points the worker at them)."""
    default = ort_assets(ort_dist, webapp)  # checks the pinned version
    if check_ep(ep) == WASM:
        return default
    b = BUNDLES[ep]
    missing = [f for f in (b.module, b.mjs, b.wasm) if not (ort_dist / f).is_file()]
    if missing:
        raise HemoedgeError(f"{ort_dist}: no {', '.join(missing)} for --ep {ep} (an installed "
                            "wheel ships the WASM files only); pass --ort-dist "
                            "webapp/node_modules/onnxruntime-web/dist after `npm ci`")
    out = {}
    for f in (b.module, b.mjs, b.wasm):
        key = module_key(ep) if f == b.module else f
        data = (ort_dist / f).read_bytes()
        if f.endswith(".mjs"):  # as ort_assets: the source map is not shipped
            data = re.sub(rb"\n//# sourceMappingURL=\S+\s*$", b"\n", data)
        out[key] = Asset(key, data)
    src = webapp / EP_SOURCE
    if not src.is_file():
        raise HemoedgeError(f"{src}: missing (the app's execution-provider module)")
    out["src/ep.js"] = Asset("src/ep.js", src.read_bytes())
    return out


def patch_worker(assets: dict[str, Asset], ep: str) -> None:
    """Point the worker at the provider's bundle and ep.js (nothing for WASM)."""
    if ep == WASM:
        return
    w = assets["src/worker.js"]
    text = w.data.decode("utf-8")
    for old, new in WORKER_PATCHES:
        if text.count(old) != 1:
            raise HemoedgeError(f"webapp/src/worker.js: expected {old.strip()!r} exactly once "
                                f"for --ep {ep}; update hemoedge/web/ep.py WORKER_PATCHES")
        text = text.replace(old, new.format(module=BUNDLES[ep].module))
    w.data = text.encode("utf-8")


def ort_manifest(ep: str, leaf: dict[str, str], version: str) -> dict:
    """models.json's "ort" entry: the runtime's files (hashed names) and, for a provider other
    than WASM, its name (the default's entry is what it always was)."""
    b = BUNDLES[ep]
    out = {"version": version, "module": f"./{leaf[module_key(ep)]}",
           "mjs": f"./{leaf[b.mjs]}", "wasm": f"./{leaf[b.wasm]}"}
    if ep != WASM:
        out["ep"] = ep
    return out


def runtime_bytes(ep: str, files: dict[str, dict], out: Path) -> dict[str, int]:
    """The runtime's files in a build: bytes as built, and as `webapp serve` sends them (the
    smallest of the file and its .br / .gz siblings)."""
    b = BUNDLES[ep]
    raw = sent = 0
    for key in (module_key(ep), b.mjs, b.wasm):
        name = files[key]["file"]
        raw += files[key]["bytes"]
        sent += min((out / (name + ext)).stat().st_size for ext in ("", ".br", ".gz")
                    if (out / (name + ext)).is_file())
    return {"bytes": raw, "sent": sent}


def ep_cost_line(ep: str, res) -> str:
    """One printed line: what the provider's runtime weighs in this build."""
    c = runtime_bytes(ep, res.files, Path(res.out))
    return (f"--ep {ep}: onnxruntime-web's {BUNDLES[ep].module} + {BUNDLES[ep].wasm}: "
            f"{c['bytes'] / 1e6:.2f} MB in the build, {c['sent'] / 1e6:.2f} MB sent on a first "
            f"visit; the session falls back to WASM where {ep} is unavailable (the bench hook's "
            "session.ep says which)")
