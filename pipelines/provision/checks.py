"""``ordinal infra check``: policy as code for ``tofu/``, every step offline.

1. ``fmt -check -recursive``;
2. ``validate`` of every root under ``envs/``;
3. the ``terraform test`` suites of every module (mocked providers, no endpoint);
4. checkov on the plan JSON of the emulated roots (planned against a throw-away
   ``moto_server``): zero failed checks, and every suppression listed with its reason in
   ``tofu/checkov-suppressions.yaml``;
5. the IAM allow/deny tables, evaluated on the policy documents as IAM stored them
   (``envs/emulated/iam`` applied to the throw-away endpoint).

The steps run side by side, and terraform runs several processes at once within a step
(``ORDINAL_INFRA_CHECK_JOBS``, default 4): most of a command's time is the AWS provider
loading its schema, which parallel processes overlap.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ordinal.paths import project_file
from pipelines.provision.errors import ToolError
from pipelines.provision.iam_tables import check_tables, role_policies, wildcard_actions
from pipelines.provision.runner import (
    TOFU_ROOT,
    Backend,
    TofuRunner,
    find_binary,
    write_cli_config,
)

__all__ = [
    "STEP_ORDER",
    "SUPPRESSIONS_FILE",
    "CheckStep",
    "Suppression",
    "default_jobs",
    "find_checkov",
    "load_suppressions",
    "run_checks",
]

SUPPRESSIONS_FILE = TOFU_ROOT / "checkov-suppressions.yaml"
CHECKOV_VENV = project_file(".ordinal", "checkov-venv", "bin", "checkov")
STATE_BUCKET = "ordinal-tfstate"


@dataclass
class CheckStep:
    """One step's outcome."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def find_checkov() -> str:
    """``ORDINAL_CHECKOV``, else the project's tool venv, else ``checkov`` on PATH."""
    explicit = os.environ.get("ORDINAL_CHECKOV")
    if explicit:
        return explicit
    if CHECKOV_VENV.is_file():
        return str(CHECKOV_VENV)
    found = shutil.which("checkov")
    if found:
        return found
    raise ToolError(
        "checkov not found: create its venv (see docs/infrastructure.md) or set ORDINAL_CHECKOV",
        expected=str(CHECKOV_VENV),
    )


@dataclass(frozen=True)
class Suppression:
    """One accepted finding: a check id on resources (address globs), with its reason."""

    id: str
    resources: tuple[str, ...]
    reason: str

    def matches(self, check_id: str, resource: str) -> bool:
        """Whether this entry covers ``check_id`` on ``resource``."""
        return check_id == self.id and any(fnmatch.fnmatchcase(resource, r) for r in self.resources)


def load_suppressions(path: Path = SUPPRESSIONS_FILE) -> list[Suppression]:
    """The suppressions file; an entry without id, resources or a reason is an error."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: list[Suppression] = []
    for i, item in enumerate(data.get("suppressions") or []):
        check_id = str(item.get("id", "")).strip()
        reason = " ".join(str(item.get("reason") or "").split())
        resources = tuple(str(r) for r in item.get("resources") or [])
        if not check_id or not resources or len(reason) < 20:
            raise ToolError(
                "every checkov suppression needs an id, resources and a reason",
                file=str(path),
                entry=i,
                id=check_id or None,
            )
        out.append(Suppression(check_id, resources, reason))
    return out


def _fmt(work: Path, binary: str) -> CheckStep:
    started = time.monotonic()
    proc = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TOFU_ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        # The project's CLI config, so that a preset TF_CLI_CONFIG_FILE naming a missing file
        # does not print a warning into the step's output.
        env=dict(os.environ, TF_CLI_CONFIG_FILE=str(write_cli_config(work / "fmt", binary))),
    )
    return CheckStep(
        "fmt",
        proc.returncode == 0,
        time.monotonic() - started,
        (proc.stdout + proc.stderr).strip()[-2000:],
    )


def _roots() -> list[str]:
    return sorted(str(p.parent.relative_to(TOFU_ROOT)) for p in TOFU_ROOT.glob("envs/*/*/main.tf"))


def _modules() -> list[str]:
    return sorted(str(p.parent.relative_to(TOFU_ROOT)) for p in TOFU_ROOT.glob("modules/*/main.tf"))


def _parallel(jobs: int, items: list[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """``fn`` over ``items`` in up to ``jobs`` threads (each runs one terraform process)."""
    if jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(jobs, len(items))) as pool:
        return list(pool.map(fn, items))


def _validate(work: Path, binary: str, jobs: int = 1, elsewhere: tuple[str, ...] = ()) -> CheckStep:
    """``validate`` every root, except those in ``elsewhere``: roots this run plans or
    applies anyway (a plan validates first), which saves one provider start each."""
    started = time.monotonic()

    def one(root: str) -> str | None:
        runner = TofuRunner(root, work / "validate" / root.replace("/", "-"), binary=binary)
        runner.init()
        result = runner.run("validate", "-no-color", check=False)
        return None if result.ok else f"{root}: {result.output.strip()[-800:]}"

    roots = [r for r in _roots() if r not in elsewhere]
    failures = [f for f in _parallel(jobs, roots, one) if f]
    also = [r for r in _roots() if r in elsewhere]
    detail = f"{len(roots)} roots valid"
    if also:
        detail += f"; validated by their plan or apply: {', '.join(also)}"
    return CheckStep(
        "validate", not failures, time.monotonic() - started, "\n".join(failures) or detail
    )


def _tests(work: Path, binary: str, jobs: int = 1) -> CheckStep:
    started = time.monotonic()

    def one(module: str) -> tuple[str, str | None]:
        runner = TofuRunner(module, work / "test" / module.replace("/", "-"), binary=binary)
        runner.init()
        result = runner.run("test", "-no-color", check=False)
        last = [line for line in result.output.splitlines() if line.strip()][-1:]
        line = f"{module}: {last[0] if last else '?'}"
        return line, None if result.ok else f"{module}: {result.output.strip()[-1500:]}"

    outcomes = _parallel(jobs, _modules(), one)
    summary = [line for line, _ in outcomes]
    failures = [failure for _, failure in outcomes if failure]
    return CheckStep(
        "terraform test", not failures, time.monotonic() - started, "\n".join(failures or summary)
    )


#: Variables of the compute root's plan (placeholders: a plan creates nothing).
COMPUTE_PLAN_VARIABLES = {
    "run_id": "check",
    "stage": "train",
    "instance_type": "g4dn.xlarge",
    "market": "spot",
    "ami_id": "ami-0123456789abcdef0",
    "subnet_id": "subnet-0123456789abcdef0",
    "vpc_id": "vpc-0123456789abcdef0",
    "instance_profile_name": "ordinal-train",
    "owner": "check@example.com",
    "cost_centre": "check",
    "prefect_api_url": "https://prefect.example.internal/api",
    "worker_python": "/opt/ordinal/venv/bin/python",
}
#: The emulated roots checkov reads as plan JSON, with their extra variables.
PLANNED_ROOTS: dict[str, dict[str, Any]] = {
    "platform": {},
    "storage": {},
    "compute": COMPUTE_PLAN_VARIABLES,
}


def _plans(work: Path, moto_url: str, env: dict[str, str], jobs: int = 1) -> dict[str, Path]:
    """Plan JSON of the emulated roots in ``PLANNED_ROOTS`` (planned in parallel)."""

    def one(name: str) -> tuple[str, Path]:
        runner = TofuRunner(
            f"envs/emulated/{name}",
            work / f"plan-{name}",
            Backend(STATE_BUCKET, f"check/{name}.tfstate", endpoint=moto_url),
            env=env,
        )
        plan = runner.plan_json({"endpoint": moto_url, **PLANNED_ROOTS[name]})
        path = work / f"{name}.plan.json"
        path.write_text(json.dumps(plan), encoding="utf-8")
        return name, path

    return dict(_parallel(jobs, list(PLANNED_ROOTS), one))


# Modules no emulated root plans (the emulator has no RDS): checkov reads their HCL instead.
HCL_ONLY = ("modules/control-plane",)


def _checkov(plans: dict[str, Path], suppressions: list[Suppression], jobs: int = 1) -> CheckStep:
    started = time.monotonic()
    checkov = find_checkov()
    env = dict(
        os.environ,
        BC_SKIP_MAPPING="TRUE",
        CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false",
        PYTHONWARNINGS="ignore",
        LOG_LEVEL="WARNING",
    )
    env.pop("VIRTUAL_ENV", None)
    failed_all, passed, used, accepted = [], 0, set(), []
    targets = [
        (name, ["-f", str(path), "--framework", "terraform_plan"]) for name, path in plans.items()
    ]
    targets += [(d, ["-d", str(TOFU_ROOT / d), "--framework", "terraform"]) for d in HCL_ONLY]

    def scan(item: tuple[str, list[str]]) -> tuple[str, list[dict[str, Any]]]:
        name, target = item
        argv = [checkov, *target, "--output", "json", "--compact", "--skip-download"]
        argv.append("--soft-fail")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise ToolError(
                "checkov printed no JSON report", plan=name, stderr=proc.stderr.strip()[-500:]
            ) from None
        return name, report if isinstance(report, list) else [report]

    for name, reports in _parallel(jobs, targets, scan):
        for rep in reports:
            results = rep.get("results", {})
            passed += len(results.get("passed_checks", []))
            for check in results.get("failed_checks", []):
                hit = [
                    i
                    for i, s in enumerate(suppressions)
                    if s.matches(check["check_id"], check["resource"])
                ]
                line = f"{name}: {check['check_id']} {check['resource']}: {check['check_name']}"
                if hit:
                    used.update(hit)
                    accepted.append(line)
                else:
                    failed_all.append(line)
    unused = [f"{s.id} {list(s.resources)}" for i, s in enumerate(suppressions) if i not in used]
    detail = "\n".join(failed_all) or (
        f"{passed} passed, 0 failed, {len(accepted)} accepted by {len(used)} suppressions"
    )
    if unused:
        detail += f"\nsuppressions that matched nothing (remove them): {unused}"
    return CheckStep(
        "checkov",
        not failed_all and not unused,
        time.monotonic() - started,
        detail,
        {"passed": passed, "failed": failed_all, "accepted": accepted},
    )


def _iam_tables(work: Path, moto_url: str, env: dict[str, str]) -> CheckStep:
    import boto3

    started = time.monotonic()
    runner = TofuRunner(
        "envs/emulated/iam",
        work / "iam",
        Backend(STATE_BUCKET, "check/iam.tfstate", endpoint=moto_url),
        env=env,
    )
    runner.apply({"endpoint": moto_url})
    outputs = runner.outputs()
    names = dict(outputs["role_names"])
    names.update({role.rsplit("-", 1)[-1]: role for role in outputs["combined_roles"]})
    iam = boto3.client(
        "iam",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    policies = role_policies(iam, names)
    rows = check_tables(policies, "ordinal-data")
    wild = wildcard_actions(policies)
    bad = [r for r in rows if not r["ok"]]
    lines = [
        f"{r['stage']:<10} {r['action']:<30} {r['key']}: "
        f"expected {r['expected']}, got {r['actual']}"
        for r in bad
    ]
    lines += [f"{stage}: wildcard action {action}" for stage, action in wild]
    return CheckStep(
        "iam tables",
        not bad and not wild,
        time.monotonic() - started,
        "\n".join(lines) or f"{len(rows)} rows as expected, no wildcard action",
        {"rows": rows},
    )


def default_jobs() -> int:
    """``ORDINAL_INFRA_CHECK_JOBS``, else 4: terraform processes at once per step.

    Most of a terraform command's time is the AWS provider loading its schema; four at a
    time roughly halves the check on two cores, and more only adds memory (about 300 MB
    per provider process).
    """
    value = os.environ.get("ORDINAL_INFRA_CHECK_JOBS", "4")
    try:
        jobs = int(value)
    except ValueError:
        raise ToolError("ORDINAL_INFRA_CHECK_JOBS must be an integer", value=value) from None
    if jobs < 1:
        raise ToolError("ORDINAL_INFRA_CHECK_JOBS must be at least 1", value=value)
    return jobs


STEP_ORDER = ("fmt", "validate", "terraform test", "checkov", "iam tables")


def run_checks(
    work: Path | None = None,
    checkov: bool = True,
    progress: Callable[[CheckStep], None] | None = None,
    jobs: int | None = None,
) -> list[CheckStep]:
    """Run every step (all of them, even after a failure) and return their outcomes.

    The steps are independent, so they run side by side: fmt, validate, the module tests,
    and (on one throw-away ``moto_server``) the plans for checkov and the IAM apply. Within
    a step, terraform runs up to ``jobs`` processes at once (:func:`default_jobs`). The
    result is in :data:`STEP_ORDER`; ``progress`` is called as each step finishes (from
    its thread, one call at a time), and each step's ``seconds`` is its own wall time.
    """
    from pipelines.provision.emulation.cloud import CREDENTIALS
    from pipelines.provision.emulation.moto import MotoServer

    binary = find_binary()
    jobs = jobs or default_jobs()
    owned = work is None
    work = Path(work or tempfile.mkdtemp(prefix="ordinal-infra-check-"))
    work.mkdir(parents=True, exist_ok=True)
    steps: dict[str, CheckStep] = {}
    lock = threading.Lock()

    def guarded(name: str, fn: Callable[[], CheckStep]) -> None:
        started = time.monotonic()
        try:
            step = fn()
        except Exception as exc:  # one broken step must not hide the others
            step = CheckStep(
                name, False, time.monotonic() - started, f"{type(exc).__name__}: {exc}"
            )
        with lock:
            steps[name] = step
            if progress is not None:
                progress(step)

    moto = MotoServer(log_path=work / "moto.log")
    # Roots this run plans (checkov) or applies (IAM tables): their plan validates them.
    planned = tuple(f"envs/emulated/{name}" for name in PLANNED_ROOTS) if checkov else ()
    elsewhere = (*planned, "envs/emulated/iam")

    def emulated_lane() -> None:
        try:
            moto.start()
            import boto3

            boto3.client(
                "s3",
                endpoint_url=moto.url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).create_bucket(Bucket=STATE_BUCKET)
        except Exception as exc:
            for name in ("checkov", "iam tables") if checkov else ("iam tables",):
                guarded(name, lambda exc=exc: _raise(exc))
            return
        lanes = [
            threading.Thread(
                target=guarded,
                args=("iam tables", lambda: _iam_tables(work, moto.url, CREDENTIALS)),
            )
        ]
        if checkov:

            def checkov_step() -> CheckStep:
                started = time.monotonic()
                suppressions = load_suppressions()
                plans = _plans(work, moto.url, CREDENTIALS, jobs)
                planned = time.monotonic() - started
                step = _checkov(plans, suppressions, jobs)
                step.detail += (
                    f"\n({len(plans)} plans {planned:.1f} s, checkov {step.seconds:.1f} s)"
                )
                step.seconds = time.monotonic() - started
                return step

            lanes.append(threading.Thread(target=guarded, args=("checkov", checkov_step)))
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()

    lanes = [
        threading.Thread(target=guarded, args=("fmt", lambda: _fmt(work, binary))),
        threading.Thread(
            target=guarded, args=("validate", lambda: _validate(work, binary, jobs, elsewhere))
        ),
        threading.Thread(
            target=guarded, args=("terraform test", lambda: _tests(work, binary, jobs))
        ),
        threading.Thread(target=emulated_lane),
    ]
    try:
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
    finally:
        moto.stop()
        if owned and all(s.ok for s in steps.values()):
            shutil.rmtree(work, ignore_errors=True)
    return [steps[name] for name in STEP_ORDER if name in steps]


def _raise(exc: BaseException) -> CheckStep:
    raise exc


if __name__ == "__main__":  # pragma: no cover - a convenience for debugging
    for s in run_checks(progress=lambda s: print(s.name, s.ok, f"{s.seconds:.1f}s", flush=True)):
        print(s.detail)
    sys.exit(0)
