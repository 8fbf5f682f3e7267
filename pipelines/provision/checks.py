"""``ordinal infra check``: policy as code for ``tofu/``, every step offline.

1. ``fmt -check -recursive``;
2. ``validate`` of every root under ``envs/``;
3. the ``terraform test`` suites of every module (mocked providers, no endpoint);
4. checkov on the plan JSON of the emulated roots (planned against a throw-away
   ``moto_server``): zero failed checks, and every suppression listed with its reason in
   ``tofu/checkov-suppressions.yaml``;
5. the IAM allow/deny tables, evaluated on the policy documents as IAM stored them
   (``envs/emulated/iam`` applied to the throw-away endpoint).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ordinal.paths import project_file
from pipelines.provision.errors import ToolError
from pipelines.provision.iam_tables import check_tables, role_policies, wildcard_actions
from pipelines.provision.runner import TOFU_ROOT, Backend, TofuRunner, find_binary

__all__ = [
    "SUPPRESSIONS_FILE",
    "CheckStep",
    "Suppression",
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


def _fmt(binary: str) -> CheckStep:
    started = time.monotonic()
    proc = subprocess.run(
        [binary, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TOFU_ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
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


def _validate(work: Path, binary: str) -> CheckStep:
    started = time.monotonic()
    failures = []
    for root in _roots():
        runner = TofuRunner(root, work / "validate" / root.replace("/", "-"), binary=binary)
        runner.init()
        result = runner.run("validate", "-no-color", check=False)
        if not result.ok:
            failures.append(f"{root}: {result.output.strip()[-800:]}")
    return CheckStep(
        "validate",
        not failures,
        time.monotonic() - started,
        "\n".join(failures) or f"{len(_roots())} roots valid",
    )


def _tests(work: Path, binary: str) -> CheckStep:
    started = time.monotonic()
    failures, summary = [], []
    for module in _modules():
        runner = TofuRunner(module, work / "test" / module.replace("/", "-"), binary=binary)
        runner.init()
        result = runner.run("test", "-no-color", check=False)
        last = [line for line in result.output.splitlines() if line.strip()][-1:]
        summary.append(f"{module}: {last[0] if last else '?'}")
        if not result.ok:
            failures.append(f"{module}: {result.output.strip()[-1500:]}")
    return CheckStep(
        "terraform test", not failures, time.monotonic() - started, "\n".join(failures or summary)
    )


def _plans(work: Path, moto_url: str, env: dict[str, str]) -> dict[str, Path]:
    """Plan JSON of the emulated platform and compute roots."""
    plans = {}
    platform = TofuRunner(
        "envs/emulated/platform",
        work / "plan-platform",
        Backend(STATE_BUCKET, "check/platform.tfstate", endpoint=moto_url),
        env=env,
    )
    plans["platform"] = platform.plan_json({"endpoint": moto_url})
    storage = TofuRunner(
        "envs/emulated/storage",
        work / "plan-storage",
        Backend(STATE_BUCKET, "check/storage.tfstate", endpoint=moto_url),
        env=env,
    )
    plans["storage"] = storage.plan_json({"endpoint": moto_url})
    compute = TofuRunner(
        "envs/emulated/compute",
        work / "plan-compute",
        Backend(STATE_BUCKET, "check/compute.tfstate", endpoint=moto_url),
        env=env,
    )
    plans["compute"] = compute.plan_json(
        {
            "endpoint": moto_url,
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
    )
    out = {}
    for name, plan in plans.items():
        path = work / f"{name}.plan.json"
        path.write_text(json.dumps(plan), encoding="utf-8")
        out[name] = path
    return out


# Modules no emulated root plans (the emulator has no RDS): checkov reads their HCL instead.
HCL_ONLY = ("modules/control-plane",)


def _checkov(plans: dict[str, Path], suppressions: list[Suppression]) -> CheckStep:
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
    for name, target in targets:
        argv = [checkov, *target, "--output", "json", "--compact", "--skip-download"]
        argv.append("--soft-fail")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise ToolError(
                "checkov printed no JSON report", plan=name, stderr=proc.stderr.strip()[-500:]
            ) from None
        reports = report if isinstance(report, list) else [report]
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


def run_checks(
    work: Path | None = None,
    checkov: bool = True,
    progress: Callable[[CheckStep], None] | None = None,
) -> list[CheckStep]:
    """Run every step (all of them, even after a failure) and return their outcomes."""
    from pipelines.provision.emulation.cloud import CREDENTIALS
    from pipelines.provision.emulation.moto import MotoServer

    binary = find_binary()
    owned = work is None
    work = Path(work or tempfile.mkdtemp(prefix="ordinal-infra-check-"))
    steps: list[CheckStep] = []

    def record(step: CheckStep) -> None:
        steps.append(step)
        if progress is not None:
            progress(step)

    def guarded(name: str, fn: Callable[[], CheckStep]) -> None:
        started = time.monotonic()
        try:
            record(fn())
        except Exception as exc:  # one broken step must not hide the others
            record(
                CheckStep(name, False, time.monotonic() - started, f"{type(exc).__name__}: {exc}")
            )

    try:
        guarded("fmt", lambda: _fmt(binary))
        guarded("validate", lambda: _validate(work, binary))
        guarded("terraform test", lambda: _tests(work, binary))
        with MotoServer(log_path=work / "moto.log") as moto:
            import boto3

            boto3.client(
                "s3",
                endpoint_url=moto.url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).create_bucket(Bucket=STATE_BUCKET)
            if checkov:

                def checkov_step() -> CheckStep:
                    suppressions = load_suppressions()
                    return _checkov(_plans(work, moto.url, CREDENTIALS), suppressions)

                guarded("checkov", checkov_step)
            guarded("iam tables", lambda: _iam_tables(work, moto.url, CREDENTIALS))
    finally:
        if owned and all(s.ok for s in steps):
            shutil.rmtree(work, ignore_errors=True)
    return steps


if __name__ == "__main__":  # pragma: no cover - a convenience for debugging
    for s in run_checks(progress=lambda s: print(s.name, s.ok, f"{s.seconds:.1f}s")):
        print(s.detail)
    sys.exit(0)
