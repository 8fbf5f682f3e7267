"""Where the library keeps run state when nothing else is configured.

The embedded default is a ``.ordinal/`` folder under the current working directory
(git-ignored). ``ORDINAL_HOME`` moves it. Everything that writes run state asks this module.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "ORDINAL_HOME"


def state_dir() -> Path:
    """Return the project's state folder (``$ORDINAL_HOME`` or ``./.ordinal``), created."""
    root = Path(os.environ.get(STATE_DIR_ENV) or Path.cwd() / ".ordinal").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root
