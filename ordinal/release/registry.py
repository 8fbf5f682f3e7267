"""The release registry: ``releases/{name}/{version}/`` in the storage root, MLflow's model
registry, aliases with history, retention, rollback and the generated changelog.

Every change goes through the audit log (:class:`ordinal.release.AuditLog`), which is also
where alias history lives: MLflow keeps only the current holder of an alias, the log keeps
every change, so "which version was in production at time T" has an answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ordinal.artifacts import layout
from ordinal.artifacts.checksums import sha256_bytes
from ordinal.artifacts.errors import ObjectNotFoundError
from ordinal.artifacts.storage import Storage
from ordinal.release.audit import AuditLog
from ordinal.release.bundle import BUNDLE_FILE, SIGNATURE_FILE, VerifiedBundle, verify_bundle
from ordinal.release.changelog import changelog_entry, insert_entry
from ordinal.release.errors import ImmutableReleaseError, RegistryError
from ordinal.release.retention import RetentionPlan, plan_retention, semver_key

__all__ = ["ALIASES", "PublishResult", "Registry", "release_prefix"]

ALIASES = ("candidate", "production")
CHANGELOG = "CHANGELOG.md"


def release_prefix(name: str, version: str) -> str:
    """``releases/{name}/{version}``."""
    return layout.join(
        "releases", layout.check_component(name, "release"), layout.check_component(version)
    )


@dataclass(frozen=True)
class PublishResult:
    """The outcome of :meth:`Registry.publish`."""

    name: str
    version: str
    prefix: str
    digest: str
    created: bool
    mlflow_version: str | None
    audit_seq: int | None


def _evidence_tags(meta: dict[str, Any], digest: str) -> dict[str, str]:
    tags = {
        "ordinal.release.version": meta["version"],
        "ordinal.release.bundle_sha256": digest,
        "ordinal.release.key_fingerprint": meta["signing"]["key_fingerprint"],
        "ordinal.release.run_id": meta["lineage"]["run_id"],
        "ordinal.release.experiment_id": meta["lineage"]["experiment_id"],
        "ordinal.release.git_sha": str(meta["lineage"]["git_sha"]),
    }
    for gate, report in meta["evidence"].items():
        tags[f"ordinal.evidence.{gate}.sha256"] = report["sha256"]
        tags[f"ordinal.evidence.{gate}.passed"] = str(report["passed"]).lower()
    for variant, metrics in meta["metrics"].items():
        for key in ("mae", "qwk", "accuracy"):
            tags[f"ordinal.metrics.{variant}.{key}"] = repr(metrics[key])
    return tags


class Registry:
    """Published releases in a storage root, mirrored into MLflow's model registry.

    Parameters
    ----------
    storage : Storage
        The storage root (on the stack: the object-locked S3 bucket).
    trusted_keys : TrustedKeys or keys
        Keys whose bundles may be published and fetched.
    audit : AuditLog, optional
        Default: ``AuditLog(storage)``.
    tracking_uri : str or None
        MLflow tracking/registry URI; ``""`` disables MLflow, None uses
        ``$MLFLOW_TRACKING_URI`` or the local store.
    """

    def __init__(
        self,
        storage: Storage,
        trusted_keys: Any,
        *,
        audit: AuditLog | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        self.storage = storage
        self.trusted_keys = trusted_keys
        self.audit = audit or AuditLog(storage)
        if tracking_uri is None:
            from ordinal.tracking import local_tracking_uri

            tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri()
        self.tracking_uri = tracking_uri
        self._mlflow_client: Any = None

    # -- MLflow -------------------------------------------------------------------------
    def _client(self) -> Any:
        if not self.tracking_uri:
            return None
        if self._mlflow_client is None:
            from mlflow import MlflowClient

            self._mlflow_client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._mlflow_client

    def mlflow_version(self, name: str, version: str) -> str | None:
        """The MLflow model version number registered for ``name`` ``version``."""
        client = self._client()
        if client is None:
            return None
        for mv in client.search_model_versions(f"name = '{name}'"):
            if mv.tags.get("ordinal.release.version") == version:
                return str(mv.version)
        return None

    def _register(self, bundle: VerifiedBundle, prefix: str) -> str | None:
        client = self._client()
        if client is None:
            return None
        from mlflow.exceptions import MlflowException

        name = bundle.name
        existing = self.mlflow_version(name, bundle.version)
        if existing:
            return existing
        with contextlib.suppress(MlflowException):
            client.create_registered_model(
                name, description=f"ordinal release {name} (bundles in releases/{name}/)"
            )
        source = f"{self.storage.url.rstrip('/')}/{prefix}"
        mv = client.create_model_version(
            name,
            source,
            run_id=None,
            tags=_evidence_tags(bundle.metadata, bundle.digest),
            description=f"{name} {bundle.version}, bundle.json sha256 {bundle.digest}",
        )
        return str(mv.version)

    # -- storage ------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every release name with at least one published version."""
        found = set()
        for key in self.storage.list("releases"):
            parts = key.split("/")
            if len(parts) == 4 and parts[3] == SIGNATURE_FILE:
                found.add(parts[1])
        return sorted(found)

    def versions(self, name: str) -> list[str]:
        """Published versions of ``name`` (their ``bundle.sig`` exists), oldest first."""
        base = layout.join("releases", layout.check_component(name, "release"))
        found = set()
        for key in self.storage.list(base):
            parts = key[len(base) + 1 :].split("/")
            if len(parts) == 2 and parts[1] == SIGNATURE_FILE:
                found.add(parts[0])
        return sorted(found, key=semver_key)

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        """The stored ``bundle.json`` of a published version (not verified: see fetch)."""
        key = layout.join(release_prefix(name, version), BUNDLE_FILE)
        try:
            return json.loads(self.storage.get_bytes(key))
        except ObjectNotFoundError:
            raise RegistryError(
                f"{name} {version} is not published in {self.storage.url}"
            ) from None

    def publish(self, bundle_path: str | os.PathLike[str], *, actor: str | None = None):
        """Verify a bundle and publish it to ``releases/{name}/{version}/``.

        A version is written once. Publishing the same bytes again is a no-op
        (``created=False``); different bytes for a published version are refused. The
        signature goes last, so a version without ``bundle.sig`` is an unfinished upload and
        is neither listed nor fetched. Registers the version in MLflow with evidence tags and
        the ``candidate`` alias, appends ``publish`` to the audit log, and adds an entry to
        ``releases/{name}/CHANGELOG.md``.

        Raises
        ------
        BundleVerificationError
            The bundle fails verification (schema, signature, trust, digests).
        ImmutableReleaseError
            The version is published with other bytes.
        """
        bundle = verify_bundle(bundle_path, self.trusted_keys)
        name, version = bundle.name, bundle.version
        prefix = release_prefix(name, version)
        sig_key = layout.join(prefix, SIGNATURE_FILE)
        if self.storage.exists(sig_key):
            stored = sha256_bytes(self.storage.get_bytes(layout.join(prefix, BUNDLE_FILE)))
            if stored != bundle.digest:
                raise ImmutableReleaseError(f"{name} {version}", stored, bundle.digest)
            # Same bytes: nothing to write; an MLflow registration that failed is completed.
            mlflow_version = self._register(bundle, prefix)
            return PublishResult(name, version, prefix, bundle.digest, False, mlflow_version, None)
        previous = [v for v in self.versions(name) if semver_key(v) < semver_key(version)]
        # Leftovers of an unfinished upload are replaced. The signature is written last,
        # after MLflow and the audit log: a failure before it leaves an unpublished version
        # that a second publish completes.
        self.storage.delete_prefix(prefix)
        for entry in bundle.metadata["files"]:
            self.storage.put_file(bundle.path / entry["path"], layout.join(prefix, entry["path"]))
        self.storage.put_file(bundle.path / BUNDLE_FILE, layout.join(prefix, BUNDLE_FILE))
        mlflow_version = self._register(bundle, prefix)
        record = self.audit.append(
            "publish",
            {"name": name, "version": version, "digests": {BUNDLE_FILE: bundle.digest}},
            {
                "alias": "candidate",
                "prefix": prefix,
                "storage": self.storage.url,
                "key_fingerprint": bundle.key_fingerprint,
                "mlflow_version": mlflow_version,
                "evidence": bundle.metadata["evidence"],
            },
            actor=actor,
        )
        self.storage.put_file(bundle.path / SIGNATURE_FILE, sig_key)
        self._set_mlflow_alias(name, "candidate", mlflow_version)
        self._changelog(bundle.metadata, self.metadata(name, previous[-1]) if previous else None)
        return PublishResult(name, version, prefix, bundle.digest, True, mlflow_version, record.seq)

    def _changelog(self, meta: dict[str, Any], previous: dict[str, Any] | None) -> None:
        key = layout.join("releases", meta["name"], CHANGELOG)
        try:
            text = self.storage.get_bytes(key).decode("utf-8")
        except ObjectNotFoundError:
            text = None
        self.storage.put_bytes(
            insert_entry(text, changelog_entry(meta, previous)).encode("utf-8"), key
        )

    def changelog(self, name: str) -> str:
        """The generated ``CHANGELOG.md`` of ``name``."""
        key = layout.join("releases", layout.check_component(name, "release"), CHANGELOG)
        try:
            return self.storage.get_bytes(key).decode("utf-8")
        except ObjectNotFoundError:
            return ""

    def fetch(
        self, name: str, version: str, dest: str | os.PathLike[str] | None = None
    ) -> VerifiedBundle:
        """Download a published version into ``dest`` (default a temporary folder), verified.

        Files not listed in ``bundle.json`` are not downloaded; verification then checks the
        rest (signature, trust, every digest).
        """
        prefix = release_prefix(name, version)
        if not self.storage.exists(layout.join(prefix, SIGNATURE_FILE)):
            raise RegistryError(f"{name} {version} is not published in {self.storage.url}")
        target = Path(dest) if dest else Path(tempfile.mkdtemp(prefix=f"{name}-{version}-"))
        meta = self.metadata(name, version)
        for rel in [e["path"] for e in meta["files"]] + [BUNDLE_FILE, SIGNATURE_FILE]:
            self.storage.download(layout.join(prefix, rel), target / rel)
        return verify_bundle(target, self.trusted_keys)

    # -- aliases ------------------------------------------------------------------------
    def _set_mlflow_alias(self, name: str, alias: str, mlflow_version: str | None) -> None:
        client = self._client()
        if client is not None and mlflow_version is not None:
            client.set_registered_model_alias(name, alias, mlflow_version)

    def alias(self, name: str, alias: str = "production", at: str | None = None) -> str | None:
        """The version holding ``alias`` now (or at time ``at``), from the audit log."""
        return self.audit.holder(name, alias, at)

    def set_alias(
        self,
        name: str,
        version: str,
        alias: str,
        *,
        actor: str | None = None,
        evidence: dict[str, Any] | None = None,
        action: str = "promote",
    ):
        """Point ``alias`` at a published ``version``; audited, and mirrored into MLflow."""
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; use one of {ALIASES}")
        meta = self.metadata(name, version)
        digest = sha256_bytes(
            self.storage.get_bytes(layout.join(release_prefix(name, version), BUNDLE_FILE))
        )
        mlflow_version = self.mlflow_version(name, version)
        record = self.audit.append(
            action,
            {"name": name, "version": version, "digests": {BUNDLE_FILE: digest}},
            {
                **(evidence or {}),
                "alias": alias,
                "previous": self.alias(name, alias),
                "mlflow_version": mlflow_version,
                "run_id": meta["lineage"]["run_id"],
            },
            actor=actor,
        )
        self._set_mlflow_alias(name, alias, mlflow_version)
        return record

    def rollback(self, name: str, *, actor: str | None = None, reason: str = ""):
        """Move ``production`` to the newest earlier version that held production before.

        Raises
        ------
        RegistryError
            Nothing is in production, or no earlier version ever was.
        """
        current = self.alias(name, "production")
        if current is None:
            raise RegistryError(f"{name} has no production version to roll back from")
        earlier = [
            v
            for v in self.audit.ever_held(name, "production")
            if semver_key(v) < semver_key(current) and v in self.versions(name)
        ]
        if not earlier:
            raise RegistryError(
                f"{name} {current} is the oldest version that held production: nothing to roll "
                "back to"
            )
        target = max(earlier, key=semver_key)
        return self.set_alias(
            name,
            target,
            "production",
            actor=actor,
            evidence={"rolled_back_from": current, "reason": reason},
            action="rollback",
        )

    # -- retention ----------------------------------------------------------------------
    def retention_plan(self, name: str, keep_last: int = 3) -> RetentionPlan:
        """What a sweep would keep and delete (nothing is changed)."""
        current = [v for v in (self.alias(name, a) for a in ALIASES) if v]
        return plan_retention(
            self.versions(name),
            self.audit.ever_held(name, "production"),
            keep_last=keep_last,
            current=current,
        )

    def sweep(
        self, name: str, *, keep_last: int = 3, dry_run: bool = False, actor: str | None = None
    ) -> RetentionPlan:
        """Delete what the retention policy allows; every deletion is audited first."""
        plan = self.retention_plan(name, keep_last)
        if dry_run:
            return plan
        for version in plan.deleted:
            prefix = release_prefix(name, version)
            digest = sha256_bytes(self.storage.get_bytes(layout.join(prefix, BUNDLE_FILE)))
            self.audit.append(
                "retention-delete",
                {"name": name, "version": version, "digests": {BUNDLE_FILE: digest}},
                {"kept": plan.kept, "keep_last": keep_last},
                actor=actor,
            )
            # The signature first: a half-deleted version is never listed as published.
            self.storage.delete(layout.join(prefix, SIGNATURE_FILE))
            self.storage.delete_prefix(prefix)
            client = self._client()
            mv = self.mlflow_version(name, version)
            if client is not None and mv is not None:
                client.delete_model_version(name, mv)
        return plan
