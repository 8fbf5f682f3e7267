"""Drive ``tofu`` (preferred) or ``terraform`` for one root module and one state key.

* The binary: ``tofu`` when it is on PATH, else ``terraform`` (``ORDINAL_TF_BINARY``
  overrides).
* Providers come from a filesystem mirror only: the runner writes a CLI config of its own
  (``TF_CLI_CONFIG_FILE``) naming ``ORDINAL_TF_MIRROR`` (default ``/opt/tf-plugins``). For
  OpenTofu, whose default registry host is ``registry.opentofu.org``, it adds a shadow
  mirror of symlinks so the same provider package serves both tools.
* State lives in S3 with a lock file beside it (``use_lockfile``), one key per run and VM.
* The module tree is copied into the work folder, so an installed (read-only) package and
  concurrent runs never write into ``tofu/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ordinal.paths import project_file
from pipelines.provision.errors import ToolError

__all__ = [
    "TOFU_ROOT",
    "Backend",
    "ProviderError",
    "TofuResult",
    "TofuRunner",
    "find_binary",
    "first_error",
    "parse_provider_errors",
    "write_cli_config",
]

# The checkout's tofu/ (editable install, tests) or the installed copy under share/ordinal/.
TOFU_ROOT = project_file("tofu")
DEFAULT_MIRROR = "/opt/tf-plugins"
#: How long apply and destroy wait for another holder of a state's lock.
LOCK_TIMEOUT = "120s"
# "api error InsufficientInstanceCapacity: We currently do not have ..." (AWS SDK v2 errors as
# Terraform's AWS provider prints them).
_API_ERROR = re.compile(r"api error ([A-Za-z][A-Za-z0-9.]*): (.+)")


def find_binary() -> str:
    """``tofu`` when on PATH, else ``terraform``; ``ORDINAL_TF_BINARY`` wins."""
    explicit = os.environ.get("ORDINAL_TF_BINARY")
    if explicit:
        return explicit
    for name in ("tofu", "terraform"):
        path = shutil.which(name)
        if path:
            return path
    raise ToolError("neither tofu nor terraform is on PATH; see docs/infrastructure.md")


def write_cli_config(folder: Path, binary: str, mirror: str | None = None) -> Path:
    """Write a CLI config with a filesystem mirror and no network; return its path."""
    mirror_path = Path(mirror or os.environ.get("ORDINAL_TF_MIRROR", DEFAULT_MIRROR))
    if not mirror_path.is_dir():
        raise ToolError(f"provider mirror {mirror_path} does not exist", mirror=str(mirror_path))
    folder.mkdir(parents=True, exist_ok=True)
    paths = [mirror_path]
    if Path(binary).name.startswith("tofu"):
        shadow = folder / "mirror-opentofu"
        for source in sorted(mirror_path.glob("registry.terraform.io/*/*")):
            link = shadow / "registry.opentofu.org" / source.parent.name / source.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(source, target_is_directory=True)
        paths.append(shadow)
    blocks = "\n".join(f'  filesystem_mirror {{\n    path = "{p}"\n  }}' for p in paths)
    text = (
        "# written by pipelines.provision.runner: providers from the local mirror only\n"
        f'provider_installation {{\n{blocks}\n  direct {{\n    exclude = ["*/*/*"]\n  }}\n}}\n'
    )
    path = folder / "cli.tfrc"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class Backend:
    """Where a root's state lives: an S3 bucket and key, locked with a lock object."""

    bucket: str
    key: str
    region: str = "us-east-1"
    endpoint: str | None = None  # an S3-compatible endpoint (the emulator); None for AWS

    def config(self) -> dict[str, Any]:
        """``-backend-config`` values."""
        out: dict[str, Any] = {
            "bucket": self.bucket,
            "key": self.key,
            "region": self.region,
            "use_lockfile": True,
            "encrypt": True,
        }
        if self.endpoint:
            out.update(
                endpoints={"s3": self.endpoint},
                use_path_style=True,
                skip_credentials_validation=True,
                skip_requesting_account_id=True,
                skip_metadata_api_check=True,
                skip_region_validation=True,
            )
        return out


@dataclass(frozen=True)
class ProviderError:
    """One error the cloud API returned, as the provider printed it."""

    code: str
    message: str


@dataclass
class TofuResult:
    """What one command did."""

    command: str
    returncode: int
    seconds: float
    output: str
    errors: list[ProviderError] = field(default_factory=list)
    stdout: str = ""

    @property
    def ok(self) -> bool:
        """Exit status 0."""
        return self.returncode == 0


def parse_provider_errors(text: str) -> list[ProviderError]:
    """The AWS API errors (code, message) in terraform's output, in order, deduplicated."""
    seen: list[ProviderError] = []
    for match in _API_ERROR.finditer(text):
        error = ProviderError(match.group(1), match.group(2).strip())
        if error not in seen:
            seen.append(error)
    return seen


def _hcl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_hcl_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    return json.dumps(value)


class TofuRunner:
    """One root module (``envs/<env>/<root>``) in a work folder of its own.

    Parameters
    ----------
    root : str
        Path of the root under ``tofu/``, e.g. ``envs/emulated/compute``.
    work_dir : Path
        Holds the copy of ``tofu/``, the data dir, the CLI config, variables and logs.
    backend : Backend or None
        The S3 state; ``None`` keeps local state (only ``check`` does that).
    env : dict or None
        Extra environment (credentials for the emulator: never logged).
    """

    def __init__(
        self,
        root: str,
        work_dir: Path,
        backend: Backend | None = None,
        env: dict[str, str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.root = root
        self.work_dir = Path(work_dir)
        self.backend = backend
        self.extra_env = dict(env or {})
        self.binary = binary or find_binary()
        self.log_path = self.work_dir / "tofu.log"
        self._initialised = False

    @property
    def code_dir(self) -> Path:
        """The root's folder inside the work copy of ``tofu/``."""
        return self.work_dir / "tofu" / self.root

    def _prepare(self) -> None:
        copy = self.work_dir / "tofu"
        if not (copy / self.root).is_dir():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            shutil.copytree(
                TOFU_ROOT,
                copy,
                ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
                dirs_exist_ok=True,
            )
        if not (TOFU_ROOT / self.root).is_dir():
            raise ToolError(f"no root module {self.root!r} under {TOFU_ROOT}")

    def env(self) -> dict[str, str]:
        """The environment terraform runs with (no network for providers, no prompts)."""
        env = dict(os.environ)
        env.update(self.extra_env)
        env.update(
            TF_CLI_CONFIG_FILE=str(write_cli_config(self.work_dir, self.binary)),
            TF_DATA_DIR=str(self.work_dir / "data"),
            TF_IN_AUTOMATION="1",
            TF_INPUT="0",
            CHECKPOINT_DISABLE="1",
        )
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 900.0) -> TofuResult:
        """Run ``<binary> -chdir=<root> args...`` and log its output.

        Raises :class:`ToolError` on a non-zero exit when ``check`` is true.
        """
        self._prepare()
        argv = [self.binary, f"-chdir={self.code_dir}", *args]
        started = time.monotonic()
        proc = subprocess.run(
            argv,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        seconds = time.monotonic() - started
        output = proc.stdout + proc.stderr
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(
                f"$ {Path(self.binary).name} {' '.join(args)}  "
                f"({seconds:.1f} s, rc {proc.returncode})\n"
            )
            log.write(output)
            log.write("\n")
        result = TofuResult(
            args[0], proc.returncode, seconds, output, parse_provider_errors(output), proc.stdout
        )
        if check and not result.ok:
            raise ToolError(
                f"{Path(self.binary).name} {args[0]} failed",
                root=self.root,
                log=str(self.log_path),
                error=_first_error(output),
            )
        return result

    def init(self) -> TofuResult:
        """``init`` with the S3 backend (idempotent; quick when already initialised)."""
        args = ["init", "-input=false", "-no-color", "-reconfigure"]
        self._prepare()
        if self.backend is not None:
            path = self.work_dir / "backend.hcl"
            text = "".join(f"{k} = {_hcl_value(v)}\n" for k, v in self.backend.config().items())
            path.write_text(text, encoding="utf-8")
            args.append(f"-backend-config={path}")
        else:
            args.append("-backend=false")
        result = self.run(*args)
        self._initialised = True
        return result

    def _var_file(self, variables: dict[str, Any]) -> str:
        path = self.work_dir / "vars.tfvars.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(variables, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
        return f"-var-file={path}"

    def apply(self, variables: dict[str, Any], check: bool = True) -> TofuResult:
        """``apply -auto-approve`` with ``variables``."""
        if not self._initialised:
            self.init()
        return self.run(
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            # A shared root (the stack's platform) may be applied by two runs at once: wait
            # for the other's state lock rather than fail.
            f"-lock-timeout={LOCK_TIMEOUT}",
            self._var_file(variables),
            check=check,
        )

    def destroy(self, variables: dict[str, Any], check: bool = True) -> TofuResult:
        """``destroy -auto-approve`` (idempotent: an empty state destroys nothing)."""
        if not self._initialised:
            self.init()
        return self.run(
            "destroy",
            "-auto-approve",
            "-input=false",
            "-no-color",
            f"-lock-timeout={LOCK_TIMEOUT}",
            self._var_file(variables),
            check=check,
        )

    def plan_json(self, variables: dict[str, Any]) -> dict[str, Any]:
        """``plan -out`` then ``show -json``: the plan as JSON (what checkov reads)."""
        if not self._initialised:
            self.init()
        plan = self.work_dir / "plan.tfplan"
        self.run("plan", "-input=false", "-no-color", self._var_file(variables), f"-out={plan}")
        shown = self.run("show", "-json", str(plan))
        return json.loads(shown.stdout)

    def outputs(self) -> dict[str, Any]:
        """``output -json`` values."""
        result = self.run("output", "-json", "-no-color")
        return {k: v["value"] for k, v in json.loads(result.stdout or "{}").items()}


def first_error(output: str) -> str:
    """The first ``Error:`` block of terraform's output (summary and detail), one line."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("Error:"):
            block = [line.strip()]
            for following in lines[i + 1 : i + 8]:
                text = following.strip().strip("│").strip()
                if not text or text.startswith("with ") or text.startswith("on "):
                    if len(block) > 1 or not text:
                        break
                    continue
                block.append(text)
            return " ".join(block)[:800]
    return _first_error(output)


def _first_error(output: str) -> str:
    for line in output.splitlines():
        if line.strip().startswith("Error:") or "api error" in line:
            return line.strip()[:500]
    tail = [line for line in output.splitlines() if line.strip()]
    return tail[-1][:500] if tail else "(no output)"
