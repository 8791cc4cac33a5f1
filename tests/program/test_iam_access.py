"""Who may read a stack's Datadog API key: the program's real policies, evaluated by principalmapper.

Dev and prod are rendered by the offline engine (one fake account and region, as when both stacks
share an account) and their host roles, KMS key policies, parameters and documents go, as
rendered, to an IAM evaluator nobody here wrote (tests/support/iam_simulator.py). An attached managed
policy counts with AWS's own statements (moto's copy); a parameter without a customer-managed
key is under `aws/ssm`, whose key policy lets every principal of the account that SSM
authorises decrypt through SSM (AWS's documented policy of that key, below).

Reading a SecureString's value takes both `ssm:GetParameter(s)` on the parameter and
`kms:Decrypt` on its key in the request SSM makes for the caller (`kms:ViaService`).
"""

from __future__ import annotations

import json

import pytest

from rendering import iam_policies
from tests.support import REGION
from tests.support.iam_simulator import Principal, managed_policy
from offline.engine import FAKE_ACCOUNT, FAKE_DEPLOYER, Evaluation

VIA_SSM = {"kms:ViaService": f"ssm.{REGION}.amazonaws.com", "kms:CallerAccount": FAKE_ACCOUNT}
AWS_SSM_KEY = f"arn:aws:kms:{REGION}:{FAKE_ACCOUNT}:key/aws-ssm"
# The key policy AWS gives the AWS-managed key aws/ssm ("Principal": "*" written as the string,
# which AWS treats as {"AWS": "*"}: principalmapper reads only the string form as "anyone").
AWS_SSM_KEY_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "Allow access through AWS Systems Manager for all principals in the account that are authorized "
           "to use AWS Systems Manager",
    "Effect": "Allow", "Principal": "*",
    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant",
               "kms:DescribeKey"],
    "Resource": "*",
    "Condition": {"StringEquals": {"kms:CallerAccount": FAKE_ACCOUNT, "kms:ViaService": f"ssm.{REGION}.amazonaws.com"}},
}]}
EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["ssm:*", "kms:*"], "Resource": "*"}]}


class Stack:
    """What one rendered stack holds that access depends on."""

    def __init__(self, evaluation: Evaluation):
        self.env = evaluation.stack
        role = next(r for r in evaluation.of_type("aws:iam/role:Role") if r.name == "host-role")
        inline = [json.loads(r.inputs["policy"]) for r in evaluation.of_type("aws:iam/rolePolicy:RolePolicy")
                  if r.inputs["role"] == role.outputs["name"]]
        attached = [managed_policy(r.inputs["policyArn"].rsplit("/", 1)[1])
                    for r in evaluation.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
        self.host = Principal(role.outputs["arn"], inline + attached)
        parameters = {r.inputs["name"].rsplit("/", 1)[1]: r for r in evaluation.of_type("aws:ssm/parameter:Parameter")}
        api_key, self.config_parameter = parameters["api_key"], parameters["document"].outputs["arn"]
        self.api_key_parameter = api_key.outputs["arn"]
        self.document = (f"arn:aws:ssm:{REGION}:{FAKE_ACCOUNT}:document/"
                         + evaluation.one("aws:ssm/document:Document").inputs["name"])
        keys = evaluation.of_type("aws:kms/key:Key")
        if api_key.inputs.get("keyId") in (None, "alias/aws/ssm"):
            self.key, self.key_policy = AWS_SSM_KEY, AWS_SSM_KEY_POLICY
        else:
            (alias,) = [a for a in evaluation.of_type("aws:kms/alias:Alias") if a.inputs["name"] == api_key.inputs["keyId"]]
            (key,) = [k for k in keys if k.outputs["keyId"] == alias.inputs["targetKeyId"]]
            self.key, self.key_policy = key.outputs["arn"], json.loads(key.inputs["policy"])

    def reads_api_key(self, who: Principal) -> bool:
        """Whether `who` gets the value, as the Agent's secret backend asks (GetParameter(s), WithDecryption)."""
        return (all(who.may(action, self.api_key_parameter) for action in ("ssm:GetParameter", "ssm:GetParameters"))
                and self.decrypts(who))

    def decrypts(self, who: Principal, context: dict[str, str] = VIA_SSM, action: str = "kms:Decrypt") -> bool:
        return who.may(action, self.key, context, self.key_policy)


@pytest.fixture(scope="module")
def stacks(run_stack) -> dict[str, Stack]:
    return {env: Stack(run_stack(env)) for env in ("dev", "prod")}


OTHER = {"dev": "prod", "prod": "dev"}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_stacks_hosts_read_their_own_api_key_as_the_agent_does(stacks, env):
    own = stacks[env]
    assert own.reads_api_key(own.host)
    assert own.host.may("ssm:GetParameter", own.config_parameter)  # the first boot's pointer
    assert own.host.may("ssm:GetDocument", own.document)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_a_stacks_hosts_cannot_read_another_stacks_key_parameters_or_documents(stacks, env):
    own, other = stacks[env], stacks[OTHER[env]]
    assert not own.host.may("ssm:GetParameter", other.api_key_parameter)  # not even the ciphertext
    assert not own.host.may("ssm:GetParameters", other.api_key_parameter)
    assert not other.decrypts(own.host)  # nor the key, were the parameter readable
    assert not own.host.may("ssm:GetParameter", other.config_parameter)
    assert not own.host.may("ssm:GetDocument", other.document)
    assert not own.host.may("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{FAKE_ACCOUNT}:parameter/any/other")


def test_the_hosts_own_key_decrypts_through_ssm_only(stacks):
    dev = stacks["dev"]
    assert not dev.decrypts(dev.host, context={})  # a direct kms:Decrypt from the host
    assert not dev.decrypts(dev.host, context={**VIA_SSM, "kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"})
    for action in ("kms:Encrypt", "kms:CreateGrant", "kms:PutKeyPolicy"):
        assert not dev.decrypts(dev.host, action=action)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_no_other_principal_of_the_account_decrypts_whatever_its_iam_policies(stacks, env):
    stack = stacks[env]
    broad = Principal(f"arn:aws:iam::{FAKE_ACCOUNT}:role/another-team", [EVERYTHING])
    admin = Principal(f"arn:aws:iam::{FAKE_ACCOUNT}:role/Admin", [managed_policy("AdministratorAccess")])
    for who in (broad, admin):
        assert who.may("ssm:GetParameter", stack.api_key_parameter)  # IAM allows the call...
        assert not stack.decrypts(who)  # ...the key policy refuses the value
        assert not stack.reads_api_key(who)
    # What remains: an administrator may rewrite the key policy (docs/security.md).
    assert stack.decrypts(admin, context={}, action="kms:PutKeyPolicy")
    assert not stack.decrypts(broad, context={}, action="kms:CreateGrant")


def test_the_deployer_writes_and_reads_the_parameter_through_ssm(stacks):
    deployer = Principal(FAKE_DEPLOYER, [managed_policy("AdministratorAccess")])
    for stack in stacks.values():
        for action in iam_policies.DEPLOYER_KEY_ACTIONS:
            assert stack.decrypts(deployer, action=action), action
        assert not stack.decrypts(deployer, context={})


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_ssm_agent_may_do_what_it_calls_and_that_is_a_subset_of_awss_own_policy(stacks, env):
    host = stacks[env].host
    instance = f"arn:aws:ec2:{REGION}:{FAKE_ACCOUNT}:instance/i-0123456789abcdef0"
    association = f"arn:aws:ssm:{REGION}:{FAKE_ACCOUNT}:association/0123abcd-0123-4567-89ab-0123456789ab"
    for action in iam_policies.SSM_AGENT_INSTANCE_ACTIONS:
        assert host.may(action, instance), action
    assert host.may("ssm:UpdateInstanceAssociationStatus", association)
    for action in iam_policies.SSM_AGENT_CHANNEL_ACTIONS:
        assert host.may(action, "*"), action
    core = {a for s in managed_policy("AmazonSSMManagedInstanceCore")["Statement"] for a in s["Action"]}
    assert set(iam_policies.SSM_AGENT_INSTANCE_ACTIONS + iam_policies.SSM_AGENT_CHANNEL_ACTIONS) <= core
    assert not host.may("ssm:SendCommand", instance)  # no control of other instances


def test_what_the_managed_policy_allowed_every_host(stacks):
    """The finding, through the same evaluator: AmazonSSMManagedInstanceCore and aws/ssm let
    any host read any stack's key (which is why neither is used)."""
    dev_role = stacks["dev"].host.arn
    old_host = Principal(dev_role, [managed_policy("AmazonSSMManagedInstanceCore")])
    prod_parameter = stacks["prod"].api_key_parameter
    assert old_host.may("ssm:GetParameter", prod_parameter)
    assert old_host.may("kms:Decrypt", AWS_SSM_KEY, VIA_SSM, AWS_SSM_KEY_POLICY)


# --- the snapshot policy's role (Data Lifecycle Manager) ------------------------------------

VOLUME = f"arn:aws:ec2:{REGION}:{FAKE_ACCOUNT}:volume/vol-0123456789abcdef0"
SNAPSHOT = f"arn:aws:ec2:{REGION}::snapshot/snap-0123456789abcdef0"


def snapshot_role(evaluation: Evaluation) -> tuple[Principal, dict]:
    role = next(r for r in evaluation.of_type("aws:iam/role:Role") if r.name == "data-snapshots-role")
    (grants,) = [json.loads(r.inputs["policy"]) for r in evaluation.of_type("aws:iam/rolePolicy:RolePolicy")
                 if r.inputs["role"] == role.outputs["name"]]
    return Principal(role.outputs["arn"], [grants]), json.loads(role.inputs["assumeRolePolicy"])


def tagged(key: str, value: str) -> dict[str, str]:
    return {f"aws:ResourceTag/{key}": value}


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_dlm_snapshots_the_stacks_data_volumes_and_expires_only_its_own_snapshots(run_stack, env):
    dlm, trust = snapshot_role(run_stack(env))
    volume_tag, snapshot_tag = ("data-volume", f"observability-lab-{env}"), ("data-snapshot", f"observability-lab-{env}")
    assert trust["Statement"] == [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                   "Principal": {"Service": "dlm.amazonaws.com"}}]
    # CreateSnapshot authorizes the volume and the new snapshot; DLM then tags the snapshot.
    assert dlm.may("ec2:CreateSnapshot", VOLUME, tagged(*volume_tag))
    assert dlm.may("ec2:CreateSnapshot", SNAPSHOT) and dlm.may("ec2:CreateTags", SNAPSHOT)
    assert dlm.may("ec2:DeleteSnapshot", SNAPSHOT, tagged(*snapshot_tag))
    for action in iam_policies.DLM_DESCRIBE_ACTIONS:
        assert dlm.may(action, "*"), action
    other = OTHER[env]
    assert not dlm.may("ec2:CreateSnapshot", VOLUME)  # an untagged volume (a root volume)
    assert not dlm.may("ec2:CreateSnapshot", VOLUME, tagged("data-volume", f"observability-lab-{other}"))
    assert not dlm.may("ec2:DeleteSnapshot", SNAPSHOT)  # a snapshot someone else made
    assert not dlm.may("ec2:DeleteSnapshot", SNAPSHOT, tagged("data-snapshot", f"observability-lab-{other}"))
    # Nothing that reads data out, shares it or removes a volume.
    for action in ("ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:DeleteVolume", "ec2:CreateVolume",
                   "ec2:DetachVolume", "ebs:GetSnapshotBlock"):
        assert not dlm.may(action, VOLUME, tagged(*volume_tag)) and not dlm.may(action, SNAPSHOT, tagged(*snapshot_tag))


def test_dlms_grants_are_a_subset_of_awss_own_policy_for_it(dev):
    dlm, _ = snapshot_role(dev)
    managed = managed_policy("AWSDataLifecycleManagerServiceRole")["Statement"]
    allowed = {a for s in managed for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    granted = {a for doc in dlm.policies for s in doc["Statement"]
               for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert granted <= allowed
    assert {"ec2:CreateSnapshot", "ec2:DeleteSnapshot", "ec2:CreateTags"} <= granted
