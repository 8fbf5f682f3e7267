"""Cost per 1,000 training samples per VM class, checked against a rolling baseline.

After a run's VMs are destroyed, :func:`check_run_cost` sums their cost per instance class
and market (a run may hold two VMs of one class: a spot interruption, a fallback), divides
by the run's training sample count, and compares the result with the mean of the same
class and market over the last ``CostSpec.window`` runs. Beyond ``CostSpec.tolerance``
(+-5 % by default) it alerts: through the stack's channels (webhook, email) when given the
stack's config, else as a logged warning; either way the returned :class:`CostCheck` says
so. Every run then enters the history (deviating ones too, so the baseline follows a lasting
price change instead of alerting forever).

The history is one JSON document in the storage root (``costs/baseline.json``), rewritten
whole with each run: atomic on a local root (temporary file, then rename) and on S3 (one
PUT). Two runs finishing at the same instant may drop one entry of the history; the
baseline is a mean over many runs, so that costs a little precision, never a false alert
of its own.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.provision.errors import ProvisionError

__all__ = [
    "HISTORY_VERSION",
    "CostCheck",
    "CostError",
    "CostSpec",
    "baseline_of",
    "check_run_cost",
    "cost_per_thousand",
    "deviation",
    "exceeds",
    "load_history",
]

log = logging.getLogger(__name__)

HISTORY_VERSION = 1
# Deviations are compared after rounding to this many decimals, so that a cost exactly 5 %
# above its baseline (1.05 / 1.00 - 1 = 0.050000000000000044 in binary floating point) is
# exactly 5 %, and not an alert.
_DECIMALS = 9


class CostError(ProvisionError):
    """A VM record or sample count cannot give a cost per sample (names the culprit)."""


@dataclass(frozen=True)
class CostSpec:
    """How cost per sample is judged.

    Attributes
    ----------
    tolerance : float
        Relative deviation from the baseline that is still normal (0.05: +-5 %). A
        deviation strictly beyond it alerts; exactly at it does not.
    window : int
        The baseline is the mean of the last ``window`` runs of the same class and market.
    history_key : str
        Key of the history document in the storage root.
    """

    tolerance: float = 0.05
    window: int = 10
    history_key: str = "costs/baseline.json"

    def __post_init__(self) -> None:
        if not (0.0 < self.tolerance < 1.0):
            raise CostError(
                "tolerance must be between 0 and 1 (0.05 is +-5 %)", tolerance=self.tolerance
            )
        if self.window < 1:
            raise CostError("window must be at least one run", window=self.window)


@dataclass(frozen=True)
class CostCheck:
    """One class and market of one run, against its baseline.

    ``status`` is ``no-baseline`` (first run of the class and market: nothing to compare),
    ``ok`` (within tolerance) or ``deviates``. ``alerted`` is ``None`` when no alert was
    due, ``True`` when a channel accepted it, ``False`` when none did (only logged).
    """

    run_id: str
    instance_type: str
    market: str
    vms: int
    billed_seconds: int
    cost_usd: float
    samples: int
    cost_per_1k: float
    baseline_per_1k: float | None
    baseline_runs: int
    deviation: float | None
    tolerance: float
    status: str
    alerted: bool | None = None
    channels: dict[str, bool | None] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``<instance_type>/<market>``: the baseline this check belongs to."""
        return f"{self.instance_type}/{self.market}"

    def summary(self) -> str:
        """One line for a log, an alert or the run summary."""
        if self.deviation is None:
            return (
                f"{self.key}: ${self.cost_per_1k:.6f} per 1,000 samples "
                "(first run: no baseline yet)"
            )
        return (
            f"{self.key}: ${self.cost_per_1k:.6f} per 1,000 samples, "
            f"{self.deviation:+.2%} from the baseline ${self.baseline_per_1k:.6f} "
            f"(mean of {self.baseline_runs} run(s); tolerance +-{self.tolerance:.0%})"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (the run summary, MLflow)."""
        return asdict(self)


def cost_per_thousand(cost_usd: float, samples: int) -> float:
    """Cost of 1,000 training samples.

    >>> cost_per_thousand(0.5, 20_000)
    0.025
    """
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        raise CostError("the training sample count must be a positive integer", samples=samples)
    if not math.isfinite(cost_usd) or cost_usd < 0:
        raise CostError("a cost must be a finite, non-negative number", cost_usd=cost_usd)
    return cost_usd * 1000.0 / samples


def deviation(value: float, baseline: float) -> float:
    """Relative deviation of ``value`` from ``baseline``, rounded to nine decimals.

    >>> deviation(1.05, 1.0)
    0.05
    >>> deviation(0.9, 1.0)
    -0.1
    """
    if baseline <= 0:
        raise CostError("a baseline must be positive", baseline=baseline)
    return round((value - baseline) / baseline, _DECIMALS)


def exceeds(dev: float, tolerance: float) -> bool:
    """Whether a deviation is strictly beyond the tolerance, either way.

    >>> exceeds(0.05, 0.05), exceeds(-0.0501, 0.05), exceeds(0.0501, 0.05)
    (False, True, True)
    """
    return abs(dev) > round(tolerance, _DECIMALS)


def baseline_of(entries: list[Mapping[str, Any]], window: int) -> tuple[float | None, int]:
    """Mean ``cost_per_1k`` of the last ``window`` entries, and how many it used.

    >>> baseline_of([{"cost_per_1k": 1.0}, {"cost_per_1k": 2.0}, {"cost_per_1k": 4.0}], 2)
    (3.0, 2)
    >>> baseline_of([], 5)
    (None, 0)
    """
    last = entries[-window:]
    if not last:
        return None, 0
    return sum(float(e["cost_per_1k"]) for e in last) / len(last), len(last)


# --- records ------------------------------------------------------------------------------
def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _group(records: Iterable[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Sum cost and billed seconds per (instance type, market), in first-seen order."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for i, record in enumerate(records):
        itype, market = _field(record, "instance_type"), _field(record, "market")
        cost, billed = _field(record, "cost_usd"), _field(record, "billed_seconds")
        vm = _field(record, "instance_id") or f"record {i}"
        if not itype or not market:
            raise CostError("a VM record lacks its instance type or market", vm=vm)
        if cost is None:
            raise CostError(
                "a VM record has no cost yet (check cost after the VM is destroyed)",
                vm=vm,
                instance_type=itype,
                stage=_field(record, "stage"),
            )
        if not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
            raise CostError(
                "a VM record's cost_usd is not a non-negative number", vm=vm, cost_usd=cost
            )
        group = groups.setdefault((itype, market), {"cost_usd": 0.0, "billed_seconds": 0, "vms": 0})
        group["cost_usd"] += float(cost)
        group["billed_seconds"] += int(billed or 0)
        group["vms"] += 1
    return groups


# --- history ------------------------------------------------------------------------------
def _open(storage: Any) -> Any:
    if isinstance(storage, str):
        from ordinal.artifacts import open_storage

        return open_storage(storage)
    return storage


def load_history(storage: Any, spec: CostSpec | None = None) -> dict[str, list[dict[str, Any]]]:
    """The history per ``<instance_type>/<market>``, oldest first (empty when none yet)."""
    from ordinal.artifacts import ObjectNotFoundError

    spec = spec or CostSpec()
    store = _open(storage)
    try:
        if not store.exists(spec.history_key):
            return {}
        raw = store.get_bytes(spec.history_key)
    except ObjectNotFoundError:
        return {}
    try:
        data = json.loads(raw)
        entries = data["entries"]
        if data.get("version") != HISTORY_VERSION or not isinstance(entries, dict):
            raise ValueError("unknown version or layout")
    except (ValueError, KeyError, TypeError) as exc:
        raise CostError(
            "the cost history is not a history document this version reads",
            key=spec.history_key,
            storage=repr(store),
            reason=str(exc)[:200],
        ) from None
    return {str(k): list(v) for k, v in entries.items()}


def _save_history(storage: Any, spec: CostSpec, entries: dict[str, list[dict[str, Any]]]) -> None:
    doc = {"version": HISTORY_VERSION, "window": spec.window, "entries": entries}
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    storage.put_bytes(data, spec.history_key)


# --- alerting -----------------------------------------------------------------------------
AlertTarget = Any  # a pipelines.stack.config.StackConfig, or a callable taking a CostCheck


def _deliver(check: CostCheck, alert: AlertTarget) -> tuple[bool, dict[str, bool | None]]:
    log.warning("cost alert for run %s: %s", check.run_id, check.summary())
    if alert is None:
        return False, {}
    if callable(alert):
        return bool(alert(check)), {"callable": True}
    from pipelines.stack.alerts import Alert, send_alert

    delivery = send_alert(
        alert,
        Alert(
            kind="cost",
            summary=f"run {check.run_id}: cost per sample {check.deviation:+.1%} from baseline "
            f"on {check.key}",
            context={
                "run": check.run_id,
                "class": check.instance_type,
                "market": check.market,
                "cost per 1,000 samples": f"${check.cost_per_1k:.6f}",
                "baseline per 1,000 samples": f"${check.baseline_per_1k:.6f} "
                f"(mean of {check.baseline_runs} run(s))",
                "deviation": f"{check.deviation:+.2%} (tolerance +-{check.tolerance:.0%})",
                "cost": f"${check.cost_usd:.4f} for {check.samples} samples, "
                f"{check.billed_seconds} billed s on {check.vms} VM(s)",
            },
            severity="warning",
        ),
    )
    channels = {"webhook": delivery.webhook, "email": delivery.email}
    for error in delivery.errors:
        log.warning("cost alert for run %s not delivered: %s", check.run_id, error)
    return any(v is True for v in channels.values()), channels


def check_run_cost(
    records: Iterable[Any],
    samples: int,
    storage: Any,
    *,
    run_id: str,
    alert: AlertTarget = None,
    spec: CostSpec | None = None,
    now: Callable[[], dt.datetime] | None = None,
) -> list[CostCheck]:
    """Cost per 1,000 training samples of one run, per class and market, against the baseline.

    Parameters
    ----------
    records : iterable of VmRecord or dict
        The run's destroyed VMs (:class:`pipelines.provision.tofu.VmRecord` or its
        ``as_dict()``): ``instance_type``, ``market``, ``billed_seconds``, ``cost_usd``.
    samples : int
        Training samples the run processed (training-set size x epochs).
    storage : Storage or str
        The storage root (an ``ordinal.artifacts`` storage or its URL) holding the history
        at ``spec.history_key``; shared by the runs that form the baseline.
    run_id : str
        The run; a second check of the same run replaces its own entry (never counts twice).
    alert : StackConfig, callable or None
        The stack's config (alerts go to its webhook and email channels), a callable
        receiving the :class:`CostCheck` (returns whether it delivered), or ``None``: a
        deviation is then only logged as a warning and returned.
    spec : CostSpec or None
        Tolerance, window and history key.
    now : callable or None
        Clock for the entries' timestamps (tests).

    Returns
    -------
    list of CostCheck
        One per (instance type, market), in the order the records name them.
    """
    spec = spec or CostSpec()
    groups = _group(records)
    if not groups:
        return []
    store = _open(storage)
    history = load_history(store, spec)
    stamp = (now or (lambda: dt.datetime.now(dt.UTC)))().isoformat(timespec="seconds")
    checks: list[CostCheck] = []
    for (itype, market), group in groups.items():
        key = f"{itype}/{market}"
        per_1k = cost_per_thousand(group["cost_usd"], samples)
        previous = [e for e in history.get(key, []) if e.get("run_id") != run_id]
        base, used = baseline_of(previous, spec.window)
        dev = None if base is None else deviation(per_1k, base)
        if dev is None:
            status = "no-baseline"
        else:
            status = "deviates" if exceeds(dev, spec.tolerance) else "ok"
        check = CostCheck(
            run_id=run_id,
            instance_type=itype,
            market=market,
            vms=group["vms"],
            billed_seconds=group["billed_seconds"],
            cost_usd=group["cost_usd"],
            samples=samples,
            cost_per_1k=per_1k,
            baseline_per_1k=base,
            baseline_runs=used,
            deviation=dev,
            tolerance=spec.tolerance,
            status=status,
        )
        if status == "deviates":
            delivered, channels = _deliver(check, alert)
            check = CostCheck(**{**asdict(check), "alerted": delivered, "channels": channels})
        else:
            log.info("cost of run %s: %s", run_id, check.summary())
        checks.append(check)
        entry = {
            "run_id": run_id,
            "cost_per_1k": per_1k,
            "cost_usd": group["cost_usd"],
            "samples": samples,
            "billed_seconds": group["billed_seconds"],
            "recorded_at": stamp,
        }
        history[key] = [*previous, entry][-spec.window :]
    _save_history(store, spec, history)
    return checks
