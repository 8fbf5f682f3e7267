"""Batch prediction: PyTorch and ONNX Runtime agree; inputs, shapes and errors.

A tiny random BERT with a cumulative-link head is saved and exported with the real
``optimum-cli`` path (:func:`ordinal.export.export_onnx`); both backends then predict the same
demo reviews. The projection's weights are scaled up so the latent score spreads over the
classes and the label comparison is not trivially one class everywhere.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from PIL import Image
from transformers import BertConfig, ViTConfig, ViTImageProcessor

from ordinal import (
    ModelNotFoundError,
    NotAnOrdinalModelError,
    PredictionInputError,
    Predictions,
    build_ordinal_model,
    load_predictor,
    ordinal_forward,
    predict,
    save_ordinal_model,
)
from ordinal.artifacts import open_storage
from ordinal.data.demo_text import REVIEW_LABELS, make_review_records
from ordinal.export import export_onnx
from ordinal.heads.baselines import build_baseline_model
from ordinal.prediction import OnnxPredictor, TorchPredictor
from ordinal.presets import minilm_path

K = len(REVIEW_LABELS)
#: Agreement the backends must reach (the parity gate's production tolerance).
ATOL = 1e-5


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return make_review_records(n=45, seed=3)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory: pytest.TempPathFactory, tokenizer, records) -> tuple[Path, Path]:
    """``(model folder, fp32 export folder)`` of a tiny cumulative-link BERT."""
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    model = build_ordinal_model(config, K, "cumulative_link", list(REVIEW_LABELS), link="logit")
    model.eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 50.0)  # spread the latent over the classes
        encoded = tokenizer([r["text"] for r in records], padding=True, return_tensors="pt")
        latent = ordinal_forward(model, **encoded).latent.double()
    # Cutpoints at the latent's quintiles: every class gets some of the records.
    model.ordinal_decoder.thresholds.set(
        torch.quantile(latent, torch.tensor([0.2, 0.4, 0.6, 0.8], dtype=torch.float64)).float()
    )
    model_dir = save_ordinal_model(model, root / "model", tokenizer)
    result = export_onnx(model_dir, "predict-test", storage=open_storage(str(root / "store")))
    return model_dir, result.directory


def test_backends_agree_on_the_same_records(text_model, records):
    model_dir, onnx_dir = text_model
    by_torch = load_predictor(model_dir, batch_size=8, max_length=48).predict(records)
    by_onnx = load_predictor(onnx_dir, batch_size=8, max_length=48).predict(records)
    n = len(records)
    for result in (by_torch, by_onnx):
        assert result.labels.shape == (n,) and result.labels.dtype == np.int64
        assert result.probs.shape == (n, K) and result.probs.dtype == np.float32
        assert result.cum_probs.shape == (n, K - 1)
        assert result.latent is not None and result.latent.shape == (n,)
        np.testing.assert_allclose(result.probs.sum(axis=1), 1.0, atol=1e-5)
    assert len(set(by_torch.labels.tolist())) > 1, "labels must vary for the comparison to bite"
    np.testing.assert_array_equal(by_torch.labels, by_onnx.labels)
    np.testing.assert_allclose(by_onnx.probs, by_torch.probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(by_onnx.cum_probs, by_torch.cum_probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(by_onnx.latent, by_torch.latent, atol=ATOL, rtol=1e-5)
    assert by_torch.label_names.tolist() == [REVIEW_LABELS[k] for k in by_torch.labels]
    # The label is the median of the distribution: P(y > k) > 0.5 counted.
    np.testing.assert_array_equal(by_torch.labels, (by_torch.cum_probs > 0.5).sum(axis=1))


def test_batching_and_input_forms_do_not_change_predictions(text_model, records):
    model_dir, onnx_dir = text_model
    texts = [r["text"] for r in records]
    whole = TorchPredictor.from_folder(model_dir, batch_size=64, max_length=48).predict(texts)
    ones = TorchPredictor.from_folder(model_dir, batch_size=1, max_length=48).predict(records[:9])
    np.testing.assert_allclose(ones.probs, whole.probs[:9], atol=ATOL)
    via_file = predict(onnx_dir / "model.onnx", texts[:3], max_length=48)
    single = OnnxPredictor.from_folder(onnx_dir, max_length=48).predict(texts[0])
    assert len(single) == 1
    np.testing.assert_allclose(single.probs[0], via_file.probs[0], atol=ATOL)


def test_progress_reports_and_empty_input(text_model, records):
    model_dir, _ = text_model
    predictor = load_predictor(model_dir, backend="torch", batch_size=10, max_length=48)
    seen: list[tuple[int, int]] = []
    predictor.predict(records, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(10, 45), (20, 45), (30, 45), (40, 45), (45, 45)]
    assert len(predictor.predict(records[:12], progress=True)) == 12  # a tqdm bar
    empty = predictor.predict([])
    assert empty.labels.shape == (0,) and empty.probs.shape == (0, K)
    assert empty.cum_probs.shape == (0, K - 1) and empty.latent.shape == (0,)


def test_records_are_json_ready(text_model, records):
    model_dir, _ = text_model
    result = predict(model_dir, records[:2], max_length=48)
    rows = result.to_records()
    assert [r["label"] for r in rows] == result.labels.tolist()
    assert rows[0]["label_name"] == REVIEW_LABELS[rows[0]["label"]]
    assert json.loads(json.dumps(rows)) == rows
    assert isinstance(result, Predictions) and result.num_classes == K


def test_inputs_the_model_cannot_take_name_their_position(text_model, records):
    model_dir, onnx_dir = text_model
    predictor = load_predictor(onnx_dir, batch_size=4, max_length=48)
    image = Image.new("RGB", (8, 8))
    bad = [r["text"] for r in records[:5]] + [image]
    with pytest.raises(PredictionInputError, match="input 5 is an image") as caught:
        predictor.predict(bad)
    assert caught.value.index == 5
    with pytest.raises(PredictionInputError, match="input 1 is a record without a 'text'"):
        predictor.predict([{"text": "fine"}, {"image": image}])
    with pytest.raises(PredictionInputError, match="input 0 is int"):
        load_predictor(model_dir, max_length=48).predict([3])


def test_missing_and_non_ordinal_models(tmp_path, text_model, tokenizer):
    model_dir, _ = text_model
    with pytest.raises(ModelNotFoundError, match="no model folder or file"):
        load_predictor(tmp_path / "nowhere")
    assert issubclass(ModelNotFoundError, FileNotFoundError)
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        TorchPredictor.from_folder(tmp_path)
    with pytest.raises(ModelNotFoundError, match="no ONNX graph"):
        OnnxPredictor.from_folder(tmp_path)
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        TorchPredictor.from_folder(tmp_path / "nowhere")

    plain = tmp_path / "plain"
    plain.mkdir()
    config = json.loads((model_dir / "config.json").read_text())
    del config["ordinal"]
    (plain / "config.json").write_text(json.dumps(config))
    with pytest.raises(NotAnOrdinalModelError, match="no 'ordinal' section"):
        load_predictor(plain)

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(model_dir / "config.json", no_weights / "config.json")
    with pytest.raises(ModelNotFoundError, match="no model weights"):
        load_predictor(no_weights)

    baseline = build_baseline_model(
        BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                   num_attention_heads=2, intermediate_size=32), K, "nominal"
    )  # fmt: skip
    baseline.save_pretrained(tmp_path / "baseline")
    with pytest.raises(NotAnOrdinalModelError, match="'nominal', which is not a registered"):
        load_predictor(tmp_path / "baseline")

    with pytest.raises(ValueError, match="max_position_embeddings=64"):
        load_predictor(model_dir, max_length=512)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        load_predictor(model_dir, batch_size=0)
    with pytest.raises(ValueError, match="backend must be"):
        load_predictor(model_dir, backend="tensorflow")


def _graph_folder(onnx_dir: Path, target: Path, graph: onnx.ModelProto) -> Path:
    """A copy of the export folder (metadata, tokenizer) with ``graph`` as its model.onnx."""
    shutil.copytree(onnx_dir, target)
    onnx.save(graph, str(target / "model.onnx"))
    return target


def _identity_graph(input_name: str, input_type: int, outputs: list[str]) -> onnx.ModelProto:
    nodes = [helper.make_node("Identity", [input_name], [name]) for name in outputs]
    graph = helper.make_graph(
        nodes,
        "stand-in",
        [helper.make_tensor_value_info(input_name, input_type, ["b", "s"])],
        [helper.make_tensor_value_info(name, input_type, ["b", "s"]) for name in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


def test_graphs_that_are_not_ordinal_or_cannot_take_the_inputs(tmp_path, text_model):
    _, onnx_dir = text_model
    plain = _identity_graph("input_ids", TensorProto.INT64, ["logits"])
    with pytest.raises(NotAnOrdinalModelError, match=r"lack \['cum_probs', 'probs', 'label'\]"):
        load_predictor(_graph_folder(onnx_dir, tmp_path / "plain", plain))

    corrupt = tmp_path / "corrupt"
    shutil.copytree(onnx_dir, corrupt)
    (corrupt / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(NotAnOrdinalModelError, match="not a valid ONNX model"):
        load_predictor(corrupt)

    outputs = ["cum_probs", "probs", "label"]
    image_graph = _identity_graph("pixel_values", TensorProto.FLOAT, outputs)
    predictor = load_predictor(_graph_folder(onnx_dir, tmp_path / "image", image_graph))
    with pytest.raises(PredictionInputError, match=r"needs inputs \['pixel_values'\]"):
        predictor.predict(["a text"])

    float_ids = _identity_graph("input_ids", TensorProto.FLOAT, outputs)
    predictor = load_predictor(_graph_folder(onnx_dir, tmp_path / "float", float_ids))
    with pytest.raises(PredictionInputError, match="cannot take inputs of shapes"):
        predictor.predict(["a text"])

    no_metadata = tmp_path / "bare"
    no_metadata.mkdir()
    shutil.copy(onnx_dir / "model.onnx", no_metadata / "model.onnx")
    with pytest.raises(ModelNotFoundError, match="neither ordinal.json nor config.json"):
        load_predictor(no_metadata / "model.onnx")


def test_image_model_takes_images_paths_and_records(tmp_path):
    """A ViT (tiny, random, CORN head) predicts PIL images, image files and records alike,
    and its exported graph agrees with PyTorch on them."""
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32,
    )  # fmt: skip
    processor = ViTImageProcessor(size={"height": 32, "width": 32})
    model = build_ordinal_model(config, 4, "corn", ["a", "b", "c", "d"])
    model_dir = save_ordinal_model(model, tmp_path / "vit", processor)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)) for _ in range(5)]
    images[1].save(tmp_path / "one.png")
    predictor = load_predictor(model_dir, batch_size=2)
    by_image = predictor.predict(images)
    assert by_image.probs.shape == (5, 4) and by_image.cum_probs.shape == (5, 3)
    assert by_image.latent is None  # CORN has no latent score
    mixed = predictor.predict([{"image": images[0]}, tmp_path / "one.png"])
    np.testing.assert_allclose(mixed.probs, by_image.probs[:2], atol=1e-5)
    exported = export_onnx(model_dir, "predict-vit", storage=open_storage(str(tmp_path / "s")))
    by_onnx = load_predictor(exported.directory, batch_size=3).predict(images)
    assert by_onnx.latent is None
    np.testing.assert_array_equal(by_onnx.labels, by_image.labels)
    np.testing.assert_allclose(by_onnx.probs, by_image.probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(by_onnx.cum_probs, by_image.cum_probs, atol=ATOL, rtol=0)
    with pytest.raises(PredictionInputError, match="input 0 is str, not a PIL image"):
        predictor.predict(["a text"])
    with pytest.raises(PredictionInputError, match="no image file"):
        predictor.predict([tmp_path / "missing.png"])
    (tmp_path / "broken.png").write_bytes(b"nope")
    with pytest.raises(PredictionInputError, match="not a readable image"):
        predictor.predict([tmp_path / "broken.png"])
    with pytest.raises(PredictionInputError, match="without an 'image' field"):
        predictor.predict([{"text": "x"}])
