// From per-frame Hb values to one reading: IQR outlier rejection, median, spread, WHO category.
// whoCategory mirrors hemoedge/severity.who_category.

// g/dL: the one anaemia threshold (hemoedge.names.ANAEMIA_THRESHOLD_GDL), women's and the default
export const ANAEMIA_THRESHOLD_GDL = 12.0;
export const ANAEMIA_THRESHOLD = { // '' = not given
  female: ANAEMIA_THRESHOLD_GDL, male: 13.0, '': ANAEMIA_THRESHOLD_GDL,
};

export function whoCategory(hb, sex = '') {
  if (!(sex in ANAEMIA_THRESHOLD)) throw new Error(`sex must be female, male or empty, got ${sex}`);
  if (hb < 8.0) return 'severe';
  if (hb < 11.0) return 'moderate';
  if (hb < ANAEMIA_THRESHOLD[sex]) return 'mild';
  return 'none';
}

/** numpy.quantile's default (linear) method on a sorted array. */
export function quantileSorted(sorted, q) {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return quantileSorted(s, 0.5);
}

/**
 * values: per-frame Hb (g/dL) of the frames that passed the quality checks.
 * Tukey fences (k * IQR outside the quartiles) reject outliers; the median of the rest is the
 * reading. ok is false (no number shown) when fewer than minValid frames remain.
 */
export function summarise(values, { minValid = 10, k = 1.5, sex = '' } = {}) {
  const n = values.length;
  if (n === 0) return { ok: false, used: 0, outliers: 0, valid: 0 };
  const s = [...values].sort((a, b) => a - b);
  const q1 = quantileSorted(s, 0.25), q3 = quantileSorted(s, 0.75);
  const lo = q1 - k * (q3 - q1), hi = q3 + k * (q3 - q1);
  const kept = s.filter((v) => v >= lo && v <= hi);
  const base = { valid: n, used: kept.length, outliers: n - kept.length, fence: [lo, hi] };
  if (kept.length < minValid) return { ok: false, ...base };
  const hb = quantileSorted(kept, 0.5);
  return {
    ok: true,
    ...base,
    hb,
    spread: quantileSorted(kept, 0.75) - quantileSorted(kept, 0.25), // IQR of the kept frames, g/dL
    min: kept[0],
    max: kept[kept.length - 1],
    category: whoCategory(hb, sex),
  };
}
