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
    "Approval",
    "evidence_markdown",
    "nightly_parity",
    "promotion_flow",
    "quarterly_rollback_drill",
]


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


def _write_report(report_dir: str, stem: str, title: str, results: dict[str, Any]) -> list[str]:
    """The drill report as JSON and a small HTML page; return both paths."""
    if not report_dir:
        return []
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{stem}.json"
    data.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    rows = []
    for release, result in sorted(results.items()):
        verdict = "pass" if result["passed"] else "FAIL"
        stages = "; ".join(
            f"{name}: {'pass' if s['passed'] else 'FAIL'} ({html.escape(str(s['detail']))})"
            for name, s in result["stages"].items()
        )
        rows.append(f"<tr><td>{html.escape(release)}</td><td>{verdict}</td><td>{stages}</td></tr>")
    page = folder / f"{stem}.html"
    page.write_text(
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><table border=1 cellpadding=4>"
        "<tr><th>release</th><th>verdict</th><th>stages</th></tr>" + "".join(rows) + "</table>\n",
        encoding="utf-8",
    )
    return [str(data), str(page)]


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
    inputs (:func:`ordinal.release.drill.recheck_release`). A failure alerts through the
    stack's channels (when ``stack_root`` is given) and raises after all versions ran.
    """
    from ordinal.release.drill import recheck_release

    registry = open_registry(storage or None, trust, "")
    results: dict[str, Any] = {}
    for name in names or registry.names():
        for version in registry.versions(name):
            results[f"{name} {version}"] = recheck_release(registry, name, version).to_dict()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    files = _write_report(report_dir, f"nightly-parity-{stamp}", "Nightly parity", results)
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
    """The rollback drill on every release name: fetch ``back`` releases back, verify,
    parity spot-check; JSON + HTML report, alert and raise on failure."""
    from ordinal.release import rollback_drill

    registry = open_registry(storage or None, trust, "")
    results = {
        name: rollback_drill(registry, name, back=back).to_dict()
        for name in names or registry.names()
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    files = _write_report(report_dir, f"rollback-drill-{stamp}", "Rollback drill", results)
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
