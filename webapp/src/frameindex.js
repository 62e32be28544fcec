// Decodes the frame index that `hemoedge data video` paints into each fake-camera frame,
// so the benchmark can count dropped or repeated source frames. Must mirror
// hemoedge/data/video.py decode_index exactly.
// PROVISIONAL until hemoedge/data/video.py exists: 16 cells of 8x8 px along the top-left
// edge, bit i (LSB first) white when set; each cell read at its centre, threshold 128 on green.

export const CODE = Object.freeze({ bits: 16, cell: 8, x0: 0, y0: 0 });

/** RGBA image -> frame index (int), or -1 when the image is too small to hold the strip. */
export function decodeIndex(img) {
  const { bits, cell, x0, y0 } = CODE;
  if (img.width < x0 + bits * cell || img.height < y0 + cell) return -1;
  let v = 0;
  const y = y0 + (cell >> 1);
  for (let i = 0; i < bits; i++) {
    const x = x0 + i * cell + (cell >> 1);
    if (img.data[(y * img.width + x) * 4 + 1] >= 128) v |= 1 << i;
  }
  return v;
}
