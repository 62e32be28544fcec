// From per-frame Hb values to one reading: IQR outlier rejection, median, spread, WHO category.
// whoCategory mirrors hemoedge/severity.who_category; its thresholds come from the build
// manifest (models.json `who`, written from hemoedge.severity.who_thresholds):
// { severeBelow, moderateBelow, anaemiaBelow: { female, male, '' } } in g/dL.

export function whoCategory(hb, sex, who) {
  if (!who || !who.anaemiaBelow) throw new Error('whoCategory needs the build manifest\'s `who` thresholds');
  if (!(sex in who.anaemiaBelow)) throw new Error(`sex must be female, male or empty, got ${sex}`);
  if (hb < who.severeBelow) return 'severe';
  if (hb < who.moderateBelow) return 'moderate';
  if (hb < who.anaemiaBelow[sex]) return 'mild';
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
export function summarise(values, { minValid = 10, k = 1.5, sex = '', who } = {}) {
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
    category: who ? whoCategory(hb, sex, who) : null,
  };
}
