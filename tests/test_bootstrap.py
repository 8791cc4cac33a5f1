"""The first-boot user-data, checked with the tool that consumes it (cloud-init)."""

from __future__ import annotations

import subprocess

import yaml

from components.bootstrap import EC2_USER_DATA_LIMIT, FETCHER, FETCHER_ON_HOST
from offline.engine import PLACEHOLDER_SECRETS

INSTANCE = "aws:ec2/instance:Instance"


def user_data(evaluation) -> str:
    """The one user-data of the stack's hosts: every instance has the same."""
    (text,) = {instance.inputs["userData"] for instance in evaluation.of_type(INSTANCE)}
    return text


def test_user_data_passes_cloud_init_schema(stack_eval, tmp_path):
    path = tmp_path / "user-data.yaml"
    path.write_text(user_data(stack_eval))
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_catches_a_broken_document(tmp_path):
    # Guards the test above: the validator really rejects what EC2 would not run.
    path = tmp_path / "broken.yaml"
    path.write_text("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0644\n")
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0


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
                      {"hostTags": ["name:cars_app", "team:x"]}, {"service": "other-app"},
                      {"rootVolumeGiB": 40}, {"instanceType": "t3.large"}):
        assert user_data(run_stack("dev", overrides)) == base, overrides


def test_user_data_is_small(stack_eval):
    assert len(user_data(stack_eval).encode()) <= 0.7 * EC2_USER_DATA_LIMIT


def test_no_secret_in_user_data(stack_eval):
    for placeholder in PLACEHOLDER_SECRETS.values():
        assert placeholder not in user_data(stack_eval)
