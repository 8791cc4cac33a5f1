"""Unit tests for the custom_my_metric Agent check, run against the real datadog_checks.base stubs."""
import json
import os
import random
import string

import pytest
import yaml
from datadog_checks.base import ConfigurationError
from datadog_checks.base.stubs import aggregator

from tests.support.agent_checks import AGENT_DIR, load_check_module

CONF_TMPL_PATH = os.path.join(AGENT_DIR, "conf.d", "custom_my_metric.yaml.tmpl")

check_module = load_check_module("custom_my_metric")


def make_check(instance):
    return check_module.MyMetricCheck("custom_my_metric", {}, [instance])


# The stub aggregator is emptied around every test. Its generic-tag rule stays on: the check
# never tags env or service itself (the Agent adds service:<service> from the instance's option).
pytestmark = pytest.mark.usefixtures("aggregator")


def run_values(check, runs):
    for _ in range(runs):
        check.check(None)
    return [m.value for m in aggregator.metrics("my_metric")]


def test_version():
    assert check_module.__version__ == "2.0.0"


def test_single_run_submits_one_tagged_gauge():
    tags = ["team:sre", "role:demo"]
    make_check({"tags": tags}).check(None)

    aggregator.assert_metric("my_metric", metric_type=aggregator.GAUGE, tags=tags, count=1)
    aggregator.assert_all_metrics_covered()
    assert aggregator.metric_names == ["my_metric"]


def test_default_range_values_are_integers_in_0_1000():
    random.seed(1234)
    values = run_values(make_check({}), 5000)

    assert len(values) == 5000
    assert all(v.is_integer() and 0 <= v <= 1000 for v in values)
    # A sane spread shows the default range is really 0..1000, not something narrower.
    assert min(values) < 10 and max(values) > 990


def test_both_ends_reachable_small_range():
    random.seed(42)
    values = run_values(make_check({"min_value": 0, "max_value": 3}), 400)

    assert set(values) == {0.0, 1.0, 2.0, 3.0}


def test_default_range_ends_reachable_with_min_equal_max():
    # min == max is allowed and pins the value, proving both default ends are valid bounds.
    assert run_values(make_check({"min_value": 0, "max_value": 0}), 3) == [0.0] * 3
    aggregator.reset()
    assert run_values(make_check({"min_value": 1000, "max_value": 1000}), 3) == [1000.0] * 3


@pytest.mark.parametrize(
    "instance, option",
    [
        ({"min_value": "abc"}, "min_value"),
        ({"max_value": "10"}, "max_value"),
        ({"min_value": 1.5}, "min_value"),
        ({"max_value": 10.0}, "max_value"),
        ({"min_value": None}, "min_value"),
        ({"min_value": True}, "min_value"),
        ({"max_value": False}, "max_value"),
        ({"min_value": 10, "max_value": 5}, "min_value"),
        ({"min_value": -1}, "min_value"),
        ({"max_value": 1000001}, "max_value"),
        ({"tags": "env:dev"}, "tags"),
        ({"tags": ["env:dev", 3]}, "tags"),
        ({"tags": None}, "tags"),
    ],
)
def test_bad_instance_raises_configuration_error(instance, option):
    with pytest.raises(ConfigurationError) as excinfo:
        make_check(instance)
    message = str(excinfo.value)
    assert message.startswith("custom_my_metric: ")
    assert option in message


def test_error_message_names_option_value_and_allowed():
    with pytest.raises(ConfigurationError, match=r"^custom_my_metric: min_value must be an integer, got 'abc'$"):
        make_check({"min_value": "abc"})
    with pytest.raises(ConfigurationError, match=r"max_value must be between 0 and 1000000, got 1000001"):
        make_check({"max_value": 1000001})


def test_conf_template_renders_to_valid_instance():
    with open(CONF_TMPL_PATH) as f:
        rendered = string.Template(f.read()).substitute(agent_check_interval_seconds=30, stack_service_json=json.dumps("1.0"))
    conf = yaml.safe_load(rendered)

    (instance,) = conf["instances"]
    # `service` is the Agent's instance option (it tags every submission), and stays a
    # string even when it looks like a number.
    assert instance == {"min_collection_interval": 30, "min_value": 0, "max_value": 1000, "service": "1.0"}
    check = check_module.MyMetricCheck("custom_my_metric", conf["init_config"] or {}, conf["instances"])
    check.check(None)
    aggregator.assert_metric("my_metric", metric_type=aggregator.GAUGE, tags=[], count=1)
    aggregator.assert_all_metrics_covered()
