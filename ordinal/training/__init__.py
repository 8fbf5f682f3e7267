"""Training: ``OrdinalRegressionTrainer``, its callbacks, datasets and a one-call fit."""

from ordinal.training._trainer import (
    DegenerateLabelsWarning,
    OrdinalRegressionTrainer,
    ordinal_metrics,
)
from ordinal.training.callbacks import (
    ProgressCallback,
    ThroughputCallback,
    WallClockCheckpointCallback,
)
from ordinal.training.checkpoint_store import (
    CHECKPOINT_UPLOAD_ENV,
    restore_latest_checkpoint,
    upload_checkpoint,
)
from ordinal.training.checkpoints import is_complete_checkpoint, latest_checkpoint
from ordinal.training.datasets import ImageOrdinalDataset, TextOrdinalDataset
from ordinal.training.fit import (
    TRAIN_SPEC_FILE,
    TrainResult,
    train_ordinal_model,
    training_arguments,
)
from ordinal.training.spot import SpotInterruptionCallback, SpotSpec, read_interruptions

__all__ = [
    "CHECKPOINT_UPLOAD_ENV",
    "TRAIN_SPEC_FILE",
    "DegenerateLabelsWarning",
    "ImageOrdinalDataset",
    "OrdinalRegressionTrainer",
    "ProgressCallback",
    "SpotInterruptionCallback",
    "SpotSpec",
    "TextOrdinalDataset",
    "ThroughputCallback",
    "TrainResult",
    "WallClockCheckpointCallback",
    "is_complete_checkpoint",
    "latest_checkpoint",
    "ordinal_metrics",
    "read_interruptions",
    "restore_latest_checkpoint",
    "train_ordinal_model",
    "training_arguments",
    "upload_checkpoint",
]
