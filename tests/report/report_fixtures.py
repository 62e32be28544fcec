"""Fabricated results shaped like a real run (figures measured on a 2-core x86 server), built in
code."""

from __future__ import annotations

from hemoedge.names import SHIPPED, SHIPPED_VARIANT
from hemoedge.report.results import Results, variant_name

PRECISIONS = ("fp32", "fp16", "int8")
# measured: bytes; CPU p50 ms at 1/2 threads; WASM p50 ms at 1/2 threads
DET = {"fp32": (12.1e6, (11.8, 7.6), (69.7, 39.6)), "fp16": (6.1e6, (11.5, 7.3), (70.9, 42.4)),
       "int8": (3.4e6, (6.8, 5.3), (40.6, 25.8))}
EST = {"fp32": (10.0e6, (2.05, 1.30), (15.4, 9.4)), "fp16": (5.0e6, (2.05, 1.26), (16.1, 9.9)),
       "int8": (2.8e6, (1.34, 0.97), (19.1, 11.2))}
EST_DELTA = {"fp32": 0.0, "fp16": 0.001, "int8": 0.021}  # g/dL
DET_DELTA = {"fp32": 0.0, "fp16": 0.0005, "int8": 0.006}  # g/dL added by detector boxes


def _timing(r: Results, name: str, variant: str, p50: float, threads: int) -> None:
    ci = [p50 * 0.97, p50 * 1.03]
    r.add(f"{name}.p50", variant, p50, "ms", "lower", n=200, ci95=ci, threads=threads)
    r.add(f"{name}.p90", variant, p50 * 1.12, "ms", "lower", n=200, threads=threads)
    r.add(f"{name}.p99", variant, p50 * 1.35, "ms", "lower", n=200, threads=threads)
    r.add(f"{name}.mean", variant, p50 * 1.04, "ms", "lower", n=200, threads=threads)


def make_results(web: bool = True, capture: bool = True) -> Results:
    r = Results(env={"cpu": "Intel Xeon (AVX-512 VNNI)", "cores": 2, "python": "3.11.2",
                     "onnxruntime": "1.31.1", "onnxruntime_web": "1.30.0",
                     "browser": "Chromium 156", "cross_origin_isolated": True},
                commands=["hemoedge export --out runs/x/art", "hemoedge quantize runs/x/art",
                          "hemoedge eval runs/x/art --results runs/x/results.json",
                          "hemoedge bench cpu runs/x/art --results runs/x/results.json"])
    for p in PRECISIONS:
        d, e = variant_name(det=p), variant_name(est=p)
        r.variants[d] = {"detector": f"detector.{p}.onnx"}
        r.variants[e] = {"estimator": f"estimator.{p}.onnx"}
        r.add("size.detector.bytes", d, DET[p][0], "bytes", "lower")
        r.add("size.estimator.bytes", e, EST[p][0], "bytes", "lower")
        r.add("acc.det.nail.map50", d, 0.91 - DET_DELTA[p], "", "higher", n=50)
        r.add("acc.det.nail.map50_delta", d, -DET_DELTA[p], "", "higher", n=50)
        r.add("acc.hb_mae", e, 1.10 + EST_DELTA[p], "g/dL", "lower", n=50)
        r.add("acc.hb_mae_delta", e, EST_DELTA[p], "g/dL", "lower", n=50)
        r.add(f"parity.detector.{p}.max_abs", d, 1.5e-4 if p == "fp32" else 0.02, "", "lower")
        r.add(f"parity.estimator.{p}.hb_max_abs", e, 1e-5 if p == "fp32" else 0.03, "g/dL",
              "lower")
        for band, mae in (("<8", 1.6), ("8-11", 1.1), ("11-13", 0.9), (">=13", 1.2)):
            v = mae + EST_DELTA[p]
            r.add(f"acc.hb_mae.band.{band}", e, v, "g/dL", "lower", n=12,
                  ci95=[v * 0.8, v * 1.2])
        for i, t in enumerate((1, 2)):
            _timing(r, "cpu.detector.latency_ms", d, DET[p][1][i], t)
            _timing(r, "cpu.estimator.latency_ms", e, EST[p][1][i], t)
            if web:
                _timing(r, "web.detector.latency_ms", d, DET[p][2][i], t)
                _timing(r, "web.estimator.latency_ms", e, EST[p][2][i], t)
    for dp in PRECISIONS:
        for ep in PRECISIONS:
            v = variant_name(dp, ep)
            r.variants[v] = {"detector": f"detector.{dp}.onnx", "estimator": f"estimator.{ep}.onnx"}
            delta = EST_DELTA[ep] + DET_DELTA[dp]
            r.add("acc.e2e.hb_mae", v, 1.15 + delta, "g/dL", "lower", n=50)
            r.add("acc.e2e.hb_mae_delta", v, delta, "g/dL", "lower", n=50)
            r.add("acc.e2e.abs_delta.p95", v, 3 * delta, "g/dL", "lower", n=50)
            r.add("acc.e2e.band_agreement", v, 1.0 - delta / 2, "", "higher", n=50)
            for i, t in enumerate((1, 2)):
                # pre/post-processing adds ~1.5 ms natively, ~6 ms in the browser
                _timing(r, "cpu.frame_ms", v, DET[dp][1][i] + EST[ep][1][i] + 1.5, t)
                for stage, ms in (("letterbox", 0.9), ("detector", DET[dp][1][i]),
                                  ("decode", 0.1), ("est_preprocess", 0.5),
                                  ("estimator", EST[ep][1][i])):
                    r.add(f"cpu.frame.{stage}_ms.p50", v, ms, "ms", "lower", n=200, threads=t)
                if web:
                    _timing(r, "web.frame_ms", v, DET[dp][2][i] + EST[ep][2][i] + 6.0, t)
    if web:
        r.add("web.seed.frame_ms.p50", "", 160.0, "ms", "lower", n=60, ci95=[150.0, 171.0],
              threads=1)
        r.add("web.cold_start_ms", SHIPPED_VARIANT, 620.0, "ms", "lower")
    if web and capture:
        v = SHIPPED_VARIANT
        r.add("web.capture.interval_ms.mean", v, 80.1, "ms", "lower", n=29)
        r.add("web.capture.interval_ms.p95", v, 81.4, "ms", "lower", n=29)
        r.add("web.capture.dropped_frames", v, 0, "frames", "lower", threads=2)
        for i in range(30):
            t = 80.0 * i
            r.add("web.capture.grab_ms", v, 1.2, "ms", "lower", frame=i, t_grab=t,
                  t_det_start=t + 2.0, t_est_end=t + 2.0 + 38.0 + (i % 3), t_result=t + 42.5)
    if web:
        add_web_parity(r)
    add_reference(r)
    return r


def add_web_parity(r: Results) -> None:
    """WASM against Python onnxruntime, same file and inputs (bench/webparity.py)."""
    for p in PRECISIONS:
        r.add("web.parity.estimator.hb_abs.max", variant_name(est=p),
              0.058 if p == "int8" else 6e-6, "g/dL", "lower", n=132)
        r.add("web.parity.detector.box_px.max", variant_name(det=p),
              {"fp32": 6e-5, "fp16": 0.28, "int8": 1.9}[p], "px", "lower", n=264)
    for dp, ep, hb, band in (("fp32", "fp32", 5e-6, 1.0), (*SHIPPED, 0.1, 1.0),
                             ("int8", "int8", 0.12, 1.0)):
        r.add("web.parity.e2e.hb_abs.max", variant_name(dp, ep), hb, "g/dL", "lower", n=44)
        r.add("web.parity.e2e.band_agreement", variant_name(dp, ep), band, "ratio", "higher",
              n=44)


def add_reference(r: Results) -> None:
    """What eval adds besides this machine's figures: the same accuracy on the reference
    (acc.ref.*; here equal), the kernels' distance from it, estimator |dHb| and crop
    sensitivity."""
    for m in [m for m in r.metrics if m.name.startswith("acc.")]:
        r.add("acc.ref." + m.name[4:], m.variant, m.value, m.unit, m.better, n=m.n)
    for p in PRECISIONS:
        e = variant_name(est=p)
        for ref in ("acc.", "acc.ref."):
            r.add(f"{ref}hb_abs_delta.mean", e, EST_DELTA[p], "g/dL", "lower", n=150)
            r.add(f"{ref}hb_abs_delta.max", e, 8 * EST_DELTA[p], "g/dL", "lower", n=150)
            r.add(f"{ref}crop_sensitivity.p95", e, 0.09, "g/dL", "lower", n=600)
        for dp in PRECISIONS:
            r.add("acc.kernel_spread.e2e.hb_abs.max", variant_name(dp, p),
                  0.05 if "int8" in (dp, p) else 0.0, "g/dL", "lower", n=50)
