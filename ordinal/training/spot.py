"""Spot interruption: watch the instance metadata service's two-minute warning during training.

On a spot VM, EC2 announces a reclaim two minutes ahead at
``{base}/latest/meta-data/spot/instance-action`` (``404`` until then; then
``{"action": "terminate", "time": "..."}``), where ``base`` is the instance metadata service,
``http://169.254.169.254`` on AWS. IMDSv2 is required on the project's VMs: every read carries
a session token from ``PUT {base}/latest/api/token``.

:class:`SpotInterruptionCallback` polls that document from a background thread (AWS advises
every 5 s). On a notice it has the Trainer save a checkpoint at the end of the current step
(into ``output_dir``), calls the ``upload`` hook with the checkpoint folder, writes
``spot-interruption-<step>.json`` beside the checkpoints, and raises
:class:`ordinal.exceptions.SpotInterruptedError` so the step fails with a typed error that the
pipeline answers by resuming on a fresh VM.

The VM's disk goes with the VM, so on a provisioned VM the checkpoint must leave it: when
``ORDINAL_CHECKPOINT_UPLOAD_URL`` (:data:`CHECKPOINT_UPLOAD_ENV`) names a storage root,
:meth:`SpotInterruptionCallback.from_env` sets the hook to
:func:`ordinal.training.checkpoint_store.upload_checkpoint`, and the next VM's
:func:`ordinal.training.train_ordinal_model` restores the newest uploaded checkpoint before it
resumes. ``seconds_to_save`` covers the save and the upload (the deadline is for both). A
failed upload raises :class:`ordinal.exceptions.CheckpointError`, not the interruption error:
the step never claims a checkpoint left the VM when it did not.

It is only active when configured, so a laptop never polls a link-local address:
an explicit ``metadata_url``, or the environment the provisioner gives its VMs
(``ORDINAL_METADATA_URL``, or ``ORDINAL_SPOT_INTERRUPTION=1`` for the AWS default). In tests
and on the emulated cloud the base URL points at a loopback stand-in of the metadata service
(``pipelines.provision.emulation.MetadataStandIn``): only the HTTP endpoint is emulated; the
callback, the checkpoint and the error are the real ones.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ordinal.exceptions import CheckpointError, SpotInterruptedError
from ordinal.training.checkpoint_store import (
    CHECKPOINT_UPLOAD_ENV,
    INTERRUPTION_RECORD_GLOB,
    checkpoint_upload_url,
    public_url,
    upload_checkpoint,
    upload_interruption_record,
)

__all__ = [
    "AWS_METADATA_URL",
    "CHECKPOINT_UPLOAD_ENV",
    "METADATA_URL_ENV",
    "SPOT_ENABLE_ENV",
    "SpotInterruptionCallback",
    "SpotSpec",
    "StoreUpload",
    "read_interruptions",
]

log = logging.getLogger(__name__)

AWS_METADATA_URL = "http://169.254.169.254"
METADATA_URL_ENV = "ORDINAL_METADATA_URL"
SPOT_ENABLE_ENV = "ORDINAL_SPOT_INTERRUPTION"
POLL_ENV = "ORDINAL_SPOT_POLL_SECONDS"
RECORD_GLOB = INTERRUPTION_RECORD_GLOB
_ACTION = "/latest/meta-data/spot/instance-action"
_TOKEN = "/latest/api/token"


class SpotSpec(BaseModel):
    """How the interruption watch behaves, and what a resumed run must reproduce.

    Attributes
    ----------
    metadata_url : str
        Base URL of the instance metadata service.
    poll_interval_seconds : float
        Time between two reads of ``spot/instance-action`` (AWS advises 5 s).
    save_deadline_seconds : float
        Longest time from seeing the notice to the checkpoint being saved and uploaded; the
        two-minute warning leaves room for it and the upload.
    token_ttl_seconds : int
        Lifetime asked for an IMDSv2 session token (1..21600).
    request_timeout_seconds : float
        Timeout of one metadata request.
    resume_metrics_atol : float
        How far a run resumed after an interruption may end from an uninterrupted run with
        the same seed, per final metric. A resumed run replays the same batches with the
        same weights, optimiser, scheduler and RNG states (all in the checkpoint); on CPU it
        agrees to float32 rounding, and the bound leaves room for that only (the same bound
        as the kill-and-resume test of the checkpoints).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    metadata_url: str = AWS_METADATA_URL
    poll_interval_seconds: float = Field(5.0, gt=0)
    save_deadline_seconds: float = Field(30.0, gt=0)
    token_ttl_seconds: int = Field(21600, ge=1, le=21600)
    request_timeout_seconds: float = Field(2.0, gt=0)
    resume_metrics_atol: float = Field(1e-4, ge=0)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SpotSpec | None:
        """The spec a provisioned VM asks for through its environment; ``None`` when the
        watch is not configured (a laptop, a local worker).

        >>> SpotSpec.from_env({}) is None
        True
        >>> SpotSpec.from_env({"ORDINAL_SPOT_INTERRUPTION": "1"}).metadata_url
        'http://169.254.169.254'
        >>> SpotSpec.from_env({"ORDINAL_METADATA_URL": "http://127.0.0.1:9/instance/i-1",
        ...                    "ORDINAL_SPOT_POLL_SECONDS": "0.5"}).poll_interval_seconds
        0.5
        """
        env = os.environ if environ is None else environ
        url = env.get(METADATA_URL_ENV, "").strip()
        enabled = env.get(SPOT_ENABLE_ENV, "").strip().lower() in ("1", "true", "yes")
        if not url and not enabled:
            return None
        values: dict[str, Any] = {"metadata_url": (url or AWS_METADATA_URL).rstrip("/")}
        if env.get(POLL_ENV):
            values["poll_interval_seconds"] = float(env[POLL_ENV])
        return cls(**values)


class StoreUpload:
    """The ``upload`` hook of a storage root: :func:`upload_checkpoint` to ``url``.

    The storage is opened when the hook runs (a boto3 client costs nothing until then), with
    the credentials of the usual AWS chain (the VM's instance profile).

    Attributes
    ----------
    url : str
        The root without credentials (what the interruption record shows).
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self.url = public_url(url)
        self._store: Any = None

    def __repr__(self) -> str:
        return f"StoreUpload({self.url!r})"

    def _open(self) -> Any:
        if self._store is None:
            from ordinal.artifacts import open_storage

            self._store = open_storage(self._url)
        return self._store

    def __call__(self, checkpoint: Path) -> dict[str, Any]:
        """Upload ``checkpoint`` (see :func:`upload_checkpoint`); return its report."""
        return upload_checkpoint(checkpoint, self._open())

    def put_record(self, path: Path) -> None:
        """Upload an interruption record beside the checkpoints (a failure is only logged:
        the checkpoint it describes is already complete in the store)."""
        try:
            upload_interruption_record(path, self._open())
        except Exception as exc:
            log.warning("interruption record %s not uploaded to %s: %s", path.name, self.url, exc)


class SpotInterruptionCallback(TrainerCallback):
    """Save, upload and stop on the spot two-minute warning (see the module docstring).

    Parameters
    ----------
    spec : SpotSpec
        Where to poll, how often, the save deadline.
    upload : callable or None
        ``checkpoint_dir -> dict or None``: copies the saved checkpoint where the next VM
        resumes from (:func:`~ordinal.training.checkpoint_store.upload_checkpoint` on a
        storage root); a dict it returns goes into the interruption record as ``upload``.
        An exception it raises becomes a :class:`~ordinal.exceptions.CheckpointError`.
    clock : callable
        Monotonic seconds; tests pass a fake one.

    Attributes
    ----------
    notice : dict or None
        The notice once seen.
    polls : int
        Reads of ``spot/instance-action`` so far.
    """

    def __init__(
        self,
        spec: SpotSpec | None = None,
        upload: Callable[[Path], dict[str, Any] | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec or SpotSpec()
        self.upload = upload
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.notice: dict[str, Any] | None = None
        self.noticed_at: float | None = None
        self.polls = 0
        self.errors = 0

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, **kwargs: Any
    ) -> SpotInterruptionCallback | None:
        """A callback when the environment configures one (:meth:`SpotSpec.from_env`).

        With ``ORDINAL_CHECKPOINT_UPLOAD_URL`` set (and no ``upload`` given) the checkpoint is
        uploaded to that storage root (:meth:`upload_to`).
        """
        spec = SpotSpec.from_env(environ)
        if spec is None:
            return None
        url = checkpoint_upload_url(environ)
        if url is not None and kwargs.get("upload") is None:
            kwargs["upload"] = cls.upload_to(url)
        return cls(spec, **kwargs)

    @staticmethod
    def upload_to(url: str) -> StoreUpload:
        """An ``upload`` hook that puts the checkpoint under the storage root ``url``."""
        return StoreUpload(url)

    # -- the metadata service --------------------------------------------------------------
    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str]:
        request = urllib.request.Request(
            self.spec.metadata_url + path, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self.spec.request_timeout_seconds
            ) as reply:
                return reply.status, reply.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def _session_token(self) -> str:
        if self._token is None or self._clock() >= self._token_expires:
            ttl = self.spec.token_ttl_seconds
            status, body = self._request(
                "PUT", _TOKEN, {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}
            )
            if status != 200 or not body:
                raise OSError(f"IMDSv2 token request answered {status}")
            # Renew a little early so a read never carries a token about to expire.
            self._token, self._token_expires = body.strip(), self._clock() + 0.9 * ttl
        return self._token

    def poll_once(self) -> dict[str, Any] | None:
        """Read ``spot/instance-action`` once: the notice, or ``None`` (``404``: no notice).

        A ``401`` (an expired or revoked token) gets a new token and one more read.
        """
        for _ in range(2):
            token = self._session_token()
            status, body = self._request("GET", _ACTION, {"X-aws-ec2-metadata-token": token})
            with self._lock:
                self.polls += 1
            if status == 401:
                self._token = None
                continue
            if status == 404:
                return None
            if status == 200:
                notice = json.loads(body)
                with self._lock:
                    if self.notice is None:
                        self.notice, self.noticed_at = notice, self._clock()
                return notice
            raise OSError(f"spot/instance-action answered {status}")
        raise OSError("the metadata service refused two fresh tokens")

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                if self.poll_once() is not None:
                    return
            except (OSError, ValueError) as exc:  # never fail training over a missed read
                self.errors += 1
                if self.errors == 1:
                    log.warning("spot interruption watch: %s (will keep polling)", exc)
            self._stop.wait(self.spec.poll_interval_seconds)

    # -- the Trainer's events --------------------------------------------------------------
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        self._stop.clear()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._watch, name="spot-watch", daemon=True)
            self._thread.start()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> TrainerControl:
        if self.notice is not None:
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        if self.notice is None:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        saved = self._clock()
        uploaded: dict[str, Any] | None = None
        failure: BaseException | None = None
        if self.upload is not None:
            try:
                uploaded = self.upload(checkpoint) or {}
            except Exception as exc:  # reported below, after the record is written
                failure = exc
        seconds = self._clock() - (self.noticed_at or saved)
        record: dict[str, Any] = {
            "notice": self.notice,
            "checkpoint": str(checkpoint),
            "step": int(state.global_step),
            "max_steps": int(state.max_steps),
            "seconds_to_save": round(seconds, 3),
            "save_deadline_seconds": self.spec.save_deadline_seconds,
            "polls": self.polls,
        }
        if self.upload is not None:
            where = getattr(self.upload, "url", None)
            upload = {"seconds": round(self._clock() - saved, 3)}
            if failure is not None:
                upload.update(url=where, error=f"{type(failure).__name__}: {failure}")
            else:
                upload.update({"url": where, **uploaded})
            record["upload"] = upload
        path = Path(args.output_dir) / f"spot-interruption-{state.global_step}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        self._stop.set()
        if failure is not None:
            raise CheckpointError(
                f"spot interruption at step {state.global_step}: {checkpoint} was saved but "
                f"could not be uploaded to {getattr(self.upload, 'url', None) or 'its store'} "
                f"({type(failure).__name__}: {failure}); it did not leave the VM"
            ) from failure
        if isinstance(self.upload, StoreUpload):
            # The record itself, now that it names the upload (the checkpoint is complete
            # without it: its marker was written before).
            self.upload.put_record(path)
        if seconds > self.spec.save_deadline_seconds:
            log.warning(
                "checkpoint after the spot notice took %.1f s (deadline %.0f s)",
                seconds,
                self.spec.save_deadline_seconds,
            )
        raise SpotInterruptedError(str(checkpoint), int(state.global_step), self.notice, seconds)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> None:
        self._stop.set()


def read_interruptions(checkpoint_dir: str | Path) -> list[dict[str, Any]]:
    """The interruption records a training output folder holds, by step."""
    found = []
    for path in Path(checkpoint_dir).glob(RECORD_GLOB):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda r: r.get("step", 0))
