"""The stack's SSM document and user-data, rendered by the program itself (the offline engine).

Every booted scenario converges on what `pulumi up` would send: the whole program is evaluated
for a stack with settings overrides, exactly as the offline plan does, and the document's
content, its name, the parameter naming it and the instances' user-data are taken from the
registered resources. The booted host is Debian, so every rendering sets `mysqlServerPackage`
to Debian's MariaDB (a setting, not a patch). `with_files` re-renders a document around a
bundle with some files changed (the broken-check scenario, the injected faults) through the
program's own document code.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Optional

import yaml

from rendering.bundle import Bundle
from rendering.document import document_content
from offline.engine import evaluate, reveal
from offline.host_config import decode_document
from tests.support.resource_types import DOCUMENT, INSTANCE, MONITOR, PARAMETER

# Debian's MySQL package; a data volume of 1 GiB (tests/booted/volume.py: a sparse loop device).
BOOTED_SETTINGS = {"mysqlServerPackage": "mariadb-server", "dataVolumeGiB": 1}


@dataclass(frozen=True)
class Rendered:
    name: str                 # the SSM document's name
    content: str              # the document as SSM receives it (YAML)
    script: str               # what the SSM Agent writes and runs with sh
    files: dict[str, str]     # the bundle inside it
    digest: str
    parameter: str            # the SSM parameter naming the current document
    user_data: str            # the instances' #cloud-config
    region: str
    settings: dict            # the overrides it was rendered with
    app_processes: int        # what the app's process monitor expects

    def manifest(self) -> list[list[str]]:
        return Bundle(self.files).manifest()

    def changed(self, files: dict[str, Optional[str]]) -> "Rendered":
        """The same stack's document around a bundle with these files replaced (None: removed)."""
        bundle_files = {path: content for path, content in {**self.files, **files}.items() if content is not None}
        content = document_content(Bundle(bundle_files), "observability-lab booted-host test: a changed bundle")
        decoded = decode_document(content)
        return Rendered(name=f"{self.name}-changed-{decoded.digest[:8]}", content=content, script=decoded.script,
                        files=decoded.files, digest=decoded.digest, parameter=self.parameter,
                        user_data=self.user_data, region=self.region,
                        settings={**self.settings, "changed": sorted(files)}, app_processes=self.app_processes)


@functools.lru_cache(maxsize=None)
def _render(stack: str, overrides_json: str) -> Rendered:
    overrides = {**BOOTED_SETTINGS, **json.loads(overrides_json)}
    evaluation = evaluate(stack, overrides)
    if evaluation.error is not None:
        raise evaluation.error
    document = evaluation.one(DOCUMENT).inputs
    decoded = decode_document(document["content"])
    (parameter,) = [r for r in evaluation.of_type(PARAMETER) if r.name == "host-config-current-document"]
    user_data = {reveal(r.inputs["userData"]) for r in evaluation.of_type(INSTANCE)}
    (process_monitor,) = [r for r in evaluation.of_type(MONITOR)
                          if str(r.inputs.get("query", "")).startswith("processes('gunicorn')")]
    return Rendered(name=document["name"], content=document["content"], script=decoded.script,
                    files=decoded.files, digest=decoded.digest, parameter=parameter.inputs["name"],
                    user_data=user_data.pop(), region=_agent_region(decoded.files),
                    settings=overrides, app_processes=int(str(process_monitor.inputs["query"]).rsplit("<", 1)[1]))


def _agent_region(files: dict[str, str]) -> str:
    """The region the host's Agent and fetcher work in (datadog.yaml's secret backend region)."""
    return yaml.safe_load(files["agent/datadog.yaml"])["secret_backend_config"]["aws_session"]["aws_region"]


def render(stack: str = "dev", **overrides) -> Rendered:
    """The stack's document with these settings overrides (and the booted host's MySQL package)."""
    return _render(stack, json.dumps(overrides, sort_keys=True))
