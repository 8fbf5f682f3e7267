"""Chaos: real faults at seeded points of a real ``ordinal run``, each followed by a resume.

Every fault is a real ``kill -9`` (of the orchestrator, of the run's Prefect worker, of a
step's notebook kernel) while the step does measurable, checkpointed work (the stand-in
notebooks of ``chaos_notebooks``; the real notebooks' training is covered by the pipeline
tests). After the resume under the same run id, each test asserts that the run completed,
that its artefacts have the checksums of an uninterrupted run with the same seed, that the
recomputed work is at most one checkpoint interval, that one execution of the step ran at a
time, that no process, temporary API server, deployment or queue is left, and that MLflow
holds exactly one parent run for the run id (both attempts), with each step nested once and
the steps the resume reused marked ``ordinal.cached_by_attempt``.

``make test`` runs the sample (the operator's story: kill -9 of the orchestrator during
training); ``ORDINAL_CHAOS=full`` runs the whole matrix.
"""

from __future__ import annotations

import os
import time
import zlib

import pytest

from pipelines.steps import STEPS
from tests.chaos.harness import (
    STEP_NAMES,
    check_resumed,
    env_for,
    inject,
    run_args,
    work_units,
)
from tests.pipelines.helpers import prefect_servers_of, processes_inside

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
    check_resumed(result, home, reference, "train")


@pytest.mark.slow
@pytest.mark.chaos_full
@pytest.mark.parametrize(("fault", "step"), MATRIX)
def test_kill_9_then_resume(fault, step, home, notebooks, reference, tmp_path):
    log = tmp_path / "run.log"
    result = inject(fault, step, _seed(fault, step), home, notebooks, log)
    check_resumed(result, home, reference, step)


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
