"""FLOPs of an ONNX graph: 2 x multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul (and their
quantised forms) + bias adds, from onnx shape inference and a short per-op table (_MAC_OPS)
rather than onnx-tool at run time: onnx-tool also counts element-wise ops as "MACs", which are
not what FMA units execute; tests/bench/test_cpu.py checks that the two agree exactly on every
Conv/Gemm/MatMul node when onnx-tool is installed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hemoedge.bench.cpu_inputs import _load_onnx
from hemoedge.errors import BenchError

log = logging.getLogger(__name__)


# op -> (index of the weight input, index of the bias input or None)
_MAC_OPS = {"Conv": (1, 2), "ConvInteger": (1, None), "QLinearConv": (3, 8),
            "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (1, None),
            "MatMulInteger": (1, None), "QLinearMatMul": (3, None)}


@dataclass
class FlopCount:
    macs: int = 0  # multiply-accumulates of the _MAC_OPS nodes
    adds: int = 0  # their bias additions
    by_op: dict[str, int] = field(default_factory=dict)  # op -> macs + adds
    by_node: dict[str, int] = field(default_factory=dict)  # node name -> macs + adds
    unknown: list[str] = field(default_factory=list)  # _MAC_OPS nodes with unknown shapes

    @property
    def flops(self) -> int:
        return 2 * self.macs + self.adds

    @property
    def gflop(self) -> float:
        return self.flops / 1e9


def count_flops(path: str | Path) -> FlopCount:
    """FLOPs of one inference, from the graph: onnx shape inference (dynamic dims set to 1)
    then MACs per node: Conv prod(Y) x prod(W[1:]) (W is Cout, Cin/g, kh, kw); ConvTranspose
    prod(X) x prod(W[1:]) (W is Cin, Cout/g, kh, kw); Gemm prod(Y) x K; MatMul prod(Y) x K.
    FLOPs = 2 x MACs + one add per output element when a bias is given. Other ops: 0."""
    import onnx

    model = _load_onnx(path)
    for vi in model.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # onnx raises several types; the file already loaded fine
        raise BenchError(f"{path}: ONNX shape inference failed ({e}); cannot count FLOPs") from e
    g = model.graph
    shapes: dict[str, tuple[int, ...]] = {i.name: tuple(i.dims) for i in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes.setdefault(vi.name, tuple(d.dim_value for d in dims))
    out = FlopCount()
    for i, node in enumerate(g.node):
        if node.op_type not in _MAC_OPS or node.domain not in ("", "ai.onnx"):
            continue
        w_i, b_i = _MAC_OPS[node.op_type]
        w = shapes.get(node.input[w_i]) if len(node.input) > w_i else None
        x = shapes.get(node.input[0])
        y = shapes.get(node.output[0])
        name = node.name or f"{node.op_type}_{i}"
        if w is None or y is None or (node.op_type.startswith("ConvT") and x is None):
            out.unknown.append(name)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        n_out = int(np.prod(y))
        if node.op_type == "ConvTranspose":
            macs = int(np.prod(x)) * int(np.prod(w[1:]))  # every input pixel x (Cout/g) x k
        elif "Conv" in node.op_type:
            macs = n_out * int(np.prod(w[1:]))  # every output pixel x (Cin/g) x k
        elif node.op_type == "Gemm":
            macs = n_out * (w[1] if attrs.get("transB", 0) else w[0])
        else:  # MatMul family: (..., M, K) @ (..., K, N), or (K,) for a vector B
            macs = n_out * (w[-2] if len(w) > 1 else w[0])
        bias = b_i is not None and len(node.input) > b_i and node.input[b_i] != ""
        adds = n_out if bias else 0
        out.macs += macs
        out.adds += adds
        out.by_op[node.op_type] = out.by_op.get(node.op_type, 0) + macs + adds
        out.by_node[name] = macs + adds
    if out.unknown:
        log.warning("%s: %d MAC nodes with unknown shapes not counted: %s", path,
                    len(out.unknown), ", ".join(out.unknown[:5]))
    return out
