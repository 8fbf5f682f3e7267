"""MLflow bookkeeping of a resumed run: one parent per run id, each step nested once.

A real MLflow store (SQLite in the test's folder) and the real ``pipelines.tracking`` calls
the flow and ``run_notebook`` make; the chaos suite checks the same end to end after real
faults.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipelines.tracking import log_step, start_pipeline_run


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def _runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("attempts")
    return client.search_runs([exp.experiment_id], max_results=100)


def _start(uri: str, run_id: str, **params):
    tags = {"ordinal.run_id": run_id}
    return start_pipeline_run(run_id, {"seed": 7, **params}, tags, "attempts", uri)


def test_a_resumed_run_continues_the_parent_of_its_killed_attempt(store):
    first = _start(store, "r1")
    log_step(first, "ingest", {"a": 1})
    log_step(first, "train", {"a": 1}, error=RuntimeError("kernel died"))
    # The first attempt is killed here: its parent stays RUNNING, its train run FAILED.
    other = _start(store, "r2")  # another run id in the same experiment is not touched
    second = _start(store, "r1")
    assert second.parent_run_id == first.parent_run_id != other.parent_run_id
    assert (first.attempt, second.attempt) == ("1", "2")
    executed = log_step(second, "train", {"a": 1})
    cached = log_step(first, "ingest", {"a": 1})  # its own id, found again: not a new run
    reused = log_step(second, "ingest", {"a": 1}, tags={"ordinal.cached_from": cached})
    assert reused == cached

    runs = _runs(store)
    parents = [r for r in runs if r.data.tags.get("ordinal.run_id") == "r1"]
    assert len(parents) == 1
    (parent,) = parents
    assert parent.data.tags["ordinal.attempts"] == "2"
    assert parent.data.tags["ordinal.previous_status"] == "RUNNING"
    assert parent.info.status == "RUNNING"
    nested = {
        r.info.run_name: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert Counter(
        r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    ) == Counter(["ingest", "train"])
    train = nested["train"]
    assert train.info.run_id == executed
    assert train.info.status == "FINISHED"
    assert "ordinal.error" not in train.data.tags
    assert train.data.tags["ordinal.previous_error"] == "kernel died"
    assert train.data.tags["ordinal.attempt"] == "2"
    assert nested["ingest"].data.tags["ordinal.attempt"] == "1"
    assert nested["ingest"].data.tags["ordinal.cached_by_attempt"] == "2"


def test_a_changed_parameter_on_resume_is_recorded_not_refused(store):
    first = _start(store, "r3", max_steps=10)
    second = _start(store, "r3", max_steps=20)
    assert second.parent_run_id == first.parent_run_id
    (parent,) = [r for r in _runs(store) if r.data.tags.get("ordinal.run_id") == "r3"]
    assert parent.data.params["max_steps"] == "10"
    assert parent.data.tags["ordinal.params_changed"] == '{"max_steps": "20"}'


def test_a_completed_resume_marks_the_steps_it_reused(store):
    from pipelines.tracking import end_pipeline_run

    first = _start(store, "r4")
    log_step(first, "ingest", {"a": 1})
    log_step(first, "train", {"a": 1}, error=RuntimeError("worker died"))
    second = _start(store, "r4")
    log_step(second, "train", {"a": 1})
    end_pipeline_run(second, "FINISHED", {"seconds_total": 1.0}, [])
    runs = _runs(store)
    (parent,) = [r for r in runs if r.data.tags.get("ordinal.run_id") == "r4"]
    assert parent.info.status == "FINISHED"
    nested = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId")
              == parent.info.run_id}  # fmt: skip
    assert nested["ingest"].data.tags["ordinal.cached_by_attempt"] == "2"
    assert "ordinal.cached_by_attempt" not in nested["train"].data.tags
