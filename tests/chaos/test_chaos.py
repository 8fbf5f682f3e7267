"""Chaos: real faults at seeded points of a real ``ordinal run``, each followed by a resume.

Every fault is a real ``kill -9`` (of the orchestrator, of the run's Prefect worker, of a
step's notebook kernel) while the step does measurable, checkpointed work (the stand-in
notebooks of ``chaos_notebooks``; the real notebooks' training is covered by the pipeline
tests). After the resume under the same run id, each test asserts that the run completed,
that its artefacts have the checksums of an uninterrupted run with the same seed, that the
recomputed work is at most one checkpoint interval, that one execution of the step ran at a
time, that no process, temporary API server, deployment or queue is left, and that MLflow's
parent run of the resume lists each step once.

``make test`` runs the sample (the operator's story: kill -9 of the orchestrator during
training); ``ORDINAL_CHAOS=full`` runs the whole matrix.
"""

from __future__ import annotations

import os
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest

from pipelines.steps import STEPS
from tests.chaos.chaos_notebooks import write_chaos_notebooks
from tests.chaos.harness import (
    SAVE,
    STEP_NAMES,
    checksums,
    env_for,
    inject,
    leftovers,
    one_at_a_time,
    record,
    run_args,
    run_to_end,
    work_units,
)
from tests.pipelines.helpers import mlflow_runs, prefect_servers_of, processes_inside


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory) -> Path:
    return write_chaos_notebooks(tmp_path_factory.mktemp("chaos-notebooks"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, notebooks) -> dict[str, str]:
    """Checksums of the artefacts of an uninterrupted run with the same seed."""
    home = tmp_path_factory.mktemp("chaos-reference")
    log = home / "run.log"
    rc = run_to_end(run_args("reference", "in-process"), env_for(home, notebooks, True), log)
    assert rc == 0, log.read_text()[-3000:]
    return checksums(home / "runs" / "reference")


def _check(result, home: Path, reference: dict[str, str], step: str) -> None:
    run_dir = home / "runs" / result.run_id
    assert result.survived, f"the resumed run failed ({result.resumed_rc})"
    assert checksums(run_dir) == reference
    assert result.recomputed_units <= SAVE, result
    units = work_units(run_dir, step)
    assert one_at_a_time(units), f"two executions of {step} wrote at once: {units}"
    assert sorted({u for u, _ in units}) == list(range(1, max(u for u, _ in units) + 1))
    left = leftovers(home, run_dir.name)
    assert all(not v for v in left.values()), left
    parents = [r for r in mlflow_runs(home) if "mlflow.parentRunId" not in r.data.tags]
    resumed = max(parents, key=lambda r: r.info.start_time)
    nested = Counter(
        r.info.run_name
        for r in mlflow_runs(home)
        if r.data.tags.get("mlflow.parentRunId") == resumed.info.run_id
    )
    assert nested == Counter(STEP_NAMES), nested
    record(result)


#: Every fault in every step; the worker only during compute steps (the others run on the
#: control side, before the worker exists or beside it).
MATRIX = [
    (fault, step)
    for fault in ("orchestrator", "worker", "kernel")
    for step in STEP_NAMES
    if fault != "worker" or STEPS[step].compute
]


def _seed(fault: str, step: str) -> int:
    return zlib.crc32(f"{fault}:{step}".encode())


@pytest.mark.slow
def test_kill_9_of_the_orchestrator_during_training_is_fenced_and_resumed(
    home, notebooks, reference, tmp_path
):
    """The operator's story: kill -9 of ``ordinal run`` while training runs on the worker.

    The guard is off here (``ORDINAL_RUN_GUARD=0``), as if it had died with the
    orchestrator: the worker, its kernel and the temporary API server live on, and the
    resume must fence them before it trains.
    """
    log = tmp_path / "run.log"
    result = inject("orchestrator", "train", _seed("orchestrator", "train"), home, notebooks, log)
    assert result.first_rc == -9
    assert "fenced the run's previous owner" in log.read_text(), log.read_text()[-3000:]
    _check(result, home, reference, "train")


@pytest.mark.slow
@pytest.mark.chaos_full
@pytest.mark.parametrize(("fault", "step"), MATRIX)
def test_kill_9_then_resume(fault, step, home, notebooks, reference, tmp_path):
    log = tmp_path / "run.log"
    result = inject(fault, step, _seed(fault, step), home, notebooks, log)
    _check(result, home, reference, step)


@pytest.mark.slow
@pytest.mark.chaos_full
def test_a_run_never_resumed_leaves_nothing_behind(home, notebooks, tmp_path):
    """kill -9 of the orchestrator with the guard on: no resume, and still no leftovers."""
    import signal
    import subprocess

    run_dir = home / "runs" / "abandoned"
    with (tmp_path / "run.log").open("w") as out:
        proc = subprocess.Popen(
            run_args("abandoned"), env=env_for(home, notebooks, True), stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 600
    while len(work_units(run_dir, "train")) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    while processes_inside(run_dir) or prefect_servers_of(home / "prefect"):
        assert time.monotonic() - t0 < 30, (processes_inside(run_dir), prefect_servers_of(home))
        time.sleep(0.2)
