"""The notebook runner under ``run_notebook``: validation, execution, rendering, typed errors.

The step notebooks here are stand-ins (``toy_notebooks``) with the real parameter cells, so
these tests exercise the runner's paths in seconds; the real notebooks run in nbval and in
the end-to-end pipeline tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

import ordinal
from pipelines.errors import MissingOutputsError, NotebookStepError, StepParametersError
from pipelines.notebooks import cache_key, execute_step, validate_params
from pipelines.steps import NOTEBOOK_DIR_ENV, STEPS, get_step
from tests.pipelines.toy_notebooks import write_toy_notebooks


@pytest.fixture
def toys(tmp_path, monkeypatch):
    folder = write_toy_notebooks(tmp_path / "notebooks")
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(folder))
    return folder


def test_bad_parameters_list_every_field_and_start_no_kernel(toys, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(StepParametersError) as info:
        execute_step(
            "train",
            {"run_dir": str(run_dir), "epochs": -1, "batch_size": "many", "optimiser": "sgd"},
        )
    fields = [field for field, _ in info.value.problems]
    assert fields == ["epochs", "batch_size", "optimiser"]
    message = str(info.value)
    assert "step 'train'" in message
    assert "greater than 0 (got -1)" in message
    assert "Extra inputs are not permitted (got 'sgd')" in message
    assert not run_dir.exists()  # nothing ran, nothing was written


def test_unknown_step_names_the_known_ones():
    with pytest.raises(KeyError, match="known steps: \\['ingest', 'preprocess'"):
        get_step("deploy")


def test_a_step_keeps_its_executed_notebook_html_and_outputs(toys, tmp_path):
    result = execute_step("ingest", {"run_dir": str(tmp_path / "run"), "source": "demo-shapes"})
    assert result.metrics == {"eval_mae": 0.5}
    assert result.notebook == tmp_path / "run" / "ingest" / "notebook.ipynb"
    executed = nbformat.read(result.notebook, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert 'source = "demo-shapes"' in injected[0].source
    assert f'run_dir = "{tmp_path / "run"}"' in injected[0].source
    assert "<html" in result.html.read_text(encoding="utf-8")
    assert result.params["source"] == "demo-shapes"
    assert result.timings["execute"] > 0 and result.timings["render"] > 0


def test_a_failing_cell_raises_a_typed_error_and_is_rendered(tmp_path, monkeypatch):
    folder = write_toy_notebooks(tmp_path / "notebooks", fail="export")
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(folder))
    run_dir = tmp_path / "run"
    # A previous successful attempt's outputs must not vouch for the failed one.
    (run_dir / "export").mkdir(parents=True)
    (run_dir / "export" / "outputs.json").write_text("{}")
    with pytest.raises(NotebookStepError) as info:
        execute_step("export", {"run_dir": str(run_dir)})
    error = info.value
    assert error.step == "export"
    assert error.ename == "RuntimeError"
    assert error.evalue == "sabotaged export step"
    executed = nbformat.read(error.notebook, as_version=4)
    failing = executed.cells[error.cell_index]
    assert "raise RuntimeError" in failing.source
    assert any(o.get("output_type") == "error" for o in failing.outputs)
    html = error.html.read_text(encoding="utf-8")
    assert "sabotaged export step" in html and "RuntimeError" in html
    assert not (run_dir / "export" / "outputs.json").exists()
    assert f"cell {error.cell_index}" in str(error)


def test_missing_declared_outputs_are_an_error(toys, tmp_path):
    # The toy train notebook writes every declared output; take one away by a stand-in
    # notebook that only writes outputs.json.
    source = nbformat.read(toys / STEPS["train"].notebook, as_version=4)
    source.cells[-1].source = source.cells[-1].source.split("write_step_outputs", 1)[0]
    source.cells[-1].source += "write_step_outputs(run, 'train', {'metrics': {}})"
    source.cells[-1].source = source.cells[-1].source.replace("p.write_text('[]')", "pass")
    nbformat.write(source, toys / STEPS["train"].notebook)
    with pytest.raises(MissingOutputsError) as info:
        execute_step("train", {"run_dir": str(tmp_path / "run")})
    names = sorted(p.name for p in info.value.missing)
    assert names == ["config.json", "history.json"]


def test_cache_key_follows_notebook_bytes_parameters_and_library_version(toys, monkeypatch):
    params = validate_params("parity", {"run_dir": "/runs/a"})
    key = cache_key("parity", params)
    assert key.startswith("parity-")
    assert cache_key("parity", params) == key
    assert cache_key("parity", validate_params("parity", {"run_dir": "/runs/b"})) != key
    monkeypatch.setattr(ordinal, "__version__", "9.9.9")
    assert cache_key("parity", params) != key
    monkeypatch.undo()
    monkeypatch.setenv(NOTEBOOK_DIR_ENV, str(toys))
    path = toys / STEPS["parity"].notebook
    nb = json.loads(path.read_text())
    nb["cells"][1]["source"] += "\n# edited"
    path.write_text(json.dumps(nb))
    assert cache_key("parity", params) != key


def test_kernels_share_the_callers_state_folder(toys, tmp_path, monkeypatch):
    # Kernels run in their step's folder; the default store must not move there with them.
    monkeypatch.delenv("ORDINAL_HOME")
    monkeypatch.chdir(tmp_path)
    result = execute_step("ingest", {"run_dir": str(tmp_path / "run")})
    assert result.outputs["state_dir"] == str(tmp_path / ".ordinal")


def test_cache_key_follows_the_code_that_runs_not_the_version_number(tmp_path, monkeypatch):
    """An edited library module with an unchanged ``__version__`` must not hit the cache."""
    import shutil

    import pipelines.notebooks as engine

    package = tmp_path / "ordinal"
    shutil.copytree(
        Path(ordinal.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    before = engine.code_fingerprint((package,))
    assert engine.code_fingerprint((package,)) == before
    module = package / "metrics.py"
    module.write_text(module.read_text() + "\n# an edit\n")
    after = engine.code_fingerprint((package,))
    assert after != before
    (package / "notes.txt").write_text("not code")  # data that does not run changes nothing
    assert engine.code_fingerprint((package,)) == after

    params = validate_params("parity", {"run_dir": "/runs/a"})
    monkeypatch.setattr(engine, "code_fingerprint", lambda roots=None: before)
    key = cache_key("parity", params)
    monkeypatch.setattr(engine, "code_fingerprint", lambda roots=None: after)
    assert cache_key("parity", params) != key
    # The installed packages' fingerprint is computed once and is stable.
    monkeypatch.undo()
    assert engine.code_fingerprint() == engine.code_fingerprint()


def test_rendered_plots_carry_their_description_as_alt_text(tmp_path, caplog):
    """nbconvert's own template writes no alt and logs "Alternative text is missing"; the
    project's template writes each ``ordinal.plots`` figure's description."""
    import logging

    from nbclient import NotebookClient

    from pipelines.notebooks import render_html

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "%matplotlib inline\nfrom ordinal.plots import plot_confusion_matrix\n"
            "plot_confusion_matrix([0, 1, 2, 1], [0, 1, 1, 1], ['low', 'mid', 'high'])"
        )
    ]
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    path = tmp_path / "plot.ipynb"
    nbformat.write(nb, path)
    with caplog.at_level(logging.WARNING):
        html = render_html(path, tmp_path / "plot.html").read_text(encoding="utf-8")
    assert 'alt="Confusion matrix of true against predicted labels (low, mid, high)' in html
    assert "No description has been provided" not in html
    assert "Alternative text is missing" not in caplog.text
