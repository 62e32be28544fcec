// Detector post-processing, a mirror of hemoedge/preprocess.decode_detections (float32 steps
// rounded with Math.fround like numpy), plus the nail tracker used during a capture.

const f32 = Math.fround;

/** IoU of two xyxy boxes. */
export function iou(a, b) {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return inter / Math.max(union, 1e-9);
}

/** Greedy NMS; returns kept indices, highest score first (stable on ties, like argsort). */
export function nms(boxes, scores, iouThr) {
  let order = scores.map((s, i) => i).sort((i, j) => scores[j] - scores[i] || i - j);
  const keep = [];
  while (order.length) {
    const i = order[0];
    keep.push(i);
    order = order.slice(1).filter((j) => iou(boxes[i], boxes[j]) <= iouThr);
  }
  return keep;
}

/**
 * Raw output (1, 4 + nc, A) as a flat Float32Array -> [{box: [x1,y1,x2,y2] image px, score, cls}]
 * sorted by score, class-wise NMS. geo = {scale, left, top} from letterbox().
 */
export function decodeDetections(raw, numAnchors, numClasses, geo,
  { conf = 0.25, iou: iouThr = 0.45, maxDet = 50 } = {}) {
  const A = numAnchors;
  const byClass = new Map();
  for (let a = 0; a < A; a++) {
    let cls = 0, best = raw[4 * A + a];
    for (let c = 1; c < numClasses; c++) {
      const s = raw[(4 + c) * A + a];
      if (s > best) { best = s; cls = c; }
    }
    if (!(best >= conf)) continue;
    const cx = raw[a], cy = raw[A + a], w = raw[2 * A + a], h = raw[3 * A + a];
    const hw = f32(w / 2), hh = f32(h / 2);
    const box = [f32(cx - hw), f32(cy - hh), f32(cx + hw), f32(cy + hh)];
    if (!byClass.has(cls)) byClass.set(cls, { boxes: [], scores: [] });
    byClass.get(cls).boxes.push(box);
    byClass.get(cls).scores.push(best);
  }
  const scale = f32(geo.scale);
  const out = [];
  for (const cls of [...byClass.keys()].sort((x, y) => x - y)) {
    const { boxes, scores } = byClass.get(cls);
    for (const k of nms(boxes, scores, iouThr)) {
      const b = boxes[k];
      out.push({
        box: [f32(f32(b[0] - geo.left) / scale), f32(f32(b[1] - geo.top) / scale),
          f32(f32(b[2] - geo.left) / scale), f32(f32(b[3] - geo.top) / scale)],
        score: scores[k],
        cls,
      });
    }
  }
  out.sort((x, y) => y.score - x.score); // Array.prototype.sort is stable, like Python's
  return out.slice(0, maxDet);
}

/**
 * Pick the nail to use in this frame: the one overlapping the tracked box most, or the
 * highest-scoring nail when nothing is tracked yet. Returns {det, iou} or null.
 */
export function pickNail(dets, nailClass, tracked) {
  const nails = dets.filter((d) => d.cls === nailClass);
  if (!nails.length) return null;
  if (!tracked) return { det: nails[0], iou: 1 };
  let best = null, bestIou = -1;
  for (const d of nails) {
    const v = iou(d.box, tracked);
    if (v > bestIou) { best = d; bestIou = v; }
  }
  return { det: best, iou: bestIou };
}
