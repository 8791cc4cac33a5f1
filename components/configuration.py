"""Delivery of the configuration bundle through SSM: the document carrying it and the association
running it (rendering/bundle.py renders the bundle, rendering/document.py the document; its
docstring says why a change is a new document and a new association)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from components.base import Component
from rendering.bundle import BundleArgs, render_bundle
from rendering.document import WAIT_FOR_SUCCESS_SECONDS, document_content, document_description, document_id
from settings.naming import Naming


@dataclass(frozen=True)
class HostConfigurationArgs:
    naming: Naming
    bundle: BundleArgs  # the settings sections the bundle's templates are rendered from


class HostConfiguration(Component):
    """The SSM document carrying one bundle, and the parameter naming the current document.

    The parameter is what a first boot reads to find the document (its user-data cannot
    name it: that would change the user-data with every bundle). The document's name is
    ForceNew for the provider, so a new bundle is a new document; its `content` is
    ignored in diffs, since the name already says everything that matters about it (and a
    content update in place is the provider path to avoid).
    """

    former_types = ("observability-lab:host:HostConfiguration",)

    def __init__(self, name: str, args: HostConfigurationArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        naming = args.naming
        # One rendering of userdata/ for every host, run by two triggers: each host's first
        # boot, and the SSM association after every change.
        self.bundle = bundle = render_bundle(args.bundle)
        tags = naming.tagged("host-config")
        self.content = document_content(bundle, document_description(naming))
        self.document = aws.ssm.Document(
            f"{name}-document",
            name=f"{naming.config_documents}-{document_id(bundle)}",
            document_type="Command",
            document_format="YAML",
            target_type="/AWS::EC2::Instance",
            content=self.content,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["content"]),
        )
        self.parameter = aws.ssm.Parameter(
            f"{name}-current-document",
            name=naming.config_parameter,
            description="Name of the SSM document holding this stack's current host configuration",
            type="String",
            insecure_value=self.document.name,  # a document name, not a secret: diffs show it
            tags=tags,
            opts=self.child,
        )
        self.register_outputs({
            "bundleDigest": bundle.digest,
            "documentName": self.document.name,
            "documentBytes": len(self.content.encode()),
        })


class ConvergeAssociation(Component):
    """Runs a configuration document on the stack's instances, named by id.

    Not by tag: anyone allowed ec2:CreateTags in the account could tag a foreign instance into
    the target, have it run the document as root (and choose its datadog-hostname), and, with
    max_errors 0, fail every rollout. Ids only the program knows; SSM takes at most 50 (MAX_HOSTS).
    A host added or replaced changes the ids, so the association is replaced and runs on every
    host again: converge.sh rewrites and restarts nothing whose content is unchanged.
    """

    former_types = ("observability-lab:host:ConvergeAssociation",)

    def __init__(self, name: str, configuration: HostConfiguration, *,
                 instance_ids: Sequence[pulumi.Input[str]], after: Sequence[pulumi.Resource] = (),
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(name, opts)
        document = configuration.document
        self.association = aws.ssm.Association(
            f"{name}-association",
            name=document.name,
            association_name=document.name,
            document_version=document.latest_version,
            targets=[aws.ssm.AssociationTargetArgs(key="InstanceIds", values=list(instance_ids))],
            # One failed host stops the rollout to the others; each host restores its own
            # previous files when its converge fails.
            max_concurrency="50%",
            max_errors="0",
            compliance_severity="HIGH",
            wait_for_success_timeout_seconds=WAIT_FOR_SUCCESS_SECONDS,
            # A new document is a new association (its name is ForceNew for the provider
            # too), so every change runs once on every host; the old one is deleted just
            # before, never alongside it (by id, a replaced instance never gets the old one).
            # `after` (the instances): converge.sh reads each host's Datadog hostname from its
            # instance tags, so a new association runs only once the instances (their tags, and
            # tags in instance metadata) are updated. A new instance still registering with SSM
            # is covered by the wait above, and after a volume resize converge.sh waits for the
            # larger disk itself.
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["*"], delete_before_replace=True,
                                        depends_on=list(after)),
        )
        self.association_id = self.association.association_id
        self.register_outputs({"associationId": self.association_id})
