// The bench page (lab.html): `hemoedge bench web`'s per-page benchmark, run on this device by
// the page itself. The app runs in a same-origin iframe at index.html?bench=1&threads=T
// (&autotune=0) and is driven through window.__hemoedgeBench as bench web drives it (one fresh
// page per repeat and thread count: wait until ready and cached, runModel per model, then
// captures from bench web's test video fed through the hook's feedCamera, testcamera.js). The
// raw timings are POSTed to the server that served this page (`hemoedge webapp serve DIST
// --collect RESULTS.json`), which computes the figures with bench web's own code
// (hemoedge/web/collect.py). A host without that endpoint gets no report: the page then shows
// what it measured. ?name=DEVICE fills in the name and starts at once. window.__hemoedgeLab
// holds the state (for tests).

import { median } from './aggregate.js';
// the stand-in camera the app's bench hook installs (feedCamera), loaded once for every page
import { loadTestCamera } from './testcamera.js';

const SCHEMA = 'hemoedge.lab/1';
const ENDPOINT = '__collect'; // next to this page: <base>__collect (hemoedge/web/collect.py)
const ROLES = ['detector', 'estimator'];
// hemoedge.bench.web.WebBenchConfig's defaults, for a host that does not send its settings
const DEFAULTS = { runs: 50, warmup: 10, captures: 3, repeats: 3, threads: [1, 2], video: null };
const STEP_MS = 120000; // any single wait (bench web's timeout per step)
const NOT_COLLECTING = 'This server does not collect results; figures shown here only.';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const lab = { state: 'idle', collect: null, settings: null, step: '', error: null, report: null, answer: null };
window.__hemoedgeLab = lab;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function say(text, kind = '') {
  $('status').textContent = text;
  if (kind) $('status').dataset.kind = kind; else delete $('status').dataset.kind;
}

function step(text) {
  lab.step = text;
  $('lab-step').textContent = text;
}

async function waitFor(test, what, ms = STEP_MS) {
  const end = performance.now() + ms;
  for (;;) {
    let v = null;
    try { v = test(); } catch { v = null; } // the frame is navigating
    if (v) return v;
    if (performance.now() > end) throw new Error(`timed out after ${ms / 1000} s: ${what}`);
    await sleep(50);
  }
}

// ------------------------------------------------------------------ what this host offers
async function loadSettings() {
  try {
    const res = await fetch(ENDPOINT, { cache: 'no-store' });
    const s = res.ok ? await res.json() : null;
    if (s && s.schema === SCHEMA) return { collect: true, settings: s };
  } catch { /* a static host, or offline */ }
  return { collect: false, settings: DEFAULTS };
}

// ------------------------------------------------------------------ identity
async function webgpuInfo() {
  try {
    if (!navigator.gpu) return 'unavailable';
    const adapter = await Promise.race([navigator.gpu.requestAdapter(), sleep(5000).then(() => null)]);
    if (!adapter) return 'unavailable';
    let info = adapter.info || null;
    if (!info && typeof adapter.requestAdapterInfo === 'function') info = await adapter.requestAdapterInfo();
    if (!info) return 'unavailable';
    const text = (x) => String(x || '').slice(0, 200);
    return { vendor: text(info.vendor), architecture: text(info.architecture), description: text(info.description) };
  } catch {
    return 'unavailable';
  }
}

function identity(gpu) {
  return {
    userAgent: navigator.userAgent.slice(0, 512),
    hardwareConcurrency: Number.isInteger(navigator.hardwareConcurrency) ? navigator.hardwareConcurrency : null,
    deviceMemory: typeof navigator.deviceMemory === 'number' ? navigator.deviceMemory : null,
    webgpu: gpu,
  };
}

// ------------------------------------------------------------------ one app page
let frame = null;

async function openApp(threads, what) {
  if (frame) frame.remove();
  frame = document.createElement('iframe');
  frame.title = 'hemoedge (under test)';
  frame.width = '360';
  frame.height = '640';
  // autotune=0: a build with auto-tune choices keeps its own pairing, the one the figures name
  frame.src = `./index.html?bench=1&threads=${threads}&autotune=0`;
  $('lab-app').replaceChildren(frame);
  const b = await waitFor(() => {
    const h = frame.contentWindow.__hemoedgeBench;
    return h && (h.ready || h.error) ? h : null;
  }, `${what}: models ready`);
  if (b.error) throw new Error(`${what}: the app failed to start: ${b.error}`);
  const win = frame.contentWindow;
  if (win.isSecureContext && win.navigator.serviceWorker) { // every file cached, as bench web waits
    await waitFor(() => win.navigator.serviceWorker.controller && b.offlineReady, `${what}: service worker ready`);
  }
  return { win, b };
}

const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);

function captureRecord(cap) { // what the server needs of bench.lastCapture (webcapture.FrameSamples)
  return {
    detectEvery: cap.detectEvery,
    frames: cap.frames.map((r) => ({
      k: r.k, totalMs: num(r.totalMs), detMs: num(r.detMs), estMs: num(r.estMs),
      preMs: num(r.preMs), queueMs: num(r.queueMs), skipped: !!r.skipped,
    })),
  };
}

async function capture(win, b, what) { // webrun.run_capture
  const btn = win.document.getElementById('capture-btn');
  await waitFor(() => !btn.disabled, `${what}: Capture enabled`);
  const n = b.captures.length;
  btn.click();
  await waitFor(() => b.captures.length > n, `${what}: 30-frame capture`);
  return captureRecord(b.lastCapture);
}

async function measurePage(S, repeat, threads, camera) { // webrun._Run.page_figures
  const what = `repeat ${repeat + 1}/${S.repeats}, ${threads} thread(s)`;
  if (camera) camera.stop(); // the previous page's camera
  step(`${what}: loading the app`);
  const { win, b } = await openApp(threads, what);
  const s = b.session;
  const page = {
    repeat, threads, threadsEffective: b.numThreads, modelsReadyMs: s.totalMs,
    sessionMs: { detector: s.timings.detector.createMs, estimator: s.timings.estimator.createMs },
    latencyMs: {}, captures: [],
  };
  for (const role of ROLES) {
    step(`${what}: ${role} session.run ×${S.runs}`);
    page.latencyMs[role] = Array.from(await b.runModel(role, S.runs, S.warmup));
  }
  if (camera && S.captures > 0) {
    await b.feedCamera(camera); // the app's bench hook, as bench web feeds a remote device
    win.document.getElementById('camera-btn').click();
    await waitFor(() => !win.document.getElementById('capture-btn').disabled, `${what}: camera preview`);
    for (let c = 0; c < S.captures; c++) {
      await sleep(300); // the preview loop runs between captures, as in the app
      step(`${what}: capture ${c + 1}/${S.captures}`);
      page.captures.push(await capture(win, b, `${what} capture ${c + 1}`));
    }
  }
  return { page, session: s, coi: win.crossOriginIsolated };
}

// ------------------------------------------------------------------ the run
function show(list, lines) {
  $(list).replaceChildren(...lines.map((t) => { const li = document.createElement('li'); li.textContent = t; return li; }));
}

function localFigures(pages) { // what this page can say without the server: model p50s
  const lines = [];
  for (const t of [...new Set(pages.map((p) => p.threads))]) {
    const at = pages.filter((p) => p.threads === t);
    for (const role of ROLES) {
      const xs = at.flatMap((p) => p.latencyMs[role]);
      lines.push(`${role} session.run p50 ${median(xs).toFixed(1)} ms (${t} thread(s), n=${xs.length})`);
    }
  }
  return lines;
}

async function send(report) {
  const res = await fetch(ENDPOINT, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(report) });
  if ([404, 405, 501].includes(res.status)) return null;
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(`the server refused the report: ${body.error || `HTTP ${res.status}`}`);
  return body;
}

async function run() {
  const name = $('lab-name').value.trim().replace(/\s+/g, ' ');
  if (!name) { say('Give this device a name first.', 'error'); return; }
  lab.state = 'running';
  $('lab-start').disabled = true;
  $('lab-name').disabled = true;
  const S = lab.settings;
  let camera = null;
  try {
    say('Running: keep this page in front until it finishes.');
    const device = identity(await webgpuInfo());
    const gpu = typeof device.webgpu === 'string' ? device.webgpu : [device.webgpu.vendor, device.webgpu.architecture].join(' ');
    $('lab-device').textContent = `${device.userAgent}; ${device.hardwareConcurrency} logical cores` +
      (device.deviceMemory ? `, ${device.deviceMemory} GB` : '') + `; WebGPU: ${gpu}`;
    if (S.video) { step('loading the test video'); camera = await loadTestCamera(S.video); }
    // most threads first, as bench web does: a 2-thread page after a 1-thread one in the same
    // browser lost a core there (docs/bench-web.md, "The 2-thread anomaly")
    const order = [...S.threads].sort((a, b) => b - a);
    step('first visit: caching the app');
    await openApp(order[0], 'first visit'); // later pages start warm
    const pages = [];
    let last = null;
    const total = S.repeats * order.length;
    $('lab-progress').max = total;
    for (let rep = 0; rep < S.repeats; rep++) {
      for (const t of order) {
        last = await measurePage(S, rep, t, camera);
        pages.push(last.page);
        $('lab-progress').value = pages.length;
      }
    }
    if (frame) { frame.remove(); frame = null; }
    lab.report = {
      schema: SCHEMA, name, variant: last.session.variant, ortVersion: String(last.session.ortVersion),
      crossOriginIsolated: !!last.coi, device,
      settings: { runs: S.runs, warmup: S.warmup, captures: S.captures, repeats: S.repeats, threads: S.threads },
      pages,
    };
    show('lab-figures', localFigures(pages));
    step('sending the figures');
    lab.answer = lab.collect ? await send(lab.report) : null;
    if (lab.answer) {
      show('lab-figures', Object.entries(lab.answer.figures).map(([k, v]) => `${k}: ${v}`));
      say(`Done: ${lab.answer.appended} figures sent as “${lab.answer.device}”.`, 'ok');
    } else {
      lab.collect = false;
      $('lab-collect').textContent = NOT_COLLECTING;
      say('Done.', 'ok');
    }
    step('');
    lab.state = 'done';
  } catch (err) {
    lab.error = err.message;
    lab.state = 'error';
    say(`Benchmark failed: ${err.message}`, 'error');
  } finally {
    if (camera) camera.stop();
    $('lab-start').disabled = false;
    $('lab-name').disabled = false;
  }
}

async function main() {
  const { collect, settings } = await loadSettings();
  Object.assign(lab, { collect, settings });
  $('lab-collect').textContent = collect
    ? `This server collects the figures (${settings.variant}; ${settings.repeats} repeat(s) × ${settings.threads.join('/')} thread(s)).`
    : `${NOT_COLLECTING} (Without its test video, no capture is run.)`;
  $('lab-name').value = (params.get('name') || '').slice(0, 64);
  $('lab-start').disabled = false;
  $('lab-start').addEventListener('click', () => { run(); });
  say('Ready.');
  if (params.get('name')) run();
}

main().catch((err) => { lab.state = 'error'; lab.error = err.message; say(`The bench page failed: ${err.message}`, 'error'); });
