"""``run_notebook``'s cache: the same notebook and parameters are served from the cache; an
edited notebook, or a step whose files were deleted, never is. Stand-in notebooks
(``toy_notebooks``) keep this to seconds."""

from __future__ import annotations

import shutil

import nbformat
from prefect import flow

from pipelines.steps import NOTEBOOK_DIR_ENV, STEPS
from pipelines.tasks import step_task
from tests.pipelines.toy_notebooks import write_toy_notebooks


@flow(name="cache-check")
def _run_twice(params: dict) -> list[str]:
    first = step_task("preprocess", params)("preprocess", params, return_state=True)
    second = step_task("preprocess", params)("preprocess", params, return_state=True)
    return [first.name, second.name]


def test_same_notebook_and_parameters_hit_the_cache_an_edit_misses(tmp_path, monkeypatch):
    notebooks = write_toy_notebooks(tmp_path / "notebooks")
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(notebooks))
    params = {"run_dir": str(tmp_path / "run"), "dataset": "cache-check"}
    assert _run_twice(params) == ["Completed", "Cached"]
    executed = tmp_path / "run" / "preprocess" / "notebook.ipynb"
    stamp = executed.stat().st_mtime_ns

    path = notebooks / STEPS["preprocess"].notebook
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source += "\n# an edit"
    nbformat.write(nb, path)
    assert _run_twice(params) == ["Completed", "Cached"]
    assert executed.stat().st_mtime_ns != stamp  # the edited notebook really ran
    assert "# an edit" in executed.read_text(encoding="utf-8")

    shutil.rmtree(tmp_path / "run" / "preprocess")  # e.g. a cleaned-up run folder
    assert _run_twice(params) == ["Completed", "Cached"]
    assert executed.is_file() and (tmp_path / "run" / "preprocess" / "outputs.json").is_file()

    # Other parameters overwrite the step's folder; going back runs again rather than
    # serving the older cache entry beside files it did not make.
    assert _run_twice({**params, "dataset": "other"}) == ["Completed", "Cached"]
    assert _run_twice(params) == ["Completed", "Cached"]
    assert "cache-check" in executed.read_text(encoding="utf-8")
