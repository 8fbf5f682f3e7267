"""Spot interruption: watch the instance metadata service's two-minute warning during training.

On a spot VM, EC2 announces a reclaim two minutes ahead at
``{base}/latest/meta-data/spot/instance-action`` (``404`` until then; then
``{"action": "terminate", "time": "..."}``), where ``base`` is the instance metadata service,
``http://169.254.169.254`` on AWS. IMDSv2 is required on the project's VMs: every read carries
a session token from ``PUT {base}/latest/api/token``.

:class:`SpotInterruptionCallback` polls that document from a background thread (AWS advises
every 5 s). On a notice it has the Trainer save a checkpoint at the end of the current step
(into ``output_dir``, where a rerun of the train step resumes from), calls an optional
``upload`` hook with the checkpoint folder, writes ``spot-interruption-<step>.json`` beside
the checkpoints, and raises :class:`ordinal.exceptions.SpotInterruptedError` so the step fails
with a typed error that the pipeline answers by resuming on a fresh VM.

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

from ordinal.exceptions import SpotInterruptedError

__all__ = [
    "AWS_METADATA_URL",
    "METADATA_URL_ENV",
    "SPOT_ENABLE_ENV",
    "SpotInterruptionCallback",
    "SpotSpec",
    "read_interruptions",
]

log = logging.getLogger(__name__)

AWS_METADATA_URL = "http://169.254.169.254"
METADATA_URL_ENV = "ORDINAL_METADATA_URL"
SPOT_ENABLE_ENV = "ORDINAL_SPOT_INTERRUPTION"
POLL_ENV = "ORDINAL_SPOT_POLL_SECONDS"
RECORD_GLOB = "spot-interruption-*.json"
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


class SpotInterruptionCallback(TrainerCallback):
    """Save, upload and stop on the spot two-minute warning (see the module docstring).

    Parameters
    ----------
    spec : SpotSpec
        Where to poll, how often, the save deadline.
    upload : callable or None
        ``checkpoint_dir -> None``: copies the saved checkpoint where the next VM resumes
        from, when that is not the (shared) output folder itself.
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
        upload: Callable[[Path], None] | None = None,
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
    def from_env(cls, **kwargs: Any) -> SpotInterruptionCallback | None:
        """A callback when the environment configures one (:meth:`SpotSpec.from_env`)."""
        spec = SpotSpec.from_env()
        return None if spec is None else cls(spec, **kwargs)

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
        if self.upload is not None:
            self.upload(checkpoint)
        seconds = self._clock() - (self.noticed_at or self._clock())
        record = {
            "notice": self.notice,
            "checkpoint": str(checkpoint),
            "step": int(state.global_step),
            "max_steps": int(state.max_steps),
            "seconds_to_save": round(seconds, 3),
            "save_deadline_seconds": self.spec.save_deadline_seconds,
            "polls": self.polls,
        }
        path = Path(args.output_dir) / f"spot-interruption-{state.global_step}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        self._stop.set()
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
