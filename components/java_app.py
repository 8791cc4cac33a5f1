"""The Java workload's Datadog objects as one component (rendering/java_app.py builds them)."""

from __future__ import annotations

from typing import Optional

import pulumi

from components.base import WorkloadMonitoring
from rendering.java_app import (JavaAppArgs, can_connect_monitor, dashboard_widgets, heap_monitor, jvm_process_monitor,
                                major_gc_monitor, pool_usage_monitor, pool_wait_monitor)


class JavaAppMonitoring(WorkloadMonitoring):
    """The Java workload's monitors and its JVM and Tomcat dashboard."""

    def __init__(self, name: str, args: JavaAppArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        to = args.audience
        monitors = {  # (output key, resource name suffix) -> arguments
            ("javaHeap", "heap"): heap_monitor(to, args),
            ("javaMajorGc", "major-gc"): major_gc_monitor(to, args),
            ("javaPoolUsage", "pool-usage"): pool_usage_monitor(to, args),
            ("javaPoolWaits", "pool-waits"): pool_wait_monitor(to, args),
            ("javaJmx", "jmx"): can_connect_monitor(to, args),
            ("javaProcesses", "processes"): jvm_process_monitor(to, args),
        }
        self._monitors_and_dashboard(
            name, monitors,
            title=args.naming.title(f"{args.service} JVM and Tomcat"),
            description=(f"The JVM, the database pool and the requests of {args.service} (Tomcat, through JMX) "
                         "on the stack's hosts (pick one with the host variable). Managed by Pulumi; edits in "
                         "the UI are overwritten."),
            hostnames=args.hosts.hostnames, widgets=dashboard_widgets(args), datadog_site=args.datadog_site)
