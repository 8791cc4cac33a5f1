"""EC2 instances: IMDSv2, encrypted root volume, no key pair, no secrets in user-data, tags."""

from __future__ import annotations

from collections.abc import Mapping

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from guardrails import layers
from guardrails.values import config, get, label, plain

INSTANCE = "aws:ec2/instance:Instance"

HTTP_TOKENS = "metadataOptions.httpTokens"
ROOT_ENCRYPTED = "rootBlockDevice.encrypted"
KEY_NAME = "keyName"
TAGS = "tags"

# The tags every resource of the program carries (components/settings.py aws_tags).
STANDARD_TAG_KEYS = ["env", "service", "managed-by", "project"]
TAGS_SCHEMA = PolicyConfigSchema(properties={
    "requiredTagKeys": {
        "type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True,
        "default": STANDARD_TAG_KEYS,
        "description": "Tag keys every EC2 instance must carry, each with a non-empty value.",
    },
})


def _imdsv2(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != INSTANCE:
        return
    tokens = get(args.props, HTTP_TOKENS)
    if tokens != "required":
        report(f"{label(args)}: {HTTP_TOKENS} is {tokens or 'not set'}; set "
               "metadata_options=aws.ec2.InstanceMetadataOptionsArgs(http_tokens=\"required\") so the "
               "instance metadata (and its role credentials) needs an IMDSv2 session token.", None)


def _root_volume_encrypted(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != INSTANCE:
        return
    if get(args.props, ROOT_ENCRYPTED) is not True:
        report(f"{label(args)}: {ROOT_ENCRYPTED} is not true; set "
               "root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(encrypted=True, ...).", None)


def _no_key_pair(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != INSTANCE:
        return
    key_name = get(args.props, KEY_NAME)
    if key_name:
        report(f"{label(args)}: {KEY_NAME} is '{key_name}'; remove key_name. Shell access is "
               "through SSM Session Manager (aws ssm start-session), not SSH keys.", None)


def _no_secrets_in_user_data(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != INSTANCE:
        return
    for finding in layers.findings(layers.user_data(args.props)):
        report(f"{label(args)}: {finding.where} contains {finding.what}. User-data is readable by "
               "anyone who can describe the instance: put the key in an SSM SecureString parameter "
               "and let the host read it at boot (as the Agent's secret backend does).", None)


def report_missing_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The required tag keys (TAGS_SCHEMA) the resource's `tags` lack or leave empty."""
    tags = get(args.props, TAGS)
    tags = tags if isinstance(tags, Mapping) else {}
    # Keys looked up as they are (a tag key may contain dots).
    missing = [key for key in config(args, TAGS_SCHEMA, "requiredTagKeys") if not plain(tags.get(key))]
    if missing:
        report(f"{label(args)}: missing tag(s) {', '.join(missing)}; add them to tags "
               "(the program's standard tags come from settings.aws_tags).", None)


def _standard_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == INSTANCE:
        report_missing_tags(args, report)


POLICIES = [
    ResourceValidationPolicy(
        name="ec2-instance-imdsv2-required",
        description="EC2 instances require IMDSv2 (metadataOptions.httpTokens = required).",
        validate=_imdsv2,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="ec2-instance-root-volume-encrypted",
        description="EC2 instances have an encrypted root volume.",
        validate=_root_volume_encrypted,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="ec2-instance-no-key-pair",
        description="EC2 instances have no SSH key pair (access is through SSM Session Manager).",
        validate=_no_key_pair,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="ec2-instance-user-data-no-secrets",
        description=("EC2 user-data (every base64/gzip layer) holds nothing shaped like a Datadog API "
                     "or application key, and no private key."),
        validate=_no_secrets_in_user_data,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="ec2-instance-standard-tags",
        description="EC2 instances carry the project's standard tags.",
        validate=_standard_tags,
        enforcement_level=EnforcementLevel.ADVISORY,
        config_schema=TAGS_SCHEMA,
    ),
]

# What each policy reads, per resource type: tests check these names against what
# Pulumi's engine records for the SDK's resources.
READS = {
    "ec2-instance-imdsv2-required": {INSTANCE: [HTTP_TOKENS]},
    "ec2-instance-root-volume-encrypted": {INSTANCE: [ROOT_ENCRYPTED]},
    "ec2-instance-no-key-pair": {INSTANCE: [KEY_NAME]},
    "ec2-instance-user-data-no-secrets": {INSTANCE: [layers.USER_DATA_PLAIN, layers.USER_DATA_BASE64]},
    "ec2-instance-standard-tags": {INSTANCE: [TAGS]},
}
