"""Execution providers besides WASM (webapp build --ep, bench web --ep, parity --web --ep).

Without a browser: the variant names, the plan, the unavailable path (a page whose build
reports no provider, or whose sessions fell back to WASM), the default build's files unchanged
and the provider build's. In Chromium (marked browser; tiny models): whatever this machine
offers is asserted, both ways — WebGPU ran (latency, frame time, parity within tolerance) or
it is recorded unavailable with a reason; and with the WebGPU flag left out of the launch it
must be recorded unavailable, not crash.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from hemoedge.bench.webmetrics import Pool
from hemoedge.errors import BenchError, HemoedgeError
from hemoedge.names import Variant, ep_of, variant_name, with_ep
from hemoedge.report.results import Results

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "web"))  # webtiny, webhelp
sys.path.insert(0, str(HERE))  # test_webparity: the tiny parity set
import webtiny as tiny  # noqa: E402
from webhelp import CHROMIUM, ort_installed, tiny_video  # noqa: E402

PAIRING = "det=int8,est=fp32,ep=webgpu"
ORT_DEFAULT = ("src/ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
BROWSER_LIMIT_S = 300  # a hang guard, not a speed figure: 18-21 s alone, up to 118 s beside the
#                        rest of `make test` on 2 cores (SwiftShader runs WebGPU on the CPU)
# WebGPU (SwiftShader here) against Python onnxruntime, fp32 tiny models: the verdict's own
# fp32 tolerances (1e-3 g/dL, 0.01 px, 1e-4 score); measured 0 g/dL and 0 px (docs/web-parity.md)
needs_browser = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and ort_installed()),
    reason="needs Debian's chromium and webapp/node_modules (npm ci)")


# ---------------------------------------------------------------------------- names and plan
def test_variants_gain_ep_only_off_wasm():
    assert variant_name("int8", "fp32") == "det=int8,est=fp32"
    assert variant_name("int8", "fp32", ep="wasm") == "det=int8,est=fp32"
    assert variant_name("int8", "fp32", ep="webgpu") == PAIRING
    assert variant_name(det="int8", ep="webnn") == "det=int8,ep=webnn"
    assert with_ep("", "webgpu") == "ep=webgpu" and with_ep("det=int8", None) == "det=int8"
    assert ep_of("det=int8,est=fp32") == "wasm" and ep_of(PAIRING) == "webgpu"
    v = Variant.parse(PAIRING)
    assert (v.det, v.est, v.get("ep")) == ("int8", "fp32", "webgpu")


def test_plan_adds_a_unit_per_provider_and_keeps_wasm_as_it_was(tmp_path):
    from hemoedge.bench.web import WebBenchConfig, plan

    have = {"detector": ["fp32", "int8"], "estimator": ["fp32", "fp16"]}
    base, tuned = plan(WebBenchConfig.quick_form(art=tmp_path), have)
    both, tuned2 = plan(WebBenchConfig.quick_form(art=tmp_path, eps=("wasm", "webgpu")), have)
    assert tuned == tuned2
    assert [u for u in both if u.ep == "wasm"] == base  # the seed included, unchanged
    gpu = [u for u in both if u.ep == "webgpu"]
    assert [(u.kind, u.variant) for u in gpu] == [("pairing", "det=int8,est=fp16,ep=webgpu")]
    assert gpu[0].model_variant("detector") == "det=int8,ep=webgpu"
    assert gpu[0].model_variant("estimator") == "est=fp16,ep=webgpu"
    only, _ = plan(WebBenchConfig.quick_form(art=tmp_path, eps=("webgpu",)), have)
    assert [u.ep for u in only] == ["webgpu"]  # the seed is a WASM reference: not without wasm
    full, _ = plan(WebBenchConfig(art=tmp_path, eps=("wasm", "webnn")), have)
    assert len([u for u in full if u.ep == "webnn"]) == len([u for u in full
                                                             if u.ep == "wasm" and u.kind != "seed"])
    with pytest.raises(BenchError, match="--ep needs some of wasm, webgpu, webnn"):
        WebBenchConfig(art=tmp_path, eps=("webgl",))


def test_cli_options(tmp_path):
    from hemoedge.bench.webcli import command_line, config_from_args
    from hemoedge.cli import build_parser

    p = build_parser()
    a = p.parse_args(["bench", "web", str(tmp_path), "--ep", "wasm,webgpu"])
    assert config_from_args(a).eps == ("wasm", "webgpu")
    assert command_line(a).endswith("--ep wasm,webgpu")
    a = p.parse_args(["bench", "web", str(tmp_path)])
    assert config_from_args(a).eps == ("wasm",) and "--ep" not in command_line(a)
    with pytest.raises(HemoedgeError, match="unknown execution provider 'webgl'"):
        config_from_args(p.parse_args(["bench", "web", str(tmp_path), "--ep", "webgl"]))
    a = p.parse_args(["parity", str(tmp_path), "--web", "--ep", "webgpu"])
    from hemoedge.bench.webparity import command_line as pcl
    from hemoedge.bench.webparity import config_from_args as pcfg

    assert pcfg(a).ep == "webgpu" and pcl(a).endswith("--ep webgpu")


# ---------------------------------------------------------------------------- unavailable path
FALLBACK = "webgpu: no available backend found. ERR: [webgpu] Error: Failed to get GPU adapter."


def _info(sessions: dict | None, reason: str | None = None) -> dict:
    s = {"timings": {r: {"createMs": 5.0} for r in ("detector", "estimator")}}
    if sessions is not None:
        s["ep"] = {"requested": "webgpu", "reason": reason, "adapter": "no navigator.gpu",
                   "available": all(x["ep"] == "webgpu" for x in sessions.values()),
                   "sessions": sessions}
    return {"session": s}


def test_unavailable_is_a_figure_with_its_reason():
    from hemoedge.bench.web import Unit
    from hemoedge.bench.webep import available, emit_ep, note_page

    pool, res = Pool(), Results()
    unit = Unit("pairing", "int8", "fp32", ep="webgpu")
    # a build that reports no provider at all (e.g. a WASM build opened as a webgpu unit)
    st = note_page(pool, unit, 1, _info(None))
    assert st["ok"] == {"detector": False, "estimator": False}
    assert "webapp build --ep" in st["reason"]
    # every session fell back to WASM: no adapter
    fell = {r: {"ep": "wasm", "reason": FALLBACK, "createMs": 3.0}
            for r in ("detector", "estimator")}
    note_page(pool, unit, 2, _info(fell, FALLBACK))
    # the estimator ran on WebGPU, the detector did not (a kernel the device lacks)
    part = {"detector": {"ep": "wasm", "reason": "webgpu: requires f16"},
            "estimator": {"ep": "webgpu", "createMs": 7.0, "firstRunMs": 30.0}}
    note_page(pool, Unit("pairing", "int8", "fp32", ep="webgpu"), 3, _info(part))
    emit_ep(pool, res)
    for t, why in ((1, "webapp build --ep"), (2, "Failed to get GPU adapter"),
                   (3, "requires f16")):
        m = res.get("web.ep.available", PAIRING, threads=t)
        assert m.value == 0 and why in m.params["reason"] and m.params["ep"] == "webgpu"
    assert res.get("web.ep.available", "est=fp32,ep=webgpu", threads=3).value == 1
    assert res.get("web.ep.available", "est=fp32,ep=webgpu", threads=3).params["reason"] == ""
    assert res.get("web.ep.available", "det=int8,ep=webgpu", threads=3).value == 0
    assert available(res, PAIRING) is False and available(res, "det=int8,est=fp32") is None
    # WASM units note nothing: their figures are what they always were
    pool2 = Pool()
    assert all(note_page(pool2, Unit("pairing", "int8", "fp32"), 1, _info(None))["ok"].values())
    assert "ep_pages" not in pool2.env


def test_parity_variants_and_unavailable():
    from hemoedge.bench.webep import parity_ep_metrics, parity_page
    from hemoedge.bench.webparity_compare import Collected, verdict

    c, res = Collected(), Results()
    c.pages.append({"variant": "det=int8,est=fp32", "files": ["detector", "estimator"],
                    "e2e": True, "threads": 2})
    part = {"detector": {"ep": "wasm", "reason": "webgpu: requires f16"},
            "estimator": {"ep": "webgpu"}}
    ok = parity_page(c, None, _info(part), "webgpu")
    assert ok == {"detector": False, "estimator": True}
    res.add("web.parity.estimator.hb_abs.max", "est=fp32", 2e-6, "g/dL", "lower", threads=2)
    res.variants["est=fp32"] = {"estimator": "estimator.fp32.onnx"}
    parity_ep_metrics(c, res, "webgpu")
    assert res.get("web.parity.estimator.hb_abs.max", "est=fp32,ep=webgpu") is not None
    assert "est=fp32,ep=webgpu" in res.variants
    det = res.get("web.parity.ep.available", "det=int8,ep=webgpu")
    assert det.value == 0 and "f16" in det.params["reason"]
    assert res.get("web.parity.ep.available", "est=fp32,ep=webgpu").value == 1
    assert res.get("web.parity.ep.available", PAIRING).value == 0  # e2e needs both
    assert verdict(res) == []  # unavailable is not a breach; ep= does not loosen fp32's limit
    res.add("web.parity.estimator.hb_abs.max", "est=fp32,ep=webgpu", 0.01, "g/dL", "lower")
    assert any("est=fp32,ep=webgpu" in b for b in verdict(res))


def test_parity_rerun_replaces_only_its_own_provider(tmp_path):
    from hemoedge.names import ep_of
    from hemoedge.report.results import merge_stage

    path = tmp_path / "results.json"
    old = Results()
    old.add("web.parity.estimator.hb_abs.max", "est=fp32", 1e-6, "g/dL", "lower")
    old.add("web.parity.estimator.hb_abs.mean", "est=fp32,ep=webgpu", 1e-6, "g/dL", "lower")
    old.save(path)
    new = Results()
    new.add("web.parity.estimator.hb_abs.max", "est=fp32,ep=webgpu", 2e-6, "g/dL", "lower")
    got = merge_stage(path, new, replaces="web.parity.",
                      where=lambda m: ep_of(m.variant) == "webgpu")
    assert {(m.name.rsplit(".", 1)[1], m.variant) for m in got.metrics} == {
        ("max", "est=fp32"), ("max", "est=fp32,ep=webgpu")}


# ---------------------------------------------------------------------------- builds
@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    if not ort_installed():
        pytest.skip("webapp/node_modules missing: run `npm ci` in webapp/")
    from hemoedge.web.build import BuildConfig, build

    d = tmp_path_factory.mktemp("epbuild")
    art = tiny.write_artifact(d / "art")
    out = {}
    for ep in ("wasm", "webgpu", "webnn"):
        kw = {} if ep == "wasm" else {"ep": ep}
        out[ep] = build(BuildConfig(art=art, detector="int8", estimator="fp32",
                                    out=d / f"dist-{ep}", compress=False, **kw))
    return out


def test_default_build_ships_no_provider_files(builds):
    from hemoedge.web.assets import ORT_FILES, source_assets
    from hemoedge.web.build import WEBAPP_DIR

    res = builds["wasm"]
    expected = {*source_assets(WEBAPP_DIR), "src/ort.wasm.min.mjs", *ORT_FILES[1:],
                "src/models.json", "models/detector.int8.onnx", "models/estimator.fp32.onnx"}
    assert set(res.files) == expected  # the file list the app always had
    names = " ".join(f["file"] for f in res.files.values())
    for word in ("jsep", "asyncify", "webgpu", "ort.all", "ep."):
        assert word not in names
    worker = (res.out / res.files["src/worker.js"]["file"]).read_text()
    assert "import * as ort from './ort.wasm.min." in worker and "epCreate" not in worker
    assert (WEBAPP_DIR / "src" / "worker.js").read_text().count("epCreate") == 0
    models = json.loads((res.out / res.files["src/models.json"]["file"]).read_text())
    assert set(models["ort"]) == {"version", "module", "mjs", "wasm"}
    assert "ep" not in json.loads((res.out / "build-manifest.json").read_text())


@pytest.mark.parametrize("ep,module,wasm", [
    ("webgpu", "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.asyncify.wasm"),
    ("webnn", "ort.all.min.mjs", "ort-wasm-simd-threaded.jsep.wasm")])
def test_provider_build(builds, ep, module, wasm):
    res, default = builds[ep], builds["wasm"]
    assert set(res.files) - set(default.files) == {f"src/{module}", "src/ep.js", wasm,
                                                   wasm.replace(".wasm", ".mjs")}
    assert set(default.files) - set(res.files) == set(ORT_DEFAULT)
    worker = (res.out / res.files["src/worker.js"]["file"]).read_text()
    stem = module.rsplit(".", 1)[0]
    assert f"import * as ort from './{stem}." in worker
    assert worker.count("epCreate(ort, M, ") == 2 and "ep: epReport(M)," in worker
    models = json.loads((res.out / res.files["src/models.json"]["file"]).read_text())
    assert models["ort"]["ep"] == ep
    assert models["ort"]["wasm"] == "./" + res.files[wasm]["file"]
    assert json.loads((res.out / "build-manifest.json").read_text())["ep"] == ep
    # the provider's runtime is the larger one (the byte cost docs/bench-web.md gives)
    assert res.files[wasm]["bytes"] > default.files["ort-wasm-simd-threaded.wasm"]["bytes"]


def test_webapp_build_cli_prints_the_byte_cost(builds, tmp_path, capsys):
    from hemoedge.cli import main

    art = tiny.write_artifact(tmp_path / "art")
    base = ["webapp", "build", "--art", str(art), "--variant", "det=int8,est=fp32",
            "--no-compress"]
    assert main([*base, "--ep", "webgpu", "--out", str(tmp_path / "gpu")]) == 0
    out = capsys.readouterr().out
    assert "--ep webgpu: onnxruntime-web's ort.webgpu.min.mjs" in out and "MB in the build" in out
    assert main([*base, "--out", str(tmp_path / "wasm")]) == 0
    assert "--ep" not in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # argparse: one line, exit 2
        main([*base, "--ep", "webgl", "--out", str(tmp_path / "x")])
    assert e.value.code == 2


def test_bench_page_collects_wasm_builds_only(builds):
    from hemoedge.web.collect import _build_pairing

    assert _build_pairing(builds["wasm"].out)[0] == "det=int8,est=fp32"
    with pytest.raises(HemoedgeError, match="built with --ep webgpu"):
        _build_pairing(builds["webgpu"].out)


def test_worker_patch_fails_clearly_when_the_worker_changed(tmp_path):
    from hemoedge.web.assets import Asset
    from hemoedge.web.ep import WORKER_PATCHES, patch_worker
    from hemoedge.web.sources import webapp_dir

    src = (webapp_dir() / "src" / "worker.js").read_bytes()
    for old, _ in WORKER_PATCHES:  # every snippet the patch needs is in today's worker, once
        assert src.decode().count(old) == 1, old
    assets = {"src/worker.js": Asset("src/worker.js", src.replace(b"variant: M.variant,", b""))}
    with pytest.raises(HemoedgeError, match=r"expected 'variant: M\.variant,' exactly once"):
        patch_worker(assets, "webgpu")


def test_missing_provider_files_are_one_line(tmp_path):
    import shutil

    from hemoedge.web.ep import ep_assets
    from hemoedge.web.sources import TREE_ORT, webapp_dir

    if not ort_installed():
        pytest.skip("webapp/node_modules missing")
    dist = tmp_path / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    shutil.copy(TREE_ORT.parent / "package.json", dist.parent / "package.json")
    for f in ORT_DEFAULT:
        shutil.copy(TREE_ORT / f.removeprefix("src/"), dist)
    assert ep_assets("wasm", dist, webapp_dir())  # the default needs nothing more
    with pytest.raises(HemoedgeError, match=r"no ort.webgpu.min.mjs.*--ort-dist"):
        ep_assets("webgpu", dist, webapp_dir())


# ---------------------------------------------------------------------------- in Chromium
def _bench(tmp_path, monkeypatch, kind: str = "models"):
    """bench web --ep webgpu on the tiny models, 1 thread, 2 runs. kind "models": the pairing's
    two models only (latency, session creation and availability; no capture, whose 15 detector
    frames take 20-40 s on SwiftShader here), through the same unit machinery as a full run."""
    from hemoedge.bench import web

    art = tiny.write_artifact(tmp_path / "art", precisions=("fp32", "int8"))
    if kind == "models":
        monkeypatch.setattr(web, "plan", lambda cfg, have: (
            [web.Unit("models", "int8", "fp32", ep="webgpu")], ("int8", "fp32")))
    cfg = web.WebBenchConfig.quick_form(
        art=art, threads=(1,), seed=False, eps=("webgpu",), runs=2, warmup=1,
        video=tiny_video(tmp_path / "tiny.y4m"), video_hb=12.7, workdir=tmp_path / "work",
        timeout_s=45, pairings=(("int8", "fp32"),))
    t0 = time.monotonic()
    return web.run(cfg), time.monotonic() - t0


@pytest.mark.browser
@needs_browser
def test_bench_webgpu_runs_or_says_why(tmp_path, monkeypatch):
    res, took = _bench(tmp_path, monkeypatch)
    avail = {m.variant: m for m in res.metrics if m.name == "web.ep.available"}
    assert set(avail) == {"det=int8,ep=webgpu", "est=fp32,ep=webgpu"}
    assert all(ep_of(x.variant) == "webgpu" for x in res.metrics)  # only the provider's unit
    for v, m in avail.items():
        role = "detector" if v.startswith("det=") else "estimator"
        lat = res.get(f"web.{role}.latency_ms.p50", v, threads=1)
        made = res.get(f"web.{role}.session_ms.p50", v, threads=1)
        print(f"bench web --ep webgpu {v}: available {m.value:.0f} "
              f"({m.params['reason'] or 'ran'}; adapter {m.params['adapter']}), session.run "
              f"p50 {lat and round(lat.value, 1)} ms, create {made and round(made.value, 1)} ms, "
              f"{took:.0f} s")
        assert m.value in (0, 1)
        if m.value == 1:
            assert m.params["reason"] == ""
            assert lat is not None and lat.value > 0 and lat.n == 2
            assert made is not None and made.value > 0
            assert m.params["ep_sessions"][role]["ep"] == "webgpu"
        else:
            assert m.params["reason"].strip()
            assert lat is None and made is None
    assert took < BROWSER_LIMIT_S


@pytest.mark.browser
@needs_browser
def test_bench_without_the_webgpu_flag_records_unavailable(tmp_path, monkeypatch):
    """No adapter (the flag left out of the launch): the whole pairing unit, first visit and
    all, records unavailable with the reason and times nothing under its ep= variant."""
    from hemoedge.web import ep as web_ep

    monkeypatch.setitem(web_ep.BROWSER_ARGS, "webgpu", ())
    res, took = _bench(tmp_path, monkeypatch, kind="pairing")
    m = res.get("web.ep.available", PAIRING, threads=1)
    assert m.value == 0 and "webgpu" in m.params["reason"]
    assert "--enable-unsafe-webgpu" not in res.env["web_bench"]["args"]
    for name, v in (("web.detector.latency_ms.p50", "det=int8,ep=webgpu"),
                    ("web.frame_ms.p50", PAIRING), ("web.cold_start_ms", PAIRING)):
        assert res.get(name, v) is None, name
    assert res.get("web.first_visit.bytes", PAIRING) is not None  # the build's, either way
    assert took < BROWSER_LIMIT_S


@pytest.mark.browser
@needs_browser
def test_parity_webgpu_within_tolerance_or_unavailable(tmp_path):
    from test_webparity import write_art, write_tiny_set

    from hemoedge.bench.webparity import WebParityConfig, run
    from hemoedge.bench.webparity_compare import verdict

    art = write_art(tmp_path / "art", precisions=("fp32",))  # one page: both files + e2e
    data = write_tiny_set(tmp_path / "set")
    t0 = time.monotonic()
    res = run(WebParityConfig(art=art, data=data, images=2, e2e=(("fp32", "fp32"),),
                              ep="webgpu", workdir=tmp_path / "work", timeout_s=45))
    took = time.monotonic() - t0
    pair = "det=fp32,est=fp32,ep=webgpu"
    avail = {m.variant: m for m in res.metrics if m.name == "web.parity.ep.available"}
    assert set(avail) == {"det=fp32,ep=webgpu", "est=fp32,ep=webgpu", pair}
    assert all(ep_of(m.variant) == "webgpu" for m in res.metrics)
    assert res.env["web_parity"]["ep"] == "webgpu"
    est = res.get("web.parity.estimator.hb_abs.max", "est=fp32,ep=webgpu")
    box = res.get("web.parity.detector.box_px.max", "det=fp32,ep=webgpu")
    e2e = res.get("web.parity.e2e.hb_abs.max", pair)
    print(f"parity --web --ep webgpu: available {[(v, m.value) for v, m in avail.items()]}, "
          f"est {est and est.value} g/dL, box {box and box.value} px, "
          f"e2e {e2e and e2e.value} g/dL, {took:.0f} s")
    if avail[pair].value == 1:
        assert est is not None and box is not None and e2e is not None
        assert verdict(res) == []  # fp32's tolerances: 1e-3 g/dL, 0.01 px (docs/web-parity.md)
    for m in avail.values():
        if m.value == 0:
            assert m.params["reason"].strip()
    assert took < BROWSER_LIMIT_S
