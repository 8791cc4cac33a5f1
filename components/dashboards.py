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
from typing import Mapping, Optional

import pulumi
import pulumi_datadog as datadog

from components.datadog_common import HostScope
from components.widgets import host_variable, log_stream, query_value, slo, timeseries


@dataclass(frozen=True)
class DashboardsArgs:
    env: str
    stack: str
    service: str
    hosts: HostScope
    url_base: str  # the Datadog site's web UI origin, for the exported links
    slo_ids: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)  # availability, latency
    slo_timeframe: str = "30d"

    @property
    def change_events(self) -> str:
        """The events converge.sh sends for every change to a host of this stack."""
        return f"source:observability-lab env:{self.env}"


def timeboard_widgets(args: DashboardsArgs) -> list[datadog.DashboardWidgetArgs]:
    scope = f"{args.hosts.metric},$host"
    return [
        timeseries("Average my_metric by host", f"avg:my_metric{{{scope}}} by {{host}}", events=args.change_events),
        timeseries("Anomalies in MySQL CPU time, by host", f"avg:mysql.performance.cpu_time{{{scope}}} by {{host}}",
                   formulas="anomalies(q1, 'basic', 2)", events=args.change_events),
        # One-hour sum buckets, reduced with `sum` over a one-hour span: every point of
        # the past hour counts once, even when the span straddles two clock-hour buckets.
        query_value("my_metric summed over the past hour",
                    f"avg:my_metric{{{scope}}}.rollup(sum, 3600)", aggregator="sum", live_span="1h"),
    ]


def apm_widgets(args: DashboardsArgs) -> list[datadog.DashboardWidgetArgs]:
    trace_scope = f"service:{args.service},env:{args.env},$host"
    # System metrics carry the host tags (env and project among them), not the APM service tag.
    host_scope = f"{args.hosts.metric},$host"
    return [
        timeseries("Request hits by resource",
                   f"sum:trace.flask.request.hits{{{trace_scope}}} by {{resource_name}}",
                   display_type="bars", events=args.change_events),
        timeseries("p95 request latency (s)", f"p95:trace.flask.request{{{trace_scope}}}", events=args.change_events),
        timeseries("Request errors by resource",
                   f"sum:trace.flask.request.errors{{{trace_scope}}} by {{resource_name}}",
                   display_type="bars", events=args.change_events),
        timeseries("Host CPU user %", f"avg:system.cpu.user{{{host_scope}}} by {{host}}", events=args.change_events),
        timeseries("Host load (1 min)", f"avg:system.load.1{{{host_scope}}} by {{host}}", events=args.change_events),
        timeseries("CPU % by watched process",
                   f"avg:system.processes.cpu.pct{{{host_scope}}} by {{process_name}}", events=args.change_events),
        *[slo(f"{args.service} {key} SLO", slo_id, args.slo_timeframe) for key, slo_id in args.slo_ids.items()],
        log_stream(f"{args.service} error and warning logs",
                   f"service:{args.service} env:{args.env} status:(error OR warn) $host"),
    ]


class Dashboards(pulumi.ComponentResource):
    """The my_metric timeboard and the APM + infrastructure dashboard of one stack."""

    def __init__(self, name: str, args: DashboardsArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:datadog:Dashboards", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env, count = args.env, len(args.hosts.hostnames)
        hosts = f"the {env} stack's {count} host{'s' if count > 1 else ''} (pick one with the host variable)"
        managed = f"Managed by Pulumi (stack {args.stack}); edits in the UI are overwritten."

        def dashboard(suffix: str, title: str, description: str,
                      widgets: list[datadog.DashboardWidgetArgs]) -> datadog.Dashboard:
            return datadog.Dashboard(
                f"{name}-{suffix}", title=f"[{env}] {title}", description=f"{description} {managed}",
                layout_type="ordered", template_variables=[host_variable(args.hosts.hostnames)],
                widgets=widgets, opts=child)

        self.timeboard = dashboard(
            "timeboard", "my_metric timeboard",
            f"my_metric and MySQL CPU of {hosts}, env {env}.", timeboard_widgets(args))
        self.apm = dashboard(
            "apm", f"{args.service} APM and infrastructure",
            f"Traces of service {args.service} (env {env}) and the resources of {hosts}.",
            apm_widgets(args))

        # `url` is the dashboard's path on the web UI (empty until Datadog assigns it).
        self.urls: dict[str, pulumi.Output[str]] = {
            key: board.url.apply(lambda path: f"{args.url_base}{path}" if path else "")
            for key, board in (("timeboard", self.timeboard), ("apm", self.apm))
        }
        self.register_outputs({"urls": self.urls})
