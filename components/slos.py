"""The app's SLOs and their multi-window burn-rate alerts.

* Availability, metric-based: good = hits - errors over hits, from the app's trace metrics
  (`trace.flask.request.hits` / `.errors`: a 5xx is an error; a refused lookup, 4xx, is not).
* Latency, time-slice: a 5-minute slice is good when the p95 of `trace.flask.request` is within
  `sloLatencySeconds`. Chosen over a monitor-based SLO on the p95 monitor: it needs no monitor
  to keep in step with the SLO, treats a slice without traffic as good (an idle dev app at night
  spends no budget; a monitor-based SLO follows its monitor's no-data handling), keeps 15 months
  of history instead of 3, and supports the same burn-rate alerts.

The raw p95 and error-rate monitors are retired: they paged on a 5-minute blip and said nothing
about the budget; the fast burn (default 14.4x over 1 h and 5 min) pages on what matters within
minutes, and the SLO widgets show the rest.

Each SLO has the SRE workbook's pairs (components/slo_settings.py): two that page (fast, slow)
and a ticket for a slow burn over the longest pair Datadog accepts (48 h / 4 h), each
notifying its own handles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_datadog as datadog

from components.datadog_common import number
from components.monitors import Audience, monitor
from components.slo_settings import BurnRate, SloSettings

REQUEST = "trace.flask.request"
SLICE_SECONDS = 300


@dataclass(frozen=True)
class SlosArgs:
    service: str
    slos: SloSettings


def _scope(to: Audience, service: str) -> str:
    return f"service:{service},env:{to.env}"


def availability_slo(to: Audience, args: SlosArgs) -> datadog.ServiceLevelObjectiveArgs:
    scope, s = _scope(to, args.service), args.slos
    hits = f"sum:{REQUEST}.hits{{{scope}}}.as_count()"
    errors = f"sum:{REQUEST}.errors{{{scope}}}.as_count()"
    return datadog.ServiceLevelObjectiveArgs(
        name=f"[{to.env}] {args.service} availability",
        type="metric",
        description=(f"Requests to {args.service} ({to.env}) that do not fail with a server error, "
                     f"{number(s.availability_target)}% over {s.timeframe}."),
        query=datadog.ServiceLevelObjectiveQueryArgs(numerator=f"{hits} - {errors}", denominator=hits),
        thresholds=[datadog.ServiceLevelObjectiveThresholdArgs(timeframe=s.timeframe, target=s.availability_target)],
        timeframe=s.timeframe, target_threshold=s.availability_target,
        tags=list(to.tags))


def latency_slo(to: Audience, args: SlosArgs) -> datadog.ServiceLevelObjectiveArgs:
    scope, s = _scope(to, args.service), args.slos
    return datadog.ServiceLevelObjectiveArgs(
        name=f"[{to.env}] {args.service} latency",
        type="time_slice",
        description=(f"5-minute slices in which the p95 latency of {args.service} ({to.env}) is at most "
                     f"{number(s.latency_seconds)} s, {number(s.latency_target)}% over {s.timeframe}; "
                     "a slice without requests counts as good."),
        sli_specification=datadog.ServiceLevelObjectiveSliSpecificationArgs(
            time_slice=datadog.ServiceLevelObjectiveSliSpecificationTimeSliceArgs(
                comparator="<=", threshold=s.latency_seconds, query_interval_seconds=SLICE_SECONDS,
                query=datadog.ServiceLevelObjectiveSliSpecificationTimeSliceQueryArgs(
                    formula=datadog.ServiceLevelObjectiveSliSpecificationTimeSliceQueryFormulaArgs(
                        formula_expression="query1"),
                    queries=[datadog.ServiceLevelObjectiveSliSpecificationTimeSliceQueryQueryArgs(
                        metric_query=datadog.ServiceLevelObjectiveSliSpecificationTimeSliceQueryQueryMetricQueryArgs(
                            name="query1", data_source="metrics", query=f"p95:{REQUEST}{{{scope}}}"))]))),
        thresholds=[datadog.ServiceLevelObjectiveThresholdArgs(timeframe=s.timeframe, target=s.latency_target)],
        timeframe=s.timeframe, target_threshold=s.latency_target,
        tags=list(to.tags))


def burn_rate_query(slo_id: str, timeframe: str, alert: BurnRate) -> str:
    return (f'burn_rate("{slo_id}").over("{timeframe}").long_window("{alert.long}")'
            f'.short_window("{alert.short}") > {number(alert.rate)}')


def burn_rate_monitor(to: Audience, slo_name: str, slo_id: pulumi.Input[str], timeframe: str,
                      alert: BurnRate, severity: str) -> datadog.MonitorArgs:
    rate = number(alert.rate)
    spent = f"{alert.budget_spent_percent(timeframe):.3g}%"
    action = ("Page: the error budget is burning fast enough to be gone well before the window ends."
              if severity == "page" else "Ticket: a slow, steady burn; look at it in working hours.")
    return monitor(
        to, "slo alert",
        name=f"{slo_name} SLO burning {rate}x over {alert.long} and {alert.short} ({severity})",
        query=pulumi.Output.from_input(slo_id).apply(lambda i: burn_rate_query(i, timeframe, alert)),
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=rate),
        notify_no_data=False,
        summary=f"{slo_name} SLO ({to.env}): burn rate above {rate}x",
        sections={
            "is_alert": (f"The {slo_name} SLO burns its {timeframe} error budget at {{{{value}}}}x, above {rate}x "
                         f"over both the last {alert.long} and the last {alert.short} ({spent} of the budget "
                         f"in {alert.long} at this rate). {action}"),
            "is_recovery": f"The {slo_name} SLO burn rate is back below {rate}x.",
        })


class ServiceLevelObjectives(pulumi.ComponentResource):
    """The app's availability and latency SLOs and each one's burn-rate alerts."""

    def __init__(self, name: str, args: SlosArgs, page: Audience, ticket: Audience,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:datadog:ServiceLevelObjectives", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.availability = datadog.ServiceLevelObjective(f"{name}-availability", availability_slo(page, args),
                                                          opts=child)
        self.latency = datadog.ServiceLevelObjective(f"{name}-latency", latency_slo(page, args), opts=child)
        self.ids = {"availability": self.availability.id, "latency": self.latency.id}
        self.alert_ids: dict[str, pulumi.Output[str]] = {}
        for slo_key, slo in (("availability", self.availability), ("latency", self.latency)):
            for alert_key, (alert, severity) in args.slos.alerts.items():
                to = page if severity == "page" else ticket
                key = f"{slo_key}{alert_key[0].upper()}{alert_key[1:]}"
                burn = datadog.Monitor(
                    f"{name}-{slo_key}-burn-{alert_key.lower()}",
                    burn_rate_monitor(to, f"{args.service} {slo_key}", slo.id, args.slos.timeframe, alert, severity),
                    opts=child)
                self.alert_ids[key] = burn.id
        self.register_outputs({"ids": self.ids, "alertIds": self.alert_ids})
