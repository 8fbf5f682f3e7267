"""The package as a user installs it: ``pip install .`` (not editable) into a fresh venv, the
commands run from a folder outside the repository; and declared dependencies that cover
what the code imports.

The fresh venv takes its third-party packages from the project's venv through a ``.pth``
line (installing torch and the whole stack again would take minutes and gigabytes); the
project itself is installed from a freshly built wheel, and the project's editable install
is not visible there (``.pth`` files inside a path added by a ``.pth`` line are not read).
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a wheel build and a fresh venv: minutes

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600):
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the project installed from its wheel; returns its bin folder."""
    tmp = tmp_path_factory.mktemp("installed")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    # Build from a copy: setuptools writes build/ beside the sources, never in the checkout.
    source = tmp / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "target",
            ".ordinal",
            ".terraform",
            ".work",
        ),
    )
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp / "wheel"), str(source)],
        cwd=tmp, env=env,
    )  # fmt: skip
    (wheel,) = (tmp / "wheel").glob("ordinal-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    site = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        cwd=tmp,
        env=env,
    ).stdout.strip()
    Path(site, "project-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        cwd=tmp, env=env,
    )  # fmt: skip
    return venv / "bin"


def test_the_installed_commands_work_from_a_folder_outside_the_repository(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ORDINAL_SOURCES")},
        "ORDINAL_HOME": str(work / ".ordinal"),
        "PREFECT_HOME": str(work / ".ordinal" / "prefect"),
        "COLUMNS": "200",
        # Data files of the dependencies (nbconvert's templates) as a full install has them.
        "JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter"),
    }
    env.pop("ORDINAL_NOTEBOOK_DIR", None)
    where = _run(
        [str(installed / "python"), "-c",
         "import ordinal, pipelines, ordinal.paths as p; "
         "print(ordinal.__file__); print(pipelines.__file__); "
         "print(p.project_file('notebooks'))"],
        cwd=work, env=env,
    ).stdout.split()  # fmt: skip
    assert all(str(ROOT) not in line for line in where), where  # not the checkout
    assert (Path(where[2]) / "04_train.ipynb").is_file()

    ordinal = str(installed / "ordinal")
    _run([ordinal, "data", "ingest", "demo-reviews"], cwd=work, env=env)  # the packaged registry
    assert list((work / ".ordinal").rglob("datasets/raw/reviews/v1/manifest.json"))

    # A user's own CSV: other column names, a 1-10 scale, broken rows; registered for review
    # in ./sources/approved.yaml, which then is the default registry.
    broken = _write_ratings(work / "ratings.csv", n=700)
    _run(
        [ordinal, "data", "add-source", "ratings.csv", "--name", "my-ratings", "--dataset",
         "ratings", "--labels", "1..10", "--licence", "CC0-1.0", "--owner", "me",
         "--id-column", "review_id", "--text-column", "body", "--label-column", "stars"],
        cwd=work, env=env,
    )  # fmt: skip
    assert (work / "sources" / "approved.yaml").is_file()
    done = _run(
        [ordinal, "run", "--source", "my-ratings", "--run-id", "installed", "--model",
         "bert-tiny", "--max-steps", "5", "--compute", "in-process",
         "--set", "quantize_preset=dynamic", "--set", "parity_samples=120",
         "--set", "non_production=true",
         # 8% broken rows: above the default 5% rejection threshold, below this one.
         "--set", "preprocess.max_rejected_fraction=0.1",
         # A new dataset has no committed calibration selection yet: propose one for review.
         "--set", "propose_calibration=true"],
        cwd=work, env=env, timeout=900,
    )  # fmt: skip
    run_dir = work / ".ordinal" / "runs" / "installed"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", done.stdout[-3000:]
    pre = json.loads((run_dir / "preprocess" / "preprocess_report.json").read_text())
    counts = pre["record_counts"]
    assert counts["raw"] == 700 and counts["rejected_invalid"] == broken  # reconciled:
    assert counts["accepted"] + counts["rejected"] == counts["raw"]
    assert counts["rejected"] == counts["rejected_invalid"] + counts["rejected_duplicate"]
    assert pre["rejected_by_reason"]["label_not_in_set"] == broken // 2  # "11" and "ten"
    proposed = run_dir / "calibrate" / "proposed" / "ratings@v1.yaml"
    assert proposed.is_file()  # for review; commit it to make it the authority
    config = json.loads((run_dir / "train" / "model" / "config.json").read_text())
    assert config["ordinal"]["num_classes"] == 10
    assert config["ordinal"]["label_names"] == [str(v) for v in range(1, 11)]

    # The export config is found in the installed share/ folder.
    model = run_dir / "train" / "model"
    done = _run([ordinal, "export", str(model), "--experiment", "again"], cwd=work, env=env)
    assert "model:" in done.stdout
    manifest = next((work / ".ordinal").rglob("models/onnx/again/fp32/manifest.json"))
    params = json.loads(manifest.read_text())["parameters"]
    assert params["export_config"] == "configs/export/text-classification.yaml"


def _write_ratings(path: Path, n: int) -> int:
    """``review_id,body,stars`` on a 1-10 scale from the demo reviews; returns the number of
    broken rows (empty text, a value off the scale, a non-number, a missing id)."""
    import csv

    from ordinal.data.demo_text import make_review_records

    rows = [
        {"review_id": f"r{i}", "body": r["text"], "stars": str(2 * int(r["label"]) + 1 + i % 2)}
        for i, r in enumerate(make_review_records(n, seed=7))
    ]
    broken = 0
    for i in range(0, n, 25):  # 28 rows off the scale, 28 with no text: 8% of 700
        rows[i]["stars"] = "11" if i % 50 == 0 else "ten"
        broken += 1
    for i in range(5, n, 25):
        rows[i]["body"] = ""
        broken += 1
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["review_id", "body", "stars"])
        writer.writeheader()
        writer.writerows(rows)
    return broken


def _imported_modules(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def _declared(extra: str | None) -> set[str]:
    names = set()
    for req in importlib.metadata.requires("ordinal") or []:
        marker = re.search(r'extra\s*==\s*"([^"]+)"', req)
        if (marker.group(1) if marker else None) in (None, extra):
            names.add(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower().replace("_", "-"))
    return names


@pytest.mark.parametrize(("package", "extra"), [("ordinal", None), ("pipelines", "pipelines")])
def test_declared_dependencies_cover_what_the_code_imports(package, extra):
    distributions = importlib.metadata.packages_distributions()
    local = {"ordinal", "pipelines", "tests"}
    missing = {}
    for name in sorted(_imported_modules(ROOT / package) - set(sys.stdlib_module_names) - local):
        owners = {d.lower().replace("_", "-") for d in distributions.get(name, [])}
        if not owners & _declared(extra):
            # A dependency of a declared package is not a declaration of our own.
            missing[name] = sorted(owners) or ["(not installed)"]
    assert not missing, f"{package} imports undeclared distributions: {missing}"
