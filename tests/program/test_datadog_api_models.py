"""Every monitor, dashboard and downtime schedule, as the provider would send it, is a
valid request for Datadog's own API models (datadog-api-client): no unknown field, no
value outside an enum, no node the models cannot parse, every type right.

See tests/datadog_api_bodies.py for how a resource's inputs become the request body.
"""
from __future__ import annotations

import copy

import pytest
from datadog_api_client.exceptions import ApiTypeError

from tests.support.datadog_api_bodies import REQUESTS, monitor_body, problems


def datadog_resources(evaluation):
    return [r for r in evaluation.resources if r.type.startswith("datadog:")]


def test_every_datadog_resource_has_a_request_model(stack_eval):
    assert {r.type for r in datadog_resources(stack_eval)} <= set(REQUESTS)


def test_every_request_body_fits_the_api_models(stack_eval):
    checked = 0
    for resource in datadog_resources(stack_eval):
        build, model = REQUESTS[resource.type]
        assert problems(build(resource.inputs), model) == [], resource.name
        checked += 1
    # dev: the bike-share and Java monitors and boards; both: 2 SLOs, their 6 burn-rate alerts, the log monitor
    assert checked == {"dev": 30, "prod": 15}[stack_eval.stack]


@pytest.fixture
def my_metric_body(dev):
    (monitor,) = [r for r in dev.resources if r.name == "datadog-monitors-my-metric"]
    return monitor_body(monitor.inputs)


def test_an_unknown_field_is_caught(my_metric_body):
    my_metric_body["options"]["notify_nodata"] = True
    assert problems(my_metric_body, REQUESTS["datadog:index/monitor:Monitor"][1]) == [
        "Monitor.options.notify_nodata: not a field of MonitorOptions"]


def test_a_value_outside_an_enum_is_caught(my_metric_body):
    my_metric_body["type"] = "metric alrt"
    (problem,) = problems(my_metric_body, REQUESTS["datadog:index/monitor:Monitor"][1])
    assert problem.startswith("Monitor.type: 'metric alrt' is not one of [")


def test_a_wrong_type_is_caught(my_metric_body):
    my_metric_body["options"]["no_data_timeframe"] = "10"
    with pytest.raises(ApiTypeError):
        problems(my_metric_body, REQUESTS["datadog:index/monitor:Monitor"][1])


def test_a_widget_no_variant_parses_is_caught(dev):
    build, model = REQUESTS["datadog:index/dashboard:Dashboard"]
    (board,) = [r for r in dev.resources if r.name == "datadog-dashboards-timeboard"]
    body = build(board.inputs)
    body["widgets"][2]["definition"]["time"] = {"live_span": "1hour"}
    (problem,) = problems(copy.deepcopy(body), model)
    assert problem.startswith("Dashboard.widgets[2].definition: matches none of the model's variants")


def test_an_input_without_a_mapping_fails(my_metric_body, dev):
    (monitor,) = [r for r in dev.resources if r.name == "datadog-monitors-my-metric"]
    with pytest.raises(AssertionError, match=r"no mapping to the API body for inputs \['renotifyInterval'\]"):
        monitor_body({**monitor.inputs, "renotifyInterval": 30})
