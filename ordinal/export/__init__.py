"""ONNX export, graph checks, the parity gate and INT8 quantisation."""

from ordinal.export.decoder_graph import build_decoder_graph, decoder_output_names
from ordinal.export.errors import ExportError, GraphError, ParityError, QuantizationError
from ordinal.export.graph import graph_signature, load_onnx, signature_differences
from ordinal.export.onnx_export import ExportConfig, ExportResult, export_onnx, merge_decoder

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
