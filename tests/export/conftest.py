"""Exported tiny models shared by the export tests (optimum-cli runs once per family)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import (
    AutoTokenizer,
    BertConfig,
    DistilBertConfig,
    RobertaConfig,
    ViTConfig,
    ViTImageProcessor,
)

from ordinal import build_ordinal_model, save_ordinal_model
from ordinal.artifacts import open_storage
from ordinal.export import export_onnx
from ordinal.presets import minilm_path

_SMALL = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
# One export per backbone family, each with a different head/link so all decoders are covered.
TARGETS = {
    "bert-cumulative_link-probit": ("bert", "cumulative_link", {"link": "probit"}),
    "distilbert-coral": ("distilbert", "coral", {}),
    "roberta-corn": ("roberta", "corn", {}),
    "vit-cumulative_link-cloglog": ("vit", "cumulative_link", {"link": "cloglog"}),
}


def _config(family: str, vocab: int):
    if family == "bert":
        return BertConfig(vocab_size=vocab, hidden_size=16, max_position_embeddings=160, **_SMALL)
    if family == "distilbert":
        return DistilBertConfig(vocab_size=vocab, dim=16, n_layers=1, n_heads=2, hidden_dim=32)
    if family == "roberta":
        return RobertaConfig(
            vocab_size=vocab, hidden_size=16, max_position_embeddings=160, **_SMALL
        )
    return ViTConfig(image_size=32, patch_size=8, hidden_size=16, **_SMALL)


def build_tiny(family: str, head: str, options: dict, directory: Path) -> Path:
    """Save a tiny random ordinal model of ``family`` with its tokenizer/processor."""
    if family == "vit":
        processor = ViTImageProcessor(size={"height": 32, "width": 32})
    else:
        processor = AutoTokenizer.from_pretrained(minilm_path())
    model = build_ordinal_model(
        _config(family, processor.vocab_size if family != "vit" else 0), 5, head, **options
    )
    return save_ordinal_model(model, directory, processor)


@pytest.fixture(scope="session")
def export_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-home")


@pytest.fixture(scope="session")
def exported(export_home: Path) -> dict[str, tuple[Path, object]]:
    """``{target: (model_dir, ExportResult)}`` for every target in :data:`TARGETS`."""
    storage = open_storage(str(export_home / "store"))
    results = {}
    for name, (family, head, options) in TARGETS.items():
        model_dir = build_tiny(family, head, options, export_home / "models" / name)
        results[name] = (model_dir, export_onnx(model_dir, name, storage=storage))
    return results
