"""The monitored host: an Ubuntu LTS EC2 instance with a closed network and minimal IAM.

Shell access is through SSM Session Manager, so there is no SSH ingress and no key
pair. The Datadog API key reaches the host only through an SSM SecureString that the
Agent reads at boot (secret backend `aws.ssm`); it is never in user-data.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.settings import HostSettings, Settings

CANONICAL_OWNER = "099720109477"
# The instance tag converge.sh reads from instance metadata (IMDSv2) for the Agent's hostname.
DATADOG_HOSTNAME_TAG = "datadog-hostname"


class MonitoredHost(pulumi.ComponentResource):
    """EC2 instance + security group + instance profile + the API key parameter."""

    def __init__(self, name: str, settings: Settings, *, user_data: str,
                 config_parameter: aws.ssm.Parameter, config_document_prefix: str,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:aws:MonitoredHost", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        host = settings.host
        host_tags = _tags(settings, "host")
        fleet_key, fleet_value = settings.fleet_tag

        self.api_key_parameter = aws.ssm.Parameter(
            f"{name}-datadog-api-key",
            name=settings.api_key_parameter_name,
            description=f"Datadog API key read by the {settings.env} host's Agent at boot",
            type="SecureString",
            value=settings.datadog_api_key,
            tags=_tags(settings, "datadog-api-key"),
            opts=child,
        )
        role, role_policies = self._instance_role(name, settings, host_tags, child, config_parameter,
                                                  config_document_prefix)
        profile = aws.iam.InstanceProfile(
            f"{name}-profile", name=settings.name("host"), role=role.name,
            tags=host_tags, opts=child)

        subnet_id, vpc_id = _network(host.subnet_id, pulumi.InvokeOutputOptions(parent=self))
        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            name=settings.name("host"),
            description=f"{settings.env} monitored host: app port only, no SSH (use SSM)",
            vpc_id=vpc_id,
            ingress=_app_ingress(host.app_port, host.app_allowed_cidrs),
            egress=[aws.ec2.SecurityGroupEgressArgs(
                description="package downloads, Datadog intake, SSM",
                protocol="-1", from_port=0, to_port=0,
                cidr_blocks=["0.0.0.0/0"], ipv6_cidr_blocks=["::/0"])],
            tags=host_tags,
            opts=child,
        )

        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=_image(host, pulumi.InvokeOutputOptions(parent=self)),
            instance_type=host.instance_type,
            subnet_id=subnet_id,
            vpc_security_group_ids=[security_group.id],
            iam_instance_profile=profile.name,
            associate_public_ip_address=True,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
                # converge.sh reads the datadog-hostname tag from instance metadata.
                instance_metadata_tags="enabled"),
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=host.root_volume_gib, encrypted=True,
                delete_on_termination=True),
            user_data=user_data,
            tags={**host_tags, fleet_key: fleet_value, DATADOG_HOSTNAME_TAG: settings.datadog_hostname},
            volume_tags=host_tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Its first boot reads both parameters, with the role's permissions.
                depends_on=[self.api_key_parameter, config_parameter, *role_policies],
                # The user-data (a fetcher, components/bootstrap.py) carries no settings and
                # runs once, at first boot. Should the fetcher itself change, running hosts
                # have no use for it: ignored, the change neither replaces the host nor makes
                # the provider stop and start it to rewrite its user-data.
                ignore_changes=["userData"],
                # Only the image and the subnet replace the host. The old one goes first, so
                # two Agents never report under the one Datadog hostname.
                delete_before_replace=True,
            ),
        )

        self.instance_id = self.instance.id
        self.public_ip = self.instance.public_ip
        self.public_dns = self.instance.public_dns
        self.app_url = pulumi.Output.concat("http://", self.instance.public_dns, f":{host.app_port}")
        self.ssm_session_command = pulumi.Output.concat("aws ssm start-session --region ",
                                                        settings.aws_region, " --target ", self.instance.id)
        self.register_outputs({
            "instanceId": self.instance_id,
            "publicIp": self.public_ip,
            "publicDns": self.public_dns,
            "appUrl": self.app_url,
            "ssmSessionCommand": self.ssm_session_command,
        })

    def _instance_role(self, name: str, settings: Settings, tags: dict[str, str],
                       child: pulumi.ResourceOptions, config_parameter: aws.ssm.Parameter,
                       config_document_prefix: str) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
        role = aws.iam.Role(
            f"{name}-role",
            name=settings.name("host"),
            description=f"{settings.env} monitored host: SSM management and its own Datadog key",
            assume_role_policy=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                               "Principal": {"Service": "ec2.amazonaws.com"}}],
            }),
            tags=tags,
            opts=child,
        )
        ssm_core = aws.iam.RolePolicyAttachment(
            f"{name}-ssm-core", role=role.name,
            policy_arn=aws.iam.ManagedPolicy.AMAZON_SSM_MANAGED_INSTANCE_CORE, opts=child)
        # Only this stack's own parameters and documents. The key uses the AWS-managed
        # aws/ssm KMS key, whose key policy already lets SSM decrypt for authorised callers
        # (no kms:Decrypt). The first boot reads the configuration parameter and document
        # itself (userdata/first-boot/), so it says so here rather than relying on the
        # managed policy's broader grants.
        read_own_config = aws.iam.RolePolicy(
            f"{name}-read-own-config",
            role=role.id,
            policy=pulumi.Output.all(self.api_key_parameter.arn, config_parameter.arn).apply(
                lambda arns: json.dumps({
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Sid": "ReadOwnParameters", "Effect": "Allow",
                         "Action": ["ssm:GetParameter", "ssm:GetParameters"], "Resource": list(arns)},
                        {"Sid": "ReadOwnConfigDocuments", "Effect": "Allow", "Action": "ssm:GetDocument",
                         "Resource": _document_arn(arns[1], f"{config_document_prefix}-*")},
                    ],
                })),
            opts=child,
        )
        return role, [ssm_core, read_own_config]


def _document_arn(parameter_arn: str, name: str) -> str:
    """arn:<partition>:ssm:<region>:<account>:document/<name>, beside a parameter's ARN."""
    return parameter_arn.split(":parameter/", 1)[0] + f":document/{name}"


def _tags(settings: Settings, role: str) -> dict[str, str]:
    return {"Name": settings.name(role), **settings.aws_tags}


def _app_ingress(port: int, cidrs: tuple[str, ...]) -> list[aws.ec2.SecurityGroupIngressArgs]:
    """The app port from the allowed CIDRs; no CIDRs means no ingress at all."""
    if not cidrs:
        return []
    v4 = [c for c in cidrs if ipaddress.ip_network(c).version == 4]
    v6 = [c for c in cidrs if ipaddress.ip_network(c).version == 6]
    return [aws.ec2.SecurityGroupIngressArgs(
        description="Flask app", protocol="tcp", from_port=port, to_port=port,
        cidr_blocks=v4 or None, ipv6_cidr_blocks=v6 or None)]


def _network(subnet_id: Optional[str],
             invoke: pulumi.InvokeOutputOptions) -> tuple[pulumi.Input[str], pulumi.Output[str]]:
    """(subnet, its VPC): the stack's subnet, or a default subnet of the default VPC."""
    if subnet_id:
        return subnet_id, aws.ec2.get_subnet_output(id=subnet_id, opts=invoke).vpc_id
    vpc_id = aws.ec2.get_vpc_output(default=True, opts=invoke).id
    subnets = aws.ec2.get_subnets_output(
        filters=vpc_id.apply(lambda vpc: [
            aws.ec2.GetSubnetsFilterArgs(name="vpc-id", values=[vpc]),
            aws.ec2.GetSubnetsFilterArgs(name="default-for-az", values=["true"])]),
        opts=invoke)
    # AWS returns subnets in no fixed order; sorting keeps the choice (and the host) stable.
    return subnets.ids.apply(lambda ids: sorted(ids)[0]), vpc_id


def _image(host: HostSettings, invoke: pulumi.InvokeOutputOptions) -> pulumi.Input[str]:
    """The stack's AMI: `amiId`, or Canonical's image of exactly one release and build.

    The lookup is by exact name (release + serial), so it finds the same build in every
    region and keeps finding it when Canonical publishes newer ones: the instance's `ami`
    changes, and the host is replaced, only when the stack changes its image settings.
    Deprecated images still resolve (deprecation is not deregistration).
    """
    if host.ami_id:
        return host.ami_id
    return aws.ec2.get_ami_output(
        most_recent=True,
        owners=[CANONICAL_OWNER],
        include_deprecated=True,
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[host.ubuntu_image_name]),
            aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
        ],
        opts=invoke,
    ).id
