"""Calibration sets: spec bounds, stratification, determinism, committed selections."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from dl_helpers import file_source, make_registry, write_csv

from ordinal.artifacts import InputChangedError, layout, read_manifest
from ordinal.data import (
    CalibrationError,
    CalibrationSpec,
    SelectionMismatchError,
    calibrate,
    ingest,
    load_selection,
    preprocess,
    select_calibration,
    verify_selection,
    write_selection,
)
from ordinal.data.calibration import Candidate, size_edges

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("size", [0, 99, 501, 10_000])
def test_size_outside_100_500_is_an_error(size):
    with pytest.raises(ValueError, match=r"\[100, 500\]"):
        CalibrationSpec(size=size)


@pytest.mark.parametrize("size", [100, 500])
def test_size_bounds_are_inclusive(size):
    assert CalibrationSpec(size=size).size == size


def _pool(n=2000, seed=1):
    rng = random.Random(seed)
    # Skewed labels and lengths, like real review data.
    return [
        Candidate(
            id=f"c{i:05d}",
            label=rng.choices(range(5), [1, 1, 2, 4, 8])[0],
            size=rng.randint(5, 400),
        )
        for i in range(n)
    ]


def test_selection_is_deterministic_order_free_and_seeded():
    pool = _pool()
    spec = CalibrationSpec(size=300, seed=3)
    ids, edges, strata = select_calibration(pool, spec)
    shuffled = pool[:]
    random.Random(9).shuffle(shuffled)
    assert select_calibration(shuffled, spec)[0] == ids
    assert len(ids) == 300
    assert len(set(ids)) == 300
    assert ids == sorted(ids)
    other = select_calibration(pool, spec.model_copy(update={"seed": 4}))[0]
    assert other != ids
    assert sum(strata.values()) == 300
    assert len(edges) == 3


def test_selection_is_stratified_by_label_and_size():
    pool = _pool()
    spec = CalibrationSpec(size=200, seed=0)
    ids, edges, strata = select_calibration(pool, spec)
    chosen = [c for c in pool if c.id in set(ids)]
    # Every label and every size bin is represented, roughly in proportion.
    assert {c.label for c in chosen} == set(range(5))
    assert len(strata) == 20  # 5 labels x 4 size bins
    assert all(v >= 1 for v in strata.values())
    share_pool = sum(c.label == 4 for c in pool) / len(pool)
    share_sel = sum(c.label == 4 for c in chosen) / len(chosen)
    assert abs(share_pool - share_sel) < 0.05
    short = sum(c.size <= edges[0] for c in chosen)
    assert 35 <= short <= 65  # a quarter of 200, give or take rounding per stratum


def test_size_edges_doctest_value_and_too_few_candidates():
    assert size_edges([1, 2, 3, 4, 5, 6, 7, 8], 4) == [3, 5, 7]
    with pytest.raises(CalibrationError, match="fewer than the 100"):
        select_calibration(_pool(n=50), CalibrationSpec(size=100))


def _processed(tmp_path, store, n=600):
    rows = [(f"r{i:05d}", "word " * (1 + i % 37) + str(i), i % 5) for i in range(n)]
    src = write_csv(tmp_path / "src" / "ds.csv", rows)
    ingest(
        "ds", registry=make_registry(tmp_path / "r.yaml", [file_source(src, "ds")]), storage=store
    )
    preprocess("ds", "v1", storage=store)


def test_calibrate_draws_from_train_only_and_records_everything(tmp_path, local_store):
    _processed(tmp_path, local_store)
    res = calibrate(
        "ds",
        "v1",
        spec=CalibrationSpec(size=120),
        storage=local_store,
        selection_dir=tmp_path / "cal",
        propose=True,
    )
    train_ids = {
        json.loads(x)["id"]
        for x in local_store.get_bytes("datasets/processed/ds/v1/train/records.jsonl")
        .decode()
        .splitlines()
    }
    assert set(res.selection.ids) <= train_ids
    assert len(res.selection.ids) == 120
    samples = (
        local_store.get_bytes("datasets/processed/ds/calibration/samples.jsonl")
        .decode()
        .splitlines()
    )
    assert [json.loads(x)["id"] for x in samples] == res.selection.ids
    m = read_manifest(local_store, layout.calibration_manifest("ds"))
    assert m.phase == "calibrate"
    assert m.record_counts["selected"] == 120
    assert m.inputs[1].sha256 == res.selection.train_sha256
    proposed = load_selection(tmp_path / "cal" / "proposed" / "ds@v1.yaml")
    assert proposed == res.selection
    verify_selection(proposed, res.selection)
    assert (tmp_path / "cal" / "proposed" / "ds@v1.yaml").read_text() == local_store.get_bytes(
        "datasets/processed/ds/calibration/selection.yaml"
    ).decode()


def test_verify_selection_names_what_differs(tmp_path, local_store):
    _processed(tmp_path, local_store)

    def draw(seed):
        spec = CalibrationSpec(size=100, seed=seed)
        return calibrate(
            "ds", "v1", spec=spec, storage=local_store, propose=True, proposal_dir=tmp_path / "p"
        ).selection

    a, b = draw(0), draw(1)
    with pytest.raises(SelectionMismatchError, match="spec.seed: committed 0, drawn 1"):
        verify_selection(a, b)
    with pytest.raises(SelectionMismatchError, match=r"ids: committed 100, drawn 100; \d+ added"):
        verify_selection(a, b.model_copy(update={"spec": a.spec}))
    with pytest.raises(SelectionMismatchError, match="the training split changed"):
        verify_selection(a, a.model_copy(update={"train_sha256": "0" * 64}))
    with pytest.raises(SelectionMismatchError, match="ids: committed not sorted and unique"):
        verify_selection(a.model_copy(update={"ids": a.ids[::-1]}), a)
    verify_selection(a, a.model_copy())


def test_calibrate_refuses_changed_train_split(tmp_path, local_store):
    _processed(tmp_path, local_store)
    train = local_store.root / "datasets/processed/ds/v1/train/records.jsonl"
    train.write_text(train.read_text().replace("word", "WORD", 1))
    with pytest.raises(InputChangedError, match=r"train/records\.jsonl"):
        calibrate("ds", "v1", storage=local_store, propose=True, proposal_dir=tmp_path / "p")


def test_load_selection_errors(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        load_selection(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("dataset: [")
    with pytest.raises(CalibrationError, match="invalid"):
        load_selection(tmp_path / "bad.yaml")


@pytest.mark.parametrize("dataset", ["reviews", "shapes"])
def test_committed_demo_selections_regenerate_exactly(demo_store, dataset, tmp_path):
    """The committed files of the demo datasets (v1, default spec) are what a run draws, byte
    for byte; the run finds them in the project's calibration/ by default."""
    path = REPO / "calibration" / f"{dataset}@v1.yaml"
    committed = load_selection(path)
    assert (committed.dataset, committed.version) == (dataset, "v1")
    assert committed.spec == CalibrationSpec()  # default parameters
    res = calibrate(dataset, "v1", spec=committed.spec, storage=demo_store)
    assert res.status == "committed" and res.selection_path == path
    assert res.selection == committed
    # A proposal of the same draw is byte for byte the committed file (no diff to review).
    proposed = calibrate(
        dataset, "v1", storage=demo_store, propose=True, proposal_dir=tmp_path
    ).proposal_path
    assert proposed == tmp_path / f"{dataset}@v1.yaml"
    assert proposed.read_bytes() == path.read_bytes()
    if dataset == "shapes":
        images = demo_store.list("datasets/processed/shapes/calibration/images")
        assert len(images) == len(committed.ids)


def test_write_selection_refuses_unsafe_dataset_names(tmp_path):
    sel = load_selection(REPO / "calibration" / "reviews@v1.yaml")
    with pytest.raises(ValueError):
        write_selection(sel.model_copy(update={"dataset": "../x"}), tmp_path)
    with pytest.raises(ValueError):
        write_selection(sel.model_copy(update={"version": "v1/../../x"}), tmp_path)
