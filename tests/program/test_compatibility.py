"""Existing stacks see no replacement: today's plans against the plans of main before issue 22.

tests/data/<stack>-plan-before-issue-22.json keeps, from `python -m offline.plan <stack> --json`
at that commit, every resource with its inputs and the digest of every file of the bundle: what
an existing stack's state holds. Compared resource by resource as `make plan COMPARE=` does.
"""

from __future__ import annotations

import json

import pytest

from offline import changes
from tests.support import DATA
from tests.support.evaluations import plan_of
from tests.support.resource_types import (ACCESS, ACCESS_BEFORE, ASSOCIATION, COMPONENTS_RETYPED, DOCUMENT, HOST,
                                          MONITOR, PARAMETER)

BOOTSTRAP = ("observability-lab:host:AgentBootstrap", "bootstrap")  # had no child: gone, nothing in the cloud
BIKE_SHARE_CONF = "agent/conf.d/bike_share.yaml"


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
    assert [key for key, (what, _) in result.items() if what == "deleted"] == [BOOTSTRAP]
    assert [key for key, (what, _) in result.items() if what == "created"] == []


def test_prod_renders_every_aws_and_datadog_resource_as_before(prod):
    _, now, result = compared(prod)
    assert {what for key, (what, _) in result.items() if key != BOOTSTRAP} == {"unchanged"}
    assert len(result) == len(now["resources"]) + 1  # and the deleted bootstrap


def test_dev_changes_only_what_the_bike_share_fixes_change(dev):
    base, now, result = compared(dev)
    changed = {key: found for key, found in result.items() if found[0] != "unchanged" and key != BOOTSTRAP}
    monitors = {key for key in changed if key[0] == MONITOR}
    assert {name for _, name in monitors} == {"bike-share-empty", "bike-share-full", "bike-share-feed-unreachable",
                                              "bike-share-feed-stale", "bike-share-trend"}
    assert all(changed[key] == ("updated", ["tags"]) for key in monitors)
    by_key = {(r["type"], r["name"]): r for r in now["resources"]}
    assert all("service:bike-share" in by_key[key]["inputs"]["tags"] for key in monitors)
    # The check's conf is a file of the bundle: a new document and association, run once on the hosts.
    assert {key: changed[key] for key in changed if key not in monitors} == {
        (DOCUMENT, "host-config-document"): ("replaced", ["name"]),
        (ASSOCIATION, "host-config-run-association"): ("replaced", ["associationName", "name"]),
        (PARAMETER, "host-config-current-document"): ("updated", ["insecureValue"])}
    (config,) = now["hostConfiguration"].values()
    files = {f["path"]: f["sha256"] for f in config["files"]}
    assert set(files) == set(base["bundleFiles"])
    assert [path for path in files if files[path] != base["bundleFiles"][path]] == [BIKE_SHARE_CONF]
    assert "    service: \"bike-share\"\n" in config["contents"][BIKE_SHARE_CONF]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_kept_plans_are_what_main_rendered(stack):
    # The data's own provenance: main's plan had the bootstrap component and the old tokens.
    kept = before(stack)
    types = {r["type"] for r in kept["resources"]}
    assert BOOTSTRAP[0] in types and "observability-lab:aws:HostAccess" in types
    assert kept["stack"] == stack and "e0acf69" in kept["source"]
