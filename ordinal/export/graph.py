"""Read an ONNX graph's signature (opset, inputs, outputs, dynamic axes) and check it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from ordinal.export.errors import GraphError

__all__ = ["graph_signature", "load_onnx", "signature_differences"]


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load and check an ONNX file; a missing or corrupt file raises :class:`GraphError`."""
    path = Path(path)
    if not path.is_file():
        raise GraphError(f"no ONNX file at {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise GraphError(f"{path} is not a valid ONNX model: {type(exc).__name__}: {exc}") from None
    return model


def _dims(value_info: onnx.ValueInfoProto) -> list[str | int]:
    dims: list[str | int] = []
    for dim in value_info.type.tensor_type.shape.dim:
        dims.append(dim.dim_param if dim.dim_param else int(dim.dim_value))
    return dims


def graph_signature(model: onnx.ModelProto) -> dict[str, Any]:
    """The parts of a graph a consumer relies on, as plain JSON-able data.

    Dimensions are names (dynamic) or integers (fixed).
    """

    def entry(value_info: onnx.ValueInfoProto) -> dict[str, Any]:
        elem = value_info.type.tensor_type.elem_type
        return {
            "name": value_info.name,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(elem).name,
            "dims": _dims(value_info),
        }

    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "opset": opset,
        "inputs": [entry(v) for v in model.graph.input],
        "outputs": [entry(v) for v in model.graph.output],
    }


def signature_differences(actual: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Readable differences between two signatures (empty when they match)."""
    problems = []
    if actual["opset"] != expected["opset"]:
        problems.append(f"opset {actual['opset']} != expected {expected['opset']}")
    for side in ("inputs", "outputs"):
        got = {e["name"]: e for e in actual[side]}
        want = {e["name"]: e for e in expected[side]}
        if list(got) != list(want):
            problems.append(f"{side} {list(got)} != expected {list(want)}")
            continue
        for name, spec in want.items():
            for field in ("dtype", "dims"):
                if got[name][field] != spec[field]:
                    problems.append(
                        f"{side[:-1]} {name!r} {field} {got[name][field]} != {spec[field]}"
                    )
    return problems
