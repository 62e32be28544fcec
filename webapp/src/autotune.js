// Per-device auto-tune: which shipped detector / estimator, which detector cadence and how many
// WASM threads this device should use for the 80 ms capture. The worker times every shipped
// model on the device (worker.js tuneTimings); a short-lived worker per other thread count times
// the built pairing there (tunethreads.js); decide() turns those timings into a setting. Pure:
// no DOM, no worker, so node can test it.
//
// A setting's work per frame, in the worker: pre + est + det / N (detector every N frames, the
// nail box tracked in between; pre = pixels + letterbox + crop). At another thread count T than
// the one the models were timed at, every detector's time is scaled by the built detector's
// time at T over its time here, and every estimator's likewise (only the built pairing is timed
// at other counts: a second worker must create its sessions, and the tune has a budget). It fits when that mean is at
// most headroom x 80 ms (the capture's grid, with room for the main thread and jitter).
// Settings up to the app's default cadence (cfg.defaultCadence) trade nothing; a longer cadence
// refreshes the nail box less often (an accuracy trade the app then states). decide() picks the fastest setting
// that trades nothing and fits; if none fits, the shortest cadence that fits (fastest models);
// if nothing fits at all, the fastest setting there is. In every case the capture skips a
// frame whenever a newer one is already waiting (never the last): a device that falls behind
// gets its result soon after the last grab, from fewer frames (the app lists them).

export const STORAGE_KEY = 'hemoedge-autotune';
// Another model than the built pairing's is ranked as if it took MODEL_SWITCH times its time:
// it replaces the built one, whose accuracy the build measured, only when it is at least that
// much faster (or when the built one cannot keep the grid where it can). On a 4x throttled CPU
// the three estimators' best runs differed by 10-40 % between fresh tunes of one device (each
// run +-20 %), so any margin near their true difference (~20 %) chose at random: 5-7 of 10
// tunes agreed with a 7.5 % margin on the frame. Another thread count than the running one
// must make the whole frame SWITCH_MARGIN faster.
export const MODEL_SWITCH = 2;
export const SWITCH_MARGIN = 0.15;
export const THREAD_CHOICES = [1, 2, 4];

/** The thread counts auto-tune may choose from: 1, 2, 4 up to the device's cores, and only 1
 * when the page is not cross-origin isolated (no SharedArrayBuffer, no WASM threads); a count
 * pinned by the page address is the only one. */
export function threadCandidates({ cores, isolated, pinned = null }) {
  if (pinned) return [pinned];
  if (!isolated) return [1];
  return THREAD_CHOICES.filter((t) => t === 1 || t <= (cores || 1));
}

/** All settings: every shipped detector x estimator x cadence, with the modelled frame cost. */
export function settings(cfg, timings) {
  const out = [];
  const p = cfg.primary || {};
  const here = timings.numThreads || p.threads || null; // the count the models were timed at
  const at = timings.threads || {}; // count -> the built pairing's {detector, estimator} there
  const base = at[here];
  let counts = [here];
  if (!cfg.pinThreads && base) counts = Object.keys(at).map(Number).filter((t) => at[t].detector > 0 && at[t].estimator > 0);
  for (const threads of counts) {
    const rd = threads === here ? 1 : at[threads].detector / base.detector;
    const re = threads === here ? 1 : at[threads].estimator / base.estimator;
    for (const det of Object.keys(cfg.choices.detector)) {
      for (const est of Object.keys(cfg.choices.estimator)) {
        const d = timings.detector[det] * rd, e = timings.estimator[est] * re;
        if (!(d > 0) || !(e >= 0)) continue;
        for (const n of cfg.cadences) {
          const frameMs = timings.pre + e + d / n;
          out.push({ det, est, detectEvery: n, threads, frameMs, detFrameMs: timings.pre + e + d,
            preMs: timings.pre, detMs: d, estMs: e, trades: n > cfg.defaultCadence });
        }
      }
    }
  }
  return out;
}

/** The setting to use, with why. */
export function decide(cfg, timings) {
  const all = settings(cfg, timings);
  if (!all.length) throw new Error('auto-tune: no setting could be timed');
  const limit = cfg.headroom * cfg.intervalMs;
  const p = cfg.primary || {};
  const here = p.threads || timings.numThreads; // the running worker's count
  const rank = (x) => (x.preMs + x.estMs * (x.est === p.est ? 1 : MODEL_SWITCH) +
    x.detMs / x.detectEvery * (x.det === p.det ? 1 : MODEL_SWITCH)) *
    (x.threads === here ? 1 : 1 + SWITCH_MARGIN);
  const byCost = (a, b) => rank(a) - rank(b) || a.detectEvery - b.detectEvery ||
    (a.det + a.est).localeCompare(b.det + b.est) || (a.threads || 0) - (b.threads || 0);
  const fits = all.filter((s) => s.frameMs <= limit);
  const free = fits.filter((s) => !s.trades).sort(byCost);
  let pick, why;
  if (free.length) {
    pick = free[0];
    why = 'fastest setting that keeps the 80 ms grid with headroom at the default cadence';
  } else if (fits.length) {
    const n = Math.min(...fits.map((s) => s.detectEvery));
    pick = fits.filter((s) => s.detectEvery === n).sort(byCost)[0];
    why = `no setting fits at the default cadence: detector every ${n} frames`;
  } else {
    pick = [...all].sort(byCost)[0];
    why = 'nothing fits the 80 ms grid on this device: fastest setting, frames skipped when busy';
  }
  return { ...pick, fits: pick.frameMs <= limit, limitMs: limit, why,
    key: `det=${pick.det},est=${pick.est},every=${pick.detectEvery}` +
      (pick.threads ? `,threads=${pick.threads}` : '') };
}

/** The words the app shows for a setting (says what it trades, if anything). */
export function describe(s, defaultCadence) {
  let t = `Tuned for this device: detector ${s.det}, estimator ${s.est}, ` +
    (s.threads ? `${s.threads} thread${s.threads === 1 ? '' : 's'}, ` : '') + 'detector on every ' +
    `${s.detectEvery === 1 ? 'frame' : `${s.detectEvery}${s.detectEvery === 2 ? 'nd' : s.detectEvery === 3 ? 'rd' : 'th'} frame`} ` +
    `(about ${s.frameMs.toFixed(0)} ms of work per 80 ms frame).`;
  if (s.detectEvery > defaultCadence) {
    t += ` Accuracy trade: this device is slow, so the nail is re-detected every ` +
      `${s.detectEvery} frames instead of every ${defaultCadence} and tracked in between; ` +
      'hold the finger still.';
  }
  if (!s.fits) {
    t += ' Accuracy trade: this device is too slow to analyse every frame in 80 ms, so frames ' +
      'that arrive while it is busy are skipped and the result uses fewer frames.';
  }
  return t;
}
