// Execution providers besides WASM: only builds made with `hemoedge webapp build --ep NAME`
// ship this file (as src/ep.js); hemoedge/web/ep.py points the worker's session creation here.
// The default (WASM) build never contains it.
//
// onnxruntime-web given ['webgpu', 'wasm'] falls back to WASM silently when WebGPU cannot
// start. To say which provider each session really got, a session is created with the
// provider alone first and run once on a constant input (some kernels fail only when they
// first run); if either throws, the session is created again with ['wasm'] (what [EP, 'wasm']
// would have given) and the reason is kept. Nodes the provider has no kernel for still run on
// the CPU inside a provider's session, as onnxruntime always does. epReport() is what the
// worker's init returns as `ep` (the bench hook's session.ep).

const status = {}; // 'detector' / 'estimator' (the built pairing), 'role.precision' (auto-tune)
let adapter = null; // WebGPU adapter as the worker sees it, or why there is none

const firstLine = (e) => String((e && e.message) || e).split('\n')[0].slice(0, 300);

async function describeAdapter(ep) {
  if (ep !== 'webgpu') {
    if (ep === 'webnn') return self.navigator.ml ? 'navigator.ml present' : 'no navigator.ml';
    return null;
  }
  if (!self.navigator.gpu) return 'no navigator.gpu';
  try {
    const a = await self.navigator.gpu.requestAdapter();
    if (!a) return 'requestAdapter() gave no adapter';
    const i = a.info || {};
    return [i.vendor, i.architecture, i.description].filter(Boolean).join(' ') +
      (i.isFallbackAdapter ? ' (fallback adapter)' : '');
  } catch (e) {
    return `requestAdapter() failed: ${firstLine(e)}`;
  }
}

function constantInput(ort, spec) {
  const n = spec.input_shape.reduce((a, b) => a * b, 1);
  return { [spec.input_name]: new ort.Tensor('float32', new Float32Array(n).fill(0.5), spec.input_shape) };
}

export async function epCreate(ort, M, key, spec, bytes, opts) {
  const ep = M.ort.ep;
  if (adapter === null) adapter = await describeAdapter(ep);
  const t0 = performance.now();
  let s = null;
  try {
    s = await ort.InferenceSession.create(bytes, { ...opts, executionProviders: [ep] });
    const t1 = performance.now();
    const out = await s.run(constantInput(ort, spec));
    const y = out[spec.output_name].data;
    for (let i = 0; i < y.length; i++) {
      if (!Number.isFinite(y[i])) throw new Error(`a non-finite output on a constant input (${ep})`);
    }
    status[key] = { ep, createMs: t1 - t0, firstRunMs: performance.now() - t1 };
    return s;
  } catch (e) {
    if (s) await s.release().catch(() => {});
    const t1 = performance.now();
    const w = await ort.InferenceSession.create(bytes, { ...opts, executionProviders: ['wasm'] });
    status[key] = { ep: 'wasm', reason: `${ep}: ${firstLine(e)}`, createMs: performance.now() - t1,
      failedMs: t1 - t0 };
    return w;
  }
}

export function epReport(M) {
  const ep = M.ort.ep;
  const main = ['detector', 'estimator'].map((r) => status[r]).filter(Boolean);
  const failed = main.find((s) => s.ep !== ep);
  return { requested: ep, available: main.length === 2 && !failed,
    reason: failed ? failed.reason : null, adapter, sessions: { ...status } };
}
