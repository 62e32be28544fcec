// The nail tracker between detector frames. Pure functions on RGBA images (node tests them).
//
// A detector frame keeps a luma patch of the nail box (TRACK.grid x TRACK.grid samples); a
// frame without the detector finds where that patch went - the shift within +-TRACK.radius px
// of the last box with the least mean absolute difference, searched coarse (every
// TRACK.coarse px) then fine (every px around the best) - and moves the box by it. Without
// this the box stayed where the detector last put it: on a hand swaying 10 px over 3 s a box
// held for 6 grabs sat up to 8 px off the nail (mean 3.4 px) and the reading moved 0.05 g/dL;
// held for 12, up to 15 px and 0.22 g/dL (docs/webapp.md).

export const TRACK = Object.freeze({
  grid: 24, // patch samples per side
  radius: 16, // px (source image): largest shift searched per frame
  coarse: 4, // px: step of the coarse search
  maxDiffShare: 0.5, // best match's mean abs difference over the patch's own mean abs
  //                   deviation above which the nail is not found there: re-detect
});

/** grid x grid nearest-neighbour luma samples of rect shifted by (dx, dy); samples outside
 * the image are clamped to its edge. */
export function patch(img, rect, dx = 0, dy = 0, G = TRACK.grid) {
  const d = img.data, W = img.width, H = img.height;
  const out = new Float32Array(G * G);
  for (let j = 0; j < G; j++) {
    const y = Math.min(H - 1, Math.max(0, rect.y + dy + Math.floor(((j + 0.5) * rect.h) / G)));
    for (let i = 0; i < G; i++) {
      const x = Math.min(W - 1, Math.max(0, rect.x + dx + Math.floor(((i + 0.5) * rect.w) / G)));
      const o = (y * W + x) * 4;
      out[j * G + i] = 0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2];
    }
  }
  return out;
}

function meanAbsDiff(a, b) {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += Math.abs(a[k] - b[k]);
  return s / a.length;
}

/** Where `ref` (a patch of a rect of the same size) is in img around rect: {dx, dy, diff}
 * (diff: the mean abs luma difference there). */
export function findShift(img, ref, rect, { radius = TRACK.radius, coarse = TRACK.coarse } = {}) {
  let best = { dx: 0, dy: 0, diff: meanAbsDiff(patch(img, rect), ref) };
  const tryAt = (dx, dy) => {
    if (Math.abs(dx) > radius || Math.abs(dy) > radius) return;
    const diff = meanAbsDiff(patch(img, rect, dx, dy), ref);
    // strictly better, or as good and nearer: ties resolve to the smallest move
    if (diff < best.diff || (diff === best.diff && dx * dx + dy * dy < best.dx ** 2 + best.dy ** 2)) {
      best = { dx, dy, diff };
    }
  };
  for (let dy = -radius; dy <= radius; dy += coarse) {
    for (let dx = -radius; dx <= radius; dx += coarse) tryAt(dx, dy);
  }
  const c = { ...best };
  for (let dy = c.dy - coarse + 1; dy < c.dy + coarse; dy++) {
    for (let dx = c.dx - coarse + 1; dx < c.dx + coarse; dx++) tryAt(dx, dy);
  }
  return best;
}

/** Whether a findShift result lost the nail: its best place is on the edge of the search (it
 * moved further than radius), or it explains less of the patch than maxDiffShare of the
 * patch's own variation (covered, out of the frame; a flat match scores about 1). */
export function lost(s, ref, { radius = TRACK.radius, maxDiffShare = TRACK.maxDiffShare } = {}) {
  let mean = 0;
  for (let k = 0; k < ref.length; k++) mean += ref[k];
  mean /= ref.length;
  let dev = 0;
  for (let k = 0; k < ref.length; k++) dev += Math.abs(ref[k] - mean);
  dev /= ref.length;
  return s.diff > maxDiffShare * dev || Math.abs(s.dx) >= radius || Math.abs(s.dy) >= radius;
}

/** The box [x1, y1, x2, y2] moved by (dx, dy), kept inside a W x H image. */
export function moveBox(box, dx, dy, W, H) {
  const sx = Math.min(Math.max(dx, -box[0]), W - box[2]);
  const sy = Math.min(Math.max(dy, -box[1]), H - box[3]);
  return [box[0] + sx, box[1] + sy, box[2] + sx, box[3] + sy];
}
