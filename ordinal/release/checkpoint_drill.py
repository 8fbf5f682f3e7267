"""The checkpoint-restore drill: resume a run from a stored mid-training checkpoint, compare.

A training folder (``spec.output_dir`` of :func:`ordinal.training.train_ordinal_model`: the
``checkpoints/`` it wrote and the final ``model/``) is the evidence. The drill copies one
stored mid-training checkpoint into a fresh folder, resumes training through the library's
own resume path to the run's final step, and compares the final weights and evaluation
metrics with the run's own, within :class:`RestoreSpec`'s tolerances. Nothing raises: each
stage's outcome and its numbers are in the :class:`~ordinal.release.drill.DrillReport`.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ordinal.release.drill import DrillReport

__all__ = [
    "RestoreSpec",
    "checkpoint_restore_drill",
    "rehearse_checkpoint_restore",
    "rehearse_run_checkpoint_restore",
    "train_fixture_run",
]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
#: Written by ``train_ordinal_model`` beside the checkpoints: the run's non-resumable settings
#: (``ordinal.training.TRAIN_SPEC_FILE``; not imported here, which would load torch with the
#: release package; a test keeps the two equal).
SPEC_FILE = "train_spec.json"
WEIGHTS_FILE = "model.safetensors"


class RestoreSpec(BaseModel):
    """Tolerances of the checkpoint-restore drill, and the size of its fixture run.

    A resumed run replays the same batches with the same RNG states as the uninterrupted
    one, so on one machine the two agree to float32 rounding; the tolerances leave room for
    that only (as ``tests/test_checkpointing.py`` does).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight_atol: float = Field(1e-4, gt=0, description="Largest |resumed - original| weight")
    metric_atol: float = Field(1e-4, gt=0, description="Largest |resumed - original| metric")
    fixture_model: str = Field("bert-tiny", description="Model of the drill's own fixture run")
    fixture_steps: int = Field(16, ge=2, description="Optimiser steps of the fixture run")
    fixture_save_steps: int = Field(8, ge=1, description="Checkpoint cadence of the fixture")
    fixture_records: int = Field(160, ge=10, description="Synthetic reviews (80% train)")
    seed: int = 0

    @model_validator(mode="after")
    def _mid_checkpoint(self) -> RestoreSpec:
        if self.fixture_save_steps >= self.fixture_steps:
            raise ValueError(
                f"fixture_save_steps ({self.fixture_save_steps}) must be below fixture_steps "
                f"({self.fixture_steps}): the fixture needs a mid-training checkpoint"
            )
        return self

    @classmethod
    def quick(cls, **overrides: Any) -> RestoreSpec:
        """The defaults: a seconds-long fixture run on bert-tiny (tests, on-demand drills)."""
        return cls(**overrides)


def _step_of(checkpoint: Path) -> int:
    match = _CHECKPOINT.match(checkpoint.name)
    return int(match.group(1)) if match else -1


def _complete_checkpoints(checkpoint_dir: Path) -> list[Path]:
    from ordinal.training import is_complete_checkpoint

    if not checkpoint_dir.is_dir():
        return []
    found = [
        p
        for p in checkpoint_dir.iterdir()
        if p.is_dir() and _step_of(p) >= 0 and is_complete_checkpoint(p)
    ]
    return sorted(found, key=_step_of)


def _max_abs_weight_difference(a: Path, b: Path) -> tuple[float, int, list[str]]:
    """Largest absolute difference over every tensor; the tensor count; mismatched names."""
    from safetensors.torch import load_file

    left, right = load_file(str(a)), load_file(str(b))
    mismatched = sorted(set(left) ^ set(right))
    mismatched += sorted(k for k in set(left) & set(right) if left[k].shape != right[k].shape)
    worst = 0.0
    for key in set(left) & set(right):
        if left[key].shape != right[key].shape:
            continue
        if left[key].numel():
            diff = (left[key].double() - right[key].double()).abs().max().item()
            worst = max(worst, float(diff))
    return worst, len(left), mismatched


def checkpoint_restore_drill(
    training_dir: str | os.PathLike[str],
    train_records: Sequence[dict[str, Any]],
    eval_records: Sequence[dict[str, Any]] | None = None,
    *,
    reference_metrics: dict[str, float] | None = None,
    spec: RestoreSpec | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    name: str = "checkpoint-restore",
) -> DrillReport:
    """Resume ``training_dir``'s run from a stored checkpoint in a fresh folder and compare.

    Parameters
    ----------
    training_dir : path
        The run's training folder: ``checkpoints/`` (with ``train_spec.json`` and complete
        ``checkpoint-N`` folders) and the final ``model/``.
    train_records, eval_records : sequence of dict
        The records the run trained and evaluated on (the same order).
    reference_metrics : dict, optional
        The run's own final evaluation metrics (``eval_mae``, ...); compared when given and
        ``eval_records`` are given.
    spec : RestoreSpec, optional
        Tolerances (default :class:`RestoreSpec`).
    checkpoint : path, optional
        The checkpoint to restore; default the newest complete one before the final step.
    work_dir : path, optional
        The fresh folder to resume in (default a temporary folder, removed afterwards).

    Returns
    -------
    DrillReport
        Stages ``select``, ``resume``, ``weights`` and (with metrics) ``metrics``, each with
        its numbers; ``passed`` when every stage passed.
    """
    spec = spec or RestoreSpec()
    training_dir = Path(training_dir)
    report = DrillReport(name=name, version=str(training_dir), passed=False)
    checkpoint_dir = training_dir / "checkpoints"
    final_weights = training_dir / "model" / WEIGHTS_FILE
    stored = _complete_checkpoints(checkpoint_dir)
    if not stored or not final_weights.is_file() or not (checkpoint_dir / SPEC_FILE).is_file():
        report.stages["select"] = {
            "passed": False,
            "detail": f"{training_dir} needs checkpoints/{SPEC_FILE}, complete checkpoints and "
            f"model/{WEIGHTS_FILE}; found {len(stored)} complete checkpoints",
        }
        return report
    final = stored[-1]
    final_state = json.loads((final / "trainer_state.json").read_text(encoding="utf-8"))
    final_step = int(final_state["global_step"])
    max_steps = int(final_state.get("max_steps") or final_step)
    if checkpoint is not None:
        chosen = Path(checkpoint)
        if chosen not in stored:
            report.stages["select"] = {
                "passed": False,
                "detail": f"{chosen} is not a complete checkpoint of {checkpoint_dir}",
            }
            return report
    else:
        earlier = [p for p in stored if _step_of(p) < final_step]
        if not earlier:
            report.stages["select"] = {
                "passed": False,
                "detail": f"no stored checkpoint before the final step {final_step} "
                f"(stored: {[p.name for p in stored]})",
            }
            return report
        chosen = earlier[-1]
    report.stages["select"] = {
        "passed": True,
        "detail": f"{chosen.name} of {[p.name for p in stored]} (final step {final_step})",
        "checkpoint_step": _step_of(chosen),
        "final_step": final_step,
    }

    own = work_dir is None
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="checkpoint-drill-"))
    try:
        return _resume_and_compare(
            report,
            training_dir,
            chosen,
            train_records,
            eval_records,
            reference_metrics,
            spec,
            root,
            max_steps,
            final_step,
        )
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _resume_and_compare(
    report: DrillReport,
    training_dir: Path,
    chosen: Path,
    train_records: Sequence[dict[str, Any]],
    eval_records: Sequence[dict[str, Any]] | None,
    reference_metrics: dict[str, float] | None,
    spec: RestoreSpec,
    root: Path,
    max_steps: int,
    final_step: int,
) -> DrillReport:
    from ordinal.config import TrainSpec
    from ordinal.training import train_ordinal_model

    fresh = root / "resumed"
    if fresh.exists():
        shutil.rmtree(fresh)
    (fresh / "checkpoints").mkdir(parents=True)
    shutil.copytree(chosen, fresh / "checkpoints" / chosen.name)
    shutil.copyfile(training_dir / "checkpoints" / SPEC_FILE, fresh / "checkpoints" / SPEC_FILE)
    settings = json.loads((training_dir / "checkpoints" / SPEC_FILE).read_text(encoding="utf-8"))
    state = json.loads((chosen / "trainer_state.json").read_text(encoding="utf-8"))
    train_spec = TrainSpec(
        **settings,
        max_steps=max_steps,
        # The run's own cadence (they change nothing the model learns; the Trainer warns
        # when they differ from the checkpoint's).
        save_steps=int(state.get("save_steps") or max_steps),
        logging_steps=int(state.get("logging_steps") or 10),
        output_dir=fresh,
        resume=True,
        report_to=[],
        checkpoint_interval_seconds=None,
        progress_interval_seconds=None,
        eval_each_epoch=False,
    )
    started = time.perf_counter()
    try:
        result = train_ordinal_model(train_spec, train_records, eval_records or None)
    except Exception as exc:  # a drill reports the failure, whatever it is
        report.stages["resume"] = {"passed": False, "detail": f"{type(exc).__name__}: {exc}"}
        return report
    seconds = time.perf_counter() - started
    resumed_ok = (
        result.resumed_from is not None
        and result.resumed_from.name == chosen.name
        and result.global_step == final_step
    )
    report.stages["resume"] = {
        "passed": resumed_ok,
        "detail": f"resumed from {result.resumed_from.name if result.resumed_from else None} "
        f"to step {result.global_step} (run's final step {final_step}) in {seconds:.1f} s",
        "seconds": round(seconds, 3),
        "global_step": result.global_step,
    }
    worst, count, mismatched = _max_abs_weight_difference(
        training_dir / "model" / WEIGHTS_FILE, result.model_dir / WEIGHTS_FILE
    )
    note = f"; mismatched tensors {mismatched}" if mismatched else ""
    report.stages["weights"] = {
        "passed": not mismatched and worst <= spec.weight_atol,
        "detail": f"max |resumed - original| = {worst:.3g} over {count} tensors "
        f"(atol {spec.weight_atol:g}){note}",
        "max_abs": worst,
        "atol": spec.weight_atol,
    }
    if reference_metrics and eval_records:
        diffs: dict[str, float] = {}
        missing = []
        for key, value in sorted(reference_metrics.items()):
            if not key.startswith("eval_") or key.endswith(("_runtime", "_per_second")):
                continue  # timings differ by nature
            if not math.isfinite(float(value)):
                continue
            if key not in result.metrics:
                missing.append(key)
                continue
            diffs[key] = abs(float(result.metrics[key]) - float(value))
        worst_metric = max(diffs.values(), default=0.0)
        report.stages["metrics"] = {
            "passed": bool(diffs) and not missing and worst_metric <= spec.metric_atol,
            "detail": f"max |resumed - original| = {worst_metric:.3g} over {sorted(diffs)} "
            f"(atol {spec.metric_atol:g})" + (f"; missing {missing}" if missing else ""),
            "differences": diffs,
            "resumed": {k: float(result.metrics[k]) for k in diffs},
            "atol": spec.metric_atol,
        }
    report.passed = all(stage["passed"] for stage in report.stages.values())
    return report


def _fixture_records(spec: RestoreSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from ordinal.data import make_review_records

    records = make_review_records(spec.fixture_records, seed=spec.seed)
    cut = int(len(records) * 0.8)
    return records[:cut], records[cut:]


def train_fixture_run(
    output_dir: str | os.PathLike[str], spec: RestoreSpec | None = None
) -> dict[str, Any]:
    """Train the drill's own small run (``spec.fixture_model`` on synthetic reviews).

    It saves every ``fixture_save_steps`` and keeps every checkpoint, so a mid-training one
    is stored. Returns ``{"training_dir", "metrics", "global_step", "seconds"}``.
    """
    from ordinal.config import TrainSpec
    from ordinal.data import REVIEW_LABELS
    from ordinal.training import train_ordinal_model

    spec = spec or RestoreSpec()
    train, evaluation = _fixture_records(spec)
    train_spec = TrainSpec.quick(
        model=spec.fixture_model,
        output_dir=Path(output_dir),
        max_steps=spec.fixture_steps,
        save_steps=spec.fixture_save_steps,
        save_total_limit=spec.fixture_steps // spec.fixture_save_steps + 1,
        learning_rate=3e-3,
        logging_steps=max(1, spec.fixture_save_steps // 2),
        num_classes=len(REVIEW_LABELS),
        label_names=list(REVIEW_LABELS),
        eval_each_epoch=False,
        progress_interval_seconds=None,
        seed=spec.seed,
    )
    result = train_ordinal_model(train_spec, train, evaluation)
    return {
        "training_dir": str(Path(output_dir)),
        "metrics": result.metrics,
        "global_step": result.global_step,
        "seconds": result.train_seconds,
    }


def rehearse_checkpoint_restore(
    work_dir: str | os.PathLike[str] | None = None, spec: RestoreSpec | None = None
) -> DrillReport:
    """The drill on its own fixture run: train it, restore its mid checkpoint, compare."""
    spec = spec or RestoreSpec()
    own = work_dir is None
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="checkpoint-drill-"))
    try:
        started = time.perf_counter()
        fixture = train_fixture_run(root / "original", spec)
        fixture_seconds = time.perf_counter() - started
        train, evaluation = _fixture_records(spec)
        report = checkpoint_restore_drill(
            root / "original",
            train,
            evaluation,
            reference_metrics=fixture["metrics"],
            spec=spec,
            work_dir=root,
            name="checkpoint-restore (fixture run)",
        )
        report.stages = {
            "fixture": {
                "passed": True,
                "detail": f"{spec.fixture_model}, {fixture['global_step']} steps, checkpoint "
                f"every {spec.fixture_save_steps}, trained in {fixture['seconds']:.1f} s",
                "seconds": round(fixture_seconds, 3),
            },
            **report.stages,
        }
        return report
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def rehearse_run_checkpoint_restore(
    run: str | os.PathLike[str],
    *,
    storage: Any = None,
    spec: RestoreSpec | None = None,
    work_dir: str | os.PathLike[str] | None = None,
) -> DrillReport:
    """The drill on a pipeline run: its ``train`` step's checkpoints, data and metrics.

    ``run`` is a run folder or id; the dataset is read from ``storage`` (default the storage
    root the run's train step recorded) with :func:`ordinal.data.load_split`.
    """
    from ordinal.artifacts import open_storage
    from ordinal.data import load_split
    from ordinal.release.run_source import find_run_dir

    run_dir = find_run_dir(run)
    report = DrillReport(name="checkpoint-restore", version=str(run_dir), passed=False)
    outputs_file = run_dir / "train" / "outputs.json"
    if not outputs_file.is_file():
        report.stages["select"] = {"passed": False, "detail": f"{outputs_file} does not exist"}
        return report
    outputs = json.loads(outputs_file.read_text(encoding="utf-8"))
    if storage is None:
        params_file = run_dir / "train" / "result.json"
        if params_file.is_file():
            params = json.loads(params_file.read_text(encoding="utf-8")).get("params") or {}
            storage = params.get("storage") or None
    store = storage if not isinstance(storage, str | type(None)) else open_storage(storage)
    train = load_split(outputs["dataset"], outputs["version"], "train", storage=store)
    evaluation = load_split(outputs["dataset"], outputs["version"], "validation", storage=store)
    training_dir = Path(outputs.get("model_dir") or run_dir / "train" / "model").parent
    return checkpoint_restore_drill(
        training_dir,
        train,
        evaluation,
        reference_metrics=outputs.get("metrics") or {},
        spec=spec,
        work_dir=work_dir,
        name=f"checkpoint-restore {run_dir.name}",
    )
