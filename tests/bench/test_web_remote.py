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
    assert rc == 2 and time.monotonic() - t0 < 30
    assert "every device failed" in capsys.readouterr().err
