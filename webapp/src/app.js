// Main thread: camera, the 80 ms capture clock, drawing, service-worker updates.
// On a first visit the models are loaded only once the service worker controls the page, so
// they and the WASM pass through it into its cache (every file crosses the network once); a
// failed load offers Retry.
// Inference lives in worker.js. URL options: ?threads=N (WASM threads: pinned; otherwise 2, or
// what auto-tune chose),
// ?detect_every=N (capture: run the detector on every N-th frame and track the nail between),
// ?bench=1 (exposes window.__hemoedgeBench), ?bench=1&seedloop=1 (the seed's sequential loop),
// ?bench=1&skip_stale=1[&result_ms=N] (pace the capture as on a slow device: pacing.js),
// ?autotune=0 (builds with auto-tune choices: keep the built pairing, skip the tune).

import { refs, setText, setStatus, fillList, drawBoxes, CATEGORY_TEXT, fmt } from './dom.js';
import { schedule, seedLoop, CAPTURE } from './capture.js';
import { summarise, median, whoCategory } from './aggregate.js';
import { decide, describe, threadCandidates, STORAGE_KEY } from './autotune.js';
import { tuneDevice } from './tunethreads.js';

const MIN_VALID = 10; // frames that must survive quality checks and IQR rejection
const PREVIEW_MS = 250; // detector preview cadence while idle, ms

const params = new URLSearchParams(location.search);
const intParam = (name, lo, hi, dflt) => {
  const v = parseInt(params.get(name), 10);
  return Number.isFinite(v) ? Math.min(hi, Math.max(lo, v)) : dflt;
};
const BENCH = params.get('bench') === '1';
const SEEDLOOP = BENCH && params.get('seedloop') === '1';
const REQUESTED_THREADS = SEEDLOOP ? 1 : intParam('threads', 1, 16, 2);
const THREADS = self.crossOriginIsolated ? REQUESTED_THREADS : 1;
const THREADS_PINNED = SEEDLOOP || params.has('threads'); // auto-tune leaves the count alone
const THREAD_CANDIDATES = threadCandidates({ cores: navigator.hardwareConcurrency,
  isolated: self.crossOriginIsolated, pinned: THREADS_PINNED ? THREADS : null });
// detector every 4th frame, the nail tracked in between (hemoedge.web.build.DEFAULT_CADENCE)
const DETECT_EVERY = SEEDLOOP ? 1 : intParam('detect_every', 1, CAPTURE.frames, 4);
const CADENCE_FIXED = SEEDLOOP || params.has('detect_every'); // auto-tune leaves it alone
const AUTOTUNE = !SEEDLOOP && params.get('autotune') !== '0';
let detectEvery = DETECT_EVERY; // the capture's detector cadence (auto-tune may change it)
let skipStale = BENCH && params.get('skip_stale') === '1'; // auto-tune: skip frames when busy
// ?bench=1&result_ms=N: the pacing's result budget (pacing.js), CAPTURE.resultMs by default
const RESULT_MS = BENCH ? intParam('result_ms', 1, 10000, CAPTURE.resultMs) : CAPTURE.resultMs;

const bench = BENCH ? {
  ready: false, error: null, crossOriginIsolated: self.crossOriginIsolated,
  requestedThreads: REQUESTED_THREADS, numThreads: null, seedloop: SEEDLOOP, offlineReady: false,
  detectEvery: DETECT_EVERY, session: null, readyT: null, captures: [], lastCapture: null,
  autotune: null, // {key, choice, timings, ms, cached, storageKey} once auto-tune decided
  retune: () => retune(),
  runModel: (role, runs = 20, warmup = 5) => call({ type: 'bench', role, runs, warmup }).then((r) => r.times),
  // one session.run of the app's worker on a given input (parity with Python): resolves to
  // {output: Float32Array, dims, dets}; dets (the app's decode + NMS) for the detector with geo
  runOnce: (role, data, dims, geo = null) => call({ type: 'run', role, data, dims, geo }),
  uploads: 0, lastUpload: null, // analysed uploads; the last one with its per-photo median
  // a browser without a fake camera (a remote device, the bench page): the test video's frames
  // become this page's camera (testcamera.js); `video` is {frames, fps, url} or a TestCamera
  // already loaded (the bench page loads the frames once for all its pages). Resolves to
  // {frames, fps, width, height}; press Start camera afterwards, as with a real camera.
  feedCamera: (video) => feedCamera(video),
  camera: null, // what feedCamera installed (describe()), or null: the browser's own camera
} : null;
if (bench) window.__hemoedgeBench = bench;

let testCamera = null; // bench only: the stand-in camera feedCamera installed
async function feedCamera(video) {
  if (!video) throw new Error('feedCamera: no video');
  const { loadTestCamera } = await import('./testcamera.js');
  const cam = typeof video.install === 'function' ? video : await loadTestCamera(video);
  if (testCamera && testCamera !== cam) testCamera.stop();
  testCamera = cam;
  cam.install(window);
  bench.camera = cam.describe();
  return bench.camera;
}

// ------------------------------------------------------------------ worker RPC
let worker = null; // created once the build is in the cache (see whenCached)
let seq = 0;
const waiting = new Map();
let capture = null; // the running capture, or null

const WORKER_URL = new URL('./worker.js', import.meta.url);
const MANIFEST_URL = new URL('./models.json', import.meta.url).href;
function spawnWorker() {
  if (worker) worker.terminate();
  for (const w of waiting.values()) w.reject(new Error('the inference worker was restarted'));
  waiting.clear();
  worker = new Worker(WORKER_URL, { type: 'module' });
  worker.onmessage = onWorkerMessage;
  worker.onerror = (e) => {
    e.preventDefault();
    const msg = `the inference worker failed to start: ${e.message || 'unknown error'}`;
    for (const w of waiting.values()) w.reject(new Error(msg));
    waiting.clear();
  };
}

function call(msg, transfer = []) {
  const id = ++seq;
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    worker.postMessage({ ...msg, id }, transfer);
  });
}

function onWorkerMessage(e) {
  const m = e.data;
  if (m.type === 'frame') { if (capture && capture.id === m.id) capture.onFrame(m); return; }
  if (m.type === 'error' && capture && capture.id === m.id) { capture.fail(m.message); return; }
  const w = waiting.get(m.id);
  if (!w) return;
  waiting.delete(m.id);
  if (m.type === 'error') w.reject(new Error(m.message)); else w.resolve(m.info || m.result || m);
}

let loadError = null; // why the models could not be loaded, until a retry succeeds
function fatal(text) {
  loadError = text;
  setStatus(text, 'error');
  refs.loadHelp.hidden = false;
  refs.retryBtn.disabled = false;
  if (bench) bench.error = text;
}

// ------------------------------------------------------------------ start-up
let ready = false;
let attempts = 0;
async function start() {
  loadError = null;
  refs.loadHelp.hidden = true;
  if (bench) bench.error = null;
  setStatus('Loading models…');
  if (!self.crossOriginIsolated) {
    setText(refs.threadNote, 'Running on 1 thread: this page is not cross-origin isolated (serve it with `hemoedge webapp serve`).');
  }
  await whenCached();
  const threads = (AUTOTUNE && savedChoice().threads) || THREADS; // a saved choice's count
  const info = await startWorker(threads, attempts++ > 0);
  ready = true;
  const readyT = performance.now();
  showThresholds(info.who);
  if (info.autotune && AUTOTUNE) await autotune(false);
  setStatus('Ready. Nothing leaves this device.', 'ok');
  if (bench) Object.assign(bench, { ready: true, session: modelsInfo, numThreads: modelsInfo.numThreads, readyT, detectEvery });
  watchOffline();
}

// a new inference worker at `threads` (the old one, if any, is terminated); startMs is its
// start-up without its downloads (what auto-tune predicts another count's probe from)
let startMs = 0;
async function startWorker(threads, retry = false) {
  const t0 = performance.now();
  spawnWorker();
  const info = await call({ type: 'init', manifestUrl: MANIFEST_URL, threads, retry });
  startMs = performance.now() - t0 - Object.values(info.timings).reduce((a, t) => a + t.fetchMs, 0);
  const asked = self.crossOriginIsolated ? threads : REQUESTED_THREADS;
  setText(refs.threadNote, info.numThreads < asked
    ? `Running on ${info.numThreads} thread(s) instead of ${asked}` +
      (self.crossOriginIsolated ? '.' : ': the page is not cross-origin isolated.')
    : `${info.numThreads} inference thread(s); models ${info.variant}.`);
  modelsInfo = info;
  return info;
}

// ------------------------------------------------------------------ auto-tune
// On first use, and whenever the app (its code or models) or the thread counts it may use
// change, time the shipped choices on this device (tunethreads.js, within the build's budget)
// and keep the decision (autotune.js) in localStorage under this version's key.
let modelsInfo = null;
const VERSION_KEY = () => [new URL(import.meta.url).pathname.split('/').pop(),
  new URL('./models.json', import.meta.url).pathname.split('/').pop(), `t${THREAD_CANDIDATES.join('-')}`].join(':');
const savedChoice = () => {
  try { return JSON.parse(localStorage.getItem(`${STORAGE_KEY}:${VERSION_KEY()}`)).choice || {}; } catch { return {}; }
};

async function autotune(force) {
  const cfg = modelsInfo.autotune;
  const key = `${STORAGE_KEY}:${VERSION_KEY()}`;
  const t0 = performance.now();
  let rec = null;
  if (!force) {
    try { rec = JSON.parse(localStorage.getItem(key)); } catch { rec = null; }
  }
  const cached = !!(rec && rec.choice);
  refs.retuneBtn.hidden = false;
  refs.retuneBtn.disabled = true;
  if (!cached) {
    setText(refs.tuneNote, 'Tuning for this device (a few seconds)…');
    const here = modelsInfo.numThreads;
    const timings = await tuneDevice({ call, budgetMs: cfg.budgetMs * 0.8, here, startMs,
      candidates: THREADS_PINNED ? [] : THREAD_CANDIDATES, workerUrl: WORKER_URL,
      manifestUrl: MANIFEST_URL, init: modelsInfo });
    rec = { choice: decide({ ...cfg, primary: { ...cfg.primary, threads: here }, pinThreads: THREADS_PINNED },
      timings), timings, tunedMs: null, at: Date.now() };
    rec.tunedMs = performance.now() - t0;
    try {
      for (let i = localStorage.length - 1; i >= 0; i--) { // other versions' choices go
        const k = localStorage.key(i);
        const ver = (x) => x.replace(/:t[\d-]+$/, '');
        if (k && k.startsWith(STORAGE_KEY) && ver(k) !== ver(key)) localStorage.removeItem(k);
      }
      localStorage.setItem(key, JSON.stringify(rec));
    } catch { /* private mode: tune again next time */ }
  }
  const c = rec.choice;
  let restartMs = 0; // the chosen count, unless pinned: a new worker at that count
  if (!THREADS_PINNED && THREAD_CANDIDATES.includes(c.threads) && c.threads !== modelsInfo.numThreads) {
    const t1 = performance.now();
    await startWorker(c.threads);
    restartMs = performance.now() - t1;
  }
  await call({ type: 'use', det: c.det, est: c.est });
  if (!CADENCE_FIXED) detectEvery = c.detectEvery;
  // a device that falls behind during a capture (a slower phase, other apps, a model timed
  // optimistically) keeps up by skipping frames a newer one has overtaken; on a device that
  // keeps up nothing is skipped. Skipped frames are listed under the result.
  skipStale = true;
  const ms = performance.now() - t0;
  setText(refs.tuneNote, describe({ ...c, detectEvery }, cfg.defaultCadence) +
    (cached ? ' (saved setting)' : ` (decided in ${(rec.tunedMs / 1000).toFixed(1)} s)`));
  refs.retuneBtn.disabled = !!capture;
  if (bench) {
    bench.autotune = { key: c.key, choice: { ...c, detectEvery }, timings: rec.timings,
      ms, tunedMs: rec.tunedMs, restartMs, cached, storageKey: key, threadCandidates: THREAD_CANDIDATES };
    Object.assign(bench, { detectEvery, numThreads: modelsInfo.numThreads, session: modelsInfo });
  }
}

async function retune() {
  if (capture || !modelsInfo || !modelsInfo.autotune) return null;
  ready = false;
  try {
    await autotune(true);
  } finally {
    ready = true;
  }
  return bench ? bench.autotune : null;
}

// Offline works once every file of this build is in the service worker's cache (on a first
// visit the WASM and the models are cached as the worker loads them). bench.offlineReady.
async function watchOffline() {
  const sw = navigator.serviceWorker && navigator.serviceWorker.controller;
  if (!sw) return;
  for (let i = 0; i < 100; i++) {
    const st = await new Promise((resolve) => {
      const ch = new MessageChannel();
      ch.port1.onmessage = (e) => resolve(e.data);
      sw.postMessage({ type: 'STATUS' }, [ch.port2]);
      setTimeout(() => resolve(null), 2000);
    });
    if (st && st.missing.length === 0) { if (bench) bench.offlineReady = true; return; }
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ------------------------------------------------------------------ camera + preview
let stream = null;
let previewBusy = false;
let previewTimer = null;

async function startCamera() {
  if (loadError) {
    setText(refs.progressText, 'The models are not loaded: press Retry above first.');
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment', width: 640, height: 480 }, audio: false });
  } catch (err) {
    setStatus(`Camera not available: ${err.message || err.name}. You can still upload a photo.`, 'error');
    return;
  }
  refs.video.srcObject = stream;
  await refs.video.play();
  refs.overlay.width = refs.video.videoWidth;
  refs.overlay.height = refs.video.videoHeight;
  refs.cameraBtn.disabled = true;
  setText(refs.progressText, 'Camera starting…');
  previewTimer = setInterval(preview, PREVIEW_MS); // the first preview result enables Capture
}

async function preview() {
  if (!ready || capture || previewBusy || refs.video.readyState < 2) return;
  previewBusy = true;
  try {
    const bmp = await createImageBitmap(refs.video);
    const r = await call({ type: 'analyse', bitmap: bmp, withHb: false }, [bmp]);
    if (!capture) drawBoxes(refs.overlay, r.dets, r.width, r.height);
    if (!capture && refs.captureBtn.disabled && refs.cancelBtn.disabled) {
      refs.captureBtn.disabled = false;
      setText(refs.progressText, 'Fill the box with one fingernail, hold still, then Capture.');
    }
  } catch (err) {
    setStatus(`Preview failed: ${err.message}`, 'error');
  } finally {
    previewBusy = false;
  }
}

// ------------------------------------------------------------------ the capture
function startCapture() {
  if (capture || !ready || !stream) return;
  const n = CAPTURE.frames;
  const id = ++seq;
  const recs = [];
  const frameWaiters = new Map();
  let finished = false;
  const video = refs.video;
  const record = { mode: SEEDLOOP ? 'seedloop' : 'pipelined', detectEvery, skipStale,
    intervalMs: CAPTURE.intervalMs, frames: recs, ticks: null, reanchored: 0, lastGrabT: null,
    resultT: null, summary: null };

  refs.captureBtn.disabled = true;
  refs.cancelBtn.disabled = false;
  refs.retuneBtn.disabled = true;
  clearResult();
  setText(refs.progressText, `Capturing 0 / ${n}`);
  refs.progress.value = 0;
  refs.progress.max = n;
  worker.postMessage({ type: 'capture-start', id, detectEvery, skipStale, frames: n,
    intervalMs: CAPTURE.intervalMs, resultMs: RESULT_MS });

  const grab = async (k, t) => {
    const bitmap = await createImageBitmap(video);
    if (finished) { bitmap.close(); return; }
    worker.postMessage({ type: 'frame', id, k, grabT: t, grabEpoch: performance.timeOrigin + t, bitmap }, [bitmap]);
  };
  const clock = SEEDLOOP
    ? seedLoop(async (k, t) => { await grab(k, t); await new Promise((r) => frameWaiters.set(k, r)); }, { frames: n })
    : schedule((k, t) => { grab(k, t).catch((err) => capture && capture.fail(err.message)); }, { frames: n });

  const end = (text) => {
    finished = true;
    capture = null;
    refs.captureBtn.disabled = false;
    refs.cancelBtn.disabled = true;
    refs.retuneBtn.disabled = false;
    if (text) setText(refs.progressText, text);
    applyUpdateWhenIdle();
  };

  capture = {
    id,
    onFrame(m) {
      const rec = { ...m.rec, doneT: m.doneEpoch - performance.timeOrigin };
      recs.push(rec);
      refs.progress.value = recs.length;
      setText(refs.progressText, `Capturing ${recs.length} / ${n}`);
      if (rec.box) drawBoxes(refs.overlay, [{ box: rec.box, cls: 0 }], video.videoWidth, video.videoHeight);
      const w = frameWaiters.get(rec.k);
      if (w) { frameWaiters.delete(rec.k); w(); }
      if (recs.length === n) finish();
    },
    cancel() {
      clock.cancel();
      worker.postMessage({ type: 'cancel', id });
      for (const w of frameWaiters.values()) w();
      end('Capture cancelled.');
    },
    fail(message) {
      clock.cancel();
      worker.postMessage({ type: 'cancel', id });
      end('');
      setStatus(`Capture failed: ${message}`, 'error');
    },
  };

  showUpdateState(); // an offered update waits for the end of the capture

  clock.done.then((ticks) => {
    record.ticks = [...ticks];
    record.reanchored = ticks.reanchored || 0; // stalls after which the 80 ms grid restarted
    record.lastGrabT = ticks[ticks.length - 1];
  });

  function finish() {
    recs.sort((a, b) => a.k - b.k);
    const values = recs.filter((r) => r.hb !== null).map((r) => r.hb);
    const s = summarise(values, { minValid: MIN_VALID, sex: refs.sex.value, who: modelsInfo.who });
    renderSummary(s, recs, n);
    lastResult = { values, recs, n };
    end(`Captured ${n} frames.`);
    record.resultT = performance.now();
    record.summary = s;
    if (bench) { bench.captures.push(record); bench.lastCapture = record; }
  }
}

// the WHO thresholds in the sex option labels and their help text, from the build manifest
function showThresholds(who) {
  const t = who.anaemiaBelow;
  const label = { '': `not given (women's threshold, ${t['']} g/dL)`, female: `women (${t.female} g/dL)`,
    male: `men (${t.male} g/dL)` };
  for (const opt of refs.sex.options) if (opt.value in label) opt.textContent = label[opt.value];
  setText(refs.sexHelp, 'Non-pregnant adults; anaemia below the threshold, moderate below ' +
    `${who.moderateBelow}, severe below ${who.severeBelow} g/dL.`);
}

let lastResult = null; // re-rendered when the WHO threshold option changes
function rerender() {
  if (lastUpload) lastUpload();
  if (!lastResult) return;
  const { values, recs, n } = lastResult;
  renderSummary(summarise(values, { minValid: MIN_VALID, sex: refs.sex.value, who: modelsInfo.who }), recs, n);
}

function clearResult() { // the live region stays in the page, empty, so it is announced when filled
  delete refs.result.dataset.ok;
  for (const el of [refs.resultHb, refs.resultCategory, refs.resultDetail]) setText(el, '');
  refs.reasons.replaceChildren();
}

function renderSummary(s, recs, n) {
  const counts = {};
  for (const r of recs) if (r.reason) counts[r.reason] = (counts[r.reason] || 0) + 1;
  const lines = Object.entries(counts).map(([why, c]) => `${c} frame(s) rejected: ${why}`);
  if (s.outliers) lines.push(`${s.outliers} frame(s) rejected as outliers (IQR)`);
  fillList(refs.reasons, lines);
  if (!s.ok) {
    setText(refs.resultHb, 'Try again');
    setText(refs.resultCategory, '');
    setText(refs.resultDetail, `Only ${s.used} of ${n} frames were usable (at least ${MIN_VALID} needed). ` +
      'Hold the fingertip still, fill the box with the nail, and use good light.');
    refs.result.dataset.ok = 'false';
    return;
  }
  refs.result.dataset.ok = 'true';
  setText(refs.resultHb, `${fmt(s.hb)} g/dL`);
  setText(refs.resultCategory, CATEGORY_TEXT[s.category]);
  setText(refs.resultDetail, `Median of ${s.used} of ${n} frames; spread (IQR) ${fmt(s.spread, 2)} g/dL; ` +
    `range ${fmt(s.min)}–${fmt(s.max)} g/dL.`);
}

// ------------------------------------------------------------------ upload
let lastUpload = null; // re-renders the upload message when the WHO threshold option changes
async function onUpload() {
  lastUpload = null;
  const file = refs.file.files[0];
  refs.nails.replaceChildren();
  if (!file) return;
  if (loadError) {
    setText(refs.uploadMsg, `${loadError} Press Retry above, then choose the photo again.`);
    refs.uploadMsg.dataset.kind = 'error';
    return;
  }
  if (!ready) { setText(refs.uploadMsg, 'The models are still loading; try again in a moment.'); return; }
  let bmp;
  try {
    if (file.type && !file.type.startsWith('image/')) throw new Error('not an image');
    bmp = await createImageBitmap(file);
  } catch {
    setText(refs.uploadMsg, `“${file.name}” is not an image this browser can read. Choose a JPEG or PNG photo.`);
    refs.uploadMsg.dataset.kind = 'error';
    refs.photo.hidden = true;
    return;
  }
  const c = refs.photo;
  c.width = bmp.width;
  c.height = bmp.height;
  c.getContext('2d').drawImage(bmp, 0, 0);
  c.hidden = false;
  setText(refs.uploadMsg, 'Analysing…');
  const r = await call({ type: 'analyse', bitmap: bmp, withHb: true }, [bmp]);
  const med = r.nails.length ? median(r.nails.map((nl) => nl.hb)) : null;
  if (bench) { bench.lastUpload = { ...r, median: med }; bench.uploads += 1; }
  if (!r.nails.length) {
    setText(refs.uploadMsg, 'No fingernail found in this photo. Photograph the fingertips from above, close up, in good light.');
    refs.uploadMsg.dataset.kind = 'error';
    return;
  }
  drawBoxes(c, r.nails.map((nl) => ({ box: nl.box, cls: 0 })), r.width, r.height,
    { labels: r.nails.map((nl, i) => `${i + 1}: ${fmt(nl.hb)}`), clear: false });
  fillList(refs.nails, r.nails.map((nl, i) => `Nail ${i + 1}: ${fmt(nl.hb)} g/dL (detector score ${fmt(nl.score, 2)})`));
  lastUpload = () => setText(refs.uploadMsg, `${r.nails.length} nail(s) found. Median ${fmt(med)} g/dL — ` +
    `${CATEGORY_TEXT[whoCategory(med, refs.sex.value, modelsInfo.who)]}.`);
  lastUpload();
  refs.uploadMsg.dataset.kind = 'ok';
}

// ------------------------------------------------------------------ tabs
function selectTab(camera) {
  refs.tabCamera.setAttribute('aria-selected', String(camera));
  refs.tabUpload.setAttribute('aria-selected', String(!camera));
  refs.panelCamera.hidden = !camera;
  refs.panelUpload.hidden = camera;
}

// ------------------------------------------------------------------ service worker + updates
// A new build installs in the background; the user is told it is ready and applies it with
// "Reload to update" (never during a capture). The new worker then deletes the old cache and
// the page reloads on the new build: a page never runs a mix of two builds.
let pendingWorker = null;
function offerUpdate(w) {
  pendingWorker = w;
  refs.updateBtn.hidden = false;
  showUpdateState();
}
function showUpdateState() {
  if (!pendingWorker) return;
  refs.updateBtn.disabled = !!capture;
  setText(refs.update, capture ? 'A new version is ready; it can be applied after this capture.'
    : 'A new version is ready.');
}
function applyUpdateWhenIdle() { showUpdateState(); } // called when a capture ends
function applyUpdate() {
  if (!pendingWorker || capture) return;
  setText(refs.update, 'Updating…');
  refs.updateBtn.disabled = true;
  pendingWorker.postMessage({ type: 'SKIP_WAITING' });
  pendingWorker = null;
}

const ISOLATION = (document.querySelector('meta[name="hemoedge-isolation"]') || {}).content;
let swRegistration = null; // resolves to the registration, or null without a service worker

function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return Promise.resolve(null);
  // The first worker's clients.claim() also fires controllerchange: reload only when a
  // controller is replaced, i.e. an update took over (which it does only between captures).
  let controlled = !!navigator.serviceWorker.controller;
  let reloading = false;
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    if (controlled && !reloading) { reloading = true; location.reload(); }
    controlled = true;
  });
  const track = (w) => { // a new version installing: offer it once it is installed
    if (!w) return;
    if (w.state === 'installed' && navigator.serviceWorker.controller) { offerUpdate(w); return; }
    w.addEventListener('statechange', () => {
      if (w.state === 'installed' && navigator.serviceWorker.controller) offerUpdate(w);
    });
  };
  return navigator.serviceWorker.register('./sw.js').then((reg) => {
    if (navigator.serviceWorker.controller) track(reg.waiting || reg.installing);
    reg.addEventListener('updatefound', () => track(reg.installing));
    return reg;
  });
}

// Resolves once this page is controlled by the service worker (every later fetch, the
// worker's and onnxruntime-web's included, then goes through its cache), or at once when it
// never will be: no service worker, a failed install, or a hard reload (which bypasses an
// active worker). On a first visit this waits for the small precache; the WASM and the models
// are then fetched once, by the worker, and cached on the way.
async function whenCached() {
  if (navigator.serviceWorker && navigator.serviceWorker.controller) return isolatedOrReload();
  const reg = await swRegistration.catch(() => null);
  if (navigator.serviceWorker && navigator.serviceWorker.controller) return isolatedOrReload();
  if (!reg || reg.active) return undefined; // nothing to wait for (or a hard reload)
  const w = reg.installing || reg.waiting;
  if (!w || w.state === 'redundant') return undefined;
  await new Promise((resolve) => {
    navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true });
    w.addEventListener('statechange', () => { if (w.state === 'redundant') resolve(); });
  });
  return isolatedOrReload();
}

// --coi-serviceworker builds: the service worker adds COOP/COEP, but only to pages it serves;
// the very first page was not, so it reloads once (sessionStorage stops a loop).
function isolatedOrReload() {
  if (ISOLATION !== 'service-worker' || self.crossOriginIsolated || !navigator.serviceWorker.controller) return undefined;
  if (sessionStorage.getItem('hemoedge-isolation-reload')) return undefined;
  sessionStorage.setItem('hemoedge-isolation-reload', '1');
  location.reload();
  return new Promise(() => {}); // the page is going away
}

// ------------------------------------------------------------------ wiring
refs.cameraBtn.addEventListener('click', startCamera);
refs.captureBtn.addEventListener('click', startCapture);
refs.cancelBtn.addEventListener('click', () => capture && capture.cancel());
refs.file.addEventListener('change', () => onUpload().catch((err) => setText(refs.uploadMsg, `Analysis failed: ${err.message}`)));
refs.sex.addEventListener('change', rerender);
refs.tabCamera.addEventListener('click', () => selectTab(true));
refs.tabUpload.addEventListener('click', () => selectTab(false));

refs.updateBtn.addEventListener('click', applyUpdate);
refs.retuneBtn.addEventListener('click', () => retune().catch((err) => setText(refs.tuneNote, `Re-tune failed: ${err.message}`)));
refs.retryBtn.addEventListener('click', () => { refs.retryBtn.disabled = true; boot(); });

swRegistration = registerServiceWorker();
swRegistration.catch((err) => setText(refs.update, `Offline mode unavailable: ${err.message}`));
const boot = () => start().catch((err) => fatal(`Could not load the models: ${err.message}.`));
boot();
