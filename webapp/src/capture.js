// The capture clock. Frames are grabbed at t0 + k * interval (drift-corrected setTimeout
// chain: each timeout is computed from the start, not from the previous tick), and the grab
// never waits for inference: onTick only starts the grab, inference consumes frames from a
// queue in the worker. After a stall (a tick late by more than half an interval) the grid is
// re-anchored at the late tick instead of firing the missed ticks back to back, which would
// grab the same camera frame twice.

export const CAPTURE = Object.freeze({
  frames: 30,
  intervalMs: 80,
  // a device that falls behind (auto-tune's skipStale) shows its result at most this long after
  // the last grab: the worker skips a frame it predicts it cannot finish by then (worker.js)
  resultMs: 250,
});

/**
 * Calls onTick(k, tMs) for k = 0..n-1 at t0 + k * intervalMs. Returns {cancel(), done} where
 * done resolves with the list of tick times (performance.now ms) once the last tick ran or
 * the schedule was cancelled.
 */
export function schedule(onTick, { frames = CAPTURE.frames, intervalMs = CAPTURE.intervalMs } = {}) {
  let timer = null, cancelled = false, resolve;
  const done = new Promise((r) => { resolve = r; });
  const ticks = [];
  let t0 = performance.now();
  const tick = () => {
    if (cancelled) return;
    const k = ticks.length;
    const t = performance.now();
    if (t - (t0 + k * intervalMs) > intervalMs / 2) { t0 = t - k * intervalMs; ticks.reanchored = (ticks.reanchored || 0) + 1; }
    ticks.push(t);
    onTick(k, t);
    if (ticks.length >= frames) { resolve(ticks); return; }
    const next = t0 + ticks.length * intervalMs;
    timer = setTimeout(tick, Math.max(0, next - performance.now()));
  };
  tick();
  return {
    cancel() { cancelled = true; clearTimeout(timer); resolve(ticks); },
    done,
  };
}

/**
 * The seed app's loop, kept only as a benchmark reference (?seedloop=1): grab, wait for the
 * inference result, then sleep intervalMs. Frames end up intervalMs + inference apart.
 */
export function seedLoop(grabAndInfer, { frames = CAPTURE.frames, intervalMs = CAPTURE.intervalMs } = {}) {
  let cancelled = false;
  const ticks = [];
  const done = (async () => {
    for (let k = 0; k < frames && !cancelled; k++) {
      const t = performance.now();
      ticks.push(t);
      await grabAndInfer(k, t);
      if (k < frames - 1) await new Promise((r) => setTimeout(r, intervalMs));
    }
    return ticks;
  })();
  return { cancel() { cancelled = true; }, done };
}
