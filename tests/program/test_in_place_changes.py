"""Day two: what a settings change or a file edit does to each resource, by comparing the
offline plans of two evaluations (before, after) the way `make plan ... --compare` does.

Settings and files reach the running host through a new SSM document and association;
the instance is untouched. Only the image (amiId, ubuntuRelease) and the subnet replace it.
"""

from __future__ import annotations

import shutil

import pytest

import rendering.bundle as bundle
from offline.engine import evaluate
from tests.support.evaluations import compare

INSTANCE = ("aws:ec2/instance:Instance", "host-1-instance")
DOCUMENT = ("aws:ssm/document:Document", "host-config-document")
ASSOCIATION = ("aws:ssm/association:Association", "host-config-run-association")
CURRENT = ("aws:ssm/parameter:Parameter", "host-config-current-document")


def assert_converged_in_place(result: dict) -> None:
    assert result[DOCUMENT][0] == "replaced" and result[ASSOCIATION][0] == "replaced"
    assert result[CURRENT][0] == "updated" and "insecureValue" in result[CURRENT][1]


def test_an_unchanged_program_changes_nothing(run_stack, run_stack_again):
    result = compare(run_stack("dev"), run_stack_again("dev"))
    assert {what for what, _ in result.values()} == {"unchanged"}


@pytest.mark.parametrize("overrides", [
    {"checkIntervalSeconds": 30},
    {"hostTags": ["name:cars_app", "team:checkout"]},
    {"watchedProcesses": ["gunicorn", "mysqld", "nginx"]},
    {"agentVersion": "7.71.0"},
    {"urlLookupAllowlist": ["example.com"]},
    {"setupOverheadMinMs": 10, "setupOverheadMaxMs": 20},
], ids=lambda o: ",".join(o))
def test_agent_and_app_settings_reach_the_host_without_touching_the_instance(run_stack, overrides):
    result = compare(run_stack("dev"), run_stack("dev", overrides))
    assert result[INSTANCE] == ("unchanged", [])
    assert_converged_in_place(result)
    assert all(what == "unchanged" for key, (what, _) in result.items()
               if key[0].startswith("aws:") and key not in (DOCUMENT, ASSOCIATION, CURRENT))


def test_a_new_service_name_retags_the_instance_in_place_only(run_stack):
    result = compare(run_stack("dev"), run_stack("dev", {"service": "checkout"}))
    assert result[INSTANCE] == ("updated", ["rootBlockDevice", "tags"])  # tag updates, no restart
    assert_converged_in_place(result)


@pytest.mark.parametrize("path", ["app/app.py", "agent/checks.d/custom_my_metric.py"])
def test_editing_a_file_of_userdata_reaches_the_host_without_touching_the_instance(
        run_stack, monkeypatch, tmp_path, path):
    copy = tmp_path / "userdata"
    shutil.copytree(bundle.USERDATA_DIR, copy)
    with open(copy / path, "a") as edited:
        edited.write("\n# edited on day two\n")
    monkeypatch.setattr(bundle, "USERDATA_DIR", copy)
    result = compare(run_stack("dev"), evaluate("dev"))
    assert result[INSTANCE] == ("unchanged", [])
    assert_converged_in_place(result)


@pytest.mark.parametrize("overrides", [
    {"amiId": "ami-0123456789abcdef0"},
    {"ubuntuRelease": "22.04"},
    {"ubuntuImageSerial": "20260901"},
    {"subnetId": "subnet-0123456789abcdef0"},
], ids=lambda o: ",".join(o))
def test_only_the_image_and_the_subnet_replace_the_host(run_stack, overrides):
    result = compare(run_stack("dev"), run_stack("dev", overrides))
    what, inputs = result[INSTANCE]
    assert what == "replaced" and set(inputs) <= {"ami", "subnetId"}, result[INSTANCE]
    assert result[DOCUMENT] == ("unchanged", [])


def test_the_replaced_host_goes_first_so_two_agents_never_share_its_hostname(dev):
    (instance,) = dev.of_type(INSTANCE[0])
    assert instance.options["deleteBeforeReplace"] is True


def test_instance_type_and_volume_size_update_the_instance_in_place(run_stack):
    result = compare(run_stack("dev"), run_stack("dev", {"instanceType": "t3.large"}))
    assert result[INSTANCE] == ("updated", ["instanceType"])  # the provider stops and starts it
    assert result[DOCUMENT] == ("unchanged", [])
    result = compare(run_stack("dev"), run_stack("dev", {"rootVolumeGiB": 40}))
    assert result[INSTANCE] == ("updated", ["rootBlockDevice"])  # EBS ModifyVolume, in place
    assert_converged_in_place(result)  # converge.sh then grows the filesystem
