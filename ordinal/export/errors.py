"""Typed errors of the export, parity and quantisation steps."""

from __future__ import annotations

from pathlib import Path

from ordinal.exceptions import OrdinalError

__all__ = ["ExportError", "GraphError", "ParityError", "QuantizationError"]


class ExportError(OrdinalError):
    """The export itself failed (bad model directory, optimum-cli error, merge error)."""


class GraphError(OrdinalError, ValueError):
    """An ONNX file that is missing, corrupt, or whose inputs/outputs are not as expected."""


class ParityError(OrdinalError):
    """ONNX Runtime and PyTorch disagree beyond tolerance; the report says where."""

    def __init__(self, message: str, report: Path | None = None, failures: list[str] | None = None):
        self.report = report
        self.failures = failures or []
        detail = "; ".join(self.failures)
        where = f" (report: {report})" if report else ""
        super().__init__(f"{message}: {detail}{where}" if detail else f"{message}{where}")


class QuantizationError(OrdinalError):
    """Quantisation failed, or the INT8 model missed its accuracy gate."""
