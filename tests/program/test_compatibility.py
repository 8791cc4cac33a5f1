"""Existing stacks see no replacement: today's plans against the plans of main before issue 22.

tests/data/<stack>-plan-before-issue-22.json keeps, from `python -m offline.plan <stack> --json`
at that commit, every resource with its inputs and the digest of every file of the bundle: what
an existing stack's state holds. Compared resource by resource as `make plan COMPARE=` does.
What changed since on purpose is named here, change by change (issue 17: HOST_FIXES; issue 21:
`data_volume_changes`; issue 19: the Java workload's files and resources; issue 20: the SLOs and
their burn-rate alerts created, the raw p95 and error-rate monitors they replace deleted, a log
monitor created, both dashboards' widgets updated (change-event overlays; SLO and log-stream
widgets), and the bundle's files of the logs, change events and (dev) traffic generator).
"""

from __future__ import annotations

import json

import pytest

from offline import changes
from tests.support import DATA
from tests.support.evaluations import plan_of
from tests.support.resource_types import (ACCESS, ACCESS_BEFORE, ASSOCIATION, ATTACHMENT, COMPONENTS_RETYPED,
                                          DASHBOARD, DOCUMENT, HOST, INSTANCE, LIFECYCLE_POLICY, MONITOR, PARAMETER,
                                          ROLE, ROLE_POLICY, SLO, SLOS, SNAPSHOTS, VOLUME)

BOOTSTRAP = ("observability-lab:host:AgentBootstrap", "bootstrap")  # had no child: gone, nothing in the cloud
BIKE_SHARE_CONF = "agent/conf.d/bike_share.yaml"
# Host files changed since by issue 17's fixes (found on the booted host): converge.sh, the MySQL
# package in converge.env, the app's unit and gunicorn config, hence the app's version in app.env;
# and by issue 21: converge.sh puts MySQL's data on the data volume, whose size converge.env carries.
# Issue 19's Java workload: every stack's converge.sh, manifest and converge.env know its unit
# (restarting nothing where it is off); dev turns it on: its files, the process check's Tomcat
# instance, and its Datadog objects (created). They change the bundle only: a new document and
# association, run once on the hosts.
HOST_FIXES = {"converge.sh", "converge.env", "app/flask-app.service", "app/gunicorn.conf.py", "app/app.env"}
CONVERGE_FILES = {"converge.sh", "manifest", "converge.env"}
JAVA_FILES = {"agent/conf.d/tomcat.d/conf.yaml", "agent/conf.d/process.d/conf.yaml", "mysql/cars_user.sql",
              "tomcat/cars.xml", "tomcat/cars/index.jsp", "tomcat/jmxremote.access", "tomcat/jmxremote.password",
              "tomcat/observability-lab.conf"}
# What a change of the bundle changes in the cloud: the document (content-addressed name), its
# association, the parameter naming the current document.
BUNDLE_CHANGED = {
    (DOCUMENT, "host-config-document"): ("replaced", ["name"]),
    (ASSOCIATION, "host-config-run-association"): ("replaced", ["associationName", "name"]),
    (PARAMETER, "host-config-current-document"): ("updated", ["insecureValue"])}
# Issue 20: the raw APM monitors retired for the SLOs' burn-rate alerts, and what it adds.
RETIRED = [(MONITOR, "datadog-monitors-apm-errors"), (MONITOR, "datadog-monitors-apm-latency")]
CREATED = sorted([(MONITOR, "datadog-monitors-app-error-logs"), (SLOS, "datadog-slos"),
                  (SLO, "datadog-slos-availability"), (SLO, "datadog-slos-latency"),
                  *[(MONITOR, f"datadog-slos-{slo}-burn-{alert}") for slo in ("availability", "latency")
                    for alert in ("pagefast", "pageslow", "ticket")]])
DASHBOARDS_UPDATED = {(DASHBOARD, "datadog-dashboards-apm"): ("updated", ["widgets"]),
                      (DASHBOARD, "datadog-dashboards-timeboard"): ("updated", ["widgets"])}
# The bundle's files issue 20 adds or changes: logs (Agent, app, MySQL), change events (converge).
LOG_AND_EVENT_FILES = {"agent/conf.d/flask_app.d/conf.yaml", "agent/conf.d/mysql.d/conf.yaml", "agent/datadog.yaml",
                       "app/app.env", "app/app.py", "app/gunicorn.conf.py", "app/log_format.py", "converge.env",
                       "converge.sh", "manifest"}
TRAFFIC_FILES = {"traffic/app_traffic.py", "traffic/app-traffic.env", "traffic/app-traffic.service"}  # dev only
# The host app's dependency closure pinned (the review after issue 22): its requirements file.
APP_PINS = {"app/requirements.txt"}
NEW_LOG_FILES = {"agent/conf.d/flask_app.d/conf.yaml", "app/log_format.py"}  # the rest of LOG_AND_EVENT_FILES changed


def issue_20_changes() -> dict:
    """What issue 20 changes in the cloud on every stack, on purpose (its bundle files aside)."""
    return {**{key: ("deleted", []) for key in RETIRED}, **{key: ("created", []) for key in CREATED},
            **DASHBOARDS_UPDATED}


def java_app_resources(now: dict) -> list[tuple[str, str]]:
    return [(r["type"], r["name"]) for r in now["resources"] if r["name"].startswith("java-app")]


def before(stack: str) -> dict:
    return json.loads((DATA / f"{stack}-plan-before-issue-22.json").read_text())


def compared(evaluation) -> tuple[dict, dict, dict]:
    base, now = before(evaluation.stack), plan_of(evaluation)
    return base, now, changes.compare(base, now)


def data_volume_changes(hosts: int) -> dict:
    """What issue 21 changes on an existing stack, on purpose: per host a data volume and its
    attachment, created; the instance's tags gain the volume's id, and its root volume's tags move from
    `volumeTags` (written onto every attached volume) to the root volume's own, in place (no replacement);
    the stack's snapshot policy, its component, role and grants, created; and the new bundle."""
    per_host = {}
    for n in range(1, hosts + 1):
        per_host.update({(VOLUME, f"host-{n}-data-volume"): ("created", []),
                         (ATTACHMENT, f"host-{n}-data-attachment"): ("created", []),
                         (INSTANCE, f"host-{n}-instance"): ("updated", ["rootBlockDevice", "tags", "volumeTags"])})
    snapshots = {key: ("created", []) for key in (
        (SNAPSHOTS, "data-snapshots"), (ROLE, "data-snapshots-role"), (ROLE_POLICY, "data-snapshots-grants"),
        (LIFECYCLE_POLICY, "data-snapshots-policy"))}
    return {**per_host, **snapshots, **BUNDLE_CHANGED}


def unintended(evaluation, result: dict, now: dict) -> dict:
    """The changes of `result` that no issue since the kept plans made on purpose."""
    intended = {**data_volume_changes(len(evaluation.of_type(HOST))),
                **{key: ("created", []) for key in java_app_resources(now)}, **issue_20_changes(),
                BOOTSTRAP: ("deleted", [])}
    return {key: found for key, found in result.items() if found[0] != "unchanged" and intended.get(key) != found}


def test_every_component_keeps_its_state_through_an_alias(stack_eval):
    base, now, result = compared(stack_eval)
    hosts = {(HOST, r["name"]): ("observability-lab:aws:MonitoredHost", r["name"])
             for r in now["resources"] if r["type"] == HOST}
    expected = {**COMPONENTS_RETYPED, **hosts, (ACCESS, "host"): (ACCESS_BEFORE, "host")}
    if stack_eval.stack == "prod":  # bike share and downtimes are off in prod
        expected = {new: old for new, old in expected.items() if new[1] not in ("bike-share", "datadog-downtimes")}
    assert changes.moves(base, now) == expected
    assert all(result[key] == ("unchanged", []) for key in expected)
    assert sorted(key for key, (what, _) in result.items() if what == "deleted") == sorted([BOOTSTRAP, *RETIRED])
    created = {key for key, (what, _) in result.items() if what == "created"}
    volumes = {key for key, (what, _) in data_volume_changes(len(hosts)).items() if what == "created"}
    assert created == volumes | set(java_app_resources(now)) | set(CREATED)
    assert bool(java_app_resources(now)) == (stack_eval.stack == "dev")


def changed_bundle_files(base: dict, now: dict) -> set[str]:
    """The bundle's files that are new or differ from before (none may have gone)."""
    (config,) = now["hostConfiguration"].values()
    files = {f["path"]: f["sha256"] for f in config["files"]}
    assert set(base["bundleFiles"]) <= set(files)
    return {path for path in files if files[path] != base["bundleFiles"].get(path)}


def test_prod_changes_only_the_data_volumes_and_issue_17s_19s_and_20s_changes(prod):
    base, now, result = compared(prod)
    assert unintended(prod, result, now) == {}
    # Each intended change is there, and replaces no instance, volume or attachment.
    assert {key: result[key] for key in data_volume_changes(2)} == data_volume_changes(2)
    assert {key: result[key] for key in issue_20_changes()} == issue_20_changes()
    assert not java_app_resources(now)  # nothing of the Java workload's own in prod
    assert changed_bundle_files(base, now) == HOST_FIXES | CONVERGE_FILES | LOG_AND_EVENT_FILES | APP_PINS
    assert len(result) == len(now["resources"]) + 1 + len(RETIRED)  # and the deleted bootstrap and monitors


def test_dev_changes_only_what_the_bike_share_fixes_the_data_volumes_and_issues_19_and_20_change(dev):
    base, now, result = compared(dev)
    assert {key: result[key] for key in data_volume_changes(1)} == data_volume_changes(1)
    assert {key: result[key] for key in issue_20_changes()} == issue_20_changes()
    assert all(result[key] == ("created", []) for key in java_app_resources(now))
    changed = unintended(dev, result, now)
    monitors = {key for key in changed if key[0] == MONITOR}
    assert {name for _, name in monitors} == {"bike-share-empty", "bike-share-full", "bike-share-feed-unreachable",
                                              "bike-share-feed-stale", "bike-share-trend"}
    assert all(changed[key] == ("updated", ["tags"]) for key in monitors)
    by_key = {(r["type"], r["name"]): r for r in now["resources"]}
    assert all("service:bike-share" in by_key[key]["inputs"]["tags"] for key in monitors)
    # The check's conf is a file of the bundle: the new bundle's document and association (BUNDLE_CHANGED).
    assert {key: changed[key] for key in changed if key not in monitors} == {}
    (config,) = now["hostConfiguration"].values()
    assert {f["path"] for f in config["files"]} == set(base["bundleFiles"]) | JAVA_FILES | NEW_LOG_FILES | TRAFFIC_FILES
    assert changed_bundle_files(base, now) == (HOST_FIXES | CONVERGE_FILES | JAVA_FILES | {BIKE_SHARE_CONF}
                                               | LOG_AND_EVENT_FILES | TRAFFIC_FILES | APP_PINS)
    assert "    service: \"bike-share\"\n" in config["contents"][BIKE_SHARE_CONF]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_kept_plans_are_what_main_rendered(stack):
    # The data's own provenance: main's plan had the bootstrap component and the old tokens.
    kept = before(stack)
    types = {r["type"] for r in kept["resources"]}
    assert BOOTSTRAP[0] in types and "observability-lab:aws:HostAccess" in types
    assert kept["stack"] == stack and "e0acf69" in kept["source"]
