"""Fold BatchNormalization into the Conv before it, in float64: the same bytes on every CPU.

torch.onnx's own fold (its eval-mode peephole) computes the folded weights with PyTorch's
float32 CPU kernels, and those are chosen per instruction set: the same checkpoint exported on
an AVX2 machine and on an AVX-512 one gave estimator files whose conv weights differed in the
last bit in about one weight in eight (docs/quantize.md, "Same answer on every CPU"). Every
figure downstream (parity, eval, the int8 search) then starts from another model. Here the
exporter keeps BatchNormalization as nodes (TrainingMode.PRESERVE on an eval-mode model) and
this module folds them with IEEE float64 arithmetic (multiply, divide, square root: correctly
rounded on every CPU, vectorised or not), then rounds once to float32.

    W' = W * s,  b' = (b - mean) * s + beta,  s = gamma / sqrt(var + eps)   (per output channel)
"""

from __future__ import annotations

import numpy as np


def fold_batchnorm(model) -> int:
    """Fold every Conv -> BatchNormalization pair of `model` (onnx.ModelProto, changed in
    place) whose Conv output feeds only that BatchNormalization and whose weights and BN
    parameters are initializers used by nothing else. Returns how many were folded."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    users: dict[str, int] = {}
    for n in g.node:
        for t in n.input:
            users[t] = users.get(t, 0) + 1
    graph_outputs = {o.name for o in g.output}
    producer = {o: n for n in g.node for o in n.output}
    drop = []
    for bn in g.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        conv = producer.get(bn.input[0])
        if (conv is None or conv.op_type != "Conv" or users.get(conv.output[0]) != 1
                or conv.output[0] in graph_outputs):
            continue
        params = list(bn.input[1:5])  # scale, B, mean, var
        weights = list(conv.input[1:3])
        if not all(p in inits and users.get(p) == 1 for p in params + weights):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[p]).astype(np.float64)
                                  for p in params)
        w_init = inits[weights[0]]
        w = numpy_helper.to_array(w_init)
        s = gamma / np.sqrt(var + np.float64(np.float32(eps)))
        b = (numpy_helper.to_array(inits[weights[1]]).astype(np.float64) if len(weights) > 1
             else np.zeros(w.shape[0]))
        new_w = (w.astype(np.float64) * s.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        new_b = ((b - mean) * s + beta).astype(w.dtype)
        w_init.CopyFrom(numpy_helper.from_array(new_w, w_init.name))
        b_name = weights[1] if len(weights) > 1 else conv.output[0] + "_folded_bias"
        if b_name in inits:
            inits[b_name].CopyFrom(numpy_helper.from_array(new_b, b_name))
        else:
            g.initializer.append(numpy_helper.from_array(new_b, b_name))
            conv.input.append(b_name)
        conv.output[0] = bn.output[0]  # the Conv now writes what the BN wrote
        drop.append(bn)
        for p in params:
            g.initializer.remove(inits.pop(p))
    for bn in drop:
        g.node.remove(bn)
    return len(drop)
