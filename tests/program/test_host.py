"""The monitored hosts' AWS resources, evaluated for the whole dev (one host) and prod (two) stacks."""

from __future__ import annotations

import json

from offline.engine import PLACEHOLDER_SECRETS, fake_id, is_secret, reveal
from tests.support import HOSTS
from tests.support.resource_types import ACCESS, HOST, INSTANCE, KMS_KEY, PARAMETER, SECURITY_GROUP
from tests.support.shared_settings import DEPLOYERS, DEV_ACCESS



def ami_lookups(evaluation):
    return [args for token, args in evaluation.invokes if token == "aws:ec2/getAmi:getAmi"]


def test_what_the_hosts_share_is_one_component_and_each_host_another(stack_eval):
    access = stack_eval.one(ACCESS)
    assert {r.type for r in stack_eval.children_of(access)} == {
        SECURITY_GROUP, PARAMETER, "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/instanceProfile:InstanceProfile", KMS_KEY, "aws:kms/alias:Alias"}
    hosts = stack_eval.of_type(HOST)
    assert sorted(h.name for h in hosts) == [f"host-{n}" for n in range(1, HOSTS[stack_eval.stack] + 1)]
    for host in hosts:
        assert {(r.type, r.name) for r in stack_eval.children_of(host)} == {
            (INSTANCE, f"{host.name}-instance"), ("aws:ebs/volume:Volume", f"{host.name}-data-volume"),
            ("aws:ec2/volumeAttachment:VolumeAttachment", f"{host.name}-data-attachment")}
    group, profile = stack_eval.one(SECURITY_GROUP), stack_eval.one("aws:iam/instanceProfile:InstanceProfile")
    for instance in stack_eval.of_type(INSTANCE):  # the one group, profile and subnet
        assert instance.inputs["vpcSecurityGroupIds"] == [f"sg-{fake_id(group.name)}"]
        assert instance.inputs["iamInstanceProfile"] == profile.inputs["name"]
        assert instance.inputs["subnetId"] == "subnet-0aaaaaaaaaaaaaaa1"
        assert group.urn in instance.dependencies and profile.urn in instance.dependencies


def test_the_image_is_one_pinned_canonical_build(stack_eval):
    (lookup,) = ami_lookups(stack_eval)
    assert lookup["owners"] == ["099720109477"]
    assert lookup["includeDeprecated"] is True
    filters = {f["name"]: f["values"] for f in lookup["filters"]}
    # An exact name, no wildcard: a newer Canonical build never changes the host's image.
    assert filters["name"] == ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20260714"]
    assert filters["architecture"] == ["x86_64"]
    for instance in stack_eval.of_type(INSTANCE):  # one lookup for every host
        assert instance.inputs["ami"] == f"ami-{fake_id(filters['name'][0])}"
        assert instance.options["ignoreChanges"] == ["userData"]


def test_release_and_serial_settings_name_another_image(run_stack):
    # 22.04's images are published under hvm-ssd/ (Canonical has no gp3 family for it).
    for overrides, name in (
            ({"ubuntuRelease": "22.04"}, "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20260731"),
            ({"ubuntuImageSerial": "20260901"},
             "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20260901")):
        (lookup,) = ami_lookups(run_stack("dev", overrides))
        assert [f["values"] for f in lookup["filters"] if f["name"] == "name"] == [[name]], overrides


def test_pinned_ami_skips_the_lookup(run_stack):
    evaluation = run_stack("prod", {"amiId": "ami-0123456789abcdef0"})
    assert ami_lookups(evaluation) == []
    assert [i.inputs["ami"] for i in evaluation.of_type(INSTANCE)] == ["ami-0123456789abcdef0"] * 2


def test_security_group_is_closed_by_default_and_never_opens_ssh(stack_eval):
    group = stack_eval.one(SECURITY_GROUP)
    assert group.inputs.get("ingress", []) == []
    assert all(rule["fromPort"] != 22 for rule in group.inputs.get("ingress", []))


def test_security_group_opens_only_the_app_port_to_the_allowed_cidrs(run_stack):
    evaluation = run_stack("dev", DEV_ACCESS)  # APP_CIDRS: 203.0.113.0/24 and 2001:db8::/32
    (rule,) = evaluation.one(SECURITY_GROUP).inputs["ingress"]
    assert (rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 5050, 5050)
    assert rule["cidrBlocks"] == ["203.0.113.0/24"]
    assert rule["ipv6CidrBlocks"] == ["2001:db8::/32"]


def test_app_port_open_to_the_world_only_when_a_setting_says_so(run_stack, stack_eval):
    for rule in stack_eval.one(SECURITY_GROUP).inputs.get("ingress", []):
        assert "0.0.0.0/0" not in rule.get("cidrBlocks", [])
    opened = run_stack("dev", {"appAllowedCidrs": ["0.0.0.0/0"], "appPort": 8080})
    (rule,) = opened.one(SECURITY_GROUP).inputs["ingress"]
    assert (rule["fromPort"], rule["cidrBlocks"]) == (8080, ["0.0.0.0/0"])


def test_egress_is_open_for_package_downloads(stack_eval):
    (egress,) = stack_eval.one(SECURITY_GROUP).inputs["egress"]
    assert egress["protocol"] == "-1"
    assert egress["cidrBlocks"] == ["0.0.0.0/0"]


def api_key_parameter(evaluation):
    (parameter,) = [r for r in evaluation.of_type(PARAMETER) if r.inputs["name"].endswith("/datadog/api_key")]
    return parameter


def test_instance_role_has_inline_policies_on_its_own_resources_only(stack_eval):
    """What the policies say, statement by statement; tests/program/test_iam_access.py evaluates them."""
    env = stack_eval.stack
    parameters = {r.inputs["name"]: r for r in stack_eval.of_type(PARAMETER)}
    assert set(parameters) == {f"/observability-lab/{env}/datadog/api_key",
                               f"/observability-lab/{env}/host-config/document"}
    policies = {r.name: json.loads(r.inputs["policy"]) for r in stack_eval.of_type("aws:iam/rolePolicy:RolePolicy")
                if r.inputs["role"] == f"observability-lab-{env}-host"}
    assert set(policies) == {"host-read-own-config", "host-ssm-agent"}
    read_parameters, read_documents, decrypt = policies["host-read-own-config"]["Statement"]
    assert sorted(read_parameters["Action"]) == ["ssm:GetParameter", "ssm:GetParameters"]
    assert read_parameters["Resource"] == [parameters[name].outputs["arn"] for name in sorted(parameters)]
    assert read_documents["Action"] == "ssm:GetDocument"
    assert read_documents["Resource"] == (f"arn:aws:ssm:us-east-2:123456789012:document/"
                                          f"observability-lab-{env}-host-config-*")
    assert stack_eval.one("aws:ssm/document:Document").inputs["name"].startswith(
        read_documents["Resource"].rsplit("/", 1)[1][:-1])
    key = stack_eval.one(KMS_KEY)
    assert decrypt["Action"] == "kms:Decrypt" and decrypt["Resource"] == key.outputs["arn"]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "ssm.us-east-2.amazonaws.com"}}
    instance_scoped, channels = policies["host-ssm-agent"]["Statement"]
    assert instance_scoped["Resource"] == ["arn:aws:ec2:us-east-2:123456789012:instance/*",
                                           "arn:aws:ssm:us-east-2:123456789012:association/*"]
    assert channels["Resource"] == "*" and all(
        a.split(":")[0] in ("ec2messages", "ssmmessages") for a in channels["Action"])
    assert stack_eval.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []  # no managed policy
    role = next(r for r in stack_eval.of_type("aws:iam/role:Role") if r.name == "host-role")
    assert "managedPolicyArns" not in role.inputs
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_the_api_key_is_encrypted_with_the_stacks_own_key(stack_eval):
    env = stack_eval.stack
    parameter, key = api_key_parameter(stack_eval), stack_eval.one(KMS_KEY)
    alias = stack_eval.one("aws:kms/alias:Alias")
    assert parameter.inputs["keyId"] == alias.inputs["name"] == f"alias/observability-lab-{env}-datadog-api-key"
    assert alias.inputs["targetKeyId"] == key.outputs["keyId"]
    assert alias.urn in parameter.dependencies  # the alias exists before SSM is told to use it
    assert key.inputs["enableKeyRotation"] is True
    policy = json.loads(key.inputs["policy"])
    administer, hosts, deployers = policy["Statement"]
    root = {"AWS": "arn:aws:iam::123456789012:root"}
    assert administer["Principal"] == hosts["Principal"] == deployers["Principal"] == root
    assert not {"kms:Decrypt", "kms:Encrypt", "kms:CreateGrant", "kms:ReEncryptFrom"} & set(administer["Action"])
    assert hosts["Condition"]["ArnEquals"] == {
        "aws:PrincipalArn": [f"arn:aws:iam::123456789012:role/observability-lab-{env}-host"]}
    # Without deployerArns, whoever runs the program: its role, not its session.
    assert deployers["Condition"]["ArnEquals"] == {
        "aws:PrincipalArn": ["arn:aws:iam::123456789012:role/observability-lab-deploy"]}
    for statement in (hosts, deployers):
        assert statement["Condition"]["StringEquals"] == {"kms:ViaService": "ssm.us-east-2.amazonaws.com"}


def test_deployers_can_be_named(run_stack):
    deployers = DEPLOYERS["deployerArns"]
    evaluation = run_stack("dev", DEV_ACCESS)
    statement = json.loads(evaluation.one(KMS_KEY).inputs["policy"])["Statement"][2]
    assert statement["Condition"]["ArnEquals"] == {"aws:PrincipalArn": sorted(deployers)}
    assert not [token for token, _ in evaluation.invokes if "getSessionContext" in token]


def test_instances_are_hardened(stack_eval):
    for resource in stack_eval.of_type(INSTANCE):
        instance = resource.inputs
        # IMDSv2 only, one hop; instance tags readable in metadata (converge.sh reads its hostname there).
        assert instance["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required",
                                               "httpPutResponseHopLimit": 1, "instanceMetadataTags": "enabled"}
        root = instance["rootBlockDevice"]
        assert (root["volumeType"], root["encrypted"]) == ("gp3", True)
        assert "userDataReplaceOnChange" not in instance
        assert "keyName" not in instance


def test_each_instance_is_tagged_with_its_own_datadog_hostname_and_the_stacks_fleet(stack_eval):
    env = stack_eval.stack
    instances = sorted(stack_eval.of_type(INSTANCE), key=lambda r: r.name)
    assert [i.inputs["tags"]["datadog-hostname"] for i in instances] == [
        f"observability-lab-{env}-{n}" for n in range(1, HOSTS[env] + 1)]
    assert [i.inputs["tags"]["Name"] for i in instances] == [
        f"observability-lab-{env}-host-{n}" for n in range(1, HOSTS[env] + 1)]
    assert all(i.inputs["tags"]["fleet"] == f"observability-lab-{env}" for i in instances)
    assert sorted(stack_eval.outputs["hosts"]) == [i.inputs["tags"]["datadog-hostname"] for i in instances]


def test_instance_size_follows_the_stack(dev, prod):
    for evaluation, size, gib in ((dev, "t3.small", 20), (prod, "t3.medium", 30)):
        for instance in evaluation.of_type(INSTANCE):
            assert instance.inputs["instanceType"] == size
            assert instance.inputs["rootBlockDevice"]["volumeSize"] == gib


def test_every_taggable_aws_resource_carries_env_and_a_name_with_the_env(stack_eval):
    env = stack_eval.stack
    tagged = [r for r in stack_eval.resources if r.type.startswith("aws:") and "tags" in r.inputs]
    assert {r.type for r in tagged} >= {INSTANCE, SECURITY_GROUP, PARAMETER, "aws:iam/role:Role"}
    for resource in tagged:
        tags = resource.inputs["tags"]
        assert tags["env"] == env and tags["managed-by"] == "pulumi"
        assert tags["service"] == "sample-flask-app" and tags["project"] == "observability-lab"
        assert f"-{env}-" in tags["Name"]


def test_dev_and_prod_aws_names_do_not_collide(dev, prod):
    def names(evaluation):
        aws_resources = [r for r in evaluation.resources if r.type.startswith("aws:")]
        return ({r.inputs["name"] for r in aws_resources if "name" in r.inputs}
                | {r.inputs["tags"]["Name"] for r in aws_resources if "tags" in r.inputs})
    assert names(dev) and not names(dev) & names(prod)


def test_api_key_lives_only_in_the_ssm_parameter_as_a_secret(stack_eval):
    key = PLACEHOLDER_SECRETS["datadog:apiKey"]
    parameter = api_key_parameter(stack_eval)
    assert parameter.inputs["type"] == "SecureString"
    assert is_secret(parameter.inputs["value"]) and reveal(parameter.inputs["value"]) == key
    for resource in stack_eval.resources:
        if resource is not parameter:
            assert key not in json.dumps(reveal(resource.inputs)), resource.name
    assert key not in json.dumps(stack_eval.outputs)


SINGLE_HOST_OUTPUTS = {"datadogHostname", "instanceId", "publicIp", "publicDns", "appUrl", "ssmSessionCommand"}


def test_outputs_give_each_host_without_the_key(stack_eval):
    hosts = stack_eval.outputs["hosts"]
    instances = {i.inputs["tags"]["datadog-hostname"]: i for i in stack_eval.of_type(INSTANCE)}
    assert set(hosts) == set(instances) and len(hosts) == HOSTS[stack_eval.stack]
    for hostname, host in hosts.items():
        instance = instances[hostname]
        instance_id = f"i-{fake_id(instance.name)}"
        assert host == {
            "instanceId": instance_id,
            "dataVolumeId": instance.inputs["tags"]["data-volume-id"],
            "publicDns": instance.outputs["publicDns"],
            "appUrl": f"http://{instance.outputs['publicDns']}:5050",
            "ssmSessionCommand": f"aws ssm start-session --region us-east-2 --target {instance_id}",
        }
    assert len({h["publicDns"] for h in hosts.values()}) == len(hosts)


def test_one_host_stacks_keep_their_single_host_outputs(dev, prod):
    outputs = dev.outputs
    ((hostname, host),) = outputs["hosts"].items()
    assert outputs["datadogHostname"] == hostname == "observability-lab-dev-1"
    assert {k: outputs[k] for k in host if k in SINGLE_HOST_OUTPUTS} == {
        k: v for k, v in host.items() if k != "dataVolumeId"}  # newer than the one-host outputs
    assert outputs["publicIp"]
    # Several hosts: the per-host map only, no output naming one host among them.
    assert not SINGLE_HOST_OUTPUTS & set(prod.outputs)
