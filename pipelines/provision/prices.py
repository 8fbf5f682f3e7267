"""The committed price table (``deploy/prices.yaml``) and a VM's cost from billed seconds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ordinal.paths import project_file
from pipelines.provision.errors import ProvisionError

__all__ = ["PRICES_FILE", "PriceTable", "load_prices"]

PRICES_FILE = project_file("deploy", "prices.yaml")
MARKETS = ("on-demand", "spot")


@dataclass(frozen=True)
class PriceTable:
    """Hourly prices per region, class and market, with their date and source."""

    date: str
    source: str
    currency: str
    minimum_seconds: int
    prices: dict[str, dict[str, dict[str, float]]]

    def hourly(self, region: str, instance_type: str, market: str) -> float:
        """USD per hour; a typed error names what is missing."""
        try:
            return float(self.prices[region][instance_type][market])
        except KeyError:
            raise ProvisionError(
                "no price for this VM in the price table",
                file=str(PRICES_FILE),
                region=region,
                instance_type=instance_type,
                market=market,
            ) from None

    def billed_seconds(self, seconds: float) -> int:
        """Per-second billing rounded up, with the minimum charge.

        >>> PriceTable("d", "s", "USD", 60, {}).billed_seconds(12.2)
        60
        >>> PriceTable("d", "s", "USD", 60, {}).billed_seconds(61.1)
        62
        """
        return max(self.minimum_seconds, math.ceil(seconds))

    def cost(self, region: str, instance_type: str, market: str, seconds: float) -> float:
        """Billed seconds x hourly price / 3600, in the table's currency.

        >>> t = PriceTable("d", "s", "USD", 60, {"r": {"c6i.xlarge": {"on-demand": 0.18}}})
        >>> round(t.cost("r", "c6i.xlarge", "on-demand", 3600), 4)
        0.18
        """
        return self.billed_seconds(seconds) * self.hourly(region, instance_type, market) / 3600.0


def load_prices(path: Path | None = None) -> PriceTable:
    """Read and validate the price table."""
    path = Path(path or PRICES_FILE)
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("date", "source", "regions"):
        if key not in data:
            raise ProvisionError("price table lacks a field", file=str(path), field=key)
    prices: dict[str, dict[str, dict[str, float]]] = {}
    for region, classes in data["regions"].items():
        for itype, markets in classes.items():
            for market in MARKETS:
                value = markets.get(market)
                if not isinstance(value, int | float) or value <= 0:
                    raise ProvisionError(
                        "price must be a positive number",
                        file=str(path),
                        field=f"regions.{region}.{itype}.{market}",
                    )
            prices.setdefault(region, {})[itype] = {m: float(markets[m]) for m in MARKETS}
    billing = data.get("billing", {})
    return PriceTable(
        date=str(data["date"]),
        source=str(data["source"]),
        currency=str(data.get("currency", "USD")),
        minimum_seconds=int(billing.get("minimum_seconds", 60)),
        prices=prices,
    )
