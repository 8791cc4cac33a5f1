"""The two dashboards of the exercise, scoped to this stack's hosts, service and environment.

* Timeboard (seed section 2): my_metric by host, MySQL CPU anomalies per host, my_metric
  summed over the past hour.
* APM + infrastructure (seed section 4): the Flask service's hits, p95 latency and errors
  next to the hosts' CPU, load and per-process CPU (from the Agent's process check), its
  availability and latency SLOs, and a stream of its error and warning log lines.

Every timeseries overlays the stack's change events (converge.sh sends one per host change,
tagged source:observability-lab and env), so a spike lines up with the change behind it.

Both have a `host` template variable listing the stack's hosts and showing all of them
(`*`) on load; every query filters on `$host` and on the stack's scope (its host tags,
or for traces its service and env), so `*` never shows another stack's hosts. One
dashboard per concern whatever the number of hosts. Dashboards cannot carry the
standard tags: the Dashboard API only accepts `team:<name>` tags, so env and service
are in the title and description instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi_datadog as datadog

from rendering.queries import HostScope, app_base_url
from rendering.widgets import log_stream, query_value, slo, timeseries
from settings.naming import Naming


@dataclass(frozen=True)
class DashboardsArgs:
    naming: Naming
    stack: str         # the Pulumi stack, named in the descriptions
    datadog_site: str  # for the exported links to the web UI
    slo_ids: Mapping[str, Any] = field(default_factory=dict)  # availability, latency: ids (or their outputs)
    slo_timeframe: str = "30d"

    @property
    def hosts(self) -> HostScope:
        return HostScope.of(self.naming)

    @property
    def url_base(self) -> str:
        return app_base_url(self.datadog_site)


def timeboard_widgets(args: DashboardsArgs) -> list[datadog.DashboardWidgetArgs]:
    scope, events = f"{args.hosts.metric},$host", args.naming.change_events
    return [
        timeseries("Average my_metric by host", f"avg:my_metric{{{scope}}} by {{host}}", events=events),
        timeseries("Anomalies in MySQL CPU time, by host", f"avg:mysql.performance.cpu_time{{{scope}}} by {{host}}",
                   formulas="anomalies(q1, 'basic', 2)", events=events),
        # One-hour sum buckets, reduced with `sum` over a one-hour span: every point of
        # the past hour counts once, even when the span straddles two clock-hour buckets.
        query_value("my_metric summed over the past hour",
                    f"avg:my_metric{{{scope}}}.rollup(sum, 3600)", aggregator="sum", live_span="1h"),
    ]


def apm_widgets(args: DashboardsArgs) -> list[datadog.DashboardWidgetArgs]:
    trace_scope = f"{args.naming.trace_scope},$host"
    # System metrics carry the host tags (env and project among them), not the APM service tag.
    host_scope = f"{args.hosts.metric},$host"
    events, service, env = args.naming.change_events, args.naming.service, args.naming.env
    return [
        timeseries("Request hits by resource",
                   f"sum:trace.flask.request.hits{{{trace_scope}}} by {{resource_name}}",
                   display_type="bars", events=events),
        timeseries("p95 request latency (s)", f"p95:trace.flask.request{{{trace_scope}}}", events=events),
        timeseries("Request errors by resource",
                   f"sum:trace.flask.request.errors{{{trace_scope}}} by {{resource_name}}",
                   display_type="bars", events=events),
        timeseries("Host CPU user %", f"avg:system.cpu.user{{{host_scope}}} by {{host}}", events=events),
        timeseries("Host load (1 min)", f"avg:system.load.1{{{host_scope}}} by {{host}}", events=events),
        timeseries("CPU % by watched process",
                   f"avg:system.processes.cpu.pct{{{host_scope}}} by {{process_name}}", events=events),
        *[slo(f"{service} {key} SLO", slo_id, args.slo_timeframe) for key, slo_id in args.slo_ids.items()],
        log_stream(f"{service} error and warning logs", f"service:{service} env:{env} status:(error OR warn) $host"),
    ]
