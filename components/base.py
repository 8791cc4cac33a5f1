"""What every component of the program shares: one type-token scheme, and its former tokens.

A component's type token is `observability-lab:<module>:<Class>`, `<module>` being the
components/ module that defines it (camelCase). A component whose token changed lists
the tokens it had in `former_types`: they become aliases, so a stack created with an
older token keeps the component and, through it, every child's URN (the engine carries
a parent's aliases to its children): nothing is replaced.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Sequence

import pulumi
import pulumi_datadog as datadog

from rendering.queries import app_base_url
from rendering.widgets import host_variable
from settings.declare import PROJECT


def type_token(component: type) -> str:
    first, *rest = component.__module__.rsplit(".", 1)[-1].split("_")
    return f"{PROJECT}:{first}{''.join(word.title() for word in rest)}:{component.__name__}"


class Component(pulumi.ComponentResource):
    former_types: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        aliases = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=former) for former in self.former_types])
        super().__init__(type_token(type(self)), name, None, pulumi.ResourceOptions.merge(aliases, opts))
        # Every child's options: parented here (its URN follows the component's).
        self.child = pulumi.ResourceOptions(parent=self)


class WorkloadMonitoring(Component):
    """What a workload's Datadog objects share (bike share, the Java app): its monitors, one
    dashboard with the host variable, and as outputs the monitors' ids and the board's link."""

    def _monitors_and_dashboard(self, name: str, monitors: dict[tuple[str, str], datadog.MonitorArgs], *,
                                title: str, description: str, hostnames: Sequence[str], widgets: list[Any],
                                datadog_site: str) -> None:
        """monitors: (output key, resource name suffix) -> arguments."""
        self.monitors = {key: datadog.Monitor(f"{name}-{suffix}", monitor_args, opts=self.child)
                         for (key, suffix), monitor_args in monitors.items()}
        self.dashboard = datadog.Dashboard(
            f"{name}-dashboard", title=title, description=description, layout_type="ordered",
            template_variables=[host_variable(hostnames)], widgets=widgets, opts=self.child)
        self.ids: dict[str, pulumi.Output[str]] = {key: m.id for key, m in self.monitors.items()}
        url_base = app_base_url(datadog_site)
        self.url = self.dashboard.url.apply(lambda path: f"{url_base}{path}" if path else "")
        self.register_outputs({"ids": self.ids, "url": self.url})
