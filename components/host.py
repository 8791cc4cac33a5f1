"""The stack's monitored hosts: Ubuntu LTS EC2 instances with a closed network and minimal IAM.

`HostAccess` is what every host of a stack shares: the security group, the instance role
and profile, the Datadog API key parameter and the stack's own KMS key for it, where the
hosts run (subnet) and from which image. `MonitoredHost` is one host: its instance, tagged
with its Datadog hostname, and its data volume (MySQL's data), which outlives the instance:
replacing the instance replaces the volume's attachment, never the volume (docs/data.md).
A stack has one `HostAccess` and `hostCount` hosts; adding or removing a host touches no
other host's resources.

Shell access is through SSM Session Manager, so there is no SSH ingress and no key
pair. The Datadog API key reaches the hosts only through an SSM SecureString that the
Agent reads at boot (secret backend `aws.ssm`); it is never in user-data. The role has
inline policies only, on the stack's own resources, and the key's KMS key lets only this
stack's role decrypt it (rendering/iam_policies.py, docs/security.md).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.base import Component
from rendering import iam_policies
from settings.declare import PROJECT
from settings.naming import Naming
from settings.stack import DataSettings, HostSettings
from settings.validation import SettingsError

CANONICAL_OWNER = "099720109477"
# Until hosts were split out, one component of this type, named "host", held every AWS
# resource of a stack's single host: HostAccess keeps that URN as an alias, and host 1's
# instance its old one, so stacks created then keep their resources (no replacement).
SINGLE_HOST_TYPE = "observability-lab:aws:MonitoredHost"
# Then hosts were split out under the tokens of module "aws" (components/base.py has one scheme now).
ACCESS_TYPE_BEFORE = "observability-lab:aws:HostAccess"
INSTANCE_TYPE = "aws:ec2/instance:Instance"
# The instance tag converge.sh reads from instance metadata (IMDSv2) for the Agent's hostname.
DATADOG_HOSTNAME_TAG = "datadog-hostname"
# The instance tag naming its data volume's EBS id: converge.sh finds the disk by it
# (udev's /dev/disk/by-id link of an NVMe EBS volume carries the id as its serial).
DATA_VOLUME_ID_TAG = "data-volume-id"
# Where the data volume is attached: EC2 needs a name, Nitro instances ignore it (NVMe).
DATA_VOLUME_DEVICE = "/dev/sdf"


@dataclass(frozen=True)
class HostAccessArgs:
    """What every host of a stack shares."""
    naming: Naming
    host: HostSettings
    aws_region: str
    api_key: pulumi.Input[str]           # secret
    config_parameter: aws.ssm.Parameter  # names the current configuration document


@dataclass(frozen=True)
class MonitoredHostArgs:
    """One host of the stack."""
    naming: Naming
    index: int                         # host `index` of 1..hostCount
    host: HostSettings
    user_data: str                     # the first-boot fetcher (the same on every host)
    aws_region: str
    data: DataSettings                 # its data volume
    stack_name: str                    # for the settings error of a move to another zone


class HostAccess(Component):
    """Security group + instance role and profile + the API key parameter and its KMS key,
    and the network and image every host of the stack uses (looked up once)."""

    # Its children keep their URNs too: the engine applies a parent's aliases to them.
    former_types = (ACCESS_TYPE_BEFORE, SINGLE_HOST_TYPE)

    def __init__(self, name: str, args: HostAccessArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        child, naming, host = self.child, args.naming, args.host
        invoke = pulumi.InvokeOutputOptions(parent=self)
        host_tags = naming.tagged("host")

        role = aws.iam.Role(
            f"{name}-role",
            name=naming.name("host"),
            description=f"{naming.env} monitored host: SSM management and its own Datadog key",
            assume_role_policy=json.dumps(iam_policies.assume_role_by_ec2()),
            tags=host_tags,
            opts=child,
        )
        scope = role.arn.apply(lambda arn: iam_policies.ArnScope.of(arn, args.aws_region))
        deployers = (pulumi.Output.from_input(list(host.deployer_arns)) if host.deployer_arns
                     else _caller_role_arn(invoke).apply(lambda arn: [arn]))
        # The stack's own key: only this role (and the deployers) may use it, through SSM.
        self.api_key_kms_key = aws.kms.Key(
            f"{name}-datadog-api-key-kms",
            description=f"Encrypts the {naming.env} stack's Datadog API key parameter; only its hosts decrypt",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(scope, role.arn, deployers).apply(
                lambda v: json.dumps(iam_policies.api_key_key_policy(v[0], v[1], v[2]))),
            tags=naming.tagged("datadog-api-key"),
            opts=child,
        )
        alias = aws.kms.Alias(f"{name}-datadog-api-key-alias", name=naming.api_key_kms_alias,
                              target_key_id=self.api_key_kms_key.key_id, opts=child)
        self.api_key_parameter = aws.ssm.Parameter(
            f"{name}-datadog-api-key",
            name=naming.api_key_parameter,
            description=f"Datadog API key read by the {naming.env} host's Agent at boot",
            type="SecureString",
            # By alias: a known value in every preview, and what the provider reads back.
            key_id=naming.api_key_kms_alias,
            value=args.api_key,
            tags=naming.tagged("datadog-api-key"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[alias]),
        )
        role_policies = self._role_policies(name, args, role, scope, child)
        self.profile = aws.iam.InstanceProfile(
            f"{name}-profile", name=naming.name("host"), role=role.name, tags=host_tags, opts=child)

        self.subnet_id, vpc_id = _network(host.subnet_id, invoke)
        # Where the hosts run, and so where their data volumes are made (a volume stays in its zone).
        self.availability_zone = aws.ec2.get_subnet_output(id=self.subnet_id, opts=invoke).availability_zone
        self.image_id = _image(host.ami_id, host.ubuntu_image_name, invoke)
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            name=naming.name("host"),
            description=f"{naming.env} monitored host: app port only, no SSH (use SSM)",
            vpc_id=vpc_id,
            ingress=_app_ingress(host.app_port, host.app_allowed_cidrs),
            egress=[aws.ec2.SecurityGroupEgressArgs(
                description="package downloads, Datadog intake, SSM",
                protocol="-1", from_port=0, to_port=0,
                cidr_blocks=["0.0.0.0/0"], ipv6_cidr_blocks=["::/0"])],
            tags=host_tags,
            opts=child,
        )
        # A first boot reads both parameters, with the role's permissions.
        self.boot_dependencies: list[pulumi.Resource] = [self.api_key_parameter, args.config_parameter,
                                                          *role_policies]
        # The URN this stack's one instance had before hosts were split out (see SINGLE_HOST_TYPE).
        self.single_host_instance_urn = pulumi.create_urn(
            f"{name}-instance", INSTANCE_TYPE, parent=pulumi.create_urn(name, SINGLE_HOST_TYPE))
        self.register_outputs({"securityGroupId": self.security_group.id, "instanceProfile": self.profile.name})

    def _role_policies(self, name: str, args: HostAccessArgs, role: aws.iam.Role,
                       scope: pulumi.Output[iam_policies.ArnScope],
                       child: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """Inline policies only (rendering/iam_policies.py): no AWS-managed policy, whose
        grants reach every stack's parameters and documents."""
        read_own_config = aws.iam.RolePolicy(
            f"{name}-read-own-config",
            role=role.id,
            policy=pulumi.Output.all(scope, self.api_key_parameter.arn, args.config_parameter.arn,
                                     self.api_key_kms_key.arn).apply(
                lambda v: json.dumps(iam_policies.read_own_config(
                    v[0], [v[1], v[2]], args.naming.config_documents, v[3]))),
            opts=child,
        )
        ssm_agent = aws.iam.RolePolicy(
            f"{name}-ssm-agent", role=role.id,
            policy=scope.apply(lambda s: json.dumps(iam_policies.ssm_agent(s))), opts=child)
        return [read_own_config, ssm_agent]


class MonitoredHost(Component):
    """One host: an EC2 instance in the stack's shared network, role and security group."""

    former_types = ("observability-lab:aws:MonitoredHost",)

    def __init__(self, name: str, args: MonitoredHostArgs, access: HostAccess, *,
                 instance_aliases: Sequence[pulumi.Input[str]] = (),
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        naming, host = args.naming, args.host
        host_tags = naming.tagged(f"host-{args.index}")
        fleet_key, fleet_value = naming.fleet_tag
        datadog_hostname = naming.datadog_hostname(args.index)
        self.data_volume = self._data_volume(name, args, access)

        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=access.image_id,
            instance_type=host.instance_type,
            # Never in another zone than its data volume (_same_zone refuses it).
            subnet_id=_same_zone(access.subnet_id, access.availability_zone, self.data_volume, args),
            vpc_security_group_ids=[access.security_group.id],
            iam_instance_profile=access.profile.name,
            associate_public_ip_address=True,
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
                # converge.sh reads the datadog-hostname tag from instance metadata.
                instance_metadata_tags="enabled"),
            # The root volume's tags, not `volume_tags`: the provider writes those onto every
            # volume attached to the instance at each change of them, the data volume too
            # (whose own tags it then keeps rewriting back; terraform-provider-aws's instance docs).
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=host.root_volume_gib, encrypted=True,
                delete_on_termination=True, tags=host_tags),
            user_data=args.user_data,
            tags={**host_tags, fleet_key: fleet_value, DATADOG_HOSTNAME_TAG: datadog_hostname,
                  DATA_VOLUME_ID_TAG: self.data_volume.id},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=access.boot_dependencies,
                aliases=list(instance_aliases),
                # The user-data (a fetcher, rendering/first_boot.py) carries no settings and
                # runs once, at first boot. Should the fetcher itself change, running hosts
                # have no use for it: ignored, the change neither replaces the host nor makes
                # the provider stop and start it to rewrite its user-data.
                ignore_changes=["userData"],
                # Only the image and the subnet replace the host. The old one goes first, so
                # two Agents never report under the host's one Datadog hostname (and its
                # data volume is free for the new one).
                delete_before_replace=True,
            ),
        )
        # Replaced with the instance, never the volume. Detaching stops the instance first, so
        # MySQL shuts down and the filesystem is unmounted cleanly before the volume leaves.
        self.data_volume_attachment = aws.ec2.VolumeAttachment(
            f"{name}-data-attachment",
            device_name=DATA_VOLUME_DEVICE,
            volume_id=self.data_volume.id,
            instance_id=self.instance.id,
            stop_instance_before_detaching=True,
            opts=self.child,
        )

        self.datadog_hostname = datadog_hostname
        self.data_volume_id = self.data_volume.id
        self.instance_id = self.instance.id
        self.public_ip = self.instance.public_ip
        self.public_dns = self.instance.public_dns
        self.app_url = pulumi.Output.concat("http://", self.instance.public_dns, f":{host.app_port}")
        self.ssm_session_command = pulumi.Output.concat("aws ssm start-session --region ",
                                                        args.aws_region, " --target ", self.instance.id)
        self.register_outputs({
            "datadogHostname": self.datadog_hostname,
            "dataVolumeId": self.data_volume_id,
            "instanceId": self.instance_id,
            "publicIp": self.public_ip,
            "publicDns": self.public_dns,
            "appUrl": self.app_url,
            "ssmSessionCommand": self.ssm_session_command,
        })

    def _data_volume(self, name: str, args: MonitoredHostArgs, access: HostAccess) -> aws.ebs.Volume:
        """MySQL's data: a volume of its own that outlives the instance.

        Made in the hosts' zone and kept there: its zone is fixed once it exists (ignored
        afterwards, so a later subnet in another zone cannot replace it; _same_zone refuses that
        subnet). A larger size is ModifyVolume, in place; converge.sh grows the filesystem.
        On deletion (hostCount down, `pulumi destroy`) the provider takes a final snapshot
        first (`final_snapshot`, constant: a change of it alone is an update AWS refuses,
        terraform-provider-aws#31044); `retain` leaves the volume itself in AWS, `protect`
        makes Pulumi refuse to delete it.
        """
        on_delete = args.data.on_delete
        return aws.ebs.Volume(
            f"{name}-data-volume",
            availability_zone=access.availability_zone,
            size=args.data.volume_gib,
            type="gp3",
            encrypted=True,
            final_snapshot=True,
            tags=args.naming.data_volume_tags(args.index),
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["availabilityZone"],
                protect=on_delete == "protect", retain_on_delete=on_delete == "retain"),
        )


def _same_zone(subnet_id: pulumi.Input[str], subnet_zone: pulumi.Output[str], volume: aws.ebs.Volume,
              args: MonitoredHostArgs) -> pulumi.Output[str]:
    """The subnet, once its zone is the data volume's: a volume cannot follow a host to another
    zone, so a subnetId there is a settings error (before the instance or the volume changes)."""

    def check(values: list[Any]) -> str:
        subnet, zone, volume_zone, volume_id = values
        if zone != volume_zone:
            raise SettingsError(args.stack_name, [
                f"{PROJECT}:subnetId = {subnet}: that subnet is in {zone}, but host "
                f"{args.naming.datadog_hostname(args.index)}'s data volume {volume_id} is in {volume_zone}, "
                "and an EBS volume cannot move between availability zones. Use a subnet in "
                f"{volume_zone}; to move the host, restore its latest snapshot into a volume in the new "
                "zone first (docs/data.md)."])
        return subnet

    return pulumi.Output.all(subnet_id, subnet_zone, volume.availability_zone, volume.id).apply(check)


def _caller_role_arn(invoke: pulumi.InvokeOutputOptions) -> pulumi.Output[str]:
    """The IAM role (or user) running the program, not its session: aws:PrincipalArn's form."""
    caller = aws.get_caller_identity_output(opts=invoke)
    return aws.iam.get_session_context_output(arn=caller.arn, opts=invoke).issuer_arn


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
    # AWS returns subnets in no fixed order; sorting keeps the choice (and the hosts) stable.
    return subnets.ids.apply(lambda ids: sorted(ids)[0]), vpc_id


def _image(ami_id: Optional[str], image_name: str, invoke: pulumi.InvokeOutputOptions) -> pulumi.Input[str]:
    """The stack's AMI: `amiId`, or Canonical's image of exactly one release and build.

    The lookup is by exact name (release + serial), so it finds the same build in every
    region and keeps finding it when Canonical publishes newer ones: the instances' `ami`
    changes, and the hosts are replaced, only when the stack changes its image settings.
    Deprecated images still resolve (deprecation is not deregistration).
    """
    if ami_id:
        return ami_id
    return aws.ec2.get_ami_output(
        most_recent=True,
        owners=[CANONICAL_OWNER],
        include_deprecated=True,
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[image_name]),
            aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
            aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
        ],
        opts=invoke,
    ).id
