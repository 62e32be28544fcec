// Pacing a capture on a device too slow for every frame (auto-tune's skipStale). Pure: no
// worker, no ort, the clock passed in, so node can test it.
//
// A frame is skipped when a newer one is already waiting, so the worker stays near the newest
// frame; and when it is predicted not to finish before the result is due (the last grab's time
// + CAPTURE.resultMs), so the result comes on time, from fewer frames. A detector frame that
// would be late is analysed on the tracked box instead when that fits. The prediction is the
// longest of the last COST_RUNS whole frames of the same kind in this capture; with none yet,
// the frame is analysed.

export const COST_RUNS = 3;

/** Whether grabbed frame k runs the detector: with no tracked box, or once the last detection
 * is detectEvery grabbed frames old. Counted in grabs, not in analysed frames: a capture that
 * skips frames re-detects as often in time as one that analyses every frame (counting
 * `k % detectEvery` instead, a skipped multiple of detectEvery left the box unchecked for
 * seconds while the hand moved). */
export function detectorDue({ tracked, lastDetK, detectEvery }, k) {
  return !tracked || lastDetK === null || lastDetK === undefined || k - lastDetK >= detectEvery;
}

/** A capture's pacing state: frames, intervalMs and resultMs from capture-start. */
export function pacer({ frames = 0, intervalMs = 0, resultMs = 0 } = {}) {
  return { frames: frames | 0, intervalMs: +intervalMs || 0, resultMs: +resultMs || 0,
    deadline: null, cost: { det: [], track: [] } };
}

/** The result's due time (ms, the grab clock's epoch) seen from frame k grabbed at grabEpoch;
 * the latest over the frames seen, since a grid re-anchored after a stall ends later. */
export function noteGrab(p, k, grabEpoch) {
  if (!(p.frames > 0 && p.resultMs > 0)) return p.deadline;
  const due = grabEpoch + (p.frames - 1 - k) * p.intervalMs + p.resultMs;
  p.deadline = p.deadline === null ? due : Math.max(p.deadline, due);
  return p.deadline;
}

/** Learn from a frame that ran the whole path (estMs set): its time with and without the
 * detector. Frames rejected earlier (no nail, motion) say nothing about a whole frame. */
export function noteCost(p, rec) {
  if (rec.estMs === null || rec.estMs === undefined || !(rec.totalMs >= 0)) return;
  const push = (kind, ms) => {
    const xs = p.cost[kind];
    xs.push(ms);
    if (xs.length > COST_RUNS) xs.shift();
  };
  push('track', rec.totalMs - (rec.detMs || 0));
  if (rec.detected) push('det', rec.totalMs);
}

/** How the next frame goes: 'skip' (a newer one waits), 'late' (cannot finish before the
 * result is due), 'track' (a detector frame analysed on the tracked box) or 'full'. */
export function plan(p, { newerWaiting, wantsDetector, tracked, now }) {
  if (newerWaiting) return 'skip';
  if (p.deadline === null) return 'full';
  const fits = (kind) => {
    const xs = p.cost[kind];
    return !xs.length || now + Math.max(...xs) <= p.deadline;
  };
  if (fits(wantsDetector ? 'det' : 'track')) return 'full';
  if (wantsDetector && tracked && fits('track')) return 'track';
  return 'late';
}
