"""The argument parsers of `hemoedge`'s sub-commands, one function per command group, and the
argument types that range-check numeric options (a bad value is a one-line usage error, exit 2).

`hemoedge.cli.build_parser` calls every function in GROUPS with the sub-command set and the
handler factory (`handler(module, func="cli")`: the function a command calls, imported lazily).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from hemoedge.errors import one_line
from hemoedge.names import ANAEMIA_THRESHOLD_GDL, EPS, PRECISIONS, SHIPPED_VARIANT

Handler = Callable[..., Callable[[argparse.Namespace], int]]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit 2), like every other input error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _int_at_least(lo: int, what: str):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from e
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v
    parse.__name__ = what  # argparse names the type in its messages
    return parse


_positive = _int_at_least(1, "an integer >= 1")
_count = _int_at_least(0, "an integer >= 0")
_seed = _int_at_least(0, "a seed >= 0")


def _port(text: str) -> int:
    v = _int_at_least(1, "a TCP port 1-65535")(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {v}")
    return v


def _finite(lo: float | None = None, what: str = "a finite number"):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from e
        if not math.isfinite(v) or (lo is not None and v < lo):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


_positive_float = _finite(0.0, "a finite number >= 0")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _slowdowns(text: str) -> list[float]:
    try:
        out = [float(t) for t in _csv(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated factors, got {text!r}") from e
    if not out or not all(1 <= f <= 100 for f in out):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"expected factors between 1 and 100, got {text!r}")
    return out


def _ints(text: str) -> list[int]:
    try:
        out = [int(t) for t in _csv(text)]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return out


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(t) for t in text.split("/"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected --shard i/n (e.g. 1/3), got {text!r}") from e
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"--shard i/n needs 1 <= i <= n, got {text!r}")
    return i, n


def _pairings(text: str) -> list[tuple[str, str]]:
    out = []
    for item in _csv(text):
        det, sep, est = item.partition(":")
        if not sep or not det or not est:
            raise argparse.ArgumentTypeError(f"expected DET:EST pairs like int8:fp32, got {item!r}")
        out.append((det, est))
    return out


def add_data(sub: Any, handler: Handler) -> None:
    """`hemoedge data synth | video | check`."""
    data = sub.add_parser("data", help="synthetic Yakimov-layout data and camera videos")
    dsub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    s = dsub.add_parser("synth", help="write a synthetic set in the Yakimov layout")
    s.add_argument("--out", required=True, help="output folder (metadata.csv, photo/)")
    s.add_argument("--patients", type=_positive, default=250)
    s.add_argument("--sessions", type=_positive, default=20, help="MEASUREMENT_DATE groups")
    s.add_argument("--seed", type=_seed, default=0)
    s.set_defaults(func=handler("hemoedge.data.synth"))
    s = dsub.add_parser("video", help="write a Y4M fake-camera video of a hand with a known Hb")
    s.add_argument("--out", required=True, help="FILE.y4m")
    s.add_argument("--hb", type=_finite(0.1, "Hb in g/dL, a finite number >= 0.1"), required=True,
                   help="haemoglobin, g/dL")
    s.add_argument("--frames", type=_positive, default=150, help="frames at 25 fps")
    s.add_argument("--seed", type=_seed, default=0)
    s.set_defaults(func=handler("hemoedge.data.video"))
    s = dsub.add_parser("check", help="load a Yakimov-layout folder and report what it holds")
    s.add_argument("dir")
    s.add_argument("--seed", type=_seed, default=0, help="split seed")
    s.set_defaults(func=handler("hemoedge.data.yakimov"))


def add_train(sub: Any, handler: Handler) -> None:
    """`hemoedge train`."""
    s = sub.add_parser("train", help="train the detector and the estimator (recipe)")
    s.add_argument("--data", help="Yakimov-layout folder (default: synthesise one)")
    s.add_argument("--out", default="runs/train", help="output folder for checkpoints")
    s.add_argument("--recipe", default="default")
    s.add_argument("--backbone", help="override the recipe's timm backbone")
    s.add_argument("--only", choices=("detector", "estimator"), help="train one model only")
    s.add_argument("--det-epochs", type=_count, help="override the recipe's detector epochs")
    s.add_argument("--est-epochs", type=_count, help="override the recipe's estimator epochs")
    s.add_argument("--est-size", type=_positive, help="estimator input side, px (default 224; "
                   "192 for the lip recipe)")
    s.add_argument("--task", choices=("regression", "classification"),
                   help="estimator head: Hb regression (Ridge) or anaemia classification "
                        "(logistic) on the same frozen features")
    s.add_argument("--anaemia-threshold", type=_positive_float,
                   help="classification: anaemic = Hb below this, g/dL (default "
                        f"{ANAEMIA_THRESHOLD_GDL:g}, WHO)")
    s.add_argument("--est-init", help="start from this estimator checkpoint's backbone "
                   "(with --est-epochs 0: fit only the head on its features)")
    s.add_argument("--est-lr", type=_positive_float,
                   help="estimator peak learning rate (AdamW one-cycle; default 2e-3)")
    s.add_argument("--consistency", type=_positive_float,
                   help="weight of the squared difference between the answers for two jittered "
                        "crops of one nail (default 30; 0 with --feature-consistency 0: one "
                        "crop per nail per epoch)")
    s.add_argument("--feature-consistency", type=_positive_float,
                   help="weight of the relative squared difference of their pooled features "
                        "(default 3)")
    s.add_argument("--det-hours", type=_positive_float,
                   help="detector time budget in hours (ultralytics fits its schedule to it)")
    s.add_argument("--seed", type=_seed, default=0)
    s.set_defaults(func=handler("hemoedge.models.train"))


def add_stages(sub: Any, handler: Handler) -> None:
    """`hemoedge export`, `quantize`, `parity` (and `parity --web`), `eval`."""
    s = sub.add_parser("export", help="export detector and estimator to ONNX opset 13")
    s.add_argument("--detector", help="ultralytics .pt, hemoedge checkpoint or .onnx "
                   "(default: the embedded default)")
    s.add_argument("--estimator", help="hemoedge/seed checkpoint (.pt/.pth) or .onnx "
                   "(default: the embedded default)")
    s.add_argument("--out", required=True, help="artifact folder")
    s.add_argument("--simplifier", choices=("onnxslim", "onnxsim", "none"), default="onnxslim")
    s.add_argument("--trust-checkpoint", action="store_true",
                   help="load a pickled detector (an ultralytics .pt): unpickling can run code, "
                   "so only for files you trust")
    s.add_argument("--data", help="folder of real/synthetic photos for the simplifier check")
    s.set_defaults(func=handler("hemoedge.export.onnx_export"))

    s = sub.add_parser("quantize", help="make fp16 / int8 variants in an artifact folder")
    s.add_argument("art")
    s.add_argument("--variants", type=_csv, default=list(PRECISIONS))
    s.add_argument("--calib", help="Yakimov-layout folder for calibration (default: synthetic)")
    s.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    s.add_argument("--samples", type=_positive, default=64, help="detector calibration photos")
    s.add_argument("--est-samples", type=_positive,
                   help="estimator calibration crops (default 256: docs/quantize.md)")
    s.add_argument("--tolerance-hb", type=_positive_float, default=0.05,
                   help="max allowed int8 estimator Hb MAE vs fp32 on val, g/dL")
    s.add_argument("--tolerance-det-score", type=_positive_float, default=0.05,
                   help="max int8 detector |score change|: of the nails it finds, and the 99th "
                        "percentile over the top anchors (0-1)")
    s.add_argument("--tolerance-det-box-px", type=_positive_float, default=1.0,
                   help="max int8 detector |box edge change| of a nail it finds, network px")
    s.add_argument("--val-samples", type=_positive, default=32, help="validation photos for the search")
    s.add_argument("--max-steps", type=_count, help="at most this many nodes kept in float by "
                   "the exclusion search (default 8)")
    s.add_argument("--max-trials", type=_count, help="at most this many candidate models "
                   "measured by the exclusion search, helpful or not (default 128)")
    s.add_argument("--roles", type=_csv, help="models to make variants of (default: "
                   "detector,estimator)")
    s.add_argument("--calib-sampling", choices=("stratified", "spread"),
                   help="photos for calibration and the tolerance check: stratified over the "
                   "severity bands (default) or spread by patient id only")
    s.add_argument("--no-output-correction", action="store_true",
                   help="do not fit the int8 estimator's output to fp32 (y = a*y + b; kept only "
                   "when the validation error falls: docs/quantize.md)")
    s.add_argument("--quantize-decode", action="store_true",
                   help="let the search quantise the YOLO decode head too (by default it stays "
                   "in float: docs/quantize.md)")
    s.add_argument("--quantize-stem", action="store_true",
                   help="let the search quantise the input stem (the node reading the image) "
                   "too (by default it stays in float: docs/quantize.md)")
    s.add_argument("--quantize-output", action="store_true",
                   help="let the search quantise the node writing the model's output too (by "
                   "default it stays in float: docs/quantize.md)")
    s.add_argument("--engine", type=_csv, help="also build peer int8 files with these "
                   "quantisers (ort, nncf) into ART/peers/<engine>/ (docs/peers.md)")
    s.set_defaults(func=handler("hemoedge.quantize.run"))

    s = sub.add_parser("parity", help="numerical parity of every ONNX file against PyTorch "
                       "(--web: in the PWA's WASM runtime against onnxruntime, same file)")
    s.add_argument("art")
    s.add_argument("--data", help="Yakimov-layout folder (default: synthetic test split)")
    s.add_argument("--images", type=_positive, default=16, help="photos to compare on")
    s.add_argument("--results", help="append metrics to this results.json")
    s.add_argument("--web", action="store_true", help="run every file and the e2e pairings "
                   "inside the built PWA in Chromium against Python onnxruntime on the same "
                   "inputs (docs/web-parity.md)")
    s.add_argument("--ep", choices=EPS, help="with --web: the app's onnxruntime-web execution "
                   "provider (default wasm); webgpu / webnn figures carry ep=NAME, and where the "
                   "provider is unavailable web.parity.ep.available = 0 says why (exit 0)")
    s.set_defaults(func=lambda a: handler(
        "hemoedge.bench.webparity" if a.web else "hemoedge.export.parity")(a))

    s = sub.add_parser("eval", help="task accuracy of every variant and pairing")
    s.add_argument("art")
    s.add_argument("--data", help="Yakimov-layout folder (default: synthetic test split)")
    s.add_argument("--split", choices=("test", "all"), default="test",
                   help="the held-out test split (default) or every patient: a second set "
                   "that nothing was trained or calibrated on")
    s.add_argument("--results", help="append metrics to this results.json")
    s.set_defaults(func=handler("hemoedge.bench.peers", "eval_cli"))  # accuracy.cli + peers


def add_bench(sub: Any, handler: Handler) -> None:
    """`hemoedge bench cpu | web`."""
    bench = sub.add_parser("bench", help="latency benchmarks")
    bsub = bench.add_subparsers(dest="bench_command", required=True, parser_class=_Parser)
    s = bsub.add_parser("cpu", help="onnxruntime CPU latency")
    s.add_argument("art", nargs="?")
    s.add_argument("--threads", type=_ints, default=[1, 2])
    s.add_argument("--model", help="benchmark any .onnx file with the same harness")
    s.add_argument("--runs", type=_positive, default=200)
    s.add_argument("--warmup", type=_count, default=20)
    s.add_argument("--quick", action="store_true", help="fewer runs (for tests)")
    s.add_argument("--data", help="Yakimov-layout folder for real frames (default: rendered)")
    s.add_argument("--no-spin", action="store_true",
                   help="onnxruntime worker threads sleep instead of busy-waiting (shared CPUs)")
    s.add_argument("--shard", type=_shard, help="i/n: run only this shard of the variants")
    s.add_argument("--results", help="append metrics to this results.json")
    s.set_defaults(func=handler("hemoedge.bench.cpu"))
    s = bsub.add_parser("web", help="onnxruntime-web WASM latency inside the PWA in Chromium")
    s.add_argument("art")
    s.add_argument("--threads", type=_ints, default=[1, 2])
    s.add_argument("--capture", action="store_true", help="also run the 30-frame capture")
    s.add_argument("--seedloop", action="store_true",
                   help="run the tuned pairing's capture with the seed's sequential loop "
                        "(inference, then sleep 80 ms): a deliberate regression for the gate proof")
    s.add_argument("--quick", action="store_true")
    s.add_argument("--pairings", type=_pairings,
                   help="DET:EST precisions to measure, e.g. int8:fp32,int8:int8 "
                        "(default: det x est over fp32/int8; --quick: int8:fp32)")
    s.add_argument("--no-seed", action="store_true",
                   help="skip the seed reference (fp32, 1 thread, sequential loop)")
    s.add_argument("--shard", type=_shard)
    s.add_argument("--results", help="append metrics to this results.json (default "
                   "ART/results.json; with device classes or remote devices "
                   "ART/results.devices.json)")
    s.add_argument("--device-class", metavar="NAMES",
                   help="emulate slower devices, one pass each: desktop (no emulation), "
                        "mid-range-phone (4x slower CPU), low-end-phone (6x) "
                        "(docs/bench-web.md#device-classes)")
    s.add_argument("--cpu-slowdown", type=_slowdowns, metavar="F,...",
                   help="one pass per factor: every browser thread F times slower than one "
                        "core here (cgroup CFS quota + taskset; root)")
    s.add_argument("--slowdown-mode", choices=("thread", "group"),
                   help="thread (default): every browser thread its own quota of 1/F of a "
                        "core; group: one quota of 1/F for the whole browser on 1 pinned core")
    s.add_argument("--autotune", metavar="CHOICES",
                   help="build each pairing with these auto-tune choices, e.g. det=fp32,est=int8 "
                        "(the app times them and picks its setting)")
    s.add_argument("--autotune-trials", type=int, metavar="N",
                   help="with --autotune: the app also tunes in N fresh browser profiles; "
                        "web.autotune.agreement = share choosing the most common setting")
    s.add_argument("--connect", action="append", metavar="ENDPOINT",
                   help="run on a remote browser instead of the local Chromium (repeatable; "
                        "several devices run in parallel): ws://... (a Playwright server) or "
                        "http://HOST:PORT (Chrome DevTools Protocol, e.g. Chrome on Android via "
                        "adb forward) (docs/bench-web.md#remote-devices)")
    s.add_argument("--device-name", action="append", metavar="NAME",
                   help="the name of the matching --connect endpoint's device (repeatable, in "
                        "order; default: from the endpoint)")
    s.add_argument("--devices", metavar="FILE",
                   help="a TOML file of devices, one [[device]] table each with name, endpoint "
                        "and optionally app_url; measured in parallel with any --connect")
    s.add_argument("--host", default="127.0.0.1",
                   help="the app server's bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=0,
                   help="the app server's port (default: a free one; fix it for adb reverse)")
    s.add_argument("--app-url", metavar="URL",
                   help="the URL the browser opens (default: the server's address), e.g. an "
                        "HTTPS proxy in front of the server")
    s.add_argument("--ep", metavar="EPS",
                   help="onnxruntime-web execution providers, each a variant of its own, e.g. "
                        "wasm,webgpu,webnn (default wasm); figures of webgpu / webnn carry ep=NAME "
                        "and web.ep.available says whether the provider ran (docs/bench-web-ep.md)")
    s.set_defaults(func=handler("hemoedge.bench.web"))


def add_results(sub: Any, handler: Handler) -> None:
    """`hemoedge report`, `choose`, `gate`."""
    s = sub.add_parser("report", help="HTML + Markdown report from results.json")
    s.add_argument("results", nargs="+", help="one or more results.json (shards are merged)")
    s.add_argument("--html", help="output HTML (default: next to the first results.json)")
    s.add_argument("--md", help="output Markdown summary")
    s.set_defaults(func=handler("hemoedge.report.html"))

    s = sub.add_parser("choose", help="recommend the variant pairing (and backbone) to ship")
    s.add_argument("results", nargs="+", help="one or more results.json (shards are merged)")
    s.add_argument("--target", choices=("web", "cpu"), default="web")
    s.add_argument("--max-frame-ms", type=_positive_float)
    s.add_argument("--max-hb-mae-delta", type=_positive_float, default=0.05)
    s.add_argument("--max-bytes", type=_positive_float)
    s.add_argument("--max-first-visit-mb", type=_positive_float,
                   help="web: first-visit MB on the wire at most this (bench web's "
                        "web.first_visit.bytes; without it, the model files' bytes)")
    s.add_argument("--max-hb-shift", type=_positive_float,
                   help="per patient: 95th percentile of |Hb - the fp32 pipeline's Hb| at "
                        "most this, g/dL (eval's acc.ref.e2e.abs_delta.p95)")
    s.add_argument("--min-band-agreement", type=float,
                   help="share of patients (0-1) whose severity band the pairing keeps "
                        "(eval's acc.ref.e2e.band_agreement)")
    s.add_argument("--task", choices=("regression", "classification"), default="regression",
                   help="sweep results: rank the Hb regressors or the anaemia classifiers")
    s.add_argument("--max-hb-mae", type=_positive_float, help="absolute end-to-end Hb MAE limit, g/dL")
    s.add_argument("--max-hb-mae-over-best", type=_positive_float, default=0.10,
                   help="across backbones: e2e Hb MAE at most this above the most accurate "
                        "backbone's fp32 pipeline, g/dL")
    s.add_argument("--min-auroc", type=_positive_float, help="classification: e2e AUROC at least this")
    s.add_argument("--max-auroc-drop", type=_positive_float, default=0.02,
                   help="classification: e2e AUROC at most this below the backbone's fp32")
    s.add_argument("--device-class", metavar="NAME",
                   help="web: answer from this device class's figures (bench web "
                        "--device-class; default desktop, i.e. no emulation)")
    s.add_argument("--device", metavar="NAME",
                   help="web: answer from this remote device's figures (bench web --connect/"
                        "--devices); frame time from its model timings where it has no capture")
    s.add_argument("--ep", choices=EPS, help="web: choose among this onnxruntime-web execution "
                   "provider's figures only (default wasm; other providers' ep= variants are "
                   "left out)")
    s.set_defaults(func=handler("hemoedge.report.choose"))

    s = sub.add_parser("gate", help="CI gate: budgets + baseline -> pass/fail")
    s.add_argument("results", nargs="+")
    s.add_argument("--baseline", metavar="FILE",
                   help="results of a trusted run to compare with (default: ci/baseline.json "
                        "when the working directory has one, else the baseline budgets are "
                        "not judged)")
    s.add_argument("--budgets", metavar="FILE",
                   help="budgets TOML (default: the suite's own, shipped in the package)")
    s.add_argument("--update-baseline", action="store_true",
                   help="write the baseline (--baseline, default ci/baseline.json) from the "
                        "results instead of gating; prints the diff")
    s.add_argument("--junit", help="write JUnit XML here")
    s.add_argument("--md", help="write a Markdown summary here")
    s.add_argument("--benchmark-json", help="write github-action-benchmark JSON here")
    s.set_defaults(func=handler("hemoedge.gate"))


def add_webapp(sub: Any, handler: Handler) -> None:
    """`hemoedge webapp build | serve`."""
    web = sub.add_parser("webapp", help="build and serve the offline PWA")
    wsub = web.add_subparsers(dest="webapp_command", required=True, parser_class=_Parser)
    s = wsub.add_parser("build", help="build the PWA for one variant pairing")
    s.add_argument("--art", default=None, help="artifact folder (default: export the embedded default)")
    s.add_argument("--variant", default=SHIPPED_VARIANT,
                   help=f"the pairing to ship (default {SHIPPED_VARIANT}), e.g. det=int8,est=fp32")
    s.add_argument("--out", required=True)
    s.add_argument("--base", default="/", help="URL path the app is served under, e.g. "
                   "/team/hemo/ (used in the emitted _headers and nginx.conf)")
    s.add_argument("--no-compress", action="store_true",
                   help="skip the precompressed .br/.gz siblings")
    s.add_argument("--coi-serviceworker", action="store_true",
                   help="hosts that cannot set headers: the service worker adds COOP/COEP "
                        "(the first visit reloads once)")
    s.add_argument("--fp16-estimator-within", type=_positive_float, metavar="G_DL",
                   help="ship est=fp16 instead of fp32 when --results shows its e2e Hb MAE "
                        "within G_DL of fp32's")
    s.add_argument("--results", help="results.json with eval's figures (for "
                   "--fp16-estimator-within)")
    s.add_argument("--autotune-variants", metavar="CHOICES",
                   help="models the app's on-device auto-tune may choose from besides "
                        "--variant, e.g. det=int8,det=fp32,est=int8 (each ships another file; "
                        "the byte cost is printed)")
    s.add_argument("--ort-dist", metavar="DIR", help="onnxruntime-web's dist folder (default: "
                   "$HEMOEDGE_ORT_DIST, else the copy in the package, else "
                   "webapp/node_modules/onnxruntime-web/dist after `npm ci`)")
    s.add_argument("--ep", choices=EPS, default=None,
                   help="onnxruntime-web execution provider (default wasm: the app as always); "
                        "webgpu / webnn ship a larger runtime and fall back to WASM where the "
                        "provider is unavailable (docs/bench-web-ep.md)")
    s.set_defaults(func=handler("hemoedge.web.build"))
    s = wsub.add_parser("serve", help="serve a built PWA with COOP/COEP (loopback)")
    s.add_argument("dist")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=_port, default=8765)
    s.add_argument("--base", default="/", help="serve under this URL path, e.g. /team/hemo/")
    s.add_argument("--collect", metavar="RESULTS", help="also accept the bench page's reports "
                   "(DIST/lab.html on any device) and append its figures to this results.json")
    s.add_argument("--quick", action="store_true", help="with --collect: the bench page runs "
                   "bench web's quick form (few runs, one repeat)")
    s.set_defaults(func=handler("hemoedge.web.serve"))


def add_sweep(sub: Any, handler: Handler) -> None:
    """`hemoedge sweep`."""
    s = sub.add_parser("sweep", help="estimator backbones x task types x precisions: train, "
                       "export, quantise, parity, eval, CPU + web bench, one report")
    s.add_argument("--out", default="runs/sweep")
    s.add_argument("--backbones", type=_csv, help="NAME[@SIZE][:cls] timm backbones, e.g. "
                   "efficientnet_b0,mobilenetv3_small_100@192,resnet18:cls (default: the seed "
                   "work's list; --quick: two small ones)")
    s.add_argument("--data", help="Yakimov-layout folder (default: synthesise 800 patients)")
    s.add_argument("--quick", action="store_true", help="two small backbones, tiny training, "
                   "few samples and runs (CI)")
    s.add_argument("--shard", type=_shard, help="i/n: entries i, i+n, ... of the list")
    s.add_argument("--merge", nargs="+", metavar="RESULTS",
                   help="merge sweep results.json files of shards run elsewhere into --out")
    s.add_argument("--epochs", type=_count, help="backbone fine-tuning epochs (default 5; quick 1)")
    s.add_argument("--anaemia-threshold", type=_positive_float, help="classification: anaemic = Hb "
                   f"below this, g/dL (default {ANAEMIA_THRESHOLD_GDL:g}, WHO)")
    s.add_argument("--max-train-min", type=_positive_float,
                   help="skip entries whose projected fine-tuning exceeds this (default 15)")
    s.add_argument("--max-model-mb", type=_positive_float,
                   help="skip entries whose fp32 weights exceed this (default 100)")
    s.add_argument("--threads", type=_positive, help="CPU and WASM threads of the benchmarks (2)")
    s.add_argument("--detector-art", help="artifact holding the detector variants to pair "
                   "with (default: export and quantise the embedded detector once)")
    s.add_argument("--no-web", action="store_true", help="skip the browser benchmark")
    s.add_argument("--no-bench", action="store_true",
                   help="stop each entry after eval; a later run without it adds the CPU and "
                        "web benchmarks (e.g. every shard's entries on one machine)")
    s.add_argument("--restart", action="store_true",
                   help="forget finished stages (default: resume where the last run stopped)")
    s.set_defaults(func=handler("hemoedge.sweep"))


def add_run(sub: Any, handler: Handler) -> None:
    """`hemoedge run`."""
    s = sub.add_parser("run", help="every stage on the embedded default models")
    s.add_argument("--out", default="runs/default")
    s.add_argument("--quick", action="store_true", help="small data, few runs (CI)")
    s.add_argument("--data", help="Yakimov-layout folder (default: synthesise 250 patients)")
    s.set_defaults(func=handler("hemoedge.pipeline_run"))


GROUPS = (add_data, add_train, add_stages, add_bench, add_results, add_webapp, add_sweep, add_run)
