"""`hemoedge bench web --connect / --devices`: remote devices, all measured at once against the
same builds (`run_remote`), the devices file (`load_devices`), and what the CLI prints and
exits with for them (`_cli_remote`)."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemoedge.bench.browser_page import first_line
from hemoedge.bench.webmetrics import summary_lines
from hemoedge.bench.webserve import serve_counting
from hemoedge.errors import BenchError
from hemoedge.names import ROLES
from hemoedge.report.results import Results, append_stage, variant_name

if TYPE_CHECKING:
    from hemoedge.bench.web import WebBenchConfig, _Prepared

# bench web's one logger: _device_tag on it tags the lines of web, webrun and this module
log = logging.getLogger("hemoedge.bench.web")


def run_remote(cfg: WebBenchConfig) -> Results:
    """One pass per --connect endpoint, all devices at once (each in a thread of its own, with
    its own Playwright: the sync API is per thread), against the same builds, into one Results.
    Every metric carries the device (name, user agent, hardwareConcurrency) in its params, so
    devices merge without overriding each other or the local run. An endpoint that cannot be
    reached, or whose browser goes away mid-run, fails that device only: one line in the log, a
    web.device.available = 0 figure, and env.web_devices[NAME] = {"status": "failed",
    "reason": ...}; the other devices finish. env.web_devices lists every device."""
    from hemoedge.artifact import Artifact
    from hemoedge.bench.web import _prepare, _run_pass, _units

    art = Artifact.load(cfg.art)
    units, tuned = _units(cfg, {r: art.precisions(r) for r in ROLES}, True)
    n = len(cfg.connect)
    if n > 1 and len({(u.det, u.est, u.ep) for u in units}) > 1 and (
            cfg.port or any(cfg.device_app_url(i) for i in range(n))):
        raise BenchError("several devices measured at once share one server per build, so a "
                         "fixed --port or an app URL can serve one build only: add --quick or "
                         "one --pairings (or leave out --port and the app URLs)")
    res = Results()
    if cfg.command:
        res.commands.append(cfg.command)
    outcome: dict[int, tuple[Results | None, str | None, float]] = {}

    def one(i: int, shared: _Prepared) -> None:
        name, ep, t0 = cfg.device_name(i), cfg.connect[i], time.perf_counter()
        try:
            got = _run_pass(cfg, None, endpoint=ep, device=name, shared=shared,
                            app_url=cfg.device_app_url(i))
            outcome[i] = (got, None, time.perf_counter() - t0)
            log.info("bench web: device %s finished in %.0f s", name, outcome[i][2])
        except Exception as e:  # any failure fails this device only
            from playwright.sync_api import Error as PlaywrightError

            msg = first_line(e)
            if not isinstance(e, (BenchError, PlaywrightError, OSError)):
                msg = f"{type(e).__name__}: {msg}"
                log.debug("device %s", name, exc_info=True)
            outcome[i] = (None, msg, time.perf_counter() - t0)
            log.error("bench web: device %s (%s) failed: %s", name, ep, msg)

    t_all = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if n > 1:  # interleaved log lines: say whose they are
            for lg in (log, logging.getLogger("hemoedge.bench.browser")):
                lg.addFilter(_device_tag)
                stack.callback(lg.removeFilter, _device_tag)
        shared = _prepare(cfg, units, stack, remote=True)
        if n > 1:  # one server per build for all devices (fixed --port: one build, see above)
            shared.servers = {}
            for dist in shared.dists.values():
                url, _ = stack.enter_context(serve_counting(dist, cfg.host, cfg.port,
                                                            video=shared.feed))
                shared.servers[dist] = url
        threads = [threading.Thread(target=one, args=(i, shared), daemon=True,
                                    name=f"device-{cfg.device_name(i)}") for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            while th.is_alive():  # short joins: Ctrl-C still reaches the main thread
                th.join(0.5)
    wall = time.perf_counter() - t_all
    devices: dict[str, dict[str, Any]] = {}
    for i, ep in enumerate(cfg.connect):
        name = cfg.device_name(i)
        one_res, reason, secs = outcome.get(i, (None, "the device's thread ended early", 0.0))
        entry: dict[str, Any] = {"endpoint": ep, "app_url": cfg.device_app_url(i),
                                 "seconds": round(secs, 1)}
        if one_res is None:
            devices[name] = {**entry, "status": "failed", "reason": reason}
            res.add("web.device.available", "", 0.0, unit="", better="higher", device=name,
                    endpoint=ep)
            continue
        res.metrics += one_res.metrics
        for k, v in one_res.variants.items():
            res.variants.setdefault(k, {}).update(v)
        wb = one_res.env["web_bench"]
        ident = wb.pop("device", {})
        devices[name] = {**entry, "status": "ok", "browser": one_res.env["browser"],
                         "onnxruntime_web": one_res.env["onnxruntime_web"],
                         **{k: v for k, v in ident.items() if k not in ("name", "endpoint")},
                         "web_bench": wb}
        res.env.setdefault("onnxruntime_web", one_res.env["onnxruntime_web"])
        res.add("web.device.available", "", 1.0, unit="", better="higher", device=name,
                endpoint=ep)
    # per device, not top-level web_bench: a merge would replace the local run's settings
    res.env["web_devices"] = devices
    res.env["web_devices_run"] = {"parallel": n > 1, "seconds": round(wall, 1),
                                  "tuned": variant_name(*tuned),
                                  "units": [u.label for u in units],
                                  "shared_server": n > 1}
    return res


def _device_tag(record: logging.LogRecord) -> bool:
    """A log filter: a device thread's lines start with [NAME]."""
    th = threading.current_thread().name
    if th.startswith("device-") and not getattr(record, "device_tagged", False):
        record.msg = f"[{th[len('device-'):]}] {record.msg}"
        record.device_tagged = True
    return True


DEVICE_KEYS = ("name", "endpoint", "app_url")


def load_devices(path: Path) -> list[dict[str, str]]:
    """A devices file (TOML): one `[[device]]` table per device with `name`, `endpoint`
    (ws://... or http://HOST:PORT, as --connect) and optionally `app_url` (the URL that
    device's browser opens). Any error is one BenchError line naming the file (exit 2)."""
    import tomllib

    from hemoedge.bench.browser import endpoint_kind

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BenchError(f"--devices {path}: cannot read it ({e.strerror or e})") from e
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"--devices {path}: not valid TOML: {first_line(e)}") from e
    extra = sorted(set(data) - {"device"})
    if extra:
        raise BenchError(f"--devices {path}: unknown top-level key {extra[0]!r}; expected "
                         "[[device]] tables only")
    devs = data.get("device")
    if not isinstance(devs, list) or not devs or not all(isinstance(d, dict) for d in devs):
        raise BenchError(f"--devices {path}: no devices; expected one [[device]] table per "
                         "device with name and endpoint")
    seen: set[str] = set()
    out = []
    for k, d in enumerate(devs, 1):
        where = f"--devices {path}: device {k}"
        bad = sorted(set(d) - set(DEVICE_KEYS))
        if bad:
            raise BenchError(f"{where}: unknown key {bad[0]!r} (expected "
                             f"{', '.join(DEVICE_KEYS)})")
        for key in ("name", "endpoint"):
            if not isinstance(d.get(key), str) or not d[key].strip():
                raise BenchError(f"{where}: needs {key} = \"...\" (a non-empty string)")
        if "app_url" in d and (not isinstance(d["app_url"], str)
                               or not d["app_url"].startswith(("http://", "https://"))):
            raise BenchError(f"{where} ({d['name']}): app_url must be an http(s):// URL, got "
                             f"{d['app_url']!r}")
        try:
            endpoint_kind(d["endpoint"])
        except BenchError as e:
            raise BenchError(f"{where} ({d['name']}): {e}") from None
        if d["name"] in seen:
            raise BenchError(f"{where}: the name {d['name']!r} is used twice")
        seen.add(d["name"])
        out.append({k: d[k].strip() for k in DEVICE_KEYS if k in d})
    return out


EXIT_DEVICE_FAILED = 3  # some devices failed, the others' figures are written


def _cli_remote(cfg: WebBenchConfig, new: Results, out: Path) -> int:
    """Write the devices' figures (and the failed devices' entries), one block per device.
    Exit 0 when every device finished, 3 (EXIT_DEVICE_FAILED) when some failed (after writing
    the others' figures), 2 (BenchError) when every device failed."""
    old = Results.load_or_new(out).env.get("web_devices", {}) if out.is_file() else {}
    devices = new.env.get("web_devices", {})
    new.env["web_devices"] = {**old, **devices}  # devices of earlier runs stay listed
    append_stage(out, new)
    run_env = new.env.get("web_devices_run", {})
    tuned = run_env.get("tuned", "")
    for name, d in devices.items():
        if d["status"] != "ok":
            print(f"device {name} ({d['endpoint']}): failed: {d['reason']}")
            continue
        print(f"device {name} ({d['endpoint']}): {d['browser']}, "
              f"hardwareConcurrency {d.get('hardware_concurrency')}, onnxruntime-web "
              f"{d.get('onnxruntime_web')}; {d.get('user_agent')}; {d['seconds']:.0f} s")
        sub = Results(env=new.env, variants=new.variants, commands=new.commands)
        sub.metrics = [m for m in new.metrics if m.params.get("device") == name
                       and m.name != "web.device.available"]
        print("\n".join(summary_lines(sub, tuned)))
    failed = [n for n, d in devices.items() if d["status"] != "ok"]
    print(f"{len(new.metrics)} metrics appended to {out}; {len(devices) - len(failed)} of "
          f"{len(devices)} device(s) finished"
          + (f" in parallel in {run_env['seconds']:.0f} s" if run_env.get("parallel") else ""))
    if devices and len(failed) == len(devices):
        raise BenchError(f"bench web: every device failed ({len(devices)}): "
                         + "; ".join(f"{n}: {d['reason']}" for n, d in devices.items()))
    if failed:
        print(f"bench web: device(s) failed: {', '.join(failed)} (exit "
              f"{EXIT_DEVICE_FAILED})", file=sys.stderr)
        return EXIT_DEVICE_FAILED
    return 0
