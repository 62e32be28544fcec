// Auto-tune's timing on the device, in three steps within one budget (decision: autotune.js):
//   1. the app's worker times the frame work and the built pairing at its thread count;
//   2. each other candidate thread count (autotune.js threadCandidates) gets a short-lived
//      worker of its own (onnxruntime-web fixes numThreads per worker): it starts at that count,
//      creates the pairing's two sessions (the files come from the HTTP / service-worker cache),
//      times them as step 1 did, and is terminated. A count is probed only when its predicted
//      cost fits the time left: a worker's start-up (the app's worker's, without its downloads
//      and its first session, whose creation also fetched and compiled the runtime; after one
//      probe, that probe's), both sessions' creation (the app's worker's second session's time
//      per byte), both models' warm-up (their first run in the app's worker) and two runs
//      (slower by up to the ratio of thread counts). A probe that outlives the budget is
//      terminated and left out;
//   3. the app's worker times the other shipped models with what is left.
// Other models are timed at the app's count only; autotune.js scales them to another count by
// the built pairing's ratio there.

/** Times one thread count's pairing in a worker of its own; resolves to {detector, estimator,
 * numThreads, initMs, ms, runs} or {skipped: why}. Never rejects. */
export async function probe({ workerUrl, manifestUrl, threads, timeoutMs }) {
  const t0 = performance.now();
  const w = new Worker(workerUrl, { type: 'module' });
  let seq = 0;
  const waiting = new Map();
  const fail = (why) => { for (const p of waiting.values()) p.reject(new Error(why)); waiting.clear(); };
  w.onmessage = (e) => {
    const p = waiting.get(e.data.id);
    if (!p) return;
    waiting.delete(e.data.id);
    if (e.data.type === 'error') p.reject(new Error(e.data.message)); else p.resolve(e.data.info || e.data.result);
  };
  w.onerror = (e) => { e.preventDefault(); fail(`worker error: ${e.message || 'unknown'}`); };
  const call = (msg) => new Promise((resolve, reject) => {
    const id = ++seq;
    waiting.set(id, { resolve, reject });
    w.postMessage({ ...msg, id });
  });
  const timer = setTimeout(() => fail(`over the budget (${Math.round(timeoutMs)} ms)`), Math.max(0, timeoutMs));
  try {
    const info = await call({ type: 'init', manifestUrl, threads });
    const initMs = performance.now() - t0;
    if (info.numThreads !== threads) return { skipped: `onnxruntime-web ran on ${info.numThreads} thread(s)` };
    const t = await call({ type: 'tune', phase: 'pairing', budgetMs: Math.max(0, timeoutMs - initMs) });
    const p = info.autotune.primary;
    return { detector: t.detector[p.det], estimator: t.estimator[p.est], numThreads: info.numThreads,
      initMs: Math.round(initMs), ms: Math.round(performance.now() - t0), runs: t.runs };
  } catch (err) {
    return { skipped: String(err && err.message || err) };
  } finally {
    clearTimeout(timer);
    w.terminate();
  }
}

/** Steps 1-3 above. `call` talks to the app's worker (running at `here` threads); `startMs` is
 * how long that worker took to start and create its sessions, downloads excluded, and `init`
 * its init answer (its sessions' creation times, the choices' bytes). Resolves to
 * the timings autotune.js decide() takes, with per-count figures under `threads` and the
 * probes' own under `probes` (skipped counts with why). */
export async function tuneDevice({ call, budgetMs, here, candidates, workerUrl, manifestUrl, startMs, init }) {
  const primary = init.autotune.primary, bytes = init.autotune.choices;
  const created = init.timings; // role -> {fetchMs, createMs}
  const perByte = created.estimator.createMs / bytes.estimator[primary.est];
  const createMs = perByte * (bytes.detector[primary.det] + bytes.estimator[primary.est]);
  let overheadMs = Math.max(0, startMs - created.detector.createMs - created.estimator.createMs);
  const t0 = performance.now();
  const end = t0 + budgetMs;
  const timings = await call({ type: 'tune', phase: 'pairing', budgetMs });
  const pair = { detector: timings.detector[primary.det], estimator: timings.estimator[primary.est] };
  timings.threads = { [here]: pair };
  timings.probes = {};
  // more threads first: the likelier win on a phone with cores to spare
  for (const t of candidates.filter((c) => c !== here).sort((a, b) => b - a)) {
    const warmupMs = (timings.warmupMs[`detector.${primary.det}`] || pair.detector) +
      (timings.warmupMs[`estimator.${primary.est}`] || pair.estimator);
    const predicted = overheadMs + createMs + warmupMs + 2 * (pair.detector + pair.estimator) * Math.max(1, here / t);
    const left = end - performance.now();
    if (predicted > left) {
      timings.probes[t] = { skipped: `predicted ${Math.round(predicted)} ms, ${Math.round(Math.max(0, left))} ms left` };
      continue;
    }
    const r = await probe({ workerUrl, manifestUrl, threads: t, timeoutMs: left });
    timings.probes[t] = { ...r, predictedMs: Math.round(predicted) };
    if (r.initMs) overheadMs = Math.max(0, r.initMs - createMs); // a probe's own start-up
    if (!r.skipped) timings.threads[t] = { detector: r.detector, estimator: r.estimator };
  }
  const others = await call({ type: 'tune', phase: 'others', budgetMs: Math.max(0, end - performance.now()) });
  return { ...others, threads: timings.threads, probes: timings.probes, numThreads: here,
    ms: performance.now() - t0 };
}
