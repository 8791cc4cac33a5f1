"""The offline plan as text: first what a person scans, in full on request.

`summary()` is what `make plan` prints: the component tree with one line per resource saying
what it is, the counts, the monitors' queries, the dashboards' widgets, the downtimes, what
the hosts get, the outputs. `full()` (`--full`) adds every resource's inputs, every file of the
bundle with the document's script, and the user-data. Both read the plan `build_plan` makes
(the JSON form), so they show exactly what `--json` holds.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import yaml

SSM_DOCUMENT_LIMIT = 65_536
EC2_USER_DATA_LIMIT = 16_384
MORE = ("More: `make plan STACK=<stack> FULL=1` adds every input, each file of the bundle, the document's "
        "script and the user-data; `JSON=1` prints the plan as JSON (what --compare reads).")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _tags(inputs: dict[str, Any]) -> str:
    return (inputs.get("tags") or {}).get("Name", "") if isinstance(inputs.get("tags"), dict) else ""


def _instance(inputs: dict[str, Any]) -> str:
    disk = inputs.get("rootBlockDevice") or {}
    tags = inputs.get("tags") or {}
    return (f"{inputs.get('instanceType')} from {inputs.get('ami')}, {_number(disk.get('volumeSize'))} GiB "
            f"{disk.get('volumeType')}{' encrypted' if disk.get('encrypted') else ''}, "
            f"Datadog hostname {tags.get('datadog-hostname')}, Name {tags.get('Name')}")


def _security_group(inputs: dict[str, Any]) -> str:
    rules = [f"tcp {rule.get('fromPort')} from {', '.join([*(rule.get('cidrBlocks') or []), *(rule.get('ipv6CidrBlocks') or [])])}"
             for rule in inputs.get("ingress") or []]
    return f"{inputs.get('name')}: ingress {'; '.join(rules) if rules else 'none'}; egress all"


def _association(inputs: dict[str, Any]) -> str:
    targets = ", ".join(f"{t['key']}={','.join(t['values'])}" for t in inputs.get("targets") or [])
    return f"runs {inputs.get('name')} on {targets}, waits up to {_number(inputs.get('waitForSuccessTimeoutSeconds'))} s"


def _downtime(inputs: dict[str, Any]) -> str:
    schedule = inputs.get("recurringSchedule") or {}
    (recurrence,) = schedule.get("recurrences") or [{}]
    return f"{recurrence.get('rrule')} for {recurrence.get('duration')} ({schedule.get('timezone')})"


WHAT: dict[str, Callable[[dict[str, Any]], str]] = {
    "aws:ec2/instance:Instance": _instance,
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:iam/role:Role": lambda i: f"{i.get('name')}: {i.get('description')}",
    "aws:iam/instanceProfile:InstanceProfile": lambda i: f"{i.get('name')}, for role {i.get('role')}",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": lambda i: f"managed policy {str(i.get('policyArn')).rsplit('/', 1)[-1]}",
    "aws:iam/rolePolicy:RolePolicy": lambda i: "inline policy: " + ", ".join(
        s.get("Sid", "?") for s in json.loads(i["policy"])["Statement"]) if isinstance(i.get("policy"), str) else "inline policy",
    "aws:ssm/parameter:Parameter": lambda i: f"{i.get('type')} {i.get('name')}"
                                             + (f" = {i['insecureValue']}" if i.get("insecureValue") else ""),
    "aws:ssm/document:Document": lambda i: f"{i.get('name')} ({i.get('documentType')}, {i.get('documentFormat')})",
    "aws:ssm/association:Association": _association,
    "datadog:index/monitor:Monitor": lambda i: f"{i.get('name')} ({i.get('type')})",
    "datadog:index/dashboard:Dashboard": lambda i: f"{i.get('title')}: {len(i.get('widgets') or [])} widgets",
    "datadog:index/downtimeSchedule:DowntimeSchedule": _downtime,
    "time:index/static:Static": lambda i: "the instant its downtime schedule's start is computed from",
}


def what_it_is(resource: dict[str, Any]) -> str:
    """One line: what a resource of the plan is, from its (masked) inputs."""
    describe = WHAT.get(resource["type"])
    if describe is not None:
        return describe(resource["inputs"])
    return str(resource["inputs"].get("name") or _tags(resource["inputs"]) or "")


def _short_type(type_: str) -> str:
    """aws:ec2/instance:Instance -> aws ec2 Instance; observability-lab:host:HostAccess -> HostAccess."""
    package, module, name = type_.split(":")
    if package == "observability-lab":
        return name
    service = module.split("/")[0]
    return f"{package} {service} {name}" if service != "index" else f"{package} {name}"


def _tree(plan: dict[str, Any]) -> list[str]:
    by_name = {(r["type"], r["name"]): r for r in plan["resources"]}
    lines: list[str] = []

    def walk(nodes: list[dict[str, Any]], depth: int) -> None:
        for node in nodes:
            resource = by_name.get((node["type"], node["name"]))
            label = f"{'  ' * depth}{node['name']}  [{_short_type(node['type'])}]"
            if node["children"]:
                lines.append(label)
                walk(node["children"], depth + 1)
            else:
                lines.append(f"{label}  {what_it_is(resource) if resource else ''}".rstrip())

    walk(plan["tree"], 1)
    return lines


def _counts(plan: dict[str, Any]) -> list[str]:
    counts: dict[str, int] = {}
    for resource in plan["resources"]:
        counts[resource["type"]] = counts.get(resource["type"], 0) + 1
    components = sum(n for t, n in counts.items() if t.startswith("observability-lab:"))
    lines = [f"Counts: {len(plan['resources']) - components} resources in {components} components"]
    lines += [f"  {n:>3}  {_short_type(t)}" for t, n in sorted(counts.items()) if not t.startswith("observability-lab:")]
    return lines


def _monitors(plan: dict[str, Any]) -> list[str]:
    lines = [f"Monitors ({len(plan['monitors'])})"]
    for monitor in plan["monitors"]:
        thresholds = monitor.get("monitorThresholds") or {}
        shown = ", ".join(f"{k} {v}" for k, v in sorted(thresholds.items()))
        lines += [f"  {monitor['name']} ({monitor['type']}{'; ' + shown if shown else ''})",
                  f"      {monitor['query']}"]
    return lines


def _dashboards(plan: dict[str, Any]) -> list[str]:
    lines = [f"Dashboards ({len(plan['dashboards'])})"]
    for dashboard in plan["dashboards"]:
        lines.append(f"  {dashboard['title']}")
        lines += [f"      {widget['title']}: {' | '.join(widget['queries'])}" for widget in dashboard["widgets"]]
    return lines


def _downtimes(plan: dict[str, Any]) -> list[str]:
    lines = [f"Downtime schedules ({len(plan['downtimeSchedules'])})"]
    for downtime in plan["downtimeSchedules"]:
        schedule = downtime["schedule"] or {}
        for recurrence in schedule.get("recurrences") or []:
            lines.append(f"  {recurrence.get('rrule')} for {recurrence.get('duration')} ({schedule.get('timezone')})")
    return lines


def _hosts_get(plan: dict[str, Any]) -> list[str]:
    lines = []
    for name, config in plan["hostConfiguration"].items():
        lines += [f"What the hosts get: SSM document {config['document']}, {config['documentBytes']} bytes "
                  f"({config['documentPercentOfLimit']} % of SSM's {SSM_DOCUMENT_LIMIT}), bundle "
                  f"{config['bundleDigest'][:12]} of {len(config['files'])} files:"]
        lines += [f"  {f['path']}" + (f" -> {f['installedAt']} ({f['unit']})" if f["unit"] else "")
                  for f in config["files"]]
    sizes = sorted(set(plan["userDataSizes"].values()))
    for size in sizes:
        hosts = sum(1 for s in plan["userDataSizes"].values() if s == size)
        lines.append(f"User-data: {size} bytes on {hosts} host(s), {100 * size / EC2_USER_DATA_LIMIT:.1f} % of "
                     f"EC2's {EC2_USER_DATA_LIMIT} (first boot only: fetch and run the document)")
    return lines


def summary(plan: dict[str, Any]) -> str:
    lines = [f"Offline plan for stack '{plan['stack']}'", plan["notice"], "", "Components and resources"]
    lines += _tree(plan)
    for section in (_counts, _monitors, _dashboards, _downtimes, _hosts_get):
        lines += ["", *section(plan)]
    lines += ["", "Stack outputs"] + [f"  {k}: {_one_line(v)}" for k, v in plan["outputs"].items()]
    lines += ["", MORE]
    return "\n".join(lines) + "\n"


def _one_line(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def full(plan: dict[str, Any]) -> str:
    """The summary, then every resource with its inputs, the bundle's files and the user-data."""
    lines = [summary(plan).rstrip("\n").removesuffix(MORE).rstrip(), "", f"Resources ({len(plan['resources'])}), in full"]
    for r in plan["resources"]:
        lines.append(f"- {r['type']} {r['name']} (parent: {r['parent']})")
        body = {"options": r["options"], "inputs": r["inputs"]} if r["options"] else {"inputs": r["inputs"]}
        lines += ["    " + line for line in _yaml(body).splitlines()]
    for name, config in plan["hostConfiguration"].items():
        lines += _host_configuration(name, config)
    # Every host has the same user-data: each distinct one is shown once, with its instances.
    instances_of: dict[str, list[str]] = {}
    for name, text in plan["userData"].items():
        instances_of.setdefault(text, []).append(name)
    for text, names in instances_of.items():
        size = len(text.encode())
        lines += ["", f"User-data of {', '.join(names)} (first boot only; {size} bytes, "
                      f"{100 * size / EC2_USER_DATA_LIMIT:.1f} % of EC2's {EC2_USER_DATA_LIMIT})"]
        lines += ["    " + line if line else "" for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def _host_configuration(name: str, config: dict[str, Any]) -> list[str]:
    lines = ["", f"Host configuration ({name}): SSM document {config['document']}, "
                 f"{config['documentBytes']} bytes ({config['documentPercentOfLimit']} % of SSM's {SSM_DOCUMENT_LIMIT})",
             f"  bundle {config['bundleDigest']}, {len(config['files'])} files:",
             "    bytes  sha256        file -> installed at (owner mode, unit)"]
    for f in config["files"]:
        where = f"{f['installedAt']} ({f['owner']} {f['mode']}, {f['unit']})" if f["unit"] else f["installedAt"]
        lines.append(f"    {f['bytes']:>5}  {f['sha256']}  {f['path']} -> {where}")
    lines += ["", "  The document's script (SSM runs it with sh):"]
    lines += ["    " + line if line else "" for line in config["script"].splitlines()]
    for path, text in config["contents"].items():
        lines += ["", f"  --- {path}"] + ["    " + line if line else "" for line in text.splitlines()]
    return lines


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False, width=120)
