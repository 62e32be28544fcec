// Inference worker: owns the two onnxruntime-web sessions and the whole per-frame path
// (pixels -> letterbox -> detector -> NMS -> track -> crop -> estimator), so the main thread
// only grabs frames and draws. Messages are handled one at a time, in arrival order.

import * as ort from './ort.wasm.min.mjs';
import { letterbox, resizeCrop, cropRect } from './preprocess.js';
import { decodeDetections, pickNail } from './postprocess.js';
import { QUALITY, REASONS, meanLuma, thumbnail, motionScore } from './quality.js';
import { decodeIndex, CODE } from './frameindex.js';
import * as pacing from './pacing.js';
import { patch, findShift, lost, moveBox } from './track.js';

const epoch = () => performance.timeOrigin + performance.now(); // ms, comparable across threads

let M = null; // the build's model manifest (models.json)
let det = null, est = null; // the sessions in use
const sessions = { detector: {}, estimator: {} }; // role -> precision -> session (auto-tune)
let opts = null, base = null, fetchOpts = {};
const activeSpec = {}; // role -> spec of the session in use (auto-tune may switch precision)
const specFor = (role) => activeSpec[role] || M[role].spec;
let initTimings = {}; // role -> {fetchMs, createMs} of the built pairing's sessions
let canvas = null, ctx = null;
const inputs = {}; // role -> Float32Array reused across frames (runs are sequential here)
const inputBuffer = (role) => {
  const shape = M[role].spec.input_shape;
  return (inputs[role] ||= new Float32Array(shape.reduce((a, b) => a * b, 1)));
};
const captures = new Map(); // id -> capture state

// ------------------------------------------------------------------ set-up
async function init({ manifestUrl, threads, retry }) {
  const t0 = epoch();
  // a retry must not be answered by an HTTP cache that kept the failed response
  const fetchOk = (url) => fetchChecked(url, retry ? { cache: 'reload' } : {});
  M = await (await fetchOk(manifestUrl)).json();
  const rel = (u) => new URL(u, manifestUrl).href;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.wasmPaths = { mjs: rel(M.ort.mjs), wasm: rel(M.ort.wasm) };
  opts = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
  base = manifestUrl;
  fetchOpts = retry ? { cache: 'reload' } : {};
  const timings = {};
  const load = async (role) => {
    const t = epoch();
    const bytes = new Uint8Array(await (await fetchOk(rel(M[role].url))).arrayBuffer());
    const t1 = epoch();
    const s = await ort.InferenceSession.create(bytes, opts);
    timings[role] = { fetchMs: t1 - t, createMs: epoch() - t1 };
    sessions[role][M[role].precision] = s;
    return s;
  };
  det = await load('detector'); // sequential: the first create also starts the WASM runtime
  est = await load('estimator');
  initTimings = timings;
  return {
    timings,
    totalMs: epoch() - t0,
    numThreads: ort.env.wasm.numThreads, // ort resets this to 1 when threads are unavailable
    requestedThreads: threads,
    crossOriginIsolated: self.crossOriginIsolated,
    ortVersion: ort.env.versions ? ort.env.versions.web : M.ort.version,
    variant: M.variant,
    who: M.who, // WHO category thresholds (hemoedge.severity.who_thresholds)
    autotune: M.autotune ? {
      cadences: M.autotune.cadences, defaultCadence: M.autotune.defaultCadence,
      headroom: M.autotune.headroom, intervalMs: M.autotune.intervalMs, budgetMs: M.autotune.budgetMs,
      choices: { detector: Object.fromEntries(Object.keys(M.autotune.choices.detector).map((p) => [p, M.autotune.choices.detector[p].bytes])),
        estimator: Object.fromEntries(Object.keys(M.autotune.choices.estimator).map((p) => [p, M.autotune.choices.estimator[p].bytes])) },
      primary: { det: M.detector.precision, est: M.estimator.precision },
    } : null,
  };
}

async function fetchChecked(url, opts) {
  const r = await fetch(url, opts);
  if (!r.ok) throw new Error(`could not load ${url}: HTTP ${r.status}`);
  return r;
}

// ------------------------------------------------------------------ the two models
function pixels(bitmap) {
  const { width, height } = bitmap;
  if (!canvas || canvas.width !== width || canvas.height !== height) {
    canvas = new OffscreenCanvas(width, height);
    ctx = canvas.getContext('2d', { willReadFrequently: true });
  }
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  return ctx.getImageData(0, 0, width, height);
}

async function detect(img) {
  const s = specFor('detector');
  const t0 = performance.now();
  const { tensor, geo } = letterbox(img, s.preprocess, inputBuffer('detector'));
  const t1 = performance.now();
  const out = await det.run({ [s.input_name]: new ort.Tensor('float32', tensor, s.input_shape) });
  const t2 = performance.now();
  const raw = out[s.output_name];
  const dets = decodeDetections(raw.data, raw.dims[2], raw.dims[1] - 4, geo, M.postprocess);
  return { dets, ms: { pre: t1 - t0, det: t2 - t1, post: performance.now() - t2 } };
}

async function estimate(img, rect) {
  const s = specFor('estimator');
  const t0 = performance.now();
  const x = resizeCrop(img, rect, s.preprocess, inputBuffer('estimator'));
  const t1 = performance.now();
  const out = await est.run({ [s.input_name]: new ort.Tensor('float32', x, s.input_shape) });
  return { hb: out[s.output_name].data[0], ms: { crop: t1 - t0, est: performance.now() - t1 } };
}

const nailClass = () => Math.max(0, M.detector.spec.class_names.indexOf('nail'));

// ------------------------------------------------------------------ capture frames
async function captureFrame(st, m, track = false) {
  const start = epoch();
  const img = pixels(m.bitmap);
  const rec = {
    k: m.k, grabT: m.grabT, frameIndex: decodeIndex(img), queueMs: start - m.grabEpoch,
    detMs: null, estMs: null, preMs: 0, hb: null, reason: null, box: null, detected: false,
  };
  const W = img.width, H = img.height;
  const reject = (why) => { rec.reason = why; return rec; };
  if (meanLuma(img, { x: 0, y: 0, w: W, h: H }, 8) < QUALITY.minLuma) return reject(REASONS.dark);
  let box = st.tracked;
  if (!track && wantsDetector(st, m)) {
    const r = await detect(img);
    rec.detected = true;
    st.lastDetK = m.k;
    rec.detMs = r.ms.det;
    rec.preMs += r.ms.pre + r.ms.post;
    const pick = pickNail(r.dets, nailClass(), st.tracked);
    if (!pick) { st.tracked = null; st.thumb = null; return reject(REASONS.noNail); }
    const jumped = st.tracked && pick.iou < QUALITY.minTrackIou;
    box = pick.det.box;
    st.tracked = box;
    st.ref = patch(img, cropRect(box, W, H)); // what the tracker looks for until the next detection
    if (jumped) { st.thumb = null; return reject(REASONS.motion); }
  } else if (box && st.ref) { // between detections: follow the nail (track.js)
    const s = findShift(img, st.ref, cropRect(box, W, H));
    rec.track = s;
    if (lost(s, st.ref)) { st.tracked = null; st.thumb = null; return reject(REASONS.motion); }
    box = moveBox(box, s.dx, s.dy, W, H);
    st.tracked = box;
  }
  rec.box = box;
  const rect = cropRect(box, W, H);
  if (Math.min(rect.w, rect.h) < QUALITY.minNailSide) return reject(REASONS.small);
  const thumb = thumbnail(img, rect);
  const moved = motionScore(thumb, st.thumb) > QUALITY.maxMotion;
  st.thumb = thumb;
  if (moved) return reject(REASONS.motion);
  const e = await estimate(img, rect);
  rec.hb = e.hb;
  rec.estMs = e.ms.est;
  rec.preMs += e.ms.crop;
  return rec;
}

const wantsDetector = (st, m) => pacing.detectorDue(st, m.k);

// A skipped frame (pacing.js): only its code strip is read.
let strip = null, stripCtx = null;
function skipFrame(m, reason = REASONS.busy) {
  const w = CODE.x + (CODE.bits + 2) * CODE.cell, h = CODE.y + CODE.cell;
  if (!strip) {
    strip = new OffscreenCanvas(w, h);
    stripCtx = strip.getContext('2d', { willReadFrequently: true });
  }
  stripCtx.drawImage(m.bitmap, 0, 0, w, h, 0, 0, w, h);
  m.bitmap.close();
  return { k: m.k, grabT: m.grabT, frameIndex: decodeIndex(stripCtx.getImageData(0, 0, w, h)),
    queueMs: epoch() - m.grabEpoch, detMs: null, estMs: null, preMs: 0, hb: null,
    reason, box: null, detected: false, skipped: true };
}

const yieldToMessages = () => new Promise((resolve) => {
  const ch = new MessageChannel();
  ch.port1.onmessage = () => { ch.port1.close(); resolve(); };
  ch.port2.postMessage(0);
});

async function pumpCapture(id) {
  const st = captures.get(id);
  while (st && !st.cancelled && st.pending.has(st.next)) {
    // frames that arrived during the last one's work are still queued as message events:
    // let them in first, so skipStale sees whether a newer frame is waiting
    if (st.skipStale) await yieldToMessages();
    if (st.cancelled || !st.pending.has(st.next)) break;
    const m = st.pending.get(st.next);
    st.pending.delete(st.next);
    st.next++;
    const t0 = performance.now();
    let how = 'full';
    if (st.skipStale) {
      pacing.noteGrab(st.pace, m.k, m.grabEpoch);
      how = pacing.plan(st.pace, { newerWaiting: st.pending.has(st.next),
        wantsDetector: wantsDetector(st, m), tracked: !!st.tracked, now: epoch() });
    }
    const rec = how === 'skip' ? skipFrame(m) : how === 'late' ? skipFrame(m, REASONS.late)
      : await captureFrame(st, m, how === 'track');
    rec.totalMs = performance.now() - t0; // pixels + every stage this frame went through
    if (st.skipStale && !rec.skipped) pacing.noteCost(st.pace, rec);
    self.postMessage({ type: 'frame', id, rec, doneEpoch: epoch() });
  }
}

// ------------------------------------------------------------------ upload / preview
async function analyse(bitmap, withHb) {
  const img = pixels(bitmap);
  const r = await detect(img);
  const nails = [];
  for (const d of r.dets) {
    if (d.cls !== nailClass()) continue;
    const n = { box: d.box, score: d.score, hb: null };
    if (withHb) n.hb = (await estimate(img, cropRect(d.box, img.width, img.height))).hb;
    nails.push(n);
  }
  return { width: img.width, height: img.height, dets: r.dets, nails, ms: r.ms,
    classNames: M.detector.spec.class_names };
}

// ------------------------------------------------------------------ auto-tune
// Times every model the build ships for auto-tune (M.autotune.choices) on this device, within
// the budget: the session (created once, then kept), one warm-up run, then runs until 3 are
// timed or the time is up; plus the per-frame work around the models (pixels, letterbox, crop)
// on a 640x480 frame. The decision is autotune.js's, on the main thread.
async function session(role, prec) {
  if (sessions[role][prec]) return sessions[role][prec];
  const c = M.autotune.choices[role][prec];
  if (!c) throw new Error(`auto-tune: no ${role} ${prec} in this build`);
  const bytes = new Uint8Array(await (await fetchChecked(new URL(c.url, base).href, fetchOpts)).arrayBuffer());
  sessions[role][prec] = await ort.InferenceSession.create(bytes, opts);
  return sessions[role][prec];
}

function specOf(role, prec) {
  return (M.autotune && M.autotune.choices[role][prec] || M[role]).spec;
}

// phase 'pairing': the frame work and the built pairing only (all a thread-count probe
// times, and the first step of the app's tune); 'others': then the other choices, within a
// budget of their own; no phase: both.
let tuned = null; // the last 'pairing' phase's figures, which 'others' completes
async function tuneTimings({ budgetMs, phase }) {
  const t0 = performance.now();
  const end = t0 + budgetMs;
  const out = phase === 'others' && tuned ? tuned : { detector: {}, estimator: {}, pre: 0, runs: {},
    createMs: {}, skipped: {}, warmupMs: {}, numThreads: ort.env.wasm.numThreads };
  tuned = out;
  if (phase !== 'others') { // the work around the models, on a frame of the camera's size
    const oc = new OffscreenCanvas(640, 480);
    const c2 = oc.getContext('2d', { willReadFrequently: true });
    c2.fillStyle = '#b07060';
    c2.fillRect(0, 0, 640, 480);
    const preT = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      const img = c2.getImageData(0, 0, 640, 480);
      letterbox(img, M.detector.spec.preprocess, inputBuffer('detector'));
      resizeCrop(img, cropRect([250, 170, 390, 310], 640, 480), M.estimator.spec.preprocess, inputBuffer('estimator'));
      preT.push(performance.now() - t);
    }
    out.pre = Math.min(...preT);
  }
  const timeRuns = async (role, prec, maxRuns) => { // one warm-up, then up to maxRuns timed
    const s = sessions[role][prec];
    const { sp, x } = tuneInput(role, prec);
    const w = performance.now();
    await s.run({ [sp.input_name]: x });
    out.warmupMs[`${role}.${prec}`] = Math.round(performance.now() - w); // a new session's first run
    for (let n = 0; n < maxRuns && (n === 0 || performance.now() < end); n++) {
      await timeOnce(out, role, prec, { sp, x });
    }
  };
  // the built pairing first (its sessions exist), then the other choices while the budget lasts:
  // a choice is loaded only when its predicted create + 2 runs fit what is left (sessions
  // cannot be interrupted); one that does not is left out of the decision (out.skipped)
  const primary = { detector: M.detector.precision, estimator: M.estimator.precision };
  if (phase !== 'others') for (const role of ['detector', 'estimator']) await timeRuns(role, primary[role], 2);
  if (phase === 'pairing') { out.ms = performance.now() - t0; return out; }
  for (const role of ['detector', 'estimator']) {
    for (const prec of Object.keys(M.autotune.choices[role])) {
      if (prec === primary[role]) continue;
      const scale = M.autotune.choices[role][prec].bytes / M[role].bytes;
      const predicted = (sessions[role][prec] ? 0 : (initTimings[role] ? initTimings[role].createMs : 0) * scale) +
        3 * out[role][primary[role]] * Math.max(1, scale);
      if (performance.now() + predicted > end) { out.skipped[`${role}.${prec}`] = Math.round(predicted); continue; }
      const t = performance.now();
      await session(role, prec);
      out.createMs[`${role}.${prec}`] = performance.now() - t;
      await timeRuns(role, prec, 2);
    }
  }
  await interleavedRuns(out, end);
  out.ms = (phase === 'others' ? out.ms || 0 : 0) + performance.now() - t0;
  // a choice left out still belongs to the build: fetch it in the background so the service
  // worker caches it as it passes (offline needs every file, and a Re-tune may want it)
  for (const key of Object.keys(out.skipped)) {
    const [role, prec] = key.split('.');
    fetch(new URL(M.autotune.choices[role][prec].url, base).href).then((r) => r.arrayBuffer()).catch(() => {});
  }
  return out;
}

// More runs of every model timed so far, one of each in turn, while the budget lasts. The runs
// of tuneTimings come in a block right after each session's creation, two per model: under a
// 4x CPU throttle the same estimator's best of two ranged 22-80 ms between fresh tunes, and the
// choice among estimators within a few % of each other flipped from one tune to the next
// (6 of 10 agreed). Taking turns, every model meets the device in the same state.
const EXTRA_ROUNDS = 4;
const tuneInput = (role, prec) => { // a grey input of the model's shape
  const sp = specOf(role, prec);
  return { sp, x: new ort.Tensor('float32', new Float32Array(sp.input_shape.reduce((a, b) => a * b, 1)).fill(0.5), sp.input_shape) };
};
// One timed session.run, appended to out.runs; the model's figure is its fastest run so far
// (the least disturbed by other load).
async function timeOnce(out, role, prec, { sp, x }) {
  const t = performance.now();
  await sessions[role][prec].run({ [sp.input_name]: x });
  const ms = performance.now() - t;
  const key = `${role}.${prec}`;
  (out.runs[key] = out.runs[key] || []).push(Math.round(ms * 100) / 100);
  out[role][prec] = Math.min(out[role][prec] ?? Infinity, ms);
}
async function interleavedRuns(out, end) {
  const models = Object.keys(out.runs).map((k) => k.split('.'))
    .filter(([role, prec]) => sessions[role] && sessions[role][prec] && out[role][prec] > 0)
    .map(([role, prec]) => ({ role, prec, input: tuneInput(role, prec) }));
  if (models.length < 2) return;
  for (let round = 0; round < EXTRA_ROUNDS; round++) {
    for (const { role, prec, input } of models) {
      if (performance.now() + 1.5 * out[role][prec] > end) return; // sessions cannot be interrupted
      await timeOnce(out, role, prec, input);
    }
  }
}

function median(xs) {
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

async function useSetting({ det: dp, est: ep }) {
  det = await session('detector', dp); // a cached choice on a new page: created here
  est = await session('estimator', ep);
  activeSpec.detector = specOf('detector', dp);
  activeSpec.estimator = specOf('estimator', ep);
  return { det: dp, est: ep };
}

// ------------------------------------------------------------------ bench-only: bare run()
async function benchRuns(role, runs, warmup) {
  // the built pairing's model (what the bench labels it), whatever auto-tune put in use
  const s = M[role].spec, session = sessions[role][M[role].precision];
  const n = s.input_shape.reduce((a, b) => a * b, 1);
  const times = [];
  for (let i = 0; i < warmup + runs; i++) {
    const x = new ort.Tensor('float32', new Float32Array(n).fill(0.5), s.input_shape);
    const t = performance.now();
    await session.run({ [s.input_name]: x });
    if (i >= warmup) times.push(performance.now() - t);
  }
  return times;
}

// ------------------------------------------------------------------ bench-only: one run on a given input
// The parity check (hemoedge parity --web) feeds the exact tensor Python feeds onnxruntime and
// reads the raw output back; for the detector with the letterbox geometry it also returns the
// detections after the app's own decode + NMS (the call detect() makes).
async function benchRunOnce({ role, data, dims, geo }) {
  if (role !== 'detector' && role !== 'estimator') throw new Error(`unknown role ${role}`);
  const s = M[role].spec, session = role === 'detector' ? det : est;
  const n = dims.reduce((a, b) => a * b, 1);
  if (!(data instanceof Float32Array) || data.length !== n) {
    throw new Error(`${role}: expected a Float32Array of ${n} values for dims [${dims}], got ${data && data.length}`);
  }
  const out = await session.run({ [s.input_name]: new ort.Tensor('float32', data, dims) });
  const raw = out[s.output_name];
  const r = { output: Float32Array.from(raw.data), dims: [...raw.dims], dets: null };
  if (role === 'detector' && geo) {
    r.dets = decodeDetections(raw.data, raw.dims[2], raw.dims[1] - 4, geo, M.postprocess);
  }
  return r;
}

// ------------------------------------------------------------------ messages
let chain = Promise.resolve();
self.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'cancel') { // handled at once, not behind queued work
    const st = captures.get(m.id);
    if (st) { st.cancelled = true; for (const f of st.pending.values()) f.bitmap.close(); }
    captures.delete(m.id);
    return;
  }
  if (m.type === 'capture-start') {
    captures.set(m.id, { next: 0, pending: new Map(), tracked: null, thumb: null, ref: null, lastDetK: null,
      detectEvery: Math.max(1, m.detectEvery | 0), skipStale: !!m.skipStale, cancelled: false,
      pace: pacing.pacer(m) });
    return;
  }
  if (m.type === 'frame') {
    const st = captures.get(m.id);
    if (!st) { m.bitmap.close(); return; }
    st.pending.set(m.k, m);
  }
  chain = chain.then(() => handle(m)).catch((err) => {
    self.postMessage({ type: 'error', id: m.id, message: String(err && err.message || err) });
  });
};

async function handle(m) {
  switch (m.type) {
    case 'init': self.postMessage({ type: 'ready', id: m.id, info: await init(m) }); break;
    case 'frame': await pumpCapture(m.id); break;
    case 'analyse': self.postMessage({ type: 'analysed', id: m.id, result: await analyse(m.bitmap, m.withHb) }); break;
    case 'bench': self.postMessage({ type: 'bench', id: m.id, times: await benchRuns(m.role, m.runs, m.warmup) }); break;
    case 'run': self.postMessage({ type: 'ran', id: m.id, result: await benchRunOnce(m) }); break;
    case 'tune': self.postMessage({ type: 'tuned', id: m.id, result: await tuneTimings(m) }); break;
    case 'use': self.postMessage({ type: 'using', id: m.id, result: await useSetting(m) }); break;
    default: throw new Error(`unknown message ${m.type}`);
  }
}
