"""Existing stacks see no replacement: today's plans against the plans of main before issue 22.

tests/data/<stack>-plan-before-issue-22.json keeps, from `python -m offline.plan <stack> --json`
at that commit, every resource with its inputs and the digest of every file of the bundle: what
an existing stack's state holds. Compared resource by resource as `make plan COMPARE=` does.

Since then, issue 17's host fixes and issue 20 changed on purpose (nothing else may differ): the SLOs and their
burn-rate alerts created, the raw p95 and error-rate monitors they replace deleted, a log
monitor created, both dashboards' widgets updated (change-event overlays; SLO and log-stream
widgets), and the bundle's files of the logs, change events and (dev) traffic generator: a new
document, run once on the hosts in place. No host, image or user-data changes.
"""

from __future__ import annotations

import json

import pytest

from offline import changes
from tests.support import DATA
from tests.support.evaluations import plan_of
from tests.support.resource_types import (ACCESS, ACCESS_BEFORE, ASSOCIATION, COMPONENTS_RETYPED, DASHBOARD, DOCUMENT,
                                          HOST, MONITOR, PARAMETER, SLO, SLOS)

BOOTSTRAP = ("observability-lab:host:AgentBootstrap", "bootstrap")  # had no child: gone, nothing in the cloud
BIKE_SHARE_CONF = "agent/conf.d/bike_share.yaml"
# Host files changed since by issue 17's fixes (found on the booted host): converge.sh, the MySQL
# package in converge.env, the app's unit and gunicorn config, hence the app's version in app.env.
# They change the bundle only: a new document and association, run once on the hosts.
HOST_FIXES = {"converge.sh", "converge.env", "app/flask-app.service", "app/gunicorn.conf.py", "app/app.env"}
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


def changed_files(base: dict, now: dict) -> set[str]:
    """Bundle files added or changed since the kept plan (none may have gone)."""
    (config,) = now["hostConfiguration"].values()
    files = {f["path"]: f["sha256"] for f in config["files"]}
    assert set(base["bundleFiles"]) <= set(files)
    return {path for path in files if files[path] != base["bundleFiles"].get(path)}


def before(stack: str) -> dict:
    return json.loads((DATA / f"{stack}-plan-before-issue-22.json").read_text())


def compared(evaluation) -> tuple[dict, dict, dict]:
    base, now = before(evaluation.stack), plan_of(evaluation)
    return base, now, changes.compare(base, now)


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
    assert sorted(key for key, (what, _) in result.items() if what == "created") == CREATED


def test_prod_changes_only_what_issue_17s_fixes_and_issue_20_change(prod):
    base, now, result = compared(prod)
    changed = {key: found for key, found in result.items() if found[0] not in ("unchanged", "created", "deleted")}
    assert changed == {**DASHBOARDS_UPDATED, **BUNDLE_CHANGED}
    assert changed_files(base, now) == HOST_FIXES | LOG_AND_EVENT_FILES
    assert len(result) == len(now["resources"]) + 1 + len(RETIRED)  # and the deleted bootstrap and monitors


def test_dev_changes_only_what_the_bike_share_fixes_and_issue_20_change(dev):
    base, now, result = compared(dev)
    changed = {key: found for key, found in result.items() if found[0] not in ("unchanged", "created", "deleted")}
    monitors = {key for key in changed if key[0] == MONITOR}
    assert {name for _, name in monitors} == {"bike-share-empty", "bike-share-full", "bike-share-feed-unreachable",
                                              "bike-share-feed-stale", "bike-share-trend"}
    assert all(changed[key] == ("updated", ["tags"]) for key in monitors)
    by_key = {(r["type"], r["name"]): r for r in now["resources"]}
    assert all("service:bike-share" in by_key[key]["inputs"]["tags"] for key in monitors)
    # The check's conf is a file of the bundle: a new document and association, run once on the hosts.
    assert {key: changed[key] for key in changed if key not in monitors} == {**DASHBOARDS_UPDATED, **BUNDLE_CHANGED}
    assert changed_files(base, now) == {BIKE_SHARE_CONF} | HOST_FIXES | LOG_AND_EVENT_FILES | TRAFFIC_FILES
    (config,) = now["hostConfiguration"].values()
    assert "    service: \"bike-share\"\n" in config["contents"][BIKE_SHARE_CONF]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_kept_plans_are_what_main_rendered(stack):
    # The data's own provenance: main's plan had the bootstrap component and the old tokens.
    kept = before(stack)
    types = {r["type"] for r in kept["resources"]}
    assert BOOTSTRAP[0] in types and "observability-lab:aws:HostAccess" in types
    assert kept["stack"] == stack and "e0acf69" in kept["source"]
