"""The Java workload's Datadog objects (seed section 5): the cars app on Tomcat, through JMX.
(components/java_app.py makes them one component.)

Monitors, one per concern, multi-alerts by host over the stack's hosts (`HostScope`) and
the app's service tag (unified service tagging: the tomcat check's instance sets it), so
another JVM on the same hosts never mixes in:
* heap used over max (jvm.heap_memory / jvm.heap_memory_max), averaged over the window;
* major garbage collection: milliseconds spent per minute (jvm.gc.major_collection_time,
  a rate of CollectionTime with `new_gc_metrics`; G1 Old and Mixed generations);
* the pool (the Tomcat JDBC pool's DataSource bean): active over max sustained (the
  window's minimum above the threshold: above it the whole time), and any thread waiting
  for a connection (the pool's WaitCount, at any point of the window);
* `tomcat.can_connect`: the Agent's JMXFetch cannot reach or log in to the JVM;
* the seed's live-process monitor made honest: the Tomcat JVMs counted by their main
  class under their user (a bare `processes('java')` also counts the Agent's own JMXFetch
  JVM, a java process of dd-agent), across the stack: fewer than one per host alerts.
  Ungrouped on purpose: grouped by host, a host whose JVM is gone has no group left to
  count zero in (process.up, with its Tomcat instance, is the per-host alert for that).
  Live processes need the Agent's process collection (on in datadog.yaml) and a Datadog
  plan that includes Live Processes.
The dashboard: heap, GC, the pool, requests and errors, threads, per host.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_datadog as datadog

from rendering.bundle import TOMCAT_MAIN_CLASS, TOMCAT_USER
from rendering.monitors import HOST_GROUP_DELAY_SECONDS, Audience, monitor, service_check_monitor
from rendering.queries import HostScope, number
from rendering.widgets import timeseries
from settings.naming import Naming
from settings.stack import JavaAppSettings, MonitorSettings

PROCESS_WINDOW = "5m"


@dataclass(frozen=True)
class JavaAppArgs:
    naming: Naming
    java_app: JavaAppSettings
    monitors: MonitorSettings  # what every monitor of the stack shares (handles, footer, no-data timeframe)
    datadog_site: str          # for the exported link to the dashboard

    @property
    def hosts(self) -> HostScope:
        """Every host of the stack runs the JVM."""
        return HostScope.of(self.naming)

    @property
    def audience(self) -> Audience:
        """The stack's handles, and the Java app's own service tag (not the Flask app's)."""
        return Audience.of(self.naming, self.monitors, service=self.java_app.service)

    @property
    def service(self) -> str:
        return self.java_app.service

    @property
    def scope(self) -> str:
        """The stack's hosts and the JVM's service tag (the tomcat check's instance sets it)."""
        return f"{self.hosts.metric},service:{self.service}"


def _ratio_monitor(to: Audience, args: JavaAppArgs, *, reducer: str, numerator: str, denominator: str,
                   warning: float, critical: float, name: str, what: str, action: str) -> datadog.MonitorArgs:
    window, scope = args.java_app.window_minutes, args.scope
    warn, crit = number(warning), number(critical)
    return monitor(
        to, "metric alert", name=name,
        query=(f"{reducer}(last_{window}m):avg:{numerator}{{{scope}}} by {{host}} / "
               f"avg:{denominator}{{{scope}}} by {{host}} * 100 > {crit}"),
        thresholds=datadog.MonitorMonitorThresholdsArgs(warning=warn, critical=crit),
        notify_no_data=False,
        new_group_delay=HOST_GROUP_DELAY_SECONDS,
        summary=f"{what} of {args.service} on {{{{host.name}}}}",
        sections={
            "is_warning": f"{what} of {args.service} is {{{{value}}}}% on {{{{host.name}}}} (warning above {warn}%).",
            "is_alert": f"{what} of {args.service} is {{{{value}}}}% on {{{{host.name}}}} (limit {crit}%): {action}",
            "is_recovery": f"{what} of {args.service} is back to {{{{value}}}}% on {{{{host.name}}}}.",
        },
    )


def heap_monitor(to: Audience, args: JavaAppArgs) -> datadog.MonitorArgs:
    return _ratio_monitor(
        to, args, reducer="avg", numerator="jvm.heap_memory", denominator="jvm.heap_memory_max",
        warning=args.java_app.heap_warning_percent, critical=args.java_app.heap_critical_percent,
        name=f"{args.service}: JVM heap above {number(args.java_app.heap_critical_percent)}% of its max on {{{{host.name}}}}",
        what=f"Heap used over max, averaged over {args.java_app.window_minutes} minutes,",
        action="the JVM is close to OutOfMemoryError; look at the GC graphs and raise javaHeapMaxMiB "
               "or find what holds the memory.")


def pool_usage_monitor(to: Audience, args: JavaAppArgs) -> datadog.MonitorArgs:
    return _ratio_monitor(
        to, args, reducer="min", numerator="tomcat.jdbc.connection_pool.active",
        denominator="tomcat.jdbc.connection_pool.max_active",
        warning=args.java_app.pool_warning_percent, critical=args.java_app.pool_critical_percent,
        name=f"{args.service}: database pool above {number(args.java_app.pool_critical_percent)}% busy on {{{{host.name}}}}",
        what=f"Connections in use over the pool's max, for {args.java_app.window_minutes} minutes at least,",
        action="requests are about to wait for a connection; look for slow queries (MySQL dashboard) "
               "or raise javaPoolMaxActive.")


def major_gc_monitor(to: Audience, args: JavaAppArgs) -> datadog.MonitorArgs:
    window = args.java_app.window_minutes
    warn, crit = number(args.java_app.major_gc_warning_ms_per_minute), number(args.java_app.major_gc_critical_ms_per_minute)
    spent = f"Major GC time of {args.service}, averaged over {window} minutes,"
    return monitor(
        to, "metric alert",
        name=f"{args.service}: major GC above {crit} ms per minute on {{{{host.name}}}}",
        query=(f"avg(last_{window}m):per_minute(avg:jvm.gc.major_collection_time{{{args.scope}}} by {{host}}) "
               f"> {crit}"),
        thresholds=datadog.MonitorMonitorThresholdsArgs(warning=warn, critical=crit),
        notify_no_data=False,
        new_group_delay=HOST_GROUP_DELAY_SECONDS,
        summary=f"Major garbage collection of {args.service} on {{{{host.name}}}}",
        sections={
            "is_warning": f"{spent} is {{{{value}}}} ms per minute on {{{{host.name}}}} (warning above {warn}).",
            "is_alert": (f"{spent} is {{{{value}}}} ms per minute on {{{{host.name}}}} (limit {crit}): the old "
                         "generation is full; the heap monitor and graph tell whether it is too small."),
            "is_recovery": f"{spent} is back to {{{{value}}}} ms per minute on {{{{host.name}}}}.",
        },
    )


def pool_wait_monitor(to: Audience, args: JavaAppArgs) -> datadog.MonitorArgs:
    window = args.java_app.window_minutes
    return monitor(
        to, "metric alert",
        name=f"{args.service}: requests waiting for a database connection on {{{{host.name}}}}",
        # WaitCount is the threads waiting right now: any point of the window above zero.
        query=f"max(last_{window}m):max:tomcat.jdbc.connection_pool.wait_count{{{args.scope}}} by {{host}} > 0",
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical="0"),
        notify_no_data=False,
        new_group_delay=HOST_GROUP_DELAY_SECONDS,
        summary=f"The database pool of {args.service} on {{{{host.name}}}}",
        sections={
            "is_alert": (f"Up to {{{{value}}}} requests of {args.service} waited for a pool connection on "
                         f"{{{{host.name}}}} in the last {window} minutes: the pool is exhausted."),
            "is_recovery": f"No request of {args.service} waits for a connection on {{{{host.name}}}} any more.",
        },
    )


def can_connect_monitor(to: Audience, args: JavaAppArgs) -> datadog.MonitorArgs:
    return service_check_monitor(
        to, "tomcat.can_connect", args.hosts, by=("host",),
        name="Tomcat JMX unreachable on {{host.name}}",
        summary=f"The Agent's JMX connection to {args.service}'s Tomcat on {{{{host.name}}}}",
        alert=("The Agent cannot connect or log in to Tomcat's JMX (127.0.0.1) on {{host.name}} ({{host.ip}}): "
               "is tomcat10 running, and its JMX password the Agent's?"),
        recovery="The Agent reads Tomcat's JMX on {{host.name}} again.",
    )


def jvm_process_monitor(to: Audience, args: JavaAppArgs) -> datadog.MonitorArgs:
    hosts = len(args.hosts.hostnames)
    return monitor(
        to, "process alert",
        name=f"{args.service}: fewer Tomcat JVMs than hosts",
        query=(f"processes('{TOMCAT_MAIN_CLASS}').over('user:{TOMCAT_USER},{args.hosts.metric}')"
               f".rollup('count').last('{PROCESS_WINDOW}') < {hosts}"),
        thresholds=datadog.MonitorMonitorThresholdsArgs(critical=number(hosts)),
        # No process at all is the alert itself (and may show as no data).
        notify_no_data=True,
        summary=f"Tomcat JVMs ({TOMCAT_MAIN_CLASS}, user {TOMCAT_USER}) of the stack's {hosts} hosts",
        sections={
            "is_alert": (f"Only {{{{value}}}} Tomcat JVMs of {args.service} run across the stack's {hosts} "
                         f"hosts over the last {PROCESS_WINDOW}; expected one per host. The process.up "
                         "monitor names the host; `systemctl status tomcat10` there."),
            "is_no_data": f"No Tomcat JVM of {args.service} reports from any host of the stack.",
            "is_recovery": f"Every host of the stack runs its Tomcat JVM again ({{{{value}}}}).",
        },
    )


def dashboard_widgets(args: JavaAppArgs) -> list[datadog.DashboardWidgetArgs]:
    scope = f"{{{args.scope},$host}}"
    by_host = f"{scope} by {{host}}"
    return [
        timeseries("Heap used and max (bytes)", (f"avg:jvm.heap_memory{by_host}", f"avg:jvm.heap_memory_max{by_host}"),
                   formulas=("q1", "q2")),
        timeseries("GC time per minute (ms): minor, major",
                   (f"avg:jvm.gc.minor_collection_time{by_host}", f"avg:jvm.gc.major_collection_time{by_host}"),
                   formulas=("per_minute(q1)", "per_minute(q2)")),
        timeseries("Database pool: active, idle, max",
                   (f"avg:tomcat.jdbc.connection_pool.active{by_host}", f"avg:tomcat.jdbc.connection_pool.idle{by_host}",
                    f"avg:tomcat.jdbc.connection_pool.max_active{by_host}"),
                   formulas=("q1", "q2", "q3")),
        timeseries("Requests waiting for a connection, and borrows per second",
                   (f"max:tomcat.jdbc.connection_pool.wait_count{by_host}",
                    f"sum:tomcat.jdbc.connection_pool.borrowed_count{by_host}"),
                   formulas=("q1", "q2"), display_type="bars"),
        timeseries("Requests and errors per second", (f"sum:tomcat.request_count{by_host}",
                                                      f"sum:tomcat.error_count{by_host}"),
                   formulas=("q1", "q2"), display_type="bars"),
        timeseries("Threads: request threads busy, of max; JVM threads",
                   (f"avg:tomcat.threads.busy{by_host}", f"avg:tomcat.threads.max{by_host}",
                    f"avg:jvm.thread_count{by_host}"),
                   formulas=("q1", "q2", "q3")),
        timeseries("Longest request (ms)", f"max:tomcat.max_time{by_host}"),
    ]
