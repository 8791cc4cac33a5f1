"""The bike-share workload's Datadog objects as one component (rendering/bike_share.py builds them)."""

from __future__ import annotations

from typing import Optional

import pulumi

from components.base import WorkloadMonitoring
from rendering.bike_share import (BikeShareArgs, bikes_trend_monitor, dashboard_widgets, feed_stale_monitor,
                                  feed_unreachable_monitor, station_monitor)


class BikeShareMonitoring(WorkloadMonitoring):
    """The bike-share workload's monitors and its rebalancing dashboard."""

    former_types = ("observability-lab:datadog:BikeShareMonitoring",)

    def __init__(self, name: str, args: BikeShareArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        to, bike = args.audience, args.bike_share
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
        self._monitors_and_dashboard(
            name, monitors,
            title=args.naming.title("bike-share rebalancing"),
            description=(f"Stations of the GBFS feed {bike.feed_url} as the bike_share check sees them, for the "
                         "relocation team. Managed by Pulumi; edits in the UI are overwritten."),
            hostnames=args.hosts.hostnames, widgets=dashboard_widgets(args), datadog_site=args.datadog_site)
