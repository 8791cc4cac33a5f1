"""The IAM and KMS policy documents of a stack's hosts, as plain data (no Pulumi).

What a host may do, and who may read its Datadog API key, is decided here and nowhere
else: `components/host.py` only fills in the ARNs. Every grant names this stack's own
resources, except the few SSM Agent actions AWS cannot scope to a resource.

- The instance role: read this stack's two parameters and its configuration documents;
  decrypt the stack's own KMS key, through SSM only; and what the SSM Agent calls for
  State Manager and Session Manager (read from amazon-ssm-agent's source, below), instead of
  the AWS-managed AmazonSSMManagedInstanceCore, which allows ssm:GetParameter(s) and
  ssm:GetDocument on every resource of the account.
- The KMS key holding the API key: its key policy lets the account's administrators (IAM
  principals whose own policies allow it) manage the key but never use it; only this stack's
  host role may decrypt with it, and the deployers (who hold the key anyway) encrypt and
  decrypt, each only through SSM. No statement delegates use of the key to IAM as a whole, so
  no other principal of the account can decrypt, whatever its IAM policies say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

VERSION = "2012-10-17"

# What the SSM Agent (aws/amazon-ssm-agent) calls for what these hosts use of it:
# agent/association/service/service.go (State Manager: list the instance's associations,
# fetch their documents, report status), agent/association/compliance/uploader (association
# compliance), the health pinger (UpdateInstanceInformation), and the message gateway and
# Run Command channels (Session Manager, commands). Not granted: ListAssociations /
# DescribeAssociation / UpdateAssociationStatus (the agent's fallback for legacy
# InstanceId associations; these are target associations), inventory, patching and
# Distributor (GetManifest, PutConfigurePackageResult, GetDeployablePatchSnapshotForInstance),
# and parameter references in documents (ours have none).
SSM_AGENT_INSTANCE_ACTIONS = (  # resource: the instance (and, for status, the association)
    "ssm:UpdateInstanceInformation",
    "ssm:ListInstanceAssociations",
    "ssm:UpdateInstanceAssociationStatus",
    "ssm:PutComplianceItems",
)
# The Service Authorization Reference lists no resource type for these: "*" only.
SSM_AGENT_CHANNEL_ACTIONS = (
    "ec2messages:AcknowledgeMessage", "ec2messages:DeleteMessage", "ec2messages:FailMessage",
    "ec2messages:GetEndpoint", "ec2messages:GetMessages", "ec2messages:SendReply",
    "ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel", "ssmmessages:OpenDataChannel",
)
# Managing a key without being able to use it (the default key policy's "key administrators"
# statement, spelled out): no Encrypt/Decrypt/GenerateDataKey/ReEncrypt, and no CreateGrant,
# which could hand those to anyone.
KEY_ADMINISTRATION_ACTIONS = (
    "kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias", "kms:DescribeKey", "kms:GetKeyPolicy",
    "kms:PutKeyPolicy", "kms:GetKeyRotationStatus", "kms:EnableKeyRotation", "kms:DisableKeyRotation",
    "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListResourceTags",
    "kms:RevokeGrant", "kms:RetireGrant", "kms:TagResource", "kms:UntagResource", "kms:UpdateKeyDescription",
    "kms:EnableKey", "kms:DisableKey", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
)
DEPLOYER_KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")


@dataclass(frozen=True)
class ArnScope:
    """Where the stack lives: every ARN below is built from these."""
    partition: str
    region: str
    account: str

    @classmethod
    def of(cls, arn: str, region: str) -> "ArnScope":
        """The partition and account of any ARN of the stack (arn:<partition>:<service>:<region>:<account>:...)."""
        _, partition, _, _, account, _ = arn.split(":", 5)
        return cls(partition, region, account)

    def arn(self, service: str, resource: str, *, regional: bool = True) -> str:
        return f"arn:{self.partition}:{service}:{self.region if regional else ''}:{self.account}:{resource}"

    @property
    def account_root(self) -> str:
        return self.arn("iam", "root", regional=False)

    @property
    def ssm_service(self) -> str:
        """What kms:ViaService says when SSM calls KMS for a caller."""
        return f"ssm.{self.region}.amazonaws.com"


def _document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": VERSION, "Statement": list(statements)}


def read_own_config(scope: ArnScope, parameter_arns: Sequence[str], document_prefix: str,
                    key_arn: str) -> dict[str, Any]:
    """This stack's parameters, configuration documents and API key: what the first boot,
    converge.sh and the Agent's secret backend (GetParameter(s), WithDecryption) read."""
    return _document(
        {"Sid": "ReadOwnParameters", "Effect": "Allow",
         "Action": ["ssm:GetParameter", "ssm:GetParameters"], "Resource": list(parameter_arns)},
        {"Sid": "ReadOwnConfigDocuments", "Effect": "Allow", "Action": "ssm:GetDocument",
         "Resource": scope.arn("ssm", f"document/{document_prefix}-*")},
        {"Sid": "DecryptOwnApiKeyThroughSsm", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": scope.ssm_service}}},
    )


def ssm_agent(scope: ArnScope) -> dict[str, Any]:
    """What the SSM Agent needs: State Manager associations and Session Manager."""
    return _document(
        {"Sid": "SsmAgentReportsForItsInstance", "Effect": "Allow", "Action": list(SSM_AGENT_INSTANCE_ACTIONS),
         "Resource": [scope.arn("ec2", "instance/*"), scope.arn("ssm", "association/*")]},
        {"Sid": "SsmAgentChannels", "Effect": "Allow", "Action": list(SSM_AGENT_CHANNEL_ACTIONS), "Resource": "*"},
    )


def api_key_key_policy(scope: ArnScope, host_role_arn: str, deployer_arns: Sequence[str]) -> dict[str, Any]:
    """The key policy of the stack's API key: administrators manage, the hosts decrypt, the
    deployers write and read back the parameter, SSM being the only way to use the key.

    Every statement names the account (not `*`) and, for use of the key, the exact principals
    (aws:PrincipalArn, which is a role's ARN with its path, whatever the session): an IAM policy
    elsewhere in the account that allows kms:Decrypt on `*` matches none of them.
    """
    via_ssm = {"StringEquals": {"kms:ViaService": scope.ssm_service}}
    root = {"AWS": scope.account_root}
    return _document(
        {"Sid": "AdministratorsManageTheKeyWithoutUsingIt", "Effect": "Allow", "Principal": root,
         "Action": list(KEY_ADMINISTRATION_ACTIONS), "Resource": "*"},
        {"Sid": "HostsDecryptTheApiKeyThroughSsm", "Effect": "Allow", "Principal": root,
         "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {**via_ssm, "ArnEquals": {"aws:PrincipalArn": [host_role_arn]}}},
        {"Sid": "DeployersWriteAndReadTheParameterThroughSsm", "Effect": "Allow", "Principal": root,
         "Action": list(DEPLOYER_KEY_ACTIONS), "Resource": "*",
         "Condition": {**via_ssm, "ArnEquals": {"aws:PrincipalArn": sorted(deployer_arns)}}},
    )


def assume_role_by_ec2() -> dict[str, Any]:
    return _document({"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ec2.amazonaws.com"}})
