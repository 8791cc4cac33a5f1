"""Each host's data volume (MySQL's data) and the stack's daily snapshots of them, on the mock
engine: what is created, and what a change does to each resource (plans compared resource by
resource, as `make plan COMPARE=` does, with the provider's replace-only inputs).

A later `pulumi up` is evaluated with the earlier one as the stack's state (`prior`): the
engine then keeps the inputs a resource ignores, as it keeps them from its state.
"""

from __future__ import annotations

import pytest

from settings.validation import SettingsError
from tests.support.evaluations import compare
from tests.support.resource_types import ATTACHMENT, DOCUMENT as DOCUMENT_TYPE, INSTANCE, VOLUME
from tests.support.resource_types import LIFECYCLE_POLICY as POLICY

DOCUMENT = (DOCUMENT_TYPE, "host-config-document")
TWO_HOSTS = {"hostCount": 2}
OTHER_ZONE_SUBNET = "subnet-0ccccccccccccccc3"   # us-east-2c in the offline engine
SAME_ZONE_SUBNET = "subnet-0123456789abcdef0"    # us-east-2a, the default subnet's zone


def of(result: dict, type_: str) -> dict:
    return {name: found for (t, name), found in result.items() if t == type_}


def test_every_host_has_an_encrypted_gp3_volume_in_its_zone_tagged_like_it(run_stack):
    stack = run_stack("dev", TWO_HOSTS)
    volumes = {v.name: v for v in stack.of_type(VOLUME)}
    assert set(volumes) == {"host-1-data-volume", "host-2-data-volume"}
    for n, instance in enumerate(sorted(stack.of_type(INSTANCE), key=lambda r: r.name), start=1):
        volume = volumes[f"host-{n}-data-volume"]
        assert (volume.inputs["type"], volume.inputs["encrypted"], volume.inputs["size"]) == ("gp3", True, 20)
        assert volume.inputs["availabilityZone"] == "us-east-2a"  # the default subnet's
        tags = instance.inputs["tags"]
        assert volume.inputs["tags"] == {**{k: v for k, v in tags.items() if k in ("env", "service", "managed-by",
                                                                                   "project")},
                                         "Name": f"{tags['Name']}-data", "data-volume": "observability-lab-dev"}
        # The host finds its volume by this tag (instance metadata): the volume's own EBS id.
        assert tags["data-volume-id"].startswith("vol-") and volume.urn in instance.input_dependencies["tags"]
        (attachment,) = [a for a in stack.of_type(ATTACHMENT) if a.name == f"host-{n}-data-attachment"]
        assert attachment.input_dependencies["instanceId"] == (instance.urn,)
        assert attachment.input_dependencies["volumeId"] == (volume.urn,)
        assert attachment.inputs["volumeId"] == tags["data-volume-id"]
        assert attachment.inputs["stopInstanceBeforeDetaching"] is True  # MySQL stops before the detach


def test_a_second_up_with_the_same_settings_changes_nothing(run_stack, run_later):
    before = run_stack("dev", TWO_HOSTS)
    result = compare(before, run_later("dev", TWO_HOSTS, before))
    assert {key: found for key, found in result.items() if found != ("unchanged", [])} == {}


def test_the_instance_tags_its_root_volume_only_never_the_data_volume(run_stack):
    # `volumeTags` would be written onto every attached volume at each change (the data volume too).
    for instance in run_stack("dev", TWO_HOSTS).of_type(INSTANCE):
        assert "volumeTags" not in instance.inputs
        tags = instance.inputs["tags"]
        assert instance.inputs["rootBlockDevice"]["tags"] == {k: tags[k] for k in ("Name", "env", "service",
                                                                                  "managed-by", "project")}


@pytest.mark.parametrize("overrides", [
    {"ubuntuImageSerial": "20260901"}, {"amiId": "ami-0123456789abcdef0"}, {"ubuntuRelease": "22.04"},
], ids=lambda o: ",".join(o))
def test_a_new_image_replaces_instances_and_attachments_never_a_volume(run_stack, run_later, overrides):
    before = run_stack("dev", TWO_HOSTS)
    result = compare(before, run_later("dev", {**TWO_HOSTS, **overrides}, before))
    assert {name: what for name, (what, _) in of(result, INSTANCE).items()} == {
        "host-1-instance": "replaced", "host-2-instance": "replaced"}
    assert of(result, ATTACHMENT) == {"host-1-data-attachment": ("replaced", ["instanceId"]),
                                      "host-2-data-attachment": ("replaced", ["instanceId"])}
    assert of(result, VOLUME) == {"host-1-data-volume": ("unchanged", []), "host-2-data-volume": ("unchanged", [])}
    assert of(result, POLICY) == {"data-snapshots-policy": ("unchanged", [])}


def test_a_larger_data_volume_is_modified_in_place_and_converge_grows_its_filesystem(run_stack):
    result = compare(run_stack("dev"), run_stack("dev", {"dataVolumeGiB": 50}))
    assert of(result, VOLUME) == {"host-1-data-volume": ("updated", ["size"])}  # ModifyVolume
    assert of(result, INSTANCE) == {"host-1-instance": ("unchanged", [])}
    assert of(result, ATTACHMENT) == {"host-1-data-attachment": ("unchanged", [])}
    assert result[DOCUMENT][0] == "replaced"  # converge.sh learns the size, waits for it, grows the filesystem


def test_a_subnet_in_the_same_zone_moves_the_host_and_keeps_its_volume(run_stack, run_later):
    before = run_stack("dev")
    result = compare(before, run_later("dev", {"subnetId": SAME_ZONE_SUBNET}, before))
    assert of(result, INSTANCE) == {"host-1-instance": ("replaced", ["subnetId"])}
    assert of(result, ATTACHMENT) == {"host-1-data-attachment": ("replaced", ["instanceId"])}
    assert of(result, VOLUME) == {"host-1-data-volume": ("unchanged", [])}


def test_a_subnet_in_another_zone_is_refused_before_the_instance_or_the_volume_changes(run_stack, run_later):
    before = run_stack("dev", TWO_HOSTS)
    after = run_later("dev", {**TWO_HOSTS, "subnetId": OTHER_ZONE_SUBNET}, before)
    assert isinstance(after.error, SettingsError), after.error
    message = str(after.error)
    assert f"observability-lab:subnetId = {OTHER_ZONE_SUBNET}" in message
    assert "us-east-2c" in message and "us-east-2a" in message and "cannot move between availability zones" in message
    assert "observability-lab-dev-1" in message and "snapshot" in message
    # The volumes keep their zone (ignored once they exist); no instance was registered to move.
    assert [v.inputs["availabilityZone"] for v in after.of_type(VOLUME)] == ["us-east-2a", "us-east-2a"]
    assert after.of_type(INSTANCE) == [] and after.of_type(ATTACHMENT) == []


def test_a_new_stack_in_another_zone_makes_its_volumes_there(run_stack):
    stack = run_stack("dev", {"subnetId": OTHER_ZONE_SUBNET})
    assert [v.inputs["availabilityZone"] for v in stack.of_type(VOLUME)] == ["us-east-2c"]


@pytest.mark.parametrize("on_delete, protect, retain", [
    ("snapshot", False, False), ("retain", False, True), ("protect", True, False)])
def test_what_deleting_a_host_does_to_its_volume_is_a_setting(run_stack, on_delete, protect, retain):
    stack = run_stack("dev", {"dataVolumeOnDelete": on_delete})
    (volume,) = stack.of_type(VOLUME)
    assert (volume.options["protect"], volume.options["retainOnDelete"]) == (protect, retain)
    # A snapshot is taken first whenever the provider deletes it (constant: see components/host.py).
    assert volume.inputs["finalSnapshot"] is True
    assert volume.options["ignoreChanges"] == ["availabilityZone"]


def test_changing_what_happens_on_delete_touches_no_resource(run_stack):
    result = compare(run_stack("dev"), run_stack("dev", {"dataVolumeOnDelete": "protect"}))
    assert {what for what, _ in result.values()} == {"unchanged"}  # resource options only, in the state


def test_fewer_hosts_delete_only_the_last_hosts_instance_attachment_and_volume(run_stack):
    result = compare(run_stack("dev", {"hostCount": 3}), run_stack("dev", TWO_HOSTS))
    deleted = {key for key, (what, _) in result.items() if what == "deleted"}
    assert {(t, n) for t, n in deleted if t.startswith("aws:ec2") or t.startswith("aws:ebs")} == {
        (INSTANCE, "host-3-instance"), (ATTACHMENT, "host-3-data-attachment"), (VOLUME, "host-3-data-volume")}
    assert all(what == "unchanged" for (t, n), (what, _) in result.items() if n.startswith(("host-1-", "host-2-")))


def test_one_snapshot_policy_for_the_stack_daily_with_the_retention_setting(run_stack):
    stack = run_stack("prod", {"snapshotRetentionDays": 30, **TWO_HOSTS})
    (policy,) = stack.of_type(POLICY)
    details = policy.inputs["policyDetails"]
    assert details["resourceTypes"] == ["VOLUME"] and details["policyType"] == "EBS_SNAPSHOT_MANAGEMENT"
    assert details["targetTags"] == {"data-volume": "observability-lab-prod"}
    assert all(v.inputs["tags"]["data-volume"] == "observability-lab-prod" for v in stack.of_type(VOLUME))
    (schedule,) = details["schedules"]
    assert schedule["createRule"] == {"interval": 24, "intervalUnit": "HOURS", "times": "03:00"}
    assert schedule["retainRule"] == {"interval": 30, "intervalUnit": "DAYS"}
    assert schedule["copyTags"] is True and schedule["tagsToAdd"] == {"data-snapshot": "observability-lab-prod"}
    assert policy.inputs["state"] == "ENABLED"


def test_a_new_retention_updates_the_policy_in_place_and_keeps_its_schedule_name(run_stack):
    result = compare(run_stack("dev"), run_stack("dev", {"snapshotRetentionDays": 14}))
    changed = {key: found for key, found in result.items() if found[0] != "unchanged"}
    assert changed == {(POLICY, "data-snapshots-policy"): ("updated", ["policyDetails"])}
    # DLM stops managing the snapshots of a renamed schedule: the name never follows a setting.
    names = {s["name"] for r in (run_stack("dev"), run_stack("dev", {"snapshotRetentionDays": 14}))
             for s in r.one(POLICY).inputs["policyDetails"]["schedules"]}
    assert names == {"daily"}


@pytest.mark.parametrize("key, value, allowed", [
    ("dataVolumeGiB", 0, "from 1 to 16384"), ("dataVolumeGiB", 20_000, "from 1 to 16384"),
    ("dataVolumeOnDelete", "keep", "snapshot, retain, protect"),
    ("snapshotRetentionDays", 0, "from 1 to 365"),
])
def test_bad_data_settings_are_refused_before_anything_is_created(run_stack_allowing_errors, key, value, allowed):
    evaluation = run_stack_allowing_errors("dev", {key: value})
    assert isinstance(evaluation.error, SettingsError)
    assert f"observability-lab:{key}" in str(evaluation.error) and allowed in str(evaluation.error)
    assert evaluation.resources == [] or not evaluation.of_type(VOLUME)
