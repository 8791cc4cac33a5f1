"""The policy pack (policy/guardrails) on the program's own resources and on broken variants.

(a) Every resource the program registers for dev and prod, under Pulumi's mock engine,
passes every policy. (b) For every policy, variants of real resources (a copy, one thing
changed) are reported by that policy and no other, with a message that names the
resource and says what to change. The property names the policies read are checked
against what the engine records for the SDKs' resources.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from typing import Any, Callable

import pytest
import yaml

import guardrails
from rendering.bundle import Bundle
from rendering.document import document_content
from guardrails import datadog as dd_rules, ebs as ebs_rules, ec2 as ec2_rules, iam as iam_rules, network, ssm as ssm_rules
from offline.engine import PLACEHOLDER_SECRETS, Evaluation, Resource, reveal
from offline.host_config import decode_document
from tests.support import ROOT
from tests.support.policy_harness import (
    ADVISORY, MANDATORY, POLICIES, cloud_config, probes, resolve, violations, with_cloud_config, with_inputs,
)
from tests.support.iam_simulator import aws_managed_policies

# The app port opened to the whole internet: allowed (it is not a remote-access or database
# port), and it gives the security group a real ingress rule to start variants from.
WORLD_APP_PORT = {"appAllowedCidrs": ["0.0.0.0/0", "::/0"]}
AWS_POLICY = "arn:aws:iam::aws:policy"
SSM_CORE = f"{AWS_POLICY}/AmazonSSMManagedInstanceCore"
API_KEY_HEX = "0123456789abcdef" * 2
APP_KEY_HEX = "fedcba9876543210" * 2 + "01234567"


@pytest.fixture
def world_app_port(run_stack) -> Evaluation:
    return run_stack("dev", WORLD_APP_PORT)


def test_the_pack_has_mandatory_and_advisory_policies():
    assert ADVISORY == {"ec2-instance-standard-tags", "ebs-standard-tags", "datadog-dashboard-template-variable"}
    assert len(MANDATORY) == len(POLICIES) - len(ADVISORY) >= 13
    assert set(guardrails.READS) == set(POLICIES)


def test_policy_md_lists_every_policy_of_the_pack_at_its_level():
    # docs/policy.md's table is what a reviewer reads to know what a preview enforces.
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (mandatory|advisory) \|", (ROOT / "docs" / "policy.md").read_text(), re.M)
    documented = dict(rows)
    assert len(documented) == len(rows), "a policy listed twice"
    assert documented == {name: "mandatory" if name in MANDATORY else "advisory" for name in POLICIES}


@pytest.mark.parametrize("overrides", [None, WORLD_APP_PORT], ids=["committed", "app-port-open-to-all"])
def test_the_programs_resources_pass_every_policy(run_stack, stack, overrides):
    evaluation = run_stack(stack, overrides)
    assert violations(evaluation.resources) == []
    # What passed includes the program's SSM delivery, its String parameter naming the
    # document, the process alert and, on dev, the bike-share anomaly monitor (a "query
    # alert", which the threshold policy checks), the downtime schedules and their anchors.
    types = {r.type for r in evaluation.resources if r.custom}
    assert {ssm_rules.DOCUMENT, "aws:ssm/association:Association", ec2_rules.INSTANCE} <= types
    assert {p.inputs["type"] for p in evaluation.of_type(ssm_rules.PARAMETER)} == {"SecureString", "String"}
    monitor_types = {m.inputs["type"] for m in evaluation.of_type(dd_rules.MONITOR)}
    assert {"metric alert", "service check", "process alert"} <= monitor_types
    if stack == "dev":
        assert "query alert" in monitor_types and "time:index/static:Static" in types
        assert all(s.inputs["recurringSchedule"]["recurrences"][0]["start"]
                   for s in evaluation.of_type(dd_rules.DOWNTIME_SCHEDULE))


def test_every_property_a_policy_reads_is_one_the_engine_records(dev, prod, world_app_port):
    # The program's resources, plus one resource of each type it does not create (probes),
    # all registered through the SDKs: a renamed property fails here, not silently in a preview.
    recorded = [r for e in (dev, prod, world_app_port, probes()) for r in e.resources if r.custom]
    missing = []
    for policy, reads in guardrails.READS.items():
        for type_, paths in reads.items():
            of_type = [r for r in recorded if r.type == type_]
            assert of_type, f"{policy}: no {type_} registered"
            missing += [f"{policy}: {type_} {path}" for path in paths
                        if not any(resolve(r.inputs, path) for r in of_type)]
    assert not missing, "\n".join(missing)


def test_the_probes_violate_what_they_stand_for():
    found = {(v.policy, v.urn.rsplit("::", 1)[-1]) for v in violations(probes().resources) if v.urn}
    for name in ("probe-ssh-rule", "probe-rdp-rule", "probe-all-traffic-rule"):
        assert ("security-group-no-public-admin-ports", name) in found
    assert ("security-group-no-all-ports-ingress", "probe-all-traffic-rule") in found
    assert ("iam-inline-policy-no-wildcards", "probe-role") in found
    for name in ("probe-role", "probe-power-user", "probe-exclusive-attachments"):
        assert ("iam-no-admin-managed-policies", name) in found
    assert ("iam-attached-policy-no-wildcards", "probe-ssm-core") in found
    for name in ("probe-downtime-everything", "probe-legacy-downtime-everything"):
        assert ("datadog-downtime-targets-monitor-or-scope", name) in found
    assert ("datadog-downtime-targets-monitor-or-scope", "probe-legacy-downtime-monitor") not in found
    assert ("datadog-dashboard-template-variable", "probe-dashboard-json") in found
    assert ("ssm-key-parameters-secure-string", "probe-app-key") in found
    for policy in ("ec2-instance-no-key-pair", "ec2-instance-user-data-no-secrets"):
        assert (policy, "probe-instance") in found


# --- (b) violating variants of real resources ---------------------------------------------------

def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(props: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            props = props[key]
        props[last] = value
    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda props: props.pop(key, None)


def _first_ingress(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda props: props["ingress"][0].update(changes)


def _policy_document(statement: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return _set("policy", json.dumps({"Version": "2012-10-17", "Statement": [statement]}))


def _monitor(evaluation: Evaluation, suffix: str) -> Resource:
    return next(r for r in evaluation.of_type(dd_rules.MONITOR) if r.name == f"datadog-monitors-{suffix}")


def _role_policy(evaluation: Evaluation) -> Resource:
    """The host role's inline policy reading its own parameters (it has two)."""
    return next(r for r in evaluation.of_type(iam_rules.ROLE_POLICY) if r.name == "host-read-own-config")


def _host_role(evaluation: Evaluation) -> Resource:
    """The hosts' instance role (the stack's other one is the snapshot policy's)."""
    return next(r for r in evaluation.of_type(iam_rules.ROLE) if r.name == "host-role")


def _parameter(evaluation: Evaluation, name: str) -> Resource:
    return next(r for r in evaluation.of_type(ssm_rules.PARAMETER) if r.name == name)


def _burn_rate_alert(evaluation: Evaluation, suffix: str) -> Resource:
    return next(r for r in evaluation.of_type(dd_rules.MONITOR) if r.name == f"datadog-slos-{suffix}")


def _replace_in(key: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def change(props: dict[str, Any]) -> None:
        assert old in props[key], (key, old)
        props[key] = props[key].replace(old, new)
    return change


def _with_bundle_line(document: Resource, path: str, line: str) -> Resource:
    """The configuration document, rebuilt as the program builds it, with `line` added to one
    file of its bundle: inside the gzipped tar, base64 over many runCommand items."""
    files = decode_document(document.inputs["content"]).files
    bundle = Bundle({**files, path: files[path] + line})
    content = document_content(bundle, yaml.safe_load(document.inputs["content"])["description"])
    assert decode_document(content).files[path].endswith(line) and line not in content
    return with_inputs(document, _set("content", content))


def _gz_b64(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


# (policy, variant id, resource of the world_app_port dev stack -> variant, words the message must have)
VARIANTS: list[tuple[str, str, Callable[[Evaluation], Resource], list[str]]] = [
    ("ec2-instance-imdsv2-required", "tokens-optional",
     lambda e: with_inputs(e.one(ec2_rules.INSTANCE), _set("metadataOptions.httpTokens", "optional")),
     ["metadataOptions.httpTokens is optional", 'http_tokens="required"']),
    ("ec2-instance-imdsv2-required", "no-metadata-options",
     lambda e: with_inputs(e.one(ec2_rules.INSTANCE), _drop("metadataOptions")),
     ["metadataOptions.httpTokens is not set", 'http_tokens="required"']),
    ("ec2-instance-root-volume-encrypted", "unencrypted",
     lambda e: with_inputs(e.one(ec2_rules.INSTANCE), _set("rootBlockDevice.encrypted", False)),
     ["rootBlockDevice.encrypted", "encrypted=True"]),
    ("ebs-volume-encrypted", "unencrypted",
     lambda e: with_inputs(e.one(ebs_rules.VOLUME), _set("encrypted", False)),
     ["encrypted is not true", "encrypted=True"]),
    ("ebs-volume-snapshot-policy", "not-tagged-for-the-snapshot-policy",
     lambda e: with_inputs(e.one(ebs_rules.VOLUME), lambda p: p["tags"].pop("data-volume")),
     ["no enabled snapshot policy of the stack targets it", "data-volume tag"]),
    ("ebs-standard-tags", "snapshot-policy-without-env",
     lambda e: with_inputs(e.one(ebs_rules.LIFECYCLE_POLICY), lambda p: p["tags"].pop("env")),
     ["missing tag(s) env"]),
    ("ec2-instance-no-key-pair", "key-pair",
     lambda e: with_inputs(e.one(ec2_rules.INSTANCE), _set("keyName", "ops-laptop")),
     ["keyName is 'ops-laptop'", "remove key_name", "SSM Session Manager"]),
    ("ec2-instance-user-data-no-secrets", "api-key-in-plain-cloud-config",
     lambda e: with_inputs(e.one(ec2_rules.INSTANCE), lambda p: p.update(
         userData=p["userData"] + f"# DD_API_KEY={API_KEY_HEX}\n")),
     ["userData contains a 32-hex-character token", "Datadog API key", "SSM SecureString"]),
    ("ec2-instance-user-data-no-secrets", "api-key-in-gzipped-cloud-config",
     lambda e: with_cloud_config(e.one(ec2_rules.INSTANCE),
                                 cloud_config(e.one(ec2_rules.INSTANCE)) + f"# DD_API_KEY={API_KEY_HEX}\n"),
     ["gzip data in userDataBase64", "32-hex-character token", "Datadog API key", "SSM SecureString"]),
    # As a write_files entry with `encoding: gz+b64` would carry it; the scan reads no YAML.
    ("ec2-instance-user-data-no-secrets", "app-key-in-gz+b64-data-inside",
     lambda e: with_cloud_config(e.one(ec2_rules.INSTANCE), cloud_config(e.one(ec2_rules.INSTANCE))
                                 + "# /etc/app.env (gz+b64): " + _gz_b64(f"DD_APP_KEY={APP_KEY_HEX}\n") + "\n"),
     ["gzip data in base64 data in gzip data in userDataBase64", "40-hex-character token", "application key"]),
    ("ec2-instance-user-data-no-secrets", "wrapped-base64-private-key-in-plain-user-data",
     lambda e: with_inputs(e.one(ec2_rules.INSTANCE), lambda p: p.update(
         userData="#cloud-config\nwrite_files:\n- path: /root/.ssh/id_ed25519\n  encoding: b64\n  content: |\n"
         + "".join(f"    {line}\n" for line in re.findall(".{1,60}", base64.b64encode(
             b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----\n"
         ).decode())))),
     ["base64 data in userData", "PEM private key"]),
    ("ssm-secure-values-not-in-user-data", "api-key-parameter-value-in-user-data",
     lambda e: with_cloud_config(e.one(ec2_rules.INSTANCE), cloud_config(e.one(ec2_rules.INSTANCE))
                                 + f"# {PLACEHOLDER_SECRETS['datadog:apiKey']}\n"),
     ["gzip data in userDataBase64", "SecureString parameter 'host-datadog-api-key'"]),
    ("ssm-document-no-secrets", "app-key-in-a-bundle-file",
     lambda e: _with_bundle_line(e.one(ssm_rules.DOCUMENT), "agent/datadog.yaml", f"app_key: {APP_KEY_HEX}\n"),
     ["gzip data in base64 data in the script of mainSteps[0] (converge) contains a 40-hex-character token",
      "Datadog application key", "ssm:GetDocument", "SecureString"]),
    ("ssm-document-no-secrets", "private-key-in-a-bundle-file",
     lambda e: _with_bundle_line(e.one(ssm_rules.DOCUMENT), "app/app.env",
                                 "# -----BEGIN RSA PRIVATE KEY-----\n"),
     ["contains a PEM private key"]),
    ("ec2-instance-standard-tags", "no-project-tag",
     lambda e: with_inputs(e.one(ec2_rules.INSTANCE), lambda p: p["tags"].pop("project")),
     ["missing tag(s) project"]),
    ("security-group-no-public-admin-ports", "ssh-from-everywhere",
     lambda e: with_inputs(e.one(network.SECURITY_GROUP), _first_ingress(fromPort=22.0, toPort=22.0)),
     ["ingress[0] opens port(s) 22 (tcp) to 0.0.0.0/0 and ::/0", "SSM Session Manager"]),
    ("security-group-no-public-admin-ports", "database-range-from-ipv6-everywhere",
     lambda e: with_inputs(e.one(network.SECURITY_GROUP), _first_ingress(
         fromPort=3000.0, toPort=6000.0, cidrBlocks=["10.0.0.0/8"])),
     ["opens port(s) 3389, 5900, 5985, 5986, 3306, 5432", "to ::/0"]),
    ("security-group-no-all-ports-ingress", "all-tcp-ports-from-a-network",
     lambda e: with_inputs(e.one(network.SECURITY_GROUP), _first_ingress(
         fromPort=0.0, toPort=65535.0, cidrBlocks=["10.0.0.0/8"], ipv6CidrBlocks=None)),
     ["ingress[0] allows every port (tcp) from 10.0.0.0/8", "open only the ports"]),
    ("iam-inline-policy-no-wildcards", "action-star",
     lambda e: with_inputs(_role_policy(e), _policy_document(
         {"Effect": "Allow", "Action": "ssm:*", "Resource": "arn:aws:ssm:us-east-2:123456789012:parameter/x"})),
     ["Statement[0] allows the action(s) ssm:*", "list the actions"]),
    ("iam-inline-policy-no-wildcards", "resource-star",
     lambda e: with_inputs(_role_policy(e), _policy_document(
         {"Sid": "ReadEveryKey", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": "*"})),
     ['Statement[0] (ReadEveryKey) allows Resource "*" for ssm:GetParameter', "name the ARNs"]),
    ("iam-inline-policy-no-wildcards", "not-action",
     lambda e: with_inputs(_role_policy(e), _policy_document(
         {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::bucket"})),
     ["an Allow with NotAction"]),
    ("iam-no-admin-managed-policies", "administrator-access",
     lambda e: with_inputs(_host_role(e), _set("managedPolicyArns", [f"{AWS_POLICY}/AdministratorAccess"])),
     ["managedPolicyArns attaches arn:aws:iam::aws:policy/AdministratorAccess"]),
    # What the host role had: every SSM parameter and document of the account, whatever the stack.
    ("iam-attached-policy-no-wildcards", "ssm-managed-instance-core",
     lambda e: with_inputs(_host_role(e), _set("managedPolicyArns", [SSM_CORE])),
     [f"managedPolicyArns attaches {SSM_CORE}", 'allows Resource "*" for', "ssm:GetParameter, ssm:GetParameters",
      "ssm:GetDocument", "close it with a Deny"]),
    ("iam-attached-policy-no-wildcards", "a-policy-the-pack-cannot-read",
     lambda e: with_inputs(_host_role(e), _set("managedPolicyArns", [f"{AWS_POLICY}/AmazonS3ReadOnlyAccess"])),
     ["AmazonS3ReadOnlyAccess, whose statements the policy pack does not know", "inline policy"]),
    ("ssm-key-parameters-customer-managed-key", "default-key",
     lambda e: with_inputs(_parameter(e, "host-datadog-api-key"), _drop("keyId")),
     ["holds a key but is encrypted with the default key (alias/aws/ssm)", "customer-managed KMS key"]),
    ("ssm-key-parameters-customer-managed-key", "aws-managed-ssm-key",
     lambda e: with_inputs(_parameter(e, "host-datadog-api-key"), _set("keyId", "alias/aws/ssm")),
     ["encrypted with alias/aws/ssm", "key policy"]),
    ("ssm-key-parameters-secure-string", "plain-string",
     lambda e: with_inputs(_parameter(e, "host-datadog-api-key"), _set("type", "String")),
     ["'/observability-lab/dev/datadog/api_key' says it holds a key", 'type="SecureString"']),
    ("datadog-monitor-env-service-tags", "no-service-tag",
     lambda e: with_inputs(_monitor(e, "my-metric"), _set("tags", ["env:dev", "managed-by:pulumi"])),
     ["no service:<value> tag"]),
    ("datadog-monitor-env-service-tags", "empty-env-tag",
     lambda e: with_inputs(_monitor(e, "mysql"), _set("tags", ["env:", "service:sample-flask-app"])),
     ["no env:<value> tag"]),
    ("datadog-monitor-notifies-a-handle", "plain-email-is-no-handle",
     lambda e: with_inputs(_monitor(e, "processes"), _replace_in("message", "@sre-dev@example.com", "sre-dev@example.com")),
     ["notifies no one", "@handle"]),
    ("datadog-metric-monitor-threshold-matches-query", "query-800-critical-900",
     lambda e: with_inputs(_monitor(e, "my-metric"), _set("monitorThresholds.critical", "900")),
     ["alerts at 800 but monitorThresholds.critical is 900"]),
    # "query alert" is how the API reports a metric monitor created as "metric alert".
    ("datadog-metric-monitor-threshold-matches-query", "query-alert-critical-900",
     lambda e: with_inputs(_monitor(e, "my-metric"), lambda p: (
         p.update(type="query alert"), p["monitorThresholds"].update(critical="900"))),
     ["alerts at 800 but monitorThresholds.critical is 900"]),
    ("datadog-metric-monitor-threshold-matches-query", "no-comparison",
     lambda e: with_inputs(_monitor(e, "app-error-logs"), _replace_in("query", " > 10", "")),
     ["ends in no comparison", "'> 10'"]),
    # The SRE workbook's ticket pair (3 days / 6 hours) is beyond what Datadog accepts.
    ("datadog-burn-rate-windows-datadog-accepts", "long-window-72h",
     lambda e: with_inputs(_monitor(e, "my-metric"), lambda p: (
         p.update(type="slo alert", query='burn_rate("abc123").over("30d").long_window("72h").short_window("6h") > 1'),
         p["monitorThresholds"].update(critical="1"))),
     ["its long window is 72h", "1 hour to 48 hours"]),
    ("datadog-burn-rate-windows-datadog-accepts", "short-window-not-shorter",
     lambda e: with_inputs(_monitor(e, "my-metric"), lambda p: (
         p.update(type="slo alert", query='burn_rate("abc123").over("7d").long_window("1h").short_window("60m") > 2'),
         p["monitorThresholds"].update(critical="2"))),
     ["short window (60m) must be shorter than its long window (1h)"]),
    # The program's own burn-rate alerts (rendering/slos.py), each made to break one rule.
    ("datadog-monitor-notifies-a-handle", "burn-rate-alert-without-its-handles",
     lambda e: with_inputs(_burn_rate_alert(e, "availability-burn-pagefast"),
                           lambda p: p.update(message=p["message"].rsplit("\n", 1)[0])),
     ["notifies no one"]),
    ("datadog-metric-monitor-threshold-matches-query", "burn-rate-14.4-critical-6",
     lambda e: with_inputs(_burn_rate_alert(e, "latency-burn-pagefast"),
                           lambda p: p["monitorThresholds"].update(critical="6")),
     ["alerts at 14.4 but monitorThresholds.critical is 6"]),
    ("datadog-burn-rate-windows-datadog-accepts", "ticket-at-the-workbooks-3-days",
     lambda e: with_inputs(_burn_rate_alert(e, "availability-burn-ticket"),
                           _replace_in("query", 'long_window("48h")', 'long_window("3d")')),
     ["its long window is 3d", "1 hour to 48 hours"]),
    ("datadog-downtime-targets-monitor-or-scope", "no-monitor-everywhere",
     lambda e: with_inputs(e.of_type(dd_rules.DOWNTIME_SCHEDULE)[0], _drop("monitorIdentifier")),
     ["targets no monitor and no scope", "monitor_identifier"]),
    ("datadog-downtime-targets-monitor-or-scope", "every-monitor-tag",
     lambda e: with_inputs(e.of_type(dd_rules.DOWNTIME_SCHEDULE)[0], _set("monitorIdentifier", {"monitorTags": ["*"]})),
     ["targets no monitor and no scope"]),
    ("datadog-dashboard-template-variable", "no-template-variable",
     lambda e: with_inputs(e.of_type(dd_rules.DASHBOARD)[0], _set("templateVariables", [])),
     ["no template variable"]),
]


def test_every_policy_has_a_violating_variant():
    assert {policy for policy, *_ in VARIANTS} == set(POLICIES)


@pytest.mark.parametrize("policy, build, words", [(p, b, w) for p, _, b, w in VARIANTS],
                         ids=[f"{p}:{v}" for p, v, *_ in VARIANTS])
def test_a_violating_variant_is_reported_by_its_policy_only(world_app_port, policy, build, words):
    variant = build(world_app_port)
    others = [r for r in world_app_port.resources if r.urn != variant.urn]
    found = violations([*others, variant])
    assert {v.policy for v in found} == {policy}, found
    for violation in found:
        assert violation.urn == variant.urn
        assert f"{variant.type} '{variant.name}'" in violation.message
        for word in words:
            assert word in violation.message, (word, violation.message)
        # A message ends up in CI logs: it never repeats a secret it found.
        for secret in (API_KEY_HEX, APP_KEY_HEX, *PLACEHOLDER_SECRETS.values()):
            assert secret not in violation.message


# --- what a fix looks like, and configuration -------------------------------------------------

def test_variants_that_must_pass(world_app_port):
    e = world_app_port
    passing = [
        # Resource "*" for actions AWS cannot scope to a resource.
        with_inputs(_role_policy(e), _policy_document(
            {"Effect": "Allow", "Action": ["ec2:DescribeTags", "cloudwatch:PutMetricData"], "Resource": "*"})),
        # A Deny may use wildcards.
        with_inputs(_role_policy(e), _policy_document({"Effect": "Deny", "Action": "*", "Resource": "*"})),
        # A parameter whose name does not say "key".
        with_inputs(_parameter(e, "host-datadog-api-key"), lambda p: p.update(
            name="/observability-lab/dev/ami_id", type="String", value="ami-0123456789abcdef0")),
        # A downtime on a scope rather than a monitor.
        with_inputs(e.of_type(dd_rules.DOWNTIME_SCHEDULE)[0], lambda p: (p.pop("monitorIdentifier"),
                                                                         p.update(scope="env:dev"))),
        # SSH from one office network; all ports from a security group only.
        with_inputs(e.one(network.SECURITY_GROUP), _first_ingress(
            fromPort=22.0, toPort=22.0, cidrBlocks=["198.51.100.0/24"], ipv6CidrBlocks=None)),
        with_inputs(e.one(network.SECURITY_GROUP), _first_ingress(
            protocol="-1", fromPort=0.0, toPort=0.0, cidrBlocks=None, ipv6CidrBlocks=None,
            securityGroups=["sg-0123456789abcdef0"])),
        # A process alert ends its query with a comparison too, but is not a metric alert:
        # the threshold policy leaves it alone.
        with_inputs(_monitor(e, "app-processes"), _set("monitorThresholds.critical", "5")),
        # A sha256 (64 hex) and an e-mail address in user-data are not keys.
        with_cloud_config(e.one(ec2_rules.INSTANCE), cloud_config(e.one(ec2_rules.INSTANCE))
                          + f"# sha256 {API_KEY_HEX * 2}, contact sre@example.com\n"),
    ]
    assert violations(passing) == []


def _deny(statement: dict[str, Any]) -> dict[str, Any]:
    return {"Effect": "Deny", **statement}


@pytest.mark.parametrize("deny, reported", [
    # Everything of SSM but the stack's own resources: closes what the managed policy opens.
    (_deny({"Action": "ssm:*", "NotResource": ["arn:aws:ssm:us-east-2:123456789012:parameter/observability-lab/dev/*"]}),
     None),
    (_deny({"Action": ["SSM:Get*", "ssm:Describe*", "ssm:Update*", "ssm:List*", "ssm:Put*"], "Resource": "*"}), None),
    # A Deny under a condition, or of some actions only, leaves the rest open.
    (_deny({"Action": "ssm:*", "NotResource": ["arn:aws:ssm:*:*:parameter/x"],
            "Condition": {"Bool": {"aws:ViaAWSService": "false"}}}), "ssm:GetParameter"),
    (_deny({"Action": "ssm:GetParameter*", "NotResource": ["arn:aws:ssm:*:*:parameter/x"]}), "ssm:GetDocument"),
], ids=["not-resource", "every-resource", "conditional", "parameters-only"])
def test_a_deny_of_the_role_closes_an_attached_wildcard_only_when_it_covers_it(dev, deny, reported):
    role = with_inputs(_host_role(dev), _set("managedPolicyArns", [SSM_CORE]))
    denying = with_inputs(_role_policy(dev), _policy_document(deny))
    assert denying.inputs["role"] == role.inputs["name"]  # the inline policy is the role's
    found = violations([role, denying], ["iam-attached-policy-no-wildcards"])
    if reported is None:
        assert found == []
    else:
        assert found and all(v.urn == role.urn and reported in v.message for v in found), found


def test_the_packs_managed_policies_are_awss_as_moto_copies_them():
    published = aws_managed_policies()
    assert "AmazonSSMManagedInstanceCore" in iam_rules.AWS_MANAGED
    for name, (version, statements) in iam_rules.AWS_MANAGED.items():
        assert published[name]["DefaultVersionId"] == version, name
        assert published[name]["Document"]["Statement"] == statements, name


def test_ports_and_tag_keys_come_from_the_pack_config(world_app_port):
    sg = world_app_port.one(network.SECURITY_GROUP)
    instance = world_app_port.one(ec2_rules.INSTANCE)
    config = {"security-group-no-public-admin-ports": {"ports": [5050.0]},  # numbers arrive as floats
              "ec2-instance-standard-tags": {"requiredTagKeys": ["owner", "env"]}}
    found = violations([sg, instance], config=config)
    assert [(v.policy, v.urn) for v in found] == [
        ("ec2-instance-standard-tags", instance.urn), ("security-group-no-public-admin-ports", sg.urn)]
    assert "missing tag(s) owner;" in found[0].message
    assert "opens port(s) 5050 (tcp) to 0.0.0.0/0 and ::/0" in found[1].message
    # The schema's defaults are what applies without config, and they are the documented ones.
    assert network.PORTS_SCHEMA.properties["ports"]["default"][:4] == [22, 23, 3389, 5900]
    assert ec2_rules.TAGS_SCHEMA.properties["requiredTagKeys"]["default"] == ["env", "service", "managed-by", "project"]


def test_standard_tag_keys_default_to_the_programs_tags(dev):
    # The keys every tagged AWS resource of the program carries (the instance adds `fleet`,
    # the association's target, which is not a project-wide tag).
    tagged = [set(r.inputs["tags"]) for r in dev.resources
              if r.custom and r.type.startswith("aws:") and r.inputs.get("tags")]
    assert len(tagged) >= 5
    assert set(ec2_rules.STANDARD_TAG_KEYS) == set.intersection(*tagged) - {"Name"}


def test_secrets_are_read_through_the_mock_engines_marker_and_plain(dev):
    parameter = _parameter(dev, "host-datadog-api-key")
    assert parameter.inputs["value"] != reveal(parameter.inputs["value"])  # wrapped as a secret here
    for props in (parameter.inputs, reveal(parameter.inputs)):
        plain_variant = with_inputs(parameter, lambda p, props=props: (p.clear(), p.update(props)))
        assert violations([plain_variant, dev.one(ec2_rules.INSTANCE)]) == []
        leaked = with_cloud_config(dev.one(ec2_rules.INSTANCE), f"#cloud-config\n# {PLACEHOLDER_SECRETS['datadog:apiKey']}\n")
        assert [v.policy for v in violations([plain_variant, leaked])] == ["ssm-secure-values-not-in-user-data"]
