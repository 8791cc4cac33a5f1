"""What the AWS-managed policies a host role might attach grant: the pack's own copy.

A policy pack sees a resource's inputs, never the account, so an attachment is only an ARN.
For the AWS-managed policies below the pack knows the statements, as AWS publishes them at
the version named (tests/test_policies.py checks each against moto's independent copy of
AWS's managed policies). An AWS-managed policy not listed here, or a customer-managed one,
is one the pack cannot read: it is reported as such, never assumed harmless.
"""

from __future__ import annotations

from typing import Any

# name -> (default version, statements)
AWS_MANAGED: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "AmazonEC2RoleforSSM": ("v8", [
        {"Action": ["ssm:DescribeAssociation", "ssm:GetDeployablePatchSnapshotForInstance",
         "ssm:GetDocument", "ssm:DescribeDocument", "ssm:GetManifest", "ssm:GetParameters",
         "ssm:ListAssociations", "ssm:ListInstanceAssociations", "ssm:PutInventory",
         "ssm:PutComplianceItems", "ssm:PutConfigurePackageResult", "ssm:UpdateAssociationStatus",
         "ssm:UpdateInstanceAssociationStatus", "ssm:UpdateInstanceInformation"], "Effect": "Allow",
         "Resource": "*"},
        {"Action": ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
         "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"], "Effect": "Allow",
         "Resource": "*"},
        {"Action": ["ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage",
         "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages",
         "ec2messages:SendReply"], "Effect": "Allow", "Resource": "*"},
        {"Action": ["cloudwatch:PutMetricData"], "Effect": "Allow", "Resource": "*"},
        {"Action": ["ec2:DescribeInstanceStatus"], "Effect": "Allow", "Resource": "*"},
        {"Action": ["ds:CreateComputer", "ds:DescribeDirectories"], "Effect": "Allow", "Resource":
         "*"},
        {"Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogGroups",
         "logs:DescribeLogStreams", "logs:PutLogEvents"], "Effect": "Allow", "Resource": "*"},
        {"Action": ["s3:GetBucketLocation", "s3:PutObject", "s3:GetObject",
         "s3:GetEncryptionConfiguration", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
         "s3:ListBucket", "s3:ListBucketMultipartUploads"], "Effect": "Allow", "Resource": "*"},
    ]),
    "AmazonSSMManagedInstanceCore": ("v2", [
        {"Action": ["ssm:DescribeAssociation", "ssm:GetDeployablePatchSnapshotForInstance",
         "ssm:GetDocument", "ssm:DescribeDocument", "ssm:GetManifest", "ssm:GetParameter",
         "ssm:GetParameters", "ssm:ListAssociations", "ssm:ListInstanceAssociations",
         "ssm:PutInventory", "ssm:PutComplianceItems", "ssm:PutConfigurePackageResult",
         "ssm:UpdateAssociationStatus", "ssm:UpdateInstanceAssociationStatus",
         "ssm:UpdateInstanceInformation"], "Effect": "Allow", "Resource": "*"},
        {"Action": ["ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
         "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel"], "Effect": "Allow",
         "Resource": "*"},
        {"Action": ["ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage",
         "ec2messages:FailMessage", "ec2messages:GetEndpoint", "ec2messages:GetMessages",
         "ec2messages:SendReply"], "Effect": "Allow", "Resource": "*"},
    ]),
    "AmazonSSMReadOnlyAccess": ("v1", [
        {"Action": ["ssm:Describe*", "ssm:Get*", "ssm:List*"], "Effect": "Allow", "Resource": "*"},
    ]),
    "CloudWatchAgentServerPolicy": ("v3", [
        {"Action": ["cloudwatch:PutMetricData", "ec2:DescribeVolumes", "ec2:DescribeTags",
         "logs:PutLogEvents", "logs:PutRetentionPolicy", "logs:DescribeLogStreams",
         "logs:DescribeLogGroups", "logs:CreateLogStream", "logs:CreateLogGroup",
         "xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
         "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"], "Effect": "Allow",
         "Resource": "*", "Sid": "CWACloudWatchServerPermissions"},
        {"Action": ["ssm:GetParameter"], "Effect": "Allow", "Resource":
         "arn:aws:ssm:*:*:parameter/AmazonCloudWatch-*", "Sid": "CWASSMServerPermissions"},
    ]),
}
