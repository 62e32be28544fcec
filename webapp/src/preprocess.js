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

/** Horizontal pass of one source row into buf (outW * 3 float32): Python's `top` / `bot`. */
function hpass(src, rowOff, xs, outW, buf) {
  const { i0, i1, w0, w1 } = xs;
  for (let i = 0, o = 0; i < outW; i++, o += 3) {
    const a = rowOff + i0[i] * 4, b = rowOff + i1[i] * 4;
    const wa = w0[i], wb = w1[i];
    buf[o] = f32(f32(src[a] * wa) + f32(src[b] * wb));
    buf[o + 1] = f32(f32(src[a + 1] * wa) + f32(src[b + 1] * wb));
    buf[o + 2] = f32(f32(src[a + 2] * wa) + f32(src[b + 2] * wb));
  }
}

/**
 * Bilinear resize of rect {x, y, w, h} of img to a (newH, newW) image, keeping only the window
 * [top, top+outH) x [left, left+outW), each value rounded to uint8 like Python's
 * clip(floor(v + 0.5), 0, 255), then handed to put(j, i, r, g, b). Source rows' horizontal
 * passes are computed once and reused (exact: a row's pass does not depend on the output row).
 */
function resizeEach(img, rect, newH, newW, top, left, outH, outW, put) {
  const ys = axisTable(top, outH, newH, rect.h);
  const xs = axisTable(left, outW, newW, rect.w);
  const src = img.data, stride = img.width * 4, base = rect.x * 4;
  let rowA = -1, rowB = -1;
  let bufA = new Float32Array(outW * 3), bufB = new Float32Array(outW * 3);
  const row = (y) => { // the horizontal pass of source row y, from the 2-row cache
    if (y === rowA) return bufA;
    if (y === rowB) return bufB;
    [bufA, bufB, rowA] = [bufB, bufA, rowB]; // evict the older row
    rowB = y;
    hpass(src, (rect.y + y) * stride + base, xs, outW, bufB);
    return bufB;
  };
  for (let j = 0; j < outH; j++) {
    const t = row(ys.i0[j]), b = row(ys.i1[j]);
    const wy0 = ys.w0[j], wy1 = ys.w1[j];
    for (let i = 0, o = 0; i < outW; i++, o += 3) {
      let r = Math.floor(f32(f32(f32(t[o] * wy0) + f32(b[o] * wy1)) + 0.5));
      let g = Math.floor(f32(f32(f32(t[o + 1] * wy0) + f32(b[o + 1] * wy1)) + 0.5));
      let bl = Math.floor(f32(f32(f32(t[o + 2] * wy0) + f32(b[o + 2] * wy1)) + 0.5));
      r = r < 0 ? 0 : r > 255 ? 255 : r;
      g = g < 0 ? 0 : g > 255 ? 255 : g;
      bl = bl < 0 ? 0 : bl > 255 ? 255 : bl;
      put(j, i, r, g, bl);
    }
  }
}

/** resizeEach collected as interleaved RGB uint8 (outH * outW * 3). */
export function resizeWindow(img, rect, newH, newW, top, left, outH, outW) {
  const out = new Uint8Array(outH * outW * 3);
  resizeEach(img, rect, newH, newW, top, left, outH, outW, (j, i, r, g, b) => {
    const o = (j * outW + i) * 3;
    out[o] = r; out[o + 1] = g; out[o + 2] = b;
  });
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
  const S = p.size, n = S * S;
  const g = letterboxGeometry(img.height, img.width, S);
  const [t0, t1, t2] = tablesFor(p);
  const x = out || new Float32Array(3 * n);
  x.fill(t0[p.pad_value], 0, n);
  x.fill(t1[p.pad_value], n, 2 * n);
  x.fill(t2[p.pad_value], 2 * n, 3 * n);
  resizeEach(img, { x: 0, y: 0, w: img.width, h: img.height }, g.newH, g.newW, 0, 0, g.newH, g.newW,
    (j, i, r, gr, b) => {
      const k = (g.top + j) * S + g.left + i;
      x[k] = t0[r]; x[n + k] = t1[gr]; x[2 * n + k] = t2[b];
    });
  return { tensor: x, geo: { scale: g.scale, left: g.left, top: g.top } };
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
  const S = p.size, n = S * S;
  const [t0, t1, t2] = tablesFor(p);
  const x = out || new Float32Array(3 * n);
  resizeEach(img, rect, newH, newW, top, left, S, S, (j, i, r, g, b) => {
    const k = j * S + i;
    x[k] = t0[r]; x[n + k] = t1[g]; x[2 * n + k] = t2[b];
  });
  return x;
}

/** Dispatch on spec.preprocess.mode like preprocess.preprocess (whole image for resize_crop). */
export function preprocess(img, spec) {
  const p = spec.preprocess;
  if (p.mode === 'letterbox') return letterbox(img, p);
  return { tensor: resizeCrop(img, { x: 0, y: 0, w: img.width, h: img.height }, p), geo: null };
}
