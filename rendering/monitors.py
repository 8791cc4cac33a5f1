"""The stack's monitors: my_metric (seed section 3), watched processes, the app's
processes, its error logs, MySQL. (The app's latency and errors: its SLOs' burn-rate
alerts, rendering/slos.py.)

Every monitor: `[<env>]` in its name, the standard tags, the stack's notification
handles (and optional footer) in its message, thresholds from the stack settings.
Numbers in queries and `monitor_thresholds` come from the same value through
`number()`, so they cannot disagree ("800" vs "800.0").

One monitor per concern, whatever the number of hosts: the host monitors are
multi-alerts grouped by `host`, over the stack's host tags (`HostScope`: `env:<env>`
and `project:<project>`, which the Agent adds on every host), so a host that joins
the stack is watched with no new monitor. Datadog fills `{{host.ip}}` and the other
host template variables only for a monitor grouped by host, and a service-check query
names its groups.

Groups that come and go, deliberately:
* A new host boots for a while (apt, MySQL, the app's venv, the Agent) before it
  reports: its groups are not evaluated for HOST_GROUP_DELAY_SECONDS (`new_group_delay`).
* A host removed from the stack must leave no alert behind. The service-check monitors
  and the app's process alert therefore do not notify on missing data: a removed host's
  groups just go quiet. A host that dies (or whose Agent stops) is still caught, per
  host, by the my_metric monitor's no-data alert; and that monitor names the stack's
  hosts in its query (`host IN (...)`), so removing a host updates the query and its
  group leaves the monitor instead of alerting "no data" forever.

Processes: one multi-alert service-check monitor on `process.up`, grouped by host and
`process_name` (the process check also tags `process:<name>`, but marks that tag for
removal in Agent 8: integrations-core process/datadog_checks/process/process.py,
`_process_service_check`), rather than one monitor per process. The Agent's process
check reports `process.up` CRITICAL for an instance whose process is missing, so every
watched process is a group even when it never started; each group alerts and recovers
on its own; and adding or removing a watched process changes no monitor (no new ids to
wire into downtimes or dashboards, no churn in previews).

The app's processes (the seed's live process monitor, `processes('java')...`): a
`process alert` counting each host's gunicorn processes from Live Processes, alerting
when fewer than the master plus `appWorkers` workers run. gunicorn reads the same
setting from app.env, so the expected count follows the app's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi_datadog as datadog

from rendering.queries import (APP_PROCESS_SEARCH, APP_PROCESS_WINDOW, HostScope, app_process_count,
                               monitor_message, number)
from settings.naming import Naming
from settings.stack import AgentSettings, AppSettings, MonitorSettings

LOG_WINDOW = "5m"
# Service checks: alert after 1 failed check, resolve after 1 OK (Datadog's defaults);
# `.last(N)` looks at one more check than the largest of these counts.
SERVICE_CHECK_THRESHOLDS = datadog.MonitorMonitorThresholdsArgs(critical="1", warning="1", ok="1")
SERVICE_CHECK_LAST = 2
# How long a new group (a new host) goes unevaluated: its first boot installs the Agent,
# MySQL and the app before anything reports (the association waits as long for it).
HOST_GROUP_DELAY_SECONDS = 1800


@dataclass(frozen=True)
class Audience:
    """Whose monitors these are and who hears of them: what every monitor shares."""
    naming: Naming
    tags: tuple[str, ...]
    handles: tuple[str, ...]
    footer: str
    no_data_minutes: int

    @classmethod
    def of(cls, naming: Naming, monitors: MonitorSettings, *, handles: Optional[tuple[str, ...]] = None,
           service: Optional[str] = None) -> Audience:
        """The stack's audience: its handles (or `handles`), the standard tags of the app's
        service (or of `service`), the footer and no-data timeframe of every monitor."""
        return cls(naming=naming, tags=naming.datadog_tags(service), handles=handles or monitors.notification_handles,
                   footer=monitors.message_footer, no_data_minutes=monitors.no_data_minutes)

    @property
    def env(self) -> str:
        return self.naming.env


@dataclass(frozen=True)
class MonitorsArgs:
    """What the stack's monitors watch and their thresholds."""
    naming: Naming
    monitors: MonitorSettings
    agent: AgentSettings  # the watched processes
    app: AppSettings      # its workers: the app's process count

    @property
    def hosts(self) -> HostScope:
        return HostScope.of(self.naming)

    @property
    def service(self) -> str:
        return self.naming.service

    @property
    def app_processes(self) -> int:
        return app_process_count(self.app.workers)


def my_metric_monitor(to: Audience, args: MonitorsArgs) -> datadog.MonitorArgs:
    window = args.monitors.my_metric_window_minutes
    average = f"the average of my_metric over the last {window} minutes"
    warning, critical = number(args.monitors.my_metric_warning), number(args.monitors.my_metric_critical)
    return monitor(
        to, "metric alert",
        name="my_metric above threshold on {{host.name}}",
        # The hosts by name too (not only by tag): a host removed from the stack leaves
        # the query, so its group leaves the monitor instead of alerting on no data.
        query=f"avg(last_{window}m):avg:my_metric{{{args.hosts.named_hosts}}} by {{host}} > {critical}",
        thresholds=datadog.MonitorMonitorThresholdsArgs(warning=warning, critical=critical),
        # my_metric is sparse (one point per check interval): evaluate partial windows.
        require_full_window=False,
        # The one no-data alert of the host monitors: a host, or its Agent, gone silent.
        notify_no_data=True,
        new_group_delay=HOST_GROUP_DELAY_SECONDS,
        summary="Issue with my_metric on {{host.name}} ({{host.ip}})",
        sections={
            "is_warning": f"WARNING: {average} is {{{{value}}}}, above {warning} on {{{{host.name}}}} "
                          "({{host.ip}}).",
            "is_alert": f"ALERT: {average} is {{{{value}}}}, above {critical} on {{{{host.name}}}} ({{{{host.ip}}}}).",
            "is_no_data": f"my_metric has not reported for {to.no_data_minutes} minutes "
                          "on {{host.name}} ({{host.ip}}): is the host, its Agent or the custom check down?",
            "is_recovery": f"Recovered: {average} is back to {{{{value}}}} on {{{{host.name}}}}.",
        },
    )


def process_monitor(to: Audience, args: MonitorsArgs) -> datadog.MonitorArgs:
    return service_check_monitor(
        to, "process.up", args.hosts, by=("host", "process_name"),
        name="Process {{process_name.name}} not running on {{host.name}}",
        summary=f"Process check on {{{{host.name}}}} (watched: {', '.join(args.agent.watched_processes)})",
        alert="{{process_name.name}} is not running on {{host.name}} ({{host.ip}}). Investigate and restart it.",
        recovery="{{process_name.name}} is running again on {{host.name}}.",
    )


def app_processes_monitor(to: Audience, args: MonitorsArgs) -> datadog.MonitorArgs:
    expected, service = args.app_processes, args.service
    return monitor(
        to, "process alert",
        name=f"{service}: fewer than {expected} gunicorn processes on {{{{host.name}}}}",
        query=(f"processes('{APP_PROCESS_SEARCH}').over('{args.hosts.metric}').by('host')"
               f".rollup('count').last('{APP_PROCESS_WINDOW}') < {expected}"),
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=number(expected)),
        # Too few processes on a reporting host is the alert itself. A removed host's group
        # goes quiet; a host reporting no gunicorn at all is the process.up monitor's
        # (gunicorn is a watched process by default) and my_metric's no-data alert's.
        notify_no_data=False,
        new_group_delay=HOST_GROUP_DELAY_SECONDS,
        summary=f"gunicorn processes of {service} on {{{{host.name}}}}",
        sections={
            "is_alert": (f"Only {{{{value}}}} gunicorn processes of {service} run on {{{{host.name}}}} "
                         f"over the last {APP_PROCESS_WINDOW}; expected {expected} (1 master + "
                         f"{args.app.workers} workers). Check `systemctl status flask-app`."),
            "is_recovery": f"All {expected} gunicorn processes of {service} run again on {{{{host.name}}}}.",
        },
    )


def mysql_monitor(to: Audience, args: MonitorsArgs) -> datadog.MonitorArgs:
    return service_check_monitor(
        to, "mysql.can_connect", args.hosts, by=("host",),
        name="MySQL unreachable on {{host.name}}",
        summary="MySQL check on {{host.name}}",
        alert="The Agent cannot connect to MySQL on {{host.name}} ({{host.ip}}).",
        recovery="The Agent connects to MySQL on {{host.name}} again.",
    )


def service_check_monitor(to: Audience, check: str, hosts: HostScope, *, by: tuple[str, ...], name: str,
                          summary: str, alert: str, recovery: str) -> datadog.MonitorArgs:
    """A service check over the stack's hosts, one group per `by` tags: alert on one
    failure. No data does not notify: a host removed from the stack must leave no alert
    behind (the my_metric monitor catches a host gone silent)."""
    groups = ",".join(f'"{tag}"' for tag in by)
    return monitor(
        to, "service check", name=name,
        query=(f'"{check}".over({hosts.service_check}).by({groups})'
               f".last({SERVICE_CHECK_LAST}).count_by_status()"),
        thresholds=SERVICE_CHECK_THRESHOLDS,
        notify_no_data=False,
        new_group_delay=HOST_GROUP_DELAY_SECONDS if "host" in by else None,
        summary=summary,
        sections={"is_alert": alert, "is_recovery": recovery},
    )


def app_error_logs_monitor(to: Audience, args: MonitorsArgs) -> datadog.MonitorArgs:
    """The app's error log lines per host (its JSON lines with status error, from the journal)."""
    limit = number(args.monitors.app_error_logs_per_host)
    search = f"service:{args.service} env:{to.env} status:error"
    return monitor(
        to, "log alert",
        name=f"{args.service}: more than {limit} error log lines in {LOG_WINDOW} on {{{{host.name}}}}",
        query=f'logs("{search}").index("*").rollup("count").by("host").last("{LOG_WINDOW}") > {limit}',
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=limit),
        # No error line is the good case: a count of nothing is 0, not missing data.
        notify_no_data=False,
        new_group_delay=HOST_GROUP_DELAY_SECONDS,
        summary=f"Error logs of {args.service} on {{{{host.name}}}}",
        sections={
            "is_alert": (f"{{{{value}}}} error log lines of {args.service} on {{{{host.name}}}} in the last "
                         f"{LOG_WINDOW} (limit {limit}). Each links to its trace: open one from the Logs explorer."),
            "is_recovery": f"Error log lines of {args.service} on {{{{host.name}}}} are back under {limit}.",
        },
    )


def monitor(to: Audience, type_: str, *, name: str, query: Any,
            thresholds: datadog.MonitorMonitorThresholdsArgs, notify_no_data: bool,
            summary: str, sections: dict[str, str], require_full_window: Optional[bool] = None,
            new_group_delay: Optional[int] = None,
            threshold_windows: Optional[datadog.MonitorMonitorThresholdWindowsArgs] = None) -> datadog.MonitorArgs:
    """What every monitor shares: `[<env>]` name, standard tags, handles and footer,
    and the no-data timeframe wherever no data alerts. `query`: a string, or the engine's
    output of one (a burn-rate query names its SLO's id, known once Datadog creates it)."""
    return datadog.MonitorArgs(
        name=to.naming.title(name),
        type=type_,
        query=query,
        monitor_thresholds=thresholds,
        monitor_threshold_windows=threshold_windows,
        require_full_window=require_full_window,
        notify_no_data=notify_no_data,
        no_data_timeframe=to.no_data_minutes if notify_no_data else None,
        new_group_delay=new_group_delay,
        message=monitor_message(summary, sections, to.handles, to.footer),
        tags=list(to.tags),
    )
