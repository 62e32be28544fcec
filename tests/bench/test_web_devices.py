"""`hemoedge bench web` on several devices at once: a `playwright run-server` endpoint and a
second local Chromium's DevTools endpoint stand in for two remote devices, measured in parallel;
a stand-in killed mid-run fails its device only; the devices file is validated up front; the
report's device table and per-device plot."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from hemoedge.errors import BenchError

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
import webtiny as tiny
from test_web_remote import _free_port, cdp_chromium
from webhelp import CHROMIUM, ort_installed

PLAYWRIGHT = Path(sys.executable).parent / "playwright"
LOCAL_PARAMS = {"threads": 1, "threads_effective": 1}  # a local run's figure: no device


def _needs_browser() -> None:
    if not Path(CHROMIUM).exists() or not ort_installed():
        pytest.skip("needs Chromium and webapp/node_modules")


@contextlib.contextmanager
def run_server():
    """`playwright run-server` on a free loopback port: yields a ws:// endpoint whose
    launch-options start Debian's Chromium (--unsafe lets the client name the executable)."""
    if not PLAYWRIGHT.exists():
        pytest.skip("no playwright command next to this Python")
    port = _free_port()
    # its own process group: the `playwright` script starts a node driver, and killing the
    # script alone would leave the server (and its Chromium) running
    proc = subprocess.Popen([str(PLAYWRIGHT), "run-server", "--port", str(port), "--host",
                             "127.0.0.1", "--unsafe"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None:
                pytest.fail("playwright run-server exited at start")
            time.sleep(0.2)
        else:
            pytest.fail("playwright run-server did not listen within 30 s")
        opts = json.dumps({"executablePath": CHROMIUM, "headless": True,
                           "args": ["--no-sandbox", "--disable-gpu"]})
        yield f"ws://127.0.0.1:{port}/?launch-options={urllib.parse.quote(opts)}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


# ----------------------------------------------------------------------------- devices file
@pytest.mark.parametrize("text, message", [
    ("[[device]]\nname = 'a'\nendpoint = ", "not valid TOML"),
    ("", "no devices"),
    ("[[device]]\nname = 'a'\n", "needs endpoint"),
    ("[[device]]\nendpoint = 'http://127.0.0.1:9222'\n", "needs name"),
    ("[[device]]\nname = 'a'\nendpoint = '127.0.0.1:9222'\n", "expected ws://"),
    ("[[device]]\nname = 'a'\nendpoint = 'http://h:1'\nport = 3\n", "unknown key 'port'"),
    ("[[device]]\nname = 'a'\nendpoint = 'http://h:1'\napp_url = 'h:8765'\n", "app_url"),
    ("[[device]]\nname = 'a'\nendpoint = 'http://h:1'\n[[device]]\nname = 'a'\n"
     "endpoint = 'http://h:2'\n", "used twice"),
    ("devices = 1\n", "unknown top-level key"),
])
def test_a_bad_devices_file_is_one_line_exit_2(tmp_path, capsys, text, message):
    from hemoedge.cli import main

    f = tmp_path / "devices.toml"
    f.write_text(text)
    rc = main(["bench", "web", str(tmp_path), "--quick", "--devices", str(f),
               "--results", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and message in err and str(f) in err, err
    assert not (tmp_path / "r.json").exists()


def test_devices_file_and_connect_make_one_device_list(tmp_path):
    from hemoedge.bench.web import config_from_args, results_path
    from hemoedge.cli import build_parser

    f = tmp_path / "devices.toml"
    f.write_text('[[device]]\nname = "pixel-7"\nendpoint = "http://127.0.0.1:9222"\n'
                 'app_url = "https://bench.example.lan/"\n\n'
                 '[[device]]\nname = "lab"\nendpoint = "ws://10.0.0.2:3000/"\n')
    args = build_parser().parse_args(["bench", "web", str(tmp_path), "--connect",
                                      "http://127.0.0.1:9333", "--devices", str(f)])
    args.invocation = ""
    cfg = config_from_args(args)
    assert cfg.connect == ("http://127.0.0.1:9333", "http://127.0.0.1:9222",
                           "ws://10.0.0.2:3000/")
    assert [cfg.device_name(i) for i in range(3)] == ["cdp@127.0.0.1:9333", "pixel-7", "lab"]
    assert [cfg.device_app_url(i) for i in range(3)] == [None, "https://bench.example.lan/",
                                                         None]
    # a desktop budget would read a device's figure: devices write next to the desktop file
    assert results_path(args) == tmp_path / "results.devices.json"
    with pytest.raises(BenchError, match="named 'pixel-7'"):
        type(cfg)(art=tmp_path, connect=("http://a:1", "http://b:1"),
                  device_names=("pixel-7", "pixel-7"))


# ----------------------------------------------------------------------------- in the browser
@pytest.mark.browser
def test_two_devices_in_parallel_merge_next_to_a_local_run(tmp_path, capsys):
    """A Playwright server and a DevTools endpoint, one run: both devices' figures arrive, each
    with its name; an earlier local run's figures of the same names stay untouched."""
    _needs_browser()
    from hemoedge.cli import main
    from hemoedge.report.results import Results, append_stage

    art = tiny.write_artifact(tmp_path / "art")
    out = tmp_path / "results.json"
    local = Results()
    names = ("web.detector.latency_ms.p50", "web.estimator.latency_ms.p50")
    for name in names:
        local.add(name, "det=int8" if "detector" in name else "est=fp32", 123.0, unit="ms",
                  better="lower", **LOCAL_PARAMS)
    local.add("web.cold_start_ms", "det=int8,est=fp32", 456.0, unit="ms", better="lower",
              threads=1, threads_effective=1)
    local.env["web_bench"] = {"tuned": "det=int8,est=fp32", "marker": "local"}
    append_stage(out, local)

    port = _free_port()  # a fixed port, and one device opening the app by another name
    devices = tmp_path / "devices.toml"
    t0 = time.monotonic()
    with run_server() as ws, cdp_chromium(tmp_path / "profile") as cdp:
        devices.write_text(f'[[device]]\nname = "devtools"\nendpoint = "{cdp}"\n'
                           f'app_url = "http://localhost:{port}"\n')
        rc = main(["bench", "web", str(art), "--quick", "--threads", "1", "--no-seed",
                   "--connect", ws, "--device-name", "pw-server", "--devices", str(devices),
                   "--port", str(port), "--results", str(out)])
    took = time.monotonic() - t0
    printed = capsys.readouterr().out
    print(printed, f"\ntwo devices in parallel: {took:.0f} s")
    assert rc == 0

    res = Results.load(out)
    for dev in ("pw-server", "devtools"):
        ours = [m for m in res.metrics if m.params.get("device") == dev]
        got = {m.name for m in ours}
        for name in (*names, "web.cold_start_ms", "web.offline_reload_ms",
                     "web.first_visit.bytes", "web.device.available", "web.frame_ms.p50"):
            assert name in got, (dev, name)  # frames fed from the shared server to each device
        assert all(m.params.get("user_agent") for m in ours
                   if m.name != "web.device.available")
        assert res.env["web_devices"][dev]["status"] == "ok"
        assert res.env["web_devices"][dev]["hardware_concurrency"] >= 1
        # one server shared by both devices: its socket count would mix them
        assert "web.first_visit_bytes" not in got
    for name in names:  # the local figures: still there, unchanged
        mine = [m for m in res.metrics if m.name == name and "device" not in m.params]
        assert [m.value for m in mine] == [123.0], name
    assert [m.value for m in res.metrics if m.name == "web.cold_start_ms"
            and "device" not in m.params] == [456.0]
    assert res.env["web_bench"]["marker"] == "local"  # the remote run kept to env.web_devices
    assert res.env["web_devices_run"]["parallel"] is True
    assert res.env["web_devices"]["devtools"]["app_url"] == f"http://localhost:{port}"
    assert res.env["web_devices"]["pw-server"]["app_url"] is None


def _kill_when_app_opens(port: int, proc_kill, done: threading.Event) -> None:
    """Kill a stand-in Chromium once one of its pages shows the app (a run under way)."""
    end = time.monotonic() + 90
    while time.monotonic() < end and not done.is_set():
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                pages = json.load(r)
            if any("bench=1" in p.get("url", "") for p in pages):
                time.sleep(0.5)
                proc_kill()
                return
        time.sleep(0.1)


@pytest.mark.browser
def test_a_device_killed_mid_run_fails_alone(tmp_path, capsys):
    """Three devices: one finishes, one's browser is killed once it has the app open, one is
    never reachable. The survivor's figures are written, the two others are failed with a
    reason, exit 3."""
    _needs_browser()
    from hemoedge.cli import main
    from hemoedge.report.results import Results

    art = tiny.write_artifact(tmp_path / "art")
    out = tmp_path / "results.json"
    dead = f"http://127.0.0.1:{_free_port()}"
    done = threading.Event()
    with cdp_chromium(tmp_path / "p1") as ok_ep, \
            cdp_chromium(tmp_path / "p2", keep_process=True) as (gone_ep, gone_proc):
        killer = threading.Thread(target=_kill_when_app_opens, daemon=True, args=(
            int(gone_ep.rsplit(":", 1)[1]), gone_proc.kill, done))
        killer.start()
        t0 = time.monotonic()
        rc = main(["bench", "web", str(art), "--quick", "--threads", "1", "--no-seed",
                   "--connect", ok_ep, "--device-name", "standin", "--connect", gone_ep,
                   "--device-name", "gone", "--connect", dead, "--device-name", "never",
                   "--results", str(out)])
        done.set()
        killer.join(5)
    took = time.monotonic() - t0
    cap = capsys.readouterr()
    print(cap.out, cap.err, f"\nthree devices, one killed: {took:.0f} s")
    assert gone_proc.poll() is not None, "the stand-in was never killed"
    assert rc == 3
    assert "device(s) failed: gone, never (exit 3)" in cap.err

    res = Results.load(out)
    devs = res.env["web_devices"]
    assert devs["standin"]["status"] == "ok"
    for name in ("gone", "never"):
        assert devs[name]["status"] == "failed" and devs[name]["reason"]
        lines = [ln for ln in cap.out.splitlines() if ln.startswith(f"device {name} ")]
        assert len(lines) == 1 and ": failed: " in lines[0], lines
    assert devs["never"]["reason"].startswith("connecting to ")
    avail = {m.params["device"]: m.value for m in res.metrics
             if m.name == "web.device.available"}
    assert avail == {"standin": 1.0, "gone": 0.0, "never": 0.0}
    ours = [m for m in res.metrics if m.params.get("device") == "standin"
            and m.name != "web.device.available"]
    names = {m.name for m in ours}
    for name in ("web.detector.latency_ms.p50", "web.estimator.latency_ms.p50",
                 "web.cold_start_ms", "web.warm_start_ms", "web.offline_reload_ms"):
        assert name in names, name
    for m in ours:
        assert "Chrome" in m.params["user_agent"] and m.params["hardware_concurrency"] >= 1
    # no fake camera there: the frames came through the bench hook; no seed reference remotely
    assert {m.params.get("camera") for m in ours if m.name.startswith("web.frame_ms")} == \
        {"bench-hook"}
    assert not any(m.name.startswith("web.seed.") for m in ours)
    assert not any(m.params.get("device") in ("gone", "never") for m in res.metrics
                   if m.name != "web.device.available")


# ----------------------------------------------------------------------------- the report
def test_report_has_a_device_by_variant_table_and_keeps_devices_out_of_the_rest():
    from hemoedge.report.html import render
    from hemoedge.report.results import Results

    res = Results()
    res.add("web.detector.latency_ms.p50", "det=int8", 40.0, unit="ms", better="lower",
            **LOCAL_PARAMS)
    for dev, ms in (("pixel-7", 91.5), ("lab-box", 12.25)):
        ident = {"device": dev, "user_agent": "UA " + dev, "hardware_concurrency": 8}
        res.add("web.detector.latency_ms.p50", "det=int8", ms, unit="ms", better="lower",
                **LOCAL_PARAMS, **ident)
        res.add("web.cold_start_ms", "det=int8,est=fp32", 1500.0, unit="ms", better="lower",
                **LOCAL_PARAMS, **ident)
        res.add("web.device.available", "", 1.0, unit="", better="higher", device=dev)
    res.add("web.device.available", "", 0.0, unit="", better="higher", device="gone")
    res.env["web_devices"] = {
        "pixel-7": {"status": "ok", "browser": "remote 140", "hardware_concurrency": 8,
                    "user_agent": "UA pixel-7"},
        "gone": {"status": "failed", "reason": "opening a page: browser has been closed"}}
    _, md = render(res)
    part = md.split("## Devices (web)", 1)[1].split("\n## ", 1)[0]
    assert "| pixel-7 | det=int8 | 1 | 91.5 ms |" in part
    assert "| lab-box | det=int8 | 1 | 12.2 ms |" in part
    assert "| pixel-7 | det=int8,est=fp32 | 1 | - | - | - | 1500 ms |" in part
    assert "gone: failed: opening a page" in part
    rest = md.replace(part, "")
    assert "91.5" not in rest and "12.2" not in rest  # other sections: the local figure only


def _device_figures(res, dev: str, scale: float) -> None:
    """One device's pairing at two thread counts: frame and bare model p50/p90."""
    ident = {"device": dev, "user_agent": "UA " + dev, "hardware_concurrency": 8}
    for t in (1, 2):
        for name, variant, p50 in (("web.frame_ms", "det=int8,est=fp32", 40.0),
                                   ("web.detector.latency_ms", "det=int8", 30.0),
                                   ("web.estimator.latency_ms", "est=fp32", 12.0)):
            for stat, k in (("p50", 1.0), ("p90", 1.3)):
                res.add(f"{name}.{stat}", variant, p50 * k * scale / t, unit="ms",
                        better="lower", threads=t, threads_effective=t, **ident)


def test_report_plots_frame_and_model_p50_per_device():
    """Two devices: one plot next to the table, a bar per device x pairing x threads x series
    (frame, detector, estimator) with p90 whiskers; one device: no plot at all."""
    import re

    from hemoedge.report.deviceplot import device_rows
    from hemoedge.report.html import render
    from hemoedge.report.results import Results

    res = Results()
    _device_figures(res, "pixel-7", 4.0)
    _device_figures(res, "lab-box", 1.0)
    rows = device_rows(res, ["pixel-7", "lab-box"])
    assert [r["label"] for r in rows] == [
        "pixel-7 · det=int8,est=fp32 · 1 thr", "pixel-7 · det=int8,est=fp32 · 2 thr",
        "lab-box · det=int8,est=fp32 · 1 thr", "lab-box · det=int8,est=fp32 · 2 thr"]
    got = [x for v in rows[0]["values"] for x in v]  # (p50, p90) of frame, detector, estimator
    assert got == pytest.approx([160.0, 208.0, 120.0, 156.0, 48.0, 62.4])
    html, md = render(res)
    part = html.split("<h2>Devices (web)</h2>", 1)[1].split("</section>", 1)[0]
    assert part.count("<svg") == 1
    svg = part[part.index("<svg"):]
    # 12 bars (4 rows x 3 series, + backgrounds, spines, legend) and one set of p90 whiskers
    # per series
    assert len(re.findall(r'<g id="patch_\d+">', svg)) >= 12 + 3
    assert len(re.findall(r'<g id="LineCollection_\d+">', svg)) == 3
    assert "2 devices x 4 pairing/thread rows" in md
    assert "| lab-box | det=int8,est=fp32 | 2 |" in md and "| 20.0 ms |" in md

    one = Results()
    _device_figures(one, "pixel-7", 4.0)
    html1, md1 = render(one)
    part1 = html1.split("<h2>Devices (web)</h2>", 1)[1].split("</section>", 1)[0]
    assert "<svg" not in part1 and "Plot:" not in md1
    assert "| pixel-7 | det=int8,est=fp32 | 1 |" in md1  # the table is still there


def test_choose_reads_one_device_or_none():
    from hemoedge.errors import ResultsError
    from hemoedge.report.choose import for_device
    from hemoedge.report.results import Results

    res = Results()
    res.add("acc.hb_mae", "det=int8,est=fp32", 0.5, unit="g/dL", better="lower")
    res.add("web.first_visit.bytes", "det=int8,est=fp32", 2e6, unit="bytes", better="lower",
            threads=2)
    res.add("web.first_visit.bytes", "det=int8,est=fp32", 9e6, unit="bytes", better="lower",
            threads=2, device="pixel-7")
    assert [m.value for m in for_device(res, None).metrics] == [0.5, 2e6]
    assert [m.value for m in for_device(res, "pixel-7").metrics] == [0.5, 9e6]
    with pytest.raises(ResultsError, match="there are: pixel-7"):
        for_device(res, "lab-box")
