"""The nail tracker between detector frames (webapp/src/track.js, in node)."""

from __future__ import annotations

from webhelp import run_js

# an RGBA W x H image with a textured "nail" (an ellipse of varying colour, moving with it)
# at (cx, cy) on skin whose faint texture stays put
SCENE = """
  const W = 160, H = 120;
  const scene = (cx, cy) => {
    const data = new Uint8ClampedArray(W * H * 4);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const o = (y * W + x) * 4, u = (x - cx) / 18, v = (y - cy) / 24;
      const inside = u * u + v * v < 1;
      data[o] = inside ? 200 + 30 * Math.sin((x - cx) / 3) : 150;
      data[o + 1] = inside ? 120 + 40 * Math.cos((y - cy) / 4) : 100;
      data[o + 2] = inside ? 110 : 80 + ((x * 7 + y * 13) % 9);
      data[o + 3] = 255;
    }
    return { data, width: W, height: H };
  };
"""


def _js(body: str):
    return run_js({"t": "track.js"}, body, prelude=SCENE)


def test_the_tracker_finds_where_the_nail_moved():
    out = _js("""
      const rect = { x: 58, y: 30, w: 44, h: 60 };   // the box around the nail at (80, 60)
      const ref = t.patch(scene(80, 60), rect);
      const still = t.findShift(scene(80, 60), ref, rect);
      const moved = t.findShift(scene(87, 55), ref, rect);      // 7 right, 5 up
      const far = t.findShift(scene(80 + 40, 60), ref, rect);  // beyond the search radius
      return { still, moved, far, lost: [still, moved, far].map((s) => t.lost(s, ref)) };""")
    assert (out["still"]["dx"], out["still"]["dy"], out["still"]["diff"]) == (0, 0, 0)
    assert (out["moved"]["dx"], out["moved"]["dy"]) == (7, -5)
    assert out["moved"]["diff"] < 1  # the skin around the nail did not move with it
    assert out["lost"] == [False, False, True]  # further than the search: re-detect


def test_a_moved_box_stays_inside_the_image():
    out = _js("""
      return [t.moveBox([10, 10, 50, 60], 5, -3, 160, 120),
              t.moveBox([10, 10, 50, 60], -20, -20, 160, 120),
              t.moveBox([100, 50, 150, 110], 30, 30, 160, 120)];""")
    assert out == [[15, 7, 55, 57], [0, 0, 40, 50], [110, 60, 160, 120]]
