"""The stack's monitors: my_metric (seed section 3), watched processes, the app's
processes, APM, MySQL.

Every monitor: `[<env>]` and the host or service in its name, the standard tags, the
stack's notification handles (and optional footer) in its message, thresholds from
the stack settings. Numbers in queries and `monitor_thresholds` come from the same
value through `number()`, so they cannot disagree ("800" vs "800.0").

Host monitors are multi-alerts grouped by `host` (over this stack's host, see
`_host_scope`): Datadog fills `{{host.ip}}` and the other host template variables only
for a monitor grouped by host, and a service-check query names its groups.

Processes: one multi-alert service-check monitor on `process.up`, grouped by host and
`process_name` (the process check also tags `process:<name>`, but marks that tag for
removal in Agent 8: integrations-core process/datadog_checks/process/process.py,
`_process_service_check`), rather than one monitor per process. The Agent's process
check reports `process.up` CRITICAL for an instance whose process is missing, so every
watched process is a group even when it never started; each group alerts and recovers
on its own; and adding or removing a watched process changes no monitor (no new ids to
wire into downtimes or dashboards, no churn in previews).

The app's processes (the seed's live process monitor, `processes('java')...`): a
`process alert` counting the host's gunicorn processes from Live Processes, alerting
when fewer than the master plus `appWorkers` workers run. gunicorn reads the same
setting from app.env, so the expected count follows the app's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import pulumi_datadog as datadog

from components.datadog_common import monitor_message, number
from components.settings import Settings

APM_WINDOW = "last_5m"
# Service checks: alert after 1 failed check, resolve after 1 OK (Datadog's defaults);
# `.last(N)` looks at one more check than the largest of these counts.
SERVICE_CHECK_THRESHOLDS = datadog.MonitorMonitorThresholdsArgs(critical="1", warning="1", ok="1")
SERVICE_CHECK_LAST = 2
# Live Processes search matching the app's master and workers (the command line of
# flask-app.service: `.../venv/bin/gunicorn --config ... app:app`), and its window. The
# monitor API's process alert query: processes(search).over(tags).rollup('count').last(timeframe) op #
APP_PROCESS_SEARCH = "gunicorn"
APP_PROCESS_WINDOW = "5m"


def my_metric_monitor(settings: Settings) -> datadog.MonitorArgs:
    m, host = settings.monitors, settings.datadog_hostname
    window = m.my_metric_window_minutes
    average = f"the average of my_metric over the last {window} minutes"
    warning, critical = number(m.my_metric_warning), number(m.my_metric_critical)
    return _monitor(
        settings, "metric alert",
        name=f"my_metric above threshold on {host}",
        query=f"avg(last_{window}m):avg:my_metric{{{_host_scope(settings)}}} by {{host}} > {critical}",
        thresholds=datadog.MonitorMonitorThresholdsArgs(warning=warning, critical=critical),
        # my_metric is sparse (one point per check interval): evaluate partial windows.
        require_full_window=False,
        notify_no_data=True,
        summary="Issue with my_metric on {{host.name}} ({{host.ip}})",
        sections={
            "is_warning": f"WARNING: {average} is {{{{value}}}}, above {warning} on {{{{host.name}}}} "
                          "({{host.ip}}).",
            "is_alert": f"ALERT: {average} is {{{{value}}}}, above {critical} on {{{{host.name}}}} ({{{{host.ip}}}}).",
            "is_no_data": f"my_metric has not reported for {m.no_data_minutes} minutes "
                          "on {{host.name}} ({{host.ip}}): is the Agent or the custom check down?",
            "is_recovery": f"Recovered: {average} is back to {{{{value}}}} on {{{{host.name}}}}.",
        },
    )


def process_monitor(settings: Settings) -> datadog.MonitorArgs:
    m = settings.monitors
    return _service_check_monitor(
        settings, "process.up", by=("host", "process_name"),
        name=f"Process {{{{process_name.name}}}} not running on {settings.datadog_hostname}",
        summary=f"Process check on {{{{host.name}}}} (watched: {', '.join(m.watched_processes)})",
        alert="{{process_name.name}} is not running on {{host.name}} ({{host.ip}}). Investigate and restart it.",
        no_data=f"No process check result for {{{{process_name.name}}}} from {{{{host.name}}}} for "
                f"{m.no_data_minutes} minutes: is the Agent running?",
        recovery="{{process_name.name}} is running again on {{host.name}}.",
    )


def app_processes_monitor(settings: Settings) -> datadog.MonitorArgs:
    host, app = settings.datadog_hostname, settings.app
    expected = app.processes
    return _monitor(
        settings, "process alert",
        name=f"{settings.service}: fewer than {expected} gunicorn processes on {host}",
        query=(f"processes('{APP_PROCESS_SEARCH}').over('{_host_scope(settings)}')"
               f".rollup('count').last('{APP_PROCESS_WINDOW}') < {expected}"),
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=number(expected)),
        # A stopped app is a count of 0, below the threshold: that is the alert itself.
        notify_no_data=False,
        summary=f"gunicorn processes of {settings.service} on {host}",
        sections={
            "is_alert": (f"Only {{{{value}}}} gunicorn processes of {settings.service} run on {host} "
                         f"over the last {APP_PROCESS_WINDOW}; expected {expected} (1 master + "
                         f"{app.workers} workers). Check `systemctl status flask-app`."),
            "is_recovery": f"All {expected} gunicorn processes of {settings.service} run again on {host}.",
        },
    )


def mysql_monitor(settings: Settings) -> datadog.MonitorArgs:
    m = settings.monitors
    return _service_check_monitor(
        settings, "mysql.can_connect", by=("host",),
        name=f"MySQL unreachable on {settings.datadog_hostname}",
        summary="MySQL check on {{host.name}}",
        alert="The Agent cannot connect to MySQL on {{host.name}} ({{host.ip}}).",
        no_data=f"No mysql.can_connect result from {{{{host.name}}}} for {m.no_data_minutes} minutes.",
        recovery="The Agent connects to MySQL on {{host.name}} again.",
    )


def _service_check_monitor(settings: Settings, check: str, *, by: tuple[str, ...], name: str,
                           summary: str, alert: str, no_data: str, recovery: str) -> datadog.MonitorArgs:
    return service_check_monitor(audience(settings), check, _host_scope(settings), by=by, name=name,
                                 summary=summary, alert=alert, no_data=no_data, recovery=recovery)


def service_check_monitor(to: Audience, check: str, scope: str, *, by: tuple[str, ...], name: str,
                          summary: str, alert: str, no_data: str, recovery: str) -> datadog.MonitorArgs:
    """A service check over `scope`, one group per `by` tags: alert on one failure,
    no-data after the audience's no-data timeframe."""
    groups = ",".join(f'"{tag}"' for tag in by)
    return monitor(
        to, "service check", name=name,
        query=(f'"{check}".over("{scope}").by({groups})'
               f".last({SERVICE_CHECK_LAST}).count_by_status()"),
        thresholds=SERVICE_CHECK_THRESHOLDS,
        notify_no_data=True,
        summary=summary,
        sections={"is_alert": alert, "is_no_data": no_data, "is_recovery": recovery},
    )


def apm_latency_monitor(settings: Settings) -> datadog.MonitorArgs:
    limit = number(settings.monitors.apm_latency_seconds)
    return _apm_monitor(
        settings, limit,
        name=f"{settings.service} p95 latency above {limit}s",
        query=f"percentile({APM_WINDOW}):p95:trace.flask.request{{{_trace_scope(settings)}}} > {limit}",
        summary=f"p95 latency of {settings.service} ({settings.env})",
        alert=f"p95 latency of trace.flask.request is {{{{value}}}}s, above {limit}s.",
        recovery=f"p95 latency of {settings.service} is back to {{{{value}}}}s.",
    )


def apm_error_rate_monitor(settings: Settings) -> datadog.MonitorArgs:
    limit = number(settings.monitors.apm_error_rate_percent)
    scope = _trace_scope(settings)
    errors = f"sum:trace.flask.request.errors{{{scope}}}.as_count()"
    hits = f"sum:trace.flask.request.hits{{{scope}}}.as_count()"
    return _apm_monitor(
        settings, limit,
        name=f"{settings.service} error rate above {limit}%",
        query=f"sum({APM_WINDOW}):( {errors} / {hits} ) * 100 > {limit}",
        summary=f"Error rate of {settings.service} ({settings.env})",
        alert=(f"{{{{value}}}}% of requests to {settings.service} failed over the "
               f"last 5 minutes (limit {limit}%)."),
        recovery=f"Error rate of {settings.service} is back to {{{{value}}}}%.",
    )


def _apm_monitor(settings: Settings, limit: str, *, name: str, query: str, summary: str,
                 alert: str, recovery: str) -> datadog.MonitorArgs:
    return _monitor(
        settings, "metric alert", name=name, query=query,
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=limit),
        # No traffic is normal (dev at night): no data is not an incident here,
        # and without hits there is no error ratio to evaluate.
        notify_no_data=False,
        require_full_window=False,
        summary=summary,
        sections={"is_alert": alert, "is_recovery": recovery},
    )


@dataclass(frozen=True)
class Audience:
    """Whose monitors these are and who hears of them: what every monitor shares."""
    env: str
    tags: tuple[str, ...]
    handles: tuple[str, ...]
    footer: str
    no_data_minutes: int


def audience(settings: Settings, handles: Optional[tuple[str, ...]] = None) -> Audience:
    m = settings.monitors
    return Audience(env=settings.env, tags=settings.standard_tags, handles=handles or m.notification_handles,
                    footer=m.message_footer, no_data_minutes=m.no_data_minutes)


def _monitor(settings: Settings, type_: str, **kwargs: Any) -> datadog.MonitorArgs:
    return monitor(audience(settings), type_, **kwargs)


def monitor(to: Audience, type_: str, *, name: str, query: str,
            thresholds: datadog.MonitorMonitorThresholdsArgs, notify_no_data: bool,
            summary: str, sections: dict[str, str], require_full_window: Optional[bool] = None,
            threshold_windows: Optional[datadog.MonitorMonitorThresholdWindowsArgs] = None) -> datadog.MonitorArgs:
    """What every monitor shares: `[<env>]` name, standard tags, handles and footer,
    and the no-data timeframe wherever no data alerts."""
    return datadog.MonitorArgs(
        name=f"[{to.env}] {name}",
        type=type_,
        query=query,
        monitor_thresholds=thresholds,
        monitor_threshold_windows=threshold_windows,
        require_full_window=require_full_window,
        notify_no_data=notify_no_data,
        no_data_timeframe=to.no_data_minutes if notify_no_data else None,
        message=monitor_message(summary, sections, to.handles, to.footer),
        tags=list(to.tags),
    )


def _host_scope(settings: Settings) -> str:
    """Which hosts the host monitors watch: this stack's one host."""
    return f"host:{settings.datadog_hostname}"


def _trace_scope(settings: Settings) -> str:
    return f"service:{settings.service},env:{settings.env}"


class Monitors(pulumi.ComponentResource):
    """Every monitor of one stack; `ids` maps a short key to each monitor's id."""

    def __init__(self, name: str, settings: Settings,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:datadog:Monitors", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.my_metric = datadog.Monitor(f"{name}-my-metric", my_metric_monitor(settings), opts=child)
        self.processes = datadog.Monitor(f"{name}-processes", process_monitor(settings), opts=child)
        self.app_processes = datadog.Monitor(f"{name}-app-processes", app_processes_monitor(settings),
                                             opts=child)
        self.mysql = datadog.Monitor(f"{name}-mysql", mysql_monitor(settings), opts=child)
        self.apm_latency = datadog.Monitor(f"{name}-apm-latency", apm_latency_monitor(settings), opts=child)
        self.apm_errors = datadog.Monitor(f"{name}-apm-errors", apm_error_rate_monitor(settings), opts=child)

        self.ids: dict[str, pulumi.Output[str]] = {
            "myMetric": self.my_metric.id,
            "processes": self.processes.id,
            "appProcesses": self.app_processes.id,
            "mysql": self.mysql.id,
            "apmLatency": self.apm_latency.id,
            "apmErrors": self.apm_errors.id,
        }
        self.register_outputs({"ids": self.ids})
