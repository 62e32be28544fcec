// Frame quality checks during a capture. Pure functions on RGBA images.

export const QUALITY = Object.freeze({
  minLuma: 40, // mean Rec.601 luma (0-255) of the frame below this: "too dark"
  minNailSide: 12, // px (source image): nail box shorter side below this: "nail too small"
  maxMotion: 18, // mean abs luma change (0-255) of the nail's 16x16 thumbnail between frames
  minTrackIou: 0.1, // the tracked nail jumped further than this overlap: "motion"
  grid: 16, // thumbnail side used for the motion check
});

export const REASONS = Object.freeze({
  dark: 'too dark',
  noNail: 'no nail found',
  small: 'nail too small',
  motion: 'motion',
  busy: 'skipped: this device was still busy with an earlier frame',
  late: 'skipped: it could not be analysed before the result is due',
});

/** Mean luma of rect, sampling every `step`-th pixel. */
export function meanLuma(img, rect, step = 4) {
  const d = img.data, W = img.width;
  let sum = 0, n = 0;
  for (let y = rect.y; y < rect.y + rect.h; y += step) {
    for (let x = rect.x, o = (y * W + x) * 4; x < rect.x + rect.w; x += step, o += 4 * step) {
      sum += 0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2];
      n++;
    }
  }
  return n ? sum / n : 0;
}

/** G x G nearest-neighbour luma thumbnail of rect (Float32Array), for the motion check. */
export function thumbnail(img, rect, G = QUALITY.grid) {
  const d = img.data, W = img.width;
  const out = new Float32Array(G * G);
  for (let j = 0; j < G; j++) {
    const y = rect.y + Math.min(rect.h - 1, Math.floor(((j + 0.5) * rect.h) / G));
    for (let i = 0; i < G; i++) {
      const x = rect.x + Math.min(rect.w - 1, Math.floor(((i + 0.5) * rect.w) / G));
      const o = (y * W + x) * 4;
      out[j * G + i] = 0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2];
    }
  }
  return out;
}

export function motionScore(a, b) {
  if (!a || !b || a.length !== b.length) return 0;
  let s = 0;
  for (let k = 0; k < a.length; k++) s += Math.abs(a[k] - b[k]);
  return s / a.length;
}
