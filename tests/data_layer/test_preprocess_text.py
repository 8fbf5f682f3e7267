"""Text preprocessing: per-record validation, quarantine, thresholds, splits, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dl_helpers import LABELS5, file_source, good_rows, make_registry, write_csv

from ordinal.artifacts import InputChangedError, ManifestError, layout, read_manifest
from ordinal.data import (
    DataFormatError,
    EmptyDatasetError,
    MissingColumnError,
    PreprocessSpec,
    RejectionThresholdError,
    SplitSpec,
    ingest,
    normalise_text,
    preprocess,
    preprocess_text_file,
)

LOOSE = PreprocessSpec(max_rejected_fraction=1.0, max_duplicate_fraction=1.0, label_values="index")
INDEX = PreprocessSpec(label_values="index")


def _quarantine(out: Path) -> list[dict]:
    lines = (out / "quarantine" / "rejected.jsonl").read_text("utf-8").splitlines()
    return [json.loads(x) for x in lines]


def _accepted(out: Path) -> list[dict]:
    rows = []
    for s in ("train", "validation", "test"):
        text = (out / s / "records.jsonl").read_text("utf-8")
        rows += [json.loads(x) for x in text.splitlines()]
    return rows


def _run(tmp_path, data: bytes, suffix="csv", spec=LOOSE, labels=LABELS5):
    src = tmp_path / f"in.{suffix}"
    src.write_bytes(data)
    out = tmp_path / "out"
    report = preprocess_text_file(src, out, labels=labels, spec=spec)
    assert report.raw == report.accepted + report.rejected
    return report, out


def test_every_bad_record_is_quarantined_with_reason_and_value(tmp_path):
    data = (
        b"id,text,label\n"
        b"a1,fine text,0\n"
        b"a2,bad \xff\xfe bytes,1\n"  # non-UTF-8
        b"a3,out of range,7\n"  # label outside the set
        b"a1,same id again,2\n"  # duplicate id
        b",no id,2\n"  # missing id
        b"a4,   ,2\n"  # empty text
        b"a5,label by position,2\n"  # label_values: index
        b"a6,missing label,\n"
        b"a7,too,many,fields,1\n"  # malformed row
        b"a8,Fine   TEXT,4\n"  # duplicate content of a1 after normalisation
        b"a9,negative,-1\n"
        b"a10,\xe2\x9c\x93 valid utf-8 check mark,3\n"
    )
    report, out = _run(tmp_path, data)
    q = {r["id"]: r for r in _quarantine(out)}
    assert q["a2"]["reason"] == "invalid_utf8"
    assert q["a2"]["field"] == "text"
    assert "\\xff\\xfe" in q["a2"]["value"]
    assert q["a3"]["reason"] == "label_not_in_set"
    assert q["a3"]["value"] == "7"
    assert q["a1"]["reason"] == "duplicate_id"
    assert q["a1"]["row"] == 4
    assert q[""]["reason"] == "missing_id"
    assert q["a4"]["reason"] == "empty_text"
    assert q["a6"]["reason"] == "missing_label"
    assert q["a7"]["reason"] == "malformed_record"
    assert q["a8"]["reason"] == "duplicate_content"
    assert q["a8"]["duplicate_of"] == "a1"
    assert q["a9"]["reason"] == "label_not_in_set"
    accepted = {r["id"]: r for r in _accepted(out)}
    assert set(accepted) == {"a1", "a5", "a10"}
    assert accepted["a5"]["label"] == 2
    assert accepted["a1"] == {"id": "a1", "text": "fine text", "label": 0}
    assert (report.raw, report.accepted, report.rejected) == (12, 3, 9)
    assert report.duplicates == 1
    assert report.invalid == 8
    assert report.record_counts()["rejected_invalid"] == 8


def test_length_limits(tmp_path):
    spec = LOOSE.model_copy(update={"min_text_chars": 3, "max_text_chars": 10})
    report, out = _run(tmp_path, b"id,text,label\nx,ab,0\ny,abcdefghijk,0\nz,abcd,0\n", spec=spec)
    reasons = {r["id"]: r["reason"] for r in _quarantine(out)}
    assert reasons == {"x": "text_too_short", "y": "text_too_long"}
    assert report.accepted == 1


def test_missing_column_is_a_file_error(tmp_path):
    with pytest.raises(MissingColumnError) as err:
        _run(tmp_path, b"id,body,label\n1,x,0\n")
    assert err.value.field == "text"
    assert err.value.available == ["id", "body", "label"]
    assert "missing required column" in str(err.value)


def test_duplicate_header_and_unsupported_format(tmp_path):
    with pytest.raises(DataFormatError, match="duplicate column"):
        _run(tmp_path, b"id,text,text,label\n")
    with pytest.raises(DataFormatError, match="unsupported"):
        _run(tmp_path, b"x", suffix="txt")


@pytest.mark.parametrize(("suffix", "data"), [("csv", b""), ("jsonl", b""), ("parquet", b"")])
def test_zero_byte_file(tmp_path, suffix, data):
    with pytest.raises(EmptyDatasetError, match="0-byte"):
        _run(tmp_path, data, suffix=suffix)


@pytest.mark.parametrize(("suffix", "data"), [("csv", b"id,text,label\n"), ("jsonl", b"\n\n")])
def test_empty_dataset(tmp_path, suffix, data):
    with pytest.raises(EmptyDatasetError, match="no records"):
        _run(tmp_path, data, suffix=suffix)


def test_truncated_csv_quarantines_the_cut_record(tmp_path):
    full = b"id,text,label\nr1,first review,0\nr2,second review that was cut,1\n"
    report, out = _run(tmp_path, full[:-12])  # cut inside the last record, no newline
    (q,) = _quarantine(out)
    assert q["reason"] == "truncated_record"
    assert q["id"] == "r2"
    assert q["row"] == 2
    assert report.accepted == 1


def test_truncated_quoted_csv_field_is_not_accepted(tmp_path):
    data = b'id,text,label\nr1,"a quoted, review",0\nr2,"cut in the middle of a quo'
    report, out = _run(tmp_path, data)
    assert [q["reason"] for q in _quarantine(out)] == ["truncated_record"]
    assert report.accepted == 1


def test_jsonl_bad_records(tmp_path):
    lines = [
        b'{"id": "j1", "text": "good one", "label": 1}',
        b'{"id": "j2", "text": "bad \xc3\x28 utf8", "label": 1}',
        b'{"id": "j3", "text": "no label"}',
        b'["not", "an", "object"]',
        b"{not json",
        b'{"id": "j4", "text": 42, "label": 1}',
        b'{"id": true, "text": "bool id", "label": 1}',
        b'{"id": "j5", "text": "bool label", "label": true}',
        b'{"id": 6, "text": "integer id is fine", "label": 4}',
        b'{"id": "j7", "text": "cut off at the e',
    ]
    report, out = _run(tmp_path, b"\n".join(lines), suffix="jsonl")
    got = [(q["row"], q["reason"], q["field"]) for q in _quarantine(out)]
    assert got == [
        (2, "invalid_utf8", "text"),
        (3, "missing_field", "label"),
        (4, "malformed_record", None),
        (5, "malformed_record", None),
        (6, "invalid_type", "text"),
        (7, "invalid_type", "id"),
        (8, "label_not_in_set", "label"),
        (10, "truncated_record", None),
    ]
    assert sorted(r["id"] for r in _accepted(out)) == ["6", "j1"]
    assert report.raw == 10


def test_parquet_input_and_output_are_deterministic(tmp_path):
    src = tmp_path / "in.parquet"
    rows = [*good_rows(300), ("p-bad", "bad label", 9), ("p-bin", None, 1)]
    table = pa.table(
        {
            "id": [r[0] for r in rows],
            "text": [r[1] for r in rows],
            "label": pa.array([r[2] for r in rows], pa.int64()),
        }
    )
    pq.write_table(table, src)
    spec = LOOSE.model_copy(update={"output_format": "parquet"})
    outs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        report = preprocess_text_file(src, out, labels=LABELS5, spec=spec)
        outs.append(out)
    assert report.accepted == 300
    assert report.reasons == {"label_not_in_set": 1, "empty_text": 1}
    for s in ("train", "validation", "test"):
        a, b = (o / s / "records.parquet" for o in outs)
        assert a.read_bytes() == b.read_bytes()
    back = pq.read_table(outs[0] / "train" / "records.parquet").to_pylist()
    assert back[0].keys() == {"id", "text", "label"}
    assert (
        sum(
            pq.read_metadata(o / s / "records.parquet").num_rows
            for o in outs[:1]
            for s in ("train", "validation", "test")
        )
        == 300
    )


def test_parquet_missing_column_corrupt_and_binary_text(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": ["a"], "label": [1]}), src)
    with pytest.raises(MissingColumnError):
        preprocess_text_file(src, tmp_path / "o1", labels=LABELS5, spec=INDEX)
    good = tmp_path / "good.parquet"
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": [b"ok text", b"\xff bad"], "label": [1, 2]}), good
    )
    report = preprocess_text_file(good, tmp_path / "o2", labels=LABELS5, spec=LOOSE)
    assert report.reasons == {"invalid_utf8": 1}
    data = good.read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="Parquet"):
        preprocess_text_file(tmp_path / "cut.parquet", tmp_path / "o3", labels=LABELS5, spec=INDEX)


def test_normalised_dedupe():
    assert normalise_text("\uff27reat  product\t!") == normalise_text("great product !")
    assert normalise_text("a b") != normalise_text("ab")


def test_dedupe_can_be_disabled(tmp_path):
    spec = LOOSE.model_copy(update={"dedupe": False})
    report, _ = _run(tmp_path, b"id,text,label\na,same,0\nb,same,0\n", spec=spec)
    assert report.accepted == 2


def test_same_inputs_give_byte_identical_outputs(tmp_path):
    src = write_csv(tmp_path / "in.csv", [*good_rows(500), ("bad", "x", 99)])
    for name in ("o1", "o2"):
        preprocess_text_file(src, tmp_path / name, labels=LABELS5, spec=LOOSE)
    files = sorted(
        p.relative_to(tmp_path / "o1") for p in (tmp_path / "o1").rglob("*") if p.is_file()
    )
    assert len(files) == 4
    for rel in files:
        assert (tmp_path / "o1" / rel).read_bytes() == (tmp_path / "o2" / rel).read_bytes()


def test_adding_records_never_moves_old_ones(tmp_path):
    def splits(out):
        return {
            json.loads(line)["id"]: s
            for s in ("train", "validation", "test")
            for line in (out / s / "records.jsonl").read_text().splitlines()
        }

    small = write_csv(tmp_path / "small.csv", good_rows(400))
    big = write_csv(tmp_path / "big.csv", good_rows(400) + good_rows(600, start=400))
    preprocess_text_file(small, tmp_path / "s", labels=LABELS5, spec=INDEX)
    preprocess_text_file(big, tmp_path / "b", labels=LABELS5, spec=INDEX)
    before, after = splits(tmp_path / "s"), splits(tmp_path / "b")
    assert all(after[i] == s for i, s in before.items())
    counts = {s: list(after.values()).count(s) for s in ("train", "validation", "test")}
    assert 700 < counts["train"] < 900  # ~80% of 1000
    assert 50 < counts["test"] < 150


def test_split_spec_validation():
    with pytest.raises(ValueError, match="sum to 1"):
        SplitSpec(train=0.8, validation=0.3, test=0.1)
    with pytest.raises(ValueError):
        SplitSpec(train=0.0, validation=0.5, test=0.5)
    with pytest.raises(ValueError, match="min_text_chars"):
        PreprocessSpec(min_text_chars=10, max_text_chars=5)
    with pytest.raises(ValueError, match="min_image_side"):
        PreprocessSpec(min_image_side=10, max_image_side=5)
    with pytest.raises(ValueError, match="must differ"):
        PreprocessSpec(columns={"text": "id"})
    with pytest.raises(ValueError, match="unique"):
        PreprocessSpec(labels=("a", "a"))
    with pytest.raises(ValueError):
        PreprocessSpec(max_rejected_fraction=1.5)


# ------------------------------------------------------------------ through storage


def _ingested(tmp_path, store, rows, name="ds", fmt="csv"):
    src = write_csv(tmp_path / "src" / f"{name}.csv", rows)
    if fmt == "jsonl":
        jl = tmp_path / "src" / f"{name}.jsonl"
        jl.write_text(
            "".join(json.dumps({"id": r[0], "text": r[1], "label": r[2]}) + "\n" for r in rows)
        )
        src = jl
    reg = make_registry(tmp_path / f"{name}.yaml", [file_source(src, name, format=fmt)])
    ingest(name, registry=reg, storage=store)
    return src


def test_preprocess_pipeline_writes_manifest_reports_and_reconciles(tmp_path, local_store):
    extra = [("bad1", "x", 9), ("r000001", "dup id", 1), ("d", "review number 3 is fine", 3)]
    rows = [*good_rows(190), *extra]
    _ingested(tmp_path, local_store, rows)
    res = preprocess("ds", "v1", storage=local_store)
    m = read_manifest(local_store, layout.processed_manifest("ds", "v1"))
    assert m.phase == "preprocess"
    c = m.record_counts
    assert c["raw"] == 193
    assert c["raw"] == c["accepted"] + c["rejected"]
    assert c["accepted"] == c["train"] + c["validation"] + c["test"]
    assert (c["rejected_invalid"], c["rejected_duplicate"]) == (2, 1)
    roles = {o.role for o in m.outputs}
    assert {"split:train", "split:validation", "split:test", "quarantine"} <= roles
    assert {"report:preprocess_report", "report:label_distribution"} <= roles
    assert m.inputs[0].role == "manifest"
    assert m.inputs[1].path == "datasets/raw/ds/v1/ds.csv"
    dist = json.loads(
        local_store.get_bytes("datasets/processed/ds/v1/reports/label_distribution.json")
    )
    assert dist["labels"] == LABELS5
    assert sum(dist["overall"].values()) == c["accepted"]
    assert res.report.accepted == c["accepted"]
    # Same inputs and spec again: identical output bytes and checksums.
    again = preprocess("ds", "v1", storage=local_store)
    assert [(o.path, o.sha256) for o in again.manifest.outputs] == [
        (o.path, o.sha256) for o in m.outputs
    ]


def test_rejection_threshold_fails_with_report(tmp_path, local_store):
    rows = good_rows(90) + [(f"bad{i}", "text", 42) for i in range(10)]  # 10% invalid
    _ingested(tmp_path, local_store, rows)
    with pytest.raises(RejectionThresholdError) as err:
        preprocess("ds", "v1", storage=local_store)
    rep = err.value.report
    assert rep["count"] == 10
    assert rep["raw"] == 100
    assert rep["threshold"] == 0.05
    assert rep["reasons"] == {"label_not_in_set": 10}
    assert "10.00% exceeds the threshold 5.00%" in str(err.value)
    # The rejects are kept for inspection, but no manifest: nothing downstream accepts it.
    assert not local_store.exists(layout.processed_manifest("ds", "v1"))
    q = local_store.get_bytes(err.value.quarantine_key).decode().splitlines()
    assert len(q) == 10
    assert not local_store.exists("datasets/processed/ds/v1/train/records.jsonl")
    # A looser threshold (a field on the spec) lets it through.
    ok = preprocess("ds", "v1", storage=local_store, spec=PreprocessSpec(max_rejected_fraction=0.1))
    assert ok.report.accepted == 90


def test_duplicate_threshold(tmp_path, local_store):
    rows = [(f"r{i}", "same text", 0) for i in range(10)]
    _ingested(tmp_path, local_store, rows)
    with pytest.raises(RejectionThresholdError, match=r"duplicate record fraction 90\.00%"):
        preprocess("ds", "v1", storage=local_store)


def test_raw_changed_after_manifest_is_refused(tmp_path, local_store):
    _ingested(tmp_path, local_store, good_rows(50))
    raw = local_store.root / "datasets/raw/ds/v1/ds.csv"
    raw.write_bytes(raw.read_bytes().replace(b"fine", b"FINE"))
    with pytest.raises(InputChangedError) as err:
        preprocess("ds", "v1", storage=local_store)
    assert err.value.what.endswith("ds.csv")
    assert not local_store.exists(layout.processed_manifest("ds", "v1"))


def test_preprocess_without_ingest(local_store):
    with pytest.raises(ManifestError, match="not found"):
        preprocess("nothing", "v1", storage=local_store)


def test_jsonl_pipeline_on_s3(tmp_path, s3_store):
    _ingested(tmp_path, s3_store, good_rows(120), fmt="jsonl")
    progress = []
    res = preprocess("ds", "v1", storage=s3_store, progress=lambda *a: progress.append(a))
    assert res.report.accepted == 120
    assert progress[-1][0] == "records"
    keys = s3_store.list("datasets/processed/ds/v1")
    assert "datasets/processed/ds/v1/train/records.jsonl" in keys
    assert "datasets/processed/ds/v1/manifest.json" in keys


def test_a_label_set_is_required(tmp_path):
    with pytest.raises(DataFormatError, match="at least two labels"):
        _run(tmp_path, b"id,text,label\na,b,0\n", labels=["only"])
