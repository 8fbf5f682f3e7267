"""ordinal: ordinal regression on fine-tuned transformers.

Heads with ordered cutpoints, their losses and metrics, head replacement for BERT-like and
ViT backbones, and an ``OrdinalRegressionTrainer``. Notebooks and pipelines import the
names listed in ``__all__`` only.
"""

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

__version__ = "0.1.0"

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
    "OrdinalDecoder",
    "OrdinalError",
    "OrdinalHead",
    "OrdinalOutput",
    "OrdinalRegressionTrainer",
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
    "metrics",
    "ordinal_forward",
    "register_backbone",
    "register_head",
    "resolve_model",
    "save_ordinal_model",
    "supported_model_types",
    "train_ordinal_model",
]
