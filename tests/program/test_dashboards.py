"""Dashboards: every widget's query, type and scope, and the host template variable, per stack."""

from __future__ import annotations

import re
from tests.support import HOSTS, SERVICE, hostnames
from tests.support.resource_types import DASHBOARD, DASHBOARDS
from tests.support.shared_settings import DEV_DATADOG



def scope(evaluation) -> str:
    """The stack's host tags: `*` in the host variable never reaches another stack's hosts."""
    return f"env:{evaluation.stack},project:observability-lab,$host"


def dashboards(evaluation) -> dict[str, dict]:
    """The exercise's two boards (the bike-share board is tests/program/test_bike_share_stack.py's)."""
    return {r.name.removeprefix("datadog-dashboards-"): r.inputs for r in evaluation.of_type(DASHBOARD)
            if r.name.startswith("datadog-dashboards-")}


def widgets(dashboard: dict) -> list[tuple[str, str, str]]:
    """(widget type, the query as one classic expression, display type or aggregator) per widget;
    an SLO widget's query is its SLO's id and its view type, a log stream's its log search."""
    found = []
    for widget in dashboard["widgets"]:
        (kind, definition), = widget.items()
        if kind == "serviceLevelObjectiveDefinition":
            found.append(("serviceLevelObjective", definition["sloId"], definition["viewType"]))
            continue
        if kind == "logStreamDefinition":
            found.append(("logStream", definition["query"], definition["messageDisplay"]))
            continue
        (request,) = definition["requests"]
        queries = {q["metricQuery"]["name"]: q["metricQuery"] for q in request["queries"]}
        (formula,) = request["formulas"]
        # Substitute each named query into the formula: anomalies(q1, ...) -> anomalies(avg:..., ...)
        expression = re.sub(r"\bq\d+\b", lambda m: queries[m.group(0)]["query"],
                            formula["formulaExpression"])
        style = request.get("displayType") or queries["q1"].get("aggregator")
        found.append((kind.removesuffix("Definition"), expression, style))
    return found


def test_one_component_owns_both_dashboards(stack_eval):
    component = stack_eval.one(DASHBOARDS)
    found = stack_eval.children_of(component)
    assert {r.name for r in found} == {"datadog-dashboards-timeboard", "datadog-dashboards-apm"}
    assert {r.name for r in stack_eval.of_type(DASHBOARD)} - {r.name for r in found} <= {"bike-share-dashboard",
                                                                                         "java-app-dashboard"}


def test_timeboard_widgets_reproduce_the_seed_scoped_to_the_stacks_hosts(stack_eval):
    board, hosts = dashboards(stack_eval)["timeboard"], scope(stack_eval)
    assert board["layoutType"] == "ordered"
    assert widgets(board) == [
        ("timeseries", f"avg:my_metric{{{hosts}}} by {{host}}", "line"),
        ("timeseries", f"anomalies(avg:mysql.performance.cpu_time{{{hosts}}} by {{host}}, 'basic', 2)", "line"),
        ("queryValue", f"avg:my_metric{{{hosts}}}.rollup(sum, 3600)", "sum"),
    ]
    rollup = board["widgets"][2]["queryValueDefinition"]
    assert rollup["liveSpan"] == "1h"  # one hour of points, summed into one number


def test_apm_dashboard_widgets_scoped_by_service_env_and_host(stack_eval):
    board, env = dashboards(stack_eval)["apm"], stack_eval.stack
    traces = f"service:{SERVICE},env:{env},$host"
    assert board["layoutType"] == "ordered"
    assert widgets(board) == [
        ("timeseries", f"sum:trace.flask.request.hits{{{traces}}} by {{resource_name}}", "bars"),
        ("timeseries", f"p95:trace.flask.request{{{traces}}}", "line"),
        ("timeseries", f"sum:trace.flask.request.errors{{{traces}}} by {{resource_name}}", "bars"),
        ("timeseries", f"avg:system.cpu.user{{{scope(stack_eval)}}} by {{host}}", "line"),
        ("timeseries", f"avg:system.load.1{{{scope(stack_eval)}}} by {{host}}", "line"),
        ("timeseries", f"avg:system.processes.cpu.pct{{{scope(stack_eval)}}} by {{process_name}}", "line"),
        # Issue 20: the app's SLOs (their ids as created) and its error and warning log lines.
        ("serviceLevelObjective", stack_eval.outputs["sloIds"]["availability"], "detail"),
        ("serviceLevelObjective", stack_eval.outputs["sloIds"]["latency"], "detail"),
        ("logStream", f"service:{SERVICE} env:{env} status:(error OR warn) $host", "expanded-md"),
    ]
    slos = [w["serviceLevelObjectiveDefinition"] for w in board["widgets"] if "serviceLevelObjectiveDefinition" in w]
    # The SLOs' own timeframe (30d) and the shorter one, with the budget left.
    assert [(w["timeWindows"], w["showErrorBudget"]) for w in slos] == [(["7d", "30d"], True)] * 2


def test_every_timeseries_overlays_the_stacks_change_events(stack_eval):
    # converge.sh tags its events source:observability-lab and env (tests/host/test_converge_script.py).
    for key, board in dashboards(stack_eval).items():
        series = [w["timeseriesDefinition"] for w in board["widgets"] if "timeseriesDefinition" in w]
        assert series, key
        assert all(w["events"] == [{"q": f"source:observability-lab env:{stack_eval.stack}"}] for w in series), key


def test_slo_widgets_follow_the_slo_timeframe(run_stack):
    board = dashboards(run_stack("dev", DEV_DATADOG))["apm"]  # SLO_WIDGETS: sloTimeframe 90d
    windows = [w["serviceLevelObjectiveDefinition"]["timeWindows"] for w in board["widgets"]
               if "serviceLevelObjectiveDefinition" in w]
    assert windows == [["7d", "30d", "90d"]] * 2


def test_service_setting_rescopes_the_apm_queries(run_stack):
    board = dashboards(run_stack("dev", {"service": "checkout"}))["apm"]
    trace_queries = [q for _, q, _ in widgets(board) if "trace." in q]
    assert len(trace_queries) == 3
    assert all("service:checkout,env:dev,$host" in q for q in trace_queries)


def test_host_template_variable_lists_the_stacks_hosts_and_shows_them_all(stack_eval):
    env = stack_eval.stack
    for key, board in dashboards(stack_eval).items():
        assert board["templateVariables"] == [{"name": "host", "prefix": "host", "defaults": ["*"],
                                               "availableValues": hostnames(stack_eval.stack)}], key
        # Every query is filtered by the variable, so the board follows it, and by the
        # stack's env (and, for host metrics, its project tag): `*` is this stack's hosts.
        # (An SLO widget has no query: its SLO covers the stack's service and env, on every host.)
        for kind, query, _ in widgets(board):
            if kind == "serviceLevelObjective":
                continue
            assert "$host" in query and f"env:{env}" in query, (key, query)
            assert ("project:observability-lab" in query or f"service:{SERVICE},env:{env}" in query
                    or f"service:{SERVICE} env:{env}" in query), (key, query)


def test_titles_and_descriptions_carry_env_hosts_and_service(stack_eval):
    env, count = stack_eval.stack, HOSTS[stack_eval.stack]
    for key, board in dashboards(stack_eval).items():
        assert board["title"].startswith(f"[{env}] "), key
        assert f"env {env}" in board["description"], key
        assert f"the {env} stack's {count} host" in board["description"], key
        # The Dashboard API only takes team:<name> tags; env/service live in the text instead.
        assert all(tag.startswith("team:") for tag in board.get("tags", [])), key
    assert SERVICE in dashboards(stack_eval)["apm"]["title"]


def test_dashboard_urls_are_exported(stack_eval):
    # The mock engine assigns no `url`, so the values stay empty offline.
    features = {"dev": {"bikeShare", "javaApp"}, "prod": set()}[stack_eval.stack]
    assert set(stack_eval.outputs["dashboardUrls"]) == {"timeboard", "apm"} | features
