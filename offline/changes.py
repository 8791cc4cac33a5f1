"""What a change of program or settings does to each resource: two offline plans compared.

    python -m offline.plan dev --json > before.json   # then change something, and:
    python -m offline.plan dev --compare before.json

Per resource (by type and name, as in its URN): created, deleted, unchanged, updated in
place, or replaced, with the inputs that differ. A resource whose aliases name one of the
base plan's resources is that resource, moved (renamed or re-parented), as for the engine. Inputs a resource ignores
(`ignore_changes`) do not count, as in the engine. A replacement is predicted from the
resource's `replace_on_changes` and from the provider's own replace-only inputs listed
below for the types this program uses. A replaced resource gets a new id (unknown until it
exists), so every input that holds one of its outputs changes too (`inputDependencies` of the
plan): the resource holding it is replaced when that input is replace-only, updated otherwise,
as the engine decides in a preview. Only `pulumi preview` against a real account says for sure.
"""

from __future__ import annotations

from typing import Any

# Inputs whose change the provider can only apply by replacing the resource (ForceNew in
# terraform-provider-aws, which pulumi-aws bridges): aws_instance ami, subnet_id,
# associate_public_ip_address; aws_ssm_document name; aws_ssm_association name;
# aws_ssm_parameter name; aws_security_group name, vpc_id, description; aws_iam_role name;
# aws_ebs_volume availability_zone, encrypted, kms_key_id,
# multi_attach_enabled, outpost_arn, snapshot_id (its size, type, iops and throughput are
# ModifyVolume, in place); aws_volume_attachment device_name, instance_id, volume_id.
# aws_dlm_lifecycle_policy has none at the top level (its schedules' copy_tags is ForceNew).
PROVIDER_REPLACES: dict[str, frozenset[str]] = {
    "aws:ec2/instance:Instance": frozenset({"ami", "subnetId", "associatePublicIpAddress"}),
    "aws:ebs/volume:Volume": frozenset({"availabilityZone", "encrypted", "kmsKeyId", "multiAttachEnabled",
                                        "outpostArn", "snapshotId"}),
    "aws:ec2/volumeAttachment:VolumeAttachment": frozenset({"deviceName", "instanceId", "volumeId"}),
    "aws:ssm/document:Document": frozenset({"name"}),
    "aws:ssm/association:Association": frozenset({"name"}),
    "aws:ssm/parameter:Parameter": frozenset({"name"}),
    "aws:ec2/securityGroup:SecurityGroup": frozenset({"name", "vpcId", "description"}),
    "aws:iam/role:Role": frozenset({"name"}),
    # pulumiverse-time (terraform-provider-time): time_static's triggers force a new instant.
    "time:index/static:Static": frozenset({"triggers", "rfc3339"}),
}


Key = tuple[str, str]  # (type, name)


def _key(resource: dict[str, Any]) -> Key:
    return resource["type"], resource["name"]


def urn_key(urn: str) -> Key:
    """urn:pulumi:<stack>::<project>::<parent types$>type::name -> (type, name)."""
    _, _, qualified_type, name = urn.split("::", 3)
    return qualified_type.rsplit("$", 1)[-1], name


def moves(before_plan: dict[str, Any], after_plan: dict[str, Any]) -> dict[Key, Key]:
    """after's key -> the base plan's key it had, for resources found through an alias."""
    before = {_key(r) for r in before_plan["resources"]}
    after = {_key(r) for r in after_plan["resources"]}
    found: dict[Key, Key] = {}
    for resource in after_plan["resources"]:
        for alias in resource.get("options", {}).get("aliases", []):
            old = urn_key(alias)
            if old in before and old not in after and old not in found.values():
                found[_key(resource)] = old
    return found


def changed_inputs(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Top-level inputs that differ, leaving out the ones the resource ignores."""
    ignored = set(after.get("options", {}).get("ignoreChanges", []))
    names = set(before["inputs"]) | set(after["inputs"])
    return sorted(n for n in names - ignored if before["inputs"].get(n) != after["inputs"].get(n))


def classify(before: dict[str, Any], after: dict[str, Any], reached: frozenset[str] = frozenset()) -> tuple[str, list[str]]:
    """`reached`: inputs holding an output of a replaced resource (changed, whatever their value)."""
    changed = sorted(set(changed_inputs(before, after)) | reached)
    if not changed:
        return "unchanged", []
    replace_on = set(after.get("options", {}).get("replaceOnChanges", []))
    replacing = PROVIDER_REPLACES.get(after["type"], frozenset()) | replace_on
    if "*" in replace_on or replacing & set(changed):
        return "replaced", changed
    return "updated", changed


def compare(before_plan: dict[str, Any], after_plan: dict[str, Any]) -> dict[Key, tuple[str, list[str]]]:
    """What happens to each resource, by its key in `after_plan` (deleted ones: in the base)."""
    before = {_key(r): r for r in before_plan["resources"]}
    after = {_key(r): r for r in after_plan["resources"]}
    moved = moves(before_plan, after_plan)
    result: dict[Key, tuple[str, list[str]]] = {}
    for key in sorted(set(before) - set(moved.values()) | set(after)):
        was = moved.get(key, key)
        if was not in before:
            result[key] = ("created", [])
        elif key not in after:
            result[key] = ("deleted", [])
        else:
            result[key] = classify(before[was], after[key])
    # Replacements reach the inputs that hold the replaced resources' outputs, transitively.
    reaching = True
    while reaching:
        reaching = False
        for key, resource in after.items():
            if result[key][0] not in ("unchanged", "updated"):
                continue
            reached = frozenset(name for name, keys in resource.get("inputDependencies", {}).items()
                                if any(result.get(tuple(k), ("",))[0] == "replaced" for k in keys))
            found = classify(before[moved.get(key, key)], resource, reached)
            if found != result[key]:
                result[key], reaching = found, True
    return result


def render(changes: dict[Key, tuple[str, list[str]]], moved: dict[Key, Key] | None = None) -> str:
    counts: dict[str, int] = {}
    lines = []
    for (type_, name), (what, inputs) in changes.items():
        counts[what] = counts.get(what, 0) + 1
        was = (moved or {}).get((type_, name))
        if what != "unchanged" or was:
            detail = f" ({', '.join(inputs)})" if inputs else ""
            if was:
                detail += f" [was {was[1] if was[0] == type_ else ' '.join(was)}, kept through its alias]"
            lines.append(f"  {what:<9} {type_} {name}{detail}")
    summary = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
    return "\n".join([f"Changes against the base plan: {summary}", *lines]) + "\n"
