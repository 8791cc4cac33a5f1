"""SSM: parameters that hold keys are encrypted, under a customer-managed KMS key, their
values never reach user-data, and documents carry no keys."""

from __future__ import annotations

import re

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from guardrails import layers
from guardrails.ec2 import INSTANCE
from guardrails.values import get, label

PARAMETER = "aws:ssm/parameter:Parameter"
DOCUMENT = "aws:ssm/document:Document"
NAME = "name"
TYPE = "type"
VALUE = "value"
KEY_ID = "keyId"
SECURE = "SecureString"
# The AWS-managed key SSM uses without a keyId: its key policy lets every principal of the
# account that may call ssm:GetParameter decrypt, so IAM alone decides who reads the value.
AWS_MANAGED_SSM_KEY = "alias/aws/ssm"

# Parameter names that say they hold a credential: /…/datadog/api_key, appKey, db-password, ...
KEY_LIKE_NAME = re.compile(r"api[_-]?key|app(?:lication)?[_-]?key|private[_-]?key|passw(?:or)?d|secret|token",
                           re.IGNORECASE)
# Shorter values are too likely to occur by chance in a large document.
MIN_SECRET_LENGTH = 8


def _key_parameters_secure(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != PARAMETER:
        return
    # Without an explicit name, the provider names the parameter after the Pulumi name.
    name = str(get(args.props, NAME) or args.name)
    type_ = get(args.props, TYPE)
    if KEY_LIKE_NAME.search(name) and type_ != SECURE:
        report(f"{label(args)}: the name '{name}' says it holds a key, but its type is "
               f"{type_ or 'not set'}; set type=\"{SECURE}\" so the value is encrypted with KMS.", None)


def _key_parameters_customer_managed_key(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != PARAMETER or get(args.props, TYPE) != SECURE:
        return  # a key parameter that is not a SecureString is ssm-key-parameters-secure-string's
    name = str(get(args.props, NAME) or args.name)
    key = get(args.props, KEY_ID)
    if KEY_LIKE_NAME.search(name) and (not key or str(key).endswith(AWS_MANAGED_SSM_KEY)):
        report(f"{label(args)}: '{name}' holds a key but is encrypted with {key or 'the default key'} "
               f"({AWS_MANAGED_SSM_KEY}), which lets anyone in the account allowed ssm:GetParameter on it "
               "decrypt it; set key_id to a customer-managed KMS key whose key policy lets only the "
               "principals that need the value decrypt.", None)


def _no_secrets_in_documents(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != DOCUMENT:
        return
    for finding in layers.findings(layers.ssm_document(args.props)):
        report(f"{label(args)}: {finding.where} contains {finding.what}. A document's content is "
               "readable by anyone allowed ssm:GetDocument in the account, and by every account it is "
               "shared with: put the key in an SSM SecureString parameter and let the document's script "
               "read it on the host (as the Agent's secret backend does).", None)


def _secure_values_not_in_user_data(args: StackValidationArgs, report: ReportViolation) -> None:
    secrets: list[tuple[str, str]] = []
    instances = []
    for resource in args.resources:
        # One value unknown during a preview must not hide the others from this check.
        try:
            if resource.resource_type == PARAMETER and get(resource.props, TYPE) == SECURE:
                value = get(resource.props, VALUE)
                if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
                    secrets.append((resource.name, value))
            elif resource.resource_type == INSTANCE:
                instances.append((resource, layers.user_data(resource.props)))
        except UnknownValueError:
            continue
    for instance, instance_layers in instances:
        for parameter, value in secrets:
            where = next((layer.where for layer in instance_layers if value in layer.text), None)
            if where:
                report(f"{instance.resource_type} '{instance.name}': {where} contains the value of the "
                       f"SecureString parameter '{parameter}'; reference the parameter (the host reads it "
                       "at boot) instead of copying its value into user-data.", instance.urn)


POLICIES = [
    ResourceValidationPolicy(
        name="ssm-key-parameters-secure-string",
        description="SSM parameters whose name says they hold a key, password, secret or token are SecureString.",
        validate=_key_parameters_secure,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="ssm-key-parameters-customer-managed-key",
        description=("SecureString parameters whose name says they hold a key are encrypted with a "
                     "customer-managed KMS key (keyId set, not alias/aws/ssm)."),
        validate=_key_parameters_customer_managed_key,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    ResourceValidationPolicy(
        name="ssm-document-no-secrets",
        description=("SSM document content (every base64/gzip layer, and each runCommand script as the "
                     "SSM Agent runs it) holds nothing shaped like a Datadog API or application key, "
                     "and no private key."),
        validate=_no_secrets_in_documents,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
    StackValidationPolicy(
        name="ssm-secure-values-not-in-user-data",
        description="No EC2 user-data (any base64/gzip layer) contains the value of a SecureString parameter of the stack.",
        validate=_secure_values_not_in_user_data,
        enforcement_level=EnforcementLevel.MANDATORY,
    ),
]

READS = {
    "ssm-key-parameters-secure-string": {PARAMETER: [NAME, TYPE]},
    "ssm-key-parameters-customer-managed-key": {PARAMETER: [NAME, TYPE, KEY_ID]},
    "ssm-document-no-secrets": {DOCUMENT: [layers.DOCUMENT_CONTENT]},
    "ssm-secure-values-not-in-user-data": {
        PARAMETER: [TYPE, VALUE], INSTANCE: [layers.USER_DATA_PLAIN, layers.USER_DATA_BASE64]},
}
