"""Delivery of the configuration bundle through SSM: the document carrying it and the association
running it (rendering/document.py renders the document)."""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from rendering.bundle import Bundle
from rendering.document import WAIT_FOR_SUCCESS_SECONDS, document_content, document_id

class HostConfiguration(pulumi.ComponentResource):
    """The SSM document carrying one bundle, and the parameter naming the current document.

    The parameter is what a first boot reads to find the document (its user-data cannot
    name it: that would change the user-data with every bundle). The document's name is
    ForceNew for the provider, so a new bundle is a new document; its `content` is
    ignored in diffs, since the name already says everything that matters about it (and a
    content update in place is the provider path to avoid).
    """

    def __init__(self, name: str, bundle: Bundle, *, name_prefix: str, parameter_name: str,
                 description: str, tags: dict[str, str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:host:HostConfiguration", name, None, opts)
        self.content = document_content(bundle, description)
        self.document = aws.ssm.Document(
            f"{name}-document",
            name=f"{name_prefix}-{document_id(bundle)}",
            document_type="Command",
            document_format="YAML",
            target_type="/AWS::EC2::Instance",
            content=self.content,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["content"]),
        )
        self.parameter = aws.ssm.Parameter(
            f"{name}-current-document",
            name=parameter_name,
            description="Name of the SSM document holding this stack's current host configuration",
            type="String",
            insecure_value=self.document.name,  # a document name, not a secret: diffs show it
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({
            "bundleDigest": bundle.digest,
            "documentName": self.document.name,
            "documentBytes": len(self.content.encode()),
        })


class ConvergeAssociation(pulumi.ComponentResource):
    """Runs a configuration document on every host carrying the target tag."""

    def __init__(self, name: str, configuration: HostConfiguration, *, target_tag: tuple[str, str],
                 after: Sequence[pulumi.Resource] = (),
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:host:ConvergeAssociation", name, None, opts)
        document = configuration.document
        tag_key, tag_value = target_tag
        self.association = aws.ssm.Association(
            f"{name}-association",
            name=document.name,
            association_name=document.name,
            document_version=document.latest_version,
            targets=[aws.ssm.AssociationTargetArgs(key=f"tag:{tag_key}", values=[tag_value])],
            # One failed host stops the rollout to the others; each host restores its own
            # previous files when its converge fails.
            max_concurrency="50%",
            max_errors="0",
            compliance_severity="HIGH",
            wait_for_success_timeout_seconds=WAIT_FOR_SUCCESS_SECONDS,
            # A new document is a new association (its name is ForceNew for the provider
            # too), so every change runs once on every host; the old one is deleted just
            # before, never alongside it (README: the one ordering left open). `after` (the
            # instances): converge.sh reads each host's Datadog hostname from its instance
            # tags, so a new association runs only once the instances (their tags, and tags
            # in instance metadata) are updated. A new instance registering later is covered
            # by the wait above, and after a volume resize converge.sh waits for the larger
            # disk itself.
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["*"], delete_before_replace=True,
                                        depends_on=list(after)),
        )
        self.association_id = self.association.association_id
        self.register_outputs({"associationId": self.association_id})
