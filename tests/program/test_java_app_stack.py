"""The Java workload in the stacks: its settings, monitors and dashboard, per stack.

The host side (Tomcat, JMX, the pool) is tests/host/test_java_app.py's, converge's handling of it
tests/host/test_converge_java.py's; here, the program around it under the mock engine.
"""

from __future__ import annotations

import pytest

from settings.validation import SettingsError
from tests.support.evaluations import bundle_files
from tests.support.resource_types import DASHBOARD, MONITOR
from tests.support.shared_settings import PROD_DATADOG

PREFIX = "java-app-"
SCOPE = "env:{env},project:observability-lab,service:cars-app"  # the stack's hosts and the JVM's service tag


def monitors(evaluation) -> dict[str, dict]:
    return {r.name.removeprefix(PREFIX): r.inputs for r in evaluation.of_type(MONITOR) if r.name.startswith(PREFIX)}


def test_dev_runs_the_java_workload_and_prod_does_not(dev, prod):
    assert set(monitors(dev)) == {"heap", "major-gc", "pool-usage", "pool-waits", "jmx", "processes"}
    assert monitors(prod) == {}
    assert "javaApp" in dev.outputs["dashboardUrls"] and "javaApp" not in prod.outputs["dashboardUrls"]
    assert "tomcat/observability-lab.conf" in bundle_files(dev)
    assert not any(path.startswith("tomcat/") for path in bundle_files(prod))


def test_the_metric_monitors_by_host_with_their_default_thresholds(dev):
    ms, scope = monitors(dev), SCOPE.format(env="dev")
    assert ms["heap"]["query"] == (f"avg(last_10m):avg:jvm.heap_memory{{{scope}}} by {{host}} / "
                                   f"avg:jvm.heap_memory_max{{{scope}}} by {{host}} * 100 > 90")
    assert ms["heap"]["monitorThresholds"] == {"warning": "80", "critical": "90"}
    assert ms["major-gc"]["query"] == (
        f"avg(last_10m):per_minute(avg:jvm.gc.major_collection_time{{{scope}}} by {{host}}) > 3000")
    assert ms["major-gc"]["monitorThresholds"] == {"warning": "1000", "critical": "3000"}
    # Sustained: the window's minimum above the threshold.
    assert ms["pool-usage"]["query"] == (
        f"min(last_10m):avg:tomcat.jdbc.connection_pool.active{{{scope}}} by {{host}} / "
        f"avg:tomcat.jdbc.connection_pool.max_active{{{scope}}} by {{host}} * 100 > 90")
    assert ms["pool-waits"]["query"] == (
        f"max(last_10m):max:tomcat.jdbc.connection_pool.wait_count{{{scope}}} by {{host}} > 0")
    for key in ("heap", "major-gc", "pool-usage", "pool-waits"):
        assert ms[key]["type"] == "metric alert" and ms[key]["newGroupDelay"] == 1800
        assert ms[key]["notifyNoData"] is False
        assert "service:cars-app" in ms[key]["tags"] and "@sre-dev@example.com" in ms[key]["message"]
    assert ms["jmx"]["type"] == "service check" and ms["jmx"]["query"].startswith('"tomcat.can_connect".over(')


def test_thresholds_are_the_stacks_own(run_stack):
    # prod switched on with its own thresholds: every one reaches its monitor, dev's stay.
    ms = monitors(run_stack("prod", PROD_DATADOG))  # JAVA_APP: these thresholds, service fleet
    scope = "env:prod,project:observability-lab,service:fleet"
    assert ms["heap"]["query"].startswith(f"avg(last_30m):avg:jvm.heap_memory{{{scope}}} by {{host}}")
    assert ms["heap"]["query"].endswith(" > 85") and ms["heap"]["monitorThresholds"] == {"warning": "70",
                                                                                           "critical": "85"}
    assert ms["major-gc"]["query"].endswith(" > 1500.5")
    assert ms["major-gc"]["monitorThresholds"] == {"warning": "500", "critical": "1500.5"}
    assert ms["pool-usage"]["query"].startswith("min(last_30m):") and ms["pool-usage"]["query"].endswith(" > 80")
    assert ms["pool-usage"]["monitorThresholds"] == {"warning": "60", "critical": "80"}
    assert "service:fleet" in ms["heap"]["tags"] and "@pagerduty-observability-lab" in ms["heap"]["message"]


def test_the_live_process_monitor_counts_tomcat_jvms_not_every_java(dev, run_stack):
    # A bare processes('java') also counts the Agent's own JMXFetch JVM (java, user dd-agent).
    m = monitors(dev)["processes"]
    assert m["type"] == "process alert"
    assert m["query"] == ("processes('org.apache.catalina.startup.Bootstrap').over('user:tomcat,env:dev,"
                          "project:observability-lab').rollup('count').last('5m') < 1")
    assert m["monitorThresholds"] == {"critical": "1"}
    # One JVM per host: the count follows hostCount.
    three = monitors(run_stack("prod", PROD_DATADOG))["processes"]  # JAVA_APP: on, 3 hosts
    assert three["query"].endswith("< 3") and three["monitorThresholds"] == {"critical": "3"}


def test_the_dashboard_shows_heap_gc_pool_requests_errors_and_threads(dev):
    (board,) = [r.inputs for r in dev.of_type(DASHBOARD) if r.name == "java-app-dashboard"]
    queries = " ".join(query["metricQuery"]["query"] for widget in board["widgets"]
                       for request in widget["timeseriesDefinition"]["requests"] for query in request["queries"])
    for metric in ("jvm.heap_memory", "jvm.heap_memory_max", "jvm.gc.major_collection_time",
                   "jvm.gc.minor_collection_time", "tomcat.jdbc.connection_pool.active",
                   "tomcat.jdbc.connection_pool.wait_count", "tomcat.request_count", "tomcat.error_count",
                   "tomcat.threads.busy", "jvm.thread_count"):
        assert f"{metric}{{{SCOPE.format(env='dev')},$host}}" in queries, metric
    assert [v["name"] for v in board["templateVariables"]] == ["host"]


BAD = {
    "javaJmxPort": (3306, "is taken on the host"),
    "javaHeapMaxMiB": (32, "from 64 to 16384"),
    "javaPoolMaxActive": (0, "from 1 to 100"),
    "javaWindowMinutes": (1, "from 5 to 1440"),
    "javaHeapWarningPercent": (95, "must be below observability-lab:javaHeapCriticalPercent"),
    "javaPoolCriticalPercent": (101, "from 1 to 100"),
    "javaService": ("Cars App", "lowercase name"),
}


def test_bad_java_settings_are_reported_together_before_anything_is_created(run_stack_allowing_errors):
    evaluation = run_stack_allowing_errors("dev", {key: value for key, (value, _) in BAD.items()})
    assert isinstance(evaluation.error, SettingsError)
    assert evaluation.resources == [] or all(not r.custom for r in evaluation.resources)
    message = str(evaluation.error)
    for key, (value, allowed) in BAD.items():
        assert f"observability-lab:{key}" in message and allowed in message and str(value) in message, key


@pytest.mark.parametrize("warning,critical", [("javaMajorGcWarningMsPerMinute", "javaMajorGcCriticalMsPerMinute"),
                                              ("javaPoolWarningPercent", "javaPoolCriticalPercent")])
def test_a_warning_must_stay_below_its_critical(run_stack_allowing_errors, warning, critical):
    evaluation = run_stack_allowing_errors("dev", {warning: 50, critical: 50})
    assert isinstance(evaluation.error, SettingsError)
    assert f"observability-lab:{warning}" in str(evaluation.error) and critical in str(evaluation.error)


def test_the_jmx_port_may_not_be_the_apps(run_stack_allowing_errors):
    evaluation = run_stack_allowing_errors("dev", {"javaJmxPort": 9000, "appPort": 9000})
    assert isinstance(evaluation.error, SettingsError)
    assert "observability-lab:javaJmxPort" in str(evaluation.error)
    assert "is observability-lab:appPort" in str(evaluation.error)
