"""Execute one step's notebook with papermill, keep it, render it, check what it left.

This is the engine under the generic ``run_notebook`` task (:mod:`pipelines.tasks`) and has
no Prefect in it, so the benchmark and the tests can time and drive it directly. Whatever
happens in the kernel, the executed ``.ipynb`` is kept and rendered to HTML (a failed cell
shows its traceback there) before an error is raised.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import ordinal
from ordinal.paths import STATE_DIR_ENV, state_dir
from ordinal.runs import OUTPUTS_FILE, resolve_run_dir
from pipelines.errors import MissingOutputsError, NotebookStepError, StepParametersError
from pipelines.steps import STEPS, Step, StepParams, get_step

__all__ = [
    "KERNEL_NAME",
    "StepResult",
    "cache_key",
    "code_fingerprint",
    "execute_step",
    "render_html",
    "step_reports",
    "validate_params",
]

log = logging.getLogger(__name__)

# The native kernel of the interpreter running the pipeline: the same venv, no kernelspec
# to install.
KERNEL_NAME = "python3"
NOTEBOOK_FILE = "notebook.ipynb"
HTML_FILE = "notebook.html"
#: ``graceful`` lets step kernels exit normally (the test suite sets it to measure coverage
#: inside kernels); the default ``immediate`` saves seconds per step.
KERNEL_SHUTDOWN_ENV = "ORDINAL_KERNEL_SHUTDOWN"
#: nbconvert templates of the project (``ordinal``: the lab template with image alt text).
TEMPLATES = Path(__file__).with_name("templates") / "nbconvert"
#: The cache key of the completed execution whose files the step's folder holds.
KEY_FILE = "cache_key.txt"


@dataclass
class StepResult:
    """What one executed step produced (all paths absolute)."""

    step: str
    params: dict[str, Any]
    notebook: Path
    html: Path
    outputs: dict[str, Any]
    seconds: float
    cache_key: str
    timings: dict[str, float] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    #: The MLflow parent run of the pipeline run that executed the step. A result served
    #: from Prefect's cache keeps the one of the run that executed it.
    tracked_under: str | None = None

    @property
    def metrics(self) -> dict[str, float]:
        """The step's metrics under their stable names."""
        return {k: float(v) for k, v in (self.outputs.get("metrics") or {}).items()}

    @property
    def artifacts(self) -> list[Path]:
        """Files the step asks a reviewer to see (reports, manifests)."""
        return [Path(p) for p in self.outputs.get("artifacts") or []]

    @property
    def record_files(self) -> list[Path]:
        """What its MLflow record holds: notebook, HTML, ``outputs.json`` and the artifacts."""
        return [self.notebook, self.html, self.notebook.parent / OUTPUTS_FILE, *self.artifacts]


def validate_params(step: Step | str, params: StepParams | dict[str, Any]) -> StepParams:
    """Check ``params`` against the step's model; every field problem is listed at once.

    Raises
    ------
    StepParametersError
        Unknown fields, wrong types or values out of range, before any kernel starts.
    """
    step = get_step(step) if isinstance(step, str) else step
    if isinstance(params, step.params):
        return params
    if isinstance(params, StepParams):
        params = params.model_dump()
    try:
        return step.params.model_validate(params)
    except ValidationError as exc:
        raise StepParametersError.from_validation(f"step {step.name!r}", exc) from None


#: The packages whose code a step runs: the library and this orchestration layer.
CODE_PACKAGES = ("ordinal", "pipelines")
_CODE_SUFFIXES = (".py", ".json", ".yaml", ".yml", ".j2")


def code_fingerprint(roots: tuple[Path, ...] | None = None) -> str:
    """sha256 over the source files of the code a step runs (``CODE_PACKAGES`` by default).

    The key covers each file's path relative to its package root and its bytes, so an edit
    to any module, schema or shipped config (installed or in a checkout) gives a new
    fingerprint while the version number stays the same. Computed once per process for the
    default roots; ~100 small files, a few milliseconds.
    """
    if roots is None:
        return _installed_code_fingerprint()
    digest = hashlib.sha256()
    for root in roots:
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and p.suffix in _CODE_SUFFIXES and "__pycache__" not in p.parts
        )
        for path in files:
            digest.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def _installed_code_fingerprint() -> str:
    import importlib

    roots = tuple(
        Path(importlib.import_module(name).__file__).resolve().parent for name in CODE_PACKAGES
    )
    return code_fingerprint(roots)


def cache_key(step: Step | str, params: StepParams) -> str:
    """Idempotence key: the notebook's bytes, the parameters, the code that runs and the
    outputs the run's earlier steps recorded.

    A changed notebook, parameter, library or pipeline source file (not only a new release
    number: :func:`code_fingerprint`) or upstream result gives a new key, so an edited (or
    re-fed) step is never served from a cache.
    """
    step = get_step(step) if isinstance(step, str) else step
    digest = hashlib.sha256()
    digest.update(step.name.encode())
    digest.update(hashlib.sha256(step.path.read_bytes()).digest())
    digest.update(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(ordinal.__version__.encode())
    digest.update(code_fingerprint().encode())
    # What the earlier steps of this run left: a retrained model changes train's outputs,
    # so export, parity and quantise run again instead of vouching for the old model.
    if params.run_dir:
        for name in STEPS:
            if name == step.name:
                break
            upstream = Path(params.run_dir) / name / OUTPUTS_FILE
            if upstream.is_file():
                digest.update(name.encode() + hashlib.sha256(upstream.read_bytes()).digest())
    return f"{step.name}-{digest.hexdigest()[:32]}"


def step_reports(run_dir: str | Path, step: str) -> list[Path]:
    """Reports a step left in its folder (``*.md``, ``*.json``), e.g. a failed gate's."""
    folder = Path(run_dir) / step
    skip = {OUTPUTS_FILE, "result.json"}
    return sorted(
        p for p in folder.glob("*") if p.suffix in (".md", ".json") and p.name not in skip
    )


@functools.lru_cache(maxsize=1)
def _exporter():
    from nbconvert import HTMLExporter

    # JupyterLab's look, plus alt text on images (templates/nbconvert/ordinal).
    return HTMLExporter(template_name="ordinal", extra_template_basedirs=[str(TEMPLATES)])


def render_html(notebook: Path, html: Path) -> Path:
    """Render an executed notebook to standalone HTML (errors and plots included)."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    body, _ = _exporter().from_notebook_node(nb)
    tmp = html.with_name(f".{html.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(html)
    return html


def _failure(exc: BaseException, notebook: Path) -> tuple[int | None, str, str]:
    """(index of the failing cell in the *executed* notebook, error name, message)."""
    import nbformat
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):  # e.g. the kernel died
        lines = str(exc).strip().splitlines()
        return None, type(exc).__name__, lines[0] if lines else ""
    # papermill puts an error banner above the cells after it computed its index, so find
    # the failing cell in what was written (the one whose error is this error).
    cells = nbformat.read(notebook, as_version=4).cells
    for index, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and (out.get("ename"), out.get("evalue")) == (
                exc.ename,
                exc.evalue,
            ):
                return index, exc.ename, exc.evalue
    return exc.cell_index, exc.ename, exc.evalue


def execute_step(
    step: Step | str,
    params: StepParams | dict[str, Any],
    *,
    kernel_name: str = KERNEL_NAME,
    execution_timeout: float | None = None,
    log_output: bool = False,
    before_publish: Callable[[], None] | None = None,
) -> StepResult:
    """Run ``step``'s notebook with ``params`` in the run folder ``params.run_dir``.

    ``before_publish`` is called just before the step is published (``cache_key.txt``, written
    last); it raises to refuse publication, e.g. when the step's lease was lost.

    Writes ``{run_dir}/{step}/notebook.ipynb`` (executed, always kept) and
    ``notebook.html``, then checks the step's declared outputs.

    Raises
    ------
    StepParametersError
        Before any kernel starts.
    NotebookStepError
        A cell raised or the kernel died; carries the cell index, error name and message.
    MissingOutputsError
        The notebook finished without writing what the step declares.
    """
    import papermill

    step = get_step(step) if isinstance(step, str) else step
    checked = validate_params(step, params)
    # The kernel runs in the step's folder: pin the state folder (default store, MLflow)
    # so that "." in the kernel does not become a second one.
    os.environ.setdefault(STATE_DIR_ENV, str(state_dir()))
    run_dir = resolve_run_dir(checked.run_dir)
    # Pass the resolved folder: the kernel's working directory must not change its meaning.
    checked = checked.model_copy(update={"run_dir": str(run_dir)})
    key = cache_key(step, checked)
    out_dir = run_dir / step.name
    out_dir.mkdir(parents=True, exist_ok=True)
    notebook, html = out_dir / NOTEBOOK_FILE, out_dir / HTML_FILE
    # A previous attempt's files must not vouch for (or stand in for) this one.
    for stale in (out_dir / KEY_FILE, out_dir / OUTPUTS_FILE, notebook, html):
        stale.unlink(missing_ok=True)

    if log_output:  # papermill logs cell output at INFO; the root default (WARNING) drops it
        stream_logger = logging.getLogger("papermill")
        if stream_logger.getEffectiveLevel() > logging.INFO:
            stream_logger.setLevel(logging.INFO)
    started = time.perf_counter()
    error: BaseException | None = None
    try:
        papermill.execute_notebook(
            str(step.path),
            str(notebook),
            parameters=checked.model_dump(mode="json"),
            kernel_name=kernel_name,
            cwd=str(out_dir),
            progress_bar=False,
            log_output=log_output,
            execution_timeout=execution_timeout,
            # The notebook is complete and saved by then; a graceful shutdown of a kernel
            # holding torch costs up to 3 s per step for nothing. Measuring coverage needs the
            # kernel to exit normally (it writes its data at exit): ORDINAL_KERNEL_SHUTDOWN.
            shutdown_kernel=os.environ.get(KERNEL_SHUTDOWN_ENV, "immediate"),
        )
    except BaseException as exc:  # even an interrupt: keep and render what ran, then raise
        error = exc
    executed = time.perf_counter()
    try:
        if not notebook.is_file():  # the kernel never started: keep the parameterised input
            papermill.execute_notebook(
                str(step.path),
                str(notebook),
                parameters=checked.model_dump(mode="json"),
                prepare_only=True,
                kernel_name=kernel_name,
                progress_bar=False,
            )
        render_html(notebook, html)
    except Exception as exc:  # never let the rendering hide the step's own error
        if error is None:
            raise
        log.warning("could not render %s: %s", notebook, exc)
    rendered = time.perf_counter()
    if error is not None:
        if not isinstance(error, Exception):  # KeyboardInterrupt, TerminationSignal, ...
            raise error
        cell, ename, evalue = _failure(error, notebook)
        raise NotebookStepError(
            step.name, cell, ename, evalue, notebook, html if html.is_file() else None
        ) from error

    missing = [p for p in step.declared_outputs(run_dir) if not p.exists()]
    if missing:
        raise MissingOutputsError(step.name, missing, notebook, html)
    outputs = json.loads((out_dir / OUTPUTS_FILE).read_text(encoding="utf-8"))
    if before_publish is not None:
        before_publish()
    (out_dir / KEY_FILE).write_text(key + "\n", encoding="utf-8")  # last: the files are complete
    return StepResult(
        step=step.name,
        params=checked.model_dump(mode="json"),
        notebook=notebook,
        html=html,
        outputs=outputs,
        seconds=time.perf_counter() - started,
        cache_key=key,
        timings={"execute": executed - started, "render": rendered - executed},
    )
