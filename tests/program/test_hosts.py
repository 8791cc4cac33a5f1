"""Several hosts per stack (`hostCount`): what grows with the hosts and what does not, and what
adding, removing or first introducing hosts does to the resources (two evaluations compared
resource by resource, as `make plan COMPARE=...` does)."""

from __future__ import annotations

import json

import pytest

from offline import changes
from offline.engine import Evaluation
from tests.support import DATA
from tests.support.evaluations import compare, plan_of

from tests.support.resource_types import (ACCESS, ACCESS_BEFORE, ASSOCIATION, ATTACHMENT, COMPONENTS_RETYPED, DOCUMENT,
                                          HOST, INSTANCE, PARAMETER, SINGLE_HOST_BEFORE, VOLUME)

RUN = (ASSOCIATION, "host-config-run-association")
COUNTS = (1, 3, 50)
# What one host adds: its component, its instance, its data volume and the attachment between them.
PER_HOST = {HOST: "host-{n}", INSTANCE: "host-{n}-instance", VOLUME: "host-{n}-data-volume",
            ATTACHMENT: "host-{n}-data-attachment"}
# Host 3's resources in AWS.
HOST_3_AWS = {(INSTANCE, "host-3-instance"), (VOLUME, "host-3-data-volume"), (ATTACHMENT, "host-3-data-attachment")}
ONE_HOST_PLAN = DATA / "dev-plan-one-host.json"


@pytest.fixture(scope="module")
def fleets(run_stack) -> dict[int, Evaluation]:
    # dev runs one host: its own evaluation is the one-host case.
    assert len(run_stack("dev").of_type(HOST)) == 1
    return {n: run_stack("dev", {"hostCount": n} if n != 1 else None) for n in COUNTS}


def keys(evaluation, prefix: str = "") -> set[tuple[str, str]]:
    return {(r.type, r.name) for r in evaluation.resources if r.type.startswith(prefix)}


def hostnames(n: int) -> list[str]:
    return [f"observability-lab-dev-{k}" for k in range(1, n + 1)]


def test_resources_grow_by_exactly_one_host_per_host(fleets):
    one = keys(fleets[1])
    for n, evaluation in fleets.items():
        extra = {(type_, name.format(n=k)) for k in range(2, n + 1) for type_, name in PER_HOST.items()}
        assert keys(evaluation) == one | extra, n
        assert len(evaluation.resources) == len(one) + len(PER_HOST) * (n - 1), n


def test_datadog_objects_do_not_grow_with_hosts(fleets):
    datadog = {n: keys(evaluation, "datadog:") for n, evaluation in fleets.items()}
    # dev: with bike-share and Java; and (issue 20) the 2 SLOs, their 6 burn-rate alerts and the log
    # monitor in place of the 2 raw APM monitors.
    assert len(datadog[1]) == 30 and datadog[1] == datadog[3] == datadog[50]


def test_names_and_hostnames_are_unique(fleets):
    evaluation = fleets[50]
    instances = evaluation.of_type(INSTANCE)
    tags = [i.inputs["tags"] for i in instances]
    assert sorted(t["datadog-hostname"] for t in tags) == sorted(hostnames(50))
    assert len({t["Name"] for t in tags}) == 50
    assert len({r.urn for r in evaluation.resources}) == len(evaluation.resources)
    names = [(r.type, r.inputs["name"]) for r in evaluation.resources if r.type.startswith("aws:") and "name" in r.inputs]
    assert len(names) == len(set(names))  # AWS names are unique per type (the role and its profile share one)
    assert sorted(evaluation.outputs["hosts"]) == sorted(hostnames(50))
    assert len({h["instanceId"] for h in evaluation.outputs["hosts"].values()}) == 50


def test_one_configuration_for_every_host_whatever_their_number(fleets):
    # The bundle carries no per-host value (the hostname comes from each instance's tag),
    # so the document and the user-data do not grow with the hosts; the association names them.
    documents = {n: e.one(DOCUMENT).inputs["content"] for n, e in fleets.items()}
    assert documents[1] == documents[3] == documents[50]
    user_data = {n: {i.inputs["userData"] for i in e.of_type(INSTANCE)} for n, e in fleets.items()}
    assert len(user_data[1]) == 1 and user_data[1] == user_data[3] == user_data[50]
    for evaluation in fleets.values():
        (association,) = evaluation.of_type("aws:ssm/association:Association")
        (target,) = association.inputs["targets"]
        assert target["key"] == "InstanceIds"
        assert target["values"] == [h["instanceId"] for h in evaluation.outputs["hosts"].values()]


def test_the_my_metric_monitor_names_every_host_and_the_others_only_the_stacks_tags(fleets):
    for n, evaluation in fleets.items():
        monitors = {r.name: r.inputs["query"] for r in evaluation.of_type("datadog:index/monitor:Monitor")}
        assert monitors["datadog-monitors-my-metric"] == (
            "avg(last_5m):avg:my_metric{env:dev AND project:observability-lab AND host IN "
            f"({', '.join(hostnames(n))})}} by {{host}} > 800")
        # The Tomcat JVMs are counted across the stack: one per host expected.
        assert monitors["java-app-processes"].endswith(f".rollup('count').last('5m') < {n}")
        counted = ("datadog-monitors-my-metric", "java-app-processes")
        others = {name: query for name, query in monitors.items() if name not in counted}
        assert others == {name: query for name, query in (
            (r.name, r.inputs["query"]) for r in fleets[1].of_type("datadog:index/monitor:Monitor"))
            if name not in counted}, n


def test_dashboards_offer_every_host_and_show_all_of_them(fleets):
    for n, evaluation in fleets.items():
        for board in evaluation.of_type("datadog:index/dashboard:Dashboard"):
            assert board.inputs["templateVariables"] == [
                {"name": "host", "prefix": "host", "defaults": ["*"], "availableValues": hostnames(n)}], board.name


def test_downtimes_cover_every_hosts_group_with_the_same_two_schedules(fleets):
    schedules = {n: {r.name: r.inputs for r in e.of_type("datadog:index/downtimeSchedule:DowntimeSchedule")}
                 for n, e in fleets.items()}
    assert len(schedules[1]) == 2 and schedules[1] == schedules[3] == schedules[50]
    assert {s["scope"] for s in schedules[50].values()} == {"*"}  # every group of the my_metric monitor


def test_outputs_per_host_and_the_single_host_ones_only_for_one_host(fleets):
    single = {"datadogHostname", "instanceId", "publicIp", "publicDns", "appUrl", "ssmSessionCommand"}
    assert single <= set(fleets[1].outputs)
    for n in (3, 50):
        outputs = fleets[n].outputs
        assert not single & set(outputs) and len(outputs["hosts"]) == n
        for hostname, host in outputs["hosts"].items():
            assert set(host) == {"instanceId", "dataVolumeId", "publicDns", "appUrl", "ssmSessionCommand"}
            assert host["ssmSessionCommand"].endswith(f"--target {host['instanceId']}"), hostname


def changed(result: dict) -> dict:
    return {key: what for key, (what, _) in result.items() if what != "unchanged"}


def test_a_third_host_adds_its_own_resources_and_touches_no_other_host(run_stack):
    result = compare(run_stack("dev", {"hostCount": 2}), run_stack("dev", {"hostCount": 3}))
    # The association names the instances by id: a new list is a new association, which runs
    # the same document on every host again (converge.sh changes nothing on hosts 1 and 2).
    assert result.pop(RUN) == ("replaced", ["targets"])
    assert {key for key, what in changed(result).items() if what != "updated"} == {(HOST, "host-3"), *HOST_3_AWS}
    assert {what for key, what in changed(result).items() if key not in HOST_3_AWS and key[1] != "host-3"} \
        <= {"updated"}
    # In place, Datadog objects only: the monitor naming the hosts, the one counting a JVM per
    # host, and the boards listing them.
    assert {key[1] for key, what in changed(result).items() if what == "updated"} == {
        "datadog-monitors-my-metric", "java-app-processes", "datadog-dashboards-timeboard", "datadog-dashboards-apm",
        "bike-share-dashboard", "java-app-dashboard"}
    assert all(what == "unchanged" for key, (what, _) in result.items()
               if key[0].startswith("aws:") and key not in HOST_3_AWS)


def test_removing_the_third_host_removes_only_its_resources(run_stack):
    three, two = run_stack("dev", {"hostCount": 3}), run_stack("dev", {"hostCount": 2})
    result = compare(three, two)
    assert result.pop(RUN) == ("replaced", ["targets"])
    assert {key for key, what in changed(result).items() if what == "deleted"} == {(HOST, "host-3"), *HOST_3_AWS}
    assert {what for what in changed(result).values()} == {"deleted", "updated"}
    # By URN, too: the two-host stack is the three-host one minus host 3's resources.
    urns = {n: {r.urn for r in e.resources} for n, e in ((3, three), (2, two))}  # the association keeps its URN
    assert urns[3] - urns[2] == {r.urn for r in three.resources
                                 if r.name == "host-3" or (r.type, r.name) in HOST_3_AWS}
    assert urns[2] <= urns[3]


def test_host_one_keeps_the_single_hosts_urns_through_aliases(fleets, prod):
    for evaluation in (*fleets.values(), prod):
        stack = evaluation.stack
        (first,) = [r for r in evaluation.of_type(INSTANCE) if r.name == "host-1-instance"]
        # The URN the engine gave the one host's instance (component "host" of the old type):
        assert first.options["aliases"] == [
            f"urn:pulumi:{stack}::observability-lab::observability-lab:aws:MonitoredHost"
            "$aws:ec2/instance:Instance::host-instance"]
        assert all(r.options["aliases"] == [] for r in evaluation.of_type(INSTANCE) if r is not first)
        # What the hosts share is the old component, retyped: its children keep their names,
        # and the engine carries a parent's aliases to its children.
        access = evaluation.one(ACCESS)
        assert [changes.urn_key(urn) for urn in access.options["aliases"]] == [
            (ACCESS_BEFORE, "host"), (SINGLE_HOST_BEFORE, "host")]
        assert {r.name for r in evaluation.children_of(access)} == {
            "host-datadog-api-key", "host-role", "host-profile", "host-sg", "host-read-own-config",
            "host-ssm-agent", "host-datadog-api-key-kms", "host-datadog-api-key-alias"}


def test_an_existing_one_host_stack_keeps_every_aws_resource(dev):
    # tests/data/dev-plan-one-host.json: the dev plan of the last one-host version of the program.
    before = json.loads(ONE_HOST_PLAN.read_text())
    after = plan_of(dev)
    result = changes.compare(before, after)
    assert changes.moves(before, after) == {(INSTANCE, "host-1-instance"): (INSTANCE, "host-instance"),
                                            (ACCESS, "host"): (SINGLE_HOST_BEFORE, "host"),
                                            # and every component whose type token changed since
                                            **COMPONENTS_RETYPED}
    # Its instance is updated in place (a Name tag, the hostname and data volume tags, tags in metadata, the
    # root volume's tags on the root volume only): not replaced.
    assert result[(INSTANCE, "host-1-instance")] == ("updated", ["metadataOptions", "rootBlockDevice", "tags",
                                                                 "volumeTags"])
    assert result[(ACCESS, "host")] == ("unchanged", [])
    aws = {key: what for key, (what, _) in result.items() if key[0].startswith("aws:")}
    # Least privilege (issue 18): the managed policy goes, the stack's own key and the SSM Agent's
    # inline policy come, the key parameter is re-encrypted in place. Nothing else is created or deleted.
    assert {key[1] for key, what in aws.items() if what == "deleted"} == {"host-ssm-core"}
    # Issue 21: a data volume for the host, attached to it, and the stack's snapshot policy with its role.
    assert {key[1] for key, what in aws.items() if what == "created"} == {
        "host-ssm-agent", "host-datadog-api-key-kms", "host-datadog-api-key-alias",
        "host-1-data-volume", "host-1-data-attachment", "data-snapshots-role", "data-snapshots-grants",
        "data-snapshots-policy"}
    assert result[(PARAMETER, "host-datadog-api-key")] == ("updated", ["keyId"])
    # The new bundle (the hostname from the tag, the project tag) reaches the host as any change does.
    assert {key[1] for key, what in aws.items() if what == "replaced"} == {
        "host-config-document", "host-config-run-association"}
    assert result[(HOST, "host-1")] == ("created", [])  # a component only: nothing in AWS
