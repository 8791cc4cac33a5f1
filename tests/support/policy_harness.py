"""Running the policy pack's policies on resources recorded by Pulumi's mock engine.

The policies get pulumi-policy's own argument objects (ResourceValidationArgs,
StackValidationArgs, PolicyResource) built from what the engine recorded: inputs for
resource policies (what a real engine hands them before creating a resource), the
registered state for stack policies (the engine hands them outputs).
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Mapping, Optional

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

import guardrails
from offline.engine import Evaluation, Resource, evaluate

POLICIES: dict[str, Policy] = {p.name: p for p in guardrails.POLICIES}
MANDATORY = {name for name, p in POLICIES.items() if p.enforcement_level == EnforcementLevel.MANDATORY}
ADVISORY = {name for name, p in POLICIES.items() if p.enforcement_level == EnforcementLevel.ADVISORY}


@dataclass(frozen=True)
class Violation:
    policy: str
    message: str
    urn: Optional[str]


def _options(resource: Resource) -> PolicyResourceOptions:
    o = resource.options
    return PolicyResourceOptions(
        protect=o["protect"], ignore_changes=list(o["ignoreChanges"]),
        delete_before_replace=o["deleteBeforeReplace"], aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(o["additionalSecretOutputs"]), parent=resource.parent or None)


def resource_args(resource: Resource, config: Optional[Mapping[str, Any]] = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(resource.type, resource.inputs, resource.urn, resource.name,
                                  _options(resource), None, config)


def stack_args(resources: Iterable[Resource], config: Optional[Mapping[str, Any]] = None) -> StackValidationArgs:
    policy_resources = {r.urn: PolicyResource(r.type, r.outputs, r.urn, r.name, _options(r), None, None, [], {})
                        for r in resources}
    for r in resources:
        policy_resources[r.urn].parent = policy_resources.get(r.parent)
    return StackValidationArgs(list(policy_resources.values()), config)


def violations(resources: Iterable[Resource], names: Iterable[str] = POLICIES,
               config: Optional[Mapping[str, Mapping[str, Any]]] = None) -> list[Violation]:
    """What the named policies report on these resources (config: per policy name)."""
    resources = [r for r in resources if r.custom]
    found: list[Violation] = []
    for name in names:
        policy, policy_config = POLICIES[name], (config or {}).get(name)

        def report(message: str, urn: Optional[str] = None, _name: str = name) -> None:
            found.append(Violation(_name, message, urn))

        if isinstance(policy, ResourceValidationPolicy):
            for resource in resources:
                before = len(found)
                policy.validate(resource_args(resource, policy_config), report)
                for i in range(before, len(found)):  # the engine ties these to the resource
                    found[i] = replace(found[i], urn=resource.urn)
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(stack_args(resources, policy_config), report)
    return found


# --- variants of real resources ---------------------------------------------------------------

def with_inputs(resource: Resource, change: Callable[[dict[str, Any]], None]) -> Resource:
    """A copy of `resource` whose inputs (and state) went through `change`."""
    inputs, outputs = copy.deepcopy(resource.inputs), copy.deepcopy(resource.outputs)
    change(inputs)
    change(outputs)
    return replace(resource, inputs=inputs, outputs=outputs)


def cloud_config(instance: Resource) -> str:
    """The program's user-data: a plain cloud-config (rendering/first_boot.py)."""
    text = instance.inputs.get("userData")
    assert isinstance(text, str) and text.startswith("#cloud-config\n"), f"{instance.name}: no plain cloud-config"
    return text


def with_cloud_config(instance: Resource, document: str) -> Resource:
    """The instance with this user-data, sent as other programs send a large one: gzip + base64
    (`userDataBase64`), so the variants also cover the decoding the program does not need."""
    def change(props: dict[str, Any]) -> None:
        props.pop("userData", None)
        props["userDataBase64"] = base64.b64encode(gzip.compress(document.encode(), mtime=0)).decode()
    return with_inputs(instance, change)


# --- resource types the program does not register, recorded by the same engine ---------------

def _probes() -> None:
    """One resource of each type a policy reads that the program does not create, each
    violating its policy, with every property the policies read set."""
    import components  # noqa: F401  (first: the SDKs load as the program loads them, GC paused)
    import pulumi_aws as aws
    import pulumi_datadog as datadog

    policy = json.dumps({"Version": "2012-10-17",
                         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    aws.ec2.Instance("probe-instance", ami="ami-0123456789abcdef0", instance_type="t3.micro",
                     key_name="ops-laptop",  # the program sends plain userData; this is the other way
                     user_data_base64=base64.b64encode(gzip.compress(
                         b"#!/bin/sh\nexport DD_API_KEY=" + b"ab12" * 8 + b"\n", mtime=0)).decode())
    aws.ec2.SecurityGroupRule("probe-ssh-rule", type="ingress", security_group_id="sg-0123456789abcdef0",
                              protocol="tcp", from_port=22, to_port=22,
                              cidr_blocks=["0.0.0.0/0"], ipv6_cidr_blocks=["::/0"])
    aws.vpc.SecurityGroupIngressRule("probe-rdp-rule", security_group_id="sg-0123456789abcdef0",
                                     ip_protocol="tcp", from_port=3389, to_port=3389, cidr_ipv4="0.0.0.0/0")
    aws.vpc.SecurityGroupIngressRule("probe-all-traffic-rule", security_group_id="sg-0123456789abcdef0",
                                     ip_protocol="-1", cidr_ipv6="::/0")
    aws.iam.Role("probe-role", assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": []}),
                 inline_policies=[aws.iam.RoleInlinePolicyArgs(name="everything", policy=policy)],
                 managed_policy_arns=["arn:aws:iam::aws:policy/AdministratorAccess"])
    aws.iam.PolicyAttachment("probe-power-user", roles=["probe"],
                             policy_arn="arn:aws:iam::aws:policy/PowerUserAccess")
    aws.iam.RolePolicyAttachment("probe-ssm-core", role="probe",
                                 policy_arn="arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")
    aws.iam.RolePolicyAttachmentsExclusive("probe-exclusive-attachments", role_name="probe",
                                           policy_arns=["arn:aws:iam::aws:policy/IAMFullAccess"])
    aws.ssm.Parameter("probe-app-key", name="/observability-lab/dev/datadog/app_key", type="String",
                      value="not-a-real-key")
    datadog.DowntimeSchedule("probe-downtime-everything", scope="*",
                             monitor_identifier=datadog.DowntimeScheduleMonitorIdentifierArgs(monitor_tags=["*"]))
    datadog.Downtime("probe-legacy-downtime-everything", scopes=["*"], monitor_tags=["*"])
    datadog.Downtime("probe-legacy-downtime-monitor", scopes=["*"], monitor_id=123456)
    datadog.DashboardJson("probe-dashboard-json", dashboard=json.dumps(
        {"title": "probe", "layout_type": "ordered", "widgets": []}))


_PROBES: dict[str, Evaluation] = {}


def probes() -> Evaluation:
    if "probes" not in _PROBES:
        evaluation = evaluate("dev", program=_probes)
        if evaluation.error is not None:
            raise evaluation.error
        _PROBES["probes"] = evaluation
    return _PROBES["probes"]


def resolve(value: Any, path: str) -> list[Any]:
    """Every value at a dotted path, looking into each element of a list on the way."""
    values = [value]
    for key in path.split("."):
        next_values = []
        for v in values:
            for item in (v if isinstance(v, list) else [v]):
                if isinstance(item, dict) and key in item:
                    next_values.append(item[key])
        values = next_values
    return values
