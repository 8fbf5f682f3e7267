"""Inject a real fault into a running ``ordinal run``, resume it, and measure what was lost."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from tests.pipelines.helpers import ORDINAL, mlflow_runs, prefect_servers_of, processes_inside

#: The sizes of the stand-in work (``chaos_notebooks``): 24 training units of 0.25 s,
#: a checkpoint every 6 units (the checkpoint interval), 4 units for every other step.
SIZES = {"CHAOS_TRAIN_UNITS": "24", "CHAOS_SAVE": "6", "CHAOS_UNIT_SECONDS": "0.25",
         "CHAOS_UNITS": "4"}  # fmt: skip
SAVE = int(SIZES["CHAOS_SAVE"])
STEP_NAMES = ("ingest", "preprocess", "calibrate", "train", "export", "parity", "quantize")
ARTEFACTS = [f"{s}/artefact.json" for s in STEP_NAMES]
ARTEFACTS += ["train/model/config.json", "train/history.json"]


@dataclass
class FaultResult:
    """One row of the chaos table."""

    fault: str
    step: str
    run_id: str
    at_unit: int
    first_rc: int | None
    resumed_rc: int
    survived: bool = False
    recomputed_units: int = 0
    recomputed_seconds: float = 0.0
    checkpoint_interval_seconds: float = SAVE * float(SIZES["CHAOS_UNIT_SECONDS"])
    fencing: dict = field(default_factory=dict)
    seconds: float = 0.0
    detail: dict = field(default_factory=dict)


def run_args(run_id: str, compute: str = "worker") -> list[str]:
    return [str(ORDINAL), "run", "--run-id", run_id, "--compute", compute, "--model",
            "bert-tiny", "--set", "seed=7"]  # fmt: skip


def env_for(home: Path, notebooks: Path, guard: bool) -> dict[str, str]:
    from pipelines.steps import NOTEBOOK_DIR_ENV

    env = {k: v for k, v in os.environ.items() if k != "ORDINAL_RUN_OWNER"}
    env.update(SIZES, COLUMNS="200", PREFECT_HOME=str(home / "prefect"), ORDINAL_HOME=str(home))
    env.update({NOTEBOOK_DIR_ENV: str(notebooks), "ORDINAL_RUN_GUARD": "1" if guard else "0"})
    return env


def run_to_end(args: list[str], env: dict[str, str], log: Path, timeout: float = 900) -> int:
    with log.open("a") as out:
        return subprocess.run(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False).returncode  # fmt: skip


def checksums(run_dir: Path) -> dict[str, str]:
    import hashlib

    return {rel: hashlib.sha256((run_dir / rel).read_bytes()).hexdigest() for rel in ARTEFACTS}


def work_units(run_dir: Path, step: str) -> list[tuple[int, int]]:
    path = run_dir / step / "work.log"
    if not path.is_file():
        return []
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines() if line]


def _target(fault: str, run_dir: Path, step: str, orchestrator: subprocess.Popen) -> int | None:
    if fault == "orchestrator":
        return orchestrator.pid
    if fault == "worker":
        state = run_dir / "provision" / "state.json"
        return json.loads(state.read_text())["pid"] if state.is_file() else None
    for proc in psutil.process_iter(["cmdline"]):  # the kernel: runs in the step's folder
        try:
            if (
                "ipykernel" in " ".join(proc.info["cmdline"] or [])
                and Path(proc.cwd()) == run_dir / step
            ):
                return proc.pid
        except (psutil.Error, OSError):
            continue
    return None


def inject(
    fault: str, step: str, seed: int, home: Path, notebooks: Path, log: Path, guard: bool = False
) -> FaultResult:
    """Start a run, kill -9 ``fault`` (orchestrator, worker, kernel) at a seeded unit of
    ``step``, wait for the run to end, resume it under the same id; measure."""
    rng = random.Random(seed)
    units = int(SIZES["CHAOS_TRAIN_UNITS"] if step == "train" else SIZES["CHAOS_UNITS"])
    at = rng.randint(1, units - 1)
    run_id = f"chaos-{fault}-{step}-{seed}"
    run_dir = home / "runs" / run_id
    env = env_for(home, notebooks, guard)
    started = time.monotonic()
    with log.open("a") as out:
        proc = subprocess.Popen(run_args(run_id), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while len(work_units(run_dir, step)) < at:
            assert proc.poll() is None, f"the run ended before the fault: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the step never reached the fault point"
            time.sleep(0.05)
        pid = _target(fault, run_dir, step, proc)
        assert pid is not None, f"no {fault} process found in step {step}"
        os.kill(pid, signal.SIGKILL)
        first_rc = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    resumed_rc = run_to_end(run_args(run_id), env, log)
    seconds = time.monotonic() - started
    result = FaultResult(fault, step, run_id, at, first_rc, resumed_rc, seconds=seconds)
    counts = Counter(unit for unit, _ in work_units(run_dir, step))
    result.recomputed_units = sum(n - 1 for n in counts.values())
    result.recomputed_seconds = result.recomputed_units * float(SIZES["CHAOS_UNIT_SECONDS"])
    summary = json.loads((run_dir / "summary.json").read_text())
    result.survived = resumed_rc == 0 and summary["status"] == "completed"
    result.fencing = _fencing_report(log)
    return result


def _fencing_report(log: Path) -> dict:
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("fenced the run's previous owner:"):
            return {"line": line[:1000]}
    return {}


#: How long a resumed run's processes may take to go after its command returned.
LEFTOVER_WAIT_SECONDS = 30.0


def leftovers(home: Path, run_id: str) -> dict[str, list[str]]:
    """Processes, temporary API servers, deployments and queues a run left."""
    run_dir = home / "runs" / run_id
    out = {"processes": processes_inside(run_dir), "servers": prefect_servers_of(home / "prefect")}
    db = home / "prefect" / "prefect.db"
    if db.is_file():
        with sqlite3.connect(db) as con:
            out["deployments"] = [r[0] for r in con.execute("select name from deployment")
                                  if r[0] == f"run-{run_id}"]  # fmt: skip
            out["queues"] = [r[0] for r in con.execute("select name from work_queue")
                             if r[0] == f"run-{run_id}"]  # fmt: skip
    return out


def one_at_a_time(units: list[tuple[int, int]]) -> bool:
    """True when no execution wrote after a later one started (no A, B, A in the pids)."""
    seen: list[int] = []
    for _, pid in units:
        if not seen or seen[-1] != pid:
            if pid in seen:
                return False
            seen.append(pid)
    return True


def record(result: FaultResult) -> None:
    """Append ``result`` to ``$ORDINAL_CHAOS_RESULTS`` (JSON lines), if set."""
    path = os.environ.get("ORDINAL_CHAOS_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(result)) + "\n")


def check_resumed(
    result: FaultResult,
    home: Path,
    reference: dict[str, str],
    step: str,
    left: dict[str, list[str]] | None = None,
    runs: list | None = None,
) -> None:
    """The suite's assertions after a fault and its resume (see ``test_chaos``).

    ``left`` (leftover processes, servers, deployments, queues) and ``runs`` (MLflow runs)
    default to the local ones of ``home``; a run on the stack passes the stack's.
    """
    run_dir = home / "runs" / result.run_id
    assert result.survived, f"the resumed run failed ({result.resumed_rc})"
    assert checksums(run_dir) == reference
    units = work_units(run_dir, step)
    assert result.recomputed_units <= SAVE, result
    assert one_at_a_time(units), f"two executions of {step} wrote at once: {units}"
    assert sorted({u for u, _ in units}) == list(range(1, max(u for u, _ in units) + 1))
    if left is None:
        # A server stopped at the command's exit may take a few seconds to go on a loaded
        # machine (Prefect's own stop: SIGTERM, 5 s, SIGKILL); a real leftover stays.
        deadline = time.monotonic() + LEFTOVER_WAIT_SECONDS
        left = leftovers(home, run_dir.name)
        while any(left.values()) and time.monotonic() < deadline:
            time.sleep(1.0)
            left = leftovers(home, run_dir.name)
    assert all(not v for v in left.values()), left
    check_one_parent(mlflow_runs(home) if runs is None else runs, result.run_id)
    record(result)


def check_one_parent(runs: list, run_id: str, attempts: int = 2) -> None:
    """MLflow holds exactly one parent run for ``run_id`` (finished, ``attempts`` attempts),
    with each step nested exactly once; steps an attempt did not execute are marked cached."""
    parents = [
        r
        for r in runs
        if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("ordinal.run_id") == run_id
    ]
    assert len(parents) == 1, [(p.info.run_id, p.info.status) for p in parents]
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ordinal.attempts"] == str(attempts)
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert Counter(r.info.run_name for r in nested) == Counter(STEP_NAMES)
    for run in nested:
        assert run.info.status == "FINISHED", (run.info.run_name, run.info.status)
        executed_in = int(run.data.tags.get("ordinal.attempt", "1"))
        if executed_in < attempts:
            assert run.data.tags.get("ordinal.cached_by_attempt") == str(attempts), run.data.tags
