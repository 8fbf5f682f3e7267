"""Prefect flows of the release process: promotion with a human approval, nightly parity.

The promotion flow evaluates the committed policy, then pauses with
``pause_flow_run(wait_for_input=Approval...)``: the Prefect UI shows a form whose description
is the evidence table, and whoever resumes it types their name and decision. Only an approval
of a release whose every criterion passed moves the alias; the audit record keeps the policy
evaluation and the approver.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput

from ordinal.release import (
    PolicyEvaluation,
    PromotionRefusedError,
    evaluate_policy,
    load_policy,
    promote_release,
)
from pipelines.release.settings import open_registry

__all__ = [
    "DRILLS",
    "Approval",
    "evidence_markdown",
    "nightly_parity",
    "promotion_flow",
    "quarterly_resilience",
    "quarterly_rollback_drill",
    "run_drills",
]

log = logging.getLogger(__name__)

#: The rehearsals of the quarterly resilience flow, in the order they run.
DRILLS = ("checkpoint-restore", "rollback", "dependency-upgrade")


class Approval(RunInput):
    """The approval form: who decides, and whether they approve."""

    approver: str
    approve: bool = False
    comment: str = ""


def evidence_markdown(evaluation: PolicyEvaluation, alias: str) -> str:
    """The evidence table shown on the approval form."""
    lines = [
        f"### Promote {evaluation.name} {evaluation.version} to `{alias}`",
        "",
        f"bundle.json sha256 `{evaluation.bundle_sha256}`; policy sha256 "
        f"`{evaluation.policy_sha256[:12]}`",
        "",
        "| criterion | status | detail | evidence |",
        "|---|---|---|---|",
    ]
    for r in evaluation.results:
        lines.append(f"| {r.criterion} | **{r.status}** | {r.detail} | {r.evidence} |")
    lines += ["", "Type your name as `approver` and tick `approve` to promote."]
    return "\n".join(lines)


@flow(name="release-promotion", log_prints=True)
def promotion_flow(
    name: str,
    version: str,
    alias: str = "production",
    storage: str = "",
    trust: list[str] | None = None,
    tracking_uri: str | None = None,
    policy_path: str = "",
    timeout_s: int = 86400,
    poll_interval_s: int = 10,
) -> dict[str, Any]:
    """Evaluate the policy, wait for a human approval, then move ``alias`` (audited).

    Returns ``{"promoted": bool, "approver", "evaluation", "audit_seq"}``; a release that fails
    the policy is refused before anyone is asked.
    """
    logger = get_run_logger()
    registry = open_registry(storage or None, trust, tracking_uri)
    policy, policy_sha = load_policy(policy_path or None)
    evaluation = evaluate_policy(registry, name, version, policy, policy_sha)
    table = evidence_markdown(evaluation, alias)
    logger.info("policy evaluation:\n%s", table)
    if not evaluation.passed:
        raise PromotionRefusedError(f"{name} {version} does not meet the policy", evaluation.failed)
    approval = pause_flow_run(
        wait_for_input=Approval.with_initial_data(description=table, approve=False),
        timeout=timeout_s,
        poll_interval=poll_interval_s,
    )
    decision = {
        "approver": approval.approver,
        "approve": approval.approve,
        "comment": approval.comment,
    }
    if not approval.approve:
        registry.audit.append(
            "promotion-rejected",
            {
                "name": name,
                "version": version,
                "digests": {"bundle.json": evaluation.bundle_sha256},
            },
            {"alias": None, "rejected_alias": alias, "approval": decision},
            actor=approval.approver,
        )
        return {
            "promoted": False,
            "approver": approval.approver,
            "evaluation": evaluation.to_dict(),
        }
    record = promote_release(
        registry, evaluation, alias=alias, approved_by=approval.approver, approval=decision
    )
    logger.info("%s %s is now %s (audit seq %d)", name, version, alias, record.seq)
    return {
        "promoted": True,
        "approver": approval.approver,
        "evaluation": evaluation.to_dict(),
        "audit_seq": record.seq,
    }


def _alert(stack_root: str, kind: str, summary: str, context: dict[str, str]) -> None:
    """Send a stack alert when the flow runs for a stack (``stack_root``); never raises."""
    if not stack_root:
        return
    from pipelines.stack.alerts import Alert, send_alert
    from pipelines.stack.config import load_config

    try:
        send_alert(load_config(Path(stack_root)), Alert(kind, summary, context))
    except Exception as exc:  # alerting must not hide the failure itself
        get_run_logger().warning("could not send the %s alert: %s", kind, exc)


def _use_stack(stack_root: str, trust: list[str] | None) -> list[str] | None:
    """Point this flow-run process at the stack's S3 store; return ``trust`` plus the stack's
    trusted release keys (``<root>/release/trusted/*.pub``).

    A long-lived worker's environment carries no S3 credentials; a release flow deployed for
    a stack reads them from the stack's secret files into its own process only.
    """
    if not stack_root:
        return trust
    from pipelines.stack import s3
    from pipelines.stack.config import load_config

    config = load_config(Path(stack_root))
    os.environ.update(s3.client_env(config))
    os.environ["ORDINAL_S3_ENDPOINT_URL"] = config.s3_url
    keys = sorted(str(p) for p in config.path("release", "trusted").glob("*.pub"))
    return [*(trust or []), *keys]


def _stack_ca_variables(stack_root: str) -> tuple[str, ...]:
    """CA-bundle variables that point at the stack's own CA (set for the Prefect and MLflow
    clients): pip must not see them, or they replace its certificate for the package index."""
    if not stack_root:
        return ()
    from pipelines.stack.config import load_config

    ca = str(load_config(Path(stack_root)).ca_cert)
    return tuple(v for v in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(v) == ca)


def _report_stem(prefix: str, when: dt.datetime) -> str:
    """``{prefix}-{UTC time}-{flow run id[:8]}``: two runs in one second keep both reports."""
    from prefect.runtime import flow_run

    run_id = str(flow_run.id or "")[:8] or f"pid{os.getpid()}"
    return f"{prefix}-{when.strftime('%Y%m%dT%H%M%SZ')}-{run_id}"


def _stage_text(stages: dict[str, Any]) -> str:
    return "; ".join(
        f"{name}: {'pass' if s['passed'] else 'FAIL'} ({s['detail']})" for name, s in stages.items()
    )


def _write_report(
    report_dir: str,
    stem: str,
    title: str,
    results: dict[str, Any],
    summary: dict[str, Any] | None = None,
) -> list[str]:
    """The report as JSON and a small HTML page; return both paths (none without a folder).

    ``results`` maps a row label to a drill report (``passed``, ``stages``); ``summary`` (the
    verdict, times) goes first in the JSON under ``summary`` when given.
    """
    if not report_dir:
        return []
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{stem}.json"
    document = {"summary": summary, "results": results} if summary is not None else results
    tmp = data.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(data)
    rows = []
    for label, result in results.items():
        verdict = "pass" if result["passed"] else "<b>FAIL</b>"
        stages = "<br>".join(
            f"{html.escape(name)}: {'pass' if s['passed'] else '<b>FAIL</b>'} "
            f"({html.escape(str(s['detail']))})"
            for name, s in result["stages"].items()
        )
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{verdict}</td><td>{stages}</td></tr>")
    head = ""
    if summary is not None:
        head = (
            "<p>"
            + ", ".join(
                f"{html.escape(str(k))}: <b>{html.escape(str(v))}</b>" for k, v in summary.items()
            )
            + "</p>"
        )
    page = folder / f"{stem}.html"
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text(
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1>{head}<table border=1 cellpadding=4>"
        "<tr><th>drill</th><th>verdict</th><th>stages</th></tr>" + "".join(rows) + "</table>\n",
        encoding="utf-8",
    )
    tmp.replace(page)
    return [str(data), str(page)]


def _publish_link(key: str, title: str, results: dict[str, Any], files: list[str]) -> None:
    """A Prefect markdown artifact on the flow run (the stack's UI lists it under Artifacts):
    the verdict of each row and where the JSON and HTML reports are."""
    from prefect.artifacts import create_markdown_artifact

    lines = [f"# {title}", ""]
    lines += [f"* report: `{path}`" for path in files]
    lines += ["", "| drill | verdict | stages |", "|---|---|---|"]
    for label, result in results.items():
        verdict = "pass" if result["passed"] else "**FAIL**"
        text = _stage_text(result["stages"]).replace("|", "/")
        lines.append(f"| {label} | {verdict} | {text} |")
    try:
        create_markdown_artifact(markdown="\n".join(lines), key=key, description=title)
    except Exception as exc:  # the report files exist either way
        get_run_logger().warning("could not publish the %s artifact: %s", key, exc)


def _failed_row(name: str, stage: str, detail: str) -> dict[str, Any]:
    """A report row for a drill that could not run (or raised): failed, with why."""
    return {
        "name": name,
        "version": None,
        "passed": False,
        "stages": {stage: {"passed": False, "detail": detail}},
    }


def _no_release_row(storage_url: str) -> dict[str, Any]:
    return _failed_row("releases", "select", f"no published release in {storage_url}")


@flow(name="release-nightly-parity", log_prints=True)
def nightly_parity(
    storage: str = "",
    trust: list[str] | None = None,
    names: list[str] | None = None,
    report_dir: str = "",
    stack_root: str = "",
) -> dict[str, Any]:
    """Re-check parity of every retained release with today's dependencies (drift check).

    Each retained version is fetched, verified and its FP32 graph re-run on the stored parity
    inputs (:func:`ordinal.release.drill.recheck_release`). A failure, or a registry with no
    release at all, alerts through the stack's channels (when ``stack_root`` is given) and
    raises after all versions ran.
    """
    from ordinal.release.drill import recheck_release

    trust = _use_stack(stack_root, trust)
    registry = open_registry(storage or None, trust, "")
    results: dict[str, Any] = {}
    for name in names or registry.names():
        for version in registry.versions(name):
            results[f"{name} {version}"] = recheck_release(registry, name, version).to_dict()
    if not results:
        results["releases"] = _no_release_row(registry.storage.url)
    stem = _report_stem("nightly-parity", dt.datetime.now(dt.UTC))
    files = _write_report(report_dir, stem, "Nightly parity", results)
    _publish_link("release-nightly-parity", "Nightly parity", results, files)
    failed = [k for k, v in results.items() if not v["passed"]]
    if failed:
        _alert(
            stack_root,
            "release-parity",
            f"nightly parity failed for {', '.join(failed)}",
            {"report": files[0] if files else "-", "storage": registry.storage.url},
        )
        raise RuntimeError(f"nightly parity failed for {', '.join(failed)}")
    return results


@flow(name="release-rollback-drill", log_prints=True)
def quarterly_rollback_drill(
    storage: str = "",
    trust: list[str] | None = None,
    names: list[str] | None = None,
    back: int = 3,
    report_dir: str = "",
    stack_root: str = "",
) -> dict[str, Any]:
    """The rollback drill alone on every release name (the quarterly resilience flow runs it
    with the other two rehearsals); JSON + HTML report, alert and raise on failure."""
    from ordinal.release import rollback_drill

    trust = _use_stack(stack_root, trust)
    registry = open_registry(storage or None, trust, "")
    results = {
        name: rollback_drill(registry, name, back=back).to_dict()
        for name in names or registry.names()
    }
    stem = _report_stem("rollback-drill", dt.datetime.now(dt.UTC))
    files = _write_report(report_dir, stem, "Rollback drill", results)
    failed = [k for k, v in results.items() if not v["passed"]]
    if failed:
        _alert(
            stack_root,
            "release-drill",
            f"rollback drill failed for {', '.join(failed)}",
            {"report": files[0] if files else "-"},
        )
        raise RuntimeError(f"rollback drill failed for {', '.join(failed)}")
    return results


def run_drills(
    drills: list[str] | tuple[str, ...] = DRILLS,
    *,
    storage: str = "",
    trust: list[str] | None = None,
    names: list[str] | None = None,
    back: int = 3,
    run: str = "",
    onnxruntime_version: str = "",
    wheel_cache: str = "",
    restore_spec: dict[str, Any] | None = None,
    pip_env_drop: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run the chosen rehearsals; return ``{row label: drill report dict}`` in run order.

    ``checkpoint-restore`` resumes ``run``'s training from its stored mid-training checkpoint
    (default: a fixture run on bert-tiny it trains itself); ``rollback`` is the rollback drill
    on every release name; ``dependency-upgrade`` rechecks the newest version of every release
    name under the next onnxruntime (or ``onnxruntime_version``). ``restore_spec`` holds
    :class:`~ordinal.release.checkpoint_drill.RestoreSpec` fields (tolerances, fixture size);
    ``pip_env_drop`` environment variables the rehearsal's ``pip`` calls must not see.
    Each row carries its ``seconds``. Without any published release, the release drills give
    one failed row.
    """
    unknown = [d for d in drills if d not in DRILLS]
    if unknown:
        raise ValueError(f"unknown drill(s) {unknown}; choose from {list(DRILLS)}")
    results: dict[str, Any] = {}

    def timed(label: str, call) -> None:
        started = time.perf_counter()
        try:
            report = call().to_dict()
        except Exception as exc:  # one drill that raises must not hide the others' results
            log.exception("drill %s raised", label)
            report = _failed_row(label, "run", f"{type(exc).__name__}: {exc}")
        report["seconds"] = round(time.perf_counter() - started, 3)
        results[label] = report

    if "checkpoint-restore" in drills:
        from ordinal.release.checkpoint_drill import (
            RestoreSpec,
            rehearse_checkpoint_restore,
            rehearse_run_checkpoint_restore,
        )

        spec = RestoreSpec(**(restore_spec or {}))
        if run:
            timed("checkpoint-restore", lambda: rehearse_run_checkpoint_restore(run, spec=spec))
        else:
            timed("checkpoint-restore", lambda: rehearse_checkpoint_restore(spec=spec))
    release_drills = [d for d in drills if d != "checkpoint-restore"]
    if not release_drills:
        return results
    try:
        registry = open_registry(storage or None, trust, "")
        release_names = names or registry.names()
    except Exception as exc:  # e.g. the storage is unreachable: a failed row, then the report
        log.exception("could not list the releases")
        results["releases"] = _failed_row("releases", "select", f"{type(exc).__name__}: {exc}")
        return results
    if not release_names:
        results["releases"] = _no_release_row(registry.storage.url)
        return results
    if "rollback" in drills:
        from ordinal.release import rollback_drill

        for name in release_names:
            timed(f"rollback {name}", lambda n=name: rollback_drill(registry, n, back=back))
    if "dependency-upgrade" in drills:
        for name in release_names:
            timed(
                f"dependency-upgrade {name}",
                lambda n=name: _upgrade_newest(
                    registry, n, onnxruntime_version, wheel_cache, pip_env_drop
                ),
            )
    return results


def _upgrade_newest(
    registry: Any, name: str, version: str, wheel_cache: str, env_drop: tuple[str, ...]
) -> Any:
    """Fetch (and verify) the newest version of ``name``, then rehearse the upgrade on it."""
    import shutil
    import tempfile

    from ordinal.release import ReleaseError
    from ordinal.release.drill import DrillReport
    from ordinal.release.upgrade_drill import dependency_upgrade_drill

    versions = registry.versions(name)
    if not versions:
        report = DrillReport(name=f"dependency-upgrade {name}", version=None, passed=False)
        report.stages["select"] = {"passed": False, "detail": f"{name} has no published version"}
        return report
    work = Path(tempfile.mkdtemp(prefix="upgrade-rehearsal-"))
    try:
        try:
            bundle = registry.fetch(name, versions[-1], work / "bundle")
        except ReleaseError as exc:
            report = DrillReport(name=f"dependency-upgrade {name}", version=None, passed=False)
            report.stages["fetch-verify"] = {"passed": False, "detail": str(exc)}
            return report
        return dependency_upgrade_drill(
            bundle.path,
            version=version or None,
            wheel_cache=wheel_cache or None,
            work_dir=work / "rehearsal",
            env_drop=env_drop,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


@flow(name="release-resilience", log_prints=True)
def quarterly_resilience(
    storage: str = "",
    trust: list[str] | None = None,
    names: list[str] | None = None,
    back: int = 3,
    report_dir: str = "",
    stack_root: str = "",
    drills: list[str] | None = None,
    run: str = "",
    onnxruntime_version: str = "",
    wheel_cache: str = "",
    restore_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The quarterly resilience rehearsal: checkpoint restore, model rollback, dependency
    upgrade (:func:`run_drills`). One pass/fail report (JSON + HTML, linked from the flow
    run as an artifact); a failure alerts through the stack's channels and fails the run."""
    trust = _use_stack(stack_root, trust)
    started = time.perf_counter()
    when = dt.datetime.now(dt.UTC)
    results = run_drills(
        list(drills or DRILLS),
        storage=storage,
        trust=trust,
        names=names,
        back=back,
        run=run,
        onnxruntime_version=onnxruntime_version,
        wheel_cache=wheel_cache,
        restore_spec=restore_spec,
        pip_env_drop=_stack_ca_variables(stack_root),
    )
    failed = [k for k, v in results.items() if not v["passed"]]
    summary = {
        "verdict": "FAIL" if failed else "pass",
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(time.perf_counter() - started, 3),
        "failed": ", ".join(failed) or "-",
    }
    stem = _report_stem("resilience", when)
    files = _write_report(report_dir, stem, "Quarterly resilience rehearsal", results, summary)
    _publish_link("release-resilience", "Quarterly resilience rehearsal", results, files)
    for label, result in results.items():
        verdict = "pass" if result["passed"] else "FAIL"
        get_run_logger().info("%s: %s; %s", label, verdict, _stage_text(result["stages"]))
    if failed:
        _alert(
            stack_root,
            "release-drill",
            f"quarterly resilience rehearsal failed: {', '.join(failed)}",
            {"report": files[0] if files else "-"},
        )
        raise RuntimeError(f"quarterly resilience rehearsal failed: {', '.join(failed)}")
    return {"summary": summary, "results": results, "reports": files}
