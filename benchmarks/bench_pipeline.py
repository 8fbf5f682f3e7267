"""Per-step overhead of running a pipeline step as a notebook (task) vs calling the library.

The question (from the project's issue): running a step as a notebook task may cost at most
**3 s per step** more than calling the library functions directly.

Each of the seven step notebooks (``notebooks/01_ingest.ipynb`` .. ``07_quantize.ipynb``)
runs with its default parameters in four ways, side by side in one run
(``docs/benchmarks-pipeline.md`` has the method and results):

1. ``direct_warm``: the notebook's code cells without what only feeds the page (tables,
   plots, ``display``/``print``, and the imports and values nothing else then uses), executed
   in this process, which has imported everything and run every step once before.
2. ``direct_cold``: the same code in a fresh interpreter (``--direct-child``), imports
   included: what a plain script step on a worker pays.
3. ``notebook``: ``pipelines.notebooks.execute_step``: papermill starts a kernel and runs
   the notebook, nbconvert renders the HTML, the declared outputs are checked.
4. ``notebook_task``: the Prefect task ``pipelines.tasks.run_notebook`` inside one flow, with
   MLflow tracking to a local sqlite store: everything the pipeline does per step. The flow,
   its temporary API server and the MLflow store start once, before the first step; their
   start-up is reported apart.

A repetition runs the seven steps in chain order. Every mode has its own fresh
``ORDINAL_HOME`` per repetition: raw data is write-once (a second ingest of the same bytes
is a no-op that skips the upload) and the export writes ``models/onnx/notebooks/``, so
nothing may be served from an earlier repetition. Step by step, the four modes run one after
the other, in an order that rotates every repetition. After each repetition the four run
folders must hold the same files (the executed notebooks and their HTML aside), so the direct
baseline did all the work the notebook did; a difference leaves the run unjudged (its numbers
are kept).

The script first copies the library, the pipeline, the notebooks and itself to
``benchmarks/.work/pipeline/run/src`` and re-executes itself from there with ``PYTHONPATH``
on the copy, so every process of the run (this one, the kernels, the fresh interpreters)
executes the same code even if the working tree changes meanwhile. Every process runs torch
with ``--threads`` threads (default 1, see the doc).

Run ``.venv/bin/python benchmarks/bench_pipeline.py [--repeats N]``; ``--help`` lists the
knobs. Results go to ``benchmarks/results/pipeline.json``; the exit status is 0 when every
step's ``notebook_task`` overhead passes against both baselines, 1 when one fails, 2 when the
measurements cannot tell.

Everything the run writes lives under ``benchmarks/.work/pipeline/`` (git-ignored):
``ORDINAL_HOME`` per run folder, ``PREFECT_HOME``, the MLflow store, and the IPython,
Jupyter-runtime and matplotlib folders of the kernels (kept between runs in ``cache/``).
``PREFECT_API_URL``, ``MLFLOW_TRACKING_URI`` and ``ORDINAL_STORAGE_URL`` are cleared, so a
configured stack is never touched.
"""

from __future__ import annotations

import os

# Before anything imports transformers, tokenizers, onnxruntime, mlflow or prefect (all of
# them are imported lazily below, so a --direct-child starts as bare as a script would).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
os.environ["MLFLOW_ENABLE_TELEMETRY"] = "false"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# As ``pipelines/cli.py`` does: on a busy 2-core machine the temporary API server can take
# longer than Prefect's default wait to answer.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import argparse
import ast
import contextlib
import gc
import hashlib
import io
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODES = ("direct_warm", "direct_cold", "notebook", "notebook_task")
#: name -> (mode, baseline): the differences reported per step, paired within a repetition.
OVERHEADS: dict[str, tuple[str, str]] = {
    "notebook - direct_warm": ("notebook", "direct_warm"),
    "notebook - direct_cold": ("notebook", "direct_cold"),
    "notebook_task - direct_warm": ("notebook_task", "direct_warm"),
    "notebook_task - direct_cold": ("notebook_task", "direct_cold"),
    "notebook_task - notebook": ("notebook_task", "notebook"),
}
#: The overheads judged against the target; the issue's comparison is the task's.
JUDGED = (
    "notebook_task - direct_warm",
    "notebook_task - direct_cold",
    "notebook - direct_warm",
    "notebook - direct_cold",
)
#: Judged for the exit status: the notebook task against both baselines, the worse decides.
HEADLINE = ("notebook_task - direct_warm", "notebook_task - direct_cold")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "pipeline.json"
DEFAULT_WORKDIR = Path(__file__).resolve().parent / ".work" / "pipeline"
CHILD_MARKER = "DIRECT_RESULT "
#: What a run executes, copied at its start (``exec_from_snapshot``); paths from the root.
SNAPSHOT_ITEMS = (
    "ordinal",
    "pipelines",
    "configs",
    "sources",
    "notebooks",
    "benchmarks/bench_pipeline.py",
)
SNAPSHOT_ENV = "BENCH_PIPELINE_SNAPSHOT"
HOME_ENV = "ORDINAL_HOME"
#: Cleared so the benchmark never talks to a configured stack or writes to its storage.
#: ``ORDINAL_NOTEBOOK_DIR`` too: the benchmark measures the project's notebooks.
CLEARED_ENV = (
    "PREFECT_API_URL",
    "MLFLOW_TRACKING_URI",
    "ORDINAL_STORAGE_URL",
    "ORDINAL_NOTEBOOK_DIR",
)
#: Files only the notebook modes write; every other file must match between the modes.
NOTEBOOK_ONLY_FILES = frozenset({"notebook.ipynb", "notebook.html", "result.json"})

#: Import costs measured once per run, each in a fresh interpreter: what the kernels and the
#: cold interpreters pay before a step's work (label -> the import statement).
IMPORT_PROBES: dict[str, str] = {
    "ipykernel (kernel process)": "import ipykernel.kernelapp",
    "pandas + matplotlib (display)": "import pandas, matplotlib.pyplot",
    "ordinal.data (data steps)": "import ordinal.artifacts, ordinal.data, ordinal.runs",
    "jsonschema (manifest check)": "import jsonschema",
    "rfc3987_syntax (via jsonschema)": "import rfc3987_syntax",
    "torch": "import torch",
    "train step imports": "from ordinal import TrainSpec, train_ordinal_model",
    "ordinal.export (export/quantize)": "import ordinal.export",
    "ordinal.export.parity": "import ordinal.export.parity",
}

#: Expression statements that only put something on the page.
DISPLAY_CALLS = frozenset({"print", "display", "Markdown"})
DISPLAY_PREFIXES = ("plot_",)
TABLE_ROOTS = frozenset({"pd", "pandas"})


@dataclass(frozen=True)
class Targets:
    """The issue's target and the rule for judging it: data, not literals in the code."""

    max_overhead_s: float = 3.0  # per step, notebook (task) wall time - direct wall time
    # With n paired repetitions, [min, max] of the differences covers the median with
    # probability 1 - 2 / 2**n: 75% for 3, 94% for 5. Fewer than this is not judged.
    min_repeats_for_verdict: int = 3


@dataclass(frozen=True)
class BenchSpec:
    """Everything that defines a run; stored in the JSON next to the results."""

    repeats: int = 3
    last_step: str = "quantize"
    warmup: bool = True
    threads: int = 1  # torch threads in every process; 0 leaves the library's default
    child_timeout_s: float = 900.0

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.child_timeout_s <= 0:
            raise ValueError(f"child_timeout_s must be > 0, got {self.child_timeout_s}")


class BenchError(RuntimeError):
    """The benchmark cannot produce a valid measurement."""


class DirectStepError(BenchError):
    """A cell of a step's direct code raised; carries the notebook, cell and error."""

    def __init__(self, notebook: str, cell_index: int | None, ename: str, evalue: str) -> None:
        self.notebook = notebook
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        where = f"cell {cell_index}" if cell_index is not None else "the child process"
        super().__init__(f"{notebook} direct code failed in {where}: {ename}: {evalue}")


# --------------------------------------------------------------------------- direct code


@dataclass
class DirectCell:
    """One code cell of a step notebook as the direct modes run it.

    ``role``: ``setup`` (the first cell after the parameters: imports, run folder, storage),
    ``work`` (something left to run) or ``display`` (nothing left: tables and plots only).
    """

    index: int  # in the committed notebook
    role: str
    code: str
    dropped: list[str] = field(default_factory=list)


def _root_name(node: ast.AST) -> str | None:
    """The name an attribute/call/subscript chain starts from (``pd`` in ``pd.Series().T``)."""
    while isinstance(node, ast.Call | ast.Attribute | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_display(stmt: ast.stmt) -> bool:
    """An expression statement whose only effect is output on the page."""
    if not isinstance(stmt, ast.Expr):
        return False
    value = stmt.value
    if not isinstance(value, ast.Call):
        return True  # a bare value: shown as the cell's result, nothing else
    func = value.func
    if isinstance(func, ast.Name) and (
        func.id in DISPLAY_CALLS or func.id.startswith(DISPLAY_PREFIXES)
    ):
        return True
    return _root_name(value) in TABLE_ROOTS  # a pandas table built to be shown


def _drop_display(stmts: list[ast.stmt], dropped: list[str]) -> list[ast.stmt]:
    """``stmts`` without display statements, also inside if/for/while/with bodies."""
    kept: list[ast.stmt] = []
    for stmt in stmts:
        if _is_display(stmt):
            dropped.append(ast.unparse(stmt))
            continue
        if isinstance(stmt, ast.If | ast.For | ast.While | ast.With):
            source = ast.unparse(stmt)
            inner: list[str] = []
            body = _drop_display(stmt.body, inner)
            orelse = _drop_display(getattr(stmt, "orelse", []), inner)
            if not body and not orelse:
                dropped.append(source)
                continue
            dropped.extend(inner)
            stmt.body = body or [ast.Pass()]
            if hasattr(stmt, "orelse"):
                stmt.orelse = orelse
        kept.append(stmt)
    return kept


def _loaded_names(nodes: list[ast.stmt]) -> set[str]:
    return {
        n.id
        for node in nodes
        for n in ast.walk(node)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def _bound_name(alias: ast.alias) -> str:
    return alias.asname or alias.name.split(".")[0]


def _unused(stmt: ast.stmt, used: set[str]) -> bool:
    """A statement that only binds names nothing else reads (its right side is kept only
    for what it binds; the file comparison after each repetition catches a side effect)."""
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
        return all(isinstance(t, ast.Name) and t.id not in used for t in targets)
    if isinstance(stmt, ast.FunctionDef | ast.ClassDef):
        return stmt.name not in used
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return all(_bound_name(a) not in used for a in stmt.names)
    if isinstance(stmt, ast.With):
        return all(_unused(s, used) for s in stmt.body)
    return False


def _drop_unused(cells: list[list[ast.stmt]], dropped: list[list[str]]) -> None:
    """Remove statements (and imported names) nothing reads any more, to a fixed point."""
    changed = True
    while changed:
        changed = False
        for c, stmts in enumerate(cells):
            for stmt in list(stmts):
                others = [s for cell in cells for s in cell if s is not stmt]
                used = _loaded_names(others)
                if _unused(stmt, used):
                    stmts.remove(stmt)
                    dropped[c].append(ast.unparse(stmt))
                    changed = True
                elif isinstance(stmt, ast.Import | ast.ImportFrom):
                    keep = [a for a in stmt.names if _bound_name(a) in used]
                    if len(keep) < len(stmt.names):
                        gone = [a for a in stmt.names if a not in keep]
                        dropped[c].append(f"(import of) {', '.join(map(_bound_name, gone))}")
                        stmt.names = keep
                        changed = True


def direct_cells(notebook: Path) -> list[DirectCell]:
    """The step notebook's code as the direct modes run it, cell by cell.

    The ``parameters`` cell is replaced by the parameters themselves; IPython magics go;
    statements that only put something on the page go; then whatever nothing reads any
    more (the confusion matrix's predictions, ``import pandas``...). What went is kept in
    ``DirectCell.dropped``.
    """
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    indices, trees, dropped = [], [], []
    seen_parameters = False
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            seen_parameters = True
            continue
        if not seen_parameters:
            raise BenchError(f"{notebook}: code cell {index} comes before the parameters cell")
        source = "".join(cell["source"])
        lines = [ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
        cell_dropped = [ln.strip() for ln in source.splitlines() if ln not in lines]
        trees.append(_drop_display(ast.parse("\n".join(lines)).body, cell_dropped))
        indices.append(index)
        dropped.append(cell_dropped)
    if not seen_parameters:
        raise BenchError(f"{notebook} has no cell tagged 'parameters'")
    _drop_unused(trees, dropped)
    cells = []
    for n, (index, stmts, gone) in enumerate(zip(indices, trees, dropped, strict=True)):
        role = "setup" if n == 0 else ("work" if stmts else "display")
        code = ast.unparse(ast.Module(body=stmts, type_ignores=[])) if stmts else ""
        cells.append(DirectCell(index, role, code, gone))
    return cells


def run_direct_cells(
    notebook: Path, cells: list[DirectCell], params: dict[str, Any]
) -> list[tuple[int, str, float]]:
    """Execute the direct code with ``params`` bound; ``(cell index, role, seconds)`` each.

    Raises
    ------
    DirectStepError
        Naming the notebook, the cell and the error.
    """
    namespace: dict[str, Any] = {"__name__": "__direct__", **params}
    timings = []
    for cell in cells:
        if not cell.code:
            continue
        code = compile(cell.code, f"<{notebook.name} cell {cell.index}>", "exec")
        started = time.perf_counter()
        try:
            exec(code, namespace)
        except Exception as exc:
            raise DirectStepError(notebook.name, cell.index, type(exc).__name__, str(exc)) from exc
        timings.append((cell.index, cell.role, time.perf_counter() - started))
    return timings


def direct_child(payload: str) -> int:
    """``--direct-child``: run one step's direct code in this fresh interpreter, report."""
    started = time.time()
    job = json.loads(payload)
    notebook = Path(job["notebook"])
    result: dict[str, Any] = {"started_epoch": started}
    try:
        cells = run_direct_cells(notebook, direct_cells(notebook), job["params"])
    except DirectStepError as exc:
        result["error"] = {"cell_index": exc.cell_index, "ename": exc.ename, "evalue": exc.evalue}
        print(CHILD_MARKER + json.dumps(result), flush=True)
        return 1
    times = os.times()
    result.update(
        cells=cells,
        ended_epoch=time.time(),
        cpu_self_s=times.user + times.system + times.children_user + times.children_system,
    )
    print(CHILD_MARKER + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- measurement


def _cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for.

    Kernels, ``--direct-child`` interpreters and the export's ``optimum-cli`` are reaped
    when they end, so their CPU lands here; the Prefect server runs until the end and does
    not.
    """
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _cell_sums(timings: list[tuple[int, str, float]]) -> dict[str, float]:
    sums = {"setup_cell": 0.0, "work_cells": 0.0, "display_cells": 0.0}
    for _, role, seconds in timings:
        sums[f"{role}_cell" if role == "setup" else f"{role}_cells"] += seconds
    return sums


def notebook_parts(
    notebook: Path, cells: list[DirectCell], call_epoch: float, render_s: float, wall_s: float
) -> dict[str, float]:
    """Where an ``execute_step`` call's time went, from papermill's metadata.

    ``prepare``: validation, cache key, reading and parameterising the notebook;
    ``kernel_start``: papermill's notebook start until the first cell starts (launching the
    kernel, waiting until it answers); the cells by role (``parameters``: the committed and
    injected parameters cells); ``between_cells``: papermill's saves between cells;
    ``kernel_shutdown``: last cell's end until papermill's end; ``render``: nbconvert;
    ``other``: the rest (writing the notebook, checking the declared outputs).
    """
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    meta = nb["metadata"]["papermill"]
    nb_start, nb_end = _epoch(meta["start_time"]), _epoch(meta["end_time"])
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    parts = {"parameters_cells": 0.0, "setup_cell": 0.0, "work_cells": 0.0, "display_cells": 0.0}
    roles = iter(cells)
    for cell in code:
        tags = cell.get("metadata", {}).get("tags", [])
        seconds = float(cell["metadata"]["papermill"].get("duration") or 0.0)
        if "parameters" in tags or "injected-parameters" in tags:
            parts["parameters_cells"] += seconds
            continue
        role = next(roles).role
        parts["setup_cell" if role == "setup" else f"{role}_cells"] += seconds
    first = _epoch(code[0]["metadata"]["papermill"]["start_time"])
    last = _epoch(code[-1]["metadata"]["papermill"]["end_time"])
    parts.update(
        prepare=nb_start - call_epoch,
        kernel_start=first - nb_start,
        between_cells=(last - first) - sum(parts.values()),
        kernel_shutdown=nb_end - last,
        render=render_s,
    )
    parts["other"] = wall_s - sum(parts.values())
    return parts


class TaskProbe:
    """Times the pieces of ``run_notebook`` by wrapping what ``pipelines.tasks`` calls.

    Measurement only: the wrappers replace module attributes of ``pipelines.tasks`` while
    the benchmark runs (the task looks them up at call time) and are removed afterwards.
    """

    WRAPPED = ("execute_step", "log_step", "_publish", "_write_result")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.execute_epoch = 0.0
        self.execute_result: Any = None

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.WRAPPED, 0.0)
        self.execute_epoch, self.execute_result = 0.0, None

    @contextlib.contextmanager
    def installed(self) -> Iterator[TaskProbe]:
        import pipelines.tasks as tasks

        originals = {name: getattr(tasks, name) for name in self.WRAPPED}
        for name, original in originals.items():
            setattr(tasks, name, self._wrap(name, original))
        try:
            yield self
        finally:
            for name, original in originals.items():
                setattr(tasks, name, original)

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if name == "execute_step":
                self.execute_epoch = time.time()
            started = time.perf_counter()
            try:
                out = original(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
            if name == "execute_step":
                self.execute_result = out
            return out

        return timed


@dataclass
class Context:
    """What the mode runners share."""

    spec: BenchSpec
    workdir: Path
    cells: dict[str, list[DirectCell]]
    tracking: Any = None
    probe: TaskProbe | None = None
    run_name: str = "bench"

    def home(self, rep: int | str, mode: str) -> Path:
        return self.workdir / "run" / f"r{rep}-{mode}"


def _direct_job(step_name: str) -> tuple[dict[str, Any], Path]:
    """The parameters the notebook would get (defaults, run folder resolved) and its cwd."""
    from ordinal.runs import resolve_run_dir
    from pipelines.notebooks import validate_params

    checked = validate_params(step_name, {})
    run_dir = resolve_run_dir(checked.run_dir)
    params = checked.model_copy(update={"run_dir": str(run_dir)}).model_dump(mode="json")
    cwd = run_dir / step_name
    cwd.mkdir(parents=True, exist_ok=True)
    return params, cwd


def time_direct_warm(ctx: Context, step_name: str) -> dict[str, Any]:
    from pipelines.steps import get_step

    notebook = get_step(step_name).path
    params, cwd = _direct_job(step_name)
    previous = Path.cwd()
    os.chdir(cwd)  # the kernel runs in the step's folder too
    # Progress bars and prints go to a buffer, as a kernel's go to its notebook.
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            cpu, started = _cpu(), time.perf_counter()
            timings = run_direct_cells(notebook, ctx.cells[step_name], params)
            wall = time.perf_counter() - started
            cpu = _cpu() - cpu
    finally:
        os.chdir(previous)
    parts = _cell_sums(timings)
    parts["other"] = wall - sum(parts.values())
    return {"wall_s": wall, "cpu_s": cpu, "parts": parts}


def time_direct_cold(ctx: Context, step_name: str) -> dict[str, Any]:
    from pipelines.steps import get_step

    notebook = get_step(step_name).path
    params, cwd = _direct_job(step_name)
    payload = json.dumps({"notebook": str(notebook), "params": params})
    command = [sys.executable, str(Path(__file__).resolve()), "--direct-child", payload]
    cpu, epoch, started = _cpu(), time.time(), time.perf_counter()
    proc = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=ctx.spec.child_timeout_s,
        check=False,
    )
    wall = time.perf_counter() - started
    cpu = _cpu() - cpu
    ended = time.time()
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(CHILD_MARKER)]
    if not lines:
        raise DirectStepError(
            notebook.name, None, f"exit status {proc.returncode}", proc.stderr[-3000:]
        )
    child = json.loads(lines[-1][len(CHILD_MARKER) :])
    if "error" in child:
        err = child["error"]
        raise DirectStepError(notebook.name, err["cell_index"], err["ename"], err["evalue"])
    parts = {"interpreter_start": child["started_epoch"] - epoch}
    parts.update(_cell_sums([tuple(c) for c in child["cells"]]))
    parts["exit"] = ended - child["ended_epoch"]
    return {"wall_s": wall, "cpu_s": cpu, "parts": parts}


def time_notebook(ctx: Context, step_name: str) -> dict[str, Any]:
    from pipelines.notebooks import execute_step

    cpu, epoch, started = _cpu(), time.time(), time.perf_counter()
    result = execute_step(step_name, {})
    wall = time.perf_counter() - started
    cpu = _cpu() - cpu
    parts = notebook_parts(
        result.notebook, ctx.cells[step_name], epoch, result.timings["render"], wall
    )
    return {"wall_s": wall, "cpu_s": cpu, "parts": parts}


def time_notebook_task(ctx: Context, step_name: str) -> dict[str, Any]:
    from pipelines.tasks import run_notebook

    probe = ctx.probe
    assert probe is not None
    probe.reset()
    cpu, started = _cpu(), time.perf_counter()
    run_notebook(step_name, {}, ctx.tracking, ctx.run_name)
    wall = time.perf_counter() - started
    cpu = _cpu() - cpu
    seconds = probe.seconds
    inner = probe.execute_result
    parts = {
        "execute_step": seconds["execute_step"],
        "mlflow_log_step": seconds["log_step"],
        "prefect_artifact": seconds["_publish"],
        "result_file": seconds["_write_result"],
    }
    parts["prefect_engine"] = wall - sum(parts.values())
    nb = notebook_parts(
        inner.notebook,
        ctx.cells[step_name],
        probe.execute_epoch,
        inner.timings["render"],
        seconds["execute_step"],
    )
    parts.update({f"nb.{k}": v for k, v in nb.items()})
    return {"wall_s": wall, "cpu_s": cpu, "parts": parts}


RUNNERS: dict[str, Callable[[Context, str], dict[str, Any]]] = {
    "direct_warm": time_direct_warm,
    "direct_cold": time_direct_cold,
    "notebook": time_notebook,
    "notebook_task": time_notebook_task,
}


def _error_record(exc: BaseException) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)[:4000]}
    for name in ("cell_index", "ename", "evalue"):
        if hasattr(exc, name):
            record[name] = getattr(exc, name)
    return record


def _produced(home: Path) -> set[str]:
    """Files a chain left in its ``ORDINAL_HOME`` (relative), the notebook-only ones aside."""
    files = (p.relative_to(home) for p in home.rglob("*") if p.is_file())
    return {str(p) for p in files if p.name not in NOTEBOOK_ONLY_FILES}


def compare_outputs(ctx: Context, rep: int, broken: dict[str, str]) -> dict[str, Any]:
    """Whether the modes that completed the repetition left the same files.

    ``missing`` lists, per mode, the files another mode left and this one did not. A
    difference means the direct code did not do what the notebook did (or the code changed
    under the run); the run is then not judged (see ``validity``), but its numbers are kept.
    """
    sets = {m: _produced(ctx.home(rep, m)) for m in MODES if m not in broken}
    union = set.union(*sets.values()) if sets else set()
    missing = {m: sorted(union - files) for m, files in sets.items() if files != union}
    return {"rep": rep, "compared": list(sets), "files": len(union), "missing": missing}


def measure(
    ctx: Context, steps: list[str], log: Callable[[str], None]
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[dict[str, Any]], list[Any]]:
    """All repetitions; returns raw measurements, errors and the output comparisons."""
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {s: {m: [] for m in MODES} for s in steps}
    errors: list[dict[str, Any]] = []
    comparisons: list[Any] = []
    for rep in range(ctx.spec.repeats):
        ctx.run_name = f"bench-r{rep}"
        order = MODES[rep % len(MODES) :] + MODES[: rep % len(MODES)]
        broken: dict[str, str] = {}
        load = [round(v, 2) for v in os.getloadavg()]
        log(f"repetition {rep + 1}/{ctx.spec.repeats}, order {', '.join(order)}, load {load}")
        for step_name in steps:
            line = []
            for mode in order:
                record: dict[str, Any] = {"rep": rep, "load_average_1_5_15": load}
                if mode in broken:
                    record["skipped"] = f"an earlier step failed: {broken[mode]}"
                    raw[step_name][mode].append(record)
                    continue
                os.environ[HOME_ENV] = str(ctx.home(rep, mode))
                gc.collect()
                try:
                    record.update(RUNNERS[mode](ctx, step_name))
                    line.append(f"{mode} {record['wall_s']:.1f}s")
                except Exception as exc:  # report it, keep measuring what works
                    record["error"] = _error_record(exc)
                    broken[mode] = step_name
                    errors.append({"rep": rep, "step": step_name, "mode": mode, **record["error"]})
                    line.append(f"{mode} FAILED ({type(exc).__name__})")
                raw[step_name][mode].append(record)
            log(f"  {step_name}: {', '.join(line)}")
        comparisons.append(compare_outputs(ctx, rep, broken))
        if comparisons[-1]["missing"]:
            log(f"[red]the modes left different files[/red]: {comparisons[-1]['missing']}")
    return raw, errors, comparisons


# --------------------------------------------------------------------------- summaries


def describe(values: list[float]) -> dict[str, Any]:
    """Median and spread of seconds over repetitions."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median_s": statistics.median(values),
        "min_s": min(values),
        "max_s": max(values),
    }


def _ok(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["rep"]: r for r in records if "wall_s" in r}


def paired(raw_step: dict[str, list[dict[str, Any]]], mode: str, base: str, key: str) -> list:
    """``mode - base`` per repetition where both completed, for ``wall_s`` or ``cpu_s``."""
    a, b = _ok(raw_step[mode]), _ok(raw_step[base])
    return [a[r][key] - b[r][key] for r in sorted(a) if r in b]


def judge(values: list[float], limit: float, targets: Targets) -> str:
    """``pass`` if every paired difference is within ``limit``, ``fail`` if all are above."""
    if len(values) < targets.min_repeats_for_verdict:
        return "inconclusive"
    if max(values) <= limit:
        return "pass"
    if min(values) > limit:
        return "fail"
    return "inconclusive"


def _median_parts(records: list[dict[str, Any]]) -> dict[str, float]:
    done = [r["parts"] for r in records if "parts" in r]
    if not done:
        return {}
    return {k: statistics.median(p[k] for p in done) for k in done[0]}


def _median_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(row[k] for row in rows) for k in rows[0]}


def attribution(raw_step: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Where the differences go, per repetition, then the median of each component (so the
    components add up only roughly to the median difference).

    ``notebook - direct_warm``: the kernel's start, its imports (setup cell, less the warm
    one), first calls (work cells, less the warm ones: mostly imports the library makes
    inside its functions), display-only cells, the kernel's shutdown, papermill's own work
    (preparing, parameters cells, saves between cells, rest) and the render.
    ``notebook - direct_cold``: the same, each less what the fresh interpreter spent on it.
    ``notebook_task - notebook``: MLflow, Prefect (task engine, artifact, result file), and
    the difference of the two ``execute_step`` calls (noise: they do the same).
    """
    nb, task = _ok(raw_step["notebook"]), _ok(raw_step["notebook_task"])
    warm, cold = _ok(raw_step["direct_warm"]), _ok(raw_step["direct_cold"])
    out: dict[str, dict[str, float]] = {}

    def papermill(n: dict[str, float]) -> float:
        return n["prepare"] + n["parameters_cells"] + n["between_cells"] + n["other"]

    rows = []
    for r in sorted(set(nb) & set(warm)):
        n, w = nb[r]["parts"], warm[r]["parts"]
        rows.append(
            {
                "kernel_start": n["kernel_start"],
                "kernel_imports": n["setup_cell"] - w["setup_cell"],
                "first_calls": n["work_cells"] - w["work_cells"],
                "display_cells": n["display_cells"],
                "kernel_shutdown": n["kernel_shutdown"],
                "papermill": papermill(n) - w["other"],
                "render": n["render"],
            }
        )
    if rows:
        out["notebook - direct_warm"] = _median_rows(rows)
    rows = []
    for r in sorted(set(nb) & set(cold)):
        n, c = nb[r]["parts"], cold[r]["parts"]
        rows.append(
            {
                "start": n["kernel_start"] - c["interpreter_start"],
                "imports": n["setup_cell"] - c["setup_cell"],
                "work_cells": n["work_cells"] - c["work_cells"],
                "display_cells": n["display_cells"],
                "shutdown": n["kernel_shutdown"] - c["exit"],
                "papermill": papermill(n),
                "render": n["render"],
            }
        )
    if rows:
        out["notebook - direct_cold"] = _median_rows(rows)
    rows = [
        {
            "execute_step": task[r]["parts"]["execute_step"] - nb[r]["wall_s"],
            "mlflow_log_step": task[r]["parts"]["mlflow_log_step"],
            "prefect": task[r]["parts"]["prefect_engine"]
            + task[r]["parts"]["prefect_artifact"]
            + task[r]["parts"]["result_file"],
        }
        for r in sorted(set(task) & set(nb))
    ]
    if rows:
        out["notebook_task - notebook"] = _median_rows(rows)
    return out


def summarise(
    raw: dict[str, dict[str, list[dict[str, Any]]]], targets: Targets
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per step: times per mode, paired overheads, verdicts, decomposition; the verdict."""
    steps: dict[str, Any] = {}
    verdict: dict[str, Any] = {name: {} for name in JUDGED}
    for step_name, per_mode in raw.items():
        modes = {
            m: {
                "wall": describe([r["wall_s"] for r in _ok(recs).values()]),
                "cpu": describe([r["cpu_s"] for r in _ok(recs).values()]),
            }
            for m, recs in per_mode.items()
        }
        overheads = {}
        for name, (mode, base) in OVERHEADS.items():
            wall = paired(per_mode, mode, base, "wall_s")
            cpu = paired(per_mode, mode, base, "cpu_s")
            overheads[name] = {"wall": describe(wall), "cpu": describe(cpu), "wall_per_rep_s": wall}
            if name in JUDGED:
                verdict[name][step_name] = judge(wall, targets.max_overhead_s, targets)
        steps[step_name] = {
            "modes": modes,
            "overheads": overheads,
            "decomposition": {m: _median_parts(recs) for m, recs in per_mode.items()},
            "attribution": attribution(per_mode),
        }
    headline = [v for name in HEADLINE for v in verdict[name].values()]
    verdict["overall"] = next((r for r in ("fail", "inconclusive") if r in headline), "pass")
    verdict["overall_rule"] = (
        f"worst of {', '.join(HEADLINE)} over all steps; a step passes when every paired "
        f"difference is <= {targets.max_overhead_s} s, fails when every one is above"
    )
    return steps, verdict


# --------------------------------------------------------------------------- set-up


def configure_environment(workdir: Path, threads: int) -> None:
    """Point every state folder of the run under ``workdir``; never at a configured stack.

    ``threads`` > 0 caps torch's (OpenMP/MKL) threads in every process of the run.
    """
    for name in CLEARED_ENV:
        os.environ.pop(name, None)
    if threads:
        # Set before torch is imported anywhere; kernels and children inherit it. With 2
        # threads per process on 2 shared cores, OpenMP threads spin at every barrier and
        # the same 20 bert-tiny training steps took 3 to 27 s (CPU time alike) in one run.
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    run, cache = workdir / "run", workdir / "cache"
    os.environ["PREFECT_HOME"] = str(run / "prefect")
    (run / "prefect").mkdir(parents=True, exist_ok=True)
    # Kernels write their IPython profile (history database), connection files and the
    # matplotlib font cache; kept between runs, like a worker's home.
    for name, folder in (
        ("IPYTHONDIR", "ipython"),
        ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"),
        ("MPLCONFIGDIR", "matplotlib"),
    ):
        os.environ[name] = str(cache / folder)
        (cache / folder).mkdir(parents=True, exist_ok=True)
    os.environ[HOME_ENV] = str(run / "scratch")


def warm_up(ctx: Context, steps: list[str], log: Callable[[str], None]) -> dict[str, float]:
    """Import everything, run the direct chain once, start and render one kernel."""
    import nbformat
    import papermill

    from pipelines.notebooks import KERNEL_NAME, render_html

    out: dict[str, float] = {}
    started = time.perf_counter()
    os.environ[HOME_ENV] = str(ctx.home("warmup", "direct_warm"))
    for step_name in steps:
        time_direct_warm(ctx, step_name)
    out["direct_chain_s"] = time.perf_counter() - started
    log(f"warm-up: direct chain in {out['direct_chain_s']:.1f} s")
    # A first kernel creates the IPython profile and the matplotlib font cache; the first
    # render loads nbconvert's templates. Neither is a per-step cost of a running pipeline.
    folder = ctx.workdir / "run" / "warmup-kernel"
    folder.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport matplotlib.pyplot as plt")]
    nbformat.write(nb, folder / "in.ipynb")
    started = time.perf_counter()
    papermill.execute_notebook(
        str(folder / "in.ipynb"),
        str(folder / "out.ipynb"),
        kernel_name=KERNEL_NAME,
        progress_bar=False,
    )
    render_html(folder / "out.ipynb", folder / "out.html")
    out["kernel_and_render_s"] = time.perf_counter() - started
    log(f"warm-up: one kernel and render in {out['kernel_and_render_s']:.1f} s")
    return out


def import_costs(timeout_s: float) -> dict[str, float]:
    """Seconds each probe's imports take in a fresh interpreter (start-up excluded)."""
    out = {}
    for label, statement in IMPORT_PROBES.items():
        code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        out[label] = float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else -1.0
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_digest() -> str:
    """One hash over the snapshot this run executes (library, pipeline, notebooks...)."""
    digest = hashlib.sha256()
    for item in SNAPSHOT_ITEMS:
        for path in sorted([ROOT / item, *(ROOT / item).rglob("*")]):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(ROOT)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def take_snapshot(dest: Path) -> dict[str, Any]:
    """Copy what the steps execute to ``dest``; describe the working tree it came from."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for item in SNAPSHOT_ITEMS:
        source, target = ROOT / item, dest / item
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip() if proc.returncode == 0 else "unknown"

    status = git("status", "--porcelain", "--", *SNAPSHOT_ITEMS)
    return {
        "copied_from": str(ROOT),
        "git_head": git("rev-parse", "HEAD"),
        "uncommitted_changes": status.splitlines() if status != "unknown" else "unknown",
        "taken_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def exec_from_snapshot(argv: list[str], out: Path, workdir: Path) -> None:
    """Start the benchmark afresh from a copy of the code (never returns).

    Another engineer may commit while a run takes its quarter of an hour. A process that
    imported the library at the start would then run old code while every new kernel and
    interpreter runs the new one. So every process of the run, this one included, imports
    from one copy taken now: ``PYTHONPATH`` puts it ahead of the editable install.
    """
    shutil.rmtree(workdir / "run", ignore_errors=True)
    snapshot = workdir / "run" / "src"
    source = take_snapshot(snapshot)
    env = dict(os.environ)
    env[SNAPSHOT_ENV] = json.dumps(source)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(snapshot), env.get("PYTHONPATH")) if p)
    script = snapshot / "benchmarks" / Path(__file__).name
    command = [sys.executable, str(script), *argv, "--out", str(out), "--workdir", str(workdir)]
    sys.stdout.flush()
    os.execve(sys.executable, command, env)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = (
        "torch",
        "transformers",
        "onnxruntime",
        "optimum",
        "papermill",
        "nbclient",
        "nbconvert",
        "ipykernel",
        "jupyter_client",
        "prefect",
        "mlflow",
    )
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _torch_threads() -> int | str:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else "torch not imported"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        **versions(),
    }


# --------------------------------------------------------------------------- reporting


def _cell(entry: dict[str, Any]) -> str:
    if not entry.get("n"):
        return "-"
    return f"{entry['median_s']:.1f} ({entry['min_s']:.1f}-{entry['max_s']:.1f})"


def print_tables(console: Any, report: dict[str, Any]) -> None:
    """The report as rich tables: times and verdicts, then where the overhead goes."""
    from rich.markup import escape
    from rich.table import Table

    limit = report["targets"]["max_overhead_s"]
    table = Table(
        title=f"Per-step wall time, s: median (min-max) over {report['parameters']['repeats']} "
        f"repetitions; target: overhead <= {limit} s",
        caption=escape(
            "overheads are paired differences within a repetition; verdict: pass if every "
            "difference <= target, fail if every one is above, else inconclusive"
        ),
    )
    columns = (
        "step",
        *MODES,
        "nb - warm",
        "nb - cold",
        "task - warm",
        "task - cold",
        "task vs warm",
        "task vs cold",
        "nb vs warm",
        "nb vs cold",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "step" else "right")
    verdict = report["verdict"]
    shown = (
        "notebook - direct_warm",
        "notebook - direct_cold",
        "notebook_task - direct_warm",
        "notebook_task - direct_cold",
    )
    for step_name, entry in report["steps"].items():
        table.add_row(
            step_name,
            *(_cell(entry["modes"][m]["wall"]) for m in MODES),
            *(_cell(entry["overheads"][name]["wall"]) for name in shown),
            *(verdict[name][step_name].upper() for name in JUDGED),
        )
    console.print(table)

    def f(d: dict[str, float], k: str) -> str:
        return f"{d[k]:.2f}" if k in d else "-"

    warm = Table(
        title="notebook - direct_warm and notebook_task - notebook: where it goes, s (medians)",
        caption=escape(
            "kernel imports: the setup cell; first calls: the work cells, less the warm ones "
            "(mostly imports the library makes inside its functions); papermill: preparing, "
            "parameters cells, saves between cells"
        ),
    )
    keys = (
        "kernel_start",
        "kernel_imports",
        "first_calls",
        "display_cells",
        "kernel_shutdown",
        "papermill",
        "render",
    )
    for column in ("step", *(k.replace("_", " ") for k in keys), "MLflow", "Prefect"):
        warm.add_column(column, justify="left" if column == "step" else "right")
    for step_name, entry in report["steps"].items():
        nb = entry["attribution"].get("notebook - direct_warm", {})
        task = entry["attribution"].get("notebook_task - notebook", {})
        warm.add_row(
            step_name,
            *(f(nb, k) for k in keys),
            f(task, "mlflow_log_step"),
            f(task, "prefect"),
        )
    console.print(warm)

    cold = Table(
        title="notebook - direct_cold: where it goes, s (medians); the cold interpreter's own",
        caption=escape(
            "each column: the notebook's part less the fresh interpreter's (start: kernel "
            "start - interpreter start; shutdown: kernel shutdown - interpreter exit)"
        ),
    )
    keys = ("start", "imports", "work_cells", "display_cells", "shutdown", "papermill", "render")
    own = ("interpreter_start", "setup_cell", "work_cells", "exit")
    headers = (*(k.replace("_", " ") for k in keys), *(f"cold: {k}" for k in own))
    for column in ("step", *headers):
        cold.add_column(column, justify="left" if column == "step" else "right")
    for step_name, entry in report["steps"].items():
        diff = entry["attribution"].get("notebook - direct_cold", {})
        parts = entry["decomposition"].get("direct_cold", {})
        cold.add_row(step_name, *(f(diff, k) for k in keys), *(f(parts, k) for k in own))
    console.print(cold)
    console.print(
        "imports in a fresh interpreter: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in report["import_s"].items())
    )
    setup = report["setup_s"]
    console.print(
        "set-up (not per step): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in setup.items() if isinstance(v, float))
    )
    for err in report["errors"]:
        console.print(
            f"[red]error[/red] rep {err['rep']} {err['step']} {err['mode']}: "
            f"{escape(err['message'][:300])}"
        )
    console.print(
        "notebook_task overhead <= "
        f"{limit} s: "
        + "; ".join(
            f"vs {name.split(' - ')[1]}: "
            + ", ".join(f"{s} {v.upper()}" for s, v in verdict[name].items())
            for name in HEADLINE
        )
    )
    for name, ok in report["validity"].items():
        if not ok:
            console.print(f"[red]not judged: {name} is false[/red] (see the JSON)")
    console.print(f"overall: {verdict['overall'].upper()}; run time {report['run_seconds']:.0f} s")


def run(spec: BenchSpec, out: Path, workdir: Path, keep: bool, targets: Targets) -> dict:
    """The whole benchmark: set-up, the interleaved repetitions, the JSON and the tables."""
    from rich.console import Console

    console = Console() if sys.stdout.isatty() else Console(width=200)
    started = time.perf_counter()
    load_before = os.getloadavg()
    configure_environment(workdir, spec.threads)

    from prefect import flow, task

    from pipelines.steps import STEPS
    from pipelines.tracking import end_pipeline_run, log_step, start_pipeline_run

    names = list(STEPS)
    steps = names[: names.index(spec.last_step) + 1]
    cells = {s: direct_cells(STEPS[s].path) for s in steps}
    digests = {s: _sha256(STEPS[s].path) for s in steps}
    ctx = Context(spec=spec, workdir=workdir, cells=cells, probe=TaskProbe())
    setup: dict[str, Any] = {}
    if spec.warmup:
        setup.update(warm_up(ctx, steps, console.log))

    @task(name="bench-noop")
    def noop_task() -> None:
        return None

    @flow(name="bench-noop")
    def noop_flow() -> None:
        noop_task()

    t0 = time.perf_counter()
    noop_flow()  # the first flow starts Prefect's temporary API server
    setup["prefect_server_start_and_first_flow_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    noop_flow()
    setup["prefect_empty_flow_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mlflow_db = workdir / "run" / "mlflow" / "mlflow.db"
    mlflow_db.parent.mkdir(parents=True, exist_ok=True)
    ctx.tracking = start_pipeline_run(
        "bench-pipeline",
        {"repeats": spec.repeats, "steps": ",".join(steps)},
        tags={"ordinal.benchmark": "pipeline"},
        experiment="bench-pipeline",
        tracking_uri=f"sqlite:///{mlflow_db}",
    )
    setup["mlflow_store_start_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    log_step(ctx.tracking, "warmup", {})  # the first nested run sets up the client
    setup["mlflow_first_log_s"] = time.perf_counter() - t0
    console.log(
        "set-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in setup.items() if k.endswith("_s"))
    )

    holder: dict[str, Any] = {}

    # One flow around every repetition, as in the pipeline: the steps are its tasks. The
    # direct modes run inside it too, so Prefect's background threads burden every mode.
    @flow(name="bench-pipeline-overhead")
    def bench_flow() -> None:
        holder["result"] = measure(ctx, steps, console.log)

    assert ctx.probe is not None
    with ctx.probe.installed():
        bench_flow()
    raw, errors, comparisons = holder["result"]
    end_pipeline_run(ctx.tracking, "FINISHED", {}, [])
    console.log("import costs, each in a fresh interpreter")
    imports = import_costs(spec.child_timeout_s)
    load_after = os.getloadavg()

    direct_code = {
        s: {"notebook_sha256": digests[s], "cells": [asdict(c) for c in step_cells]}
        for s, step_cells in cells.items()
    }
    report = {
        "benchmark": "pipeline_step_overhead",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            **machine_info(),
            "torch_threads": _torch_threads(),
            "threads_requested": spec.threads or "library default",
            "load_average_1_5_15_start": [round(v, 2) for v in load_before],
            "load_average_1_5_15_end": [round(v, 2) for v in load_after],
        },
        "parameters": {
            **asdict(spec),
            "steps": steps,
            "modes": list(MODES),
            "step_parameters": "each notebook's defaults (run_dir '' in a fresh ORDINAL_HOME)",
            "source": {**json.loads(os.environ[SNAPSHOT_ENV]), "sha256": source_digest()},
            "mlflow": "local sqlite store, one parent run, one nested run per step",
        },
        "targets": asdict(targets),
        "setup_s": setup,
        "import_s": imports,
        "outputs_match": comparisons,
        "errors": errors,
        "run_seconds": time.perf_counter() - started,
        "direct_code": direct_code,
        "raw": raw,
    }
    report = finish_report(report, out, console)
    if not keep:
        shutil.rmtree(workdir / "run", ignore_errors=True)
    return report


def finish_report(report: dict[str, Any], out: Path, console: Any) -> dict[str, Any]:
    """Derive the summaries and the verdict from the raw timings; write the JSON; print.

    Everything but the run's records is derived here, so ``--report-only`` rebuilds a
    stored report with this version of the summaries.
    """
    if "direct_code" not in report:  # stored before it moved out of ``steps``
        report["direct_code"] = {s: e["direct_code"] for s, e in report["steps"].items()}
    targets = Targets(**report["targets"])
    steps, verdict = summarise(report["raw"], targets)
    validity = {"outputs_match": all(not c["missing"] for c in report["outputs_match"])}
    if not all(validity.values()):
        verdict["overall"] = "inconclusive"
        verdict["overall_rule"] += "; not judged: " + ", ".join(
            k for k, ok in validity.items() if not ok
        )
    derived = {"steps": steps, "verdict": verdict, "validity": validity}
    # The derived results before the raw timings and the direct code, which are long.
    tail = ("direct_code", "raw")
    head = {k: v for k, v in report.items() if k not in (*derived, *tail)}
    report = {**head, **derived, **{k: report[k] for k in tail}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_tables(console, report)
    console.print(f"wrote {out}")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from pipelines.steps import STEPS

    defaults = BenchSpec()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument(
        "--last-step",
        choices=list(STEPS),
        default=defaults.last_step,
        help="measure the chain up to this step (e.g. calibrate: the data steps only)",
    )
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=defaults.warmup,
        help="run the direct chain and one kernel once before measuring",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=defaults.threads,
        help="torch threads in every process; 0 keeps the default (docs/benchmarks-pipeline.md)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    parser.add_argument(
        "--report-only",
        type=Path,
        metavar="JSON",
        help="measure nothing: rebuild the summaries, verdict and tables of a stored report "
        "from its raw timings, and write them to --out",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--direct-child"]:  # before argparse: the child imports nothing else
        return direct_child(argv[1])
    args = parse_args(argv)
    spec = BenchSpec(
        repeats=args.repeats, last_step=args.last_step, warmup=args.warmup, threads=args.threads
    )
    if args.report_only:
        from rich.console import Console

        report = json.loads(args.report_only.read_text(encoding="utf-8"))
        report = finish_report(report, args.out, Console(width=200))
        return {"pass": 0, "fail": 1, "inconclusive": 2}[report["verdict"]["overall"]]
    workdir = args.workdir.resolve()
    if SNAPSHOT_ENV not in os.environ:
        exec_from_snapshot(argv, args.out.resolve(), workdir)
    report = run(spec, args.out, workdir, args.keep, Targets())
    return {"pass": 0, "fail": 1, "inconclusive": 2}[report["verdict"]["overall"]]


if __name__ == "__main__":
    sys.exit(main())
