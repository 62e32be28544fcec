"""`hemoedge webapp serve --collect` and the bench page (lab.html): the POST's validation, the
merge into results.json, and the page itself in a second Chromium (a phone's stand-in) and on a
host that does not collect."""

from __future__ import annotations

import copy
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import webtiny as tiny
from webhelp import CHROMIUM, CHROMIUM_ARGS, PAGE_TIMEOUT_S, needs_ort

from hemoedge.bench.web import WebBenchConfig
from hemoedge.errors import HemoedgeError
from hemoedge.report.results import Results
from hemoedge.web.build import DEFAULT_CADENCE
from hemoedge.web.collect import Collector, handler_for
from hemoedge.web.labreport import SCHEMA, LabReportError, parse_report
from hemoedge.web.serve import serve_in_thread

LOCAL = "web.frame_ms.p50"  # a local `bench web` figure that no device may replace


def report(name: str = "phone-a", threads: int = 2) -> dict:
    """A well-formed report of one page (quick form at one thread count)."""
    frames = [{"k": k, "totalMs": 20.0 + k % 3, "detMs": 9.0 if k % 2 == 0 else None,
               "estMs": 4.0, "preMs": 1.0, "queueMs": 0.5, "skipped": False} for k in range(30)]
    return {
        "schema": SCHEMA, "name": name, "variant": "det=int8,est=fp32", "ortVersion": "1.30.0",
        "crossOriginIsolated": True,
        "device": {"userAgent": "Mozilla/5.0 (Linux; Android 14) Chrome/131", "hardwareConcurrency": 8,
                   "deviceMemory": 4, "webgpu": "unavailable"},
        "settings": {"runs": 10, "warmup": 3, "captures": 1, "repeats": 1, "threads": [threads]},
        "pages": [{"repeat": 0, "threads": threads, "threadsEffective": threads,
                   "modelsReadyMs": 300.0, "sessionMs": {"detector": 200.0, "estimator": 90.0},
                   "latencyMs": {"detector": [10.0 + i for i in range(10)],
                                 "estimator": [3.0 + i / 10 for i in range(10)]},
                   "captures": [{"detectEvery": 2, "frames": frames}]}],
    }


def body(d: dict) -> bytes:
    return json.dumps(d).encode()


def _bad(mutate) -> bytes:
    d = copy.deepcopy(report())
    mutate(d)
    return body(d)


BAD = {
    "not JSON": b"{not json",
    "NaN": body(report()).replace(b'"modelsReadyMs": 300.0', b'"modelsReadyMs": NaN'),
    "infinite": body(report()).replace(b'"modelsReadyMs": 300.0', b'"modelsReadyMs": 1e400'),
    "string for a number": _bad(lambda d: d["pages"][0]["latencyMs"].update(detector=["10"])),
    "bool for a number": _bad(lambda d: d["settings"].update(runs=True)),
    "negative time": _bad(lambda d: d["pages"][0]["sessionMs"].update(detector=-5)),
    "unknown key": _bad(lambda d: d.update(extra=1)),
    "missing key": _bad(lambda d: d["device"].pop("userAgent")),
    "bad name": _bad(lambda d: d.update(name="<script>alert(1)</script>")),
    "not an object": b"[1, 2]",
    "wrong schema": _bad(lambda d: d.update(schema="other/1")),
    "oversize": body({**report(), "pad": "x" * 300_000}),
}


def test_parse_report_accepts_a_good_one():
    r = parse_report(body(report(name="  Pixel  7 (mine) ")))
    assert r.name == "Pixel 7 (mine)" and r.hardware_concurrency == 8
    assert r.pages[0].latency_ms["detector"][0] == 10.0 and r.webgpu == "unavailable"
    gpu = _bad(lambda d: d["device"].update(webgpu={"vendor": "arm", "architecture": "valhall",
                                                    "description": ""}))
    assert parse_report(gpu).webgpu["architecture"] == "valhall"


@pytest.mark.parametrize("what", sorted(BAD))
def test_parse_report_rejects(what):
    with pytest.raises(LabReportError) as e:
        parse_report(BAD[what])
    assert "\n" not in str(e.value) and str(e.value)


def post(url: str, data: bytes, path: str = "__collect") -> tuple[int, dict]:
    req = urllib.request.Request(url + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _local_results(path: Path) -> None:
    res = Results()
    res.add(LOCAL, "det=int8,est=fp32", 12.5, unit="ms", better="lower", threads=2,
            threads_effective=2)
    res.commands.append("hemoedge bench web runs/art --pairings int8:fp32")
    res.save(path)


def _collector(dist: Path, results: Path, **kw) -> Collector:
    bench = WebBenchConfig.quick_form(art=dist, threads=(2,))
    frames = lambda n: [tiny.nail_photo(cells=((4, 4),))[0] for _ in range(n)]  # noqa: E731
    return Collector(dist, results, command="hemoedge webapp serve DIST --collect R.json",
                     frames=frames, video_frames=5, bench=bench, **kw)


@pytest.fixture
def collecting(dist, tmp_path):
    """(collector, url, results.json) of a --collect server; the file holds a local figure."""
    out = tmp_path / "results.json"
    _local_results(out)
    c = _collector(dist, out)
    with serve_in_thread(dist, handler=handler_for(c)) as (_srv, url):
        yield c, url, out


@needs_ort
def test_collect_rejects_bad_reports_and_leaves_the_file_alone(collecting):
    _c, url, out = collecting
    before = out.read_bytes()
    for what, data in BAD.items():
        code, answer = post(url, data)
        assert code == 400, what
        assert answer["error"] and "\n" not in answer["error"], what
    code, answer = post(url, body(report() | {"variant": "det=fp32,est=fp32"}))
    assert code == 400 and "reload the bench page" in answer["error"]
    code, _ = post(url, body(report()), path="index.html")
    assert code == 405
    with urllib.request.urlopen(url + "__collect", timeout=10) as r:
        settings = json.loads(r.read())
    assert settings["runs"] == 10 and settings["threads"] == [2]
    with urllib.request.urlopen(url + "__collect/frame/0.jpg", timeout=30) as r:
        assert r.headers["Content-Type"] == "image/jpeg" and r.read(2) == b"\xff\xd8"
    assert out.read_bytes() == before


@needs_ort
def test_collect_merges_devices_without_replacing_the_local_run(collecting, capsys):
    _c, url, out = collecting
    for name in ("phone-a", "phone-b", "phone-a"):  # the same device twice: replaced
        code, answer = post(url, body(report(name)))
        assert code == 200 and answer["device"] == name
    assert "collect: phone-b: frame p50" in capsys.readouterr().out
    res = Results.load(out)
    frame = [m for m in res.metrics if m.name == LOCAL]
    assert len(frame) == 3  # local + phone-a + phone-b
    local = next(m for m in frame if "device" not in m.params)
    assert local.value == 12.5
    a = [m for m in frame if m.params.get("device") == "phone-a"]
    assert len(a) == 1 and a[0].params["via"] == "lab page"
    assert a[0].params["user_agent"].startswith("Mozilla/5.0 (Linux; Android 14)")
    assert a[0].params["hardware_concurrency"] == 8 and a[0].params["device_memory_gb"] == 4
    det = res.get("web.detector.latency_ms.p50", "det=int8", device="phone-b")
    assert det is not None and det.value == pytest.approx(14.5)  # bench web's emit_timing
    assert set(res.env["web_devices"]) == {"phone-a", "phone-b"}
    assert res.variants["det=int8,est=fp32"]["detector"].startswith("detector.int8")
    assert res.commands[-1].startswith("hemoedge webapp serve")


@needs_ort
def test_collect_start_up_errors(dist, tmp_path):
    from hemoedge.cli import main

    with pytest.raises(HemoedgeError, match="not a built webapp"):
        Collector(tmp_path, tmp_path / "r.json")
    with pytest.raises(HemoedgeError, match="is a folder"):
        Collector(dist, tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(HemoedgeError, match="not valid JSON"):
        Collector(dist, bad)
    assert bad.read_text() == "{"
    assert main(["webapp", "serve", str(dist), "--collect", str(tmp_path)]) == 2  # before listening


# ---------------------------------------------------------------------------- the page
def _open_lab(playwright_session, url: str, name: str) -> tuple[dict, dict]:
    """lab.html?name=NAME in a Chromium of its own (no fake-camera flags: the page brings its
    own camera), until it is done; (window.__hemoedgeLab, the browser's identity)."""
    b = playwright_session.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                           timeout=PAGE_TIMEOUT_S * 1000)
    try:
        page = b.new_context().new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}lab.html?name={name}")
        end = time.monotonic() + 50
        while page.evaluate("window.__hemoedgeLab && window.__hemoedgeLab.state") not in (
                "done", "error"):
            assert time.monotonic() < end, page.evaluate("window.__hemoedgeLab")
            time.sleep(0.2)
        lab = page.evaluate("({...window.__hemoedgeLab, text: document.body.innerText})")
        ident = page.evaluate("({ua: navigator.userAgent, hc: navigator.hardwareConcurrency})")
        assert not errors, errors
        return lab, ident
    finally:
        b.close()


@pytest.mark.browser
@needs_ort
def test_lab_page_reports_from_a_second_browser(collecting, playwright_session):
    c, url, out = collecting
    lab, ident = _open_lab(playwright_session, url, "phone-standin")
    assert lab["state"] == "done", lab["error"]
    assert lab["answer"]["device"] == "phone-standin" and c.received == 1
    res = Results.load(out)
    mine = [m for m in res.metrics if m.params.get("device") == "phone-standin"]
    names = {m.name for m in mine}
    assert {"web.frame_ms.p50", "web.detector.latency_ms.p50", "web.estimator.latency_ms.p50",
            "web.detector.session_ms.p50", "web.models_ready_ms.p50"} <= names
    m = next(x for x in mine if x.name == "web.frame_ms.p50")
    assert m.params["user_agent"] == ident["ua"]
    assert m.params["hardware_concurrency"] == ident["hc"]
    # one frame sample per whole detector cycle (DEFAULT_CADENCE frames) of a 30-frame capture
    assert m.params["threads"] == 2 and m.n >= 30 // DEFAULT_CADENCE and "webgpu" in m.params
    assert m.params["camera"] == "bench-hook"  # the page's frames went in through the hook
    assert res.env["web_devices"]["phone-standin"]["webgpu"] is not None
    local = [x for x in res.metrics if x.name == LOCAL and "device" not in x.params]
    assert [x.value for x in local] == [12.5]


@pytest.mark.browser
@needs_ort
def test_lab_page_on_a_host_that_does_not_collect(dist, playwright_session):
    with serve_in_thread(dist) as (_srv, url):  # the plain server: no __collect endpoint
        lab, _ = _open_lab(playwright_session, url, "static")
    assert lab["state"] == "done", lab["error"]
    assert lab["collect"] is False and lab["answer"] is None
    assert "does not collect results; figures shown here only" in lab["text"]
    assert "detector session.run p50" in lab["text"]
