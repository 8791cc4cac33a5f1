"""Bike-share rebalancing (the seed's closing use case): monitors and a dashboard over the
`bike_share` Agent check's metrics (userdata/agent/checks.d/bike_share.py).

For the "bike relocation" staff (their own handles): a station running empty or full, for
a sustained window (the window's max below the threshold: below it the whole time), one
alert per station; the feed unreachable (the check's service check) or stale (the age of
station_status); and one that looks ahead, as the seed's "historical trend analysis"
asks: the system's bikes available against their own daily pattern (`anomalies`, agile,
seasonality daily), so a drop that the hour of day does not explain alerts before the
stations run dry. The dashboard shows the emptiest and fullest stations, the system's
bikes with their forecast, stations empty and full over time, and the feed's freshness.

Every host of the stack runs the check, so its monitors watch the stack's hosts by tag
(`HostScope`) and keep `host` among their groups, as the host monitors do
(components/monitors.py explains the missing-group choices they share).
"""

from __future__ import annotations

from dataclasses import dataclass
import pulumi_datadog as datadog

from rendering.queries import HostScope, number
from settings.naming import Naming
from settings.stack import BikeShareSettings, MonitorSettings
from rendering.monitors import HOST_GROUP_DELAY_SECONDS, Audience, monitor, service_check_monitor
from rendering.widgets import timeseries, toplist

STATION_GROUPS = "host,system,station_id,station_name"
STATION_NAME = "{{station_name.name}} ({{station_id.name}})"
# The trend monitor: how far back the algorithm compares, and how long a drop must last.
TREND_WINDOW = "last_4h"
TREND_ALERT_WINDOW = "last_30m"


@dataclass(frozen=True)
class BikeShareArgs:
    naming: Naming
    bike_share: BikeShareSettings
    monitors: MonitorSettings  # what every monitor of the stack shares (footer, no-data timeframe)
    datadog_site: str          # for the exported link to the dashboard

    @property
    def hosts(self) -> HostScope:
        """The hosts whose check reports: every host of the stack."""
        return HostScope.of(self.naming)

    @property
    def audience(self) -> Audience:
        """The relocation team, and the bike share's own service tag (not the app's)."""
        return Audience.of(self.naming, self.monitors, handles=self.bike_share.notification_handles,
                           service=self.bike_share.service)


def station_monitor(to: Audience, args: BikeShareArgs, *, metric: str, below: int, what: str,
                    action: str) -> datadog.MonitorArgs:
    window = args.bike_share.window_minutes
    return monitor(
        to, "metric alert",
        name=f"Bike station running {what}: {STATION_NAME}",
        query=(f"max(last_{window}m):max:bikeshare.station.{metric}{{{args.hosts.metric}}} "
               f"by {{{STATION_GROUPS}}} < {number(below)}"),
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=number(below)),
        # A station that stops reporting is the feed's monitors' business, not "empty".
        notify_no_data=False,
        new_group_delay=HOST_GROUP_DELAY_SECONDS,
        summary=f"Station {STATION_NAME} is running {what}",
        sections={
            "is_alert": (f"{STATION_NAME} has had fewer than {below} {metric.split('_')[0]} available for "
                         f"{window} minutes (now {{{{value}}}}): {action}."),
            "is_recovery": f"{STATION_NAME} is back to {{{{value}}}} {metric.split('_')[0]} available.",
        },
    )


def feed_unreachable_monitor(to: Audience, args: BikeShareArgs) -> datadog.MonitorArgs:
    return service_check_monitor(
        to, "bikeshare.can_fetch", args.hosts, by=("host",),
        name="Bike-share feed unreachable from {{host.name}}",
        summary=f"GBFS feed {args.bike_share.feed_url}",
        alert="The bike_share check cannot read a whole snapshot of the feed: {{check_message}}",
        recovery="The bike_share check reads the feed again.",
    )


def feed_stale_monitor(to: Audience, args: BikeShareArgs) -> datadog.MonitorArgs:
    limit = number(args.bike_share.stale_after_minutes * 60)
    return monitor(
        to, "metric alert",
        name="Bike-share feed stale: {{system.name}}",
        query=f"min(last_5m):max:bikeshare.system.feed_age_seconds{{{args.hosts.metric}}} by {{host,system}} > {limit}",
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=limit),
        notify_no_data=False,
        new_group_delay=HOST_GROUP_DELAY_SECONDS,
        summary=f"GBFS feed {args.bike_share.feed_url}",
        sections={
            "is_alert": (f"station_status of {{{{system.name}}}} is {{{{value}}}} s old (limit {limit} s): "
                         "station figures are out of date, do not route bikes by them."),
            "is_recovery": "station_status of {{system.name}} is fresh again.",
        },
    )


def bikes_trend_monitor(to: Audience, args: BikeShareArgs) -> datadog.MonitorArgs:
    return monitor(
        to, "query alert",
        name="Bikes available dropping below their daily pattern: {{system.name}}",
        # Every host reports the same system figure: averaged across hosts, it stays the
        # system's own count whatever hostCount is (a sum would jump with each new host).
        query=(f"avg({TREND_WINDOW}):anomalies(avg:bikeshare.system.bikes_available{{{args.hosts.metric}}} by {{system}}, "
               f"'agile', 2, direction='below', alert_window='{TREND_ALERT_WINDOW}', interval=60, "
               "count_default_zero='true', seasonality='daily') >= 1"),
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical="1"),
        threshold_windows=datadog.MonitorMonitorThresholdWindowsArgs(
            trigger_window=TREND_ALERT_WINDOW, recovery_window=TREND_ALERT_WINDOW),
        notify_no_data=False,
        summary="Bikes available in {{system.name}}, against their usual day",
        sections={
            "is_alert": ("Fewer bikes are available across {{system.name}} than usual at this hour: "
                         "demand is outrunning the fleet. Rebalance toward the emptiest stations "
                         "(see the bike-share rebalancing dashboard)."),
            "is_recovery": "Bikes available in {{system.name}} are back within their daily pattern.",
        },
    )


def dashboard_widgets(args: BikeShareArgs) -> list[datadog.DashboardWidgetArgs]:
    stations = f"{{{args.hosts.metric},$host}} by {{station_name}}"
    system = f"{{{args.hosts.metric},$host}} by {{system}}"
    return [
        toplist("Emptiest stations (bikes available)", f"max:bikeshare.station.bikes_available{stations}",
                order="asc"),
        toplist("Fullest stations (fill ratio)", f"max:bikeshare.station.fill_ratio{stations}", order="desc"),
        timeseries("Bikes available in the system, and their forecast",
                   f"avg:bikeshare.system.bikes_available{system}",
                   formulas=("q1", "forecast(q1, 'seasonal', 1)")),
        timeseries("Stations empty and full", (f"max:bikeshare.system.stations_empty{system}",
                                               f"max:bikeshare.system.stations_full{system}"),
                   formulas=("q1", "q2"), display_type="bars"),
        timeseries("Feed age (s)", f"max:bikeshare.system.feed_age_seconds{system}"),
    ]
