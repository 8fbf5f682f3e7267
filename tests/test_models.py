"""Head replacement on BERT-like and ViT backbones: registry, export-ready layout, round trip."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    DistilBertConfig,
    GPT2Config,
    RobertaConfig,
    ViTConfig,
)

from ordinal import (
    UnsupportedArchitectureError,
    attach_ordinal_head,
    build_ordinal_model,
    get_ordinal_decoder,
    load_ordinal_model,
    ordinal_forward,
    save_ordinal_model,
    supported_model_types,
)
from ordinal.heads import get_head_class
from ordinal.models import BACKBONES, BackboneFamily, register_backbone, sync_ordinal_config
from ordinal.presets import minilm_path, resolve_model

_TEXT = {"num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
# Every registered family must have a tiny config here: the contract test enforces it.
FAMILY_CONFIGS = {
    "bert": lambda: BertConfig(vocab_size=64, hidden_size=16, **_TEXT),
    "distilbert": lambda: DistilBertConfig(
        vocab_size=64, dim=16, n_layers=1, n_heads=2, hidden_dim=32
    ),
    "roberta": lambda: RobertaConfig(vocab_size=64, hidden_size=16, **_TEXT),
    "vit": lambda: ViTConfig(image_size=16, patch_size=8, hidden_size=16, **_TEXT),
}
HEADS = ["cumulative_link", "coral", "corn"]


def _inputs(family: str) -> dict[str, torch.Tensor]:
    if family == "vit":
        return {"pixel_values": torch.randn(3, 3, 16, 16)}
    return {
        "input_ids": torch.randint(4, 60, (3, 7)),
        "attention_mask": torch.ones(3, 7, dtype=torch.long),
    }


def test_every_registered_family_is_tested():
    assert set(BACKBONES) == set(FAMILY_CONFIGS)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_tiny_backbones_get_an_export_ready_ordinal_head(family, head, tmp_path):
    torch.manual_seed(0)
    model = build_ordinal_model(FAMILY_CONFIGS[family](), num_classes=4, head=head).eval()
    decoder = get_ordinal_decoder(model)
    projection = model.get_submodule(BACKBONES[family].projection)
    # A standard classification model with num_labels = num_outputs: optimum exports it as is.
    assert model.config.num_labels == decoder.num_outputs == (3 if head == "corn" else 1)
    assert projection.out_features == decoder.num_outputs
    # eta = w . h: the bias is zero and frozen (CORN's intercepts live in its decoder)
    assert not projection.bias.requires_grad
    assert torch.count_nonzero(projection.bias) == 0
    section = model.config.ordinal
    assert section["head"] == head and section["num_classes"] == 4
    assert section["task"] == BACKBONES[family].task

    inputs = _inputs(family)
    labels = torch.tensor([0, 3, 1])
    out = ordinal_forward(model, **inputs, labels=labels)
    assert out.probs.shape == (3, 4) and torch.isfinite(out.loss)

    save_ordinal_model(model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["ordinal"]["head"] == head
    reloaded = load_ordinal_model(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            ordinal_forward(reloaded, **inputs).probs,
            ordinal_forward(model, **inputs).probs,
            rtol=0,
            atol=0,
        )


def test_config_mirrors_trained_cutpoints_on_save(tmp_path):
    model = build_ordinal_model(FAMILY_CONFIGS["bert"](), 3, head="cumulative_link", link="cloglog")
    get_ordinal_decoder(model).thresholds.set([-0.5, 2.0])
    save_ordinal_model(model, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["ordinal"]
    assert saved["cutpoints"] == pytest.approx([-0.5, 2.0], abs=1e-6)
    assert saved["link"] == "cloglog"
    assert saved["options"] == {"link": "cloglog"}
    # The export step rebuilds the decoder from the config section alone.
    decoder = get_head_class(saved["head"]).decoder_cls(saved["num_classes"], **saved["options"])
    decoder.load_config_state(saved)
    torch.testing.assert_close(decoder.cutpoints, torch.tensor([-0.5, 2.0]), atol=1e-5, rtol=0)


def test_real_minilm_gets_an_ordinal_head(tmp_path):
    resolved = resolve_model("minilm")
    model = build_ordinal_model(resolved.source, 5, head="coral", label_names=list("abcde")).eval()
    assert model.config.model_type == "bert" and model.config.hidden_size == 384
    batch = resolved.processor(
        ["great value", "broke after a day"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        out = ordinal_forward(model, **batch)
    assert out.probs.shape == (2, 5)
    save_ordinal_model(model, tmp_path, resolved.processor)
    assert (tmp_path / "tokenizer.json").is_file()
    reloaded = load_ordinal_model(tmp_path).eval()
    assert reloaded.config.ordinal["label_names"] == list("abcde")
    with torch.no_grad():
        torch.testing.assert_close(
            ordinal_forward(reloaded, **batch).probs, out.probs, rtol=0, atol=0
        )


def test_attach_replaces_a_mismatched_classifier():
    model = AutoModelForSequenceClassification.from_config(
        BertConfig(vocab_size=64, hidden_size=16, num_labels=7, **_TEXT)
    )
    attach_ordinal_head(model, 5, head="corn")
    assert model.classifier.out_features == 4
    assert model.config.num_labels == 4


def test_unsupported_architecture_lists_supported_ones():
    with pytest.raises(
        UnsupportedArchitectureError, match=r"'gpt2'.*bert.*distilbert.*vit"
    ) as info:
        build_ordinal_model(GPT2Config(n_layer=1, n_embd=16, n_head=2), 3)
    assert info.value.supported == supported_model_types()


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="label_names has 2 entries for num_classes=3"):
        build_ordinal_model(FAMILY_CONFIGS["bert"](), 3, label_names=["a", "b"])
    with pytest.raises(FileNotFoundError, match="config.json"):
        build_ordinal_model(tmp_path / "missing", 3)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_ordinal_model(tmp_path)
    plain = AutoModelForSequenceClassification.from_config(FAMILY_CONFIGS["bert"]())
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="no 'ordinal' section"):
        load_ordinal_model(tmp_path / "plain")
    with pytest.raises(ValueError, match="has no ordinal decoder"):
        sync_ordinal_config(plain)
    with pytest.raises(ValueError, match="already belong to 'bert'"):
        register_backbone(
            BackboneFamily("other", ("bert",), "text-classification", "text", object, "x")
        )
    with pytest.raises(FileNotFoundError, match="neither a preset"):
        resolve_model(tmp_path / "nowhere")


def test_presets_resolve_offline():
    assert (minilm_path() / "config.json").is_file()
    assert resolve_model("vit-tiny").source.model_type == "vit"
    assert resolve_model("bert-tiny").processor is not None
    assert resolve_model(minilm_path()).source == minilm_path()


def test_a_gap_collapsed_to_its_floor_saves_and_loads(tmp_path):
    """A class absent from training drives its gap to the floor; the model must still load."""
    model = build_ordinal_model(FAMILY_CONFIGS["bert"](), 4, head="cumulative_link").eval()
    thresholds = get_ordinal_decoder(model).thresholds
    with torch.no_grad():
        thresholds.first.fill_(30.0)
        thresholds.raw_gaps.copy_(torch.tensor([-16.0, -14.0]))
    save_ordinal_model(model, tmp_path)
    reloaded = load_ordinal_model(tmp_path).eval()
    torch.testing.assert_close(
        get_ordinal_decoder(reloaded).cutpoints, thresholds(), rtol=0, atol=0
    )
    # and the JSON cutpoints alone (what the export reads) rebuild a valid decoder
    decoder = get_head_class("cumulative_link").decoder_cls(4)
    decoder.load_config_state(reloaded.config.ordinal)
    assert (decoder.cutpoints[1:] > decoder.cutpoints[:-1]).all()


def test_a_corn_model_saved_with_projection_biases_loads_with_the_same_outputs(tmp_path):
    """Before the intercepts moved into the decoder, CORN kept them as the projection's bias."""
    torch.manual_seed(0)
    model = build_ordinal_model(FAMILY_CONFIGS["bert"](), num_classes=4, head="corn").eval()
    projection = model.get_submodule(BACKBONES["bert"].projection)
    with torch.no_grad():  # what an old save held: biases on the projection, none in the decoder
        projection.bias.copy_(torch.tensor([1.5, 0.2, -0.8]))
    inputs = _inputs("bert")
    want = ordinal_forward(model, **inputs).probs
    section = dict(model.config.ordinal)
    section.pop("intercepts")
    model.config.ordinal = section
    model.save_pretrained(tmp_path)  # not save_ordinal_model: that would write the intercepts
    loaded = load_ordinal_model(tmp_path).eval()
    torch.testing.assert_close(ordinal_forward(loaded, **inputs).probs, want)
    assert loaded.get_submodule(BACKBONES["bert"].projection).bias.abs().sum() == 0
