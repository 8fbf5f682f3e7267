"""Stand-in step notebooks for testing the notebook runner and the flow's control paths.

They take exactly the real notebooks' parameters (from the step models) and write the declared
outputs in a second, so failure, teardown and caching paths can be tested without training.
The real notebooks are covered by nbval and by the end-to-end pipeline tests.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from pipelines.steps import STEPS


def write_toy_notebooks(
    folder: Path, fail: str = "", sleep: dict[str, float] | None = None
) -> Path:
    """Write one toy notebook per step into ``folder``; ``fail`` names a step that raises."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, step in STEPS.items():
        params = "\n".join(
            f"{k} = {f.get_default(call_default_factory=True)!r}"
            for k, f in step.params.model_fields.items()
        )
        body = [
            "import json, time",
            "from ordinal.paths import state_dir",
            "from ordinal.runs import resolve_run_dir, step_dir, write_step_outputs",
            "run = resolve_run_dir(run_dir)",
            f"folder = step_dir(run, {name!r})",
            f"time.sleep({(sleep or {}).get(name, 0.0)!r})",
        ]
        cells = [
            new_code_cell(params, metadata={"tags": ["parameters"]}),
            new_code_cell("\n".join(body)),
        ]
        if name == fail:
            cells.append(new_code_cell(f"raise RuntimeError('sabotaged {name} step')"))
        out = [
            f"p = run / {rel!r}\np.parent.mkdir(parents=True, exist_ok=True)\np.write_text('[]')"
            for rel in step.outputs
        ]
        out.append(
            f"write_step_outputs(run, {name!r}, {{'step': {name!r}, "
            "'metrics': {'eval_mae': 0.5}, 'artifacts': [], "
            "'model_dir': str(folder), 'onnx_path': str(folder), 'int8_path': str(folder), "
            "'state_dir': str(state_dir())})"
        )
        cells.append(new_code_cell("\n".join(out)))
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nbformat.write(nb, folder / step.notebook)
    return folder
