"""What the bench page (webapp/lab.html) POSTs to `hemoedge webapp serve --collect`, checked
strictly before anything is written (hemoedge.web.collect turns it into results.json figures).

    parse_report(body: bytes) -> LabReport      # or LabReportError: one line, HTTP 400

The page posts raw timings only (the server computes every statistic with bench web's own
code): per fresh app page (one per repeat and thread count) the session-create times, the bare
session.run times of both models and the per-frame records of its captures, plus the device's
identity. Every key is expected (no unknown key), every number finite and in a plausible range,
every list bounded, the device name limited to letters, digits, space and `. _ - @ + ( )`.
Nothing in a report is ever executed or used as a path.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from hemoedge.names import ROLES

SCHEMA = "hemoedge.lab/1"
MAX_BYTES = 256 * 1024  # a standard run (2 thread counts x 3 repeats) posts about 40 kB
MAX_MS = 600_000.0  # any single timing: 10 minutes is not a figure, it is a bug
MAX_PAGES, MAX_RUNS, MAX_CAPTURES, MAX_FRAMES = 64, 1000, 20, 30
MAX_THREADS = 16  # the app's own limit (?threads=1..16)
NAME = re.compile(r"[\w .@+()-]{1,64}")
FRAME_KEYS = {"k", "totalMs", "detMs", "estMs", "preMs", "queueMs", "skipped"}


class LabReportError(ValueError):
    """A bad report: the one-line reason goes back to the page with HTTP 400."""


@dataclass(frozen=True)
class LabPage:
    """One fresh app page: `repeat` and `threads` as bench web's page_figures."""
    repeat: int
    threads: int
    threads_effective: int
    models_ready_ms: float
    session_ms: dict[str, float]  # role -> InferenceSession.create
    latency_ms: dict[str, list[float]]  # role -> bare session.run times
    captures: list[dict[str, Any]]  # {"detectEvery": n, "frames": [per-frame record]}


@dataclass(frozen=True)
class LabReport:
    name: str
    variant: str  # the pairing the page's app ran (models.json), checked against the build's
    ort_version: str
    cross_origin_isolated: bool
    user_agent: str
    hardware_concurrency: int | None
    device_memory_gb: float | None
    webgpu: dict[str, str] | str  # {vendor, architecture, description} or "unavailable"
    settings: dict[str, Any]  # runs, warmup, captures, repeats, threads the page ran
    pages: list[LabPage]


# ---------------------------------------------------------------------------- checks
def _obj(v: Any, where: str, keys: set[str]) -> dict:
    if not isinstance(v, dict):
        raise LabReportError(f"{where}: expected an object, got {type(v).__name__}")
    extra = sorted(set(v) - keys)
    if extra:
        raise LabReportError(f"{where}: unknown key {extra[0][:40]!r}")
    missing = sorted(keys - set(v))
    if missing:
        raise LabReportError(f"{where}: missing key {missing[0]!r}")
    return v


def _num(v: Any, where: str, lo: float = 0.0, hi: float = MAX_MS) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise LabReportError(f"{where}: expected a number, got {type(v).__name__}")
    if not math.isfinite(v):
        raise LabReportError(f"{where}: not a finite number")
    if not lo <= v <= hi:
        raise LabReportError(f"{where}: {v:g} is outside {lo:g}..{hi:g}")
    return float(v)


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise LabReportError(f"{where}: expected an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise LabReportError(f"{where}: {v} is outside {lo}..{hi}")
    return v


def _str(v: Any, where: str, limit: int) -> str:
    if not isinstance(v, str):
        raise LabReportError(f"{where}: expected a string, got {type(v).__name__}")
    if len(v) > limit or not v.isprintable():
        raise LabReportError(f"{where}: at most {limit} printable characters")
    return v


def _list(v: Any, where: str, lo: int, hi: int) -> list:
    if not isinstance(v, list):
        raise LabReportError(f"{where}: expected a list, got {type(v).__name__}")
    if not lo <= len(v) <= hi:
        raise LabReportError(f"{where}: {len(v)} items, expected {lo}..{hi}")
    return v


def _opt(v: Any, check, *a: Any) -> Any:
    return None if v is None else check(v, *a)


def clean_name(v: Any) -> str:
    """The device name as written to results.json: whitespace collapsed, a safe set only."""
    name = " ".join(_str(v, "name", 200).split())
    if not NAME.fullmatch(name):
        raise LabReportError("name: give the device a name of 1-64 letters, digits, spaces or "
                             ". _ - @ + ( )")
    return name


def _webgpu(v: Any) -> dict[str, str] | str:
    if v == "unavailable":
        return v
    d = _obj(v, "device.webgpu", {"vendor", "architecture", "description"})
    return {k: _str(d[k], f"device.webgpu.{k}", 200) for k in sorted(d)}


def _frame(v: Any, where: str) -> dict[str, Any]:
    d = _obj(v, where, FRAME_KEYS)
    out: dict[str, Any] = {"k": _int(d["k"], f"{where}.k", 0, MAX_FRAMES - 1)}
    for key in ("totalMs", "detMs", "estMs", "preMs"):
        out[key] = _opt(d[key], _num, f"{where}.{key}")
    out["queueMs"] = _opt(d["queueMs"], _num, f"{where}.queueMs", -1000.0)
    if not isinstance(d["skipped"], bool):
        raise LabReportError(f"{where}.skipped: expected true or false")
    out["skipped"] = d["skipped"]
    return out


def _page(v: Any, i: int) -> LabPage:
    w = f"pages[{i}]"
    d = _obj(v, w, {"repeat", "threads", "threadsEffective", "modelsReadyMs", "sessionMs",
                    "latencyMs", "captures"})
    roles = set(ROLES)
    sess = _obj(d["sessionMs"], f"{w}.sessionMs", roles)
    lat = _obj(d["latencyMs"], f"{w}.latencyMs", roles)
    caps = []
    for c, cap in enumerate(_list(d["captures"], f"{w}.captures", 0, MAX_CAPTURES)):
        cw = f"{w}.captures[{c}]"
        cd = _obj(cap, cw, {"detectEvery", "frames"})
        frames = [_frame(f, f"{cw}.frames[{k}]")
                  for k, f in enumerate(_list(cd["frames"], f"{cw}.frames", 1, MAX_FRAMES))]
        caps.append({"detectEvery": _int(cd["detectEvery"], f"{cw}.detectEvery", 1, MAX_FRAMES),
                     "frames": frames})
    return LabPage(
        repeat=_int(d["repeat"], f"{w}.repeat", 0, MAX_PAGES - 1),
        threads=_int(d["threads"], f"{w}.threads", 1, MAX_THREADS),
        threads_effective=_int(d["threadsEffective"], f"{w}.threadsEffective", 1, MAX_THREADS),
        models_ready_ms=_num(d["modelsReadyMs"], f"{w}.modelsReadyMs"),
        session_ms={r: _num(sess[r], f"{w}.sessionMs.{r}") for r in ROLES},
        latency_ms={r: [_num(x, f"{w}.latencyMs.{r}[{k}]") for k, x in enumerate(
            _list(lat[r], f"{w}.latencyMs.{r}", 1, MAX_RUNS))] for r in ROLES},
        captures=caps,
    )


def _reject_constant(name: str) -> Any:
    raise LabReportError(f"not a finite number: {name}")


def parse_report(body: bytes, max_bytes: int = MAX_BYTES) -> LabReport:
    """The checked report, or LabReportError with the first thing wrong in one line."""
    if len(body) > max_bytes:
        raise LabReportError(f"report too large ({len(body)} bytes; at most {max_bytes})")
    try:
        d = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise LabReportError("report is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise LabReportError(f"report is not valid JSON ({e.msg} at line {e.lineno} column "
                             f"{e.colno})") from None
    d = _obj(d, "report", {"schema", "name", "variant", "ortVersion", "crossOriginIsolated",
                           "device", "settings", "pages"})
    if d["schema"] != SCHEMA:
        raise LabReportError(f"schema: expected {SCHEMA!r}, got {str(d['schema'])[:40]!r}")
    dev = _obj(d["device"], "device", {"userAgent", "hardwareConcurrency", "deviceMemory",
                                       "webgpu"})
    s = _obj(d["settings"], "settings", {"runs", "warmup", "captures", "repeats", "threads"})
    settings = {"runs": _int(s["runs"], "settings.runs", 1, MAX_RUNS),
                "warmup": _int(s["warmup"], "settings.warmup", 0, MAX_RUNS),
                "captures": _int(s["captures"], "settings.captures", 0, MAX_CAPTURES),
                "repeats": _int(s["repeats"], "settings.repeats", 1, MAX_PAGES),
                "threads": [_int(t, f"settings.threads[{k}]", 1, MAX_THREADS) for k, t in
                            enumerate(_list(s["threads"], "settings.threads", 1, MAX_THREADS))]}
    if not isinstance(d["crossOriginIsolated"], bool):
        raise LabReportError("crossOriginIsolated: expected true or false")
    pages = [_page(p, i) for i, p in enumerate(_list(d["pages"], "pages", 1, MAX_PAGES))]
    seen = set()
    for p in pages:
        if (p.repeat, p.threads) in seen:
            raise LabReportError(f"pages: repeat {p.repeat} at {p.threads} thread(s) twice")
        seen.add((p.repeat, p.threads))
    return LabReport(
        name=clean_name(d["name"]),
        variant=_str(d["variant"], "variant", 64),
        ort_version=_str(d["ortVersion"], "ortVersion", 32),
        cross_origin_isolated=d["crossOriginIsolated"],
        user_agent=_str(dev["userAgent"], "device.userAgent", 512),
        hardware_concurrency=_opt(dev["hardwareConcurrency"], _int,
                                  "device.hardwareConcurrency", 1, 4096),
        device_memory_gb=_opt(dev["deviceMemory"], _num, "device.deviceMemory", 0.0, 4096.0),
        webgpu=_webgpu(dev["webgpu"]),
        settings=settings,
        pages=pages,
    )
