"""`hemoedge bench web --connect`: a second local Chromium started as a Chrome DevTools Protocol
endpoint stands in for a remote device (no phone here); its helpers serve
tests/bench/test_web_devices.py, which measures several such devices in one run (figures,
merging, a device killed mid-run, a dead endpoint). Here: endpoint kinds, device names, and a
run whose only endpoint is dead."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hemoedge.errors import BenchError

WEB_TESTS = Path(__file__).resolve().parents[1] / "web"
sys.path.insert(0, str(WEB_TESTS))
import webtiny as tiny  # noqa: E402
from webhelp import CHROMIUM  # noqa: E402

TUNED = "det=int8,est=fp32"  # the shipped pairing (int8, fp16) nearest the tiny models (no fp16)
TINY_HB = 12.7  # g/dL the tiny estimator reads on the tiny video (tests/bench/test_web.py)
DEVTOOLS = re.compile(r"DevTools listening on (ws://[^\s]+)")


def _free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def cdp_chromium(profile: Path, keep_process: bool = False):
    """Chromium with --remote-debugging-port=0: yields its http://127.0.0.1:PORT endpoint
    (and, with keep_process, the process too, to kill it mid-run)."""
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 30
        ws = None
        while ws is None and time.monotonic() < end and proc.poll() is None:
            line = proc.stderr.readline()
            m = DEVTOOLS.search(line or "")
            if m:
                ws = m.group(1)
        if ws is None:
            pytest.fail("the stand-in Chromium printed no DevTools endpoint")
        port = int(re.search(r":(\d+)/", ws).group(1))
        ep = f"http://127.0.0.1:{port}"
        yield (ep, proc) if keep_process else ep
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_endpoint_kind_and_device_names(tmp_path):
    from hemoedge.bench.browser import endpoint_kind
    from hemoedge.bench.web import WebBenchConfig

    assert endpoint_kind("ws://127.0.0.1:3000/abc") == "ws"
    assert endpoint_kind("http://127.0.0.1:9222") == "cdp"
    with pytest.raises(BenchError, match="expected ws://"):
        endpoint_kind("127.0.0.1:9222")
    cfg = WebBenchConfig(art=tmp_path, connect=("http://127.0.0.1:9222", "ws://h:3000/x"),
                         device_names=("pixel",))
    assert [cfg.device_name(0), cfg.device_name(1)] == ["pixel", "ws@h:3000"]
    with pytest.raises(BenchError, match="--device-name"):
        WebBenchConfig(art=tmp_path, connect=("http://a:1",), device_names=("a", "b"))
    with pytest.raises(BenchError, match="no --device-class"):
        WebBenchConfig(art=tmp_path, connect=("http://a:1",), cpu_slowdowns=(4.0,))


@pytest.mark.browser
def test_every_device_failing_exits_2(tmp_path, capsys):
    from hemoedge.cli import main

    art = tiny.write_artifact(tmp_path / "art")
    dead = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    rc = main(["bench", "web", str(art), "--quick", "--connect", dead,
               "--results", str(tmp_path / "results.json")])
    assert rc == 2 and time.monotonic() - t0 < 90  # fails fast, no retry loop
    assert "every device failed" in capsys.readouterr().err


@pytest.mark.browser
def test_a_remote_device_captures_through_the_bench_hook(tmp_path):
    """No fake camera on a --connect device: the test video's frames are served next to the app
    and fed into it through the bench hook (feedCamera, the bench page's stand-in camera); the
    30-frame x 80 ms capture runs and gives the capture figures, tagged camera=bench-hook."""
    from webhelp import ort_installed, tiny_video

    from hemoedge.bench.web import WebBenchConfig, run

    if not Path(CHROMIUM).exists() or not ort_installed():
        pytest.skip("needs Chromium and webapp/node_modules")
    art = tiny.write_artifact(tmp_path / "art")
    video = tiny_video(tmp_path / "tiny.y4m")  # 75 frames; the device is fed the first 50
    t0 = time.monotonic()
    with cdp_chromium(tmp_path / "profile") as ep:
        res = run(WebBenchConfig.quick_form(
            art=art, capture=True, video=video, video_hb=TINY_HB, threads=(1,), seed=False,
            connect=(ep,), device_names=("standin",), workdir=tmp_path / "work", timeout_s=90))
    took = time.monotonic() - t0
    print(f"remote capture on tiny models: {took:.0f} s")  # 23-31 s here; timeout_s guards hangs
    ours = {m.name: m for m in res.metrics if m.params.get("device") == "standin"}
    for name in ("web.capture.interval_ms.mean", "web.capture.max_dev_ms",
                 "web.capture.dropped_frames", "web.capture.result_ms",
                 "web.capture.readings", "web.capture.hb_error", "web.capture.queue_ms.p50",
                 "web.frame_ms.p50", "web.frame.detector_ms.p50", "web.frame.estimator_ms.p50",
                 "web.frame.hb_rate"):
        assert name in ours, name
        m = ours[name]
        assert m.variant == TUNED and m.params["camera"] == "bench-hook", (name, m.params)
    assert "camera" not in ours["web.detector.latency_ms.p50"].params  # bare runs: no frames
    assert "web.memory_bytes" not in ours  # still not measured remotely
    drop = ours["web.capture.dropped_frames"]
    # every grabbed frame was one of the video's (its index decoded from the JPEG's code
    # strip), looped over the 50 fed frames at 25 fps: 80 ms = 2 source frames a grab on
    # average (single steps jitter with the page's timers: {1: 6, 2: 16, 3: 7} seen in CI)
    assert drop.params["undecoded"] == 0
    steps = {int(k): c for k, c in drop.params["source_steps"].items()}
    assert sum(steps.values()) == 29 and max(steps) <= 4, steps
    assert abs(sum(k * c for k, c in steps.items()) / 29 - 2.0) < 0.35, steps
    assert abs(ours["web.capture.interval_ms.mean"].value - 80.0) < 5
    assert ours["web.capture.readings"].value == 1.0 and ours["web.frame.hb_rate"].value > 0.9
    assert ours["web.capture.hb_error"].value < 0.5  # the video's Hb, read through JPEG frames
    wb = res.env["web_devices"]["standin"]["web_bench"]
    assert wb["camera"].startswith("bench-hook: the first 50 frames of") and \
        wb["video_frames"] == 50
