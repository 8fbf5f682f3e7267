"""A training run in its own process, for the kill-and-resume test.

Usage: ``python train_child.py OUTPUT_DIR MARKER_DIR {slow,plain}``. ``slow`` sleeps after
every step past the first checkpoint so the parent can kill it mid-run; each save drops a
``saved-<step>`` marker. The final metrics go to ``OUTPUT_DIR/result.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ordinal import TrainSpec, train_ordinal_model
from tests.helpers.keyword_data import keyword_records

SPEC = {"max_steps": 24, "save_steps": 8, "logging_steps": 4, "learning_rate": 3e-3, "seed": 0}


class Markers(TrainerCallback):
    def __init__(self, marker_dir: Path, slow: bool) -> None:
        self.marker_dir, self.slow = marker_dir, slow

    def on_save(self, args, state, control, **kwargs):
        (self.marker_dir / f"saved-{state.global_step}").touch()

    def on_step_end(self, args, state, control, **kwargs):
        if self.slow and state.global_step > SPEC["save_steps"]:
            time.sleep(1.0)


def main() -> None:
    output_dir, marker_dir, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    marker_dir.mkdir(parents=True, exist_ok=True)
    records = keyword_records(240, seed=1)
    spec = TrainSpec.quick(output_dir=output_dir, **SPEC)
    result = train_ordinal_model(
        spec, records[:200], records[200:], callbacks=[Markers(marker_dir, mode == "slow")]
    )
    (output_dir / "result.json").write_text(
        json.dumps(
            {
                "metrics": result.metrics,
                "global_step": result.global_step,
                "resumed_from": str(result.resumed_from) if result.resumed_from else None,
                "cutpoints": result.cutpoints,
            }
        )
    )


if __name__ == "__main__":
    main()
