"""observability-lab's policies, imported by the pack (policy/__main__.py) and by the tests.

Each module holds the policies of one area and READS: the engine property names each
policy reads, per resource type (the tests check them against the SDKs' resources).
"""

from __future__ import annotations

from pulumi_policy import Policy

from guardrails import datadog, ebs, ec2, iam, network, ssm

PACK_NAME = "observability-lab-guardrails"

_MODULES = (ec2, ebs, network, iam, ssm, datadog)
POLICIES: list[Policy] = [policy for module in _MODULES for policy in module.POLICIES]
READS: dict[str, dict[str, list[str]]] = {name: reads for module in _MODULES for name, reads in module.READS.items()}
