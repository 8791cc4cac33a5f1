"""The Java workload's Datadog objects as one component (rendering/java_app.py builds them)."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_datadog as datadog

from components.base import Component
from rendering.java_app import (JavaAppArgs, can_connect_monitor, dashboard_widgets, heap_monitor, jvm_process_monitor,
                                major_gc_monitor, pool_usage_monitor, pool_wait_monitor)
from rendering.queries import app_base_url
from rendering.widgets import host_variable


class JavaAppMonitoring(Component):
    """The Java workload's monitors and its JVM and Tomcat dashboard."""

    def __init__(self, name: str, args: JavaAppArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        child, to = self.child, args.audience
        monitors = {  # (output key, resource name suffix) -> arguments
            ("javaHeap", "heap"): heap_monitor(to, args),
            ("javaMajorGc", "major-gc"): major_gc_monitor(to, args),
            ("javaPoolUsage", "pool-usage"): pool_usage_monitor(to, args),
            ("javaPoolWaits", "pool-waits"): pool_wait_monitor(to, args),
            ("javaJmx", "jmx"): can_connect_monitor(to, args),
            ("javaProcesses", "processes"): jvm_process_monitor(to, args),
        }
        self.monitors = {key: datadog.Monitor(f"{name}-{suffix}", monitor_args, opts=child)
                         for (key, suffix), monitor_args in monitors.items()}
        self.dashboard = datadog.Dashboard(
            f"{name}-dashboard",
            title=args.naming.title(f"{args.service} JVM and Tomcat"),
            description=(f"The JVM, the database pool and the requests of {args.service} (Tomcat, through JMX) "
                         "on the stack's hosts (pick one with the host variable). Managed by Pulumi; edits in "
                         "the UI are overwritten."),
            layout_type="ordered",
            template_variables=[host_variable(args.hosts.hostnames)],
            widgets=dashboard_widgets(args),
            opts=child,
        )
        self.ids: dict[str, pulumi.Output[str]] = {key: m.id for key, m in self.monitors.items()}
        url_base = app_base_url(args.datadog_site)
        self.url = self.dashboard.url.apply(lambda path: f"{url_base}{path}" if path else "")
        self.register_outputs({"ids": self.ids, "url": self.url})
