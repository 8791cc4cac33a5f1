"""The offline plan: deterministic, masks secrets, refuses invalid settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from offline import plan
from offline.engine import PLACEHOLDER_SECRETS, ROOT


def run_plan(capsys, *args: str) -> tuple[int, str, str]:
    code = plan.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_text_plan_shows_tree_resources_host_configuration_and_user_data(capsys, stack):
    code, out, _ = run_plan(capsys, stack)
    assert code == 0
    assert out.startswith(f"Offline plan for stack '{stack}'")
    assert "nothing was sent to AWS" in out
    assert "- host (observability-lab:aws:HostAccess)" in out
    assert "  - host-1 (observability-lab:aws:MonitoredHost)\n    - host-1-instance (aws:ec2/instance:Instance)" in out
    config = out[out.index("\nHost configuration (host-config-document): SSM document "):out.index("\nUser-data of")]
    # Every file with its size, digest and destination; the scripts readable; no base64 wall.
    assert re.search(r"\n +585  [0-9a-f]{12}  agent/datadog.yaml -> /etc/datadog-agent/datadog.yaml "
                     r"\(dd-agent:dd-agent 0640, datadog-agent\)\n", config) or "agent/datadog.yaml -> " in config
    assert "<base64 of the gzipped bundle: " in config and 'exec bash "$bundle/converge.sh"' in config
    assert "--- converge.sh" in config and "secret_backend_type: aws.ssm" in config
    assert "#cloud-config" in out[out.index("\nUser-data of"):]
    dashboards = out[out.index("\nDashboards\n"):out.index("\nMonitors\n")]
    hosts = f"env:{stack},project:observability-lab,$host"
    assert f"anomalies(avg:mysql.performance.cpu_time{{{hosts}}} by {{host}}, 'basic', 2)" in dashboards
    assert f"avg:my_metric{{{hosts}}}.rollup(sum, 3600)" in dashboards
    monitors = out[out.index("\nMonitors\n"):out.index("\nDowntime schedules\n")]
    assert f"avg(last_5m):avg:my_metric{{env:{stack} AND project:observability-lab AND host IN (" in monitors


def test_json_plan_is_stable_and_byte_identical_across_runs(capsys, stack):
    first = run_plan(capsys, stack, "--json")[1]
    second = run_plan(capsys, stack, "--json")[1]
    assert first == second
    document = json.loads(first)
    assert first == json.dumps(document, sort_keys=True, indent=2) + "\n"
    assert document["stack"] == stack
    types = {r["type"] for r in document["resources"]}
    assert "aws:ec2/instance:Instance" in types
    assert len(document["userDataSizes"]) == {"dev": 1, "prod": 2}[stack]
    assert all(size <= 0.7 * 16_384 for size in document["userDataSizes"].values())
    (config,) = document["hostConfiguration"].values()
    assert config["documentBytes"] <= 0.7 * 65_536
    assert {f["path"] for f in config["files"]} == set(config["contents"])


def test_compare_names_what_a_setting_change_does(capsys, tmp_path):
    base = tmp_path / "base.json"
    base.write_text(run_plan(capsys, "dev", "--json")[1])
    stack_file = tmp_path / "Pulumi.dev.yaml"
    stack_file.write_text((ROOT / "Pulumi.dev.yaml").read_text() + "  observability-lab:checkIntervalSeconds: 30\n")
    code, out, _ = run_plan(capsys, "dev", "--stack-file", str(stack_file), "--compare", str(base))
    assert code == 0
    assert re.match(r"Changes against the base plan: 2 replaced, \d+ unchanged, 1 updated\n", out)
    assert "replaced  aws:ssm/document:Document host-config-document (name)" in out
    assert "updated   aws:ssm/parameter:Parameter host-config-current-document (insecureValue)" in out
    assert "aws:ec2/instance:Instance" not in out


def test_secrets_are_masked(capsys, stack):
    for args in ((stack,), (stack, "--json")):
        out = run_plan(capsys, *args)[1]
        for placeholder in PLACEHOLDER_SECRETS.values():
            assert placeholder not in out
    document = json.loads(run_plan(capsys, stack, "--json")[1])
    (parameter,) = [r for r in document["resources"] if r["type"] == "aws:ssm/parameter:Parameter"
                    and r["inputs"]["name"].endswith("/api_key")]
    assert parameter["inputs"]["value"] == "[secret]"


def test_broken_stack_file_fails_with_the_settings_error(capsys, tmp_path):
    broken = tmp_path / "Pulumi.dev.yaml"
    text = (ROOT / "Pulumi.dev.yaml").read_text()
    broken.write_text(text.replace("instanceType: t3.small", "instanceType: huge")
                      + "  observability-lab:checkIntervalSeconds: 5\n")
    code, out, err = run_plan(capsys, "dev", "--stack-file", str(broken))
    assert code == 2
    assert out == ""
    assert "2 invalid setting(s)" in err
    assert "observability-lab:instanceType = 'huge'" in err
    assert "observability-lab:checkIntervalSeconds = '5'" in err


def test_unknown_stack_is_an_error(capsys):
    code, out, err = run_plan(capsys, "nonexistent")
    assert code == 2 and out == ""
    assert "Pulumi.nonexistent.yaml does not exist; stacks here: dev, prod" in err


# Started when this module is collected, so the fresh interpreter (~3 s, mostly SDK
# imports) runs on the other core while the rest of the suite runs.
_CLI_PLAN = subprocess.Popen(
    [sys.executable, "-m", "offline.plan", "prod", "--json"], cwd=ROOT,
    env={**os.environ, "PYTHONHASHSEED": "12345"},
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_command_line_plan_matches_across_processes_and_hash_seeds(capsys):
    # `python -m offline.plan` as README documents it, in a fresh interpreter with another
    # hash seed: set/dict iteration order must not leak into the output.
    in_process = run_plan(capsys, "prod", "--json")[1]
    stdout, stderr = _CLI_PLAN.communicate(timeout=120)
    assert _CLI_PLAN.returncode == 0, stderr
    assert stdout == in_process
    assert stderr == ""


def test_compare_follows_a_resource_through_its_alias(capsys):
    # The plan of the last one-host version: host 1's instance is the old instance, renamed.
    code, out, _ = run_plan(capsys, "dev", "--compare", str(ROOT / "tests" / "data" / "dev-plan-one-host.json"))
    assert code == 0
    assert ("  updated   aws:ec2/instance:Instance host-1-instance (metadataOptions, tags, volumeTags) "
            "[was host-instance, kept through its alias]\n") in out
    assert "aws:ec2/instance:Instance host-instance" not in out
    # The one deletion: the managed policy the host role no longer has (issue 18).
    assert [line for line in out.splitlines() if line.lstrip().startswith("deleted")] == [
        "  deleted   aws:iam/rolePolicyAttachment:RolePolicyAttachment host-ssm-core"]
