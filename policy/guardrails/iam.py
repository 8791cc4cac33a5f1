"""IAM: no wildcard grants in roles' policies, inline or attached; no AWS-managed admin policies.

Inline policies are checked on every role of the stack (this program has one, the host's
instance role): on `iam.RolePolicy` and on `iam.Role(inline_policies=...)`. Attached managed
policies count too: an AWS-managed policy's statements are the pack's own copy
(guardrails/managed_policies.py), checked with the same rules; one the pack has no copy of
(another AWS-managed policy, or a customer-managed one) is reported, since it cannot be
checked. A Deny in one of the role's inline policies closes an attached wildcard when it
covers the action on every resource but named ones (`NotResource`, no `Condition`). A KMS
key policy does not: it guards only the SecureStrings under that key, and the pack sees one
stack, not the account's other parameters, documents or keys.

`Resource: "*"` is accepted only when every action of the statement is one AWS cannot
scope to a resource (it documents them with no resource type in the Service
Authorization Reference), listed in RESOURCE_STAR_ACTIONS: what a monitored host may
need (EC2 tags for the Datadog Agent, CloudWatch metrics, listing SSM parameters, the SSM
Agent's message channels). An action wildcard (`*`, `service:*`) is never accepted, nor is
an Allow with NotAction or NotResource (it grants everything not listed).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from guardrails.managed_policies import AWS_MANAGED
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
    "ec2:DescribeTags", "ec2:DescribeInstances", "ec2:DescribeVolumes", "ec2:DescribeSnapshots",
    "cloudwatch:PutMetricData", "ssm:DescribeParameters", "ssm:ListAssociations", "ssm:PutInventory",
    # The SSM Agent's message channels (Run Command, Session Manager).
    "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
    "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
    "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
))
AWS_MANAGED_PREFIX = ":iam::aws:policy/"
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


def closes(deny: Any, action: str) -> bool:
    """Whether an inline Deny takes `action` away on every resource but the ones it names
    (NotResource) or on all of them (Resource "*"), unconditionally."""
    if not isinstance(deny, Mapping) or get(deny, "Effect") != "Deny" or get(deny, "Condition") is not None:
        return False
    if get(deny, "NotResource") is None and "*" not in strings(get(deny, "Resource")):
        return False
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in strings(get(deny, "Action")))


def deny_statements(document: Any) -> list[Any]:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return []
    return [s for s in items(get(document, "Statement")) if isinstance(s, Mapping) and get(s, "Effect") == "Deny"]


def statement_problems(document: Any, denies: Iterable[Any] = ()) -> list[str]:
    """What is too broad in a policy document, one line per statement (`denies`: the role's
    inline Deny statements, which may close a `Resource: "*"` grant)."""
    denies = list(denies)
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
        scoped = [a for a in actions if a.lower() not in RESOURCE_STAR_ACTIONS
                  and not any(closes(deny, a) for deny in denies)]
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


def _attached_arns(type_: str, props: Any) -> list[tuple[str, str]]:
    if type_ in (ROLE_POLICY_ATTACHMENT, POLICY_ATTACHMENT):
        return [(POLICY_ARN, arn) for arn in strings(get(props, POLICY_ARN))]
    if type_ == ROLE:
        return [(MANAGED_POLICY_ARNS, arn) for arn in strings(get(props, MANAGED_POLICY_ARNS))]
    if type_ == ROLE_ATTACHMENTS_EXCLUSIVE:
        return [(POLICY_ARNS, arn) for arn in strings(get(props, POLICY_ARNS))]
    return []


def is_admin_policy(arn: str) -> bool:
    if AWS_MANAGED_PREFIX not in arn:  # only AWS-managed policies have these names
        return False
    name = arn.rsplit("/", 1)[-1]
    return name in ADMIN_POLICY_NAMES or name.startswith(ADMIN_POLICY_PREFIX)


def _no_admin_policies(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for where, arn in _attached_arns(args.resource_type, args.props):
        if is_admin_policy(arn):
            report(f"{label(args)}: {where} attaches {arn}, an administrator policy; attach a policy "
                   "with only the actions the role needs (the host has inline policies only: its own "
                   "parameters, configuration documents and key, and what the SSM Agent calls).", None)


def managed_statements(arn: str) -> Optional[list[Any]]:
    """What an attached policy grants, if the pack knows (AWS-managed policies it has a copy of)."""
    if AWS_MANAGED_PREFIX not in arn:
        return None
    known = AWS_MANAGED.get(arn.rsplit("/", 1)[-1])
    return known[1] if known else None


def _role_names(type_: str, props: Any) -> list[str]:
    """The roles an attachment or inline policy resource applies to."""
    if type_ in (ROLE, ROLE_ATTACHMENTS_EXCLUSIVE):
        return strings(get(props, "name" if type_ == ROLE else "roleName"))
    if type_ == POLICY_ATTACHMENT:
        return strings(get(props, "roles"))
    return strings(get(props, "role"))  # RolePolicy, RolePolicyAttachment: the role's name (its id)


def _attached_policies_no_wildcards(args: StackValidationArgs, report: ReportViolation) -> None:
    denies: dict[str, list[Any]] = {}
    attachments = []
    for resource in args.resources:
        try:  # one value unknown during a preview must not hide the others
            type_, props = resource.resource_type, resource.props
            roles = _role_names(type_, props)
            inline = ([get(props, POLICY)] if type_ == ROLE_POLICY else
                      [get(p, POLICY) for p in items(get(props, INLINE_POLICIES))] if type_ == ROLE else [])
            for role in roles:
                denies.setdefault(role, []).extend(d for doc in inline for d in deny_statements(doc))
            if type_ in (ROLE_POLICY_ATTACHMENT, POLICY_ATTACHMENT, ROLE, ROLE_ATTACHMENTS_EXCLUSIVE):
                attachments.append((resource, roles, _attached_arns(type_, props)))
        except UnknownValueError:
            continue
    for resource, roles, attached in attachments:
        where = f"{resource.resource_type} '{resource.name}'"
        for prop, arn in attached:
            if is_admin_policy(arn):
                continue  # iam-no-admin-managed-policies says so
            statements = managed_statements(arn)
            if statements is None:
                report(f"{where}: {prop} attaches {arn}, whose statements the policy pack does not know, so "
                       "its grants cannot be checked; grant what the role needs in an inline policy (or add "
                       "the policy to policy/guardrails/managed_policies.py).", resource.urn)
                continue
            role_denies = [d for role in roles for d in denies.get(role, [])]
            for problem in statement_problems({"Statement": statements}, role_denies):
                report(f"{where}: {prop} attaches {arn}: {problem}; or close it with a Deny "
                       "(NotResource: the role's own ARNs) in one of the role's inline policies.", resource.urn)


POLICIES = [
    ResourceValidationPolicy(
        name="iam-inline-policy-no-wildcards",
        description=("Inline role policies grant no `*` action and no `*` resource (except for actions "
                     "AWS cannot scope), and use no Allow with NotAction/NotResource."),
        validate=_no_wildcards,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    StackValidationPolicy(
        name="iam-attached-policy-no-wildcards",
        description=("Managed policies attached to a role are held to the inline rules: the pack's copy of "
                     "an AWS-managed policy grants no `*` resource for actions AWS can scope, unless a Deny "
                     "of the role closes it; a policy the pack cannot read is reported."),
        validate=_attached_policies_no_wildcards,
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
    "iam-attached-policy-no-wildcards": {
        ROLE_POLICY: ["role", POLICY], ROLE: ["name", f"{INLINE_POLICIES}.{POLICY}", MANAGED_POLICY_ARNS],
        ROLE_POLICY_ATTACHMENT: ["role", POLICY_ARN], POLICY_ATTACHMENT: ["roles", POLICY_ARN],
        ROLE_ATTACHMENTS_EXCLUSIVE: ["roleName", POLICY_ARNS]},
    "iam-no-admin-managed-policies": {
        ROLE_POLICY_ATTACHMENT: [POLICY_ARN], POLICY_ATTACHMENT: [POLICY_ARN], ROLE: [MANAGED_POLICY_ARNS],
        ROLE_ATTACHMENTS_EXCLUSIVE: [POLICY_ARNS]},
}
