// Pure preprocessing, a line-for-line mirror of hemoedge/preprocess.py.
// Every arithmetic step is rounded to float32 (Math.fround) exactly where numpy works in
// float32, so the tensors equal Python's bit for bit (tests/web/test_parity.py checks it).
// Images are {data: RGBA Uint8(Clamped)Array, width, height} like ImageData.

const f32 = Math.fround;

/** Python's round(): half to even (JS Math.round rounds half up). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
}

/** Source indices and weights for one output axis (preprocess._resize_window.axis). */
export function axisTable(start, nOut, nTotal, nIn) {
  const ratio = f32(nIn / nTotal);
  const i0 = new Int32Array(nOut), i1 = new Int32Array(nOut);
  const w0 = new Float32Array(nOut), w1 = new Float32Array(nOut);
  for (let j = 0; j < nOut; j++) {
    let s = f32(f32(f32(start + j + 0.5) * ratio) - 0.5);
    if (s < 0) s = 0;
    if (s > nIn - 1) s = nIn - 1;
    const a = Math.floor(s);
    const fr = f32(s - a);
    i0[j] = a;
    i1[j] = Math.min(a + 1, nIn - 1);
    w0[j] = f32(1 - fr);
    w1[j] = fr;
  }
  return { i0, i1, w0, w1 };
}

/**
 * Bilinear resize of rect {x, y, w, h} of img to a (newH, newW) image, keeping only the window
 * [top, top+outH) x [left, left+outW); values rounded to uint8 like Python's
 * clip(floor(v + 0.5), 0, 255). Returns Uint8Array (outH * outW * 3), RGB interleaved.
 */
export function resizeWindow(img, rect, newH, newW, top, left, outH, outW) {
  const ys = axisTable(top, outH, newH, rect.h);
  const xs = axisTable(left, outW, newW, rect.w);
  const src = img.data, stride = img.width * 4;
  const out = new Uint8Array(outH * outW * 3);
  let o = 0;
  for (let j = 0; j < outH; j++) {
    const r0 = (rect.y + ys.i0[j]) * stride + rect.x * 4;
    const r1 = (rect.y + ys.i1[j]) * stride + rect.x * 4;
    const wy0 = ys.w0[j], wy1 = ys.w1[j];
    for (let i = 0; i < outW; i++) {
      const c0 = xs.i0[i] * 4, c1 = xs.i1[i] * 4;
      const wx0 = xs.w0[i], wx1 = xs.w1[i];
      for (let c = 0; c < 3; c++) {
        const t = f32(f32(src[r0 + c0 + c] * wx0) + f32(src[r0 + c1 + c] * wx1));
        const b = f32(f32(src[r1 + c0 + c] * wx0) + f32(src[r1 + c1 + c] * wx1));
        const v = Math.floor(f32(f32(f32(t * wy0) + f32(b * wy1)) + 0.5));
        out[o++] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return out;
}

/** Per-channel lookup uint8 -> normalised float32 (preprocess._normalise). */
function normTables(p) {
  const scale = f32(p.scale);
  return [0, 1, 2].map((c) => {
    const t = new Float32Array(256);
    const m = f32(p.mean[c]), s = f32(p.std[c]);
    for (let v = 0; v < 256; v++) t[v] = f32(f32(f32(v * scale) - m) / s);
    return t;
  });
}
const tableCache = new Map();
function tablesFor(p) {
  const key = JSON.stringify([p.scale, p.mean, p.std]);
  if (!tableCache.has(key)) tableCache.set(key, normTables(p));
  return tableCache.get(key);
}

/** Interleaved RGB uint8 (H*W*3) -> planar float32 (1, 3, H, W); writes into out if given. */
export function normalise(rgb, h, w, p, out) {
  const [t0, t1, t2] = tablesFor(p);
  const n = h * w;
  const x = out || new Float32Array(3 * n);
  for (let k = 0, o = 0; k < n; k++, o += 3) {
    x[k] = t0[rgb[o]];
    x[n + k] = t1[rgb[o + 1]];
    x[2 * n + k] = t2[rgb[o + 2]];
  }
  return x;
}

/** preprocess.letterbox_geometry */
export function letterboxGeometry(h, w, size) {
  const scale = Math.min(size / h, size / w);
  const newH = Math.max(1, roundHalfEven(h * scale));
  const newW = Math.max(1, roundHalfEven(w * scale));
  return { newH, newW, scale, left: Math.floor((size - newW) / 2), top: Math.floor((size - newH) / 2) };
}

/** preprocess.letterbox: RGBA image -> {tensor (1,3,S,S) float32, geo {scale,left,top}}. */
export function letterbox(img, p, out) {
  const S = p.size;
  const g = letterboxGeometry(img.height, img.width, S);
  const resized = resizeWindow(img, { x: 0, y: 0, w: img.width, h: img.height },
    g.newH, g.newW, 0, 0, g.newH, g.newW);
  const canvas = new Uint8Array(S * S * 3).fill(p.pad_value);
  for (let y = 0; y < g.newH; y++) {
    canvas.set(resized.subarray(y * g.newW * 3, (y + 1) * g.newW * 3), ((g.top + y) * S + g.left) * 3);
  }
  return { tensor: normalise(canvas, S, S, p, out), geo: { scale: g.scale, left: g.left, top: g.top } };
}

/** preprocess.crop: integer rect {x, y, w, h} of an (x1, y1, x2, y2) box, clamped, >= 2x2 px. */
export function cropRect(box, width, height) {
  const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
  const x1 = clip(Math.floor(box[0]), 0, width - 2);
  const y1 = clip(Math.floor(box[1]), 0, height - 2);
  const x2 = clip(Math.ceil(box[2]), x1 + 2, width);
  const y2 = clip(Math.ceil(box[3]), y1 + 2, height);
  return { x: x1, y: y1, w: x2 - x1, h: y2 - y1 };
}

/** preprocess.resize_crop on rect of img -> (1, 3, size, size) float32. */
export function resizeCrop(img, rect, p, out) {
  const r = p.resize_shorter / Math.min(rect.h, rect.w);
  const newH = Math.max(p.size, roundHalfEven(rect.h * r));
  const newW = Math.max(p.size, roundHalfEven(rect.w * r));
  const top = Math.floor((newH - p.size) / 2), left = Math.floor((newW - p.size) / 2);
  const win = resizeWindow(img, rect, newH, newW, top, left, p.size, p.size);
  return normalise(win, p.size, p.size, p, out);
}

/** Dispatch on spec.preprocess.mode like preprocess.preprocess (whole image for resize_crop). */
export function preprocess(img, spec) {
  const p = spec.preprocess;
  if (p.mode === 'letterbox') return letterbox(img, p);
  return { tensor: resizeCrop(img, { x: 0, y: 0, w: img.width, h: img.height }, p), geo: null };
}
