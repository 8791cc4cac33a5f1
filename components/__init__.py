"""Pulumi components of observability-lab, one concern each.

Loading the Pulumi SDKs allocates several hundred thousand long-lived objects (the
generated resource and argument classes), and the cyclic garbage collector rescans
them again and again while they load: about a third of the multi-second import. So
the SDK modules the components use are loaded here once, with collection paused,
and then frozen out of later collections. Every evaluation (pulumi preview/up, the
offline plan, the tests) gets cheaper; nothing else changes.
"""

import gc

gc.disable()
try:
    import pulumi_aws
    import pulumi_datadog  # noqa: F401  (loads every Datadog resource module)
    import pulumiverse_time  # noqa: F401  (the downtime schedules' anchors)

    # pulumi_aws loads a service module on first attribute access; these are ours (all of them:
    # one left out loads during the first evaluation, with collection on).
    _loaded = (pulumi_aws.ec2.Instance, pulumi_aws.iam.Role, pulumi_aws.ssm.Parameter, pulumi_aws.kms.Key,
               pulumi_aws.ebs.Volume, pulumi_aws.dlm.LifecyclePolicy)
    del _loaded
finally:
    gc.freeze()
    gc.enable()
