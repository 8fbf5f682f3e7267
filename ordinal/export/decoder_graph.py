"""The ordinal decoder as a small ONNX graph, built from a model's ``config.ordinal``.

The exported backbone ends in ``logits`` (shape=(batch, num_outputs)); this graph maps them to
named, self-contained outputs, so a consumer needs no link-function code:

* ``latent`` (batch,): ``eta`` (cumulative link and CORAL only),
* ``ordinal_logits`` (batch, K-1): as :class:`ordinal.OrdinalOutput.logits`,
* ``cum_probs`` (batch, K-1): ``P(y > k)``,
* ``probs`` (batch, K): class probabilities,
* ``label`` (batch,) int64: the median label, ``sum_k [P(y > k) > 0.5]``.

The graph is written with ``onnx.helper`` rather than traced from PyTorch: ``log_ndtr`` (probit)
has no ONNX export, and a hand-written graph names every tensor deliberately. Parity with the
PyTorch decoder is tested per head and link.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["DECODER_INPUT", "build_decoder_graph", "decoder_output_names"]

#: Name of the decoder graph's input: the backbone's ``logits``.
DECODER_INPUT = "scores"
_CLOGLOG_MAX = 80.0  # as in ordinal.links: exp(80) is still finite in float32


def decoder_output_names(section: dict[str, Any]) -> list[str]:
    """Output names of the decoder graph for a ``config.ordinal`` section."""
    names = ["ordinal_logits", "cum_probs", "probs", "label"]
    return names if section["head"] == "corn" else ["latent", *names]


def _const(name: str, value: Any, dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _survival_nodes(link: str, z: str, out: str) -> list[onnx.NodeProto]:
    """Nodes computing ``out = 1 - F(z)`` for a cumulative link, without ``1 - F`` cancellation."""
    if link == "logit":
        return [
            helper.make_node("Neg", [z], ["d_negz"]),
            helper.make_node("Sigmoid", ["d_negz"], [out]),
        ]
    if link == "probit":
        # 1 - Phi(z) = 0.5 * (1 + erf(-z / sqrt 2))
        return [
            helper.make_node("Mul", [z, "d_neg_inv_sqrt2"], ["d_scaled"]),
            helper.make_node("Erf", ["d_scaled"], ["d_erf"]),
            helper.make_node("Add", ["d_erf", "d_one"], ["d_erf1"]),
            helper.make_node("Mul", ["d_erf1", "d_half"], [out]),
        ]
    if link == "cloglog":
        # 1 - F(z) = exp(-exp(z)), z capped where exp overflows float32
        return [
            helper.make_node("Min", [z, "d_cloglog_max"], ["d_zcap"]),
            helper.make_node("Exp", ["d_zcap"], ["d_ez"]),
            helper.make_node("Neg", ["d_ez"], ["d_negez"]),
            helper.make_node("Exp", ["d_negez"], [out]),
        ]
    raise ValueError(f"unknown link {link!r} in config.ordinal")


def build_decoder_graph(section: dict[str, Any], opset: int, ir_version: int) -> onnx.ModelProto:
    """An ONNX model ``scores -> (latent,) ordinal_logits, cum_probs, probs, label``.

    Parameters
    ----------
    section : dict
        A model's ``config.ordinal`` (head, num_classes, cutpoints, link, ...).
    opset, ir_version : int
        Match the backbone graph's, so the two can be merged.
    """
    head = section["head"]
    num_classes = int(section["num_classes"])
    num_outputs = 1 if head in ("cumulative_link", "coral") else num_classes - 1
    inits = [
        _const("d_zero", 0.0),
        _const("d_one", 1.0),
        _const("d_half", 0.5),
        _const("d_neg_inv_sqrt2", -1.0 / math.sqrt(2.0)),
        _const("d_cloglog_max", _CLOGLOG_MAX),
        _const("d_ones_col", [[1.0]]),
        _const("d_zeros_col", [[0.0]]),
        _const("d_axis1", [1], np.int64),
        _const("d_one_i", [1], np.int64),
    ]
    nodes: list[onnx.NodeProto] = []
    if head in ("cumulative_link", "coral"):
        cutpoints = np.asarray(section["cutpoints"], dtype=np.float32)
        if cutpoints.shape != (num_classes - 1,):
            raise ValueError(f"config.ordinal has {cutpoints.size} cutpoints for K={num_classes}")
        inits.append(_const("d_cutpoints", cutpoints))
        nodes.append(helper.make_node("Squeeze", [DECODER_INPUT, "d_axis1"], ["latent"]))
        if head == "cumulative_link":
            # logits = theta - eta ; P(y > k) = 1 - F(theta_k - eta)
            nodes.append(
                helper.make_node("Sub", ["d_cutpoints", DECODER_INPUT], ["ordinal_logits"])
            )
            nodes += _survival_nodes(section.get("link", "logit"), "ordinal_logits", "cum_probs")
        else:
            # logits = eta + b with b = -theta ; P(y > k) = sigmoid(logits)
            nodes.append(
                helper.make_node("Sub", [DECODER_INPUT, "d_cutpoints"], ["ordinal_logits"])
            )
            nodes.append(helper.make_node("Sigmoid", ["ordinal_logits"], ["cum_probs"]))
    elif head == "corn":
        # s = scores + intercepts ; P(y > k) = prod_{j<=k} sigmoid(s_j) = exp(cumsum(-softplus(-s)))
        # (a config written before CORN had intercepts has none: they were the projection's bias)
        intercepts = np.asarray(section.get("intercepts") or [], dtype=np.float32)
        if intercepts.size:
            if intercepts.shape != (num_classes - 1,):
                raise ValueError(
                    f"config.ordinal has {intercepts.size} intercepts for K={num_classes}"
                )
            inits.append(_const("d_intercepts", intercepts))
            nodes.append(
                helper.make_node("Add", [DECODER_INPUT, "d_intercepts"], ["ordinal_logits"])
            )
        else:
            nodes.append(helper.make_node("Identity", [DECODER_INPUT], ["ordinal_logits"]))
        nodes += [
            helper.make_node("Neg", ["ordinal_logits"], ["d_negs"]),
            helper.make_node("Softplus", ["d_negs"], ["d_sp"]),
            helper.make_node("Neg", ["d_sp"], ["d_logsig"]),
            helper.make_node("CumSum", ["d_logsig", "d_one_i"], ["d_cumlog"]),
            helper.make_node("Exp", ["d_cumlog"], ["cum_probs"]),
        ]
    else:
        raise ValueError(f"no ONNX decoder for head {head!r}")
    # probs = [1, c] - [c, 0], clipped at 0 ; label = sum(c > 0.5)
    nodes += [
        helper.make_node("Shape", ["cum_probs"], ["d_shape"], start=0, end=1),
        helper.make_node("Concat", ["d_shape", "d_one_i"], ["d_colshape"], axis=0),
        helper.make_node("Expand", ["d_ones_col", "d_colshape"], ["d_ones"]),
        helper.make_node("Expand", ["d_zeros_col", "d_colshape"], ["d_zeros"]),
        helper.make_node("Concat", ["d_ones", "cum_probs"], ["d_upper"], axis=1),
        helper.make_node("Concat", ["cum_probs", "d_zeros"], ["d_lower"], axis=1),
        helper.make_node("Sub", ["d_upper", "d_lower"], ["d_diff"]),
        helper.make_node("Max", ["d_diff", "d_zero"], ["probs"]),
        helper.make_node("Greater", ["cum_probs", "d_half"], ["d_above"]),
        helper.make_node("Cast", ["d_above"], ["d_above_i"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["d_above_i", "d_axis1"], ["label"], keepdims=0),
    ]
    batch = "batch_size"
    shapes = {
        "latent": [batch],
        "ordinal_logits": [batch, num_classes - 1],
        "cum_probs": [batch, num_classes - 1],
        "probs": [batch, num_classes],
        "label": [batch],
    }
    outputs = [
        helper.make_tensor_value_info(
            name, TensorProto.INT64 if name == "label" else TensorProto.FLOAT, shapes[name]
        )
        for name in decoder_output_names(section)
    ]
    graph = helper.make_graph(
        nodes,
        f"ordinal_decoder_{head}",
        [helper.make_tensor_value_info(DECODER_INPUT, TensorProto.FLOAT, [batch, num_outputs])],
        outputs,
        initializer=inits,
    )
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model
