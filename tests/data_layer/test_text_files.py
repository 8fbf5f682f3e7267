"""``read_text_records`` (``ordinal train --data``, the export commands' ``--data``) matches
labels by name with the data layer's rules, never by ``int(value)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ordinal.cli
import ordinal.export.cli
from ordinal.data import DataFormatError, read_text_records


def _csv(path, rows, header="id,text,label"):
    path.write_text(header + "\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows), "utf-8")
    return path


def test_a_1_to_10_scale_is_matched_by_name(tmp_path):
    f = _csv(tmp_path / "r.csv", [("a", "top", "10"), ("b", "low", "1"), ("c", "mid", " 5 ")])
    labels = [str(i) for i in range(1, 11)]
    assert [r["label"] for r in read_text_records(f, labels=labels)] == [9, 0, 4]


def test_a_1_to_5_scale_in_jsonl_with_typed_numbers(tmp_path):
    f = tmp_path / "r.jsonl"
    rows = [{"id": "a", "text": "x", "label": 5}, {"id": "b", "text": "y", "label": 1.0}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    assert [r["label"] for r in read_text_records(f, labels=["1", "2", "3", "4", "5"])] == [4, 0]


def test_names_and_indices(tmp_path):
    f = _csv(tmp_path / "n.csv", [("a", "x", "high"), ("b", "y", "low"), ("c", "z", "medium")])
    assert [r["label"] for r in read_text_records(f, labels=["low", "medium", "high"])] == [
        2,
        0,
        1,
    ]
    g = _csv(tmp_path / "i.csv", [("a", "x", "2"), ("b", "y", "0")])
    labels = ["low", "medium", "high"]
    assert [r["label"] for r in read_text_records(g, labels=labels, label_values="index")] == [
        2,
        0,
    ]


@pytest.mark.parametrize(
    ("value", "labels", "label_values"),
    [
        ("11", [str(i) for i in range(1, 11)], "name"),
        ("0", ["1", "2", "3", "4", "5"], "name"),
        ("High", ["low", "medium", "high"], "name"),
        ("3", ["low", "medium", "high"], "index"),
        ("1.0", ["1", "2"], "name"),
    ],
)
def test_a_value_outside_the_set_names_the_file_record_and_value(
    tmp_path, value, labels, label_values
):
    f = _csv(
        tmp_path / "o.csv",
        [("a", "x", labels[0] if label_values == "name" else "0"), ("b", "y", value)],
    )
    with pytest.raises(DataFormatError) as info:
        read_text_records(f, labels=labels, label_values=label_values)
    assert (info.value.path, info.value.row, info.value.field) == (str(f), 2, "label")
    assert repr(value) in str(info.value)


def test_an_ambiguous_declaration_is_refused(tmp_path):
    f = _csv(tmp_path / "a.csv", [("a", "x", "1")])
    with pytest.raises(ValueError, match="invalid label declaration"):
        read_text_records(f, labels=["1", "2", "3"], label_values="index")


def test_without_labels_values_are_positions(tmp_path):
    f = _csv(tmp_path / "p.csv", [("a", "x", "0"), ("b", "y", "4"), ("c", "z", "12")])
    assert [r["label"] for r in read_text_records(f)] == [0, 4, 12]
    with pytest.raises(DataFormatError, match=r"record 3 has the label '12'"):
        read_text_records(f, num_classes=5)
    star = _csv(tmp_path / "s.csv", [("a", "x", "1 star")])
    with pytest.raises(DataFormatError, match="non-integer label '1 star'.*labels="):
        read_text_records(star)


def test_declared_columns(tmp_path):
    f = _csv(tmp_path / "c.csv", [("r1", "nice", "5")], header="review_id,body,stars")
    records = read_text_records(
        f,
        labels=["1", "2", "3", "4", "5"],
        columns={"id": "review_id", "text": "body", "label": "stars"},
    )
    assert records == [{"id": "r1", "text": "nice", "label": 4}]
    with pytest.raises(ValueError, match=r"record 1 lacks the field\(s\) \['label', 'text'\]"):
        read_text_records(f, labels=["1", "2", "3", "4", "5"])


def test_the_old_import_still_works_and_the_cycle_is_gone():
    assert ordinal.cli.read_text_records is read_text_records
    source = Path(ordinal.export.cli.__file__).read_text("utf-8")
    assert "from ordinal.cli import" not in source
