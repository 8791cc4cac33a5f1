"""Proof that the layer can fail: a fault injected on purpose into the rendered document makes
its verdict (`assert_converged`) fail, naming the fault. Each would pass the recorder tests."""

import re

import pytest

from tests.booted.documents import render
from tests.booted.host import SQL_RECORD


def test_a_world_readable_mode_in_the_manifest_for_the_sql_file_fails_the_layer(host, dev_document):
    manifest = dev_document.files["manifest"]
    loose = re.sub(r"(?m)^(mysql/datadog_user\.sql\s+\S+\s+\S+\s+)0600", r"\g<1>0644", manifest)
    assert loose != manifest
    faulty = dev_document.changed({"manifest": loose})
    booted = host()
    booted.sh(f"rm {SQL_RECORD}")  # written anew, with the manifest's mode
    run = booted.converge(faulty)
    with pytest.raises(AssertionError, match=f"{SQL_RECORD}: readable by others"):
        booted.assert_converged(faulty, run)


def test_a_unit_that_cannot_start_fails_the_layer(host, dev_document):
    unit = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/opt/sample-flask-app/venv/bin/no-such-program",
                  dev_document.files["app/flask-app.service"])
    faulty = dev_document.changed({"app/flask-app.service": unit})
    booted = host()
    run = booted.converge(faulty)
    with pytest.raises(AssertionError, match="converge exited 1"):
        booted.assert_converged(faulty, run)
    assert "FAILED: flask-app rejected its new files" in run.stdout


def test_a_keyring_apt_cannot_read_fails_the_layer(host):
    # The keyring written root's 0600: apt verifies signatures as its own user (_apt), which
    # cannot read it, so the Agent's repository is refused and the install fails. (The keybox
    # the SSM review found cannot stand in here: Debian 12's apt 2.6 verifies through gpgv,
    # which reads keyboxes; tried, the upgrade went through. test_1 checks the format instead.)
    newer = render(agentVersion="7.78.0")
    script = newer.files["converge.sh"]
    unreadable = script.replace('put_file "$tmp/keyring.gpg" "$ROOT$KEYRING" root:root 0644',
                                'put_file "$tmp/keyring.gpg" "$ROOT$KEYRING" root:root 0600')
    assert unreadable != script
    faulty = newer.changed({"converge.sh": unreadable})
    booted = host()
    # As before the Agent's first install: no keyring (the run builds it) and no Datadog index
    # apt verified earlier (apt keeps using those when a new InRelease fails verification).
    booted.sh("rm /usr/share/keyrings/datadog-archive-keyring.gpg /var/lib/apt/lists/apt.datadoghq.com_*")
    run = booted.converge(faulty)
    with pytest.raises(AssertionError, match="converge exited 1"):
        booted.assert_converged(faulty, run)
    assert booted.package("datadog-agent")[0] == "1:7.77.2-1"  # never upgraded
    log = booted.machine.path("/var/log/observability-lab-converge.log").read_text()
    assert "NO_PUBKEY" in log, log[-2000:]  # apt could not read the key that signs the repository


def test_an_agent_that_is_not_running_fails_the_layer_with_its_exit_status_and_journal(host, dev_document):
    # An empty failure says nothing (one run of the layer failed on `datadog-agent status`
    # with no output): the verdict names the exit status and shows the unit's journal.
    booted = host()
    booted.machine.ok(["systemctl", "stop", "datadog-agent"])
    with pytest.raises(AssertionError, match=r"datadog-agent status exited 1: Error: could not reach agent") as failure:
        booted.assert_agent_running(dev_document)
    assert "stand-in Agent 7.77.2 running" in str(failure.value)  # the unit's journal, its start included
    assert "inactive (dead)" in str(failure.value)  # and what systemd says of it
