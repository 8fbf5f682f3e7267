"""The `ordinal` command: library commands (train, heads) and the main job (run)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ordinal.cli import read_text_records, split_records
from pipelines.cli import app
from tests.helpers.keyword_data import keyword_records

runner = CliRunner()


def test_heads_lists_heads_and_model_types():
    result = runner.invoke(app, ["heads"])
    assert result.exit_code == 0, result.output
    assert "cumulative_link" in result.output and "corn" in result.output
    assert "distilbert" in result.output and "vit" in result.output


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_train_on_a_file_prints_the_evaluation(tmp_path, suffix):
    records = keyword_records(60, seed=4)
    data = tmp_path / f"reviews{suffix}"
    if suffix == ".csv":
        lines = ["id,text,label"] + [f"{r['id']},{r['text']},{r['label']}" for r in records]
        data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--model",
            "bert-tiny",
            "--head",
            "coral",
            "--max-steps",
            "3",
            "--no-mlflow",
            "--output-dir",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "quadratic weighted kappa" in result.output
    assert "48 train / 12 eval records" in result.output
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_train_rejects_a_link_for_corn(tmp_path):
    result = runner.invoke(
        app, ["train", "--head", "corn", "--link", "probit", "--demo-size", "10"]
    )
    assert result.exit_code != 0
    assert "only applies to head='cumulative_link'" in str(result.exception)


def test_read_text_records_errors_name_the_file_and_record(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such data file"):
        read_text_records(tmp_path / "missing.csv")
    bad_suffix = tmp_path / "data.txt"
    bad_suffix.write_text("x")
    with pytest.raises(ValueError, match=r"expected a \.csv or \.jsonl file"):
        read_text_records(bad_suffix)
    missing = tmp_path / "missing-label.csv"
    missing.write_text("id,text\n1,hello\n")
    with pytest.raises(ValueError, match=r"record 1 lacks the field\(s\) \['label'\]"):
        read_text_records(missing)
    bad_label = tmp_path / "bad.jsonl"
    bad_label.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "three"}\n')
    with pytest.raises(ValueError, match="record 2 has a non-integer label 'three'"):
        read_text_records(bad_label)


def test_split_records_is_deterministic_and_complete():
    records = [{"id": str(i)} for i in range(10)]
    train, evaluation = split_records(records, 0.2)
    assert [r["id"] for r in evaluation] == ["4", "9"]
    assert len(train) + len(evaluation) == 10
    with pytest.raises(ValueError, match=r"eval_fraction must be in \(0, 1\)"):
        split_records(records, 1.0)


def test_train_on_a_users_ten_point_file_with_its_own_columns(tmp_path):
    """A 1-10 scale under other column names: label "10" is the top class, never position 10."""
    records = keyword_records(60, seed=5)
    data = tmp_path / "ratings.csv"
    rows = ["review_id,body,stars"] + [
        f"r{i},{r['text']},{r['label'] * 2 + 2}" for i, r in enumerate(records)
    ]  # labels 0..4 become stars 2, 4, 6, 8, 10
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    base = ["train", "--data", str(data), "--model", "bert-tiny", "--max-steps", "2"]
    base += ["--no-mlflow", "--output-dir", str(tmp_path / "run")]
    columns = ["--id-column", "review_id", "--text-column", "body", "--label-column", "stars"]
    labels = ["--labels", ",".join(str(k) for k in range(1, 11))]
    result = runner.invoke(app, [*base, *columns, *labels])
    assert result.exit_code == 0, result.output
    assert "10 classes" in result.output
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["ordinal"]["num_classes"] == 10
    assert config["ordinal"]["label_names"] == [str(k) for k in range(1, 11)]

    # The culprit is named: a column the file lacks, a value outside the declared labels.
    result = runner.invoke(app, [*base, *labels])
    assert result.exit_code == 2
    assert "ratings.csv: record 1 lacks the field(s) ['label', 'text']" in result.output
    result = runner.invoke(app, [*base, *columns, "--labels", "2,4,6,8"])
    assert result.exit_code == 2
    assert "field 'stars'" in result.output and "the label '10'" in result.output
    result = runner.invoke(app, [*base, *columns, *labels, "--num-classes", "5"])
    assert result.exit_code == 2
    assert "--labels lists 10" in result.output
