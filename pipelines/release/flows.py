"""Prefect flows of the release process: promotion with a human approval, nightly parity.

The promotion flow evaluates the committed policy, then pauses with
``pause_flow_run(wait_for_input=Approval...)``: the Prefect UI shows a form whose description
is the evidence table, and whoever resumes it types their name and decision. Only an approval
of a release whose every criterion passed moves the alias; the audit record keeps the policy
evaluation and the approver.
"""

from __future__ import annotations

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

__all__ = ["Approval", "evidence_markdown", "nightly_parity", "promotion_flow"]


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


@flow(name="release-nightly-parity", log_prints=True)
def nightly_parity(
    storage: str = "", trust: list[str] | None = None, names: list[str] | None = None
) -> dict[str, Any]:
    """Re-check parity of every retained release with today's dependencies (drift check).

    Each retained version is fetched, verified and its FP32 graph re-run on the stored parity
    inputs (:func:`ordinal.release.rollback_drill` stages); a failure raises after all ran, so
    the stack's failure alerts fire.
    """
    from ordinal.release.drill import recheck_release

    registry = open_registry(storage or None, trust, "")
    results: dict[str, Any] = {}
    for name in names or registry.names():
        for version in registry.versions(name):
            results[f"{name} {version}"] = recheck_release(registry, name, version).to_dict()
    failed = [k for k, v in results.items() if not v["passed"]]
    if failed:
        raise RuntimeError(f"nightly parity failed for {', '.join(failed)}")
    return results
