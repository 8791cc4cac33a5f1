"""Daily snapshots of the stack's data volumes: a Data Lifecycle Manager policy and its role.

The policy targets the volumes by the stack's data-volume tag (every host's data volume
carries it, components/host.py), snapshots each one once a day and keeps each snapshot
`snapshotRetentionDays` (age-based: when a volume is deleted, DLM keeps its newest snapshot).
Every snapshot gets the volume's tags and the stack's snapshot tag; the role may delete
only snapshots with that tag, and snapshot only volumes with the data-volume tag
(rendering/iam_policies.py snapshot_data_volumes).

Deleting the policy (`pulumi destroy`) deletes none of its snapshots (AWS: "the snapshots
created by that policy are not automatically deleted").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.base import Component
from rendering import iam_policies
from settings.naming import Naming
from settings.stack import DataSettings

# A schedule's name identifies its snapshots: DLM stops managing (deleting) the snapshots of
# a renamed schedule. So it names no setting.
SCHEDULE = "daily"
SNAPSHOT_TIME_UTC = "03:00"


@dataclass(frozen=True)
class DataSnapshotsArgs:
    naming: Naming
    aws_region: str
    data: DataSettings


class DataSnapshots(Component):
    """The stack's snapshot policy over its data volumes, and the role DLM runs it as."""

    def __init__(self, name: str, args: DataSnapshotsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        naming = args.naming
        tags = naming.tagged("data-snapshots")
        role = aws.iam.Role(
            f"{name}-role", name=naming.name("data-snapshots"),
            description=f"{naming.env}: Data Lifecycle Manager snapshots the stack's data volumes",
            assume_role_policy=json.dumps(iam_policies.assume_role_by_dlm()), tags=tags, opts=self.child)
        grants = aws.iam.RolePolicy(
            f"{name}-grants", role=role.id,
            policy=role.arn.apply(lambda arn: json.dumps(iam_policies.snapshot_data_volumes(
                iam_policies.ArnScope.of(arn, args.aws_region), naming.data_volume_tag, naming.data_snapshot_tag))),
            opts=self.child)
        volume_key, volume_value = naming.data_volume_tag
        snapshot_key, snapshot_value = naming.data_snapshot_tag
        self.policy = aws.dlm.LifecyclePolicy(
            f"{name}-policy",
            # DLM allows only letters, digits, spaces, _ and - here.
            description=f"{naming.project} {naming.env} data volumes daily",
            execution_role_arn=role.arn,
            state="ENABLED",
            policy_details=aws.dlm.LifecyclePolicyPolicyDetailsArgs(
                policy_type="EBS_SNAPSHOT_MANAGEMENT",
                resource_types=["VOLUME"],
                target_tags={volume_key: volume_value},
                schedules=[aws.dlm.LifecyclePolicyPolicyDetailsScheduleArgs(
                    name=SCHEDULE,
                    create_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleCreateRuleArgs(
                        interval=24, interval_unit="HOURS", times=SNAPSHOT_TIME_UTC),
                    retain_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleRetainRuleArgs(
                        interval=args.data.snapshot_retention_days, interval_unit="DAYS"),
                    copy_tags=True,
                    tags_to_add={snapshot_key: snapshot_value},
                )],
            ),
            tags=tags,
            # Its first run finds the role's grants in place.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grants]),
        )
        self.register_outputs({"policyArn": self.policy.arn})
