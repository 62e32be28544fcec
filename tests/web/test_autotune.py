"""Per-device auto-tune: the decision (webapp/src/autotune.js, in node), what the build ships for
it, and the app doing it on first use, caching it per version, showing it and re-tuning."""

from __future__ import annotations

import json

import pytest
from webhelp import needs_ort, open_app, run_js, wait_js

from hemoedge.errors import HemoedgeError
from hemoedge.web.build import DEFAULT_CADENCE, BuildConfig, build, parse_autotune

CFG = {"choices": {"detector": {"int8": 1, "fp32": 1}, "estimator": {"fp32": 1, "int8": 1}},
       "cadences": [2, 3, 4, 6], "defaultCadence": 2, "headroom": 0.7, "intervalMs": 80}


def _decide(timings: dict, cfg: dict = CFG) -> dict:
    return run_js({"m": "autotune.js"}, f"const r = m.decide({json.dumps(cfg)}, "
                  f"{json.dumps(timings)}); return {{...r, text: m.describe(r, 2)}};")


def _timings(f: float) -> dict:  # a device f times slower than an imaginary reference
    return {"detector": {"int8": 20 * f, "fp32": 35 * f},
            "estimator": {"fp32": 12 * f, "int8": 8 * f}, "pre": 3 * f}


def test_fast_device_keeps_the_default_cadence_and_takes_the_fastest_models():
    r = _decide(_timings(1))
    assert r["key"] == "det=int8,est=int8,every=2" and r["fits"] and not r["trades"]
    assert r["frameMs"] == pytest.approx(3 + 8 + 10)
    assert "Accuracy trade" not in r["text"]


def test_slower_device_trades_detector_cadence_and_says_so():
    # limit 0.7 x 80 = 56 ms; every=2: 67.2 ms, every=3: 56.5, every=4: 51.2 (the shortest fit)
    r = _decide(_timings(3.2))
    assert r["key"] == "det=int8,est=int8,every=4" and r["trades"] and r["fits"]
    assert "Accuracy trade" in r["text"] and "every 4 frames instead of every 2" in r["text"]


def test_device_too_slow_for_anything_gets_the_fastest_setting_and_a_warning():
    r = _decide(_timings(6))
    assert not r["fits"] and r["key"] == "det=int8,est=int8,every=6"
    assert "frames that arrive while it is busy are skipped" in r["text"]


def test_another_model_must_be_clearly_faster_than_the_built_one():
    cfg = {**CFG, "primary": {"det": "int8", "est": "fp32"}}
    t = _timings(1)
    t["estimator"]["int8"] = 11.5  # 4 % faster than fp32 (12): keep the built estimator
    key = lambda: run_js({"m": "autotune.js"},  # noqa: E731
                         f"return m.decide({json.dumps(cfg)}, {json.dumps(t)}).key;")
    assert key() == "det=int8,est=fp32,every=2"
    t["estimator"]["int8"] = 8.0  # a third faster: within what fresh tunes of one device spread
    assert key() == "det=int8,est=fp32,every=2"
    t["estimator"]["int8"] = 5.9  # twice as fast: worth leaving the built estimator for
    assert key() == "det=int8,est=int8,every=2"


def test_a_built_model_that_cannot_keep_the_grid_gives_way_to_one_that_can():
    # limit 56 ms; est=fp32 (38.4 ms) fits at no cadence, est=int8 (25.6 ms) from every 4th on
    cfg = {**CFG, "primary": {"det": "int8", "est": "fp32"}}
    r = _decide(_timings(3.2), cfg)
    assert r["key"] == "det=int8,est=int8,every=4" and r["fits"]


def test_untimed_choice_is_left_out():
    t = _timings(1)
    del t["estimator"]["int8"]  # not timed within the budget
    assert _decide(t)["est"] == "fp32"


def _node(expr: str):
    return run_js({"m": "autotune.js"}, f"return {expr};")


def test_thread_candidates_follow_cores_isolation_and_a_pinned_count():
    tc = "m.threadCandidates"
    assert _node(f"{tc}({{cores: 8, isolated: true}})") == [1, 2, 4]
    assert _node(f"{tc}({{cores: 2, isolated: true}})") == [1, 2]
    assert _node(f"{tc}({{cores: 8, isolated: false}})") == [1]  # no SharedArrayBuffer
    assert _node(f"{tc}({{cores: 8, isolated: true, pinned: 2}})") == [2]


THREADED = {**CFG, "primary": {"det": "int8", "est": "fp32", "threads": 2}}


def _threaded(f4: float, f1: float = 1.6) -> dict:
    """Timed at 2 threads; the built pairing (int8, fp32) also at 4 and 1 threads, f4 / f1
    times its 2-thread time."""
    t = {**_timings(1), "numThreads": 2}
    t["threads"] = {"2": {"detector": 20, "estimator": 12},
                    "4": {"detector": 20 * f4, "estimator": 12 * f4},
                    "1": {"detector": 20 * f1, "estimator": 12 * f1}}
    return t


def test_more_threads_are_chosen_when_clearly_faster_and_scale_the_other_models():
    t = _threaded(0.6)
    t["estimator"]["int8"] = 5  # over twice as fast as the built fp32 (12): it is chosen
    r = _decide(t, THREADED)
    assert r["threads"] == 4 and r["key"] == "det=int8,est=int8,every=2,threads=4"
    # the int8 estimator was timed at 2 threads only: scaled by the pairing's ratio at 4
    assert r["frameMs"] == pytest.approx(3 + 5 * 0.6 + 20 * 0.6 / 2)
    assert "4 threads" in r["text"]


def test_the_running_count_is_kept_within_the_margin():
    r = _decide(_threaded(0.92), THREADED)  # 8 % faster at 4 threads: not worth a new worker
    assert r["threads"] == 2 and r["key"].endswith(",threads=2") and "2 threads" in r["text"]
    # the same device tuned from a worker already at 4 threads: 2 is 8 % slower, so it stays
    t = {**_timings(0.92), "numThreads": 4,
         "threads": {"4": {"detector": 20 * 0.92, "estimator": 12 * 0.92},
                     "2": {"detector": 20, "estimator": 12}}}
    assert _decide(t, {**THREADED, "primary": {**THREADED["primary"], "threads": 4}})["threads"] == 4
    # one thread can win too (a loaded or throttled device)
    assert _decide(_threaded(1.1, f1=0.7), THREADED)["threads"] == 1


def test_a_pinned_count_is_kept_however_fast_another_is():
    r = _decide(_threaded(0.3), {**THREADED, "pinThreads": True})
    assert r["threads"] == 2 and r["key"] == "det=int8,est=fp32,every=2,threads=2"


def test_a_count_that_fits_at_the_default_cadence_wins_over_the_margin():
    # at 2 threads every=2 needs 57.1 ms (> 0.7 x 80 = 56); 4 threads only 10 % faster on the
    # models: 52.2 ms, fits without trading the cadence, so the margin does not hold it back
    t = {**_timings(2.72), "numThreads": 2,
         "threads": {"2": {"detector": 54.4, "estimator": 32.64},
                     "4": {"detector": 54.4 * 0.9, "estimator": 32.64 * 0.9}}}
    r = _decide(t, THREADED)
    assert r["threads"] == 4 and r["detectEvery"] == 2 and r["fits"]
    assert r["frameMs"] == pytest.approx(3 * 2.72 + 0.9 * 18 * 2.72)
    assert _decide(t, {**THREADED, "pinThreads": True})["detectEvery"] == 3  # pinned: trades


def test_parse_autotune():
    assert parse_autotune("det=int8, det=fp32,det=int8") == ("det=int8", "det=fp32")
    for bad in ("det=int9", "det", "cls=int8"):
        with pytest.raises(HemoedgeError, match="bad --autotune-variants item"):
            parse_autotune(bad)


@needs_ort
def test_build_ships_the_choices_and_their_cost(tiny_art, tmp_path):
    res = build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=tmp_path / "d",
                            autotune=("det=fp32", "est=int8", "det=int8")))
    files = {p.name for p in (tmp_path / "d").iterdir()}
    models = json.loads((tmp_path / "d" / res.files["src/models.json"]["file"]).read_text())
    at = models["autotune"]
    assert sorted(at["choices"]["detector"]) == ["fp32", "int8"]
    assert sorted(at["choices"]["estimator"]) == ["fp32", "int8"]
    for role in ("detector", "estimator"):
        for c in at["choices"][role].values():
            assert c["url"].lstrip("./") in files and c["url"].lstrip("./") in res.precache
    assert at["cadences"] == [2, 3, 4, 6, 8] and at["defaultCadence"] == DEFAULT_CADENCE == 4
    assert set(res.autotune_cost) == {"detector.fp32", "estimator.int8"}  # int8 det is the pairing
    bm = json.loads((tmp_path / "d" / "build-manifest.json").read_text())
    assert bm["autotune"]["extra_models"] == res.autotune_cost
    plain = build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=tmp_path / "p"))
    assert "autotune" not in json.loads(
        (tmp_path / "p" / plain.files["src/models.json"]["file"]).read_text())


@pytest.fixture(scope="module")
def tuned_server(tiny_art, tmp_path_factory):
    from hemoedge.web.serve import serve_in_thread

    out = tmp_path_factory.mktemp("autotune") / "dist"
    build(BuildConfig(art=tiny_art, detector="int8", estimator="fp32", out=out,
                      autotune=("det=fp32", "est=int8")))
    with serve_in_thread(out) as (_srv, url):
        yield url


@pytest.mark.browser
@needs_ort
def test_app_tunes_on_first_use_caches_shows_and_retunes(browser, tuned_server):
    ctx = browser.new_context(permissions=["camera"])
    try:
        page = ctx.new_page()
        open_app(page, tuned_server, "?bench=1&threads=1")
        at = page.evaluate("window.__hemoedgeBench.autotune")
        assert at and not at["cached"] and at["tunedMs"] < 10_000
        assert set(at["timings"]["detector"]) <= {"int8", "fp32"} and at["timings"]["pre"] >= 0
        assert at["key"].startswith("det=") and at["choice"]["detectEvery"] in (2, 3, 4, 6, 8)
        assert page.evaluate("window.__hemoedgeBench.detectEvery") == at["choice"]["detectEvery"]
        note = page.text_content("#tune-note")
        assert note.startswith("Tuned for this device:") and "decided in" in note
        assert page.is_visible("#retune-btn")
        stored = page.evaluate(f"JSON.parse(localStorage.getItem({json.dumps(at['storageKey'])}))")
        assert stored["choice"]["key"] == at["key"]
        # a new page of the same version: the saved setting, no timing
        page2 = ctx.new_page()
        open_app(page2, tuned_server, "?bench=1&threads=1")
        at2 = page2.evaluate("window.__hemoedgeBench.autotune")
        assert at2["cached"] and at2["key"] == at["key"]
        assert "(saved setting)" in page2.text_content("#tune-note")
        # Re-tune times again
        page2.click("#retune-btn")
        wait_js(page2, "window.__hemoedgeBench.autotune && !window.__hemoedgeBench.autotune.cached")
        assert "decided in" in page2.text_content("#tune-note")
        # ?detect_every= fixes the cadence; ?autotune=0 skips the tune
        page3 = ctx.new_page()
        open_app(page3, tuned_server, "?bench=1&threads=1&autotune=0")
        assert page3.evaluate("window.__hemoedgeBench.autotune") is None
        assert page3.text_content("#tune-note") == ""
    finally:
        ctx.close()


@pytest.mark.browser
@needs_ort
def test_app_tunes_the_thread_count_and_starts_on_the_saved_one(browser, tuned_server):
    ctx = browser.new_context(permissions=["camera"])
    try:
        page = ctx.new_page()
        open_app(page, tuned_server, "?bench=1")  # no ?threads: auto-tune chooses the count
        at = page.evaluate("window.__hemoedgeBench.autotune")
        cores = page.evaluate("navigator.hardwareConcurrency")
        want = [t for t in (1, 2, 4) if t == 1 or t <= cores]
        assert at["threadCandidates"] == want and not at["cached"]
        # the pairing timed at every candidate count (tiny models: every probe fits the budget),
        # the running count by the app's worker, each other one by a worker of its own
        per = at["timings"]["threads"]
        assert sorted(map(int, per)) == want, at["timings"]["probes"]
        assert all(v["detector"] > 0 and v["estimator"] > 0 for v in per.values())
        assert all(p["initMs"] > 0 for p in at["timings"]["probes"].values())
        assert at["tunedMs"] < 10_000
        c = at["choice"]
        assert c["threads"] in want and at["key"].endswith(f",threads={c['threads']}")
        # the app ends on the chosen count (a new worker when it is not the default 2)
        assert page.evaluate("window.__hemoedgeBench.numThreads") == c["threads"]
        assert (at["restartMs"] > 0) == (c["threads"] != 2)
        word = "thread" if c["threads"] == 1 else "threads"
        assert f"{c['threads']} {word}" in page.text_content("#tune-note")
        # a saved choice of another count: a new page starts on it, without timing
        other = next(t for t in want if t != c["threads"])
        page.evaluate(f"""(() => {{ const k = {json.dumps(at['storageKey'])};
            const r = JSON.parse(localStorage.getItem(k)); r.choice.threads = {other};
            localStorage.setItem(k, JSON.stringify(r)); }})()""")
        page2 = ctx.new_page()
        open_app(page2, tuned_server, "?bench=1")
        at2 = page2.evaluate("window.__hemoedgeBench.autotune")
        assert at2["cached"] and at2["choice"]["threads"] == other and at2["restartMs"] == 0
        assert page2.evaluate("window.__hemoedgeBench.numThreads") == other
        assert "(saved setting)" in page2.text_content("#tune-note")
        # ?threads=N pins the count: no other count is timed, the choice keeps it
        page3 = ctx.new_page()
        open_app(page3, tuned_server, "?bench=1&threads=2")
        at3 = page3.evaluate("window.__hemoedgeBench.autotune")
        assert not at3["cached"] and list(at3["timings"]["threads"]) == ["2"]
        assert at3["timings"]["probes"] == {} and at3["choice"]["threads"] == 2
        assert page3.evaluate("window.__hemoedgeBench.numThreads") == 2
    finally:
        ctx.close()
