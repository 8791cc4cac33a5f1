"""The app's SLOs and their burn-rate alerts, as registered, per stack (rendering/slos.py)."""

from __future__ import annotations

import re

import pytest

from settings.slo import BurnRate, max_burn_rate, parse_burn_rate
from tests.support import SERVICE
from tests.support.resource_types import MONITOR, SLO, SLOS
from tests.support.shared_settings import PROD_DATADOG

PAGE = {"dev": ["@sre-dev@example.com"], "prod": ["@pagerduty-observability-lab", "@sre-oncall@example.com"]}
TICKET = {"dev": ["@sre-dev@example.com"], "prod": ["@sre-team@example.com"]}
# The SRE workbook's pairs (chapter 5, "Alerting on SLOs", table 5-8), and Datadog's longest window.
PAIRS = {"PageFast": ("14.4", "1h", "5m", "page"), "PageSlow": ("6", "6h", "30m", "page"),
         "Ticket": ("1.5", "48h", "4h", "ticket")}
BURN = re.compile(r'burn_rate\("(\d+)"\)\.over\("(\w+)"\)\.long_window\("(\w+)"\)\.short_window\("(\w+)"\) > (\S+)')


def slos(evaluation) -> dict[str, dict]:
    return {r.name.removeprefix("datadog-slos-"): r.inputs for r in evaluation.of_type(SLO)}


def alerts_by_name(evaluation) -> dict[str, dict]:
    return {r.name.removeprefix("datadog-slos-"): r.inputs for r in evaluation.of_type(MONITOR)
            if r.inputs["type"] == "slo alert"}


def test_one_component_owns_both_slos_and_their_six_alerts(stack_eval):
    component = stack_eval.one(SLOS)
    children = stack_eval.children_of(component)
    assert sorted(r.name for r in children if r.type == SLO) == ["datadog-slos-availability", "datadog-slos-latency"]
    assert len([r for r in children if r.type == MONITOR]) == 6
    assert set(stack_eval.outputs["sloIds"]) == {"availability", "latency"}
    assert [r.name for r in stack_eval.of_type(MONITOR) if r.inputs["type"] == "slo alert"
            and r not in children] == []


def test_availability_is_good_requests_over_requests_from_the_trace_metrics(stack_eval):
    slo, env = slos(stack_eval)["availability"], stack_eval.stack
    scope = f"service:{SERVICE},env:{env}"
    hits = f"sum:trace.flask.request.hits{{{scope}}}.as_count()"
    assert slo["type"] == "metric"
    assert slo["query"] == {"numerator": f"{hits} - sum:trace.flask.request.errors{{{scope}}}.as_count()",
                            "denominator": hits}
    assert slo["thresholds"] == [{"timeframe": "30d", "target": 99.5}]
    assert (slo["timeframe"], slo["targetThreshold"]) == ("30d", 99.5)
    assert slo["name"] == f"[{env}] {SERVICE} availability"
    assert slo["tags"] == [f"env:{env}", f"service:{SERVICE}", "managed-by:pulumi"]


def test_latency_is_the_share_of_five_minute_slices_within_the_p95_threshold(stack_eval):
    slo, env = slos(stack_eval)["latency"], stack_eval.stack
    assert slo["type"] == "time_slice" and "query" not in slo
    spec = slo["sliSpecification"]["timeSlice"]
    assert (spec["comparator"], spec["threshold"], spec["queryIntervalSeconds"]) == ("<=", 1.0, 300)
    assert spec["query"]["formula"] == {"formulaExpression": "query1"}
    assert spec["query"]["queries"] == [{"metricQuery": {
        "name": "query1", "dataSource": "metrics", "query": f"p95:trace.flask.request{{service:{SERVICE},env:{env}}}"}}]
    assert slo["thresholds"] == [{"timeframe": "30d", "target": 99.0}]


def test_each_slo_has_the_workbooks_three_burn_rate_alerts_each_to_its_own_handles(stack_eval):
    env, ids = stack_eval.stack, stack_eval.outputs["sloIds"]
    alerts = alerts_by_name(stack_eval)
    assert len(alerts) == 6
    for slo in ("availability", "latency"):
        for key, (rate, long, short, severity) in PAIRS.items():
            m = alerts[f"{slo}-burn-{key.lower()}"]
            assert BURN.fullmatch(m["query"]).groups() == (ids[slo], "30d", long, short, rate), m["query"]
            assert m["monitorThresholds"] == {"critical": rate}  # the query's number, from one value
            assert m["name"] == f"[{env}] {SERVICE} {slo} SLO burning {rate}x over {long} and {short} ({severity})"
            handles = PAGE[env] if severity == "page" else TICKET[env]
            assert m["message"].splitlines()[-1] == " ".join(handles)
            assert m["notifyNoData"] is False
            assert m["tags"] == [f"env:{env}", f"service:{SERVICE}", "managed-by:pulumi"]
    assert {k for k in stack_eval.outputs["monitorIds"] if k.startswith(("availability", "latency"))} == {
        f"{slo}{key}" for slo in ("availability", "latency") for key in PAIRS}


def test_the_alert_messages_say_how_much_budget_the_burn_spends(prod):
    alerts = alerts_by_name(prod)
    # 14.4x for 1 h of a 30-day budget: 2 %; 6x for 6 h: 5 %; 1.5x for 48 h: 10 % (the workbook's figures).
    for key, spent in (("pagefast", "2%"), ("pageslow", "5%"), ("ticket", "10%")):
        assert f"({spent} of the budget in" in alerts[f"availability-burn-{key}"]["message"], key


def test_targets_timeframe_windows_and_handles_follow_the_settings(run_stack):
    evaluation = run_stack("prod", PROD_DATADOG)  # SLOS: 7d, 99.9 and 95 (0.3 s), these burn rates and handles
    found = slos(evaluation)
    assert found["availability"]["thresholds"] == [{"timeframe": "7d", "target": 99.9}]
    assert found["latency"]["thresholds"] == [{"timeframe": "7d", "target": 95.0}]
    assert found["latency"]["sliSpecification"]["timeSlice"]["threshold"] == 0.3
    alerts = alerts_by_name(evaluation)
    fast, ticket = alerts["latency-burn-pagefast"], alerts["latency-burn-ticket"]
    assert BURN.fullmatch(fast["query"]).groups()[1:] == ("7d", "2h", "10m", "10")
    assert BURN.fullmatch(ticket["query"]).groups()[1:] == ("7d", "24h", "2h", "2")
    assert fast["message"].splitlines()[-1] == "@pager" and ticket["message"].splitlines()[-1] == "@jira-sre"


def test_burn_rate_settings_parse_into_datadogs_windows():
    assert parse_burn_rate("14.4x 1h/5m") == BurnRate(14.4, 60, 5)
    assert parse_burn_rate("1.5x 2d/240m") == BurnRate(1.5, 2880, 240)
    assert (BurnRate(1.5, 2880, 240).long, BurnRate(1.5, 2880, 240).short) == ("48h", "4h")
    assert BurnRate(6, 90, 45).long == "90m"
    assert str(parse_burn_rate("6x 6h/30m")) == "6x 6h/30m"
    assert max_burn_rate(99.5) == pytest.approx(200) and max_burn_rate(90) == pytest.approx(10)
    # Values Datadog would refuse: tests/program/test_settings.py (BAD_SETTINGS).
