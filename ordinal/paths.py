"""Where the library keeps run state, and where it finds the files the project ships.

The embedded default for state is a ``.ordinal/`` folder under the current working
directory (git-ignored). ``ORDINAL_HOME`` moves it. Everything that writes run state asks
this module.

Files the project ships beside its packages (step notebooks, export configs, work-pool and
block declarations, committed calibration selections) are kept once, at the top of the
repository, and installed by ``pip install .`` under ``{prefix}/share/ordinal/``
(``[tool.setuptools.data-files]``). :func:`project_file` finds them in either place, so
nothing depends on the current directory or on a checkout.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

__all__ = ["STATE_DIR_ENV", "project_file", "state_dir"]

STATE_DIR_ENV = "ORDINAL_HOME"
_CHECKOUT = Path(__file__).resolve().parents[1]


def project_file(*parts: str) -> Path:
    """A file or folder the project ships: the checkout's copy when the package runs from a
    checkout (editable install, tests), else the installed copy under
    ``{sys.prefix}/share/ordinal/``.

    >>> project_file("configs", "export").name
    'export'
    """
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "ordinal").is_dir():
        return _CHECKOUT.joinpath(*parts)
    return Path(sysconfig.get_path("data")).joinpath("share", "ordinal", *parts)


def state_dir() -> Path:
    """Return the project's state folder (``$ORDINAL_HOME`` or ``./.ordinal``), created."""
    root = Path(os.environ.get(STATE_DIR_ENV) or Path.cwd() / ".ordinal").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root
