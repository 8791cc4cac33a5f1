"""The policy pack as the Pulumi CLI runs it: policy/__main__.py in a fresh interpreter, serving
Pulumi's analyzer gRPC protocol on loopback, driven here the way the engine drives it
(GetAnalyzerInfo, Configure, Analyze per resource, AnalyzeStack). Also its files and pins.
"""

from __future__ import annotations

import re
import select
import subprocess
import sys
from importlib import metadata
from typing import Any, Iterator, Mapping

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2, struct_pb2
from packaging.requirements import Requirement
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

import guardrails
from offline.engine import PLACEHOLDER_SECRETS, ROOT, Evaluation, Resource
from tests.support.policy_harness import ADVISORY, MANDATORY, cloud_config, with_cloud_config, with_inputs

POLICY_DIR = ROOT / "policy"

# As the CLI's Python language host starts a pack (runpy on the pack's directory, which puts
# it first on sys.path), plus a watchdog: the pack serves forever, so it exits as soon as this
# process closes its stdin, or dies without doing so.
LAUNCHER = """\
import os, runpy, sys, threading
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
runpy.run_path(sys.argv[1], run_name="__main__")
"""

# Started when this module is collected: the interpreter's imports overlap the rest of the suite.
_PACK = subprocess.Popen([sys.executable, "-u", "-c", LAUNCHER, str(POLICY_DIR)], cwd=POLICY_DIR,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    assert _PACK.stdout is not None and _PACK.stdin is not None and _PACK.stderr is not None
    ready, _, _ = select.select([_PACK.stdout], [], [], 120)
    port = _PACK.stdout.readline().strip() if ready else ""
    if not port.isdigit():  # the pack prints its port first, or died
        _PACK.kill()
        pytest.fail(f"the policy pack did not start: {port!r}\n{_PACK.stderr.read()}")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        channel.close()
        _PACK.stdin.close()
        _PACK.wait(timeout=30)


def struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    """Properties as the engine sends them (numbers as doubles, secrets with their marker)."""
    message = struct_pb2.Struct()
    message.update(props)
    return message


def analyze(analyzer, resource: Resource) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeRequest(type=resource.type, properties=struct(resource.inputs),
                                          urn=resource.urn, name=resource.name)
    return list(analyzer.Analyze(request).diagnostics)


def analyze_stack(analyzer, resources: list[Resource]) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeStackRequest(resources=[
        analyzer_pb2.AnalyzerResource(type=r.type, properties=struct(r.outputs), urn=r.urn, name=r.name,
                                      parent=r.parent)
        for r in resources if r.custom])
    return list(analyzer.AnalyzeStack(request).diagnostics)


def configure(analyzer, config: Mapping[str, Mapping[str, Any]]) -> None:
    analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={
        name: analyzer_pb2.PolicyConfig(
            enforcementLevel=analyzer_pb2.ADVISORY if name in ADVISORY else analyzer_pb2.MANDATORY,
            properties=struct(properties))
        for name, properties in config.items()}))


def test_the_pack_describes_its_policies_levels_and_config(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == guardrails.PACK_NAME and info.supportsConfig
    levels = {p.name: p.enforcementLevel for p in info.policies}
    assert levels == {**{n: analyzer_pb2.MANDATORY for n in MANDATORY}, **{n: analyzer_pb2.ADVISORY for n in ADVISORY}}
    schemas = {p.name: p.configSchema.properties for p in info.policies if p.configSchema.properties}
    assert set(schemas) == {"security-group-no-public-admin-ports", "ec2-instance-standard-tags"}
    ports = schemas["security-group-no-public-admin-ports"]["ports"]
    assert {22, 3389, 3306, 5432} <= {int(p) for p in ports["default"]}
    assert list(schemas["ec2-instance-standard-tags"]["requiredTagKeys"]["default"]) == [
        "env", "service", "managed-by", "project"]


def test_every_resource_of_both_stacks_passes_the_running_pack(analyzer, stack_eval: Evaluation):
    configure(analyzer, {})
    diagnostics = [d for r in stack_eval.resources if r.custom for d in analyze(analyzer, r)]
    assert diagnostics == []
    assert analyze_stack(analyzer, stack_eval.resources) == []


def test_violations_come_back_as_diagnostics_of_their_level(analyzer, dev: Evaluation):
    configure(analyzer, {})
    instance = dev.one("aws:ec2/instance:Instance")
    keyed = with_cloud_config(instance, cloud_config(instance) + "# api_key: " + "9f" * 16 + "\n")
    (diagnostic,) = analyze(analyzer, keyed)
    assert diagnostic.policyName == "ec2-instance-user-data-no-secrets"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert diagnostic.policyPackName == guardrails.PACK_NAME
    # What the CLI prints: the policy's description, then the message naming the resource.
    assert diagnostic.message.startswith(diagnostic.description + f"\naws:ec2/instance:Instance '{instance.name}'")
    assert "9f" * 16 not in diagnostic.message

    untagged = with_inputs(instance, lambda p: p["tags"].pop("service"))
    assert [(d.policyName, d.enforcementLevel) for d in analyze(analyzer, untagged)] == [
        ("ec2-instance-standard-tags", analyzer_pb2.ADVISORY)]

    # The engine hands stack policies plain values: the secret marker is gone, the check still works.
    leaked = with_cloud_config(instance, f"#cloud-config\n# {PLACEHOLDER_SECRETS['datadog:apiKey']}\n")
    others = [r for r in dev.resources if r.urn != instance.urn]
    (diagnostic,) = analyze_stack(analyzer, [*others, leaked])
    assert (diagnostic.policyName, diagnostic.urn) == ("ssm-secure-values-not-in-user-data", instance.urn)


def test_configured_ports_reach_the_policies(analyzer, run_stack):
    world = run_stack("dev", {"appAllowedCidrs": ["0.0.0.0/0", "::/0"]})
    group = world.one("aws:ec2/securityGroup:SecurityGroup")
    try:
        configure(analyzer, {"security-group-no-public-admin-ports": {"ports": [5050]}})
        (diagnostic,) = analyze(analyzer, group)
        assert "opens port(s) 5050 (tcp) to 0.0.0.0/0" in diagnostic.message
    finally:
        configure(analyzer, {})
    assert analyze(analyzer, group) == []


# --- the pack's files and pins -------------------------------------------------------------------

def _pins(path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {line} is not an exact pin"
            pins[requirement.name] = specifier.version
    return pins


def test_the_packs_pins_resolve_with_the_programs():
    pack, program = _pins(POLICY_DIR / "requirements.txt"), _pins(ROOT / "requirements.txt")
    suite = _pins(ROOT / "requirements-dev.txt")
    assert set(pack) == {"pulumi", "pulumi-policy", "PyYAML"}
    assert pack["pulumi"] == program["pulumi"]
    assert pack["PyYAML"] == suite["PyYAML"]
    # Installed together by `make test` (requirements-dev.txt includes the pack's file) ...
    assert "-r policy/requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    for name, version in pack.items():
        assert metadata.version(name) == version, name
    # ... and pulumi-policy's own range admits the pinned pulumi.
    (pulumi_range,) = [Requirement(r) for r in metadata.requires("pulumi-policy") or []
                       if Requirement(r).name == "pulumi"]
    assert pulumi_range.specifier.contains(pack["pulumi"])


def test_pulumi_policy_yaml_runs_the_pack_in_its_own_virtualenv():
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": "venv"}}
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    # An unanchored `venv/` ignores policy/venv as well as ./venv.
    assert "venv/" in (ROOT / ".gitignore").read_text().splitlines()
