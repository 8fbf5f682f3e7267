"""Finding the checkpoint a run can resume from."""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["is_complete_checkpoint", "latest_checkpoint"]

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def is_complete_checkpoint(path: Path) -> bool:
    """True when ``path`` holds weights, optimizer state and ``trainer_state.json``.

    The Trainer writes ``trainer_state.json`` after the weights and optimizer, so a run
    killed in the middle of a save leaves a checkpoint without it, which is skipped.
    """
    state = path / "trainer_state.json"
    if not (state.is_file() and (path / "optimizer.pt").is_file()):
        return False
    if not any((path / name).is_file() for name in _WEIGHTS):
        return False
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # killed while the state file was being written
    return True


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete ``checkpoint-N`` folder with the highest ``N`` in ``output_dir``."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir() and is_complete_checkpoint(child):
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None
