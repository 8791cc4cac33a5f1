"""Scenarios 2-9: what a later document does to a host the first boot converged.

Each test boots its own host from the first-booted host's disk (an overlay over it, so a boot
of that host after a power-off) and runs the stack's rendered document inside, as the SSM
Agent does; the assertions look at the real system.
"""

import time

import pytest

from tests.booted.documents import render
from tests.booted.host import KillPoint, assert_succeeded

AGENT_UNIT, APP_UNIT, MYSQL_UNIT = "datadog-agent.service", "flask-app.service", "mariadb.service"
MY_METRIC_CONF = "/etc/datadog-agent/conf.d/custom_my_metric.yaml"


def restarted(before: dict, after: dict) -> set:
    return {unit for unit in before if before[unit] != after[unit]}


# 2 -----------------------------------------------------------------------------------------
def test_a_no_change_rerun_writes_nothing_and_restarts_nothing(host, dev_document):
    booted = host()
    files, units = booted.file_states(dev_document), booted.invocations()
    run = booted.converge(dev_document)
    assert_succeeded(dev_document, run)
    assert run.changed_files() == {} and run.applied() == []
    assert set(run.report("service").values()) == {"kept"}, run.stdout
    assert booted.file_states(dev_document) == files  # not one write, chmod or chown
    assert booted.invocations() == units
    booted.assert_host_state(dev_document)


# 3 -----------------------------------------------------------------------------------------
def test_a_check_interval_change_updates_one_file_and_restarts_only_the_agent(host, dev_document):
    changed = render(checkIntervalSeconds=30)
    booted = host()
    units = booted.invocations()
    run = booted.converge(changed)
    booted.assert_converged(changed, run)
    assert run.changed_files() == {MY_METRIC_CONF: "updated"}
    assert run.applied() == ["datadog-agent"]
    assert restarted(units, booted.invocations()) == {AGENT_UNIT}
    assert "min_collection_interval: 30" in booted.machine.path(MY_METRIC_CONF).read_text()


# 4 -----------------------------------------------------------------------------------------
def test_an_app_workers_change_restarts_only_the_app_with_the_monitors_process_count(host, dev_document):
    changed = render(appWorkers=4)
    assert changed.app_processes == 5 != dev_document.app_processes
    booted = host()
    units = booted.invocations()
    run = booted.converge(changed)
    booted.assert_converged(changed, run)
    assert run.changed_files() == {"/opt/sample-flask-app/app.env": "updated"}
    assert run.applied() == ["flask-app"]
    assert restarted(units, booted.invocations()) == {APP_UNIT}
    # The process monitor counts command lines matching "gunicorn": master plus workers.
    deadline = time.monotonic() + 30
    while len(booted.processes("gunicorn")) != changed.app_processes and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(booted.processes("gunicorn")) == changed.app_processes, booted.processes("gunicorn")


# 5 -----------------------------------------------------------------------------------------
BROKEN = {
    "a conf the Agent cannot load": {"agent/conf.d/custom_my_metric.yaml": "init_config:\ninstances: [\n"},
    "a check whose code fails": {"agent/checks.d/custom_my_metric.py":
                                 "from datadog_checks.base import AgentCheck\n\n\nclass MyMetric(AgentCheck):\n"
                                 "    def check(self, instance):\n        raise RuntimeError('broken on purpose')\n"},
}


@pytest.mark.parametrize("broken", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_check_gets_its_previous_file_back_and_the_agent_runs_on_it(host, dev_document, broken):
    changed = dev_document.changed(broken)
    booted = host()
    (path,) = broken
    target = next(entry[1] for entry in dev_document.manifest() if entry[0] == path)
    before = booted.machine.path(target).read_text()
    run = booted.converge(changed)
    assert run.returncode != 0
    assert "FAILED: datadog-agent rejected its new files" in run.stdout, run.stdout[-1500:]
    assert booted.machine.path(target).read_text() == before
    # On the previous files everything is as the first boot left it, the Agent included.
    booted.assert_host_state(dev_document)
    assert "Configuration errors" not in booted.machine.ok(["datadog-agent", "configcheck"])


# 6 -----------------------------------------------------------------------------------------
def test_the_agent_version_goes_up_then_down_through_apt_held_at_each(host, dev_document):
    newer = render(agentVersion="7.78.0")
    booted = host()
    up = booted.converge(newer)
    booted.assert_converged(newer, up)  # 1:7.78.0-1, held, the stand-in reports v7.78.0
    assert "package datadog-agent: 1:7.77.2-1 -> 1:7.78.0-1" in up.stdout
    down = booted.converge(dev_document)
    booted.assert_converged(dev_document, down)
    assert "package datadog-agent: 1:7.78.0-1 -> 1:7.77.2-1" in down.stdout


# 7 -----------------------------------------------------------------------------------------
def test_a_run_killed_between_writing_files_and_restarting_is_finished_by_the_next(host, dev_document):
    changed = render(checkIntervalSeconds=30)
    booted = host()
    units = booted.invocations()
    killed = booted.converge(changed, kill=KillPoint("systemctl", "restart datadog-agent"))
    assert killed.returncode != 0 and "== converged" not in killed.stdout
    assert f"file {MY_METRIC_CONF}: updated" in killed.stdout  # written, then the run died
    assert restarted(units, booted.invocations()) == set()
    again = booted.converge(changed)
    booted.assert_converged(changed, again)
    assert "service datadog-agent: restarted" in again.stdout
    assert restarted(units, booted.invocations()) == {AGENT_UNIT}


# 8 -----------------------------------------------------------------------------------------
def test_after_a_reboot_every_unit_comes_back_by_itself(host, dev_document):
    booted = host()
    log = booted.machine.path("/var/log/observability-lab-converge.log").read_text()
    units = booted.invocations()
    booted.machine.reboot()
    assert booted.machine.path("/var/log/observability-lab-converge.log").read_text() == log  # no converge
    assert restarted(units, booted.invocations()) == set(units)  # every unit started anew
    booted.assert_host_state(dev_document)


# 9 -----------------------------------------------------------------------------------------
def test_bike_share_switched_off_removes_its_files_and_restarts_the_agent(host, dev_document):
    changed = render(bikeShareEnabled=False)
    booted = host()
    units = booted.invocations()
    run = booted.converge(changed)
    booted.assert_converged(changed, run)  # its manifest entries' files are gone
    assert run.changed_files() == {"/etc/datadog-agent/checks.d/bike_share.py": "removed",
                                   "/etc/datadog-agent/conf.d/bike_share.yaml": "removed"}
    assert restarted(units, booted.invocations()) == {AGENT_UNIT}
    assert "bike_share" not in booted.machine.ok(["datadog-agent", "configcheck"])
