"""How ``make test`` spreads the suite over xdist workers: scopes, their order, their followers.

A *scope* is what one worker runs together (:func:`xdist_scope`). The suite's wall time is
set by its long scopes (VMs applied with Terraform, the stack, real notebooks): they start
first, longest first, from the measured seconds in ``tests/durations.json``
(:func:`order_items`), and a worker is handed a new scope only when it is about to run its
last test (:func:`make_scheduler`). A worker cannot start a test before it knows the next one
(pytest's ``nextitem``), so a long last test gets the cheapest scope left as its follower,
not the next long one.

Refresh the measurements after adding or changing slow tests::

    ORDINAL_TEST_TIMINGS=/tmp/timings.jsonl make test
    python -m tests.scheduling /tmp/timings.jsonl
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

#: Folders whose conftest holds session fixtures (a stack, a built service, an emulated cloud,
#: a reference run): their tests run on one xdist worker, so each is set up once.
DIRECTORY_SCOPES = (
    "tests/chaos",
    "tests/data_layer",
    "tests/export",
    "tests/infra",
    "tests/release",
    "tests/serving",
    "tests/stack",
)
#: Files of long, independent tests (no fixture broader than a test): one test per scope, so
#: they spread over the workers instead of queueing on one.
PER_TEST_FILES = (
    "tests/pipelines/test_flow_paths.py",
    "tests/pipelines/test_pipeline_end_to_end.py",
)
#: Files sharing a session fixture of their folder's conftest, named for what they share:
#: one scope each group (the emulated cloud is started and its platform applied once).
SHARED_SCOPES = {
    "tests/pipelines/test_pipeline_tofu.py": "tests/pipelines (emulated cloud)",
    "tests/pipelines/test_pipeline_tofu_stop.py": "tests/pipelines (emulated cloud)",
}
DURATIONS_FILE = Path(__file__).with_name("durations.json")
#: Seconds assumed for a test with no measurement (most tests take well under a second), and
#: for an unmeasured test marked ``slow``.
UNMEASURED_SECONDS = 0.5
UNMEASURED_SLOW_SECONDS = 60.0
#: Tests measured shorter than this are left out of ``durations.json``.
RECORDED_ABOVE_SECONDS = 3.0
#: A waiting last test at least this long gets the cheapest scope left as its follower.
LONG_TEST_SECONDS = 30.0
#: Where each worker appends one line per test (setup to teardown) when set.
TIMINGS_ENV = "ORDINAL_TEST_TIMINGS"


def xdist_scope(nodeid: str) -> str:
    """The unit ``make test`` schedules on one xdist worker: a folder above, a group of
    ``SHARED_SCOPES``, a single test of ``PER_TEST_FILES``, else the test's file (its module
    fixtures are set up once).

    >>> xdist_scope("tests/stack/test_backup_restore.py::test_restore")
    'tests/stack'
    >>> xdist_scope("tests/pipelines/test_pipeline_tofu_stop.py::test_a_stopped_run[sigterm]")
    'tests/pipelines (emulated cloud)'
    >>> xdist_scope("tests/test_losses.py::test_corn_loss[2]")
    'tests/test_losses.py'
    """
    path = nodeid.split("::")[0]
    if path in SHARED_SCOPES:
        return SHARED_SCOPES[path]
    if path in PER_TEST_FILES:
        return nodeid
    return next((d for d in DIRECTORY_SCOPES if path.startswith(d + "/")), path)


def load_durations(path: Path = DURATIONS_FILE) -> dict[str, float]:
    """Measured seconds per test id (empty when the file is missing)."""
    if not path.is_file():
        return {}
    return {k: float(v) for k, v in json.loads(path.read_text("utf-8"))["seconds"].items()}


def estimate(nodeid: str, durations: dict[str, float]) -> float:
    """A test's expected seconds: measured, else :data:`UNMEASURED_SECONDS`."""
    return durations.get(nodeid, UNMEASURED_SECONDS)


def order_items(items: list[Any], durations: dict[str, float]) -> None:
    """Sort ``items`` in place: scopes by expected seconds, longest first; within a scope,
    collection order (a scope's fixtures and its tests' order are its own)."""
    cost: dict[str, float] = {}
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        scope = xdist_scope(item.nodeid)
        seconds = estimate(item.nodeid, durations)
        if item.nodeid not in durations and item.get_closest_marker("slow"):
            seconds = UNMEASURED_SLOW_SECONDS  # a new slow test, not measured yet
        cost[scope] = cost.get(scope, 0.0) + seconds
        first.setdefault(scope, index)
    position = {id(item): index for index, item in enumerate(items)}
    items.sort(
        key=lambda i: (-cost[xdist_scope(i.nodeid)], first[xdist_scope(i.nodeid)], position[id(i)])
    )


def make_scheduler(config: Any, log: Any, durations: dict[str, float]) -> Any:
    """An xdist scheduler over :func:`xdist_scope` that keeps the collection's order and
    hands a worker its next scope only when it is down to its last test."""
    from xdist.scheduler import LoadScopeScheduling

    # xdist would re-sort the scopes by their number of tests, putting the long single-test
    # scopes last.
    config.option.loadscopereorder = False

    class ScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

        def _reschedule(self, node: Any) -> None:
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            pending = [
                nodeid
                for unit in self.assigned_work.get(node, {}).values()
                for nodeid, done in unit.items()
                if not done
            ]
            # Two or more pending: the worker knows its next test and keeps going.
            if len(pending) > 1:
                return
            # One pending: it waits for a follower before running it. Behind a long test,
            # the cheapest scope left (the queue's tail); otherwise the longest (its head).
            behind_long = bool(pending) and estimate(pending[0], durations) >= LONG_TEST_SECONDS
            self._assign(node, cheapest=behind_long)

        def _assign_work_unit(self, node: Any) -> None:
            self._assign(node, cheapest=False)

        def _assign(self, node: Any, cheapest: bool) -> None:
            scope, unit = self.workqueue.popitem(last=cheapest)
            self.assigned_work.setdefault(node, {})[scope] = unit
            collection = self.registered_collections[node]
            node.send_runtest_some([collection.index(n) for n, done in unit.items() if not done])

    return ScopeScheduling(config, log)


def record_timing(nodeid: str, started: float, finished: float) -> None:
    """Append one test's seconds to :data:`TIMINGS_ENV`'s file (when set)."""
    out = os.environ.get(TIMINGS_ENV)
    if not out:
        return
    line = json.dumps(
        {
            "id": nodeid,
            "seconds": round(finished - started, 1),
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "finished": round(finished, 1),
        }
    )
    with open(out, "a", encoding="utf-8") as fh:  # one short line: appends do not interleave
        fh.write(line + "\n")


def write_durations(timings: Path, path: Path = DURATIONS_FILE) -> int:
    """Fold a timings file into ``durations.json`` (tests above the recording threshold);
    return how many were recorded."""
    seconds: dict[str, float] = {}
    for line in timings.read_text("utf-8").splitlines():
        row = json.loads(line)
        seconds[row["id"]] = row["seconds"]
    kept = {k: v for k, v in sorted(seconds.items()) if v >= RECORDED_ABOVE_SECONDS}
    doc = {
        "about": "seconds per test, setup to teardown, on 3 xdist workers on 2 cores; "
        "tests/scheduling.py orders the suite's scopes by them",
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "seconds": kept,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return len(kept)


if __name__ == "__main__":
    count = write_durations(Path(sys.argv[1]))
    print(f"{DURATIONS_FILE}: {count} tests recorded")
