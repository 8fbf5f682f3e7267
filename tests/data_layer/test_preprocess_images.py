"""Image preprocessing: decodability, mode and size bounds, duplicates, splits, pipeline."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from dl_helpers import LABELS5, file_source, make_registry
from PIL import Image

from ordinal.artifacts import InputChangedError, layout, read_manifest
from ordinal.data import (
    SHAPE_LABELS,
    DataFormatError,
    EmptyDatasetError,
    PreprocessSpec,
    ingest,
    preprocess,
    preprocess_image_folder,
    write_shapes,
)

LOOSE = PreprocessSpec(max_rejected_fraction=1.0, label_values="index")


def _png(mode: str, size: tuple[int, int], colour) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def bad_folder(tmp_path):
    folder = write_shapes(tmp_path / "shapes", n=20, seed=5, image_size=32)
    images = folder / "images"
    (images / "garbage.png").write_bytes(b"this is not a png at all")
    good = (images / "img-000001.png").read_bytes()
    (images / "cut.png").write_bytes(good[: len(good) // 2])
    (images / "gray.png").write_bytes(_png("L", (32, 32), 128))
    (images / "tiny.png").write_bytes(_png("RGB", (4, 4), (1, 2, 3)))
    (images / "huge.png").write_bytes(_png("RGB", (600, 20), (1, 2, 3)))
    shutil.copy(images / "img-000002.png", images / "copy.png")
    extra = [
        "x-garbage,images/garbage.png,1",
        "x-cut,images/cut.png,1",
        "x-gray,images/gray.png,1",
        "x-tiny,images/tiny.png,1",
        "x-huge,images/huge.png,1",
        "x-missing,images/nope.png,1",
        "x-escape,../../etc/passwd,1",
        "x-copy,images/copy.png,1",
        "x-label,images/img-000003.png,12",
        "img-000004,images/img-000004.png,1",
    ]
    with (folder / "labels.csv").open("a", encoding="utf-8") as fh:
        fh.write("\n".join(extra) + "\n")
    return folder


def test_bad_images_are_quarantined_with_reasons(tmp_path, bad_folder):
    spec = LOOSE.model_copy(update={"max_image_side": 512})
    report = preprocess_image_folder(bad_folder, tmp_path / "out", labels=SHAPE_LABELS, spec=spec)
    q = [
        json.loads(x) for x in (tmp_path / "out/quarantine/rejected.jsonl").read_text().splitlines()
    ]
    reasons = {r["id"]: r["reason"] for r in q}
    assert reasons == {
        "x-garbage": "undecodable_image",
        "x-cut": "undecodable_image",
        "x-gray": "image_mode_not_allowed",
        "x-tiny": "image_too_small",
        "x-huge": "image_too_large",
        "x-missing": "missing_file",
        "x-escape": "missing_file",
        "x-copy": "duplicate_content",
        "x-label": "label_not_in_set",
        "img-000004": "duplicate_id",
    }
    by_id = {r["id"]: r for r in q}
    assert by_id["x-gray"]["mode"] == "L"
    assert by_id["x-tiny"]["size"] == [4, 4]
    assert by_id["x-copy"]["duplicate_of"] == "img-000002"
    assert by_id["x-garbage"]["value"] == "images/garbage.png"
    assert report.raw == 30
    assert report.accepted == 20
    assert report.rejected == 10
    records = []
    for s in ("train", "validation", "test"):
        for line in (tmp_path / "out" / s / "records.jsonl").read_text().splitlines():
            r = json.loads(line)
            assert (tmp_path / "out" / s / r["file"]).is_file()
            records.append(r)
    assert len(records) == 20
    assert {r["width"] for r in records} == {32}


def test_allowed_modes_are_a_spec_field(tmp_path, bad_folder):
    spec = LOOSE.model_copy(update={"image_modes": ("RGB", "L"), "max_image_side": 512})
    report = preprocess_image_folder(bad_folder, tmp_path / "out", labels=SHAPE_LABELS, spec=spec)
    assert "image_mode_not_allowed" not in report.reasons
    assert report.accepted == 21


def test_missing_labels_file_and_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="labels file not found"):
        preprocess_image_folder(tmp_path / "empty", tmp_path / "o", labels=LABELS5, spec=LOOSE)
    (tmp_path / "empty" / "labels.csv").write_text("id,file,label\n")
    with pytest.raises(EmptyDatasetError):
        preprocess_image_folder(tmp_path / "empty", tmp_path / "o2", labels=LABELS5, spec=LOOSE)


def test_image_pipeline_and_changed_raw_image(tmp_path, local_store):
    folder = write_shapes(tmp_path / "shapes", n=30, seed=7, image_size=32)
    reg = make_registry(
        tmp_path / "r.yaml",
        [file_source(folder, "shp", format="image_folder", labels=list(SHAPE_LABELS))],
    )
    ingest("shp", registry=reg, storage=local_store)
    res = preprocess("shp", "v1", storage=local_store)
    m = read_manifest(local_store, layout.processed_manifest("shp", "v1"))
    assert m.record_counts["accepted"] == 30
    assert m.parameters["kind"] == "image"
    assert len([o for o in m.outputs if o.role.startswith("image:")]) == 30
    assert len([i for i in m.inputs if i.role == "raw"]) == 31  # 30 images + labels.csv
    assert res.report.kind == "image"
    before = local_store.get_bytes(layout.processed_manifest("shp", "v1"))
    raw = local_store.root / "datasets/raw/shp/v1/images/img-000005.png"
    raw.write_bytes(_png("RGB", (32, 32), (0, 0, 0)))
    with pytest.raises(InputChangedError, match="img-000005"):
        preprocess("shp", "v1", storage=local_store)
    # The failed run touched nothing: the earlier outputs and their manifest stand.
    assert local_store.get_bytes(layout.processed_manifest("shp", "v1")) == before


def test_image_pipeline_on_s3(tmp_path, s3_store):
    folder = write_shapes(tmp_path / "shapes", n=10, seed=8, image_size=16)
    reg = make_registry(
        tmp_path / "r.yaml",
        [file_source(folder, "shp", format="image_folder", labels=list(SHAPE_LABELS))],
    )
    ingest("shp", registry=reg, storage=s3_store)
    res = preprocess("shp", "v1", storage=s3_store)
    assert res.report.accepted == 10
    assert s3_store.exists("datasets/processed/shp/v1/manifest.json")
