"""``ordinal release``: bundle, verify, publish, promote, approve, rollback, history, audit,
retention and drills (a typer sub-app mounted by :mod:`pipelines.cli`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ordinal.release import ReleaseError

release_app = typer.Typer(
    name="release",
    help="Release governance: bundles, registry, promotion, rollback, audit log.",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="The hash-chained release audit log.", no_args_is_help=True)
release_app.add_typer(audit_app, name="audit")
console = Console()

StorageOption = Annotated[
    str | None,
    typer.Option(help="Storage root URL (default $ORDINAL_STORAGE_URL or the local store)"),
]
TrustOption = Annotated[
    list[str] | None,
    typer.Option(
        "--trust",
        help="Trusted key: sha256:<hex> fingerprint or public key file (repeatable); also "
        "$ORDINAL_RELEASE_TRUSTED_KEYS and <state>/release/trusted/*.pub",
    ),
]
TrackingOption = Annotated[
    str | None,
    typer.Option(help="MLflow tracking/registry URI ('' disables MLflow; default local store)"),
]


def _fail(exc: Exception, code: int = 1) -> None:
    console.print(f"[bold red]{type(exc).__name__}[/]: {exc}")
    raise typer.Exit(code)


@release_app.command("keygen")
def keygen_cmd(
    key: Annotated[Path | None, typer.Option(help="Private key file to create")] = None,
    trust: Annotated[bool, typer.Option(help="Also trust its public key locally")] = True,
) -> None:
    """Create an Ed25519 release signing key (0600) and its public key (.pub)."""
    from ordinal.release import generate_signing_key
    from pipelines.release.settings import default_signing_key, trusted_dir

    path = key or default_signing_key()
    try:
        fp = generate_signing_key(path)
    except ReleaseError as exc:
        _fail(exc)
    if trust:
        trusted_dir().mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f"{path}.pub", trusted_dir() / f"{fp[7:23]}.pub")
    print(f"signing key: {path}\npublic key:  {path}.pub\nfingerprint: {fp}")


@release_app.command("bundle")
def bundle_cmd(
    run: Annotated[str, typer.Argument(help="Completed run: its folder or run id")],
    name: Annotated[str, typer.Option(help="Release name")],
    version: Annotated[str, typer.Option(help="Semantic version MAJOR.MINOR.PATCH")],
    out: Annotated[
        Path | None, typer.Option(help="Bundle folder (default ./{name}-{version})")
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="Signing key (default <state>/release/signing-key.pem)")
    ] = None,
    storage: StorageOption = None,
    run_storage: Annotated[
        str | None,
        typer.Option(help="Storage root the run wrote to (default: the one the run recorded)"),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle folder")] = False,
) -> None:
    """Build the signed bundle of a completed run (SOURCE_DATE_EPOCH gives identical bytes)."""
    from ordinal.release import bundle_run
    from pipelines.release.settings import default_signing_key, open_audit

    audit = open_audit(storage)
    target = out or Path(f"{name}-{version}")
    try:
        verified, record = bundle_run(
            run,
            target,
            name=name,
            version=version,
            signing_key=key or default_signing_key(),
            audit=audit,
            storage=run_storage,
            overwrite=overwrite,
            work_dir=target.parent / f".{target.name}-downloads",
        )
    except ReleaseError as exc:
        _fail(exc)
    shutil.rmtree(target.parent / f".{target.name}-downloads", ignore_errors=True)
    print(
        f"bundle: {verified.path}\nbundle.json sha256: {verified.digest}\naudit seq: {record.seq}"
    )


@release_app.command("verify")
def verify_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder")],
    trust: TrustOption = None,
    any_key: Annotated[
        bool, typer.Option("--any-key", help="Accept any correctly self-signed bundle (reported)")
    ] = False,
) -> None:
    """Check schema, signature, trust and every file digest; name what differs (exit 1)."""
    from ordinal.release import BundleVerificationError, TrustedKeys, verify_bundle
    from pipelines.release.settings import trusted_keys

    keys = TrustedKeys.any_self_signed() if any_key else trusted_keys(trust)
    try:
        verified = verify_bundle(bundle, keys)
    except BundleVerificationError as exc:
        console.print(f"[bold red]FAILED[/] ({exc.check}): {exc}")
        raise typer.Exit(1) from None
    trust_note = "trusted key" if verified.trusted else "[yellow]NOT a trusted key (--any-key)[/]"
    console.print(
        f"[green]verified[/] {verified.name} {verified.version}: "
        f"{len(verified.metadata['files'])} files, signed by {verified.key_fingerprint} "
        f"({trust_note})"
    )
    print(f"bundle.json sha256: {verified.digest}")


@release_app.command("publish")
def publish_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder")],
    storage: StorageOption = None,
    trust: TrustOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Publish to releases/{name}/{version}/ (immutable), register in MLflow as candidate."""
    from pipelines.release.settings import open_registry

    registry = open_registry(storage, trust, tracking_uri)
    try:
        result = registry.publish(bundle)
    except ReleaseError as exc:
        _fail(exc)
    state = "published" if result.created else "already published with the same bytes"
    print(f"{result.name} {result.version} {state}: {registry.storage.url}/{result.prefix}")
    if result.mlflow_version:
        print(f"MLflow model version: {result.name} v{result.mlflow_version} (alias candidate)")


def _policy_table(evaluation: Any) -> Table:
    verdict = "[green]PROMOTABLE[/]" if evaluation.passed else "[red]REFUSED[/]"
    table = Table(title=f"{evaluation.name} {evaluation.version}: {verdict}", show_lines=False)
    for column in ("criterion", "status", "detail", "evidence"):
        table.add_column(column, overflow="fold")
    colour = {"pass": "green", "fail": "red", "missing": "yellow"}
    for r in evaluation.results:
        table.add_row(r.criterion, f"[{colour[r.status]}]{r.status}[/]", r.detail, r.evidence)
    return table


@release_app.command("promote")
def promote_cmd(
    name: Annotated[str, typer.Argument(help="Release name")],
    version: Annotated[str, typer.Argument(help="Version to promote")],
    to: Annotated[str, typer.Option("--to", help="Alias: production or candidate")] = "production",
    storage: StorageOption = None,
    trust: TrustOption = None,
    tracking_uri: TrackingOption = None,
    policy: Annotated[
        Path | None, typer.Option(help="Policy file (default the committed one)")
    ] = None,
    check_only: Annotated[bool, typer.Option(help="Evaluate and print only")] = False,
    timeout: Annotated[int, typer.Option(help="Seconds to wait for the approval")] = 86400,
) -> None:
    """Evaluate the promotion policy (table with evidence), then wait for a human approval in
    Prefect (`ordinal release approve` or the UI form); refused unless every criterion passes."""
    from ordinal.release import evaluate_policy, load_policy
    from pipelines.release.settings import open_registry

    registry = open_registry(storage, trust, tracking_uri)
    try:
        loaded, sha = load_policy(policy)
        evaluation = evaluate_policy(registry, name, version, loaded, sha)
    except ReleaseError as exc:
        _fail(exc)
    console.print(_policy_table(evaluation))
    if not evaluation.passed:
        console.print(f"[bold red]promotion refused[/]: {', '.join(evaluation.failed)}")
        raise typer.Exit(1)
    if check_only:
        return
    from pipelines.release.flows import promotion_flow

    console.print("waiting for approval: `ordinal release approve FLOW_RUN_ID --by NAME` or the UI")
    result = promotion_flow(
        name, version, to, storage or "", trust, tracking_uri, str(policy or ""), timeout
    )
    if not result["promoted"]:
        console.print(f"[red]rejected[/] by {result['approver']}")
        raise typer.Exit(1)
    print(
        f"{name} {version} is {to}; approved by {result['approver']} "
        f"(audit seq {result['audit_seq']})"
    )


@release_app.command("approve")
def approve_cmd(
    flow_run_id: Annotated[str, typer.Argument(help="The paused release-promotion flow run")],
    by: Annotated[str, typer.Option("--by", help="Your name (recorded in the audit log)")],
    reject: Annotated[bool, typer.Option(help="Reject instead of approving")] = False,
    comment: Annotated[str, typer.Option(help="Comment recorded with the decision")] = "",
) -> None:
    """Answer a paused promotion: approve (or reject) with your name."""
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    resume_flow_run(
        UUID(flow_run_id), run_input={"approver": by, "approve": not reject, "comment": comment}
    )
    print(f"{'rejected' if reject else 'approved'} by {by}")


@release_app.command("rollback")
def rollback_cmd(
    name: Annotated[str, typer.Argument(help="Release name")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log)")] = "",
    storage: StorageOption = None,
    trust: TrustOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Move production to the previous production version (audited)."""
    from pipelines.release.settings import open_registry

    registry = open_registry(storage, trust, tracking_uri)
    try:
        record = registry.rollback(name, reason=reason)
    except ReleaseError as exc:
        _fail(exc)
    print(
        f"{name}: production {record.evidence['rolled_back_from']} -> "
        f"{record.subject['version']} (audit seq {record.seq})"
    )


@release_app.command("history")
def history_cmd(
    name: Annotated[str, typer.Argument(help="Release name")],
    at: Annotated[
        str | None, typer.Option(help="RFC 3339 time: which version held production")
    ] = None,
    storage: StorageOption = None,
) -> None:
    """Alias history of a release; with --at, the version in production at that time."""
    from pipelines.release.settings import open_audit

    audit = open_audit(storage)
    try:
        if at:
            print(audit.holder(name, "production", at) or "none")
            return
        changes = audit.alias_changes(name)
    except ReleaseError as exc:
        _fail(exc)
    table = Table(title=f"{name}: alias history")
    for column in ("seq", "time", "alias", "version", "action", "actor"):
        table.add_column(column)
    for c in changes:
        table.add_row(str(c.seq), c.time, c.alias, str(c.version), c.action, c.actor)
    console.print(table)


@audit_app.command("verify")
def audit_verify_cmd(storage: StorageOption = None) -> None:
    """Verify the chain and the local mirror; name the first bad sequence number (exit 1)."""
    from ordinal.release import AuditLogError
    from pipelines.release.settings import open_audit

    audit = open_audit(storage)
    try:
        count = audit.verify()
    except AuditLogError as exc:
        console.print(f"[bold red]audit log FAILED[/] at seq {exc.seq}: {exc.reason}")
        raise typer.Exit(1) from None
    console.print(f"[green]audit log intact[/]: {count} records in {audit.storage.url}")


@release_app.command("retention")
def retention_cmd(
    name: Annotated[str, typer.Argument(help="Release name")],
    keep_last: Annotated[int, typer.Option(help="Newest versions always kept (>= 3)")] = 3,
    apply: Annotated[
        bool, typer.Option(help="Delete what the policy allows (default: report)")
    ] = False,
    storage: StorageOption = None,
    trust: TrustOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Retention sweep report (kept and why); --apply deletes what the policy allows."""
    from pipelines.release.settings import open_registry

    registry = open_registry(storage, trust, tracking_uri)
    try:
        plan = registry.sweep(name, keep_last=keep_last, dry_run=not apply)
    except (ReleaseError, ValueError) as exc:
        _fail(exc)
    table = Table(title=f"{name}: retention ({'applied' if apply else 'dry run'})")
    for column in ("version", "decision", "why"):
        table.add_column(column)
    for row in plan.rows():
        table.add_row(*row)
    console.print(table)


@release_app.command("drill")
def drill_cmd(
    what: Annotated[
        str,
        typer.Argument(
            help="checkpoint-restore, rollback, dependency-upgrade or all (a release name "
            "alone means: the rollback drill on it)"
        ),
    ],
    names: Annotated[
        list[str] | None, typer.Argument(help="Release names (default: every published one)")
    ] = None,
    back: Annotated[int, typer.Option(help="Rollback drill: how many releases back")] = 3,
    run: Annotated[
        str,
        typer.Option(help="Checkpoint restore: a run folder or id (default: a fixture run)"),
    ] = "",
    onnxruntime_version: Annotated[
        str,
        typer.Option(
            "--onnxruntime-version",
            help="Dependency upgrade: the candidate (default: the next one the index offers)",
        ),
    ] = "",
    wheel_cache: Annotated[
        str, typer.Option(help="Where downloaded wheels are kept (<state>/release/wheels)")
    ] = "",
    report: Annotated[Path | None, typer.Option(help="Write the JSON report here")] = None,
    report_dir: Annotated[
        Path | None, typer.Option(help="Write the JSON and HTML reports into this folder")
    ] = None,
    storage: StorageOption = None,
    trust: TrustOption = None,
) -> None:
    """Run resilience drills on demand and report pass/fail with their numbers (exit 1)."""
    import datetime as dt

    from pipelines.release.flows import DRILLS, _write_report, run_drills

    if what == "all":
        drills, chosen = list(DRILLS), names
    elif what in DRILLS:
        drills, chosen = [what], names
    else:  # `ordinal release drill NAME`: the rollback drill on that release
        drills, chosen = ["rollback"], [what, *(names or [])]
    try:
        results = run_drills(
            drills,
            storage=storage or "",
            trust=trust,
            names=chosen or None,
            back=back,
            run=run,
            onnxruntime_version=onnxruntime_version,
            wheel_cache=wheel_cache,
        )
    except (ReleaseError, ValueError) as exc:
        _fail(exc)
    passed = all(r["passed"] for r in results.values())
    for label, result in results.items():
        verdict = "[green]pass[/]" if result["passed"] else "[red]FAIL[/]"
        console.print(f"[bold]{label}[/]: {verdict} ({result.get('seconds', 0):.1f} s)")
        for stage, outcome in result["stages"].items():
            mark = "[green]pass[/]" if outcome["passed"] else "[red]FAIL[/]"
            console.print(f"  {mark} {stage}: {outcome['detail']}", highlight=False)
    if report:
        document = {"passed": passed, "results": results}
        report.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    if report_dir:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        summary = {"verdict": "pass" if passed else "FAIL", "drills": ", ".join(drills)}
        for path in _write_report(
            str(report_dir), f"drill-{stamp}", "Resilience drills", results, summary
        ):
            print(f"report: {path}")
    if not passed:
        raise typer.Exit(1)
    console.print("[green]drills passed[/]")
