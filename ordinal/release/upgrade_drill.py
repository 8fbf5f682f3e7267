"""The dependency-upgrade rehearsal: a release's parity recheck under the next onnxruntime.

A throwaway virtual environment holds only the candidate ``onnxruntime`` wheel; a ``.pth``
file adds the running environment's site-packages *after* its own, so every other package
(numpy, ordinal itself) is shared and the candidate wins the import. The same parity recheck
(:func:`ordinal.export.parity.recheck_parity` on the bundle's stored parity inputs) then runs
under the installed and the candidate onnxruntime, each in its own interpreter, and the
report gives each verdict and the drift between the two runtimes' outputs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field

from ordinal.export.parity import ParitySpec
from ordinal.release.drill import DrillReport
from ordinal.release.errors import ReleaseError

__all__ = [
    "UpgradeRehearsalError",
    "UpgradeSpec",
    "build_overlay_venv",
    "dependency_upgrade_drill",
    "newer_release",
    "offered_versions",
]

CHILD = Path(__file__).with_name("_parity_child.py")
_AVAILABLE = re.compile(r"^Available versions:\s*(.+)$", re.MULTILINE)


class UpgradeRehearsalError(ReleaseError):
    """The rehearsal could not be set up (index, download, venv); names the step."""


class UpgradeSpec(BaseModel):
    """Tolerances and limits of the dependency-upgrade rehearsal.

    ``drift_atol`` bounds the largest difference between the installed and the candidate
    runtime's outputs on the stored parity inputs; ``parity`` is the recheck each runtime
    must pass against the stored PyTorch outputs (the bundle's parity set is small, so
    ``non_production``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str = Field("onnxruntime", pattern=r"^[A-Za-z0-9_.-]+$")
    drift_atol: float = Field(1e-5, gt=0)
    parity: ParitySpec = Field(default_factory=lambda: ParitySpec(non_production=True))
    timeout_s: float = Field(600.0, gt=0, description="Per pip or child-process call")


def _run(argv: list[str], what: str, timeout: float, env_drop: Sequence[str] = ()) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=_pip_env(env_drop),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpgradeRehearsalError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise UpgradeRehearsalError(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


def _pip_env(env_drop: Sequence[str] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    for name in ("PYTHONPATH", *env_drop):
        env.pop(name, None)
    return env


def offered_versions(
    package: str = "onnxruntime", *, timeout: float = 120.0, env_drop: Sequence[str] = ()
) -> list[str]:
    """Versions of ``package`` the package index offers to this interpreter, newest first.

    Uses ``pip index versions`` (the index pip is configured with), so only releases with a
    wheel for this Python and platform are listed. ``env_drop`` names environment variables
    pip must not see (e.g. a ``REQUESTS_CA_BUNDLE`` meant for other servers, which would
    override pip's own certificate setting).
    """
    out = _run(
        [sys.executable, "-m", "pip", "index", "versions", package],
        f"pip index versions {package}",
        timeout,
        env_drop,
    )
    match = _AVAILABLE.search(out)
    if not match:
        raise UpgradeRehearsalError(f"pip index versions {package}: no version list in {out!r}")
    return [v.strip() for v in match.group(1).split(",") if v.strip()]


def newer_release(installed: str, offered: list[str]) -> str | None:
    """The newest offered final release above ``installed`` (PEP 440 order), or None.

    Pre-releases, development releases and anything that is not a valid version are ignored.

    >>> newer_release("1.31.1", ["1.32.0", "1.31.1", "1.33.0rc1", "junk"])
    '1.32.0'
    >>> newer_release("1.32.0", ["1.32.0", "1.31.1"]) is None
    True
    >>> newer_release("1.32.0+cpu", ["1.32.0", "1.32.1"])
    '1.32.1'
    """
    try:
        current = Version(Version(installed).base_version)  # 1.33.0rc1, 1.33.0+cpu: 1.33.0
    except InvalidVersion:
        raise ValueError(f"installed version {installed!r} is not a valid version") from None
    candidates: list[Version] = []
    for text in offered:
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if not (version.is_prerelease or version.is_devrelease) and version > current:
            candidates.append(version)
    return str(max(candidates)) if candidates else None


def _site_packages(venv: Path) -> Path:
    paths = sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})
    return Path(paths["purelib"])


def build_overlay_venv(
    venv_dir: str | os.PathLike[str],
    package: str,
    version: str,
    *,
    wheel_cache: str | os.PathLike[str],
    timeout: float = 600.0,
    env_drop: Sequence[str] = (),
) -> Path:
    """A throwaway venv with only ``package==version`` installed; return its ``python``.

    The wheel is downloaded once into ``wheel_cache`` (``pip download --no-deps``) and
    installed from there without the index. A ``.pth`` file then adds this interpreter's
    site-packages (and the ``.pth`` files there, e.g. an editable install) after the venv's
    own, so the candidate package shadows the installed one and everything else is shared.
    """
    venv = Path(venv_dir)
    cache = Path(wheel_cache)
    cache.mkdir(parents=True, exist_ok=True)
    requirement = f"{package}=={version}"
    wheel_name = re.sub(r"[-_.]+", "_", package).lower()
    if not any(cache.glob(f"{wheel_name}-{version}-*.whl")):
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "-d", str(cache), requirement],
            f"pip download {requirement}",
            timeout,
            env_drop,
        )  # fmt: skip
    if venv.exists():
        shutil.rmtree(venv)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "python -m venv", timeout)
    target = _site_packages(venv)
    _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--find-links",
         str(cache), "--target", str(target), "--no-compile", requirement],
        f"pip install {requirement} into {venv}",
        timeout,
        env_drop,
    )  # fmt: skip
    shared = [p for p in site.getsitepackages() if Path(p).is_dir()]
    lines = [f"import site; site.addsitedir({p!r})" for p in shared]
    (target / "zz_shared_site_packages.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return venv / "bin" / "python"


def _recheck_in(
    python: str | os.PathLike[str],
    graph: Path,
    out_dir: Path,
    expected: str,
    spec: UpgradeSpec,
) -> tuple[dict[str, Any], dict[str, np.ndarray], float]:
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [str(python), "-I", str(CHILD), str(graph), str(out_dir), expected,
             spec.parity.model_dump_json()],
            capture_output=True, text=True, timeout=spec.timeout_s, check=False, env=_pip_env(),
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise UpgradeRehearsalError(f"parity recheck under {python} timed out") from exc
    seconds = time.perf_counter() - started
    result_file = out_dir / "result.json"
    if not result_file.is_file():
        tail = " | ".join(done.stderr.strip().splitlines()[-5:])
        raise UpgradeRehearsalError(f"parity recheck under {python} crashed: {tail}")
    result = json.loads(result_file.read_text(encoding="utf-8"))
    if done.returncode != 0:
        raise UpgradeRehearsalError(result.get("error") or f"exit {done.returncode}")
    with np.load(out_dir / "outputs.npz") as data:
        outputs = {k: data[k] for k in data.files}
    return result, outputs, seconds


def _installed_version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def dependency_upgrade_drill(
    bundle: str | os.PathLike[str],
    *,
    version: str | None = None,
    spec: UpgradeSpec | None = None,
    wheel_cache: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    offered: list[str] | None = None,
    env_drop: Sequence[str] = (),
) -> DrillReport:
    """Recheck a bundle's parity under the next ``onnxruntime`` release; report the drift.

    Parameters
    ----------
    bundle : path
        A verified bundle folder (``ordinal.release.Registry.fetch`` verifies).
    version : str, optional
        The candidate version; default the newest final release the index offers above the
        installed one. When there is none the report says so and passes (nothing to
        rehearse); ``skipped`` is set on its ``select`` stage.
    spec : UpgradeSpec, optional
    wheel_cache : path, optional
        Where downloaded wheels are kept (default ``<state>/release/wheels``).
    work_dir : path, optional
        Where the venv and outputs go (default a temporary folder, removed afterwards).
    offered : list of str, optional
        The index's versions, when already known (default: ask ``pip index versions``).
    env_drop : sequence of str, optional
        Environment variables the ``pip`` calls must not see (see :func:`offered_versions`).

    Returns
    -------
    DrillReport
        Stages ``select``, ``venv``, ``installed``, ``candidate`` and ``drift``.
    """
    spec = spec or UpgradeSpec()
    bundle = Path(bundle)
    metadata = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    installed = _installed_version(spec.package)
    report = DrillReport(
        name=f"dependency-upgrade {metadata['name']} {metadata['version']}",
        version=None,
        passed=False,
    )
    if version is None:
        try:
            if offered is None:
                offered = offered_versions(spec.package, env_drop=env_drop)
        except UpgradeRehearsalError as exc:
            report.stages["select"] = {"passed": False, "detail": str(exc)}
            return report
        version = newer_release(installed, offered)
        if version is None:
            newest = offered[0] if offered else "none"
            report.passed = True
            report.stages["select"] = {
                "passed": True,
                "skipped": True,
                "detail": f"no newer {spec.package} release offered (installed {installed}, "
                f"newest offered {newest}); nothing to rehearse",
            }
            return report
        how = "the newest release the index offers"
    else:
        how = "given explicitly"
    report.version = version
    report.stages["select"] = {
        "passed": True,
        "detail": f"{spec.package} {version} ({how}); installed {installed}",
        "installed": installed,
        "candidate": version,
    }
    from ordinal.paths import state_dir

    cache = Path(wheel_cache) if wheel_cache else state_dir() / "release" / "wheels"
    own = work_dir is None
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="upgrade-drill-"))
    try:
        graph = root / "graph" / "model.onnx"
        (graph.parent / "parity").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle / metadata["variants"]["fp32"]["path"], graph)
        reference = bundle / "reports" / "parity-reference.npz"
        if not reference.is_file():
            report.stages["venv"] = {"passed": False, "detail": "bundle has no parity reference"}
            return report
        shutil.copyfile(reference, graph.parent / "parity" / "reference.npz")
        started = time.perf_counter()
        try:
            python = build_overlay_venv(
                root / "venv",
                spec.package,
                version,
                wheel_cache=cache,
                timeout=spec.timeout_s,
                env_drop=env_drop,
            )
        except UpgradeRehearsalError as exc:
            report.stages["venv"] = {"passed": False, "detail": str(exc)}
            return report
        venv_seconds = time.perf_counter() - started
        report.stages["venv"] = {
            "passed": True,
            "detail": f"{python} built in {venv_seconds:.1f} s",
            "seconds": round(venv_seconds, 3),
        }
        runs: dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]] = {}
        for label, interpreter, expected in (
            ("installed", sys.executable, installed),
            ("candidate", python, version),
        ):
            try:
                result, outputs, seconds = _recheck_in(
                    interpreter, graph, root / label, expected, spec
                )
            except UpgradeRehearsalError as exc:
                stage = "venv" if label == "candidate" else label
                report.stages[stage] = {"passed": False, "detail": str(exc)}
                return report
            if label == "candidate":
                report.stages["venv"]["detail"] = (
                    f"{python} imports {spec.package} {result['onnxruntime']} from "
                    f"{result['module']} (built in {venv_seconds:.1f} s)"
                )
            runs[label] = (result, outputs)
            worst = max((result.get("max_abs") or {}).values(), default=None)
            verdict = "passed" if result["passed"] else f"FAILED ({'; '.join(result['failures'])})"
            spread = f", max |onnx - torch| {worst:.3g}" if worst is not None else ""
            report.stages[label] = {
                "passed": bool(result["passed"]),
                "detail": f"{spec.package} {result['onnxruntime']}: parity {verdict}{spread} "
                f"({seconds:.1f} s)",
                "onnxruntime": result["onnxruntime"],
                "max_abs": result.get("max_abs"),
                "seconds": round(seconds, 3),
            }
        before, after = runs["installed"][1], runs["candidate"][1]
        drift: dict[str, float] = {}
        for name in sorted(before.keys() & after.keys()):
            a, b = before[name], after[name]
            if a.shape != b.shape:
                drift[name] = float("inf")
            elif np.issubdtype(a.dtype, np.floating):
                drift[name] = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
            else:  # integer outputs (labels): how many differ
                drift[name] = float(np.count_nonzero(a != b))
        missing = sorted(before.keys() ^ after.keys())
        worst_drift = max(drift.values(), default=0.0)
        note = f"; outputs only in one: {missing}" if missing else ""
        report.stages["drift"] = {
            "passed": not missing and worst_drift <= spec.drift_atol,
            "detail": f"max |{version} - {installed}| = {worst_drift:.3g} over {sorted(drift)} "
            f"(atol {spec.drift_atol:g}){note}",
            "per_output": drift,
            "atol": spec.drift_atol,
        }
        report.passed = all(stage["passed"] for stage in report.stages.values())
        return report
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
