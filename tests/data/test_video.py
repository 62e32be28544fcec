import numpy as np
import pytest

from hemoedge.data.video import H, W, decode_index, draw_index, read_y4m, write_video
from hemoedge.errors import DataError


def test_video_frames_carry_their_index(tmp_path):
    out = write_video(tmp_path / "v.y4m", hb_gdl=9.0, frames_n=6, seed=1)
    head = out.read_bytes()[:60]
    assert head.startswith(b"YUV4MPEG2 W640 H480 F25:1 Ip A1:1 C420jpeg\n")
    frames = read_y4m(out)
    assert len(frames) == 6 and frames[0].shape == (H, W)
    assert [decode_index(np.stack([f] * 3, -1)) for f in frames] == list(range(6))
    assert not np.array_equal(frames[0][100:], frames[5][100:])  # the hand moves


@pytest.mark.parametrize("index", [0, 1, 255, 4097, 65535])
def test_code_strip_round_trip(index):
    img = np.full((H, W, 3), 90, np.uint8)
    draw_index(img, index)
    assert decode_index(img) == index


def test_no_code_strip():
    assert decode_index(np.zeros((H, W, 3), np.uint8)) == -1


def test_bad_hb(tmp_path):
    with pytest.raises(DataError, match="outside the plausible"):
        write_video(tmp_path / "v.y4m", hb_gdl=45.0)
