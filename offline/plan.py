"""Offline plan: what a stack would create, rendered without any cloud account.

    python -m offline.plan dev            # what a person scans: tree, counts, monitors' queries
    python -m offline.plan dev --full     # and every input, file of the bundle, script, user-data
    python -m offline.plan prod --json    # stable JSON (sorted keys) for diffing
    python -m offline.plan dev --compare base.json   # per resource: unchanged, updated, replaced...

Evaluates the program with the same in-process mock engine as the tests
(`offline.engine`). It is a rendering of the program, not a `pulumi preview`: no AWS,
Datadog or Pulumi service is contacted, and ids, ARNs and addresses are the mock
engine's placeholders. Same input, byte-identical output. Invalid settings print the
combined settings error and exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from rendering.bundle import manifest_entries, sha256
from offline import changes, plan_text
from offline.engine import ROOT, Evaluation, Resource, close_event_loop, evaluate, is_secret
from offline.host_config import decode_document

SECRET = "[secret]"
DOCUMENT = "aws:ssm/document:Document"
INSTANCE = "aws:ec2/instance:Instance"
SSM_DOCUMENT_LIMIT = 65_536
NOTICE = ("Offline rendering with Pulumi's in-process mock engine: nothing was sent to AWS, "
          "Datadog or the Pulumi service. Ids, ARNs and addresses are placeholders; "
          "only `pulumi preview` against a real account shows real changes.")


def mask(value: Any) -> Any:
    """The value with every secret replaced by [secret]."""
    if is_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value


def _digest_placeholder(text: str, where: str) -> str:
    """A long input in the resource list: its size and digest (a change shows), shown in full elsewhere."""
    return f"<{len(text.encode())} bytes, sha256 {sha256(text)[:12]}; {where}>"


def host_configuration(resource: Resource) -> dict[str, Any]:
    """What a configuration document carries: its bundle's files, where they go, its script."""
    document = decode_document(resource.inputs["content"])
    installed = {entry[0]: entry[1:] for entry in manifest_entries(document.files.get("manifest", ""))}
    files = []
    for path, text in sorted(document.files.items()):
        target, owner, mode, unit = installed.get(path, ("(read by converge.sh from the bundle)", "", "", ""))
        files.append({"path": path, "bytes": len(text.encode()),
                      "sha256": sha256(text)[:12],
                      "installedAt": target, "owner": owner, "mode": mode, "unit": unit})
    size = len(resource.inputs["content"].encode())
    return {"document": resource.inputs["name"], "documentBytes": size,
            "documentPercentOfLimit": round(100 * size / SSM_DOCUMENT_LIMIT, 1),
            "bundleDigest": document.digest, "files": files,
            "script": document.script_without_payload(), "contents": document.files}


def _short(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _request_queries(request: dict[str, Any]) -> list[str]:
    """A widget request as one-line queries: formulas with their named queries filled in."""
    if request.get("q"):
        return [request["q"]]
    named = {query["name"]: query["query"]
             for entry in request.get("queries", []) for query in entry.values()
             if isinstance(query, dict) and "name" in query and "query" in query}
    formulas = [f["formulaExpression"] for f in request.get("formulas", [])] or sorted(named)
    return [re.sub(r"\b[a-z]\w*\b", lambda m: named.get(m.group(0), m.group(0)), formula)
            for formula in formulas]


def _definition_queries(definition: dict[str, Any], slo_names: dict[str, str]) -> list[str]:
    """What a widget shows, as one-line queries: its requests', a log or event stream's search,
    an SLO widget's objective by name (the id is the mocks')."""
    queries = [q for request in definition.get("requests", []) for q in _request_queries(request)]
    if isinstance(definition.get("query"), str):
        queries.append(f'search("{definition["query"]}")')
    if definition.get("sloId"):
        name = slo_names.get(str(definition["sloId"]), f"id {definition['sloId']}")
        queries.append(f"slo({name}) over {', '.join(definition.get('timeWindows', []))}")
    return queries


def _widgets(widgets: list[dict[str, Any]], slo_names: dict[str, str]) -> list[dict[str, Any]]:
    """Each widget as (type, title, queries), found in its `*Definition` block."""
    found = []
    for widget in widgets:
        for key, definition in sorted(widget.items()):
            if not key.endswith("Definition") or not isinstance(definition, dict):
                continue
            if key == "groupDefinition":
                found.extend(_widgets(definition.get("widgets", []), slo_names))
                continue
            queries = _definition_queries(definition, slo_names)
            found.append({"type": key.removesuffix("Definition"),
                          "title": definition.get("title", ""), "queries": queries})
    return found


def build_plan(evaluation: Evaluation) -> dict[str, Any]:
    resources = sorted(evaluation.resources, key=lambda r: r.urn)
    children: dict[str, list[Resource]] = {}
    for resource in resources:
        children.setdefault(resource.parent, []).append(resource)

    def tree(parent_urn: str) -> list[dict[str, Any]]:
        return [{"type": r.type, "name": r.name, "children": tree(r.urn)}
                for r in children.get(parent_urn, [])]

    roots = [p for p in children if p not in {r.urn for r in resources}]
    plan: dict[str, Any] = {
        "stack": evaluation.stack,
        "notice": NOTICE,
        "tree": [node for root in sorted(roots) for node in tree(root)],
        "resources": [],
        "hostConfiguration": {},
        "userData": {},
        "userDataSizes": {},
        "dashboards": [],
        "monitors": [],
        "downtimeSchedules": [],
        "outputs": {k: SECRET if k in evaluation.secret_outputs else v
                    for k, v in sorted(evaluation.outputs.items())},
    }
    slo_names = {r.id: r.inputs.get("name", r.name) for r in resources
                 if r.type == "datadog:index/serviceLevelObjective:ServiceLevelObjective"}
    for r in resources:
        inputs = mask(r.inputs)
        if r.type == INSTANCE and r.inputs.get("userData"):
            plan["userData"][r.name] = r.inputs["userData"]
            plan["userDataSizes"][r.name] = len(r.inputs["userData"].encode())
            inputs["userData"] = _digest_placeholder(r.inputs["userData"], "shown under User-data")
        if r.type == DOCUMENT:
            plan["hostConfiguration"][r.name] = host_configuration(r)
            inputs["content"] = _digest_placeholder(r.inputs["content"], "shown under Host configuration")
        options = {k: v for k, v in r.options.items() if v}
        entry = {"type": r.type, "name": r.name, "parent": _short(r.parent), "options": options, "inputs": inputs}
        if r.input_dependencies:  # which resources' outputs an input holds (a replacement reaches it)
            entry["inputDependencies"] = {key: [list(changes.urn_key(urn)) for urn in urns]
                                          for key, urns in r.input_dependencies.items()}
        plan["resources"].append(entry)
        if r.type == "datadog:index/dashboard:Dashboard":
            plan["dashboards"].append({"title": r.inputs.get("title"),
                                       "widgets": _widgets(r.inputs.get("widgets", []), slo_names)})
        elif r.type == "datadog:index/monitor:Monitor":
            plan["monitors"].append({key: r.inputs.get(key) for key in
                                     ("name", "type", "query", "monitorThresholds", "tags")})
        elif r.type == "datadog:index/downtimeSchedule:DowntimeSchedule":
            plan["downtimeSchedules"].append({"message": r.inputs.get("message"),
                                              "schedule": r.inputs.get("recurringSchedule")})
    return plan


def main(argv: list[str] | None = None, evaluation: Evaluation | None = None) -> int:
    """The command line; `evaluation`: the stack's, already evaluated (the tests share theirs)."""
    parser = argparse.ArgumentParser(prog="python -m offline.plan", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("stack", help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--json", action="store_true", help="stable JSON instead of text")
    parser.add_argument("--full", action="store_true",
                        help="also every resource's inputs, the bundle's files, the document's script, the user-data")
    parser.add_argument("--stack-file", type=Path, default=None,
                        help="read settings from this file instead of Pulumi.<stack>.yaml")
    parser.add_argument("--compare", type=Path, default=None, metavar="BASE_JSON",
                        help="print what changes per resource against a plan saved with --json")
    args = parser.parse_args(argv)
    stack_file = args.stack_file or ROOT / f"Pulumi.{args.stack}.yaml"
    if not stack_file.is_file():
        known = ", ".join(sorted(p.name[len("Pulumi."):-len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml")))
        print(f"error: {stack_file} does not exist; stacks here: {known}", file=sys.stderr)
        return 2
    if evaluation is None:
        evaluation = evaluate(args.stack, stack_file=stack_file)
        close_event_loop()
    if evaluation.error is not None:
        print(f"error: {evaluation.error}", file=sys.stderr)
        return 2
    plan = build_plan(evaluation)
    if args.compare:
        base = json.loads(args.compare.read_text())
        sys.stdout.write(changes.render(changes.compare(base, plan), changes.moves(base, plan)))
    elif args.json:
        sys.stdout.write(json.dumps(plan, sort_keys=True, indent=2) + "\n")
    else:
        sys.stdout.write((plan_text.full if args.full else plan_text.summary)(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
