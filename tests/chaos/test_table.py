"""The chaos table of docs/reliability.md, rendered from hand-written result lines."""

from __future__ import annotations

import json

from tests.chaos.table import render

ROW = {"step": "train", "at_unit": 4, "first_rc": -9, "survived": True, "recomputed_units": 3,
       "recomputed_seconds": 0.75, "checkpoint_interval_seconds": 1.5, "seconds": 176.9,
       "detail": {}}  # fmt: skip
FENCED = (
    "fenced the run's previous owner: {'owner': 'pid 1 on vm since 2026-11-30T20:13:04+00:00',"
    " 'processes_killed': [8442, 8450], 'children_killed': ['prefect_server'], 'worker': "
    "{'provisioner': 'local', 'started': 'nothing'}, 'seconds': 9.401}"
)


def test_the_fencing_column_says_what_the_resume_stopped(tmp_path):
    rows = [
        {**ROW, "fault": "orchestrator", "fencing": {"line": FENCED}},
        {**ROW, "fault": "worker", "fencing": {"line": FENCED.replace("8442, 8450", "")
                                              .replace("['prefect_server']", "[]")}},
        {**ROW, "fault": "kernel", "fencing": {}},
    ]  # fmt: skip
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = render(path).splitlines()
    assert len(lines) == 5
    assert lines[2] == (
        "| orchestrator | train | unit 4 | -9 | yes | 3 units = 0.75 s | 1.5 s | "
        "fenced 2 process(es) + API server, 9.4 s | 177 |"
    )
    assert "| fenced 0 process(es), 9.4 s |" in lines[3]
    assert "| nothing to fence |" in lines[4]
