"""The pipeline's steps: each a notebook, a pydantic parameter model and its declared outputs.

One :class:`Step` per arrow of the data flow (``docs/pipeline.md``). The parameter model's
fields are exactly the notebook's ``parameters`` cell (a test checks it against
``papermill.inspect_notebook``); its defaults are the notebook's defaults, small enough to
run in seconds. ``run_notebook`` validates parameters against the model before a kernel
starts and checks the declared outputs once the notebook has run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ordinal.config import HeadName
from ordinal.paths import project_file
from ordinal.runs import OUTPUTS_FILE

__all__ = [
    "NOTEBOOK_DIR",
    "NOTEBOOK_DIR_ENV",
    "STEPS",
    "CalibrateParams",
    "ExportParams",
    "IngestParams",
    "ParityParams",
    "PreprocessParams",
    "QuantizeParams",
    "Step",
    "StepParams",
    "TrainParams",
    "get_step",
]

NOTEBOOK_DIR = project_file("notebooks")
# Another folder of step notebooks (same file names), e.g. a team's fork of the notebooks.
NOTEBOOK_DIR_ENV = "ORDINAL_NOTEBOOK_DIR"


class StepParams(BaseModel):
    """Parameters every step takes: the run folder and the storage root."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_dir: str = Field("", description="Run folder; '' is the notebooks' scratch run")
    storage: str = Field("", description="Storage root URL; '' is the local store")


class _DatasetParams(StepParams):
    dataset: str = Field("reviews", min_length=1, description="Processed dataset name")
    version: str = Field("v1", min_length=1, description="Dataset version")


class IngestParams(StepParams):
    """Fetch an approved source into ``datasets/raw/`` (checksummed, write-once)."""

    source: str = Field("demo-reviews", min_length=1, description="Approved source name")
    registry: str = Field(
        "",
        description="Approved-source registry; '' is $ORDINAL_SOURCES, ./sources/approved.yaml "
        "or the packaged one",
    )


class PreprocessParams(_DatasetParams):
    """Validate, quarantine rejects, de-duplicate and split a raw dataset version."""

    max_rejected_fraction: float = Field(0.05, ge=0, le=1)
    max_duplicate_fraction: float = Field(0.5, ge=0, le=1)
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="More preprocessing options (PreprocessSpec.from_options); they win",
    )


class CalibrateParams(_DatasetParams):
    """Draw the stratified calibration set (100-500 samples) from the training split."""

    size: int = Field(200, ge=100, le=500)
    seed: int = 0
    selection_dir: str = Field(
        "", description="Committed selections; '' is $ORDINAL_CALIBRATION_DIR or the project's"
    )
    propose_selection: bool = Field(
        False, description="Write the drawn selection for review instead of requiring it"
    )


class TrainParams(_DatasetParams):
    """Fine-tune an ordinal model on the processed training split, evaluate on validation."""

    model: str = Field("bert-tiny", description="minilm, bert-tiny, vit-tiny or a model folder")
    head: HeadName = "cumulative_link"
    link: Literal["", "logit", "probit", "cloglog"] = ""
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(20, description="Stop after this many steps; -1 runs all epochs")
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    max_length: int = Field(64, ge=2)
    seed: int = 0
    checkpoint_interval_seconds: float = Field(300.0, gt=0)
    save_steps: int = Field(100, ge=1)


class ExportParams(StepParams):
    """Export the trained model to FP32 ONNX with the ordinal decoder appended."""

    model_dir: str = Field("", description="Saved model; '' is this run's train/model")
    experiment: str = Field("notebooks", min_length=1, description="models/onnx/{experiment}/")


class ParityParams(_DatasetParams):
    """ONNX Runtime vs PyTorch on held-out samples; fails the run beyond tolerance."""

    model_dir: str = Field("", description="Saved model; '' is this run's train/model")
    onnx_path: str = Field("", description="FP32 model.onnx; '' is this run's export")
    num_samples: int = Field(500, ge=1, description="Held-out samples (validation + test)")
    non_production: bool = Field(False, description="Allow < 500 samples (labelled report)")


class QuantizeParams(_DatasetParams):
    """Static INT8 on the stored calibration set, then the INT8 accuracy gate."""

    experiment: str = Field("notebooks", min_length=1)
    preset: Literal["auto", "fused", "static", "dynamic"] = Field(
        "auto", description="INT8 preset; auto is the model family's (fused BERT, static ViT)"
    )
    num_samples: int = Field(500, ge=1, description="Held-out samples for the accuracy gate")
    selection_dir: str = Field(
        "", description="Committed selections; '' is $ORDINAL_CALIBRATION_DIR or the project's"
    )
    propose_selection: bool = Field(
        False, description="Check against this run's proposed selection (calibrate/proposed/)"
    )
    prob_atol: float = Field(
        0.01, ge=0, description="Max |p_int8 - p_fp32| gated; 0 reports it without gating"
    )
    non_production: bool = Field(False, description="Allow < 500 gate samples (labelled report)")


@dataclass(frozen=True)
class Step:
    """One pipeline step: its notebook, parameter model and the outputs it must leave.

    ``outputs`` are paths relative to the run folder; ``compute`` steps run on the
    provisioned machine, the others on the control side. A ``stream_output`` step's printed
    lines (training progress) are relayed as they come to the console and Prefect's logs.
    """

    name: str
    notebook: str
    params: type[StepParams]
    outputs: tuple[str, ...]
    compute: bool = False
    stream_output: bool = False

    @property
    def path(self) -> Path:
        """The step's notebook file (``$ORDINAL_NOTEBOOK_DIR`` overrides the folder)."""
        return Path(os.environ.get(NOTEBOOK_DIR_ENV) or NOTEBOOK_DIR) / self.notebook

    def declared_outputs(self, run_dir: str | Path) -> list[Path]:
        """The files this step must have written in ``run_dir``."""
        return [Path(run_dir) / rel for rel in (f"{self.name}/{OUTPUTS_FILE}", *self.outputs)]


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("ingest", "01_ingest.ipynb", IngestParams, ()),
        Step("preprocess", "02_preprocess.ipynb", PreprocessParams, ()),
        Step("calibrate", "03_calibrate.ipynb", CalibrateParams, ()),
        Step(
            "train",
            "04_train.ipynb",
            TrainParams,
            ("train/model/config.json", "train/history.json"),
            compute=True,
            stream_output=True,
        ),
        Step("export", "05_export.ipynb", ExportParams, (), compute=True),
        Step("parity", "06_parity.ipynb", ParityParams, (), compute=True),
        Step("quantize", "07_quantize.ipynb", QuantizeParams, (), compute=True),
    )
}


def get_step(name: str) -> Step:
    """The step called ``name``; a clear error lists the known ones."""
    try:
        return STEPS[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; known steps: {list(STEPS)}") from None
