"""Stand-in step notebooks that do measurable, checkpointed work, for the chaos suite.

Each step performs ``units`` units of work (a sleep and a hash chain seeded by the run's seed),
appending ``unit pid`` to ``{step}/work.log`` for each unit it computes. The training step
writes a checkpoint every ``save`` units (atomically, as the Trainer's checkpoints are) and
resumes from the latest; the other steps start over, as the real ones do. So the recomputed
work after a fault is measured from ``work.log`` (units computed more than once), and the
final artefacts of an interrupted-then-resumed run can be compared byte for byte with an
uninterrupted one. Sizes come from the environment (``CHAOS_UNITS``, ``CHAOS_TRAIN_UNITS``,
``CHAOS_SAVE``, ``CHAOS_UNIT_SECONDS``), which the kernels inherit from the run. With an
``s3://`` storage root each step also uploads a payload derived from its state
(``CHAOS_UPLOAD_BYTES``, 1 MiB by default) to ``{storage}/runs/{run_id}/{step}/payload.bin``
before it publishes, so that a connection cut can hit a real upload.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from pipelines.steps import STEPS

BODY = """
import hashlib, json, os, time
from pathlib import Path
from ordinal.paths import state_dir
from ordinal.runs import resolve_run_dir, step_dir, write_step_outputs
name = {name!r}
run = resolve_run_dir(run_dir)
folder = step_dir(run, name)
units = int(os.environ.get("CHAOS_TRAIN_UNITS" if name == "train" else "CHAOS_UNITS", 4))
save = int(os.environ.get("CHAOS_SAVE", 5)) if name == "train" else 0
pause = float(os.environ.get("CHAOS_UNIT_SECONDS", 0.2))
order = {order!r}
upstream = run / order[order.index(name) - 1] / "artefact.json" if name != order[0] else None
state = hashlib.sha256(
    f"{{name}}:{{globals().get('seed', 0)}}:".encode()
    + (upstream.read_bytes() if upstream is not None else b"")
).hexdigest()
start = 0
checkpoints = folder / "checkpoints"
if save:
    checkpoints.mkdir(exist_ok=True)
    done = sorted(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))
    if done:
        start = done[-1]
        state = json.loads((checkpoints / f"checkpoint-{{start}}").read_text())["state"]
        print(f"resumed from checkpoint-{{start}}")
with open(folder / "work.log", "a") as log:
    for unit in range(start + 1, units + 1):
        time.sleep(pause)
        state = hashlib.sha256(f"{{state}}:{{unit}}".encode()).hexdigest()
        log.write(f"{{unit}} {{os.getpid()}}\\n")
        log.flush()
        if save and unit % save == 0:
            tmp = checkpoints / f".tmp-{{unit}}"
            tmp.write_text(json.dumps({{"state": state}}))
            tmp.replace(checkpoints / f"checkpoint-{{unit}}")
"""

FINISH = """
if str(globals().get("storage") or "").startswith("s3://"):
    # The step's upload (the real steps store datasets, models and reports there): a
    # payload derived from the step's state, of CHAOS_UPLOAD_BYTES; S3 makes it atomic.
    from ordinal.artifacts.storage import open_storage
    size = int(os.environ.get("CHAOS_UPLOAD_BYTES", 1 << 20))
    open_storage(storage).put_bytes(
        hashlib.shake_256(state.encode()).digest(size), f"runs/{{run.name}}/{{name}}/payload.bin"
    )
artefact = folder / "artefact.json"
tmp = folder / ".artefact.tmp"
tmp.write_text(json.dumps({{"step": name, "state": state}}))
tmp.replace(artefact)
for rel in {outputs!r}:
    p = run / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    # history.json as the Trainer's log history (a list of entries); the rest as a record.
    record = {{"from": state}}
    p.write_text(json.dumps([{{"step": units, **record}}] if p.name == "history.json" else record))
write_step_outputs(run, name, {{
    "step": name, "metrics": {{"eval_mae": 0.5}}, "artifacts": [str(artefact)],
    "model_dir": str(folder), "onnx_path": str(folder), "int8_path": str(folder),
    "state_dir": str(state_dir()),
}})
"""


def write_chaos_notebooks(folder: Path) -> Path:
    """Write one chaos notebook per step into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(STEPS)
    for name, step in STEPS.items():
        params = "\n".join(
            f"{k} = {f.get_default(call_default_factory=True)!r}"
            for k, f in step.params.model_fields.items()
        )
        cells = [
            new_code_cell(params, metadata={"tags": ["parameters"]}),
            new_code_cell(BODY.format(name=name, order=order)),
            new_code_cell(FINISH.format(outputs=list(step.outputs))),
        ]
        nb = new_notebook(cells=cells)
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}  # fmt: skip
        nbformat.write(nb, folder / step.notebook)
    return folder
