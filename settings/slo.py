"""What Datadog accepts for an SLO and its burn-rate alerts, and the burn-rate setting's kind.

What Datadog accepts (docs: Service Level Objectives, Burn Rate Alerts; the provider's
`datadog_service_level_objective`):
* a target in (0, 100) over a 7, 30 or 90-day timeframe (`custom` exists, but no SLO alert
  can be set on it);
* a burn-rate alert `burn_rate("<slo>").over("<timeframe>").long_window("<L>").short_window("<S>") > <rate>`
  with 1 h <= L <= 48 h, S < L, and 0 < rate <= 1 / (1 - target): above that the alert could
  never fire, and Datadog refuses to create it.

A burn-rate alert is a setting written `<rate>x <long>/<short>`, e.g. `14.4x 1h/5m`
(windows in m, h or d).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from settings.declare import Invalid, Kind

SLO_TIMEFRAMES = ("7d", "30d", "90d")
TIMEFRAME_HOURS = {"7d": 7 * 24, "30d": 30 * 24, "90d": 90 * 24}
LONG_WINDOW_MINUTES = (60, 48 * 60)
_UNITS = {"m": 1, "h": 60, "d": 1440}
BURN_RATE_SPEC = re.compile(r"(\d+(?:\.\d+)?)x (\d+)([mhd])/(\d+)([mhd])")
BURN_RATE_ALLOWED = "must be `<rate>x <long window>/<short window>`, such as `14.4x 1h/5m`"


@dataclass(frozen=True)
class BurnRate:
    """One multi-window burn-rate alert: `rate` over both windows (minutes)."""
    rate: float
    long_minutes: int
    short_minutes: int

    @staticmethod
    def window(minutes: int) -> str:
        """Datadog's window string: whole hours as `<n>h`, else minutes."""
        return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"

    @property
    def long(self) -> str:
        return self.window(self.long_minutes)

    @property
    def short(self) -> str:
        return self.window(self.short_minutes)

    def budget_spent_percent(self, timeframe: str) -> float:
        """The error budget this burn spends over its long window (Datadog's "approach #2")."""
        return self.rate * self.long_minutes / 60 / TIMEFRAME_HOURS[timeframe] * 100

    def __str__(self) -> str:  # as the setting is written (the docs' default column)
        return f"{self.rate:g}x {self.long}/{self.short}"


def parse_burn_rate(raw: str) -> BurnRate:
    match = BURN_RATE_SPEC.fullmatch(raw.strip())
    if match is None:
        raise Invalid(BURN_RATE_ALLOWED)
    rate = float(match[1])
    long_minutes = int(match[2]) * _UNITS[match[3]]
    short_minutes = int(match[4]) * _UNITS[match[5]]
    if rate <= 0:
        raise Invalid("its rate must be above 0")
    if not LONG_WINDOW_MINUTES[0] <= long_minutes <= LONG_WINDOW_MINUTES[1]:
        raise Invalid("its long window must be 1 hour to 48 hours (what Datadog accepts)")
    if not 0 < short_minutes < long_minutes:
        raise Invalid("its short window must be shorter than its long window")
    return BurnRate(rate, long_minutes, short_minutes)


def max_burn_rate(target_percent: float) -> float:
    """The highest burn rate an SLO of this target can show: every event bad."""
    return 1 / (1 - target_percent / 100)


@dataclass(frozen=True)
class BurnRateKind(Kind[BurnRate]):
    def describe(self) -> str:
        return "`<rate>x <long>/<short>`, long 1h–48h"

    def parse(self, key: str, raw: str) -> BurnRate:
        return parse_burn_rate(raw)
