"""A step's retries stop at a full disk: retrying would write to the same full disk again.

Real Prefect task retries around the real notebook runner; stand-in notebooks
(``toy_notebooks``) whose second cell raises. Each execution appends a line to a counter
file outside the run folder, so the test counts executions, not log lines.
"""

from __future__ import annotations

import errno

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from prefect import flow

from pipelines.errors import NotebookStepError, is_disk_full
from pipelines.steps import NOTEBOOK_DIR_ENV, STEPS
from pipelines.tasks import step_task
from tests.pipelines.toy_notebooks import write_toy_notebooks


@flow(name="retry-check")
def _run_with_a_retry(params: dict) -> str:
    state = step_task("preprocess", params, retries=1, retry_delay_seconds=0)(
        "preprocess", params, return_state=True
    )
    return state.name


def _sabotage(notebooks, counter, raise_line: str) -> None:
    path = notebooks / STEPS["preprocess"].notebook
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(2, new_code_cell(f"open({str(counter)!r}, 'a').write('x\\n')\n{raise_line}"))
    nbformat.write(nb, path)


@pytest.mark.parametrize(
    ("raise_line", "executions"),
    [
        # As a kernel reports a write to a full disk.
        (f"raise OSError({errno.ENOSPC}, 'No space left on device')", 1),
        ("raise ConnectionResetError('connection reset by peer')", 2),
    ],
    ids=["disk-full-not-retried", "other-error-retried"],
)
def test_retries_stop_at_a_full_disk(raise_line, executions, tmp_path, monkeypatch):
    notebooks = write_toy_notebooks(tmp_path / "notebooks")
    counter = tmp_path / "executions.txt"
    _sabotage(notebooks, counter, raise_line)
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(notebooks))
    params = {"run_dir": str(tmp_path / "run"), "dataset": "retry-check"}
    assert _run_with_a_retry(params) == "Failed"
    assert counter.read_text().count("x") == executions


def test_is_disk_full_reads_a_kernels_error_and_a_cause(tmp_path):
    kernel = NotebookStepError(
        "train", 3, "OSError", "[Errno 28] No space left on device", tmp_path / "n.ipynb", None
    )
    assert is_disk_full(kernel)
    wrapped = RuntimeError("publishing failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "disk")
    assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(None)
