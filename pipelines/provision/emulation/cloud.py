"""The whole emulated cloud on loopback, for tests and for ``ordinal infra`` without AWS.

``EmulatedCloud`` starts ``moto_server``, the fault injector in front of its EC2, the
metadata stand-in and the user-data runner (which follows EC2's instance states), creates
the state bucket, applies ``envs/emulated/platform`` (network, roles) and
``envs/emulated/storage`` (buckets) once, and hands out a
:class:`~pipelines.provision.tofu.Platform` for the ``tofu`` provisioner.

With ``endpoint=`` it attaches to an emulated endpoint that is already running (the
control-plane stack's ``moto_server``, which serves EC2 and IAM beside its S3) instead of
starting one: the platform's state then lives in that endpoint's state bucket, and
:meth:`close` leaves the endpoint running.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3

from pipelines.provision.emulation.injector import FaultInjector
from pipelines.provision.emulation.metadata import MetadataStandIn
from pipelines.provision.emulation.moto import MotoServer
from pipelines.provision.emulation.userdata import UserDataRunner
from pipelines.provision.runner import Backend, TofuRunner

__all__ = ["CREDENTIALS", "STATE_BUCKET", "EmulatedCloud"]

CREDENTIALS = {
    # moto accepts any key; these are not secrets and never reach AWS.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
STATE_BUCKET = "ordinal-tfstate"
REGION = "us-east-1"


class EmulatedCloud:
    """Start everything; :meth:`close` stops it (moto's state is lost with it).

    Parameters
    ----------
    root : Path
        Folder for logs, the platform's work copy and the instances' process groups.
    name_prefix : str
        Prefix of the platform's buckets and roles.
    endpoint : str or None
        A running emulated endpoint to attach to (``http://127.0.0.1:<port>``); ``None``
        starts a ``moto_server`` of its own.
    run_id : str or None
        Run only this run's instances' user-data (an endpoint shared by several runs).
    """

    def __init__(
        self,
        root: Path,
        name_prefix: str = "ordinal",
        endpoint: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name_prefix = name_prefix
        self.attached = endpoint is not None
        self.moto = MotoServer(log_path=self.root / "moto.log")
        if endpoint is not None:
            self.moto.port = int(urlparse(endpoint).port or 80)
            if self.moto.url != endpoint.rstrip("/"):
                raise ValueError(f"an emulated endpoint is http://127.0.0.1:<port>, not {endpoint}")
        self.injector: FaultInjector | None = None
        self.metadata: MetadataStandIn | None = None
        self.instances: UserDataRunner | None = None
        self.platform_outputs: dict[str, Any] = {}
        self.storage_outputs: dict[str, Any] = {}
        self.apply_seconds: dict[str, float] = {}
        self._ami: str | None = None

    # -- clients ---------------------------------------------------------------------------
    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client for ``service`` on the emulator."""
        return boto3.client(
            service,
            endpoint_url=self.moto.url,
            region_name=region,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    @property
    def instance_dir(self) -> Path:
        """Where the user-data runner keeps one folder per instance."""
        return self.root / "instances"

    # -- life cycle ------------------------------------------------------------------------
    def start(self, apply_platform: bool = True) -> EmulatedCloud:
        """Start the servers; apply the platform unless told not to."""
        if not self.attached:
            self.moto.start()
        self.injector = FaultInjector(self.moto.url).start()
        self.metadata = MetadataStandIn().start()
        s3 = self.client("s3")
        if STATE_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=STATE_BUCKET)
            s3.put_bucket_versioning(
                Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"}
            )
        metadata = self.metadata
        # Each instance polls its own metadata path, as each VM has its own IMDS.
        self.instances = UserDataRunner(
            self.instance_dir,
            instance_env=lambda i: {"ORDINAL_METADATA_URL": metadata.instance_url(i)},
            run_id=self.run_id,
        ).watch(self.client("ec2"))
        if apply_platform:
            self.apply_platform()
            self.apply_storage()
        return self

    def runner(self, root: str) -> TofuRunner:
        """The runner of ``envs/emulated/<root>`` (state key ``platform/<root>.tfstate``)."""
        return TofuRunner(
            f"envs/emulated/{root}",
            self.root / root,
            Backend(STATE_BUCKET, f"platform/{root}.tfstate", REGION, self.moto.url),
            env=CREDENTIALS,
        )

    def variables(self) -> dict[str, Any]:
        """Variables of the platform and storage roots."""
        return {"endpoint": self.moto.url, "name_prefix": self.name_prefix}

    def _apply(self, root: str) -> dict[str, Any]:
        runner = self.runner(root)
        started = time.monotonic()
        runner.apply(self.variables())
        self.apply_seconds[root] = time.monotonic() - started
        return runner.outputs()

    def apply_platform(self) -> dict[str, Any]:
        """Apply the network and the roles; return the outputs."""
        self.platform_outputs = self._apply("platform")
        return self.platform_outputs

    def apply_storage(self) -> dict[str, Any]:
        """Apply the buckets (data, DR, logs); return the outputs."""
        self.storage_outputs = self._apply("storage")
        return self.storage_outputs

    def ami_id(self) -> str:
        """An image moto knows (AMI validation is on, so it must exist)."""
        if self._ami is None:
            images = self.client("ec2").describe_images(
                Owners=["amazon"], Filters=[{"Name": "name", "Values": ["ubuntu/*"]}]
            )["Images"]
            self._ami = sorted(i["ImageId"] for i in images)[0]
        return self._ami

    def platform(self) -> Any:
        """The :class:`~pipelines.provision.tofu.Platform` for the provisioner."""
        from pipelines.provision.tofu import Platform

        assert self.injector is not None
        return Platform.from_outputs(
            self.platform_outputs,
            env="emulated",
            region=REGION,
            ami_id=self.ami_id(),
            state_bucket=STATE_BUCKET,
            endpoint=self.moto.url,
            ec2_endpoint=self.injector.url,
            credentials=dict(CREDENTIALS),
            instance_dir=str(self.instance_dir),
        )

    def close(self) -> None:
        """Stop watching, kill any instance process left, stop the servers."""
        if self.instances is not None:
            self.instances.close()
            for instance_id in self.instances.alive():
                self.instances.terminate(instance_id)
        for server in (self.injector, self.metadata):
            if server is not None:
                server.stop()
        if not self.attached:
            self.moto.stop()

    def __enter__(self) -> EmulatedCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
