"""The two dashboards of the exercise, scoped to this stack's host, service and environment.

* Timeboard (seed section 2): my_metric by host, MySQL CPU anomalies, my_metric summed
  over the past hour.
* APM + infrastructure (seed section 4): the Flask service's hits, p95 latency and errors
  next to the host's CPU, load and per-process CPU (from the Agent's process check).

Both have a `host` template variable defaulting to this stack's host, and every query
filters on `$host`. Dashboards cannot carry the standard tags: the Dashboard API only
accepts `team:<name>` tags, so env and service are in the title and description instead.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_datadog as datadog

from components.datadog_common import app_base_url
from components.settings import Settings
from components.widgets import host_variable, query_value, timeseries


def timeboard_widgets() -> list[datadog.DashboardWidgetArgs]:
    return [
        timeseries("Average my_metric by host", "avg:my_metric{$host} by {host}"),
        timeseries("Anomalies in MySQL CPU time", "avg:mysql.performance.cpu_time{$host}",
                    formulas="anomalies(q1, 'basic', 2)"),
        # One-hour sum buckets, reduced with `sum` over a one-hour span: every point of
        # the past hour counts once, even when the span straddles two clock-hour buckets.
        query_value("my_metric summed over the past hour",
                     "avg:my_metric{$host}.rollup(sum, 3600)", aggregator="sum", live_span="1h"),
    ]


def apm_widgets(settings: Settings) -> list[datadog.DashboardWidgetArgs]:
    trace_scope = f"service:{settings.service},env:{settings.env},$host"
    # System metrics carry host tags (env:<env> included), not the APM service tag.
    host_scope = f"env:{settings.env},$host"
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


class Dashboards(pulumi.ComponentResource):
    """The my_metric timeboard and the APM + infrastructure dashboard of one stack."""

    def __init__(self, name: str, settings: Settings,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:datadog:Dashboards", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        env, host = settings.env, settings.datadog_hostname
        managed = f"Managed by Pulumi (stack {settings.stack}); edits in the UI are overwritten."

        def dashboard(suffix: str, title: str, description: str,
                      widgets: list[datadog.DashboardWidgetArgs]) -> datadog.Dashboard:
            return datadog.Dashboard(
                f"{name}-{suffix}", title=f"[{env}] {title}", description=f"{description} {managed}",
                layout_type="ordered", template_variables=[host_variable(settings.datadog_hostname)],
                widgets=widgets, opts=child)

        self.timeboard = dashboard(
            "timeboard", f"my_metric timeboard on {host}",
            f"my_metric and MySQL CPU of {host} (env {env}).", timeboard_widgets())
        self.apm = dashboard(
            "apm", f"{settings.service} APM and infrastructure on {host}",
            f"Traces of service {settings.service} (env {env}) and the resources of {host}.",
            apm_widgets(settings))

        base = app_base_url(settings.datadog_site)
        # `url` is the dashboard's path on the web UI (empty until Datadog assigns it).
        self.urls: dict[str, pulumi.Output[str]] = {
            key: board.url.apply(lambda path: f"{base}{path}" if path else "")
            for key, board in (("timeboard", self.timeboard), ("apm", self.apm))
        }
        self.register_outputs({"urls": self.urls})
