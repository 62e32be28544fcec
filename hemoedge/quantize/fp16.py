"""fp16 variant: weights and activations in float16, graph inputs and outputs kept float32.

The app feeds and reads float32 tensors, so keep_io_types=True means it needs no change.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from hemoedge.errors import QuantizeError

log = logging.getLogger(__name__)


def convert(src: str | Path, dst: str | Path) -> None:
    """Write an fp16 copy of the float32 model `src` to `dst` (metadata_props kept)."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    # measured: with stale value_info the converter types /model.10/Resize wrongly and ORT
    # refuses the file; shapes are re-inferred by ORT at load anyway.
    del model.graph.value_info[:]
    try:
        with warnings.catch_warnings():
            # one UserWarning per weight below fp16's smallest normal (1e-7): noise, not news
            warnings.simplefilter("ignore", UserWarning)
            half = float16.convert_float_to_float16(model, keep_io_types=True)
    except Exception as e:  # the converter raises bare Exceptions/ValueErrors
        raise QuantizeError(f"{src}: fp16 conversion failed ({type(e).__name__}: {e})") from e
    del half.metadata_props[:]
    half.metadata_props.extend(model.metadata_props)
    onnx.save(half, str(dst))
    log.info("fp16: %s -> %s", Path(src).name, Path(dst).name)
