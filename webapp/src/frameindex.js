// Decodes the frame index that `hemoedge data video` paints into each fake-camera frame, so
// the benchmark can count dropped or repeated source frames. A mirror of
// hemoedge/data/video.py decode_index: CELLS cells of CELL px in one row from (X, Y); cell 0
// white and cell 1 black (sync pair), then BITS bits, most significant first; each cell's
// bit is the mean Rec.601 luma of the 4x4 px around its centre > 128.

export const CODE = Object.freeze({ x: 4, y: 4, cell: 12, bits: 16 });

/** RGBA image -> frame index, or -1 when the sync pair is not there (not our video). */
export function decodeIndex(img) {
  const { x: X, y: Y, cell, bits } = CODE;
  if (img.width < X + (bits + 2) * cell || img.height < Y + cell) return -1;
  const d = img.data, W = img.width;
  const bit = (k) => {
    const cx = X + k * cell + (cell >> 1), cy = Y + (cell >> 1);
    let sum = 0;
    for (let y = cy - 2; y < cy + 2; y++) {
      for (let x = cx - 2, o = (y * W + x) * 4; x < cx + 2; x++, o += 4) {
        sum += 0.299 * d[o] + 0.587 * d[o + 1] + 0.114 * d[o + 2];
      }
    }
    return sum / 16 > 128 ? 1 : 0;
  };
  if (bit(0) !== 1 || bit(1) !== 0) return -1;
  let v = 0;
  for (let k = 0; k < bits; k++) v = (v << 1) | bit(k + 2);
  return v;
}
