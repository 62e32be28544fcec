"""`hemoedge webapp serve DIST --collect RESULTS.json`: the bench page's server side.

The build ships `lab.html` (webapp/lab.html, webapp/src/lab.js). Opened on any device, it runs
the app in a same-origin iframe at `index.html?bench=1&threads=T`, drives the same bench hook
`hemoedge bench web` drives (one fresh page per repeat and thread count: runModel per model,
then captures from a fake camera), and POSTs the raw timings here. This server:

    GET  <base>__collect                  the settings every device runs (bench web's defaults,
                                          or its quick form) and the fake camera's frames
    GET  <base>__collect/frame/<i>.jpg    frame i of that camera: `hemoedge data video`'s hand
                                          (what bench web's fake camera plays), as JPEG
    POST <base>__collect                  a report (hemoedge.web.labreport): checked strictly,
                                          400 + one line when bad, else appended to RESULTS.json

Figures are computed with bench web's own code (webmetrics.Pool + emit), so they have the same
names and statistics as a local `bench web` run, and they carry the device's identity in their
params (device, user_agent, hardware_concurrency, via "lab page"): devices never replace each
other nor the local run's figures; the same device reporting again (same name and browser)
replaces its earlier figures, like any re-run of a stage (results.merge_stage). A plain static
host has no such endpoint (404/501): the page then shows its figures only.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemoedge.errors import HemoedgeError, check_output_file
from hemoedge.names import ROLE_KEY, ROLES, parse_variant
from hemoedge.report.results import Results, append_stage, variant_name
from hemoedge.web.labreport import SCHEMA, LabReport, LabReportError, parse_report
from hemoedge.web.serve import Handler, _check_dist
from hemoedge.web.testvideo import FPS as VIDEO_FPS
from hemoedge.web.testvideo import JPEG_QUALITY, TestVideo

if TYPE_CHECKING:
    from hemoedge.bench.web import WebBenchConfig

log = logging.getLogger(__name__)

ENDPOINT = "__collect"  # under the app's base path; relative to lab.html: './__collect'
VIA = "lab page"  # params.via of every figure the page reports
VIDEO_HB = 9.5  # g/dL the fake camera's hand shows (bench web's default video)
VIDEO_FRAMES = 50  # 2 s at 25 fps, looped by the page (bench web's Y4M: 150 frames)


def _hand_frames(n: int) -> list:
    from hemoedge.data.video import frames

    return [img for _, img in frames(VIDEO_HB, n, 0)]


class Collector:
    """The state of one `webapp serve --collect`: the build, the results file, the settings
    every device runs, the fake camera's frames (rendered on first request), one lock."""

    def __init__(self, dist: str | Path, results: str | Path, quick: bool = False,
                 command: str = "", frames: Callable[[int], list] | None = None,
                 video_frames: int = VIDEO_FRAMES, bench: WebBenchConfig | None = None):
        """quick: bench web's quick form (few runs, one repeat); `bench`: other settings
        (runs, warmup, captures, repeats, threads); `frames(n)`: the fake camera's n RGB
        frames (default: `hemoedge data video`'s hand)."""
        from hemoedge.bench.web import WebBenchConfig
        from hemoedge.errors import ResultsError

        self.dist = _check_dist(dist)
        self.results = Path(results)
        self.variant, self.sources = _build_pairing(self.dist)
        check_output_file(self.results, "--collect results file")
        if self.results.is_file():
            try:
                Results.load(self.results)
            except ResultsError as e:
                raise HemoedgeError(f"--collect {e}") from None
        self.bench = bench or (WebBenchConfig.quick_form(art=self.dist) if quick
                               else WebBenchConfig(art=self.dist))
        self.command = command
        self.video_frames = video_frames
        frames_fn = frames or _hand_frames
        self.video = TestVideo(lambda: frames_fn(video_frames), VIDEO_FPS, "collect")
        self.lock = threading.Lock()
        self.received = 0

    # ---------------------------------------------------------------- GET
    def settings(self) -> dict[str, Any]:
        b = self.bench
        return {"schema": SCHEMA, "variant": self.variant,
                "runs": b.runs, "warmup": b.warmup, "captures": b.captures,
                "repeats": b.repeats, "threads": list(b.threads),
                "video": self.video.spec(self.video_frames, f"./{ENDPOINT}/frame/{{i}}.jpg")}

    def frame_jpeg(self, i: int) -> bytes | None:
        return self.video.jpeg(i)

    # ---------------------------------------------------------------- POST
    def receive(self, body: bytes, client: str = "") -> dict[str, Any]:
        """Check a report, append its figures; the page's answer. LabReportError: HTTP 400."""
        rep = parse_report(body)
        if rep.variant != self.variant:
            raise LabReportError(f"the page ran {rep.variant} but this server serves "
                                 f"{self.variant}: reload the bench page (an old build?)")
        asked = {k: v for k, v in self.settings().items()
                 if k in ("runs", "warmup", "captures", "repeats", "threads")}
        if rep.settings != asked:
            raise LabReportError(f"the page ran {rep.settings}, this server asks {asked}: "
                                 "reload the bench page")
        new = self.to_results(rep, client)
        with self.lock:
            old = Results.load_or_new(self.results).env.get("web_devices", {})
            new.env["web_devices"] = {**old, **new.env["web_devices"]}
            append_stage(self.results, new)
            self.received += 1
        figures = {f"{m.name} {m.variant} t{m.params.get('threads')}": round(m.value, 2)
                   for m in new.metrics if m.name.endswith(".p50")}
        frame = [m for m in new.metrics if m.name == "web.frame_ms.p50"]
        line = ", ".join(f"frame p50 {m.value:.1f} ms at {m.params.get('threads')} thread(s)"
                         for m in frame) or "no frame figure (no capture)"
        print(f"collect: {rep.name}: {line}; {len(new.metrics)} figures appended to "
              f"{self.results}", flush=True)
        return {"ok": True, "device": rep.name, "appended": len(new.metrics),
                "results": self.results.name, "figures": figures}

    def to_results(self, rep: LabReport, client: str = "") -> Results:
        """The report's figures, computed as bench web computes its own (webmetrics.emit)."""
        from hemoedge.bench.webmetrics import CAMERA_HOOK, Pool, emit

        pair = parse_variant(self.variant)
        det, est = pair["det"], pair["est"]
        v, pool = self.variant, Pool()
        for p in rep.pages:
            t = p.threads
            pool.effective[v, t].add(p.threads_effective)
            pool.timings["web.models_ready_ms", v, t][p.repeat].append(p.models_ready_ms)
            for role, prec in zip(ROLES, (det, est), strict=True):
                mv = variant_name(**{ROLE_KEY[role]: prec})
                pool.effective[mv, t].add(p.threads_effective)
                pool.timings[f"web.{role}.session_ms", mv, t][p.repeat].append(
                    p.session_ms[role])
                pool.timings[f"web.{role}.latency_ms", mv, t][p.repeat] += p.latency_ms[role]
            fs = pool.frame(("web", v, t))
            for cap in p.captures:
                rec = {**cap, "repeat": p.repeat}
                fs.add(rec, cap["detectEvery"])
                pool.captures[v, t].append(rec)
        res = Results()
        res.add_command(self.command)
        emit(self.bench, pool, res, (det, est), (self.video_frames, float(VIDEO_FPS)),
             CAMERA_HOOK)
        ident: dict[str, Any] = {"device": rep.name, "user_agent": rep.user_agent,
                                 "hardware_concurrency": rep.hardware_concurrency, "via": VIA}
        if rep.device_memory_gb is not None:
            ident["device_memory_gb"] = rep.device_memory_gb
        ident["webgpu"] = webgpu_text(rep.webgpu)
        for m in res.metrics:
            m.params.update(ident)
        res.variants[v] = dict(self.sources)
        for role, prec in zip(ROLES, (det, est), strict=True):
            res.variants[variant_name(**{ROLE_KEY[role]: prec})] = {role: self.sources[role]}
        # per device only: a top-level env key would replace the local run's
        res.env["web_devices"] = {rep.name: {
            "status": "ok", "via": VIA, "browser": f"{VIA}, onnxruntime-web {rep.ort_version}",
            "user_agent": rep.user_agent, "hardware_concurrency": rep.hardware_concurrency,
            "device_memory_gb": rep.device_memory_gb, "webgpu": rep.webgpu,
            "cross_origin_isolated": rep.cross_origin_isolated,
            "onnxruntime_web": rep.ort_version, "client": client,
            "received": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "web_bench": {**rep.settings, "video": f"hemoedge data video --hb {VIDEO_HB:g} "
                          f"(first {self.video_frames} frames, JPEG q{JPEG_QUALITY}, looped)"}}}
        return res


def webgpu_text(info: dict[str, str] | str) -> str:
    """'unavailable', or 'vendor architecture (description)' of the WebGPU adapter."""
    if isinstance(info, str):
        return info
    main = " ".join(x for x in (info.get("vendor"), info.get("architecture")) if x)
    desc = info.get("description")
    return (main + (f" ({desc})" if desc else "")).strip() or "adapter without info"


def _build_pairing(dist: Path) -> tuple[str, dict[str, str]]:
    """(variant, {role: model source file}) of a build."""
    try:
        bm = json.loads((dist / "build-manifest.json").read_text())
        models = json.loads((dist / bm["files"]["src/models.json"]["file"]).read_text())
        variant = bm["variant"]
        sources = {r: models[r]["source"] for r in ROLES}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HemoedgeError(f"{dist}: not a webapp build with a readable build-manifest.json "
                            f"and models.json ({type(e).__name__}: {e}); rebuild it with "
                            "`hemoedge webapp build`") from None
    if not re.fullmatch(r"det=\w+,est=\w+", str(variant)):
        raise HemoedgeError(f"{dist}/build-manifest.json: variant {variant!r} is not a pairing")
    if bm.get("ep", "wasm") != "wasm":  # its figures would pass for WASM's (no ep= key here)
        raise HemoedgeError(f"{dist}: built with --ep {bm['ep']}; the bench page collects WASM "
                            "builds only (measure a provider with `hemoedge bench web ART --ep "
                            f"{bm['ep']} --connect ENDPOINT`)")
    return variant, sources


# ---------------------------------------------------------------------------- HTTP
class CollectHandler(Handler):
    """The static server plus the three collect routes (see the module docstring)."""

    collector: Collector  # set by handler_for

    def _route(self) -> str | None:
        """The path under <base>__collect ('' for the endpoint itself), or None."""
        url = self.path.split("?", 1)[0].split("#", 1)[0]
        top = self.base + ENDPOINT
        if url == top:
            return ""
        return url[len(top) + 1:] if url.startswith(top + "/") else None

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json")

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            super().do_GET()
            return
        if route == "":
            self._json(200, self.collector.settings())
            return
        if route.startswith("frame/"):
            self.collector.video.send(self, route[len("frame/"):])
            return
        self._json(404, {"error": "no such frame"})

    def do_POST(self) -> None:
        if self._route() != "":
            self.close_connection = True
            self._json(405, {"error": f"POST only to {self.base}{ENDPOINT}"})
            return
        from hemoedge.web.labreport import MAX_BYTES

        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BYTES:
            self.close_connection = True  # the body is not read
            why = (f"report too large ({n} bytes; at most {MAX_BYTES})" if n > MAX_BYTES
                   else "a report needs a Content-Length")
            self._json(400, {"error": why})
            return
        body = self.rfile.read(n)
        try:
            answer = self.collector.receive(body, self.client_address[0])
        except LabReportError as e:
            log.warning("collect: rejected a report from %s: %s", self.client_address[0], e)
            self._json(400, {"error": str(e)})
            return
        self._json(200, answer)


def handler_for(collector: Collector) -> type[CollectHandler]:
    return type("BoundCollectHandler", (CollectHandler,), {"collector": collector})
