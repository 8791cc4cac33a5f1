"""The stack's monitors as one component (rendering/monitors.py builds each monitor's arguments)."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_datadog as datadog

from components.base import Component
from rendering.monitors import (Audience, MonitorsArgs, app_error_logs_monitor, app_processes_monitor,
                                my_metric_monitor, mysql_monitor, process_monitor)


class Monitors(Component):
    """Every monitor of one stack; `ids` maps a short key to each monitor's id."""

    former_types = ("observability-lab:datadog:Monitors",)

    def __init__(self, name: str, args: MonitorsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        child, to = self.child, Audience.of(args.naming, args.monitors)
        self.my_metric = datadog.Monitor(f"{name}-my-metric", my_metric_monitor(to, args), opts=child)
        self.processes = datadog.Monitor(f"{name}-processes", process_monitor(to, args), opts=child)
        self.app_processes = datadog.Monitor(f"{name}-app-processes", app_processes_monitor(to, args),
                                             opts=child)
        self.mysql = datadog.Monitor(f"{name}-mysql", mysql_monitor(to, args), opts=child)
        self.app_error_logs = datadog.Monitor(f"{name}-app-error-logs", app_error_logs_monitor(to, args),
                                              opts=child)

        self.ids: dict[str, pulumi.Output[str]] = {
            "myMetric": self.my_metric.id,
            "processes": self.processes.id,
            "appProcesses": self.app_processes.id,
            "mysql": self.mysql.id,
            "appErrorLogs": self.app_error_logs.id,
        }
        self.register_outputs({"ids": self.ids})
