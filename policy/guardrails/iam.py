"""IAM: no wildcard grants in roles' inline policies, no AWS-managed admin policies.

Inline policies are checked on every role of the stack (this program has one, the host's
instance role): on `iam.RolePolicy` and on `iam.Role(inline_policies=...)`.

`Resource: "*"` is accepted only when every action of the statement is one AWS cannot
scope to a resource (it documents them with no resource type in the Service
Authorization Reference), listed in RESOURCE_STAR_ACTIONS: what a monitored host may
need (EC2 tags for the Datadog Agent, CloudWatch metrics, listing SSM parameters, the SSM
Agent's message channels).
An action wildcard (`*`, `service:*`) is never accepted, nor is an Allow with
NotAction or NotResource (it grants everything not listed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from guardrails.values import get, items, label, strings

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE_POLICY_ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
POLICY_ATTACHMENT = "aws:iam/policyAttachment:PolicyAttachment"
ROLE_ATTACHMENTS_EXCLUSIVE = "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"

POLICY = "policy"
INLINE_POLICIES = "inlinePolicies"
MANAGED_POLICY_ARNS = "managedPolicyArns"
POLICY_ARN = "policyArn"
POLICY_ARNS = "policyArns"

RESOURCE_STAR_ACTIONS = frozenset(a.lower() for a in (
    "ec2:DescribeTags", "ec2:DescribeInstances", "ec2:DescribeVolumes",
    "cloudwatch:PutMetricData", "ssm:DescribeParameters", "ssm:ListAssociations", "ssm:PutInventory",
    # The SSM Agent's message channels (Run Command, Session Manager).
    "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
    "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
    "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
))
# AWS-managed policies that amount to administering the account.
ADMIN_POLICY_NAMES = frozenset({"AdministratorAccess", "PowerUserAccess", "IAMFullAccess"})
ADMIN_POLICY_PREFIX = "AdministratorAccess-"  # AdministratorAccess-Amplify, -AWSElasticBeanstalk


def _documents(args: ResourceValidationArgs) -> list[tuple[str, Any]]:
    """(where, policy JSON) for each inline policy the resource defines."""
    if args.resource_type == ROLE_POLICY:
        return [(POLICY, get(args.props, POLICY))]
    if args.resource_type == ROLE:
        return [(f"{INLINE_POLICIES}[{i}] ({get(p, 'name') or 'unnamed'})", get(p, POLICY))
                for i, p in enumerate(items(get(args.props, INLINE_POLICIES)))]
    return []


def statement_problems(document: Any) -> list[str]:
    """What is too broad in a policy document, one line per statement."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return ["is not valid JSON, so it cannot be checked; write it with json.dumps"]
    problems = []
    for index, statement in enumerate(items(get(document, "Statement"))):
        if not isinstance(statement, Mapping) or get(statement, "Effect") != "Allow":
            continue
        actions = strings(get(statement, "Action"))
        resources = strings(get(statement, "Resource"))
        where = f"Statement[{index}]" + (f" ({get(statement, 'Sid')})" if get(statement, "Sid") else "")
        wildcard_actions = [a for a in actions if a == "*" or a.endswith(":*")]
        if wildcard_actions:
            problems.append(f"{where} allows the action(s) {', '.join(wildcard_actions)}; "
                            "list the actions the role needs")
        # IAM action names are case-insensitive.
        scoped = [a for a in actions if a.lower() not in RESOURCE_STAR_ACTIONS]
        if "*" in resources and (scoped or not actions):
            problems.append(f"{where} allows Resource \"*\" for {', '.join(scoped) or '(no Action)'}; name the ARNs "
                            "(only actions AWS cannot scope may use \"*\")")
        for negated in ("NotAction", "NotResource"):
            if get(statement, negated) is not None:
                problems.append(f"{where} is an Allow with {negated}, which grants everything not "
                                f"listed; use Action and Resource")
    return problems


def _no_wildcards(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, document in _documents(args):
        for problem in statement_problems(document):
            report(f"{label(args)}: {where}: {problem}.", None)


def _attached_arns(args: ResourceValidationArgs) -> list[tuple[str, str]]:
    props, type_ = args.props, args.resource_type
    if type_ in (ROLE_POLICY_ATTACHMENT, POLICY_ATTACHMENT):
        return [(POLICY_ARN, arn) for arn in strings(get(props, POLICY_ARN))]
    if type_ == ROLE:
        return [(MANAGED_POLICY_ARNS, arn) for arn in strings(get(props, MANAGED_POLICY_ARNS))]
    if type_ == ROLE_ATTACHMENTS_EXCLUSIVE:
        return [(POLICY_ARNS, arn) for arn in strings(get(props, POLICY_ARNS))]
    return []


def is_admin_policy(arn: str) -> bool:
    if ":iam::aws:policy/" not in arn:  # only AWS-managed policies have these names
        return False
    name = arn.rsplit("/", 1)[-1]
    return name in ADMIN_POLICY_NAMES or name.startswith(ADMIN_POLICY_PREFIX)


def _no_admin_policies(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, arn in _attached_arns(args):
        if is_admin_policy(arn):
            report(f"{label(args)}: {where} attaches {arn}, an administrator policy; attach a policy "
                   "with only the actions the role needs (the host has inline policies only: its own "
                   "parameters, configuration documents and key, and what the SSM Agent calls).", None)


POLICIES = [
    ResourceValidationPolicy(
        name="iam-inline-policy-no-wildcards",
        description=("Inline role policies grant no `*` action and no `*` resource (except for actions "
                     "AWS cannot scope), and use no Allow with NotAction/NotResource."),
        validate=_no_wildcards,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="iam-no-admin-managed-policies",
        description="No AWS-managed administrator policy (AdministratorAccess, PowerUserAccess, IAMFullAccess) is attached.",
        validate=_no_admin_policies,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]

READS = {
    "iam-inline-policy-no-wildcards": {ROLE_POLICY: [POLICY], ROLE: [f"{INLINE_POLICIES}.{POLICY}"]},
    "iam-no-admin-managed-policies": {
        ROLE_POLICY_ATTACHMENT: [POLICY_ARN], POLICY_ATTACHMENT: [POLICY_ARN], ROLE: [MANAGED_POLICY_ARNS],
        ROLE_ATTACHMENTS_EXCLUSIVE: [POLICY_ARNS]},
}
