"""Users' own datasets: labels matched by name (or declared indices), declared columns.

Every test goes through the registry, ingestion and preprocessing as a user would, and reads
the result back with ``load_split``, so a shifted label or a wrong column cannot hide.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from dl_helpers import file_source as _file_source
from dl_helpers import make_registry
from PIL import Image

from ordinal.artifacts import layout, read_manifest
from ordinal.data import (
    DataFormatError,
    LabelMatcher,
    MissingColumnError,
    PreprocessSpec,
    RegistryError,
    RejectionThresholdError,
    dataset_labels,
    ingest,
    load_registry,
    load_split,
    preprocess,
    preprocess_text_file,
)

LOOSE = {"max_rejected_fraction": 0.5}
SCALE10 = [str(i) for i in range(1, 11)]
LMH = ["low", "medium", "high"]


def file_source(path, name, **entry):
    """A registry entry read by name unless it says otherwise (the registry's default)."""
    entry.setdefault("label_values", "name")
    return _file_source(path, name, **entry)


def _csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def _all_records(store, name):
    return {r["id"]: r for s in layout.SPLITS for r in load_split(name, "v1", s, storage=store)}


def _quarantine(store, name):
    key = layout.join(layout.quarantine_dir(name, "v1"), "rejected.jsonl")
    return [json.loads(x) for x in store.get_bytes(key).decode().splitlines()]


def _run(tmp_path, store, src, name="ds", spec=None, **entry):
    reg = make_registry(tmp_path / f"{name}.yaml", [file_source(src, name, **entry)])
    ingest(name, registry=reg, storage=store)
    return preprocess(name, "v1", storage=store, spec=spec or PreprocessSpec(**LOOSE))


def _reconciles(result):
    counts = result.manifest.record_counts
    assert counts["raw"] == counts["accepted"] + counts["rejected"]
    assert counts["accepted"] == counts["train"] + counts["validation"] + counts["test"]


# ------------------------------------------------------------------ labels matched by name


@pytest.mark.parametrize("scale", [5, 10])
def test_a_numeric_scale_is_read_by_name(tmp_path, local_store, scale):
    """A 1-5 or 1-10 rating file registered with labels "1".."K": the value v is label v-1.
    Before, the value 1 became index 1 (label "2") and every 10 was refused."""
    labels = [str(i) for i in range(1, scale + 1)]
    rows = [(f"r{i:03d}", f"text number {i}", str(1 + i % scale)) for i in range(100)]
    rows += [("bad-hi", "above the scale", str(scale + 1)), ("bad-0", "zero", "0")]
    src = _csv(tmp_path / "src.csv", ["id", "text", "label"], rows)
    # label_values left out of the entry: matching by name is the default.
    result = _run(tmp_path, local_store, src, labels=labels, label_values=None)
    got = _all_records(local_store, "ds")
    assert len(got) == 100
    for rid, _text, value in rows[:100]:
        assert got[rid]["label"] == int(value) - 1, rid
        assert labels[got[rid]["label"]] == value
    assert dataset_labels("ds", "v1", storage=local_store) == tuple(labels)
    q = {r["id"]: r for r in _quarantine(local_store, "ds")}
    assert {k: (v["reason"], v["value"]) for k, v in q.items()} == {
        "bad-hi": ("label_not_in_set", str(scale + 1)),
        "bad-0": ("label_not_in_set", "0"),
    }
    _reconciles(result)
    assert result.manifest.parameters["label_values"] == "name"


def test_names_such_as_low_medium_high(tmp_path, local_store):
    rows = [(f"n{i}", f"item {i}", LMH[i % 3]) for i in range(30)]
    rows += [("case", "wrong case", "High"), ("pad", "padded is fine", "  low ")]
    src = _csv(tmp_path / "src.csv", ["id", "text", "label"], rows)
    result = _run(tmp_path, local_store, src, labels=LMH)
    got = _all_records(local_store, "ds")
    assert all(got[f"n{i}"]["label"] == i % 3 for i in range(30))
    assert got["pad"]["label"] == 0
    assert [(q["id"], q["reason"]) for q in _quarantine(local_store, "ds")] == [
        ("case", "label_not_in_set")
    ]
    _reconciles(result)


def test_zero_based_indices_only_when_declared(tmp_path, local_store):
    """Data holding 0..K-1 positions is read as indices only with label_values: index."""
    rows = [(f"i{i}", f"item {i}", str(i % 3)) for i in range(30)] + [("out", "x", "3")]
    src = _csv(tmp_path / "src.csv", ["id", "text", "label"], rows)
    result = _run(tmp_path, local_store, src, labels=LMH, label_values="index")
    got = _all_records(local_store, "ds")
    assert all(got[f"i{i}"]["label"] == i % 3 for i in range(30))
    assert [q["value"] for q in _quarantine(local_store, "ds")] == ["3"]
    _reconciles(result)
    # The same data declared by name: every position is refused, none is guessed.
    src2 = _csv(tmp_path / "src2.csv", ["id", "text", "label"], rows)
    with pytest.raises(RejectionThresholdError, match="label_not_in_set=31") as err:
        _run(tmp_path, local_store, src2, name="byname", labels=LMH)
    assert "declare label_values: index" in str(err.value)  # the hint names the fix


def test_json_and_parquet_numbers_match_their_names(tmp_path, local_store):
    """JSON/Parquet numbers match the name of the same number (1 and 1.0 match "1"); a
    JSON string must match exactly ("1.0" is not "1"); booleans never match."""
    lines = [
        {"id": "int", "text": "a", "label": 1},
        {"id": "float", "text": "b", "label": 1.0},
        {"id": "ten", "text": "c", "label": 10},
        {"id": "str", "text": "d", "label": "10"},
        {"id": "strfloat", "text": "e", "label": "1.0"},
        {"id": "bool", "text": "f", "label": True},
        {"id": "half", "text": "g", "label": 2.5},
        {"id": "eleven", "text": "h", "label": 11},
    ]
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    _run(tmp_path, local_store, src, format="jsonl", labels=SCALE10)
    got = {k: v["label"] for k, v in _all_records(local_store, "ds").items()}
    assert got == {"int": 0, "float": 0, "ten": 9, "str": 9}
    reasons = {q["id"]: q["reason"] for q in _quarantine(local_store, "ds")}
    assert reasons == dict.fromkeys(["strfloat", "bool", "half", "eleven"], "label_not_in_set")

    table = pa.table(
        {"id": ["p1", "p2", "p3"], "text": ["x", "y", "z"], "label": pa.array([1.0, 10.0, 2.5])}
    )
    pq.write_table(table, tmp_path / "src.parquet")
    _run(tmp_path, local_store, tmp_path / "src.parquet", "pq", format="parquet", labels=SCALE10)
    assert {k: v["label"] for k, v in _all_records(local_store, "pq").items()} == {
        "p1": 0,
        "p2": 9,
    }


def test_matcher_rules_by_hand():
    m = LabelMatcher(("0.5", "1", "1.5"), "name")
    assert [m.match(v) for v in (0.5, "0.5", 1, 1.0, "1", 1.5, "1.50", 2)] == [
        0,
        0,
        1,
        1,
        1,
        2,
        None,
        None,
    ]
    assert LabelMatcher(("0", "1", "2"), "index").match("2") == 2


# ------------------------------------------------------------------ refused declarations


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"labels": ["1", "2", "3", "4", "5"], "label_values": "index"}, "not '0'..'4'"),
        ({"labels": [1, 2, 3]}, "quote them"),
        ({"labels": ["yes", True]}, "must be strings"),
        ({"labels": ["1", "1.0", "2"]}, "denote the same number"),
        ({"labels": ["1", "01"]}, "denote the same number"),
        ({"labels": [" low", "high"]}, "surrounding whitespace"),
        ({"labels": ["low", ""]}, "empty"),
        ({"labels": ["only"]}, "at least two"),
        ({"labels": LMH, "label_values": "position"}, "label_values"),
        ({"columns": {"id": "k", "text": "k"}}, "must differ"),
        ({"columns": {"file": "path"}}, "columns.file does not apply"),
        ({"columns": {"body": "x"}}, "columns.body"),
        ({"format": "image_folder", "columns": {"text": "t"}}, "columns.text does not apply"),
    ],
)
def test_ambiguous_declarations_are_refused_naming_the_entry(tmp_path, entry, match):
    src = _csv(tmp_path / "a.csv", ["id", "text", "label"], [("a", "b", "1")])
    good = file_source(src, "fine", dataset="fine")
    bad = {**file_source(src, "my-ratings", dataset="ratings"), **entry}
    reg = make_registry(tmp_path / "r.yaml", [good, bad])
    with pytest.raises(RegistryError, match=match) as err:
        load_registry(reg)
    assert "source 'my-ratings' (entry 2)" in str(err.value)
    assert err.value.entries == ["source 'my-ratings' (entry 2)"]


def test_labels_zero_to_k_minus_one_are_accepted_either_way(tmp_path):
    src = _csv(tmp_path / "a.csv", ["id", "text", "label"], [("a", "b", "1")])
    for i, mode in enumerate(("name", "index")):
        e = file_source(src, f"s{i}", labels=["0", "1", "2"], label_values=mode)
        assert load_registry(make_registry(tmp_path / f"r{i}.yaml", [e])).get(f"s{i}")


def test_spec_and_direct_calls_refuse_ambiguous_labels(tmp_path):
    with pytest.raises(ValueError, match="not '0'..'2'"):
        PreprocessSpec(labels=("1", "2", "3"), label_values="index")
    src = _csv(tmp_path / "a.csv", ["id", "text", "label"], [("a", "b", "1")])
    with pytest.raises(DataFormatError, match="denote the same number"):
        preprocess_text_file(src, tmp_path / "o", labels=["1", "1.0"])


# ------------------------------------------------------------------ declared columns


def test_csv_with_other_column_names(tmp_path, local_store):
    rows = [(f"u{i}", f"a review {i}", str(1 + i % 10), "x") for i in range(50)]
    src = _csv(tmp_path / "src.csv", ["review_id", "body", "stars", "extra"], rows)
    columns = {"id": "review_id", "text": "body", "label": "stars"}
    result = _run(tmp_path, local_store, src, labels=SCALE10, columns=columns)
    train = load_split("ds", "v1", "train", storage=local_store)
    assert set(train[0]) == {"id", "text", "label"}  # canonical names downstream
    got = _all_records(local_store, "ds")
    assert got["u7"] == {"id": "u7", "text": "a review 7", "label": 7}
    assert result.manifest.parameters["columns"]["text"] == "body"
    raw = read_manifest(local_store, layout.raw_manifest("ds", "v1"))
    assert raw.parameters["columns"]["label"] == "stars"
    # Without the declaration the file's columns are missing: an error naming the column.
    with pytest.raises(MissingColumnError) as err:
        _run(tmp_path, local_store, src, name="plain", labels=SCALE10)
    assert err.value.field == "id" and "review_id" in err.value.available


def test_jsonl_and_parquet_with_other_keys(tmp_path, local_store):
    src = tmp_path / "src.jsonl"
    src.write_text(
        "".join(
            json.dumps({"key": f"k{i}", "msg": f"m {i}", "y": LMH[i % 3]}) + "\n" for i in range(9)
        )
    )
    cols = {"id": "key", "text": "msg", "label": "y"}
    _run(tmp_path, local_store, src, format="jsonl", labels=LMH, columns=cols)
    assert _all_records(local_store, "ds")["k4"] == {"id": "k4", "text": "m 4", "label": 1}
    pq.write_table(
        pa.table({"key": ["a", "b"], "msg": ["x", "y"], "y": ["high", "low"]}),
        tmp_path / "src.parquet",
    )
    _run(
        tmp_path,
        local_store,
        tmp_path / "src.parquet",
        "pq",
        format="parquet",
        labels=LMH,
        columns=cols,
    )
    assert {k: v["label"] for k, v in _all_records(local_store, "pq").items()} == {"a": 2, "b": 0}


def test_spec_columns_override_the_registry(tmp_path):
    src = _csv(tmp_path / "a.csv", ["k", "t", "y"], [("a", "b", "low"), ("c", "d", "high")])
    spec = PreprocessSpec.from_options(id_column="k", text_column="t", label_column="y")
    report = preprocess_text_file(src, tmp_path / "o", labels=LMH, spec=spec)
    assert report.accepted == 2


def _png(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_image_folder_with_its_own_labels_csv(tmp_path, local_store):
    """A user's folder: labels.csv with image_id/path/grade and names low/medium/high."""
    folder = tmp_path / "scans"
    (folder / "pics").mkdir(parents=True)
    rows = []
    for i in range(24):
        (folder / "pics" / f"s{i}.png").write_bytes(_png((i * 10, 3 * i, 255 - i)))
        rows.append((f"s{i}", f"pics/s{i}.png", LMH[i % 3]))
    rows += [("odd", "pics/s1.png", "very high"), ("gone", "pics/none.png", "low")]
    _csv(folder / "labels.csv", ["image_id", "path", "grade"], rows)
    cols = {"id": "image_id", "file": "path", "label": "grade"}
    result = _run(tmp_path, local_store, folder, format="image_folder", labels=LMH, columns=cols)
    got = _all_records(local_store, "ds")
    assert len(got) == 24
    assert all(got[f"s{i}"]["label"] == i % 3 for i in range(24))
    assert got["s5"]["image"].getpixel((0, 0)) == (50, 15, 250)
    assert {q["id"]: q["reason"] for q in _quarantine(local_store, "ds")} == {
        "odd": "label_not_in_set",
        "gone": "missing_file",
    }
    _reconciles(result)
    assert Counter(r["label"] for r in got.values()) == {0: 8, 1: 8, 2: 8}


# ------------------------------------------------------------------ manifests from before


def test_a_raw_manifest_without_label_values_is_never_guessed(tmp_path, local_store):
    """Raw data ingested before label_values existed: preprocessing refuses to guess;
    ingesting again (same bytes) records the registry's declaration, then it works."""
    src = _csv(tmp_path / "a.csv", ["id", "text", "label"], [("a", "x y", "1"), ("b", "y z", "2")])
    reg = make_registry(tmp_path / "r.yaml", [file_source(src, "ds", labels=["1", "2", "3"])])
    first = ingest("ds", registry=reg, storage=local_store)
    key = first.manifest_key
    data = json.loads(local_store.get_bytes(key))
    for k in ("label_values", "columns"):
        data["parameters"].pop(k)
    local_store.put_bytes(json.dumps(data).encode(), key)
    with pytest.raises(DataFormatError, match="records no label_values"):
        preprocess("ds", "v1", storage=local_store)
    again = ingest("ds", registry=reg, storage=local_store)
    assert not again.created and sorted(again.declaration_updated) == ["columns", "label_values"]
    preprocess("ds", "v1", storage=local_store)
    assert {r["id"]: r["label"] for r in _all_records(local_store, "ds").values()} == {
        "a": 0,
        "b": 1,
    }
    third = ingest("ds", registry=reg, storage=local_store)
    assert third.declaration_updated == []


def test_registry_file_round_trip_keeps_label_strings(tmp_path):
    reg = make_registry(
        tmp_path / "r.yaml",
        [file_source(_csv(tmp_path / "a.csv", ["id", "text", "label"], []), "a", labels=SCALE10)],
    )
    assert yaml.safe_load(reg.read_text())["sources"][0]["labels"][0] == "1"
    assert load_registry(reg).get("a").labels == tuple(SCALE10)


def test_a_column_option_replaces_only_that_column(tmp_path, local_store):
    src = _csv(
        tmp_path / "a.csv",
        ["k", "t", "y", "y2"],
        [(f"a{i}", f"t {i}", "low", "high") for i in range(5)],
    )
    cols = {"id": "k", "text": "t", "label": "y"}
    _run(tmp_path, local_store, src, labels=LMH, columns=cols)
    assert {r["label"] for r in _all_records(local_store, "ds").values()} == {0}
    result = preprocess(
        "ds", "v1", storage=local_store, spec=PreprocessSpec.from_options(label_column="y2")
    )
    assert result.manifest.parameters["columns"] == {
        "id": "k",
        "text": "t",
        "label": "y2",
        "file": "file",
    }
    assert {r["label"] for r in _all_records(local_store, "ds").values()} == {2}


def test_flat_options_as_text_as_a_pipeline_passes_them():
    """`ordinal run --set KEY=VALUE` hands strings: they build the same spec as typed values."""
    from ordinal.data import PREPROCESS_OPTIONS

    text = {
        "labels": "1..10", "label_values": "name", "id_column": "k", "text_column": "t",
        "label_column": "y", "file_column": "f", "labels_file": "l.csv", "min_text_chars": "2",
        "max_text_chars": "30", "max_rejected_fraction": "0.2", "max_duplicate_fraction": "0.3",
        "dedupe": "false", "train": "0.5", "validation": "0.25", "test": "0.25",
        "split_salt": "s1", "output_format": "parquet", "image_modes": "RGB,L",
        "min_image_side": "4", "max_image_side": "64",
    }  # fmt: skip
    assert set(text) == set(PREPROCESS_OPTIONS)
    spec = PreprocessSpec.from_options(text)
    assert spec.labels == tuple(SCALE10) and spec.dedupe is False
    assert spec.split.test == 0.25 and spec.image_modes == ("RGB", "L")
    assert PreprocessSpec.from_options(spec.to_options()) == spec
    assert PreprocessSpec.from_options({"labels": "", "train": None}) == PreprocessSpec()
    with pytest.raises(ValueError, match="max_txt_chars"):
        PreprocessSpec.from_options({"max_txt_chars": "9"})
