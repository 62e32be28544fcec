"""Pacing a capture on a slow device (webapp/src/pacing.js, in node): which frames the worker
skips so that the result comes at most CAPTURE.resultMs after the last grab."""

from __future__ import annotations

from webhelp import run_js


def _js(body: str):
    """Run `body` (which returns a JSON-able value) with pacing.js as `p` and capture.js as `c`."""
    return run_js({"p": "pacing.js", "c": "capture.js"}, body)


def test_the_result_is_due_resultMs_after_the_last_grab_and_a_late_grid_moves_it_later():
    out = _js("""
      const s = p.pacer({frames: c.CAPTURE.frames, intervalMs: c.CAPTURE.intervalMs,
                         resultMs: c.CAPTURE.resultMs});
      const first = p.noteGrab(s, 0, 1000);
      const same = p.noteGrab(s, 5, 1000 + 5 * 80);   // on the grid: unchanged
      const early = p.noteGrab(s, 6, 1000 + 6 * 80 - 30);  // never earlier
      const stalled = p.noteGrab(s, 7, 1000 + 7 * 80 + 200);  // re-anchored: later
      return {first, same, early, stalled, resultMs: c.CAPTURE.resultMs};""")
    assert out["resultMs"] == 250
    assert out["first"] == 1000 + 29 * 80 + 250 == out["same"] == out["early"]
    assert out["stalled"] == out["first"] + 200


def test_frames_that_cannot_finish_in_time_are_tracked_or_skipped():
    out = _js("""
      const s = p.pacer({frames: 30, intervalMs: 80, resultMs: 250});
      const due = p.noteGrab(s, 0, 0);
      const plan = (o) => p.plan(s, {newerWaiting: false, wantsDetector: true, tracked: true,
                                     now: 0, ...o});
      const before = plan({now: due - 100});  // nothing timed yet: analysed
      p.noteCost(s, {estMs: 100, detMs: 200, detected: true, totalMs: 320});
      p.noteCost(s, {estMs: 100, detMs: null, detected: false, totalMs: 110});
      p.noteCost(s, {estMs: null, detMs: 200, detected: true, totalMs: 215}); // rejected: ignored
      return {before, cost: s.cost,
        early: plan({now: due - 400}), track: plan({now: due - 200}),
        untracked: plan({now: due - 200, tracked: false}),
        trackFrame: plan({now: due - 200, wantsDetector: false}),
        late: plan({now: due - 100}), waiting: plan({now: due - 400, newerWaiting: true})};""")
    assert out["before"] == "full"
    assert out["cost"] == {"det": [320], "track": [120, 110]}
    assert out["early"] == "full"  # 320 ms fit in 400
    assert out["track"] == "track"  # the detector does not fit, the tracked box does
    assert out["untracked"] == "late"  # no box to track
    assert out["trackFrame"] == "full"
    assert out["late"] == "late"  # not even the estimator fits
    assert out["waiting"] == "skip"


def test_the_prediction_is_the_longest_of_the_last_three_frames():
    out = _js("""
      const s = p.pacer({frames: 30, intervalMs: 80, resultMs: 250});
      const due = p.noteGrab(s, 29, 0);  // the last frame: due 250 ms after its grab
      const r = [];
      for (const ms of [240, 100, 100, 100]) {
        p.noteCost(s, {estMs: ms, detMs: null, detected: false, totalMs: ms});
        r.push(p.plan(s, {newerWaiting: false, wantsDetector: false, tracked: true, now: 20}));
      }
      return {r, track: s.cost.track, due};""")
    assert out["due"] == 250
    # 20 + 240 > 250 while the 240 ms frame is among the last three; then 20 + 100 fits
    assert out["r"] == ["late", "late", "late", "full"]
    assert out["track"] == [100, 100, 100]


def test_without_a_capture_plan_nothing_is_late():
    out = _js("""
      const s = p.pacer({});  // the app without auto-tune sends no frames / resultMs
      p.noteGrab(s, 0, 0);
      p.noteCost(s, {estMs: 100, detMs: 900, detected: true, totalMs: 1000});
      return [s.deadline, p.plan(s, {newerWaiting: false, wantsDetector: true, tracked: true,
                                     now: 1e9})];""")
    assert out == [None, "full"]


def test_the_detector_cadence_counts_grabs_not_analysed_frames():
    out = _js("""
      const st = {tracked: [0, 0, 10, 10], lastDetK: null, detectEvery: 6};
      const run = (ks) => ks.map((k) => {
        const due = p.detectorDue(st, k);
        if (due) st.lastDetK = k;
        return due;
      });
      const every = run([...Array(13).keys()]);     // a device that keeps up
      st.lastDetK = null;
      const skipping = run([0, 4, 7, 11, 14, 17]);   // every 3rd-4th grab analysed
      const lost = p.detectorDue({tracked: null, lastDetK: 2, detectEvery: 6}, 3);
      return {every, skipping, lost};""")
    # keeping up: grabs 0, 6, 12, as before
    assert [k for k, d in enumerate(out["every"]) if d] == [0, 6, 12]
    # skipping: 7 and 14 re-detect (6+ grabs after the last), where `k % 6 == 0` never would
    assert out["skipping"] == [True, False, True, False, True, False]
    assert out["lost"] is True  # no box: the detector runs whatever the cadence
