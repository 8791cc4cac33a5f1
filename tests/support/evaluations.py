"""What the tests read off an evaluation: the configuration document, its bundle, the user-data."""

from __future__ import annotations

import dataclasses

from offline import changes
from offline.engine import Evaluation
from offline.host_config import ConfigDocument, decode_document
from offline.plan import build_plan
from tests.support.resource_types import DOCUMENT, INSTANCE


def document(evaluation: Evaluation) -> ConfigDocument:
    """The stack's configuration document as AWS receives it: its script and its bundle."""
    decoded = _decoded(evaluation.one(DOCUMENT).inputs["content"])
    return dataclasses.replace(decoded, files=dict(decoded.files))  # the test's own copy


def bundle_files(evaluation: Evaluation) -> dict[str, str]:
    """The bundle as the host unpacks it: path -> content, decoded from the registered document."""
    return document(evaluation).files


def user_data(evaluation: Evaluation) -> str:
    """The one user-data of the stack's hosts: every instance has the same."""
    (text,) = {instance.inputs["userData"] for instance in evaluation.of_type(INSTANCE)}
    return text


_DOCUMENTS: dict[str, ConfigDocument] = {}


def _decoded(content: str) -> ConfigDocument:
    if content not in _DOCUMENTS:  # base64, gzip, tar and YAML: once per distinct document
        _DOCUMENTS[content] = decode_document(content)
    return _DOCUMENTS[content]


_PLANS: dict[int, tuple[Evaluation, dict]] = {}


def plan_of(evaluation: Evaluation) -> dict:
    """The offline plan of an evaluation (offline/plan.py's build_plan), built once: read, never change it."""
    if id(evaluation) not in _PLANS:  # the evaluation is kept with it, so its id stays its own
        _PLANS[id(evaluation)] = (evaluation, build_plan(evaluation))
    return _PLANS[id(evaluation)][1]


def compare(before: Evaluation, after: Evaluation) -> dict:
    """What changes, resource by resource, from one evaluation to another (offline/changes.py)."""
    return changes.compare(plan_of(before), plan_of(after))
