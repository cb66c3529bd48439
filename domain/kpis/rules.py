"""The KPIs' names, thresholds and default owners (read by settings and the KPI service)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

TIMELINESS = "ORDER_TIMELINESS"
STOCK_ACCURACY = "STOCK_ACCURACY"
COMPLETENESS = "CUSTOMER_COMPLETENESS"
HANDLING = "HANDLING_SECONDS"
RETURN_RATE = "RETURN_RATE"
KPIS = (TIMELINESS, STOCK_ACCURACY, COMPLETENESS)
MAX_DAYS = 366
BREACH_DAYS = 3


@dataclass(frozen=True)
class Thresholds:
    """Percent minimums, settings `ORDERGATE_KPI_*_MIN`."""

    timeliness: Decimal = Decimal("95")
    stock_accuracy: Decimal = Decimal("98")
    completeness: Decimal = Decimal("90")

    def of(self, name: str) -> Decimal:
        return {
            TIMELINESS: self.timeliness,
            STOCK_ACCURACY: self.stock_accuracy,
            COMPLETENESS: self.completeness,
        }[name]


# Who gets the task when a KPI slips three days running, unless a person is configured.
DEFAULT_ASSIGNEES = {TIMELINESS: "ops", STOCK_ACCURACY: "warehouse", COMPLETENESS: "cs"}
