"""Security groups: no remote-access or database port open to the internet, no all-ports ingress.

Ingress can be written three ways in pulumi-aws: inline on the group, as an
`ec2.SecurityGroupRule`, or as a `vpc.SecurityGroupIngressRule`; all three are checked,
so moving a rule out of the group does not move it out of the policy.
"""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from guardrails.values import config, get, items, label, number, strings

SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"

# Property names per resource type (the vpc rule resource has its own).
INGRESS = "ingress"
RULE_TYPE = "type"
PROTOCOL, FROM_PORT, TO_PORT = "protocol", "fromPort", "toPort"
CIDR_BLOCKS, IPV6_CIDR_BLOCKS = "cidrBlocks", "ipv6CidrBlocks"
IP_PROTOCOL, CIDR_IPV4, CIDR_IPV6 = "ipProtocol", "cidrIpv4", "cidrIpv6"

ALL_PROTOCOLS = {"-1", "all"}
PORT_PROTOCOLS = {"tcp", "udp", "6", "17"}
# Remote access and databases: SSH, telnet, RDP, VNC, WinRM, MySQL, PostgreSQL, SQL Server,
# Oracle, MongoDB, Redis, Elasticsearch, memcached.
DEFAULT_PORTS = [22, 23, 3389, 5900, 5985, 5986, 3306, 5432, 1433, 1521, 27017, 6379, 9200, 11211]
PORTS_SCHEMA = PolicyConfigSchema(properties={
    "ports": {
        "type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 65535}, "uniqueItems": True,
        "default": DEFAULT_PORTS,
        "description": "Ports that must never be reachable from 0.0.0.0/0 or ::/0.",
    },
})


class Ingress(NamedTuple):
    where: str  # "ingress[0]", or "the rule" for a standalone rule resource
    protocol: str
    from_port: Optional[int]
    to_port: Optional[int]
    cidrs: list[str]

    def all_ports(self) -> bool:
        return self.protocol in ALL_PROTOCOLS or (
            self.protocol in PORT_PROTOCOLS and (self.from_port or 0) <= 0 and (self.to_port or 0) >= 65535)

    def covers(self, port: int) -> bool:
        if self.protocol in ALL_PROTOCOLS:
            return True
        if self.protocol not in PORT_PROTOCOLS or self.from_port is None or self.to_port is None:
            return False
        return self.from_port <= port <= self.to_port


def _port(value: Any) -> Optional[int]:
    port = number(value)
    return None if port is None else int(port)


def ingress_rules(args: ResourceValidationArgs) -> list[Ingress]:
    """Every ingress rule a resource opens, in one shape."""
    props, type_ = args.props, args.resource_type
    if type_ == SECURITY_GROUP:
        return [Ingress(f"{INGRESS}[{i}]", str(get(rule, PROTOCOL)).lower(), _port(get(rule, FROM_PORT)),
                        _port(get(rule, TO_PORT)), strings(get(rule, CIDR_BLOCKS)) + strings(get(rule, IPV6_CIDR_BLOCKS)))
                for i, rule in enumerate(items(get(props, INGRESS)))]
    if type_ == SECURITY_GROUP_RULE and get(props, RULE_TYPE) == "ingress":
        return [Ingress("the rule", str(get(props, PROTOCOL)).lower(), _port(get(props, FROM_PORT)),
                        _port(get(props, TO_PORT)), strings(get(props, CIDR_BLOCKS)) + strings(get(props, IPV6_CIDR_BLOCKS)))]
    if type_ == INGRESS_RULE:
        return [Ingress("the rule", str(get(props, IP_PROTOCOL)).lower(), _port(get(props, FROM_PORT)),
                        _port(get(props, TO_PORT)), strings(get(props, CIDR_IPV4)) + strings(get(props, CIDR_IPV6)))]
    return []


def _is_everyone(cidr: str) -> bool:
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _no_public_admin_ports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    ports = [int(p) for p in config(args, PORTS_SCHEMA, "ports")]
    for rule in ingress_rules(args):
        everyone = [c for c in rule.cidrs if _is_everyone(c)]
        exposed = [p for p in ports if rule.covers(p)]
        if everyone and exposed:
            opened = "every port" if rule.all_ports() else f"port(s) {', '.join(map(str, exposed))}"
            report(f"{label(args)}: {rule.where} opens {opened} "
                   f"({rule.protocol}) to {' and '.join(everyone)}; remove that source and allow only the "
                   "networks that need it. Shell access is through SSM Session Manager.", None)


def _no_all_ports_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    for rule in ingress_rules(args):
        if rule.all_ports() and rule.cidrs:
            report(f"{label(args)}: {rule.where} allows every port ({rule.protocol}) from "
                   f"{', '.join(rule.cidrs)}; open only the ports the service needs "
                   "(protocol \"tcp\" with from_port/to_port).", None)


POLICIES = [
    ResourceValidationPolicy(
        name="security-group-no-public-admin-ports",
        description="No ingress from 0.0.0.0/0 or ::/0 on remote-access or database ports.",
        validate=_no_public_admin_ports,
        enforcement_level=EnforcementLevel.MANDATORY,
        config_schema=PORTS_SCHEMA,
    ),
    ResourceValidationPolicy(
        name="security-group-no-all-ports-ingress",
        description="No ingress rule from an address range opens every port.",
        validate=_no_all_ports_ingress,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]

_SG_PATHS = [f"{INGRESS}.{p}" for p in (PROTOCOL, FROM_PORT, TO_PORT, CIDR_BLOCKS, IPV6_CIDR_BLOCKS)]
_RULE_PATHS = [RULE_TYPE, PROTOCOL, FROM_PORT, TO_PORT, CIDR_BLOCKS, IPV6_CIDR_BLOCKS]
_VPC_RULE_PATHS = [IP_PROTOCOL, FROM_PORT, TO_PORT, CIDR_IPV4, CIDR_IPV6]
READS = {
    name: {SECURITY_GROUP: _SG_PATHS, SECURITY_GROUP_RULE: _RULE_PATHS, INGRESS_RULE: _VPC_RULE_PATHS}
    for name in ("security-group-no-public-admin-ports", "security-group-no-all-ports-ingress")
}
