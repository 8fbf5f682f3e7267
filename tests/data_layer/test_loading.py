"""Reading processed splits: verified records, images, limits and tampered files."""

from __future__ import annotations

import json

import pytest
from dl_helpers import LABELS5, file_source, good_rows, make_registry, write_csv
from PIL import Image

from ordinal.artifacts import InputChangedError, LayoutError, ManifestError, layout
from ordinal.data import (
    PreprocessSpec,
    dataset_labels,
    ingest,
    load_split,
    preprocess,
    write_shapes,
)


def _text_dataset(tmp_path, store, name="ds", n=200, spec=None):
    src = write_csv(tmp_path / "src" / f"{name}.csv", good_rows(n))
    registry = make_registry(tmp_path / f"{name}.yaml", [file_source(src, name)])
    ingest(name, registry=registry, storage=store)
    return preprocess(name, "v1", storage=store, spec=spec)


def _split_lines(store, name, split):
    key = layout.join(layout.processed_split(name, "v1", split), "records.jsonl")
    return [json.loads(x) for x in store.get_bytes(key).decode().splitlines()]


def test_text_split_is_the_split_file_as_records(tmp_path, local_store):
    result = _text_dataset(tmp_path, local_store)
    loaded = {s: load_split("ds", "v1", s, storage=local_store) for s in layout.SPLITS}
    assert {s: len(r) for s, r in loaded.items()} == {
        s: result.report.split_counts[s] for s in layout.SPLITS
    }
    assert loaded["train"] == _split_lines(local_store, "ds", "train")
    first = loaded["validation"][0]
    assert set(first) == {"id", "text", "label"} and isinstance(first["label"], int)
    assert dataset_labels("ds", "v1", storage=local_store) == tuple(LABELS5)


def test_limit_returns_the_first_records(tmp_path, local_store):
    _text_dataset(tmp_path, local_store)
    full = load_split("ds", "v1", "train", storage=local_store)
    assert load_split("ds", "v1", "train", storage=local_store, limit=7) == full[:7]
    assert load_split("ds", "v1", "train", storage=local_store, limit=0) == []
    assert len(load_split("ds", "v1", "train", storage=local_store, limit=10**6)) == len(full)
    with pytest.raises(ValueError, match="limit must be >= 0"):
        load_split("ds", "v1", "train", storage=local_store, limit=-1)


def test_tampered_split_is_refused_naming_the_file(tmp_path, local_store):
    _text_dataset(tmp_path, local_store)
    path = local_store.root / "datasets/processed/ds/v1/validation/records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    # Change the last record only: a limited read must still hash the whole file.
    lines[-1] = lines[-1].replace('"label":', '"label": ', 1)
    path.write_text("".join(lines))
    with pytest.raises(InputChangedError, match=r"validation/records\.jsonl") as info:
        load_split("ds", "v1", "validation", storage=local_store, limit=1)
    assert info.value.actual != info.value.expected
    path.unlink()
    with pytest.raises(InputChangedError, match="<missing>"):
        load_split("ds", "v1", "validation", storage=local_store)
    assert load_split("ds", "v1", "train", storage=local_store)  # other splits still load


def test_parquet_split(tmp_path, local_store):
    _text_dataset(tmp_path, local_store, spec=PreprocessSpec(output_format="parquet"))
    records = load_split("ds", "v1", "test", storage=local_store)
    assert records and set(records[0]) == {"id", "text", "label"}
    assert load_split("ds", "v1", "test", storage=local_store, limit=3) == records[:3]
    path = local_store.root / "datasets/processed/ds/v1/test/records.parquet"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(InputChangedError, match=r"test/records\.parquet"):
        load_split("ds", "v1", "test", storage=local_store)


def test_image_split_gives_verified_rgb_images(tmp_path, local_store):
    folder = write_shapes(tmp_path / "shapes", n=40, seed=3, image_size=16)
    registry = make_registry(
        tmp_path / "r.yaml", [file_source(folder, "shp", format="image_folder")]
    )
    ingest("shp", registry=registry, storage=local_store)
    preprocess("shp", "v1", storage=local_store)
    records = load_split("shp", "v1", "train", storage=local_store)
    assert records
    expected = _split_lines(local_store, "shp", "train")
    assert [r["id"] for r in records] == [r["id"] for r in expected]
    first = records[0]
    assert isinstance(first["image"], Image.Image) and first["image"].mode == "RGB"
    assert first["image"].size == (16, 16) and isinstance(first["label"], int)
    image = local_store.root / layout.processed_split("shp", "v1", "train") / first["file"]
    image.write_bytes(image.read_bytes()[:-1] + b"\1")
    with pytest.raises(InputChangedError, match=first["file"]):
        load_split("shp", "v1", "train", storage=local_store)


def test_bad_arguments_and_missing_dataset(tmp_path, local_store):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_split("nothing", "v1", "train", storage=local_store)
    with pytest.raises(ManifestError, match="manifest not found"):
        dataset_labels("nothing", "v1", storage=local_store)
    with pytest.raises(LayoutError, match="unknown split"):
        load_split("ds", "v1", "holdout", storage=local_store)  # type: ignore[arg-type]


def test_split_on_s3(tmp_path, s3_store):
    _text_dataset(tmp_path, s3_store, n=60)
    records = load_split("ds", "v1", "train", storage=s3_store)
    assert records == _split_lines(s3_store, "ds", "train")
