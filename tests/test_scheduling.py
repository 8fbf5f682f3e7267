"""How ``make test`` spreads the suite over xdist workers (``tests/scheduling.py``).

The scheduler is xdist's own scope scheduler with two hooks replaced; these tests drive it
with stand-in workers (they record what they are sent) rather than starting xdist inside
the suite.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.scheduling import (
    load_durations,
    make_scheduler,
    order_items,
    record_timing,
    write_durations,
    xdist_scope,
)


class _Worker:
    """Stands in for xdist's ``WorkerController``: keeps what it is asked to run."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[list[int]] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.append(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def _scheduler(collection: list[str], durations: dict[str, float], workers: int):
    config = SimpleNamespace(
        option=SimpleNamespace(loadscopereorder=True),
        getvalue=lambda name: [f"{workers}*popen"] if name == "tx" else None,
    )
    sched = make_scheduler(config, None, durations)
    nodes = [_Worker(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, collection)
    sched.schedule()
    return sched, nodes


def _scopes_sent(node: _Worker, collection: list[str]) -> list[str]:
    return [xdist_scope(collection[batch[0]]) for batch in node.sent]


E2E = "tests/pipelines/test_pipeline_end_to_end.py"


def test_a_long_single_test_gets_the_cheapest_scope_as_its_follower():
    durations = {
        f"{E2E}::test_text": 400.0,  # a scope of its own
        f"{E2E}::test_image": 150.0,
        "tests/stack/test_a.py::test_1": 200.0,  # the stack: 300 s over two tests
        "tests/stack/test_b.py::test_2": 100.0,
    }
    items = [
        _item("tests/test_losses.py::test_x"),  # unmeasured: cheap
        _item("tests/stack/test_a.py::test_1"),
        _item(f"{E2E}::test_image"),
        _item("tests/stack/test_b.py::test_2"),
        _item("tests/test_metrics.py::test_y"),
        _item(f"{E2E}::test_text"),
    ]
    order_items(items, durations)  # what each worker's collection does
    collection = [i.nodeid for i in items]
    sched, (first, second) = _scheduler(collection, durations, workers=2)
    # xdist's re-sort by test count is off: the queue keeps the collection's order.
    assert sched.config.option.loadscopereorder is False
    # gw0: the 400 s test cannot start without a follower; it gets the cheapest scope left,
    # not the 150 s test.
    assert _scopes_sent(first, collection) == [f"{E2E}::test_text", "tests/test_metrics.py"]
    # gw1 has two stack tests pending: nothing more until it is down to its last one.
    assert _scopes_sent(second, collection) == ["tests/stack"]
    sched.mark_test_complete(second, collection.index("tests/stack/test_a.py::test_1"))
    # Its last test is 100 s (long): the cheapest scope left follows it.
    assert _scopes_sent(second, collection)[-1] == "tests/test_losses.py"
    # Then, down to a cheap last test, the longest scope left: the 150 s test.
    sched.mark_test_complete(second, collection.index("tests/stack/test_b.py::test_2"))
    assert _scopes_sent(second, collection)[-1] == f"{E2E}::test_image"
    assert not sched.workqueue


def test_a_short_last_test_is_followed_by_the_longest_scope_left():
    collection = [
        "tests/infra/test_a.py::test_1",
        "tests/infra/test_a.py::test_2",
        f"{E2E}::test_text",
        "tests/test_losses.py::test_x",
    ]
    durations = {"tests/infra/test_a.py::test_1": 5.0, f"{E2E}::test_text": 400.0}
    sched, (node,) = _scheduler(collection, durations, workers=1)
    assert _scopes_sent(node, collection) == ["tests/infra"]
    sched.mark_test_complete(node, 0)
    assert _scopes_sent(node, collection)[-1] == f"{E2E}::test_text"


def _item(nodeid: str, slow: bool = False):
    return SimpleNamespace(
        nodeid=nodeid, get_closest_marker=lambda name: object() if slow and name == "slow" else None
    )


def test_items_are_ordered_by_scope_seconds_keeping_each_scopes_order():
    items = [
        _item("tests/test_losses.py::test_a"),
        _item("tests/stack/test_z.py::test_1"),
        _item("tests/test_losses.py::test_b"),
        _item(f"{E2E}::test_image"),
        _item("tests/stack/test_a.py::test_2"),
        _item("tests/test_new.py::test_slow", slow=True),  # not measured yet
    ]
    durations = {
        "tests/stack/test_z.py::test_1": 50.0,
        "tests/stack/test_a.py::test_2": 40.0,
        f"{E2E}::test_image": 70.0,
    }
    order_items(items, durations)
    assert [i.nodeid for i in items] == [
        "tests/stack/test_z.py::test_1",  # the stack: 90 s
        "tests/stack/test_a.py::test_2",
        f"{E2E}::test_image",  # 70 s
        "tests/test_new.py::test_slow",  # marked slow: 60 s until measured
        "tests/test_losses.py::test_a",  # unmeasured: 0.5 s each, collection order kept
        "tests/test_losses.py::test_b",
    ]


def test_timings_fold_into_the_durations_file(tmp_path, monkeypatch):
    timings = tmp_path / "timings.jsonl"
    monkeypatch.setenv("ORDINAL_TEST_TIMINGS", str(timings))
    record_timing("tests/a.py::test_long", 100.0, 142.34)
    record_timing("tests/a.py::test_short", 100.0, 100.2)
    out = tmp_path / "durations.json"
    assert write_durations(timings, out) == 1
    assert load_durations(out) == {"tests/a.py::test_long": pytest.approx(42.3)}
    assert json.loads(out.read_text())["measured"]
    monkeypatch.delenv("ORDINAL_TEST_TIMINGS")
    record_timing("tests/a.py::test_other", 0.0, 50.0)  # not asked for: nothing written
    assert len(timings.read_text().splitlines()) == 2


def test_the_committed_durations_name_tests_that_exist(request):
    """A renamed or deleted slow test must not keep its measurement (it would steer the
    schedule by a test that is gone)."""
    measured = set(load_durations())
    assert measured, "tests/durations.json is missing or empty"
    root = request.config.rootpath
    assert sorted(m for m in measured if not (root / m.split("::")[0]).is_file()) == []
    # Of the files this session collected, every measured test is still there.
    collected = {item.nodeid for item in request.session.items}
    files = {nodeid.split("::")[0] for nodeid in collected}
    assert sorted(m for m in measured if m.split("::")[0] in files and m not in collected) == []
