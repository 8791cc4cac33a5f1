"""Dashboards: every widget's query, type and scope, and the host template variable, per stack."""

from __future__ import annotations

import re

DASHBOARD = "datadog:index/dashboard:Dashboard"
COMPONENT = "observability-lab:datadog:Dashboards"
SERVICE = "sample-flask-app"


def dashboards(evaluation) -> dict[str, dict]:
    """The exercise's two boards (the bike-share board is tests/test_bike_share_stack.py's)."""
    return {r.name.removeprefix("datadog-dashboards-"): r.inputs for r in evaluation.of_type(DASHBOARD)
            if r.name.startswith("datadog-dashboards-")}


def widgets(dashboard: dict) -> list[tuple[str, str, str]]:
    """(widget type, the query as one classic expression, display type or aggregator) per widget."""
    found = []
    for widget in dashboard["widgets"]:
        (kind, definition), = widget.items()
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
    component = stack_eval.one(COMPONENT)
    found = stack_eval.children_of(component)
    assert {r.name for r in found} == {"datadog-dashboards-timeboard", "datadog-dashboards-apm"}
    assert {r.name for r in stack_eval.of_type(DASHBOARD)} - {r.name for r in found} <= {"bike-share-dashboard"}


def test_timeboard_widgets_reproduce_the_seed_scoped_to_host(stack_eval):
    board = dashboards(stack_eval)["timeboard"]
    assert board["layoutType"] == "ordered"
    assert widgets(board) == [
        ("timeseries", "avg:my_metric{$host} by {host}", "line"),
        ("timeseries", "anomalies(avg:mysql.performance.cpu_time{$host}, 'basic', 2)", "line"),
        ("queryValue", "avg:my_metric{$host}.rollup(sum, 3600)", "sum"),
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
        ("timeseries", f"avg:system.cpu.user{{env:{env},$host}} by {{host}}", "line"),
        ("timeseries", f"avg:system.load.1{{env:{env},$host}} by {{host}}", "line"),
        ("timeseries", f"avg:system.processes.cpu.pct{{env:{env},$host}} by {{process_name}}", "line"),
    ]


def test_service_setting_rescopes_the_apm_queries(run_stack):
    board = dashboards(run_stack("dev", {"service": "cars-app"}))["apm"]
    trace_queries = [q for _, q, _ in widgets(board) if "trace." in q]
    assert len(trace_queries) == 3
    assert all("service:cars-app,env:dev,$host" in q for q in trace_queries)


def test_host_template_variable_defaults_to_this_stacks_host(stack_eval):
    host = f"observability-lab-{stack_eval.stack}"
    for key, board in dashboards(stack_eval).items():
        assert board["templateVariables"] == [{"name": "host", "prefix": "host", "defaults": [host]}], key
        # Every query is filtered by the variable, so the board follows it.
        assert all("$host" in query for _, query, _ in widgets(board)), key


def test_titles_and_descriptions_carry_env_host_and_service(stack_eval):
    env, host = stack_eval.stack, f"observability-lab-{stack_eval.stack}"
    for key, board in dashboards(stack_eval).items():
        assert board["title"].startswith(f"[{env}] ") and host in board["title"], key
        assert f"env {env}" in board["description"], key
        # The Dashboard API only takes team:<name> tags; env/service live in the text instead.
        assert all(tag.startswith("team:") for tag in board.get("tags", [])), key
    assert SERVICE in dashboards(stack_eval)["apm"]["title"]


def test_dashboard_urls_are_exported(stack_eval):
    # The mock engine assigns no `url`, so the values stay empty offline.
    bike_share = {"dev": {"bikeShare"}, "prod": set()}[stack_eval.stack]
    assert set(stack_eval.outputs["dashboardUrls"]) == {"timeboard", "apm"} | bike_share
