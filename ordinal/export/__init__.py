"""ONNX export, graph checks, the parity gate and INT8 quantisation.

Names are imported on first use (PEP 562), so ``import ordinal.export.cli`` (what the
``ordinal`` command's start-up imports) does not pay for transformers and onnx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "build_decoder_graph": "ordinal.export.decoder_graph",
    "decoder_output_names": "ordinal.export.decoder_graph",
    "ExportError": "ordinal.export.errors",
    "GraphError": "ordinal.export.errors",
    "ParityError": "ordinal.export.errors",
    "QuantizationError": "ordinal.export.errors",
    "graph_signature": "ordinal.export.graph",
    "load_onnx": "ordinal.export.graph",
    "signature_differences": "ordinal.export.graph",
    "ExportConfig": "ordinal.export.onnx_export",
    "ExportResult": "ordinal.export.onnx_export",
    "export_onnx": "ordinal.export.onnx_export",
    "merge_decoder": "ordinal.export.onnx_export",
}

__all__ = [
    "ExportConfig",
    "ExportError",
    "ExportResult",
    "GraphError",
    "ParityError",
    "QuantizationError",
    "build_decoder_graph",
    "decoder_output_names",
    "export_onnx",
    "graph_signature",
    "load_onnx",
    "merge_decoder",
    "signature_differences",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ordinal.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers see the eager imports
    from ordinal.export.decoder_graph import build_decoder_graph, decoder_output_names
    from ordinal.export.errors import ExportError, GraphError, ParityError, QuantizationError
    from ordinal.export.graph import graph_signature, load_onnx, signature_differences
    from ordinal.export.onnx_export import ExportConfig, ExportResult, export_onnx, merge_decoder
