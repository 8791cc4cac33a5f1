"""The stack's two dashboards as one component (rendering/dashboards.py builds their widgets)."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_datadog as datadog

from components.base import Component
from rendering.dashboards import DashboardsArgs, apm_widgets, timeboard_widgets
from rendering.widgets import host_variable


class Dashboards(Component):
    """The my_metric timeboard and the APM + infrastructure dashboard of one stack."""

    former_types = ("observability-lab:datadog:Dashboards",)

    def __init__(self, name: str, args: DashboardsArgs,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        child, naming = self.child, args.naming
        env, service, count = naming.env, naming.service, len(args.hosts.hostnames)
        hosts = f"the {env} stack's {count} host{'s' if count > 1 else ''} (pick one with the host variable)"
        managed = f"Managed by Pulumi (stack {args.stack}); edits in the UI are overwritten."

        def dashboard(suffix: str, title: str, description: str,
                      widgets: list[datadog.DashboardWidgetArgs]) -> datadog.Dashboard:
            return datadog.Dashboard(
                f"{name}-{suffix}", title=naming.title(title), description=f"{description} {managed}",
                layout_type="ordered", template_variables=[host_variable(args.hosts.hostnames)],
                widgets=widgets, opts=child)

        self.timeboard = dashboard(
            "timeboard", "my_metric timeboard",
            f"my_metric and MySQL CPU of {hosts}, env {env}.", timeboard_widgets(args))
        self.apm = dashboard(
            "apm", f"{service} APM and infrastructure",
            f"Traces of service {service} (env {env}) and the resources of {hosts}.",
            apm_widgets(args))

        # `url` is the dashboard's path on the web UI (empty until Datadog assigns it).
        url_base = args.url_base
        self.urls: dict[str, pulumi.Output[str]] = {
            key: board.url.apply(lambda path: f"{url_base}{path}" if path else "")
            for key, board in (("timeboard", self.timeboard), ("apm", self.apm))
        }
        self.register_outputs({"urls": self.urls})
