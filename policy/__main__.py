"""Entry point the Pulumi CLI runs for `--policy-pack policy`: builds the pack, nothing else.

Constructing `PolicyPack` starts the analyzer's gRPC server and never returns, so the
policies live in `guardrails/` (imported by the tests) and nothing imports this file.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from guardrails import PACK_NAME, POLICIES

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
