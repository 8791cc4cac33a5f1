"""Stack settings: the committed stacks are valid, defaults match the seed, bad input is refused."""

from __future__ import annotations

import ast
import dataclasses

import pytest
import yaml

from offline.engine import config_key, stack_config, stack_settings
from settings.declare import Secret, declarations
from settings.stack import SECTIONS
from settings.validation import SettingsError, is_datadog_tag, is_handle, is_hostname
from tests.support import ROOT


def settings_for(stack: str, **overrides):
    return stack_settings(stack, overrides)


def test_both_stacks_evaluate_and_register_resources(stack_eval):
    assert stack_eval.error is None
    assert stack_eval.outputs["environment"] == stack_eval.stack


def test_defaults_reproduce_the_seed():
    # Remove every key the dev stack sets, so only the program's defaults remain.
    s = settings_for("dev", **{k: None for k in (
        "instanceType", "hostTags", "notificationHandles", "downtimesEnabled", "downtimeTimezone")})
    assert s.stack.env == "dev"
    assert s.stack.service == "sample-flask-app"
    assert s.agent.check_interval_seconds == 45
    assert s.agent.host_tags == ("name:cars_app",)
    assert s.naming.stack_host_tags == ("env:dev", "project:observability-lab")  # added by the program
    assert (s.monitors.my_metric_warning, s.monitors.my_metric_critical) == (500, 800)
    assert s.monitors.my_metric_window_minutes == 5
    assert s.monitors.no_data_minutes == 10
    assert s.downtimes.enabled is True
    assert s.downtimes.timezone == "America/New_York"
    assert s.host.instance_type == "t3.small"
    assert s.host.app_port == 5050
    assert s.host.app_allowed_cidrs == ()
    assert (s.host.ubuntu_release, s.host.ubuntu_codename) == ("24.04", "noble")
    assert s.host.ami_id is None
    assert s.host.root_volume_gib == 20
    assert s.stack.datadog_site == "datadoghq.com"
    assert s.host.count == 1
    assert s.naming.datadog_hostnames == ("observability-lab-dev-1",)
    assert (s.bike_share.service, s.bike_share.feed_url) == (
        "bike-share", "https://gbfs.citibikenyc.com/gbfs/2.3/gbfs.json")
    assert all(h.startswith("@") for h in s.monitors.notification_handles)


def test_stacks_differ_where_environments_differ():
    dev, prod = settings_for("dev"), settings_for("prod")
    assert dev.stack.env != prod.stack.env
    assert dev.host.instance_type != prod.host.instance_type
    assert dev.monitors.notification_handles != prod.monitors.notification_handles
    assert dev.downtimes.enabled and not prod.downtimes.enabled
    assert not set(dev.naming.datadog_hostnames) & set(prod.naming.datadog_hostnames)
    assert (dev.host.count, prod.host.count) == (1, 2)


def test_settings_are_immutable():
    s = settings_for("dev")
    with pytest.raises(AttributeError):
        s.stack.env = "prod"  # type: ignore[misc]


def test_config_values_are_parsed_to_types():
    s = settings_for("dev", checkIntervalSeconds="90", myMetricWarning="450.5",
                     appAllowedCidrs=["203.0.113.0/24"], downtimesEnabled="false")
    assert s.agent.check_interval_seconds == 90
    assert s.monitors.my_metric_warning == 450.5
    assert s.host.app_allowed_cidrs == ("203.0.113.0/24",)
    assert s.downtimes.enabled is False


# (override, text that must appear in the error besides the key and value)
BAD_SETTINGS = {
    "unknown environment": ({"environment": "qa"}, "allowed: dev, staging, prod"),
    "warning >= critical": ({"myMetricWarning": 800, "myMetricCritical": 800}, "must be below"),
    "warning above critical": ({"myMetricWarning": 900}, "must be below"),
    "non-positive interval": ({"checkIntervalSeconds": 0}, "from 15 to 86400"),
    "too short interval": ({"checkIntervalSeconds": 10}, "from 15 to 86400"),
    "absurd interval": ({"checkIntervalSeconds": 86401}, "from 15 to 86400"),
    "non-numeric interval": ({"checkIntervalSeconds": "often"}, "must be an integer"),
    "malformed CIDR": ({"appAllowedCidrs": ["10.0.0.300/24"]}, "must be a CIDR block"),
    "CIDR with host bits": ({"appAllowedCidrs": ["10.0.0.1/8"]}, "must be a CIDR block"),
    "world on an SSH-like port": ({"appPort": 22, "appAllowedCidrs": ["0.0.0.0/0"]}, "whole internet"),
    "world v6 on RDP": ({"appPort": 3389, "appAllowedCidrs": ["::/0"]}, "whole internet"),
    "invalid timezone": ({"downtimeTimezone": "Mars/Olympus_Mons"}, "IANA timezone"),
    "handle without @": ({"notificationHandles": ["ops@example.com"]}, "starting with @"),
    "handles not a list": ({"notificationHandles": "@ops"}, "list of strings"),
    "tag without value": ({"hostTags": ["cars_app"]}, "key:value"),
    "uppercase tag": ({"hostTags": ["Name:Cars"]}, "lowercase"),
    "env in host tags": ({"hostTags": ["env:integration_test"]}, "set from the stack"),
    "project in host tags": ({"hostTags": ["project:other"]}, "set by the program"),
    "no host": ({"hostCount": 0}, "from 1 to 50"),
    "too many hosts": ({"hostCount": 51}, "from 1 to 50"),
    "host count not a number": ({"hostCount": "two"}, "must be an integer"),
    "unknown Ubuntu release": ({"ubuntuRelease": "16.04"}, "allowed: 22.04, 24.04"),
    "malformed AMI id": ({"amiId": "ami-XYZ"}, "AMI id"),
    "image serial not a build date": ({"ubuntuImageSerial": "latest"}, "image serial (build date)"),
    "empty service name": ({"service": ""}, "non-empty"),
    "bad instance type": ({"instanceType": "huge"}, "instance type"),
    "bad boolean": ({"downtimesEnabled": "yes"}, "true or false"),
    "Agent too old for the SSM secret backend": ({"agentVersion": "7.69.0"}, ">= 7.70.0"),
    "Agent version not exact": ({"agentVersion": "latest"}, ">= 7.70.0"),
    "overhead bounds reversed": ({"setupOverheadMinMs": 900, "setupOverheadMaxMs": 100}, "must not exceed"),
    "IP in URL allowlist": ({"urlLookupAllowlist": ["169.254.169.254"]}, "DNS hostname"),
    "URL in URL allowlist": ({"urlLookupAllowlist": ["http://example.com"]}, "DNS hostname"),
    "empty URL allowlist": ({"urlLookupAllowlist": []}, "at least one host"),
    # A trailing newline would end the line in app.env and datadog.yaml and start another.
    "hostname with a trailing newline": ({"urlLookupAllowlist": ["example.com\n", "docs.datadoghq.com"]},
                                         "DNS hostname"),
    "tag with a trailing newline": ({"hostTags": ["team:sre\n"]}, "key:value"),
    "handle with a trailing newline": ({"notificationHandles": ["@ops\n"]}, "starting with @"),
    "no watched process": ({"watchedProcesses": []}, "at least one process"),
    "no gunicorn worker": ({"appWorkers": 0}, "from 1 to 32"),
    "MySQL package not a package name": ({"mysqlServerPackage": "mysql server; rm -rf /"}, "Debian package name"),
    "deployer as an assumed-role session": (
        {"deployerArns": ["arn:aws:sts::123456789012:assumed-role/deploy/ci"]}, "not an assumed-role session"),
    # Issue 20: the traffic generator, the log monitor, the SLOs and their burn-rate alerts.
    "traffic rate zero": ({"appTrafficRequestsPerSecond": 0}, "from 0.1 to 50"),
    "traffic rate beyond its bound": ({"appTrafficRequestsPerSecond": 51}, "from 0.1 to 50"),
    "traffic mix above 100 percent": ({"appTrafficUrlLookupPercent": 99.9, "appTrafficFailPercent": 0.2},
                                      "at most 100 (percent of requests)"),
    "deliberate failures spend the budget": ({"appTrafficFailPercent": 0.5}, "the error budget of"),
    "traffic switch not a boolean": ({"appTrafficEnabled": "on"}, "true or false"),
    "log threshold beyond its bound": ({"appErrorLogsPerHost": 100001}, "from 1 to 100000"),
    "SLO timeframe Datadog alerts cannot use": ({"sloTimeframe": "custom"}, "allowed: 7d, 30d, 90d"),
    "SLO target below 90": ({"sloAvailabilityTarget": 80}, "from 90 to 99.99"),
    "burn rate long window above Datadog's 48 h": ({"sloTicketBurn": "1x 3d/4h"}, "1 hour to 48 hours"),
    "burn rate above what the target allows": ({"sloPageSlowBurn": "101x 6h/30m"}, "can burn (every request bad)"),
    "page handle without @": ({"sloPageHandles": ["pager"]}, "starting with @"),
    "no ticket handle": ({"sloTicketHandles": []}, "at least one handle"),
    "SLO target 100": ({"sloLatencyTarget": 100}, "from 90 to 99.99"),
    "burn rate not in the form": ({"sloPageFastBurn": "fast"}, "`<rate>x <long window>/<short window>`"),
    "burn rate long window below 1 h": ({"sloPageFastBurn": "14.4x 30m/5m"}, "1 hour to 48 hours"),
    "burn rate short window not shorter": ({"sloPageSlowBurn": "6x 6h/6h"}, "shorter than its long window"),
    "burn rate zero": ({"sloPageSlowBurn": "0x 6h/30m"}, "above 0"),
    # Each alert watches both SLOs: the lower target bounds the rate (95 %: at most 20).
    "burn rate beyond a lowered latency target": ({"sloLatencyTarget": 95, "sloPageFastBurn": "25x 1h/5m"},
                                                  "the most an SLO of target 95%"),
    "missing region": ({"aws:region": None}, "AWS region"),
    "missing API key": ({"datadog:apiKey": None}, "--secret datadog:apiKey"),
    "unknown Datadog site": ({"datadog:apiUrl": "https://api.example.com/"}, "https://api.<site>/"),
}


@pytest.mark.parametrize("overrides,message", BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_bad_setting_is_rejected_before_anything_is_created(run_stack_allowing_errors, overrides, message):
    evaluation = run_stack_allowing_errors("dev", overrides)
    assert isinstance(evaluation.error, SettingsError), evaluation.error
    text = str(evaluation.error)
    assert message in text
    for key, value in overrides.items():
        assert config_key(key) in text
        if value is not None and not isinstance(value, list):
            assert str(value) in text
    assert evaluation.resources == [], [r.name for r in evaluation.resources]


@pytest.mark.parametrize("check, value", [
    (is_hostname, "example.com"), (is_datadog_tag, "team:sre"), (is_handle, "@ops"),
])
def test_validators_match_the_whole_value(check, value):
    assert check(value)
    for suffix in ("\n", "\r\n", " ", "\x00"):
        assert not check(value + suffix), repr(value + suffix)


def test_all_problems_are_reported_together(run_stack_allowing_errors):
    evaluation = run_stack_allowing_errors("prod", {
        "environment": "qa", "checkIntervalSeconds": 5, "amiId": "ami-1",
        "notificationHandles": ["oncall"], "downtimeTimezone": "Nowhere/Town",
    })
    assert isinstance(evaluation.error, SettingsError)
    assert len(evaluation.error.problems) == 5
    for fragment in ("'qa'", "'5'", "'ami-1'", "'oncall'", "'Nowhere/Town'"):
        assert fragment in str(evaluation.error)
    assert evaluation.resources == []


def test_the_new_settings_problems_are_reported_together_with_the_others(run_stack_allowing_errors):
    evaluation = run_stack_allowing_errors("dev", {
        "checkIntervalSeconds": 5, "appTrafficRequestsPerSecond": 500, "sloTicketBurn": "1x 1w/1d",
        "sloPageFastBurn": "500x 1h/5m", "sloTimeframe": "1y", "appErrorLogsPerHost": -1,
        "apmLatencySeconds": 1,
    })
    assert isinstance(evaluation.error, SettingsError)
    problems = evaluation.error.problems
    assert [p.split(" = ")[0].removeprefix("observability-lab:") for p in problems] == [
        "checkIntervalSeconds", "appTrafficRequestsPerSecond", "appErrorLogsPerHost", "sloTimeframe",
        "sloTicketBurn", "sloPageFastBurn", "apmLatencySeconds"]  # values read, then each section's rules
    assert evaluation.resources == []


def test_slo_and_traffic_defaults(settings_of):
    dev, prod = settings_of("dev"), settings_of("prod")
    assert (prod.slos.timeframe, prod.slos.availability_target, prod.slos.latency_target) == ("30d", 99.5, 99.0)
    assert [str(b) for b in (prod.slos.page_fast, prod.slos.page_slow, prod.slos.ticket)] == [
        "14.4x 1h/5m", "6x 6h/30m", "1.5x 48h/4h"]
    assert dev.app.traffic_enabled and not prod.app.traffic_enabled  # opt-in per stack: dev on
    assert (dev.app.traffic_requests_per_second, dev.app.traffic_url_lookup_percent,
            dev.app.traffic_fail_percent) == (2.0, 5.0, 0.25)
    # The deliberate failures stay well inside the availability SLO's budget (0.5 %).
    assert dev.app.traffic_fail_percent < 100 - dev.slos.availability_target


def test_every_setting_is_declared_once_with_its_key_kind_default_and_meaning():
    keys = [declared.full_key for section in SECTIONS for _, declared in declarations(section)]
    assert len(keys) == len(set(keys)), "a key declared twice"
    assert {"observability-lab:environment", "observability-lab:checkIntervalSeconds", "aws:region",
            "datadog:apiKey", "observability-lab:bikeShareFeedUrl"} <= set(keys)
    for section in SECTIONS:
        for name, declared in declarations(section):
            assert declared.meaning and declared.kind.describe(), (section.__name__, name)
    # Every field of a section is a declared setting: nothing reaches a component undeclared.
    for section in SECTIONS:
        assert [f.name for f in dataclasses.fields(section)] == [name for name, _ in declarations(section)]


def test_the_committed_stacks_set_only_declared_settings():
    declared = {d.full_key for section in SECTIONS for _, d in declarations(section)}
    for stack in ("dev", "prod"):
        config, _ = stack_config(stack)
        assert set(config) - declared == set(), stack


# What `pulumi config set datadog:apiKey <key>` without `--secret` leaves in Pulumi.<stack>.yaml.
PLAIN_API_KEY = "0123456789abcdef0123456789abcdef"
SECRET_KEYS = {d.full_key for section in SECTIONS for _, d in declarations(section)
               if isinstance(d.kind, Secret)}


def plain_secrets(stack_file_text: str) -> list[str]:
    """The secret keys a stack file holds in clear (anything but Pulumi's `{secure: ...}`)."""
    config = (yaml.safe_load(stack_file_text) or {}).get("config") or {}
    return sorted(config_key(key) for key, value in config.items()
                  if config_key(key) in SECRET_KEYS and not (isinstance(value, dict) and set(value) == {"secure"}))


def test_the_committed_stacks_hold_secrets_only_encrypted():
    assert {"datadog:apiKey", "datadog:appKey"} <= SECRET_KEYS
    for stack in ("dev", "prod"):
        assert plain_secrets((ROOT / f"Pulumi.{stack}.yaml").read_text()) == [], stack
    # The check itself tells the two apart.
    assert plain_secrets(f"config:\n  datadog:appKey: {PLAIN_API_KEY}\n  datadog:apiKey:\n    secure: AAABAx\n") == [
        "datadog:appKey"]


@pytest.mark.parametrize("key", ["datadog:apiKey", "datadog:appKey"])
@pytest.mark.parametrize("value, refused", [(PLAIN_API_KEY, True), ("\n    secure: AAABAKV2ZXJzaW9u", False)],
                         ids=["plain text", "encrypted"])
def test_a_secret_in_plain_text_in_the_stack_file_is_refused_without_showing_it(tmp_path, key, value, refused):
    """Both readers (the program under the engine, and rendering from the file alone) refuse a
    Datadog key the stack file holds in clear (the API key, a setting; the application key, the
    provider's own), say how to set it, and never echo it."""
    from offline.engine import evaluate

    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text((ROOT / "Pulumi.dev.yaml").read_text() + f"  {key}: {value}\n")
    evaluation = evaluate("dev", stack_file=stack_file)
    if not refused:
        assert evaluation.error is None, evaluation.error
        stack_settings("dev", stack_file=stack_file)
        return
    assert isinstance(evaluation.error, SettingsError), evaluation.error
    assert evaluation.resources == [], [r.name for r in evaluation.resources]
    with pytest.raises(SettingsError) as rendered:
        stack_settings("dev", stack_file=stack_file)
    for error in (evaluation.error, rendered.value):
        text = str(error)
        assert text.count(key) == 3 and f"pulumi config set --secret {key} <value>" in text, text
        assert PLAIN_API_KEY not in text and len(error.problems) == 1, text


def test_settings_are_read_in_one_module_only():
    program = [ROOT / "__main__.py", *(p for d in ("components", "rendering", "settings", "offline")
                                       for p in (ROOT / d).glob("*.py"))]
    readers = [p.relative_to(ROOT).as_posix() for p in program if "pulumi.Config" in p.read_text()]
    assert readers == ["settings/stack.py"]


def test_components_take_their_sections_never_the_whole_settings():
    """A component receives the sections it uses (settings/stack.py), never `Settings` or its loader:
    only __main__.py reads the settings and hands each component its own arguments."""
    whole = {"Settings", "load_settings", "read_settings", "PulumiConfig"}
    importers = []
    for path in sorted([*(ROOT / "components").glob("*.py"), *(ROOT / "rendering").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "settings.stack":
                if whole & {a.name for a in node.names}:
                    importers.append(path.name)
    assert importers == []


def test_a_key_that_is_no_setting_is_reported_with_the_others(run_stack_allowing_errors):
    # A misspelled key would be handed over unread: the stack would run on the default, silently.
    evaluation = run_stack_allowing_errors("dev", {"hostcount": 3, "appWorker": 4, "noSuchThing": "x",
                                                   "checkIntervalSeconds": 5})
    assert isinstance(evaluation.error, SettingsError)
    assert evaluation.error.problems[-3:] == [
        "observability-lab:appWorker = '4': not a setting of this program (docs/configuration.md lists them); "
        "did you mean appWorkers?",
        "observability-lab:hostcount = '3': not a setting of this program (docs/configuration.md lists them); "
        "did you mean hostCount?",
        "observability-lab:noSuchThing = 'x': not a setting of this program (docs/configuration.md lists them)"]
    assert "observability-lab:checkIntervalSeconds = '5'" in evaluation.error.problems[0]
    assert evaluation.resources == []


def test_a_key_of_another_namespace_is_left_to_its_owner(settings_of):
    # aws:profile, datadog:appKey, ...: the providers' settings, not this program's.
    assert settings_of("dev", {"aws:profile": "lab", "datadog:appKey": "k"}).host.count == 1
