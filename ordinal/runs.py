"""The run folder: where each step of a run writes its outputs, and how the next step finds them.

A run folder holds one sub-folder per step (``ingest/``, ``train/``, ...). Every step ends by
writing ``{step}/outputs.json``: the paths it produced, its metrics under stable names and
the artefacts a reviewer should see. Notebooks, the command line and the pipeline's flows
all use these helpers, so a notebook run by hand and the same notebook run by the pipeline
leave the same files.

>>> import tempfile
>>> run = resolve_run_dir(tempfile.mkdtemp())
>>> _ = write_step_outputs(run, "train", {"metrics": {"eval_mae": 0.5}})
>>> read_step_outputs(run, "train")["metrics"]
{'eval_mae': 0.5}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ordinal.exceptions import OrdinalError
from ordinal.paths import state_dir

__all__ = [
    "OUTPUTS_FILE",
    "MissingStepOutputsError",
    "read_step_outputs",
    "resolve_run_dir",
    "step_dir",
    "write_step_outputs",
]

OUTPUTS_FILE = "outputs.json"
DEFAULT_RUN = "notebooks"


class MissingStepOutputsError(OrdinalError):
    """A step needs the outputs of an earlier step that has not run in this run folder."""


def resolve_run_dir(run_dir: str | os.PathLike[str] = "") -> Path:
    """The run folder ``run_dir``, created; ``""`` means ``<state>/runs/notebooks``.

    The empty default is what notebooks opened by hand use, so running the step notebooks
    top to bottom chains them through one scratch run.
    """
    path = Path(run_dir) if str(run_dir) else state_dir() / "runs" / DEFAULT_RUN
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def step_dir(run_dir: str | os.PathLike[str], step: str) -> Path:
    """The folder of ``step`` inside the run folder, created."""
    path = resolve_run_dir(run_dir) / step
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_step_outputs(run_dir: str | os.PathLike[str], step: str, outputs: dict[str, Any]) -> Path:
    """Write ``{step}/outputs.json`` atomically (temporary file, then rename); return its path.

    Paths in ``outputs`` are written as strings; the file is sorted so that the same run
    gives the same bytes.
    """
    target = step_dir(run_dir, step) / OUTPUTS_FILE
    data = json.dumps(outputs, indent=2, sort_keys=True, default=str) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".outputs-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_step_outputs(run_dir: str | os.PathLike[str], step: str) -> dict[str, Any]:
    """The outputs an earlier ``step`` recorded in this run folder.

    Raises
    ------
    MissingStepOutputsError
        The step has not completed in this run folder (its ``outputs.json`` is missing).
    """
    path = resolve_run_dir(run_dir) / step / OUTPUTS_FILE
    if not path.is_file():
        raise MissingStepOutputsError(
            f"{path} does not exist: run the {step!r} step in this run folder first"
        )
    return json.loads(path.read_text(encoding="utf-8"))
