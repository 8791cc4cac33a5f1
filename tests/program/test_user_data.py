"""The first-boot user-data the program registers: the same on every host, whatever the settings."""

from __future__ import annotations

import yaml

from offline.engine import PLACEHOLDER_SECRETS
from rendering.first_boot import EC2_USER_DATA_LIMIT, FETCHER, FETCHER_ON_HOST
from rendering.first_boot import user_data as rendered_user_data
from tests.support.evaluations import user_data


def test_user_data_is_what_first_boot_renders_for_the_stacks_parameter(stack_eval, settings_of):
    # tests/host/test_cloud_config.py checks that rendering with cloud-init's own schema.
    naming = settings_of(stack_eval.stack).naming
    assert user_data(stack_eval) == rendered_user_data(naming.config_parameter, naming.config_documents)


def test_libyamls_emitter_writes_the_user_data_pyyamls_own_would(monkeypatch, stack_eval, settings_of):
    # The program emits with libyaml (fast); PyYAML's pure-Python emitter is the reference.
    import rendering.first_boot as first_boot

    assert first_boot.EMITTER is getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    monkeypatch.setattr(first_boot, "EMITTER", yaml.SafeDumper)
    naming = settings_of(stack_eval.stack).naming
    assert user_data(stack_eval) == rendered_user_data(naming.config_parameter, naming.config_documents)


def test_user_data_writes_the_fetcher_and_runs_it_on_the_stacks_parameter(stack_eval):
    text = user_data(stack_eval)
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    (script,) = document["write_files"]
    assert (script["path"], script["permissions"]) == (FETCHER_ON_HOST, "0755")
    assert script["content"] == FETCHER.read_text()
    parameter = f"/observability-lab/{stack_eval.stack}/host-config/document"
    prefix = f"observability-lab-{stack_eval.stack}-host-config"
    assert document["runcmd"] == [["python3", FETCHER_ON_HOST, parameter, prefix]]
    assert stack_eval.one("aws:ssm/document:Document").inputs["name"].startswith(prefix + "-")
    (configuration,) = [r for r in stack_eval.of_type("aws:ssm/parameter:Parameter")
                        if r.inputs["name"] == parameter]
    assert configuration.inputs["type"] == "String"


def test_user_data_carries_no_setting_so_settings_never_change_it(run_stack):
    base = user_data(run_stack("dev"))
    for overrides in ({"checkIntervalSeconds": 30}, {"agentVersion": "7.71.0"},
                      {"hostTags": ["name:cars_app", "team:checkout"]}, {"service": "checkout"},
                      {"rootVolumeGiB": 40}, {"instanceType": "t3.large"}):
        assert user_data(run_stack("dev", overrides)) == base, overrides


def test_user_data_is_small(stack_eval):
    assert len(user_data(stack_eval).encode()) <= 0.7 * EC2_USER_DATA_LIMIT


def test_no_secret_in_user_data(stack_eval):
    for placeholder in PLACEHOLDER_SECRETS.values():
        assert placeholder not in user_data(stack_eval)
