"""The cloud emulated at its boundary, kept apart from the provisioner itself.

Nothing here is imported by the provisioner's logic: it only receives endpoints (URLs) and
an instance hook. What moto cannot do is emulated here, on loopback:

* :class:`MotoServer`: ``moto_server`` serving EC2, S3, IAM and STS (AMI validation on);
* :class:`FaultInjector`: a proxy in front of EC2 that answers the next N spot requests with
  AWS's own error responses;
* :class:`UserDataRunner`: runs an instance's rendered user-data locally, in a process
  group tied to the instance id, and kills that group when the instance is terminated;
* :class:`MetadataStandIn`: the instance metadata service's ``spot/instance-action``.
"""

from pipelines.provision.emulation.injector import SPOT_ERRORS, FaultInjector
from pipelines.provision.emulation.metadata import MetadataStandIn
from pipelines.provision.emulation.moto import MotoServer, free_port
from pipelines.provision.emulation.userdata import UserDataRunner

__all__ = [
    "SPOT_ERRORS",
    "FaultInjector",
    "MetadataStandIn",
    "MotoServer",
    "UserDataRunner",
    "free_port",
]
