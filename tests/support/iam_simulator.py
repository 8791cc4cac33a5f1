"""An IAM request evaluator nobody here wrote: NCC Group's Principal Mapper (principalmapper).

`local_check_authorization_full` evaluates a request locally the way AWS documents it:
explicit denies first, then the resource's own policy (for KMS, the key policy must allow the
caller itself or delegate to the account, as KMS requires), permission boundaries, then the
caller's identity policies, with condition operators and keys (`kms:ViaService`,
`aws:PrincipalArn` inferred from the caller, ...). What it does not model, and so what stays
an assumption about AWS (docs/security.md): how SSM itself forwards a caller's identity to KMS
(we pass the `kms:ViaService` SSM sets), grants, SCPs we do not have, and the service-side
checks SSM makes beyond IAM.

principalmapper 1.1.5 imports `Mapping` from `collections`, removed in Python 3.10; the two
aliases are restored before importing it (the only change made for it).
"""

from __future__ import annotations

import collections
import collections.abc
import copy
import functools
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Optional

for _name in ("Mapping", "MutableMapping"):
    if not hasattr(collections, _name):
        setattr(collections, _name, getattr(collections.abc, _name))

from principalmapper.common import Node, Policy  # noqa: E402
from principalmapper.querying.query_interface import local_check_authorization_full  # noqa: E402


@functools.cache
def aws_managed_policies() -> dict[str, Any]:
    """moto's copy of AWS's managed policies (name -> version, document), parsed once: read, never change it."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    return json.loads(aws_managed_policies_data)


def managed_policy(name: str) -> dict[str, Any]:
    """An AWS-managed policy's document (the caller's own copy)."""
    return copy.deepcopy(aws_managed_policies()[name]["Document"])


@dataclass
class Principal:
    arn: str
    policies: list[dict[str, Any]] = field(default_factory=list)  # identity policy documents
    trust: dict[str, Any] = field(default_factory=lambda: {"Version": "2012-10-17", "Statement": []})

    def node(self) -> Node:
        policies = [Policy(f"{self.arn}/policy-{i}", f"policy-{i}", doc) for i, doc in enumerate(self.policies)]
        return Node(self.arn, f"AROA{zlib.crc32(self.arn.encode()):016d}", policies, [],
                    self.trust if ":role/" in self.arn else None, None, 0, False, False, None, False, {})

    def may(self, action: str, resource: str, context: Optional[dict[str, str]] = None,
            resource_policy: Optional[dict[str, Any]] = None) -> bool:
        """Whether AWS would allow this principal `action` on `resource`."""
        owner = resource.split(":")[4] if resource_policy is not None else None
        return local_check_authorization_full(self.node(), action, resource, dict(context or {}),
                                              resource_policy, owner or None)
