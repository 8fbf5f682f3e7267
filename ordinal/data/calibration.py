"""Calibration sets: 100-500 curated training samples for static INT8 quantisation.

The selection is stratified by label and by input size (text length in characters, image
area in pixels), drawn from the training split only, and deterministic under a seed: within
each stratum records are ranked by ``sha256(seed, id)``, so the choice does not depend on
file order. The samples are stored in ``datasets/processed/{dataset}/calibration/``.

The committed selection of the dataset version (``calibration/{dataset}@{version}.yaml``,
:mod:`ordinal.data.selection`) is the authority: :func:`calibrate` refuses a drawn selection
that differs from it, or a dataset version that has none, unless it is asked to *propose* a
selection, which it then writes for review beside (never over) the committed file.
:func:`verify_calibration_set` checks a stored calibration set against it before use.
"""

from __future__ import annotations

import hashlib
import json
import os
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ordinal.artifacts import layout
from ordinal.artifacts.manifest import (
    FileEntry,
    Manifest,
    load_verified_manifest,
    manifest_entry,
    new_manifest,
    verify_entries,
    write_manifest,
)
from ordinal.artifacts.storage import Storage, open_storage, staging_dir
from ordinal.data.errors import (
    CalibrationError,
    SelectionMismatchError,
    SelectionMissingError,
)
from ordinal.data.selection import (
    MAX_SIZE,
    MIN_SIZE,
    SELECTION_DIR_ENV,
    CalibrationSelection,
    CalibrationSpec,
    SelectionDiff,
    default_selection_dir,
    diff_selections,
    load_committed_selection,
    load_selection,
    proposal_path,
    propose_command,
    selection_path,
    verify_selection,
    write_proposal,
    write_selection,
)

__all__ = [
    "MAX_SIZE",
    "MIN_SIZE",
    "SELECTION_DIR_ENV",
    "CalibrationResult",
    "CalibrationSelection",
    "CalibrationSpec",
    "Candidate",
    "SelectionDiff",
    "VerifiedCalibrationSet",
    "calibrate",
    "default_selection_dir",
    "diff_selections",
    "load_selection",
    "proposal_path",
    "select_calibration",
    "selection_path",
    "size_edges",
    "verify_calibration_set",
    "verify_selection",
    "write_selection",
]

SelectionStatus = Literal["committed", "proposed"]

Progress = Callable[[str, int, int], None]


class Candidate(BaseModel):
    """A training record as calibration sees it: id, label and input size."""

    model_config = ConfigDict(frozen=True)

    id: str
    label: int
    size: int


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` drew, checked and wrote.

    Attributes
    ----------
    selection : CalibrationSelection
        The drawn selection (equal to the committed one unless ``status`` is ``proposed``).
    manifest_key : str
        Key of the stored calibration set's manifest.
    manifest : Manifest
        That manifest.
    selection_path : Path
        The selection file the stored set is: the committed file (``status`` committed), or
        the proposal (``status`` proposed). It exists and holds ``selection``.
    status : {"committed", "proposed"}
        ``committed``: the drawn selection is the committed one. ``proposed``: it was written
        for review to ``proposal_path`` and is not committed.
    proposal_path : Path or None
        The proposed selection file (propose mode only).
    proposal_diff : SelectionDiff or None
        Propose mode: how the proposal differs from the committed selection (None when
        there is no committed selection; empty when they are equal).
    committed_path : Path or None
        Where the committed selection of the dataset version is, or goes once a proposal is
        reviewed (in propose mode it may not exist yet).
    """

    selection: CalibrationSelection
    manifest_key: str
    manifest: Manifest
    selection_path: Path
    status: SelectionStatus = "committed"
    proposal_path: Path | None = None
    proposal_diff: SelectionDiff | None = None
    committed_path: Path | None = None


def _rank(seed: int, rid: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{rid}".encode()).digest()


def size_edges(sizes: list[int], bins: int) -> list[int]:
    """Return the inner quantile edges that cut ``sizes`` into ``bins`` groups.

    >>> size_edges([1, 2, 3, 4, 5, 6, 7, 8], 4)
    [3, 5, 7]
    """
    ordered = sorted(sizes)
    n = len(ordered)
    edges = [ordered[min(n - 1, (n * i) // bins)] for i in range(1, bins)]
    return sorted(set(edges))


def _allocate(counts: dict[tuple[int, int], int], total: int) -> dict[tuple[int, int], int]:
    """Share ``total`` across strata in proportion to their sizes (largest remainder).

    Every non-empty stratum gets at least one sample when ``total`` allows, so rare labels
    and extreme lengths are always represented.
    """
    n = sum(counts.values())
    keys = sorted(counts)
    alloc = {k: 0 for k in keys}
    if total >= len(keys):
        for k in keys:
            alloc[k] = 1
    remaining = total - sum(alloc.values())
    capacity = {k: counts[k] - alloc[k] for k in keys}
    cap_total = sum(capacity.values())
    if remaining > 0 and cap_total > 0:
        quotas = {k: remaining * capacity[k] / cap_total for k in keys}
        for k in keys:
            alloc[k] += int(quotas[k])
        left = total - sum(alloc.values())
        # Ties broken by stratum key so the result never depends on dict order.
        order = sorted(keys, key=lambda k: (-(quotas[k] - int(quotas[k])), k))
        i = 0
        while left > 0:
            k = order[i % len(order)]
            if alloc[k] < counts[k]:
                alloc[k] += 1
                left -= 1
            i += 1
    assert sum(alloc.values()) == min(total, n)
    return alloc


def select_calibration(
    candidates: Iterable[Candidate], spec: CalibrationSpec
) -> tuple[list[str], list[int], dict[str, int]]:
    """Choose calibration ids, stratified by label and size bin, deterministic under the seed.

    Parameters
    ----------
    candidates : iterable of Candidate
        Training records (their order does not matter).
    spec : CalibrationSpec
        Size, seed and number of size bins.

    Returns
    -------
    tuple
        ``(sorted ids, size bin edges, count per "label/bin" stratum)``.

    Raises
    ------
    CalibrationError
        If there are fewer candidates than ``spec.size``.
    """
    pool = list(candidates)
    if len(pool) < spec.size:
        raise CalibrationError(
            f"the training split has {len(pool)} records, fewer than the {spec.size} requested"
        )
    edges = size_edges([c.size for c in pool], spec.size_bins)
    strata: dict[tuple[int, int], list[Candidate]] = defaultdict(list)
    for c in pool:
        strata[(c.label, bisect_right(edges, c.size))].append(c)
    alloc = _allocate({k: len(v) for k, v in strata.items()}, spec.size)
    chosen: list[str] = []
    summary: dict[str, int] = {}
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda c: (_rank(spec.seed, c.id), c.id))
        take = members[: alloc[key]]
        chosen.extend(c.id for c in take)
        summary[f"label{key[0]}/bin{key[1]}"] = len(take)
    return sorted(chosen), edges, summary


def _read_train(path: Path, kind: str) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    with path.open("r", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _candidate(record: dict[str, Any], kind: str) -> Candidate:
    size = len(record["text"]) if kind == "text" else record["width"] * record["height"]
    return Candidate(id=record["id"], label=record["label"], size=size)


def calibrate(
    dataset: str,
    version: str,
    *,
    spec: CalibrationSpec | None = None,
    storage: Storage | str | None = None,
    endpoint_url: str | None = None,
    selection_dir: str | os.PathLike[str] | None = None,
    propose: bool = False,
    proposal_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Draw a calibration set from a processed dataset's training split, check it, store it.

    The processed manifest is schema-validated and the training split's checksum verified
    before it is read. The drawn selection must equal the committed selection of this
    dataset version (``{selection_dir}/{dataset}@{version}.yaml``) unless ``propose`` is set.
    Only then is ``datasets/processed/{dataset}/calibration/`` written (``samples.jsonl``,
    images for image datasets, ``selection.yaml``, ``manifest.json``).

    Parameters
    ----------
    dataset, version : str
        The processed dataset version.
    spec : CalibrationSpec, optional
        Size, seed and size bins (default ``CalibrationSpec()``).
    storage : Storage or str, optional
        Storage backend or root URL (default: the local store).
    endpoint_url : str, optional
        S3-compatible endpoint for an ``s3://`` root.
    selection_dir : path, optional
        Folder of committed selections; None or ``''`` is ``$ORDINAL_CALIBRATION_DIR``, else
        the project's ``calibration/`` (:func:`ordinal.data.selection.default_selection_dir`).
    propose : bool
        Write the drawn selection for review instead of requiring it to be the committed one
        (to ``proposal_dir``, default ``{selection_dir}/proposed/``; never over the committed
        file). The stored set is written either way; quantisation accepts it only against the
        committed selection, or against the proposal when it is asked to.
    proposal_dir : path, optional
        Where a proposal goes (propose mode).
    progress : callable, optional
        ``progress(stage, done, total)``.

    Raises
    ------
    SelectionMissingError
        No committed selection for the dataset version (and not ``propose``); nothing written.
    SelectionMismatchError
        The drawn selection differs from the committed one (and not ``propose``); carries the
        difference; nothing written.
    CalibrationError
        Too few training records; a proposal that cannot be written.
    """
    spec = spec or CalibrationSpec()
    committed: CalibrationSelection | None = None
    committed_path = selection_path(dataset, version, selection_dir)
    if propose:
        if committed_path.is_file():
            try:
                committed = load_selection(committed_path)
            except CalibrationError:  # an unreadable committed file is what a proposal replaces
                committed = None
    else:
        # Before any data is read: a missing committed selection is an error, not a skip.
        committed, committed_path = load_committed_selection(
            dataset, version, selection_dir, spec=spec
        )
    store = (
        storage
        if storage is not None and not isinstance(storage, str)
        else open_storage(storage, endpoint_url=endpoint_url)
    )
    proc_key = layout.processed_manifest(dataset, version)
    processed = load_verified_manifest(store, proc_key, phase="preprocess", verify=False)
    kind = str(processed.parameters.get("kind", "text"))
    train = processed.output("split:train")
    train_prefix = layout.processed_split(dataset, version, "train")
    # Verify what will be read: the train split file, and for images the train images.
    to_verify = [train] + [o for o in processed.outputs if o.role == "image:train"]
    verify_entries(store, to_verify)

    with staging_dir("calibrate-") as tmp:
        stage = Path(tmp)
        local = store.local_path(train.path) or store.download(
            train.path, stage / Path(train.path).name
        )
        records = _read_train(local, kind)
        ids, edges, strata = select_calibration((_candidate(r, kind) for r in records), spec)
        selection = CalibrationSelection(
            dataset=dataset,
            version=version,
            kind=kind,  # type: ignore[arg-type]
            spec=spec,
            train_sha256=train.sha256,
            size_edges=edges,
            strata=strata,
            ids=ids,
        )
        diff = diff_selections(committed, selection) if committed is not None else None
        proposal = None
        if propose:
            proposal = write_proposal(
                selection, selection_dir=selection_dir, proposal_dir=proposal_dir
            )
        else:
            assert committed is not None
            verify_selection(committed, selection, path=committed_path)
        wanted = set(ids)
        chosen = sorted((r for r in records if r["id"] in wanted), key=lambda r: r["id"])
        out = stage / "out"
        out.mkdir()
        with (out / "samples.jsonl").open("w", encoding="utf-8", newline="\n") as fh:
            for r in chosen:
                fh.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
        (out / "selection.yaml").write_text(selection.to_yaml(), encoding="utf-8")
        cal_prefix = layout.calibration_dir(dataset)
        store.delete(layout.calibration_manifest(dataset))
        store.delete_prefix(cal_prefix)
        outputs: list[FileEntry] = []
        for name, role in (("samples.jsonl", "samples"), ("selection.yaml", "selection")):
            d = store.put_file(out / name, layout.join(cal_prefix, name))
            outputs.append(FileEntry(path=d.path, sha256=d.sha256, size=d.size, role=role))
        if kind == "image":
            for i, r in enumerate(chosen, start=1):
                src = layout.join(train_prefix, r["file"])
                data = store.get_bytes(src)
                d = store.put_bytes(data, layout.join(cal_prefix, r["file"]))
                outputs.append(FileEntry(path=d.path, sha256=d.sha256, size=d.size, role="image"))
                if progress is not None:
                    progress("images", i, len(chosen))

    inputs = [
        manifest_entry(processed, proc_key),
        train,
    ]
    labels = list(processed.parameters.get("labels") or [])
    by_label = Counter(r["label"] for r in chosen)
    counts = {"candidates": len(records), "selected": len(ids)}
    counts.update({f"label_{i}": by_label.get(i, 0) for i in range(len(labels))})
    status: SelectionStatus = "proposed" if propose else "committed"
    manifest = new_manifest(
        phase="calibrate",
        dataset=dataset,
        version=version,
        inputs=inputs,
        outputs=outputs,
        record_counts=counts,
        parameters={
            "spec": spec.model_dump(mode="json"),
            "kind": kind,
            "labels": labels,
            "selection": {"status": status, "file": selection.file_name},
        },
        experiment_id=processed.experiment_id,
    )
    manifest_key = layout.calibration_manifest(dataset)
    write_manifest(store, manifest_key, manifest)
    return CalibrationResult(
        selection,
        manifest_key,
        manifest,
        proposal or committed_path,
        status,
        proposal,
        diff if propose else None,
        committed_path,
    )


@dataclass(frozen=True)
class VerifiedCalibrationSet:
    """A stored calibration set whose selection was checked (:func:`verify_calibration_set`).

    Attributes
    ----------
    manifest : Manifest
        The calibration manifest (schema-validated, every file re-hashed).
    manifest_key : str
        Its key.
    selection : CalibrationSelection
        The stored selection (equal to the one it was checked against).
    selection_path : Path
        The file it was checked against: the committed selection, or a proposal.
    status : {"committed", "proposed"}
        Which of the two it was.
    """

    manifest: Manifest
    manifest_key: str
    selection: CalibrationSelection
    selection_path: Path
    status: SelectionStatus


def verify_calibration_set(
    dataset: str,
    version: str | None = None,
    *,
    storage: Storage | str | None = None,
    endpoint_url: str | None = None,
    selection_dir: str | os.PathLike[str] | None = None,
    proposal_dir: str | os.PathLike[str] | None = None,
) -> VerifiedCalibrationSet:
    """Check the stored calibration set of ``dataset`` against the committed selection.

    The calibration manifest is schema-validated and every file it lists re-hashed; the
    stored selection must be for ``version`` (default: the version it was drawn from) and
    equal, field for field, the committed selection of that version; the stored samples must
    be exactly its ids.

    Parameters
    ----------
    dataset : str
        Dataset name.
    version : str, optional
        The dataset version the set must come from; None accepts the stored set's version
        (still checked against that version's committed selection).
    storage, endpoint_url
        As for :func:`calibrate`.
    selection_dir : path, optional
        Folder of committed selections (None or ``''``: the default, as for :func:`calibrate`).
    proposal_dir : path, optional
        Check against the *proposed* selection in this folder instead (a run that proposed
        its selection, :func:`calibrate` with ``propose=True`` and the same ``proposal_dir``).
        The result says ``status="proposed"``.

    Raises
    ------
    SelectionMissingError
        No committed selection (or no proposal in ``proposal_dir``).
    SelectionMismatchError
        The stored selection differs from it (carries the difference).
    CalibrationError
        The stored set is of another version, or its samples are not its selection.
    ManifestError, InputChangedError
        A missing or invalid manifest; a stored file that changed.
    """
    store = (
        storage
        if storage is not None and not isinstance(storage, str)
        else open_storage(storage, endpoint_url=endpoint_url)
    )
    key = layout.calibration_manifest(dataset)
    manifest = load_verified_manifest(store, key, phase="calibrate")
    stored_version = manifest.dataset.version
    if version is not None and stored_version != version:
        raise CalibrationError(
            f"the stored calibration set of {dataset!r} was drawn from {dataset}/"
            f"{stored_version}, not {dataset}/{version}: run `ordinal data calibrate {dataset} "
            f"--version {version}` (library: calibrate({dataset!r}, {version!r}))"
        )
    version = stored_version
    try:
        stored = CalibrationSelection.model_validate(
            _yaml_load(store.get_bytes(manifest.output("selection").path))
        )
    except ValueError as exc:
        raise CalibrationError(
            f"invalid stored calibration selection of {dataset}: {exc}"
        ) from None
    status: SelectionStatus
    if proposal_dir is not None and str(proposal_dir) != "":
        path = proposal_path(dataset, version, proposal_dir=proposal_dir)
        if not path.is_file():
            raise SelectionMissingError(
                dataset, version, str(path), next_step=propose_command(dataset, version)
            )
        reference, status = load_selection(path), "proposed"
    else:
        reference, path = load_committed_selection(dataset, version, selection_dir)
        status = "committed"
    diff = diff_selections(reference, stored)
    if diff:
        raise SelectionMismatchError(
            dataset,
            version,
            str(path),
            diff,
            next_step=propose_command(dataset, version, stored.spec),
            what="stored",
        )
    lines = store.get_bytes(manifest.output("samples").path).decode("utf-8").splitlines()
    sample_ids = sorted(str(json.loads(line)["id"]) for line in lines if line.strip())
    if sample_ids != stored.ids:
        raise CalibrationError(
            f"the stored calibration samples of {dataset}/{version} are not its selection "
            f"({len(sample_ids)} samples, {len(stored.ids)} selected ids)"
        )
    return VerifiedCalibrationSet(manifest, key, stored, path, status)


def _yaml_load(data: bytes) -> Any:
    import yaml

    try:
        return yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
