"""ordinal: ordinal regression on fine-tuned transformers.

Heads with ordered cutpoints, their losses and metrics, head replacement for BERT-like and
ViT backbones, and an ``OrdinalRegressionTrainer``. Notebooks and pipelines import the
names listed in ``__all__`` only.

Names are imported on first use (PEP 562), so ``import ordinal.runs`` or
``import ordinal.data`` does not pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "BackboneFamily": "ordinal.models",
    "CheckpointError": "ordinal.exceptions",
    "CoralHead": "ordinal.heads",
    "CoralLoss": "ordinal.losses",
    "CornHead": "ordinal.heads",
    "CornLoss": "ordinal.losses",
    "CumulativeLinkHead": "ordinal.heads",
    "CumulativeLinkLoss": "ordinal.losses",
    "DegenerateLabelsWarning": "ordinal.training",
    "ImageOrdinalDataset": "ordinal.training",
    "LINKS": "ordinal.links",
    "LabelError": "ordinal.exceptions",
    "ModelNotFoundError": "ordinal.prediction",
    "NotAnOrdinalModelError": "ordinal.prediction",
    "OrdinalDecoder": "ordinal.heads",
    "OrdinalError": "ordinal.exceptions",
    "OrdinalHead": "ordinal.heads",
    "OrdinalOutput": "ordinal.heads",
    "OrdinalRegressionTrainer": "ordinal.training",
    "PredictionError": "ordinal.prediction",
    "PredictionInputError": "ordinal.prediction",
    "Predictions": "ordinal.prediction",
    "Predictor": "ordinal.prediction",
    "TextOrdinalDataset": "ordinal.training",
    "ThroughputCallback": "ordinal.training",
    "TrainResult": "ordinal.training",
    "TrainSpec": "ordinal.config",
    "UnsupportedArchitectureError": "ordinal.exceptions",
    "WallClockCheckpointCallback": "ordinal.training",
    "attach_ordinal_head": "ordinal.models",
    "available_heads": "ordinal.heads",
    "build_ordinal_model": "ordinal.models",
    "configure_mlflow": "ordinal.tracking",
    "coral_loss": "ordinal.losses",
    "corn_loss": "ordinal.losses",
    "cumulative_link_loss": "ordinal.losses",
    "cumulative_to_label": "ordinal.heads",
    "cumulative_to_proba": "ordinal.heads",
    "get_link": "ordinal.links",
    "get_ordinal_decoder": "ordinal.models",
    "label_to_levels": "ordinal.losses",
    "latest_checkpoint": "ordinal.training",
    "load_ordinal_model": "ordinal.models",
    "load_predictor": "ordinal.prediction",
    "ordinal_forward": "ordinal.models",
    "predict": "ordinal.prediction",
    "register_backbone": "ordinal.models",
    "register_head": "ordinal.heads",
    "resolve_model": "ordinal.presets",
    "save_ordinal_model": "ordinal.models",
    "supported_model_types": "ordinal.models",
    "train_ordinal_model": "ordinal.training",
}

__all__ = [
    "LINKS",
    "BackboneFamily",
    "CheckpointError",
    "CoralHead",
    "CoralLoss",
    "CornHead",
    "CornLoss",
    "CumulativeLinkHead",
    "CumulativeLinkLoss",
    "DegenerateLabelsWarning",
    "ImageOrdinalDataset",
    "LabelError",
    "ModelNotFoundError",
    "NotAnOrdinalModelError",
    "OrdinalDecoder",
    "OrdinalError",
    "OrdinalHead",
    "OrdinalOutput",
    "OrdinalRegressionTrainer",
    "PredictionError",
    "PredictionInputError",
    "Predictions",
    "Predictor",
    "TextOrdinalDataset",
    "ThroughputCallback",
    "TrainResult",
    "TrainSpec",
    "UnsupportedArchitectureError",
    "WallClockCheckpointCallback",
    "__version__",
    "attach_ordinal_head",
    "available_heads",
    "build_ordinal_model",
    "configure_mlflow",
    "coral_loss",
    "corn_loss",
    "cumulative_link_loss",
    "cumulative_to_label",
    "cumulative_to_proba",
    "get_link",
    "get_ordinal_decoder",
    "label_to_levels",
    "latest_checkpoint",
    "load_ordinal_model",
    "load_predictor",
    "metrics",
    "ordinal_forward",
    "predict",
    "register_backbone",
    "register_head",
    "resolve_model",
    "save_ordinal_model",
    "supported_model_types",
    "train_ordinal_model",
]


def __getattr__(name: str) -> Any:
    if name == "metrics":
        return importlib.import_module("ordinal.metrics")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ordinal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers see the eager imports
    from ordinal import metrics
    from ordinal.config import TrainSpec
    from ordinal.exceptions import (
        CheckpointError,
        LabelError,
        OrdinalError,
        UnsupportedArchitectureError,
    )
    from ordinal.heads import (
        CoralHead,
        CornHead,
        CumulativeLinkHead,
        OrdinalDecoder,
        OrdinalHead,
        OrdinalOutput,
        available_heads,
        cumulative_to_label,
        cumulative_to_proba,
        register_head,
    )
    from ordinal.links import LINKS, get_link
    from ordinal.losses import (
        CoralLoss,
        CornLoss,
        CumulativeLinkLoss,
        coral_loss,
        corn_loss,
        cumulative_link_loss,
        label_to_levels,
    )
    from ordinal.models import (
        BackboneFamily,
        attach_ordinal_head,
        build_ordinal_model,
        get_ordinal_decoder,
        load_ordinal_model,
        ordinal_forward,
        register_backbone,
        save_ordinal_model,
        supported_model_types,
    )
    from ordinal.prediction import (
        ModelNotFoundError,
        NotAnOrdinalModelError,
        PredictionError,
        PredictionInputError,
        Predictions,
        Predictor,
        load_predictor,
        predict,
    )
    from ordinal.presets import resolve_model
    from ordinal.tracking import configure_mlflow
    from ordinal.training import (
        DegenerateLabelsWarning,
        ImageOrdinalDataset,
        OrdinalRegressionTrainer,
        TextOrdinalDataset,
        ThroughputCallback,
        TrainResult,
        WallClockCheckpointCallback,
        latest_checkpoint,
        train_ordinal_model,
    )
