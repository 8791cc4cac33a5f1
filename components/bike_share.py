"""The bike-share workload's Datadog objects as one component (rendering/bike_share.py builds them)."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_datadog as datadog

from components.base import Component
from rendering.bike_share import (BikeShareArgs, bikes_trend_monitor, dashboard_widgets, feed_stale_monitor,
                                  feed_unreachable_monitor, station_monitor)
from rendering.queries import app_base_url
from rendering.widgets import host_variable


class BikeShareMonitoring(Component):
    """The bike-share workload's monitors and its rebalancing dashboard."""

    former_types = ("observability-lab:datadog:BikeShareMonitoring",)

    def __init__(self, name: str, args: BikeShareArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        child, to, bike = self.child, args.audience, args.bike_share
        monitors = {  # (output key, resource name suffix) -> arguments
            ("bikeShareEmpty", "empty"): station_monitor(
                to, args, metric="bikes_available", below=bike.empty_below_bikes, what="empty", action="bring bikes"),
            ("bikeShareFull", "full"): station_monitor(
                to, args, metric="docks_available", below=bike.full_below_docks, what="full",
                action="take bikes away"),
            ("bikeShareFeedUnreachable", "feed-unreachable"): feed_unreachable_monitor(to, args),
            ("bikeShareFeedStale", "feed-stale"): feed_stale_monitor(to, args),
            ("bikeShareTrend", "trend"): bikes_trend_monitor(to, args),
        }
        self.monitors = {key: datadog.Monitor(f"{name}-{suffix}", monitor_args, opts=child)
                         for (key, suffix), monitor_args in monitors.items()}
        self.dashboard = datadog.Dashboard(
            f"{name}-dashboard",
            title=args.naming.title("bike-share rebalancing"),
            description=(f"Stations of the GBFS feed {bike.feed_url} as the bike_share check sees them, for the "
                         "relocation team. Managed by Pulumi; edits in the UI are overwritten."),
            layout_type="ordered",
            template_variables=[host_variable(args.hosts.hostnames)],
            widgets=dashboard_widgets(args),
            opts=child,
        )
        self.ids: dict[str, pulumi.Output[str]] = {key: m.id for key, m in self.monitors.items()}
        url_base = app_base_url(args.datadog_site)
        self.url = self.dashboard.url.apply(lambda path: f"{url_base}{path}" if path else "")
        self.register_outputs({"ids": self.ids, "url": self.url})
