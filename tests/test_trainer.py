"""OrdinalRegressionTrainer: loss, metrics, logged cutpoints and throughput, MLflow, guards."""

from __future__ import annotations

import warnings

import mlflow
import numpy as np
import pytest
import torch
from transformers import DataCollatorWithPadding, TrainingArguments

from ordinal import (
    CheckpointError,
    DegenerateLabelsWarning,
    OrdinalRegressionTrainer,
    TextOrdinalDataset,
    TrainSpec,
    build_ordinal_model,
    get_ordinal_decoder,
    load_ordinal_model,
    resolve_model,
    train_ordinal_model,
)
from ordinal.data.demo_images import make_shape_records
from ordinal.tracking import local_tracking_uri
from ordinal.training import ImageOrdinalDataset
from tests.helpers.keyword_data import keyword_records

METRIC_KEYS = {
    "eval_mae",
    "eval_rmse",
    "eval_accuracy",
    "eval_off_by_one_accuracy",
    "eval_qwk",
    "eval_spearman",
    "eval_rps",
    "eval_macro_mae",
    "eval_loss",
}


@pytest.fixture(scope="module")
def tiny():
    return resolve_model("bert-tiny")


def _trainer(tiny, tmp_path, records, head="cumulative_link", **kwargs):
    model = build_ordinal_model(tiny.source, 5, head=head)
    dataset = TextOrdinalDataset(
        [r["text"] for r in records], [r["label"] for r in records], tiny.processor, 16
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=kwargs.pop("max_steps", 4),
        per_device_train_batch_size=8,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        seed=0,
        learning_rate=kwargs.pop("learning_rate", 5e-3),
        gradient_accumulation_steps=kwargs.pop("gradient_accumulation_steps", 1),
    )
    return OrdinalRegressionTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=DataCollatorWithPadding(tiny.processor),
        **kwargs,
    )


@pytest.mark.parametrize("head", ["cumulative_link", "coral", "corn"])
def test_training_learns_and_logs_cutpoints_throughput_metrics(head, tmp_path):
    records = keyword_records(480, seed=0)
    spec = TrainSpec.quick(
        output_dir=tmp_path,
        head=head,
        max_steps=150,
        logging_steps=25,
        learning_rate=5e-3,
        eval_each_epoch=False,
    )
    result = train_ordinal_model(spec, records[:400], records[400:])
    train_logs = [entry for entry in result.log_history if "loss" in entry]
    assert len(train_logs) == 6
    assert train_logs[-1]["loss"] < 0.7 * train_logs[0]["loss"], train_logs
    for entry in train_logs:
        assert entry["throughput_samples_per_second"] > 0
        if head != "corn":
            cuts = [entry[f"cutpoint_{k}"] for k in range(4)]
            assert cuts == sorted(cuts) and len(set(cuts)) == 4
    assert METRIC_KEYS <= set(result.metrics)
    assert result.metrics["eval_mae"] < 1.0  # always predicting the middle class scores 1.2
    assert result.global_step == 150
    saved = load_ordinal_model(result.model_dir)
    if head != "corn":
        assert saved.config.ordinal["cutpoints"] == pytest.approx(result.cutpoints, abs=1e-6)


def test_mlflow_local_store_gets_params_metrics_and_cutpoints(tmp_path):
    records = keyword_records(96, seed=3)
    spec = TrainSpec.quick(
        output_dir=tmp_path,
        max_steps=6,
        logging_steps=2,
        report_to=["mlflow"],
        experiment="trainer-test",
        run_name="tiny",
    )
    result = train_ordinal_model(spec, records[:80], records[80:])
    client = mlflow.MlflowClient(local_tracking_uri())
    run = client.get_run(result.mlflow_run_id)
    assert run.data.params["ordinal.head"] == "cumulative_link"
    assert "eval_mae" in run.data.metrics and "eval_qwk" in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "cutpoint_0")
    assert len(history) == 3  # steps 2, 4 and 6
    assert "throughput_samples_per_second" in run.data.metrics
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1  # no stray second run


def test_identical_labels_warn_and_train_without_nan(tiny, tmp_path):
    records = [{"text": r["text"], "label": 2} for r in keyword_records(32)]
    with pytest.warns(DegenerateLabelsWarning, match="all 32 training labels are class 2"):
        trainer = _trainer(tiny, tmp_path, records, max_steps=8)
    trainer.train()
    cuts = get_ordinal_decoder(trainer.model).cutpoints
    assert torch.isfinite(cuts).all() and (cuts[1:] > cuts[:-1]).all()
    assert all(np.isfinite(e["loss"]) for e in trainer.state.log_history if "loss" in e)


def test_missing_classes_warn(tiny, tmp_path):
    records = [r for r in keyword_records(64) if r["label"] in (0, 4)]
    with pytest.warns(DegenerateLabelsWarning, match=r"classes \[1, 2, 3\] never occur"):
        _trainer(tiny, tmp_path, records)


def test_labels_outside_range_fail_before_training(tiny, tmp_path):
    records = [*keyword_records(16), {"text": "x", "label": 7}]
    with pytest.raises(ValueError, match=r"training labels must lie in \[0, 5\); found \[7\]"):
        _trainer(tiny, tmp_path, records)


def test_class_weights_shape_is_checked(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"class_weights must have shape \(5,\)"):
        _trainer(tiny, tmp_path, keyword_records(16), class_weights=torch.ones(3))


def test_head_learning_rate_gets_its_own_group_and_class_weights_apply(tiny, tmp_path):
    trainer = _trainer(
        tiny,
        tmp_path,
        keyword_records(32),
        head_learning_rate=0.05,
        class_weights=torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0]),
        gradient_accumulation_steps=2,
    )
    optimizer = trainer.create_optimizer()
    decoder_ids = {id(p) for p in trainer.decoder.parameters()}
    groups = [g for g in optimizer.param_groups if {id(p) for p in g["params"]} & decoder_ids]
    assert len(groups) == 1 and groups[0]["lr"] == 0.05 and groups[0]["weight_decay"] == 0.0
    trainer.train()
    assert trainer.state.global_step == 4


def test_predict_returns_class_probabilities(tiny, tmp_path):
    trainer = _trainer(tiny, tmp_path, keyword_records(24))
    output = trainer.predict(trainer.eval_dataset)
    assert output.predictions.shape == (24, 5)
    np.testing.assert_allclose(output.predictions.sum(1), 1.0, atol=1e-5)
    assert {"test_mae", "test_qwk"} <= set(output.metrics)


def test_vit_trains_on_the_shape_images(tmp_path):
    records = make_shape_records(48, seed=0, image_size=32)
    spec = TrainSpec.quick(
        model="vit-tiny", head="coral", output_dir=tmp_path, max_steps=3, batch_size=8
    )
    result = train_ordinal_model(spec, records[:40], records[40:])
    assert METRIC_KEYS <= set(result.metrics)
    assert (result.model_dir / "preprocessor_config.json").is_file()
    assert load_ordinal_model(result.model_dir).config.ordinal["task"] == "image-classification"


def test_dataset_and_spec_errors(tiny):
    with pytest.raises(ValueError, match="label at index 1 is not an integer: 1.5"):
        TextOrdinalDataset(["a", "b"], [0, 1.5], tiny.processor)
    with pytest.raises(ValueError, match="2 labels for 3 inputs"):
        ImageOrdinalDataset([None, None, None], [0, 1], None)
    with pytest.raises(ValueError, match="max_length must be >= 2"):
        TextOrdinalDataset(["a"], [0], tiny.processor, max_length=1)
    with pytest.raises(ValueError, match="train_records is empty"):
        train_ordinal_model(TrainSpec.quick(), [])
    with pytest.raises(ValueError, match="link='probit' only applies"):
        TrainSpec(head="corn", link="probit")
    with pytest.raises(ValueError, match="unknown head 'ordinal'"):
        TrainSpec(head="ordinal")
    with pytest.raises(ValueError, match="label_names has 2 entries"):
        TrainSpec(label_names=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert TrainSpec(head="coral").head_options == {}


def test_predict_without_labels_still_returns_probabilities(tiny, tmp_path):
    trainer = _trainer(tiny, tmp_path, keyword_records(24))
    encodings = trainer.eval_dataset.encodings

    class Unlabelled(torch.utils.data.Dataset):
        def __len__(self):
            return 24

        def __getitem__(self, index):
            return {key: values[index] for key, values in encodings.items()}

    output = trainer.predict(Unlabelled())
    assert output.predictions.shape == (24, 5)
    np.testing.assert_allclose(output.predictions.sum(1), 1.0, atol=1e-5)


def test_resuming_with_another_head_or_link_is_refused(tmp_path):
    records = keyword_records(48, seed=5)
    spec = TrainSpec.quick(output_dir=tmp_path, max_steps=2, save_steps=2, eval_each_epoch=False)
    train_ordinal_model(spec, records)
    changed = spec.model_copy(update={"link": "probit"})
    with pytest.raises(
        CheckpointError, match=r"trained with link='logit', this run asks for 'probit'"
    ):
        train_ordinal_model(changed, records)


def test_rerunning_a_finished_run_takes_no_extra_step(tmp_path):
    records = keyword_records(48, seed=5)
    spec = TrainSpec.quick(output_dir=tmp_path, max_steps=4, save_steps=2, eval_each_epoch=False)
    first = train_ordinal_model(spec, records, records[:16])
    again = train_ordinal_model(spec, records, records[:16])
    assert first.global_step == again.global_step == 4
    assert again.resumed_from is not None and again.resumed_from.name == "checkpoint-4"
    assert again.cutpoints == pytest.approx(first.cutpoints, abs=1e-6)
    assert again.metrics["eval_mae"] == pytest.approx(first.metrics["eval_mae"], abs=1e-6)
    # A longer run from the same folder resumes and trains the remaining steps.
    longer = train_ordinal_model(spec.model_copy(update={"max_steps": 6}), records)
    assert longer.global_step == 6


def test_resuming_with_other_hyperparameters_is_refused(tmp_path):
    records = keyword_records(48, seed=5)
    spec = TrainSpec.quick(output_dir=tmp_path, max_steps=2, save_steps=2, eval_each_epoch=False)
    train_ordinal_model(spec, records)
    with pytest.raises(CheckpointError, match=r"learning_rate: 0\.001 -> 0\.0005"):
        train_ordinal_model(spec.model_copy(update={"learning_rate": 5e-4}), records)
    # Starting over in the same folder is allowed.
    fresh = spec.model_copy(update={"learning_rate": 5e-4, "resume": False})
    assert train_ordinal_model(fresh, records).resumed_from is None
