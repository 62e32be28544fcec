"""`hemoedge bench web`: the quick browser benchmark on tiny in-code models, its guard and its
time limits; plus the pure capture analysis (no browser)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from hemoedge import names
from hemoedge.bench import webcapture as wc
from hemoedge.errors import BenchError
from hemoedge.web.build import DEFAULT_CADENCE

WEB_TESTS = Path(__file__).resolve().parents[1] / "web"
sys.path.insert(0, str(WEB_TESTS))  # webtiny, webhelp: the web app tests' tiny models and video
import webtiny as tiny  # noqa: E402
from webhelp import CHROMIUM, ort_installed, tiny_video  # noqa: E402

TUNED = "det=int8,est=fp32"  # the shipped pairing (int8, fp16) nearest the tiny models (no fp16)
FRAMES = 30  # one capture
TINY_HB = 12.7  # g/dL the tiny estimator reads on the tiny video's nail (webtiny: ~12.6-12.8)
HB_TOL = 0.5  # g/dL, |Hb shown - TINY_HB|
FAIL_FAST_S = 5.0  # a missing Chromium must be reported within this
HANG_LIMIT_S = 3.0  # the step limit in the hung-page test
HANG_BOUND_S = 20.0  # ... and the whole hung-page test must end within this

# ---------------------------------------------------------------------------- pure analysis
def test_capture_stats_counts_dropped_and_repeated_source_frames():
    # 25 fps video looping every 10 frames, grabs every 80 ms: the nominal step is 2
    idx = [0, 2, 4, 4, 6, 9, 1, 5, 7]  # repeat (4->4), jitter (6->9: 3), wrap 9->1 (2), 1->5 drop
    cap = {"intervalMs": 80, "ticks": [80.0 * k for k in range(len(idx))], "resultT": 700.0,
           "frames": [{"k": k, "frameIndex": i, "hb": 12.0 if k % 2 else None}
                      for k, i in enumerate(idx)]}
    st = wc.capture_stats(cap, video_frames=10, fps=25)
    assert st.repeated == 1
    assert st.dropped == 1  # only the 4-frame step lost a slot; a 3-frame step is jitter
    assert st.steps == {0: 1, 2: 5, 3: 1, 4: 1}
    assert st.max_dev_ms == pytest.approx(0.0)
    assert st.result_ms == pytest.approx(700.0 - 640.0)
    assert st.valid_frames == 4 and st.frames == len(idx)


def test_cycle_ms_is_the_mean_of_complete_detector_cycles():
    recs = [{"k": k, "totalMs": 30.0 if k % 2 == 0 else 10.0} for k in range(5)]  # k=4 alone
    assert wc.cycle_ms(recs, 2) == [20.0, 20.0]
    assert wc.cycle_ms(recs, 1) == [30.0, 10.0, 30.0, 10.0, 30.0]


def test_timeline_rows_are_relative_to_the_first_grab():
    cap = {"ticks": [100.0, 180.0], "resultT": 300.0, "frames": [
        {"k": 1, "grabT": 180.0, "queueMs": 2.0, "doneT": 220.0},
        {"k": 0, "grabT": 100.0, "queueMs": 1.0, "doneT": 140.0}]}
    rows = wc.timeline(cap)
    assert [r["frame"] for r in rows] == [0, 1]
    assert rows[1] == {"frame": 1, "t_grab": 80.0, "t_det_start": 82.0, "t_est_end": 120.0,
                       "t_result": 200.0}


def test_missing_chromium_fails_fast(tmp_path):
    from hemoedge.bench.web import WebBenchConfig, run

    art = tiny.write_artifact(tmp_path / "art")
    t0 = time.monotonic()
    with pytest.raises(BenchError, match="Chromium not found"):
        run(WebBenchConfig.quick_form(art=art, chromium=tmp_path / "no-chromium",
                                      workdir=tmp_path / "work"))
    assert time.monotonic() - t0 < FAIL_FAST_S


def test_config_rejects_bad_input(tmp_path):
    from hemoedge.bench.web import WebBenchConfig, plan

    with pytest.raises(BenchError, match="--threads"):
        WebBenchConfig(art=tmp_path, threads=(0,))
    have = {"detector": ["fp32", "int8"], "estimator": ["fp32"]}
    with pytest.raises(BenchError, match="det=fp16,est=fp32 is not in"):
        plan(WebBenchConfig(art=tmp_path, pairings=(("fp16", "fp32"),)), have)
    units, tuned = plan(WebBenchConfig.quick_form(art=tmp_path), have)
    assert tuned == ("int8", "fp32")
    assert [(u.kind, u.det, u.est) for u in units] == [("pairing", "int8", "fp32"),
                                                        ("seed", "fp32", "fp32")]
    # sharding keeps the seed with the tuned pairing, so the speedup is measured in one job
    full = {"detector": ["fp16", "fp32", "int8"], "estimator": ["fp16", "fp32", "int8"]}
    shards = [plan(WebBenchConfig(art=tmp_path, shard=(i, 3)), full)[0] for i in (1, 2, 3)]
    seeds = [any(u.kind == "seed" for u in s) for s in shards]
    assert sum(seeds) == 1
    with_seed = shards[seeds.index(True)]
    assert any((u.kind, u.det, u.est) == ("pairing", *names.SHIPPED) for u in with_seed)
    assert sorted((u.kind, u.det, u.est) for s in shards for u in s if u.kind != "seed") == \
        sorted((u.kind, u.det, u.est) for u in plan(WebBenchConfig(art=tmp_path), full)[0]
               if u.kind != "seed")


@pytest.mark.browser
def test_chromium_refuses_clearly_inside_a_running_sync_playwright():
    """One sync Playwright per thread: a second one fails with Playwright's "Sync API inside the
    asyncio loop"; the harness says what is going on before trying (no browser is launched)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from hemoedge.bench.browser import Chromium

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing")
    with sync_api.sync_playwright(), pytest.raises(BenchError, match="already running in this thread"):
        Chromium().__enter__()


# ---------------------------------------------------------------------------- the quick run
@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    if not Path(CHROMIUM).exists() or not ort_installed():
        pytest.skip("needs Chromium and webapp/node_modules")
    from hemoedge.bench.web import WebBenchConfig, run

    d = tmp_path_factory.mktemp("webbench")
    art = tiny.write_artifact(d / "art")
    video = tiny_video(d / "tiny.y4m")
    cfg = WebBenchConfig.quick_form(art=art, capture=True, video=video, video_hb=TINY_HB,
                                    workdir=d / "work", timeout_s=90)
    t0 = time.monotonic()
    res = run(cfg)
    return res, time.monotonic() - t0


@pytest.mark.browser
def test_quick_run_metrics_present(quick):
    res, took = quick
    print(f"quick bench web on tiny models took {took:.0f} s")
    names = {(m.name, m.variant, m.params.get("threads")) for m in res.metrics}
    for t in (1, 2):
        for stat in ("mean", "p50", "p90", "p99"):
            assert (f"web.detector.latency_ms.{stat}", "det=int8", t) in names
            assert (f"web.estimator.latency_ms.{stat}", "est=fp32", t) in names
            assert (f"web.frame_ms.{stat}", TUNED, t) in names
            assert (f"web.frame_full_ms.{stat}", TUNED, t) in names
        for name in ("web.detector.session_ms.p50", "web.estimator.session_ms.p50"):
            assert any(n[0] == name and n[2] == t for n in names), name
        for name in ("web.speedup_vs_seed", "web.capture.interval_ms.mean",
                     "web.capture.interval_ms.p95", "web.capture.max_dev_ms",
                     "web.capture.dropped_frames", "web.capture.repeated_frames",
                     "web.capture.result_ms", "web.capture.hb_error", "web.capture.long_tasks",
                     "web.frame.detector_ms.p50", "web.frame.estimator_ms.p50"):
            assert (name, TUNED, t) in names, (name, t)
    for stat in ("mean", "p50", "p90", "p99"):
        assert (f"web.seed.frame_ms.{stat}", "", 1) in names
    for name in ("web.cold_start_ms", "web.warm_start_ms", "web.offline_reload_ms",
                 "web.first_visit_bytes", "web.first_visit_bytes_gzip", "web.first_visit.bytes",
                 "web.first_visit.requests", "web.first_visit.duplicate_urls"):
        assert (name, TUNED, 2) in names, name
    assert ("web.memory_bytes", TUNED, 1) in names
    # one timeline row per captured frame: the pairing at 2 threads, and the seed reference
    grabs = [m for m in res.metrics if m.name == "web.capture.grab_ms"]
    assert sorted(m.params["frame"] for m in grabs if m.variant == TUNED) == list(range(FRAMES))
    assert sorted(m.params["frame"] for m in grabs if m.variant == "") == list(range(FRAMES))


@pytest.mark.browser
def test_quick_run_records_environment_threads_and_intervals(quick):
    res, _ = quick
    env = res.env
    assert env["cross_origin_isolated"] is True
    assert env["browser"].startswith("chromium ")
    assert env["onnxruntime_web"] == "1.30.0"
    assert res.variants[TUNED] == {"detector": "detector.int8.onnx",
                                   "estimator": "estimator.fp32.onnx"}
    for m in res.metrics:
        if m.variant and "threads" in m.params and "threads_effective" in m.params:
            assert m.params["threads_effective"] == m.params["threads"], m
    for m in res.metrics:
        if m.name.endswith(".p50") and m.unit == "ms":
            assert m.n and m.ci95 and m.ci95[0] <= m.ci95[1], m
    p50 = res.get("web.frame_ms.p50", TUNED, threads=2)
    # one sample per whole block of DEFAULT_CADENCE frames (one detector frame + tracked ones)
    assert len(p50.params["samples"]) == p50.n == FRAMES // DEFAULT_CADENCE
    seed = res.get("web.seed.frame_ms.p50", "")  # the name and variant the gate's budget reads
    speed = res.get("web.speedup_vs_seed", TUNED, threads=2)
    assert speed.value == pytest.approx(seed.value / p50.value, rel=0.05)
    # timings are not asserted (a loaded machine can stall a capture); their bookkeeping is
    dropped = res.get("web.capture.dropped_frames", TUNED, threads=2)
    steps = {int(k): v for k, v in dropped.params["source_steps"].items()}
    assert dropped.params["undecoded"] == 0 and sum(steps.values()) == FRAMES - 1
    assert dropped.value == sum(max(0, d // 2 - 1) * c for d, c in steps.items())
    assert res.get("web.capture.interval_ms.mean", TUNED, threads=2).n == FRAMES - 1
    assert res.get("web.capture.hb_error", TUNED, threads=2).value < HB_TOL
    # the seed loop waits for inference, then sleeps 80 ms
    assert res.get("web.seed.capture.interval_ms.mean", "").value > 80
    fv = res.get("web.first_visit_bytes", TUNED)  # counted on the server's socket
    assert fv.params["unique_bytes"] > 10e6  # the files themselves: the 14 MB WASM and more
    # on the wire (Playwright network events): every file once, compressed
    wire = res.get("web.first_visit.bytes", TUNED, threads=2)
    assert wire.params["duplicate_urls"] == [] and "br" in wire.params["encodings"]
    assert res.get("web.first_visit.duplicate_urls", TUNED, threads=2).value == 0
    assert res.get("web.first_visit.requests", TUNED, threads=2).value == wire.params["requests"]
    assert wire.value == pytest.approx(fv.value, rel=0.02)  # the two counts agree
    first = res.env["web_bench"]["first_visit"][TUNED]
    assert first["fetched_twice"] == []  # no path requested twice from the server either
    assert 2e6 < wire.value < 3.5e6, wire.value  # the WASM as brotli (2.3 MB) + tiny models


@pytest.mark.browser
def test_quick_results_feed_report_and_gate(quick, tmp_path):
    from hemoedge.report.html import capture_frames
    from hemoedge.report.results import Results

    res, _ = quick
    path = res.save(tmp_path / "results.json")
    back = Results.load(path)
    assert len(back.metrics) == len(res.metrics)
    assert len(capture_frames(back)[TUNED]) == FRAMES
    from hemoedge.report.html import render

    _, md = render(back)  # the report shows the first visit per pairing
    assert "## First visit (web)" in md and f"| {TUNED} | " in md
    ratio = (back.get("web.frame_ms.p50", TUNED, threads=2).value
             / back.get("web.seed.frame_ms.p50", "").value)
    assert ratio > 0


# ---------------------------------------------------------------------------- guard and limits
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    if not Path(CHROMIUM).exists() or not ort_installed():
        pytest.skip("needs Chromium and webapp/node_modules")
    from hemoedge.web.build import BuildConfig, build
    from hemoedge.web.serve import serve_in_thread

    d = tmp_path_factory.mktemp("guard")
    art = tiny.write_artifact(d / "art")
    dist = build(BuildConfig(art=art, detector="fp32", estimator="fp32", out=d / "dist")).out
    with serve_in_thread(dist) as (_, url):
        yield url


@pytest.mark.browser
def test_request_leaving_the_origin_fails_the_benchmark(served):
    from hemoedge.bench.browser import BrowserConfig, Chromium

    with Chromium(BrowserConfig(step_timeout_s=60)) as chrome:
        ctx, guard = chrome.new_context(served)
        page = chrome.page(ctx, guard)
        page.goto(served + "?bench=1")
        # loopback only: 127.0.0.2 is another origin on this machine
        page.raw.evaluate("(() => { new Image().src = 'http://127.0.0.2:9/leak.png'; })()")
        with pytest.raises(BenchError, match=r"left the app's origin .*http://127\.0\.0\.2:9/leak"):
            page.wait("false", "waiting for the guard", timeout_s=10)


@pytest.mark.browser
def test_hung_page_gives_a_clear_error_in_bounded_time(served):
    from hemoedge.bench.browser import BrowserConfig, Chromium

    t0 = time.monotonic()
    with Chromium(BrowserConfig(step_timeout_s=HANG_LIMIT_S)) as chrome:
        ctx, guard = chrome.new_context(served)
        page = chrome.page(ctx, guard)
        page.goto(served + "?bench=1")
        with pytest.raises(BenchError, match=r"busy loop: no answer within 3 s"):
            page.evaluate("(() => { while (true) {} })()", "busy loop")
        with pytest.raises(BenchError, match="already stopped"):
            page.evaluate("1", "after the hang")
    assert time.monotonic() - t0 < HANG_BOUND_S


@pytest.mark.browser
def test_crashed_browser_gives_a_clear_error(served):
    from hemoedge.bench.browser import BrowserConfig, Chromium

    with Chromium(BrowserConfig(step_timeout_s=30)) as chrome:
        ctx, guard = chrome.new_context(served)
        page = chrome.page(ctx, guard)
        page.goto(served + "?bench=1")
        chrome._kill()  # what a browser crash looks like from here: its processes are gone
        # Playwright names it "Target closed" or "Target crashed", whichever it notices first
        with pytest.raises(BenchError, match=r"^after the crash: .*(closed|crashed)"):
            page.evaluate("1", "after the crash")


# ---------------------------------------------------------------------------- device classes
def _cgroup_writable() -> bool:
    from hemoedge.bench.browser import CGROUP_CPU

    return (CGROUP_CPU / "cpu.cfs_quota_us").is_file() and os.access(CGROUP_CPU, os.W_OK)


def test_slowdown_mechanism_unavailable_is_one_clear_line(tmp_path):
    from hemoedge.bench.browser import CpuThrottle

    with pytest.raises(BenchError, match=r"^--cpu-slowdown needs the cgroup v1 cpu controller: "
                                         r".*cpu\.cfs_quota_us not found"):
        CpuThrottle(4, root=tmp_path).check()
    with pytest.raises(BenchError, match=r"--cpu-slowdown must be >= 1"):
        CpuThrottle(0.5)


def test_cli_exits_2_when_the_mechanism_is_unavailable(tmp_path, monkeypatch, capsys):
    from hemoedge import cli
    from hemoedge.bench import browser

    monkeypatch.setattr(browser, "CGROUP_CPU", tmp_path / "no-cgroup")
    art = tiny.write_artifact(tmp_path / "art")
    rc = cli.main(["bench", "web", str(art), "--device-class", "mid-range-phone",
                   "--results", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cgroup v1 cpu controller" in err[0], err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.skipif(not _cgroup_writable(), reason="needs a writable cgroup v1 cpu controller")
def test_slowdown_cgroup_caps_a_process_at_1_over_f_of_a_core_and_is_removed():
    """The mechanism itself, without a browser: a busy process started through the wrapper runs
    in the group, on the pinned CPU, and gets at most 1/F of a core (CPU time <= wall / F
    whatever else loads the machine: the quota is an upper bound)."""
    import subprocess

    from hemoedge.bench.browser import CpuThrottle

    busy = ("import os, time\nt = time.perf_counter(); c = time.process_time()\n"
            "while time.process_time() - c < 0.15: pass\n"
            "print(time.perf_counter() - t, time.process_time() - c, sorted(os.sched_getaffinity(0)),"
            " open('/proc/self/cgroup').read().replace(chr(10), ';'))")
    with CpuThrottle(4, executable=Path(sys.executable)) as th:
        out = subprocess.run([str(th.wrapper), "-c", busy], capture_output=True, text=True,
                             timeout=60, check=True).stdout.split(" ", 3)
        group = th.dir
        assert (group / "cpu.cfs_quota_us").read_text().strip() == str(th.period // 4)
    wall, cpu, cpus, cgroups = float(out[0]), float(out[1]), out[2], out[3]
    assert f":cpu,cpuacct:/{group.name}" in cgroups or f":cpu:/{group.name}" in cgroups, cgroups
    assert cpus == str(th.cpus)
    assert wall >= 0.9 * 4 * cpu, (wall, cpu)
    assert not group.exists()  # cleaned up


@pytest.mark.skipif(not _cgroup_writable(), reason="needs a writable cgroup v1 cpu controller")
def test_per_thread_slowdown_caps_every_thread_and_is_removed():
    """Per-thread mode (bench web's default): two busy threads of one process each get at most
    1/F of a core (each in a group of its own), not 1/F between them."""
    import subprocess

    from hemoedge.bench.browser import CpuThrottle

    busy = "\n".join([
        "import threading, time", "time.sleep(0.3)", "res = []", "def spin():",
        "    c, t = time.thread_time(), time.perf_counter()",
        "    while time.thread_time() - c < 0.15: pass",
        "    res.append((time.perf_counter() - t, time.thread_time() - c))",
        "ts = [threading.Thread(target=spin) for _ in range(2)]",
        "[t.start() for t in ts]; [t.join() for t in ts]", "print(res)"])
    with CpuThrottle(4, executable=Path(sys.executable), per_thread=True) as th:
        out = subprocess.run([str(th.wrapper), "-c", busy], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        group = th.dir
        assert len(th._placed) >= 2  # the main thread and the spinners got groups of their own
        assert "per thread" in th.mechanism
    for wall, cpu in eval(out):
        assert wall >= 0.9 * 4 * cpu, (wall, cpu)
    assert not group.exists()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.skipif(not _cgroup_writable(), reason="needs a writable cgroup v1 cpu controller")
def test_slowdown_slows_the_detector_in_the_worker(tmp_path):
    """The proof in the browser: bare session.run of the detector in the app's worker, 1 thread,
    at 1x and 4x (same mechanism, same run): the mean rises by >= 0.9 x 4."""
    if not Path(CHROMIUM).exists() or not ort_installed():
        pytest.skip("needs Chromium and webapp/node_modules")
    from hemoedge.bench.web import WebBenchConfig, run

    art = tiny.write_artifact(tmp_path / "art")
    video = tiny_video(tmp_path / "tiny.y4m")
    res = run(WebBenchConfig.quick_form(art=art, video=video, video_hb=TINY_HB, threads=(1,),
                                        seed=False, runs=60, cpu_slowdowns=(1.0, 4.0),
                                        workdir=tmp_path / "work", timeout_s=90))
    mean = {m.params["cpu_slowdown"]: m for m in res.metrics
            if m.name == "web.detector.latency_ms.mean"}
    assert mean[4.0].params["device_class"] == "mid-range-phone"
    assert "cfs_quota_us" in mean[4.0].params["slowdown_mechanism"]
    ratio = mean[4.0].value / mean[1.0].value
    print(f"detector mean {mean[1.0].value:.2f} -> {mean[4.0].value:.2f} ms = {ratio:.2f}x")
    assert ratio >= 0.9 * 4, ratio
    assert res.get("web.slowdown.detector.latency_ratio", "det=int8", cpu_slowdown=4.0)
    assert not [p for p in os.listdir("/sys/fs/cgroup/cpu") if p.startswith("hemoedge-bench-")]


def test_report_has_a_table_per_slowdown():
    from hemoedge.report.html import render
    from hemoedge.report.results import Results

    r = Results()
    for f, cls, det in ((4.0, "mid-range-phone", 400.0), (6.0, "low-end-phone", 600.0)):
        p = {"threads": 1, "device_class": cls, "cpu_slowdown": f,
             "slowdown_mechanism": "cgroup v1 cpu controller: test"}
        r.add("web.detector.latency_ms.p50", "det=int8", det, "ms", "lower", **p)
        r.add("web.capture.dropped_frames", TUNED, 0, "frames", "lower", **p)
        r.add("web.autotune.decide_ms", TUNED, 2500.0, "ms", "lower", setting="every=6", **p)
    _html, md = render(r)
    assert "## Device classes (web)" in md
    assert "### mid-range-phone: CPU 4x slower" in md and "### low-end-phone: CPU 6x slower" in md
    assert "| det=int8 | 1 | 400.0 ms |" in md and "| det=int8 | 1 | 600.0 ms |" in md
    assert f"| {TUNED} | 1 |" in md and "every=6" in md
    assert "Mechanism: cgroup v1 cpu controller: test." in md


def test_each_trial_keeps_the_model_times_its_tune_decided_on():
    from hemoedge.bench.webrun import _tune_times

    t = {"detector": {"int8": 102.634}, "estimator": {"fp16": 60.04, "int8": 52.26},
         "pre": 28.51, "runs": {"detector.int8": [144, 102.63], "estimator.fp16": [60.04]},
         "threads": {"2": {"detector": 102.6}}}
    assert _tune_times(t) == {"detector.int8": 102.6, "estimator.fp16": 60.0,
                              "estimator.int8": 52.3, "pre": 28.5,
                              "runs": {"detector.int8": [144, 102.63],
                                       "estimator.fp16": [60.04]}}
    assert _tune_times(None) is None and _tune_times({"detector": {"int8": "x"}}) == {}
