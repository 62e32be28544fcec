"""Output correction of an int8 regression model: y = a * y_int8 + b, fitted to fp32.

Rounding every activation to 8 bits does not only add noise; it also compresses or shifts the
output a little (a range clipped by calibration, a ReLU's rounding that is never below zero),
and that shows as a slope or an offset between the int8 and the fp32 answer: severe anaemia
read high, a normal Hb read low. Two float numbers after the final layer undo that — the
last-layer form of bias correction. They are fitted on the calibration inputs (reference
outputs of both models, least squares) and kept only when they lower the error on the
validation inputs, which the fit never saw.

The correction is two float nodes (Mul, Add) after the model's single output, which keeps its
name, so every runtime (onnxruntime, onnxruntime-web) runs the file unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hemoedge.errors import QuantizeError

DECIMALS = 3  # a and b are rounded to this many decimals
MIN_SPAN = 1.0  # calibration outputs must spread over this much (output unit) to fit a slope


@dataclass(frozen=True)
class Correction:
    scale: float  # a
    offset: float  # b, in the output's unit (g/dL for Hb)
    samples: int  # calibration inputs it was fitted on

    def describe(self) -> dict:
        return {"scale": round(self.scale, 6), "offset": round(self.offset, 6),
                "fitted_on": f"{self.samples} calibration inputs (reference outputs, int8 vs fp32,"
                             " least squares)"}


def fit(int8_out: np.ndarray, fp32_out: np.ndarray) -> Correction:
    """Least-squares a, b with fp32 ≈ a * int8 + b over calibration outputs (one value each)."""
    x = np.asarray(int8_out, np.float64).ravel()
    y = np.asarray(fp32_out, np.float64).ravel()
    if len(x) != len(y) or len(x) < 3:
        raise QuantizeError(f"output correction needs >= 3 paired outputs, got {len(x)}")
    if np.ptp(x) < MIN_SPAN:  # too narrow a spread for a stable slope: an offset only
        a, b = 1.0, float(np.mean(y - x))
    else:
        a, b = np.polyfit(x, y, 1)
    # on a 1e-3 grid: calibration outputs that differ in the last bits on another CPU give the
    # same two numbers, i.e. the same bytes (1e-3 g/dL is far below any clinical difference)
    return Correction(round(float(a), DECIMALS), round(float(b), DECIMALS), len(x))


def apply(src: str | Path, dst: str | Path, c: Correction) -> None:
    """Write src with `output = scale * output + offset` appended (output name unchanged)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    if len(g.output) != 1:
        raise QuantizeError(f"{src}: output correction needs exactly one output, found "
                            f"{len(g.output)}")
    out = g.output[0].name
    raw = out + "_before_correction"
    for node in g.node:
        node.output[:] = [raw if o == out else o for o in node.output]
        node.input[:] = [raw if i == out else i for i in node.input]
    g.initializer.extend([
        numpy_helper.from_array(np.array(c.scale, np.float32), "hemoedge_correction_scale"),
        numpy_helper.from_array(np.array(c.offset, np.float32), "hemoedge_correction_offset")])
    g.node.extend([
        helper.make_node("Mul", [raw, "hemoedge_correction_scale"], [out + "_scaled"],
                         name="/hemoedge/correction/Mul"),
        helper.make_node("Add", [out + "_scaled", "hemoedge_correction_offset"], [out],
                         name="/hemoedge/correction/Add")])
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
