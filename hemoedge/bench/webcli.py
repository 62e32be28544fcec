"""`hemoedge bench web`'s command line: the config from the parsed options
(`config_from_args`, `slowdowns_from_args`), the command recorded for it (`command_line`),
where its figures go (`results_path`), and `cli`, which runs it and prints the targets."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemoedge.bench.webdevices import _cli_remote, load_devices
from hemoedge.bench.webmetrics import summary_lines
from hemoedge.errors import BenchError, HemoedgeError
from hemoedge.report.results import Results, append_stage, invocation

if TYPE_CHECKING:
    from hemoedge.bench.web import WebBenchConfig


def config_from_args(args: Any) -> WebBenchConfig:
    from hemoedge.bench import web

    kw: dict[str, Any] = {
        "art": Path(args.art), "threads": tuple(args.threads or (1, 2)),
        "capture": bool(getattr(args, "capture", False)), "shard": getattr(args, "shard", None),
        "seedloop": bool(getattr(args, "seedloop", False)),
        "command": invocation(args, command_line(args)),
    }
    if getattr(args, "pairings", None):
        kw["pairings"] = tuple(tuple(p) for p in args.pairings)
    if getattr(args, "no_seed", False):
        kw["seed"] = False
    slow = slowdowns_from_args(args)
    if slow != (None,):
        kw["cpu_slowdowns"] = slow
    if getattr(args, "slowdown_mode", None):
        kw["cpu_mode"] = args.slowdown_mode
    if getattr(args, "autotune", None):
        from hemoedge.web.build import parse_autotune

        kw["autotune"] = parse_autotune(args.autotune)
    if getattr(args, "autotune_trials", None):
        kw["autotune_trials"] = int(args.autotune_trials)
    connect = list(getattr(args, "connect", None) or ())
    names = list(getattr(args, "device_name", None) or ())
    if len(names) > len(connect):
        raise BenchError(f"{len(names)} --device-name(s) for {len(connect)} --connect "
                         "endpoint(s)" if connect else
                         "--device-name names a --connect endpoint's device; no --connect given")
    if connect or getattr(args, "devices", None):
        names += [""] * (len(connect) - len(names))
        urls = [""] * len(connect)
        if getattr(args, "devices", None):
            for d in load_devices(Path(args.devices)):
                connect.append(d["endpoint"])
                names.append(d["name"])
                urls.append(d.get("app_url", ""))
        kw["connect"], kw["device_names"] = tuple(connect), tuple(names)
        if any(urls):
            kw["device_app_urls"] = tuple(urls)
    if getattr(args, "host", None):
        kw["host"] = args.host
    if getattr(args, "port", None):
        kw["port"] = int(args.port)
    if getattr(args, "app_url", None):
        kw["app_url"] = args.app_url
    if getattr(args, "ep", None):
        from hemoedge.web.ep import parse_eps

        kw["eps"] = parse_eps(args.ep)
    return web.WebBenchConfig.quick_form(**kw) if getattr(args, "quick", False) else \
        web.WebBenchConfig(**kw)


def slowdowns_from_args(args: Any) -> tuple[float | None, ...]:
    """--device-class NAMES and --cpu-slowdown FACTORS -> the passes, in the order given
    (classes first); (None,) when neither is given."""
    from hemoedge.bench.browser import DEVICE_CLASSES

    out: list[float | None] = []
    for name in (getattr(args, "device_class", None) or "").split(","):
        name = name.strip()
        if not name:
            continue
        if name not in DEVICE_CLASSES:
            raise BenchError(f"unknown --device-class {name!r}; expected one of "
                             f"{', '.join(DEVICE_CLASSES)} (or --cpu-slowdown F)")
        out.append(DEVICE_CLASSES[name])
    out += list(getattr(args, "cpu_slowdown", None) or [])
    return tuple(dict.fromkeys(out)) or (None,)


def command_line(args: Any) -> str:
    argv = ["bench", "web", str(args.art), "--threads", ",".join(map(str, args.threads or (1, 2)))]
    if getattr(args, "capture", False):
        argv.append("--capture")
    if getattr(args, "quick", False):
        argv.append("--quick")
    if getattr(args, "shard", None):
        argv += ["--shard", "/".join(map(str, args.shard))]
    if getattr(args, "seedloop", False):
        argv.append("--seedloop")
    if getattr(args, "pairings", None):
        argv += ["--pairings", ",".join(f"{d}:{e}" for d, e in args.pairings)]
    if getattr(args, "no_seed", False):
        argv.append("--no-seed")
    if getattr(args, "device_class", None):
        argv += ["--device-class", args.device_class]
    if getattr(args, "cpu_slowdown", None):
        argv += ["--cpu-slowdown", ",".join(f"{f:g}" for f in args.cpu_slowdown)]
    if getattr(args, "slowdown_mode", None):
        argv += ["--slowdown-mode", args.slowdown_mode]
    if getattr(args, "autotune", None):
        argv += ["--autotune", args.autotune]
    if getattr(args, "autotune_trials", None):
        argv += ["--autotune-trials", str(args.autotune_trials)]
    for ep in getattr(args, "connect", None) or ():
        argv += ["--connect", ep]
    for name in getattr(args, "device_name", None) or ():
        argv += ["--device-name", name]
    if getattr(args, "devices", None):
        argv += ["--devices", str(args.devices)]
    if getattr(args, "host", None) and args.host != "127.0.0.1":
        argv += ["--host", args.host]
    if getattr(args, "port", None):
        argv += ["--port", str(args.port)]
    if getattr(args, "app_url", None):
        argv += ["--app-url", args.app_url]
    if getattr(args, "ep", None):
        argv += ["--ep", args.ep]
    if getattr(args, "results", None):
        argv += ["--results", str(args.results)]
    return "hemoedge " + shlex.join(argv)


def results_path(args: Any) -> Path:
    """--results, else ART/results.json; emulated device classes and remote devices
    (--connect, --devices) go to ART/results.devices.json by default, so the desktop figures the
    gate reads stay on their own (a desktop budget would also read a remote device's figure)."""
    if getattr(args, "results", None):
        return Path(args.results)
    other = slowdowns_from_args(args) != (None,) or bool(
        getattr(args, "connect", None) or getattr(args, "devices", None))
    return Path(args.art) / ("results.devices.json" if other else "results.json")


def cli(args: Any) -> int:
    return main(config_from_args(args), results_path(args))


def main(cfg: Any, out: Path) -> int:
    """`hemoedge bench web` once its config (web.WebBenchConfig) and results file are known
    (also what `hemoedge run` calls): run, merge into `out`, print the targets."""
    from hemoedge.bench import web
    from hemoedge.bench.browser import device_class_of

    try:
        new = web.run(cfg)
    except HemoedgeError:
        raise
    except OSError as e:  # e.g. the work folder or the video could not be written
        raise BenchError(f"bench web: {e}") from e
    if cfg.connect:
        return _cli_remote(cfg, new, out)
    append_stage(out, new)
    tuned = new.env["web_bench"]["tuned"]
    print(f"bench web ({new.env['browser']}, onnxruntime-web {new.env['onnxruntime_web']}, "
          f"crossOriginIsolated): targets, value [95 % interval]")
    for f in cfg.cpu_slowdowns:
        sub = by_device_class(new, f)
        if len(cfg.cpu_slowdowns) > 1 or f is not None:
            env = next((p for p in new.env.get("web_bench_passes", [new.env["web_bench"]])
                        if p.get("device_class", {}).get("cpu_slowdown") == (f or 1.0)), {})
            load = env.get("load_avg")
            print(f"device class {device_class_of(f)} (cpu slowdown {f or 1:g}x"
                  + (f"; load average {load['before'][0]:.2f} before, {load['after'][0]:.2f} "
                     "after" if load else "") + "):")
        print("\n".join(summary_lines(sub, tuned)))
    for m in new.metrics:
        if m.name.startswith("web.slowdown."):
            print(f"  {m.name} [{m.variant}] threads {m.params.get('threads')}: "
                  f"{m.params['reference_p50_ms']:.1f} -> {m.params['p50_ms']:.1f} ms = "
                  f"{m.value:.2f}x (asked {m.params['factor_asked']:g}x; "
                  f"{m.params['ratio_over_asked']:.2f} of it)")
    print(f"{len(new.metrics)} metrics appended to {out}")
    return 0


def by_device_class(res: Results, slowdown: float | None) -> Results:
    """The metrics of one device class (no device_class param = desktop, no emulation)."""
    from hemoedge.bench.browser import device_class_of
    from hemoedge.names import figure_device_class

    name = device_class_of(slowdown)
    out = Results(env=res.env, variants=res.variants, commands=res.commands)
    out.metrics = [m for m in res.metrics if figure_device_class(m.params) == name]
    return out
