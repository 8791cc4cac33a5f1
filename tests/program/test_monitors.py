"""Monitors: names, tags, handles, messages and thresholds as registered, per stack."""

from __future__ import annotations

import re

import pytest

from rendering.queries import MESSAGE_SECTIONS, app_base_url, monitor_message, number
from settings.validation import SettingsError
from tests.support import SERVICE, hostnames
from tests.support.resource_types import MONITOR, MONITORS
from tests.support.shared_settings import DEV_DATADOG, FOOTER, PROD_DATADOG

PREFIX = "datadog-monitors-"
# The raw p95 and error-rate monitors are retired (issue 20): the SLOs' burn-rate alerts
# (tests/program/test_slos.py) replace them.
KEYS = {"my-metric", "processes", "app-processes", "mysql", "app-error-logs"}
SLO_ALERTS = {f"{slo}{alert}" for slo in ("availability", "latency") for alert in ("PageFast", "PageSlow", "Ticket")}


def monitors(evaluation) -> dict[str, dict]:
    """The exercise's monitors (the bike-share ones are tests/program/test_bike_share_stack.py's)."""
    return {r.name.removeprefix(PREFIX): r.inputs for r in evaluation.of_type(MONITOR) if r.name.startswith(PREFIX)}




def tags_of(evaluation) -> str:
    """The stack's host tags, which the Agent adds on each of its hosts."""
    return f"env:{evaluation.stack},project:observability-lab"


def named_hosts(evaluation) -> str:
    """The stack's tags and hosts in Datadog's boolean metric filter syntax."""
    return (f"env:{evaluation.stack} AND project:observability-lab AND host IN "
            f"({', '.join(hostnames(evaluation.stack))})")


def handles_of(evaluation) -> list[str]:
    return {"dev": ["@sre-dev@example.com"],
            "prod": ["@sre-oncall@example.com", "@pagerduty-observability-lab"]}[evaluation.stack]


def query_threshold(query: str) -> str:
    match = re.search(r" > (\S+)$", query)
    assert match, query
    return match.group(1)


def test_one_component_owns_every_monitor(stack_eval):
    component = stack_eval.one(MONITORS)
    found = stack_eval.children_of(component)
    assert {r.name.removeprefix(PREFIX) for r in found} == KEYS
    assert {r.type for r in found} == {MONITOR}
    features = {"bikeShareEmpty", "bikeShareFull", "bikeShareFeedUnreachable", "bikeShareFeedStale",
                "bikeShareTrend", "javaHeap", "javaMajorGc", "javaPoolUsage", "javaPoolWaits", "javaJmx",
                "javaProcesses"} if stack_eval.stack == "dev" else set()
    assert set(stack_eval.outputs["monitorIds"]) == {"myMetric", "processes", "appProcesses", "mysql",
                                                     "appErrorLogs"} | features | SLO_ALERTS
    assert all(v.isdigit() for v in stack_eval.outputs["monitorIds"].values())


def test_every_monitor_names_env_is_tagged_and_notifies_the_handles(stack_eval):
    env = stack_eval.stack
    for key, m in monitors(stack_eval).items():
        assert m["name"].startswith(f"[{env}] "), key
        # One monitor for every host: the host it alerts on is the group's, never a fixed name.
        assert "{{host.name}}" in m["name"] or SERVICE in m["name"], key
        assert "observability-lab-" not in m["name"] + m["message"], key
        assert m["tags"] == [f"env:{env}", f"service:{SERVICE}", "managed-by:pulumi"], key
        # Handles on the last line, outside every {{#...}} block: notified on every transition.
        assert m["message"].splitlines()[-1] == " ".join(handles_of(stack_eval)), key
        assert m["type"] in ("metric alert", "service check", "process alert", "log alert"), key


def test_my_metric_monitor_matches_the_seed(stack_eval):
    m = monitors(stack_eval)["my-metric"]
    assert m["type"] == "metric alert"
    # A multi-alert by host: Datadog fills {{host.ip}} and {{host.name}} only then. Over the
    # stack's tags and exactly its hosts: a host removed from the stack leaves the query.
    assert m["query"] == f"avg(last_5m):avg:my_metric{{{named_hosts(stack_eval)}}} by {{host}} > 800"
    assert m["monitorThresholds"] == {"warning": "500", "critical": "800"}
    # The host monitors' one no-data alert: a host or its Agent gone silent, per host.
    assert m["notifyNoData"] is True
    assert m["noDataTimeframe"] == 10
    assert m["requireFullWindow"] is False
    assert m["newGroupDelay"] == 1800  # a new host boots before it reports


def test_metric_monitor_query_threshold_is_the_critical_one(stack_eval):
    for key, m in monitors(stack_eval).items():
        if m["type"] != "metric alert":
            continue
        thresholds = m["monitorThresholds"]
        assert query_threshold(m["query"]) == thresholds["critical"], key
        if "warning" in thresholds:  # every metric monitor here alerts *above* its threshold
            assert float(thresholds["warning"]) < float(thresholds["critical"]), key


def test_my_metric_message_has_one_block_per_state(stack_eval):
    message = monitors(stack_eval)["my-metric"]["message"]
    blocks = {}
    for name in MESSAGE_SECTIONS:
        match = re.search(rf"\{{\{{#{name}\}}\}}\n(.*?)\n\{{\{{/{name}\}}\}}", message, re.S)
        assert match, name
        blocks[name] = match.group(1)
    assert [message.index(f"{{{{#{n}}}}}") for n in MESSAGE_SECTIONS] == sorted(
        message.index(f"{{{{#{n}}}}}") for n in MESSAGE_SECTIONS)
    assert "{{value}}" in blocks["is_alert"] and "{{host.ip}}" in blocks["is_alert"]
    assert "800" in blocks["is_alert"] and "500" in blocks["is_warning"]
    assert "10 minutes" in blocks["is_no_data"]
    for handle in handles_of(stack_eval):
        assert all(handle not in block for block in blocks.values())
        assert handle in message


@pytest.mark.parametrize("overrides,shown", [
    (DEV_DATADOG, ("600", "900")),  # MY_METRIC: 600, 900, 15 minutes, no data for 30
    ({"myMetricCritical": 750.25, "myMetricWarning": 450.5, "myMetricWindowMinutes": 15, "noDataMinutes": 30},
     ("450.5", "750.25")),
], ids=("shared", "fractions"))
def test_thresholds_follow_a_per_stack_override(run_stack, overrides, shown):
    evaluation = run_stack("dev", overrides)
    m = monitors(evaluation)["my-metric"]
    assert m["query"] == f"avg(last_15m):avg:my_metric{{{named_hosts(evaluation)}}} by {{host}} > {shown[1]}"
    assert m["monitorThresholds"] == {"warning": shown[0], "critical": shown[1]}
    assert m["noDataTimeframe"] == 30
    assert f"above {shown[1]}" in m["message"] and f"above {shown[0]}" in m["message"]


def test_process_monitor_is_one_multi_alert_by_host_and_process_name(stack_eval):
    m, env = monitors(stack_eval)["processes"], stack_eval.stack
    assert m["type"] == "service check"
    # process_name, not process: the process check drops the `process:` tag in Agent 8.
    assert m["query"] == (f'"process.up".over("env:{env}","project:observability-lab").by("host","process_name")'
                          ".last(2).count_by_status()")
    assert m["monitorThresholds"] == {"critical": "1", "warning": "1", "ok": "1"}
    # A removed host's groups go quiet instead of alerting on missing data.
    assert m["notifyNoData"] is False and "noDataTimeframe" not in m
    assert m["newGroupDelay"] == 1800
    assert "{{process_name.name}}" in m["name"]
    assert "{{process.name}}" not in m["name"] + m["message"]
    assert "watched: gunicorn, mysqld" in m["message"]


def test_host_template_variables_only_in_monitors_grouped_by_host(stack_eval):
    for key, m in monitors(stack_eval).items():
        uses_host_variable = "{{host." in m["message"] + m["name"]
        grouped_by_host = "by {host}" in m["query"] or re.search(r'\.by\([^)]*["\']host["\']', m["query"])
        assert not uses_host_variable or grouped_by_host, key


def test_every_service_check_monitor_names_its_groups(stack_eval):
    checks = {k: m for k, m in monitors(stack_eval).items() if m["type"] == "service check"}
    assert set(checks) == {"processes", "mysql"}
    for key, m in checks.items():
        assert re.search(r'\.by\("host"[,)]', m["query"]), key


def test_watching_another_process_changes_no_query(run_stack):
    before = monitors(run_stack("dev"))["processes"]
    after = monitors(run_stack("dev", {"watchedProcesses": ["gunicorn", "mysqld", "nginx"]}))["processes"]
    assert after["query"] == before["query"]
    assert "watched: gunicorn, mysqld, nginx" in after["message"]


def test_mysql_monitor_watches_can_connect_by_host(stack_eval):
    m, env = monitors(stack_eval)["mysql"], stack_eval.stack
    assert m["type"] == "service check"
    assert m["query"] == (f'"mysql.can_connect".over("env:{env}","project:observability-lab").by("host")'
                          ".last(2).count_by_status()")
    assert m["monitorThresholds"] == {"critical": "1", "warning": "1", "ok": "1"}
    assert m["notifyNoData"] is False and m["newGroupDelay"] == 1800


def test_app_processes_monitor_counts_each_hosts_gunicorn_master_and_workers(stack_eval):
    m = monitors(stack_eval)["app-processes"]
    assert m["type"] == "process alert"
    # by('host'): counted per host, or two hosts' processes would add up to enough.
    assert m["query"] == (f"processes('gunicorn').over('{tags_of(stack_eval)}').by('host')"
                          ".rollup('count').last('5m') < 3")
    assert m["monitorThresholds"] == {"critical": "3"}
    assert m["notifyNoData"] is False and m["newGroupDelay"] == 1800
    assert "1 master + 2 workers" in m["message"]


def test_app_process_count_follows_the_worker_setting(run_stack):
    # gunicorn reads the same setting from app.env (tests/program/test_bundle.py), and runs
    # workers + 1 processes (tests/host/test_flask_app.py counts them).
    m = monitors(run_stack("prod", PROD_DATADOG))["app-processes"]  # APP_MONITORS: 5 workers
    assert m["query"].endswith("< 6") and m["monitorThresholds"] == {"critical": "6"}
    assert "1 master + 5 workers" in m["message"]


def test_the_log_monitor_counts_the_apps_error_lines_per_host(stack_eval):
    m, env = monitors(stack_eval)["app-error-logs"], stack_eval.stack
    assert m["type"] == "log alert"
    assert m["query"] == (f'logs("service:{SERVICE} env:{env} status:error").index("*").rollup("count")'
                          '.by("host").last("5m") > 10')
    assert m["monitorThresholds"] == {"critical": "10"}
    assert m["notifyNoData"] is False  # no error line is the good case
    assert "{{host.name}}" in m["name"] and "{{value}}" in m["message"]


def test_the_log_monitors_threshold_follows_its_setting(run_stack):
    m = monitors(run_stack("prod", PROD_DATADOG))["app-error-logs"]  # APP_MONITORS: 250 lines
    assert query_threshold(m["query"]) == "250" and m["monitorThresholds"] == {"critical": "250"}
    assert "more than 250 error log lines" in m["name"]


def test_message_footer_is_appended_to_every_message(run_stack):
    footer = FOOTER["monitorMessageFooter"]
    for m in monitors(run_stack("dev", DEV_DATADOG)).values():
        assert m["message"].splitlines()[-2] == footer
    for m in monitors(run_stack("dev")).values():
        assert footer not in m["message"]


def test_dev_and_prod_share_no_datadog_name(dev, prod):
    def names(evaluation):
        found = {r.inputs["name"] for r in evaluation.of_type(MONITOR)}
        found |= {r.inputs["title"] for r in evaluation.of_type("datadog:index/dashboard:Dashboard")}
        found |= {r.inputs["message"].splitlines()[0]
                  for r in evaluation.of_type("datadog:index/downtimeSchedule:DowntimeSchedule")}
        return found

    assert len(names(dev)) >= 7 and len(names(prod)) >= 7
    assert names(dev).isdisjoint(names(prod))


BAD = {
    "log threshold not a number": ({"appErrorLogsPerHost": "many"}, "must be an integer"),
    "log threshold zero": ({"appErrorLogsPerHost": 0}, "from 1 to 100000"),
    # A stack still setting a retired threshold is told what replaced it, not silently ignored.
    "retired latency threshold": ({"apmLatencySeconds": 0.5}, "set sloLatencySeconds (and sloLatencyTarget) instead"),
    "retired error rate": ({"apmErrorRatePercent": 2}, "set sloAvailabilityTarget instead"),
    "footer too long": ({"monitorMessageFooter": "x" * 1001}, "at most 1000 characters"),
}


@pytest.mark.parametrize("overrides,message", BAD.values(), ids=BAD.keys())
def test_bad_monitor_setting_is_rejected(run_stack_allowing_errors, overrides, message):
    evaluation = run_stack_allowing_errors("dev", overrides)
    assert isinstance(evaluation.error, SettingsError)
    assert message in str(evaluation.error)
    assert evaluation.resources == []


def test_numbers_are_formatted_like_datadog_shows_them():
    assert [number(v) for v in (800.0, 800, 0.5, 750.25, 1000.0, 0.001)] == [
        "800", "800", "0.5", "750.25", "1000", "0.001"]


def test_monitor_message_refuses_an_unknown_section():
    with pytest.raises(ValueError):
        monitor_message("x", {"is_alrt": "typo"}, ["@a"])


def test_app_base_url_per_site():
    assert app_base_url("datadoghq.com") == "https://app.datadoghq.com"
    assert app_base_url("datadoghq.eu") == "https://app.datadoghq.eu"
    assert app_base_url("us5.datadoghq.com") == "https://us5.datadoghq.com"


def test_of_the_host_grouped_monitors_only_my_metric_alerts_on_missing_data(dev):
    """A host leaving the stack leaves no alert behind; a host going silent is my_metric's no-data alert."""
    grouped = [r for r in dev.of_type(MONITOR)
               if "by {host" in r.inputs["query"] or re.search(r"\.by\([^)]*[\"']host[\"']", r.inputs["query"])]
    assert {r.name for r in grouped} >= {PREFIX + k for k in ("my-metric", "processes", "app-processes", "mysql",
                                                              "app-error-logs")}
    assert len(grouped) == 14  # and the bike-share and Java monitors grouped by host (dev runs both)
    for r in grouped:
        assert r.inputs["newGroupDelay"] == 1800, r.name
        assert r.inputs["notifyNoData"] is (r.name == PREFIX + "my-metric"), r.name
