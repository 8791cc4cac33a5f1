"""The app's SLOs and their multi-window burn-rate alerts, as provider arguments.

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

Each SLO has the SRE workbook's pairs (settings.stack.SloSettings, limits in settings/slo.py):
two that page (fast, slow) and a ticket for a slow burn over the longest pair Datadog accepts
(48 h / 4 h), each notifying its own handles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi_datadog as datadog

from rendering.monitors import Audience, monitor
from rendering.queries import number
from settings.naming import Naming
from settings.slo import BurnRate
from settings.stack import MonitorSettings, SloSettings

REQUEST = "trace.flask.request"
SLICE_SECONDS = 300
SLOS = ("availability", "latency")


@dataclass(frozen=True)
class SlosArgs:
    naming: Naming
    slos: SloSettings
    monitors: MonitorSettings  # the footer and no-data timeframe every monitor shares

    @property
    def service(self) -> str:
        return self.naming.service

    def audience(self, severity: str) -> Audience:
        """Who hears of a burn: the page handles for a page, the ticket handles for a ticket."""
        handles = self.slos.page_handles if severity == "page" else self.slos.ticket_handles
        return Audience.of(self.naming, self.monitors, handles=handles)

    def alert_key(self, slo: str, alert: str) -> str:
        """The `monitorIds` key of an SLO's burn-rate alert: `availabilityPageFast`, ..."""
        return f"{slo}{alert[0].upper()}{alert[1:]}"


def availability_slo(args: SlosArgs) -> datadog.ServiceLevelObjectiveArgs:
    naming, s = args.naming, args.slos
    hits = f"sum:{REQUEST}.hits{{{naming.trace_scope}}}.as_count()"
    errors = f"sum:{REQUEST}.errors{{{naming.trace_scope}}}.as_count()"
    return datadog.ServiceLevelObjectiveArgs(
        name=naming.title(f"{args.service} availability"),
        type="metric",
        description=(f"Requests to {args.service} ({naming.env}) that do not fail with a server error, "
                     f"{number(s.availability_target)}% over {s.timeframe}."),
        query=datadog.ServiceLevelObjectiveQueryArgs(numerator=f"{hits} - {errors}", denominator=hits),
        thresholds=[datadog.ServiceLevelObjectiveThresholdArgs(timeframe=s.timeframe, target=s.availability_target)],
        timeframe=s.timeframe, target_threshold=s.availability_target,
        tags=list(naming.datadog_tags()))


def latency_slo(args: SlosArgs) -> datadog.ServiceLevelObjectiveArgs:
    naming, s = args.naming, args.slos
    return datadog.ServiceLevelObjectiveArgs(
        name=naming.title(f"{args.service} latency"),
        type="time_slice",
        description=(f"5-minute slices in which the p95 latency of {args.service} ({naming.env}) is at most "
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
                            name="query1", data_source="metrics", query=f"p95:{REQUEST}{{{naming.trace_scope}}}"))]))),
        thresholds=[datadog.ServiceLevelObjectiveThresholdArgs(timeframe=s.timeframe, target=s.latency_target)],
        timeframe=s.timeframe, target_threshold=s.latency_target,
        tags=list(naming.datadog_tags()))


SLO_BUILDERS = {"availability": availability_slo, "latency": latency_slo}


def burn_rate_query(slo_id: str, timeframe: str, alert: BurnRate) -> str:
    return (f'burn_rate("{slo_id}").over("{timeframe}").long_window("{alert.long}")'
            f'.short_window("{alert.short}") > {number(alert.rate)}')


def burn_rate_monitor(args: SlosArgs, slo: str, query: Any, alert: BurnRate, severity: str) -> datadog.MonitorArgs:
    """`query`: burn_rate_query of the SLO's id (the engine's output of it, in the component)."""
    to, timeframe = args.audience(severity), args.slos.timeframe
    slo_name = f"{args.service} {slo}"
    rate = number(alert.rate)
    spent = f"{alert.budget_spent_percent(timeframe):.3g}%"
    action = ("Page: the error budget is burning fast enough to be gone well before the window ends."
              if severity == "page" else "Ticket: a slow, steady burn; look at it in working hours.")
    return monitor(
        to, "slo alert",
        name=f"{slo_name} SLO burning {rate}x over {alert.long} and {alert.short} ({severity})",
        query=query,
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=rate),
        notify_no_data=False,
        summary=f"{slo_name} SLO ({to.env}): burn rate above {rate}x",
        sections={
            "is_alert": (f"The {slo_name} SLO burns its {timeframe} error budget at {{{{value}}}}x, above {rate}x "
                         f"over both the last {alert.long} and the last {alert.short} ({spent} of the budget "
                         f"in {alert.long} at this rate). {action}"),
            "is_recovery": f"The {slo_name} SLO burn rate is back below {rate}x.",
        })
