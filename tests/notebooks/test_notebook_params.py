"""The committed notebooks keep the contract papermill and the pipeline rely on.

Each step notebook's ``parameters`` cell is exactly its step's pydantic model (names, order,
defaults); notebooks are committed clean (no outputs, no execution counts); they import the
``ordinal`` library's public modules only, never the pipeline layer. Running them is the
nbval command's job (``pytest --nbval-lax notebooks``), not these tests'.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import papermill
import pytest

from pipelines.steps import NOTEBOOK_DIR, STEPS

RESEARCH = NOTEBOOK_DIR / "research" / "explore_and_train.ipynb"
ALL_NOTEBOOKS = sorted(NOTEBOOK_DIR.rglob("*.ipynb"))
FORBIDDEN = {"pipelines", "prefect", "papermill"}
# Library packages a notebook may import from: ``ordinal`` itself, and these with their
# public submodules (e.g. ordinal.export.parity).
PACKAGES = ("ordinal.artifacts", "ordinal.data", "ordinal.export", "ordinal.plots", "ordinal.runs")


def _read(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    return nb


def _parameter_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def _imports(nb: nbformat.NotebookNode) -> set[str]:
    """Every module a code cell imports (IPython magics and shell lines dropped)."""
    found: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
    return found


def test_every_step_has_its_notebook_and_nothing_else_is_there():
    expected = {step.path for step in STEPS.values()} | {RESEARCH}
    assert set(ALL_NOTEBOOKS) == expected


@pytest.mark.parametrize("name", list(STEPS))
def test_parameters_cell_is_the_step_model(name):
    step = STEPS[name]
    inferred = papermill.inspect_notebook(str(step.path))
    fields = step.params.model_fields
    assert list(inferred) == list(fields), f"{step.notebook} parameters differ from {step.params}"
    for field_name, field in fields.items():
        value = ast.literal_eval(inferred[field_name]["default"])
        default = field.get_default(call_default_factory=True)
        assert value == default and type(value) is type(default), (
            f"{step.notebook}: {field_name} = {value!r}, the model's default is {default!r}"
        )
        assert inferred[field_name]["help"], f"{step.notebook}: {field_name} has no comment"


@pytest.mark.parametrize("name", list(STEPS))
def test_step_notebook_shape(name):
    """Markdown first, the parameters cell next, and it ends by writing the step's outputs."""
    step = STEPS[name]
    nb = _read(step.path)
    assert nb.cells[0].cell_type == "markdown"
    assert nb.cells[1] is _parameter_cells(nb)[0]
    last = [c for c in nb.cells if c.cell_type == "code"][-1].source
    assert "write_step_outputs(" in last and f'"{name}"' in last


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_committed_clean_with_one_parameters_cell(path):
    nb = _read(path)
    assert len(_parameter_cells(nb)) == 1
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs for c in code), f"{path.name}: clear the outputs before committing"
    assert all(c.execution_count is None for c in code), f"{path.name}: execution counts set"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_import_the_public_library_only(path):
    imports = _imports(_read(path))
    assert not {m.split(".")[0] for m in imports} & FORBIDDEN
    library = {m for m in imports if m.split(".")[0] == "ordinal"}
    assert library, f"{path.name} imports nothing from ordinal"
    for module in library - {"ordinal"}:
        allowed = any(module == p or module.startswith(p + ".") for p in PACKAGES)
        assert allowed, f"{path.name} imports {module}"
        assert not any(part.startswith("_") for part in module.split(".")), module


def test_research_notebook_has_parameters():
    assert RESEARCH.is_file()
    assert papermill.inspect_notebook(str(RESEARCH))
