"""int8 static QDQ: uint8 activations, int8 per-channel weights (U8S8), onnxruntime.quantization.

Measured (docs/quantize-search.md): U8S8 static QDQ is the only int8 form faster than fp32 on
this CPU (dynamic ConvInteger is 1.5-11x slower, S8S8 is slower too).

Calibration runs once per model (`calibrate`); the ranges are written to onnxruntime's own
calibration-cache file and every later `quantize` call (one per step of the node-exclusion
search) reuses them through quantize_static(calibration_cache_path=...), so the search never
re-calibrates and every step sees the same ranges.

Why we build the calibrator ourselves: quantize_static never passes a bin count on to the
Entropy calibrator (its default of 128 bins with 128 quantised bins leaves exactly one
candidate threshold, the full range, so Entropy gave byte-identical output to MinMax).
create_calibrator(extra_options={"num_bins": ...}) applies it.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hemoedge.errors import QuantizeError

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class Int8Scheme:
    """What an int8 file is, in one place: how quantize_static is called and how the manifest
    describes the result. Static QDQ, uint8 activations, int8 weights per output channel, full
    8-bit range (reduce_range off)."""
    format: str = "QDQ"
    activations: str = "uint8"
    weights: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False

    def ort_options(self) -> dict:
        """Keyword arguments for onnxruntime.quantization.quantize_static."""
        from onnxruntime.quantization import QuantFormat, QuantType

        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        return {"quant_format": QuantFormat[self.format], "per_channel": self.per_channel,
                "reduce_range": self.reduce_range,
                "activation_type": types[self.activations], "weight_type": types[self.weights]}

    def describe(self) -> dict:
        """The manifest's description of the scheme (quantization.format/activations/weights)."""
        return {"format": self.format, "activations": self.activations,
                "weights": self.weights + (" per-channel" if self.per_channel else " per-tensor")}


SCHEME = Int8Scheme()  # the scheme every hemoedge int8 file uses


@dataclass(frozen=True)
class CalibSettings:
    method: str = "minmax"  # minmax | percentile | entropy
    num_bins: int = 2048  # histogram bins (percentile, entropy)
    num_quantized_bins: int = 128  # entropy: thresholds are searched from this many bins up
    percentile: float = 99.999  # percentile method: % of |values| kept inside the range
    chunk: int = 8  # samples per calibrator pass; bounds memory (activations of every tensor)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise QuantizeError(f"calibration method must be one of {METHODS}, got {self.method!r}")
        if self.method == "entropy" and self.num_bins <= self.num_quantized_bins:
            raise QuantizeError(f"entropy calibration needs num_bins > num_quantized_bins "
                                f"({self.num_bins} <= {self.num_quantized_bins}): with equal "
                                "counts"
                                "the only candidate range is min-max")
        if not 0.0 < self.percentile <= 100.0:
            raise QuantizeError(f"percentile must be in (0, 100], got {self.percentile}")
        if self.chunk < 1:
            raise QuantizeError(f"chunk must be >= 1, got {self.chunk}")

    def describe(self) -> dict:
        d: dict = {"method": self.method}
        if self.method == "entropy":
            d.update(num_bins=self.num_bins, num_quantized_bins=self.num_quantized_bins)
        elif self.method == "percentile":
            d.update(num_bins=self.num_bins, percentile=self.percentile)
        return d


@contextlib.contextmanager
def quiet(what: str = "onnxruntime.quantization"):
    """Quantisers print progress and log INFO lines on the root logger (onnxruntime: one per
    shared bias); keep them out of the CLI's output (they go to this module's debug log)."""
    root = logging.getLogger()
    level = root.level
    out = io.StringIO()
    root.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(out):
            yield
    finally:
        root.setLevel(level)
        if out.getvalue().strip():
            log.debug("%s: %s", what, out.getvalue().strip())


def _ort_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy}[name]


class ListReader:
    """CalibrationDataReader over a list of input arrays (one model input)."""

    def __init__(self, input_name: str, arrays: Sequence[np.ndarray]):
        self.input_name = input_name
        self.arrays = list(arrays)
        self._i = 0

    def get_next(self) -> dict | None:
        if self._i >= len(self.arrays):
            return None
        self._i += 1
        return {self.input_name: self.arrays[self._i - 1]}

    def __iter__(self):
        return self

    def __next__(self):
        d = self.get_next()
        if d is None:
            raise StopIteration
        return d

    def __len__(self) -> int:
        return len(self.arrays)

    def rewind(self) -> None:
        self._i = 0


def pre_process(src: str | Path, dst: str | Path) -> None:
    """onnxruntime's recommended first step: symbolic shape inference + graph optimisation."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with quiet():
            quant_pre_process(str(src), str(dst))
    except Exception as e:
        raise QuantizeError(f"{src}: quant_pre_process failed ({type(e).__name__}: {e})") from e


def calibrate(model: str | Path, input_name: str, samples: Sequence[np.ndarray],
              settings: CalibSettings, workdir: str | Path, cache: str | Path) -> Path:
    """Compute activation ranges on `samples` and write them to onnxruntime's cache file."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    if not samples:
        raise QuantizeError(f"{model}: no calibration samples")
    opts: dict = {}
    if settings.method in ("entropy", "percentile"):
        opts["num_bins"] = settings.num_bins
    if settings.method == "entropy":
        opts["num_quantized_bins"] = settings.num_quantized_bins
    if settings.method == "percentile":
        opts["percentile"] = settings.percentile
    calibrator = create_calibrator(
        Path(model), None, augmented_model_path=str(Path(workdir) / "augmented.onnx"),
        calibrate_method=_ort_method(settings.method), extra_options=opts)
    with quiet():
        for start in range(0, len(samples), settings.chunk):
            calibrator.collect_data(ListReader(input_name, samples[start:start + settings.chunk]))
        ranges = calibrator.compute_data()
    for name, td in ranges.items():
        lo, hi = td.range_value
        td.lowest, td.highest = snap_range(lo, hi)
        ranges[name] = td
    save_tensors_data(ranges, cache)
    return Path(cache)


GRID_STEPS_PER_OCTAVE = 16  # range grid: 2^(1/16), i.e. at most 4.4 % wider than measured


def _grid_table() -> np.ndarray:
    """2^(j/16) for j = 0..16 in float64, correctly rounded by exact decimal arithmetic (not
    numpy's exp2, whose last bit differs between its AVX-512 and AVX2 code)."""
    import decimal

    ctx = decimal.Context(prec=40)
    return np.array([float(ctx.power(decimal.Decimal(2), decimal.Decimal(j) / GRID_STEPS_PER_OCTAVE))
                     for j in range(GRID_STEPS_PER_OCTAVE + 1)], np.float64)


_GRID = _grid_table()
_SLACK = 2.0 ** (1e-4 / GRID_STEPS_PER_OCTAVE)  # a value this close above a grid point is on it


def snap_range(lo, hi):
    """(lowest, highest) moved outward onto the grid ±2^(k/16) (0 stays 0), same dtype.

    The float model that calibration runs could give last-bit different activations on CPUs
    with different float kernels; a raw min/max would then give a different scale, i.e.
    different bytes. On the grid such a difference changes nothing unless a range sits within
    a few ulps of a grid point, at the cost of at most 4.4 % of the range. The grid is found
    with exact operations only (frexp, comparisons against a fixed table, ldexp): no
    logarithm or exponential whose last bit depends on the instruction set."""
    def snap(v, up: bool):
        a = np.asarray(v, np.float64)
        mag = np.abs(a)
        m, e = np.frexp(np.where(mag > 0, mag, 1.0))  # mag = m * 2^e, m in [0.5, 1)
        f = m * 2.0  # in [1, 2): exact
        e = e - 1
        away = (a > 0) == up  # outward is away from zero: round the magnitude up
        # up: the smallest grid point >= f (within the slack); down: the largest <= f
        j_up = np.searchsorted(_GRID * _SLACK, f, side="left")
        j_dn = np.searchsorted(_GRID / _SLACK, f, side="right") - 1
        g = np.where(away, _GRID[np.minimum(j_up, GRID_STEPS_PER_OCTAVE)], _GRID[j_dn])
        out = np.where(mag > 0, np.sign(a) * np.ldexp(g, e), 0.0)
        return out.astype(np.asarray(v).dtype)

    return snap(lo, up=False), snap(hi, up=True)


def quantize(model: str | Path, cache: str | Path, dst: str | Path, method: str,
             exclude: Iterable[str] = ()) -> None:
    """Static quantisation (SCHEME: QDQ U8S8 per-channel) of a pre-processed model with cached
    ranges."""
    from onnxruntime.quantization import quantize_static

    try:
        with quiet():
            quantize_static(
                str(model), str(dst), calibration_data_reader=None, **SCHEME.ort_options(),
                nodes_to_exclude=sorted(exclude), calibrate_method=_ort_method(method),
                calibration_cache_path=str(cache))
    except Exception as e:
        raise QuantizeError(f"{model}: quantize_static failed ({type(e).__name__}: {e})") from e


def copy_metadata(src: str | Path, dst: str | Path) -> None:
    """Give `dst` exactly the metadata_props of `src` (hemoedge.spec and the rest)."""
    import onnx

    meta = onnx.load(str(src), load_external_data=False).metadata_props
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    model.metadata_props.extend(meta)
    onnx.save(model, str(dst))


def census(path: str | Path) -> dict[str, int]:
    """QuantizeLinear / DequantizeLinear counts and how many compute nodes still run in float."""
    import onnx

    model = onnx.load(str(path))
    ops = Counter(n.op_type for n in model.graph.node)
    return {"QuantizeLinear": ops.get("QuantizeLinear", 0),
            "DequantizeLinear": ops.get("DequantizeLinear", 0),
            "nodes": sum(ops.values())}
