"""The two dashboards of the exercise, scoped to this stack's hosts, service and environment.

* Timeboard (seed section 2): my_metric by host, MySQL CPU anomalies per host, my_metric
  summed over the past hour.
* APM + infrastructure (seed section 4): the Flask service's hits, p95 latency and errors
  next to the hosts' CPU, load and per-process CPU (from the Agent's process check).

Both have a `host` template variable listing the stack's hosts and showing all of them
(`*`) on load; every query filters on `$host` and on the stack's scope (its host tags,
or for traces its service and env), so `*` never shows another stack's hosts. One
dashboard per concern whatever the number of hosts. Dashboards cannot carry the
standard tags: the Dashboard API only accepts `team:<name>` tags, so env and service
are in the title and description instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_datadog as datadog

from rendering.queries import HostScope, app_base_url
from rendering.widgets import query_value, timeseries
from settings.naming import Naming


@dataclass(frozen=True)
class DashboardsArgs:
    naming: Naming
    stack: str         # the Pulumi stack, named in the descriptions
    datadog_site: str  # for the exported links to the web UI

    @property
    def hosts(self) -> HostScope:
        return HostScope.of(self.naming)

    @property
    def url_base(self) -> str:
        return app_base_url(self.datadog_site)


def timeboard_widgets(args: DashboardsArgs) -> list[datadog.DashboardWidgetArgs]:
    scope = f"{args.hosts.metric},$host"
    return [
        timeseries("Average my_metric by host", f"avg:my_metric{{{scope}}} by {{host}}"),
        timeseries("Anomalies in MySQL CPU time, by host", f"avg:mysql.performance.cpu_time{{{scope}}} by {{host}}",
                   formulas="anomalies(q1, 'basic', 2)"),
        # One-hour sum buckets, reduced with `sum` over a one-hour span: every point of
        # the past hour counts once, even when the span straddles two clock-hour buckets.
        query_value("my_metric summed over the past hour",
                    f"avg:my_metric{{{scope}}}.rollup(sum, 3600)", aggregator="sum", live_span="1h"),
    ]


def apm_widgets(args: DashboardsArgs) -> list[datadog.DashboardWidgetArgs]:
    trace_scope = f"{args.naming.trace_scope},$host"
    # System metrics carry the host tags (env and project among them), not the APM service tag.
    host_scope = f"{args.hosts.metric},$host"
    return [
        timeseries("Request hits by resource",
                   f"sum:trace.flask.request.hits{{{trace_scope}}} by {{resource_name}}",
                   display_type="bars"),
        timeseries("p95 request latency (s)", f"p95:trace.flask.request{{{trace_scope}}}"),
        timeseries("Request errors by resource",
                   f"sum:trace.flask.request.errors{{{trace_scope}}} by {{resource_name}}",
                   display_type="bars"),
        timeseries("Host CPU user %", f"avg:system.cpu.user{{{host_scope}}} by {{host}}"),
        timeseries("Host load (1 min)", f"avg:system.load.1{{{host_scope}}} by {{host}}"),
        timeseries("CPU % by watched process",
                   f"avg:system.processes.cpu.pct{{{host_scope}}} by {{process_name}}"),
    ]
