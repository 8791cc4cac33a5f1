"""The app's SLOs and their burn-rate alerts as one component (rendering/slos.py builds their arguments)."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_datadog as datadog

from components.base import Component
from rendering.slos import SLO_BUILDERS, SlosArgs, burn_rate_monitor, burn_rate_query


class ServiceLevelObjectives(Component):
    """The app's availability and latency SLOs and each one's burn-rate alerts; `ids` maps each
    SLO to its id, `alert_ids` each alert (`availabilityPageFast`, ...) to its monitor's id."""

    def __init__(self, name: str, args: SlosArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        child, timeframe = self.child, args.slos.timeframe
        self.ids: dict[str, pulumi.Output[str]] = {}
        self.alert_ids: dict[str, pulumi.Output[str]] = {}
        for slo_key, build in SLO_BUILDERS.items():
            slo = datadog.ServiceLevelObjective(f"{name}-{slo_key}", build(args), opts=child)
            self.ids[slo_key] = slo.id
            for alert_key, (alert, severity) in args.slos.alerts.items():
                query = slo.id.apply(lambda slo_id, alert=alert: burn_rate_query(slo_id, timeframe, alert))
                burn = datadog.Monitor(f"{name}-{slo_key}-burn-{alert_key.lower()}",
                                       burn_rate_monitor(args, slo_key, query, alert, severity), opts=child)
                self.alert_ids[args.alert_key(slo_key, alert_key)] = burn.id
        self.register_outputs({"ids": self.ids, "alertIds": self.alert_ids})
