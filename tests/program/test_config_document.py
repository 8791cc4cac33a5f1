"""The SSM document and association that deliver the bundle, as registered, and the document's
script run for real by `sh` (as the SSM Agent runs it) in a scratch root."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess

import pytest
import yaml

import rendering.document as converge
from offline.engine import fake_id
from rendering.bundle import Bundle
from rendering.document import BUNDLE_LISTS, DOCUMENT_BUDGET, SSM_DOCUMENT_LIMIT, WAIT_FOR_SUCCESS_SECONDS
from tests.support.document_delivery import run_document
from tests.support.evaluations import bundle_files, document as decoded_document
from tests.support.resource_types import ASSOCIATION, DOCUMENT, INSTANCE



def test_document_is_a_yaml_command_document_with_one_shell_step(stack_eval):
    document = stack_eval.one(DOCUMENT).inputs
    assert (document["documentType"], document["documentFormat"]) == ("Command", "YAML")
    assert document["targetType"] == "/AWS::EC2::Instance"
    content = yaml.safe_load(document["content"])
    assert content["schemaVersion"] == "2.2"
    (step,) = content["mainSteps"]
    assert step["action"] == "aws:runShellScript"
    assert step["precondition"] == {"StringEquals": ["platformType", "Linux"]}
    assert all(isinstance(line, str) and "\n" not in line for line in step["inputs"]["runCommand"])
    # Each item is one line of the YAML too (no folding): the base64 payload in long lines.
    yaml_lines = set(document["content"].splitlines())
    assert all(f"    - {line}" in yaml_lines for line in step["inputs"]["runCommand"] if len(line) > 200)
    assert any(len(line) > 200 for line in step["inputs"]["runCommand"])
    assert "parameters" not in content  # nothing for SSM to substitute
    assert "{{" not in document["content"]


def test_libyamls_emitter_writes_the_document_pyyamls_own_would(monkeypatch, stack, stack_eval, rendered_document):
    # The program emits with libyaml (fast); PyYAML's pure-Python emitter is the reference.
    assert converge.YAML_DUMPER is getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    monkeypatch.setattr(converge, "YAML_DUMPER", yaml.SafeDumper)
    assert rendered_document(stack).content == stack_eval.one(DOCUMENT).inputs["content"]


def test_document_keeps_10_percent_headroom_under_ssms_limit(stack_eval):
    size = len(stack_eval.one(DOCUMENT).inputs["content"].encode())
    assert size <= 0.90 * SSM_DOCUMENT_LIMIT


def test_names_are_content_addressed_and_the_association_is_replaced_on_any_change(stack_eval):
    document, association = stack_eval.one(DOCUMENT), stack_eval.one(ASSOCIATION)
    decoded = decoded_document(stack_eval)
    # Named by the bundle's digest and the script around it (not by gzip bytes, which
    # depend on the machine's zlib): the name says what the content is.
    template = re.sub(r"(?s)(<<'END_OF_BUNDLE'[^\n]*\n).*?\n(END_OF_BUNDLE)", r"\1<payload>\n\2",
                      decoded.script).rstrip("\n")
    suffix = hashlib.sha256(template.encode()).hexdigest()[:16]
    assert document.inputs["name"] == f"observability-lab-{stack_eval.stack}-host-config-{suffix}"
    assert decoded.digest in template
    assert document.options["ignoreChanges"] == ["content"] and document.options["replaceOnChanges"] == []
    assert association.inputs["name"] == association.inputs["associationName"] == document.inputs["name"]
    assert association.inputs["documentVersion"] == "1"  # the new document's only version
    assert association.options["replaceOnChanges"] == ["*"]
    # The old association goes first, so it can never run its older bundle after the new one.
    assert association.options["deleteBeforeReplace"] is True


def test_the_document_name_does_not_depend_on_how_zlib_compresses(monkeypatch, dev):
    # Another zlib build (zlib-ng, ...) compresses the same files to other bytes.
    files = Bundle(bundle_files(dev))
    ours = converge.bundle_archive(files)
    compress = gzip.compress
    monkeypatch.setattr(converge.gzip, "compress", lambda data, **kw: compress(data, compresslevel=1, mtime=0))
    assert converge.bundle_archive(files) != ours
    assert converge.document_id(files) == dev.one(DOCUMENT).inputs["name"].rsplit("-", 1)[1]


def test_association_targets_the_stacks_instances_by_id_and_waits_for_their_converge(stack_eval):
    # By id, not by tag: a foreign instance tagged fleet=observability-lab-<env> gets nothing.
    association = stack_eval.one(ASSOCIATION)
    instances = stack_eval.of_type(INSTANCE)
    hosts = range(1, len(instances) + 1)
    assert association.inputs["targets"] == [
        {"key": "InstanceIds", "values": [f"i-{fake_id(f'host-{n}-instance')}" for n in hosts]}]
    assert not any(t["key"].startswith("tag:") for t in association.inputs["targets"])
    # It runs once the instances (and the hostname tags converge.sh reads) are in place.
    assert {instance.urn for instance in instances} <= set(association.dependencies)
    assert association.inputs["waitForSuccessTimeoutSeconds"] == WAIT_FOR_SUCCESS_SECONDS
    assert "scheduleExpression" not in association.inputs  # runs on change, not on a timer
    assert (association.inputs["maxErrors"], association.inputs["maxConcurrency"]) == ("0", "50%")


def test_the_host_boots_after_the_parameter_naming_the_document(stack_eval):
    (parameter,) = [r for r in stack_eval.of_type("aws:ssm/parameter:Parameter")
                    if r.inputs["name"].endswith("/host-config/document")]
    assert parameter.inputs["insecureValue"] == stack_eval.one(DOCUMENT).inputs["name"]
    assert all(parameter.urn in instance.dependencies for instance in stack_eval.of_type(INSTANCE))


def test_document_script_unpacks_the_bundle_and_converges_on_it(delivered, scratch):
    document, first = delivered.document, delivered.first
    assert first.returncode == 0, first.stdout + first.stderr
    unpacked = delivered.host.bundles / document.digest
    assert {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()} == set(document.files)
    assert f"== converge {document.digest[:12]} (association)" in first.stdout
    assert "service datadog-agent: restarted" in first.stdout
    # Run again (SSM may): the bundle is there already, nothing changes.
    host = delivered.host.copy(scratch / "host")
    again = run_document(host, document.script)
    assert again.returncode == 0, again.stderr
    assert "restarted or applied: nothing" in again.stdout
    assert not list(host.bundles.glob(".incoming.*"))


@pytest.mark.parametrize("damage", ["edited", "cut short"])
def test_a_damaged_bundle_directory_is_unpacked_again(delivered, scratch, damage):
    document = delivered.document
    assert delivered.first.returncode == 0
    host = delivered.host.copy(scratch / "host")
    unpacked = host.bundles / document.digest
    if damage == "edited":
        (unpacked / "agent" / "datadog.yaml").write_text("api_key: tampered\n")
    else:  # a delivery killed half-way through an older script, a disk error
        (unpacked / "converge.sh").unlink()
    again = run_document(host, document.script)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {p.relative_to(unpacked).as_posix(): p.read_text() for p in unpacked.rglob("*") if p.is_file()} == \
        document.files
    assert "restarted or applied: nothing" in again.stdout
    assert [p.name for p in host.bundles.iterdir()] == [document.digest]  # the damaged copy is gone


def test_document_script_is_posix_sh(dev, tmp_path):
    # SSM runs it with sh, which is dash on Ubuntu: check it the way dash reads it.
    script = tmp_path / "script.sh"
    script.write_text(decoded_document(dev).script)
    result = subprocess.run(["dash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


LONG_LISTS = {  # valid values, random (gzip cannot fold them), 800 of each
    "hostTags": lambda n: f"t{n}:{hashlib.sha256(str(n).encode()).hexdigest()[:24]}",
    "watchedProcesses": lambda n: f"p{hashlib.sha256(str(n).encode()).hexdigest()[:24]}",
    "urlLookupAllowlist": lambda n: f"h{hashlib.sha256(str(n).encode()).hexdigest()[:24]}.example.com",
}


@pytest.mark.parametrize("setting", BUNDLE_LISTS)
def test_a_document_over_its_budget_is_refused_naming_the_lists_that_grow_it(rendered_document, setting):
    # Each list named really grows the document: long enough, it alone takes it over the budget.
    with pytest.raises(ValueError, match=rf"the SSM document is \d+ bytes; the budget is {DOCUMENT_BUDGET} .*"
                                         rf"what grows it are the lists .*\b{setting}\b.*; shorten one"):
        rendered_document("dev", {setting: [LONG_LISTS[setting](n) for n in range(800)]})
