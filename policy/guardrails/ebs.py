"""EBS data volumes and their snapshots: encrypted, snapshotted by a policy of the stack, tagged."""

from __future__ import annotations

from collections.abc import Mapping

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from guardrails.ec2 import TAGS, TAGS_SCHEMA, report_missing_tags
from guardrails.values import get, items, label, plain, strings

VOLUME = "aws:ebs/volume:Volume"
LIFECYCLE_POLICY = "aws:dlm/lifecyclePolicy:LifecyclePolicy"

ENCRYPTED = "encrypted"
STATE = "state"
RESOURCE_TYPES = "policyDetails.resourceTypes"
TARGET_TAGS = "policyDetails.targetTags"
RETAIN_RULE = "policyDetails.schedules.retainRule"


def _encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == VOLUME and get(args.props, ENCRYPTED) is not True:
        report(f"{label(args)}: {ENCRYPTED} is not true; set aws.ebs.Volume(encrypted=True, ...) "
               "(its snapshots are then encrypted too).", None)


def _snapshotting_tags(policy_props: object) -> list[tuple[str, str]]:
    """The tags whose volumes an enabled EBS snapshot policy snapshots and expires."""
    if (get(policy_props, STATE) or "ENABLED") != "ENABLED" or "VOLUME" not in strings(get(policy_props, RESOURCE_TYPES)):
        return []
    schedules = items(get(policy_props, "policyDetails.schedules"))
    if not schedules or not all(get(s, "retainRule") for s in schedules):
        return []
    targets = get(policy_props, TARGET_TAGS)
    return [(k, plain(v)) for k, v in targets.items()] if isinstance(targets, Mapping) else []


def _snapshot_policy(args: StackValidationArgs, report: ReportViolation) -> None:
    targeted: set[tuple[str, str]] = set()
    for resource in args.resources:
        if resource.resource_type == LIFECYCLE_POLICY:
            try:
                targeted.update(_snapshotting_tags(resource.props))
            except UnknownValueError:  # a preview that cannot know yet: nothing to hold against it
                return
    for resource in args.resources:
        if resource.resource_type != VOLUME:
            continue
        try:
            tags = get(resource.props, TAGS)
            pairs = {(k, plain(v)) for k, v in tags.items()} if isinstance(tags, Mapping) else set()
        except UnknownValueError:
            continue
        if not pairs & targeted:
            report(f"{VOLUME} '{resource.name}': no enabled snapshot policy of the stack targets it (an "
                   "aws.dlm.LifecyclePolicy with resource type VOLUME, a retain rule, and a target tag the "
                   "volume carries); tag it with the stack's data-volume tag (components/host.py).", resource.urn)


def _standard_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type in (VOLUME, LIFECYCLE_POLICY):
        report_missing_tags(args, report)


POLICIES = [
    ResourceValidationPolicy(
        name="ebs-volume-encrypted",
        description="EBS volumes are encrypted (and so are their snapshots).",
        validate=_encrypted,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    StackValidationPolicy(
        name="ebs-volume-snapshot-policy",
        description=("Every EBS volume carries a target tag of an enabled Data Lifecycle Manager snapshot "
                     "policy of the stack that expires its snapshots (a retain rule)."),
        validate=_snapshot_policy,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="ebs-standard-tags",
        description="EBS volumes and snapshot policies carry the project's standard tags.",
        validate=_standard_tags,
        enforcement_level=EnforcementLevel.ADVISORY,
        config_schema=TAGS_SCHEMA,
    ),
]

READS = {
    "ebs-volume-encrypted": {VOLUME: [ENCRYPTED]},
    "ebs-volume-snapshot-policy": {VOLUME: [TAGS], LIFECYCLE_POLICY: [STATE, RESOURCE_TYPES, TARGET_TAGS, RETAIN_RULE]},
    "ebs-standard-tags": {VOLUME: [TAGS], LIFECYCLE_POLICY: [TAGS]},
}
