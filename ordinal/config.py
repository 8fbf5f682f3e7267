"""Pydantic specs shared by notebooks, the command line and the pipeline's flows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = ["HeadName", "TrainSpec", "known_head"]


def known_head(value: str) -> str:
    """``value`` if it names a registered head, else a ``ValueError`` listing the heads.

    >>> known_head("corn")
    'corn'
    """
    from ordinal.heads import available_heads  # torch: only when a head is checked

    if value not in available_heads():
        raise ValueError(f"unknown head {value!r}; choose one of {available_heads()}")
    return value


HeadName = Annotated[str, AfterValidator(known_head)]
"""A string field that must name a registered ordinal head."""


class TrainSpec(BaseModel):
    """Everything a training run needs besides its data.

    Invalid combinations fail at construction (e.g. a ``link`` for a head without one).
    ``TrainSpec.quick()`` is a preset small enough for tests and notebooks' defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        "minilm", description="Preset name (minilm, bert-tiny, vit-tiny) or a model directory"
    )
    head: HeadName = Field("cumulative_link", description="Registered ordinal head")
    link: Literal["logit", "probit", "cloglog"] | None = Field(
        None, description="Link of the cumulative-link head (default logit)"
    )
    num_classes: int = Field(5, ge=2)
    label_names: list[str] | None = None
    max_length: int = Field(64, ge=2, description="Token limit per text")
    epochs: float = Field(2.0, gt=0)
    max_steps: int = Field(-1, description="Overrides epochs when > 0")
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(5e-5, gt=0)
    head_learning_rate: float | None = Field(
        5e-3, gt=0, description="Learning rate of cutpoints/biases (they start far from the fit)"
    )
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    init_cutpoints_from_labels: bool = True
    seed: int = 0
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(100, ge=1)
    save_total_limit: int = Field(2, ge=1)
    checkpoint_interval_seconds: float | None = Field(300.0, gt=0)
    progress_interval_seconds: float | None = Field(
        30.0, gt=0, description="Progress line (step, loss, samples/s, ETA) at least this often"
    )
    eval_each_epoch: bool = True
    report_to: list[Literal["mlflow"]] = Field(default_factory=lambda: ["mlflow"])
    experiment: str = "ordinal"
    run_name: str | None = None
    output_dir: Path = Path("runs/train")
    resume: bool = Field(True, description="Resume from the latest complete checkpoint")

    @model_validator(mode="after")
    def _consistent(self) -> TrainSpec:
        if self.link is not None and self.head != "cumulative_link":
            raise ValueError(
                f"link={self.link!r} only applies to head='cumulative_link', not {self.head!r}"
            )
        if self.label_names is not None and len(self.label_names) != self.num_classes:
            raise ValueError(
                f"label_names has {len(self.label_names)} entries "
                f"for num_classes={self.num_classes}"
            )
        return self

    @property
    def head_options(self) -> dict[str, str]:
        """Keyword arguments for the head's decoder."""
        if self.head == "cumulative_link":
            return {"link": self.link or "logit"}
        return {}

    @classmethod
    def quick(cls, **overrides: object) -> TrainSpec:
        """A seconds-long run on a tiny random BERT: for tests and notebook defaults."""
        values: dict[str, object] = {
            "model": "bert-tiny",
            "epochs": 1.0,
            "batch_size": 16,
            "learning_rate": 1e-3,
            "report_to": [],
            "checkpoint_interval_seconds": None,
        }
        values.update(overrides)
        return cls(**values)
