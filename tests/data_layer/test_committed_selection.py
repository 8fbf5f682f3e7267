"""The committed calibration selection of each dataset version is the authority.

A drawn selection that differs from it fails and shows the difference; a missing one is an
error whose message gives the next step; propose mode writes a reviewable file beside (never
over) the committed one; each dataset version has its own file; and the default folder is the
project's, whatever the current folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dl_helpers import file_source, make_registry, write_csv
from typer.testing import CliRunner

from ordinal.artifacts import layout
from ordinal.data import (
    SELECTION_DIR_ENV,
    CalibrationError,
    CalibrationSpec,
    SelectionMismatchError,
    SelectionMissingError,
    calibrate,
    default_selection_dir,
    ingest,
    load_selection,
    preprocess,
    selection_path,
    verify_calibration_set,
)
from ordinal.data.cli import data_app
from ordinal.data.selection import installed_selection_dir
from ordinal.export.quantize import load_calibration_set

REPO = Path(__file__).resolve().parents[2]


def _rows(n: int, start: int = 0) -> list[tuple]:
    return [(f"r{i:05d}", "word " * (1 + i % 37) + str(i), i % 5) for i in range(start, start + n)]


@pytest.fixture
def two_versions(tmp_path, local_store, monkeypatch):
    """Dataset ``ds`` in two versions with different records, ingested and preprocessed."""
    v1 = write_csv(tmp_path / "src" / "v1.csv", _rows(600))
    v2 = write_csv(tmp_path / "src" / "v2.csv", _rows(700, start=300))
    registry = make_registry(
        tmp_path / "r.yaml",
        [
            file_source(v1, "ds-v1", dataset="ds", version="v1"),
            file_source(v2, "ds-v2", dataset="ds", version="v2"),
        ],
    )
    monkeypatch.setenv("ORDINAL_SOURCES", str(registry))
    for name, version in (("ds-v1", "v1"), ("ds-v2", "v2")):
        ingest(name, registry=registry, storage=local_store)
        preprocess("ds", version, storage=local_store)
    return local_store


def _commit(tmp_path: Path, store, version: str = "v1", **spec) -> Path:
    """Propose a selection, then commit it the way a reviewer would (move it up a folder)."""
    cal = tmp_path / "cal"
    res = calibrate(
        "ds",
        version,
        spec=CalibrationSpec(size=100, **spec),
        storage=store,
        selection_dir=cal,
        propose=True,
    )
    assert res.proposal_path == cal / "proposed" / f"ds@{version}.yaml"
    return Path(shutil.move(res.proposal_path, cal / res.proposal_path.name))


def _stored_manifest(store) -> bytes | None:
    key = layout.calibration_manifest("ds")
    return store.get_bytes(key) if store.exists(key) else None


def test_a_drawn_selection_that_differs_fails_and_shows_the_difference(tmp_path, two_versions):
    store = two_versions
    committed = _commit(tmp_path, store)
    with pytest.raises(SelectionMismatchError) as info:
        calibrate(
            "ds",
            "v1",
            spec=CalibrationSpec(size=120, seed=3),
            storage=store,
            selection_dir=tmp_path / "cal",
        )
    err = info.value
    assert (err.dataset, err.version, err.path) == ("ds", "v1", str(committed))
    assert err.diff.spec == {"size": (100, 120), "seed": (0, 3)}
    assert (err.diff.committed_count, err.diff.drawn_count) == (100, 120)
    old = set(load_selection(committed).ids)
    drawn = calibrate(
        "ds",
        "v1",
        spec=CalibrationSpec(size=120, seed=3),
        storage=store,
        propose=True,
        selection_dir=tmp_path / "cal",
        proposal_dir=tmp_path / "elsewhere",
    ).selection
    new = set(drawn.ids)
    assert set(err.diff.added) == new - old and err.diff.added
    assert set(err.diff.removed) == old - new and err.diff.removed
    message = str(err)
    assert "spec.size: committed 100, drawn 120" in message
    assert "spec.seed: committed 0, drawn 3" in message
    assert (
        f"ids: committed 100, drawn 120; {len(new - old)} added, {len(old - new)} removed"
        in message
    )
    assert sorted(new - old)[0] in message and sorted(old - new)[0] in message
    assert "--size 120 --seed 3 --size-bins 4 --propose" in message
    assert load_selection(committed).spec == CalibrationSpec(size=100)  # untouched


def test_a_mismatch_stores_nothing(tmp_path, two_versions):
    store = two_versions
    _commit(tmp_path, store)
    calibrate(
        "ds", "v1", spec=CalibrationSpec(size=100), storage=store, selection_dir=tmp_path / "cal"
    )
    before = _stored_manifest(store)
    with pytest.raises(SelectionMismatchError):
        calibrate(
            "ds",
            "v1",
            spec=CalibrationSpec(size=100, seed=1),
            storage=store,
            selection_dir=tmp_path / "cal",
        )
    assert _stored_manifest(store) == before


def test_a_changed_training_split_is_a_difference(tmp_path, two_versions):
    committed = _commit(tmp_path, two_versions)
    text = committed.read_text().replace(load_selection(committed).train_sha256, "a" * 64)
    committed.write_text(text)
    with pytest.raises(SelectionMismatchError, match="the training split changed") as info:
        calibrate(
            "ds",
            "v1",
            spec=CalibrationSpec(size=100),
            storage=two_versions,
            selection_dir=tmp_path / "cal",
        )
    assert info.value.diff.fields["train_sha256"][0] == "a" * 64
    assert not info.value.diff.added and not info.value.diff.removed


def test_the_same_draw_passes_and_records_the_committed_file(tmp_path, two_versions):
    committed = _commit(tmp_path, two_versions)
    res = calibrate(
        "ds",
        "v1",
        spec=CalibrationSpec(size=100),
        storage=two_versions,
        selection_dir=tmp_path / "cal",
    )
    assert res.status == "committed" and res.proposal_path is None
    assert res.selection_path == committed
    assert res.selection == load_selection(committed)
    assert res.manifest.parameters["selection"] == {"status": "committed", "file": "ds@v1.yaml"}
    stored = two_versions.get_bytes(layout.join(layout.calibration_dir("ds"), "selection.yaml"))
    assert stored == committed.read_bytes()


def test_propose_writes_a_reviewable_file_and_never_the_committed_one(tmp_path, two_versions):
    store = two_versions
    committed = _commit(tmp_path, store)
    committed_bytes = committed.read_bytes()
    res = calibrate(
        "ds",
        "v1",
        spec=CalibrationSpec(size=100, seed=7),
        storage=store,
        selection_dir=tmp_path / "cal",
        propose=True,
    )
    assert res.status == "proposed"
    assert res.proposal_path == tmp_path / "cal" / "proposed" / "ds@v1.yaml"
    assert res.selection_path == res.proposal_path  # the file the stored set now is
    assert res.committed_path == committed
    assert committed.read_bytes() == committed_bytes
    proposal = load_selection(res.proposal_path)
    assert proposal == res.selection and proposal.spec.seed == 7
    # Reviewable: the same deterministic text a committed file has, saying where it goes.
    text = res.proposal_path.read_text()
    assert text == res.selection.to_yaml()
    assert "committed as calibration/ds@v1.yaml" in text
    assert res.proposal_diff.spec == {"seed": (0, 7)}
    assert res.manifest.parameters["selection"]["status"] == "proposed"
    # The stored set is now the proposal: quantisation refuses it against the committed file,
    # and accepts it only when pointed at the proposal.
    with pytest.raises(SelectionMismatchError, match="stored calibration selection"):
        verify_calibration_set("ds", "v1", storage=store, selection_dir=tmp_path / "cal")
    checked = verify_calibration_set(
        "ds", "v1", storage=store, proposal_dir=tmp_path / "cal" / "proposed"
    )
    assert checked.status == "proposed" and checked.selection_path == res.proposal_path
    # A proposal can never land on the committed file.
    with pytest.raises(CalibrationError, match="refusing to write the proposed selection over"):
        calibrate(
            "ds",
            "v1",
            spec=CalibrationSpec(size=100, seed=7),
            storage=store,
            selection_dir=tmp_path / "cal",
            propose=True,
            proposal_dir=tmp_path / "cal",
        )
    assert committed.read_bytes() == committed_bytes
    # Nor into the copy an installed package ships (not under review; a reinstall replaces it).
    installed = installed_selection_dir()
    with pytest.raises(CalibrationError, match="into the installed package"):
        calibrate(
            "ds",
            "v1",
            spec=CalibrationSpec(size=100),
            storage=store,
            selection_dir=installed,
            propose=True,
        )
    assert not (installed / "proposed").exists()


def test_propose_through_the_cli_prints_the_path(tmp_path, two_versions, monkeypatch):
    monkeypatch.setenv("ORDINAL_STORAGE_URL", str(two_versions.root))
    monkeypatch.setenv("COLUMNS", "200")
    committed = _commit(tmp_path, two_versions)
    committed_bytes = committed.read_bytes()
    cal = str(tmp_path / "cal")
    res = CliRunner().invoke(
        data_app, ["calibrate", "ds", "--size", "100", "--seed", "2", "--selection-dir", cal]
    )
    assert res.exit_code == 1
    assert "SelectionMismatchError" in res.output
    assert "spec.seed: committed 0, drawn 2" in res.output
    res = CliRunner().invoke(
        data_app,
        ["calibrate", "ds", "--size", "100", "--seed", "2", "--selection-dir", cal, "--propose"],
    )
    assert res.exit_code == 0, res.output
    proposal = tmp_path / "cal" / "proposed" / "ds@v1.yaml"
    assert f"proposed selection written for review: {proposal}" in res.output
    assert f"commit it as {committed}" in res.output
    assert "spec.seed: committed 0, proposed 2" in res.output
    assert load_selection(proposal).spec.seed == 2
    assert committed.read_bytes() == committed_bytes
    res = CliRunner().invoke(data_app, ["calibrate", "ds", "--size", "100", "--selection-dir", cal])
    assert res.exit_code == 0, res.output
    assert f"matches the committed {committed}" in res.output


def test_a_missing_committed_selection_is_an_error_with_the_next_step(tmp_path, two_versions):
    store = two_versions
    with pytest.raises(SelectionMissingError) as info:
        calibrate("ds", "v1", spec=CalibrationSpec(size=100), storage=store, selection_dir=tmp_path)
    err = info.value
    assert err.path == str(tmp_path / "ds@v1.yaml")
    assert err.next_step == (
        "ordinal data calibrate ds --version v1 --size 100 --seed 0 --size-bins 4 --propose"
    )
    assert err.next_step in str(err) and "calibrate(..., propose=True)" in str(err)
    assert _stored_manifest(store) is None  # nothing drawn, nothing stored
    # Quantisation does not skip the check either.
    calibrate(
        "ds",
        "v1",
        spec=CalibrationSpec(size=100),
        storage=store,
        propose=True,
        selection_dir=tmp_path,
        proposal_dir=tmp_path / "p",
    )
    with pytest.raises(SelectionMissingError, match=r"ds@v1\.yaml does not exist"):
        load_calibration_set("ds", store, selection_dir=tmp_path)
    # An old one-file-per-dataset selection is named, not silently used.
    shutil.copy(tmp_path / "p" / "ds@v1.yaml", tmp_path / "ds.yaml")
    with pytest.raises(SelectionMissingError, match="old per-dataset layout") as info:
        calibrate("ds", "v1", spec=CalibrationSpec(size=100), storage=store, selection_dir=tmp_path)
    assert info.value.legacy == str(tmp_path / "ds.yaml")
    res = CliRunner().invoke(
        data_app,
        [
            "calibrate",
            "ds",
            "--size",
            "100",
            "--selection-dir",
            str(tmp_path / "none"),
            "--storage",
            str(store.root),
        ],
        env={"COLUMNS": "300"},
    )
    assert res.exit_code == 1
    assert "SelectionMissingError" in res.output and "--propose" in res.output


def test_each_dataset_version_uses_its_own_committed_selection(tmp_path, two_versions):
    store = two_versions
    v1 = _commit(tmp_path, store, "v1")
    cal = tmp_path / "cal"
    # v2 has no committed selection yet: v1's is not used for it.
    with pytest.raises(SelectionMissingError, match=r"ds@v2\.yaml"):
        calibrate("ds", "v2", spec=CalibrationSpec(size=100), storage=store, selection_dir=cal)
    v2 = _commit(tmp_path, store, "v2")
    assert load_selection(v2).ids != load_selection(v1).ids
    assert load_selection(v2).version == "v2"
    res2 = calibrate("ds", "v2", spec=CalibrationSpec(size=100), storage=store, selection_dir=cal)
    assert res2.selection_path == v2
    # The stored set now holds v2: quantising v1 is refused, naming the versions.
    with pytest.raises(CalibrationError, match="drawn from ds/v2, not ds/v1"):
        load_calibration_set("ds", store, selection_dir=cal, version="v1")
    cal_set = load_calibration_set("ds", store, selection_dir=cal, version="v2")
    assert (cal_set.version, cal_set.selection_path) == ("v2", str(v2))
    assert cal_set.selection_status == "committed"
    # Without a version, the stored set's own version is checked against its own file.
    broken = v2.read_text().replace(load_selection(v2).ids[0], "r99999")
    v2.write_text(broken)
    with pytest.raises(SelectionMismatchError, match="1 added, 1 removed"):
        load_calibration_set("ds", store, selection_dir=cal)
    res1 = calibrate("ds", "v1", spec=CalibrationSpec(size=100), storage=store, selection_dir=cal)
    assert res1.selection_path == v1
    assert load_calibration_set("ds", store, selection_dir=cal, version="v1").version == "v1"


def test_the_default_folder_does_not_depend_on_the_current_folder(
    tmp_path, two_versions, monkeypatch
):
    # A current folder with a calibration/ of its own, holding a valid ds selection.
    committed = _commit(tmp_path, two_versions)
    cwd = tmp_path / "elsewhere"
    (cwd / "calibration").mkdir(parents=True)
    shutil.copy(committed, cwd / "calibration" / committed.name)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv(SELECTION_DIR_ENV, raising=False)
    assert default_selection_dir() == REPO / "calibration"
    assert selection_path("reviews", "v1") == REPO / "calibration" / "reviews@v1.yaml"
    # The run looks in the project's folder (where ds has no selection), not in ./calibration.
    with pytest.raises(SelectionMissingError) as info:
        calibrate("ds", "v1", spec=CalibrationSpec(size=100), storage=two_versions)
    assert info.value.path == str(REPO / "calibration" / "ds@v1.yaml")
    res = CliRunner().invoke(
        data_app,
        ["calibrate", "ds", "--size", "100", "--storage", str(two_versions.root)],
        env={"COLUMNS": "300", SELECTION_DIR_ENV: ""},
    )
    assert res.exit_code == 1 and str(REPO / "calibration" / "ds@v1.yaml") in res.output
    # Nothing was written into the current folder.
    assert sorted(p.name for p in cwd.rglob("*")) == ["calibration", committed.name]
    # $ORDINAL_CALIBRATION_DIR moves the folder.
    monkeypatch.setenv(SELECTION_DIR_ENV, str(tmp_path / "cal"))
    assert default_selection_dir() == tmp_path / "cal"
    res = calibrate("ds", "v1", spec=CalibrationSpec(size=100), storage=two_versions)
    assert res.selection_path == committed


def test_the_shipped_selections_say_their_dataset_version():
    files = sorted((REPO / "calibration").glob("*.yaml"))
    assert {"reviews@v1.yaml", "shapes@v1.yaml", "shapes@v2.yaml"} <= {f.name for f in files}
    for f in files:
        sel = load_selection(f)
        assert f.name == f"{sel.dataset}@{sel.version}.yaml"
        assert f.read_text() == sel.to_yaml()  # regenerated, never hand-edited
    v1, v2 = (load_selection(REPO / "calibration" / f"shapes@{v}.yaml") for v in ("v1", "v2"))
    assert v1.train_sha256 != v2.train_sha256 and v1.ids != v2.ids
