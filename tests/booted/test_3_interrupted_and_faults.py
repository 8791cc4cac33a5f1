"""The faults found on the booted stand-in, kept as scenarios: converge killed at chosen points
(dpkg configuring, a venv half made, a check being validated, the wait for a new Agent config),
a full disk under /etc/datadog-agent, a damaged bundle directory, an app that never answers.
Each time the next run (or the run itself) must leave the host as the document says.
"""

import re

from tests.booted.documents import render
from tests.booted.host import KillPoint, assert_succeeded
from tests.booted.test_2_day_two import BROKEN, MY_METRIC_CONF

VENV = "/opt/sample-flask-app/venv"


def test_a_run_killed_while_dpkg_configures_is_finished_by_the_next(host):
    # The Agent's upgrade is the cheapest install to interrupt: dpkg's state afterwards
    # (unpacked, not configured) is the one a first converge killed in mariadb's leaves.
    newer = render(agentVersion="7.78.0")
    booted = host()
    killed = booted.converge(newer, kill=KillPoint("dpkg", "--configure"))
    assert killed.returncode != 0
    assert booted.machine.ok(["dpkg", "--audit"]).strip(), (
        f"dpkg was not left interrupted; the killed run:\n{killed.stdout[-3000:]}\n{killed.stderr[-2000:]}")
    again = booted.converge(newer)
    booted.assert_converged(newer, again)
    assert booted.machine.ok(["dpkg", "--audit"]).strip() == ""


def test_a_run_killed_while_the_venv_is_made_is_finished_by_the_next(host):
    changed = render(appWorkers=3)
    booted = host()
    booted.sh(f"rm -rf {VENV}")  # e.g. a host converged before the venv marker existed
    killed = booted.converge(changed, kill=KillPoint("python3", "-m venv", once_exists=f"{VENV}/bin/python"))
    assert killed.returncode != 0
    assert booted.machine.path(f"{VENV}/bin/python").is_symlink()  # half made
    again = booted.converge(changed)
    booted.assert_converged(changed, again)


def test_a_run_killed_while_a_broken_check_is_validated_is_rolled_back_by_the_next(host, dev_document):
    (path, content), = BROKEN["a check whose code fails"].items()
    changed = dev_document.changed({path: content})
    booted = host()
    target = "/etc/datadog-agent/checks.d/custom_my_metric.py"
    before = booted.machine.path(target).read_text()
    killed = booted.converge(changed, kill=KillPoint("datadog-agent", "check custom_my_metric"))
    assert killed.returncode != 0 and booted.machine.path(target).read_text() == content
    again = booted.converge(changed)
    assert again.returncode != 0
    assert "FAILED: datadog-agent rejected its new files" in again.stdout, again.stdout[-1500:]
    assert booted.machine.path(target).read_text() == before
    booted.assert_host_state(dev_document)


def test_a_run_killed_while_waiting_for_a_bad_agent_config_is_rolled_back_by_the_next(host, dev_document):
    # An Agent that cannot start on its new datadog.yaml (no API key): `status` never answers.
    bad = re.sub(r"(?m)^api_key: .*$", 'api_key: ""', dev_document.files["agent/datadog.yaml"])
    assert 'api_key: ""' in bad
    changed = dev_document.changed({"agent/datadog.yaml": bad})
    booted = host()
    before = booted.machine.path("/etc/datadog-agent/datadog.yaml").read_text()
    killed = booted.converge(changed, kill=KillPoint("datadog-agent", "status"))
    assert killed.returncode != 0 and "service datadog-agent:" not in killed.stdout  # died waiting
    assert booted.machine.run(["datadog-agent", "status"]).returncode != 0  # no Agent on the bad file
    # The unit's Restart=on-failure loops it into its start limit (5 starts in 10 s, "Start
    # request repeated too quickly"), and systemd gives up on it (failed, no restart pending):
    # it then refuses every start for 10 s, the restore's too, unless converge resets the count.
    looped = booted.sh("""for _ in $(seq 50); do
  [ "$(systemctl show -p ActiveState --value datadog-agent)" = failed ] && exit 0; sleep 0.2
done; systemctl status datadog-agent; exit 1""")
    assert looped.returncode == 0, looped.stdout
    again = booted.converge(changed)
    assert again.returncode != 0
    assert "FAILED: datadog-agent rejected its new files" in again.stdout, again.stdout[-1500:]
    assert booted.machine.path("/etc/datadog-agent/datadog.yaml").read_text() == before
    booted.assert_host_state(dev_document)  # the message is true: it runs on the previous files


def test_a_full_disk_under_the_agents_config_fails_the_run_and_leaves_nothing_half_written(host, dev_document):
    changed = render(checkIntervalSeconds=30)
    booted = host()
    before = booted.machine.path(MY_METRIC_CONF).read_text()
    fill = booted.sh("""set -e
gid=$(getent group dd-agent | cut -d: -f3)
cp -a /etc/datadog-agent /var/tmp/agent-config
mount -t tmpfs -o size=256k,mode=0755,uid=0,gid=$gid full /etc/datadog-agent
cp -a /var/tmp/agent-config/. /etc/datadog-agent/
dd if=/dev/zero of=/etc/datadog-agent/.filler bs=4k 2>/dev/null || true
""")
    assert fill.returncode == 0, fill.stdout + fill.stderr
    run = booted.converge(changed)
    assert run.returncode != 0
    assert run.stdout.splitlines()[-1].startswith("FAILED:") and MY_METRIC_CONF in run.stdout.splitlines()[-1], \
        run.stdout[-1000:]
    assert f"file {MY_METRIC_CONF}: updated" not in run.stdout  # reported only once written
    leftovers = booted.machine.ok(["find", "/etc/datadog-agent", "-name", "*.converge-new"])
    assert leftovers == "", leftovers
    assert booted.machine.path(MY_METRIC_CONF).read_text() == before
    booted.assert_agent_running(dev_document)


def test_a_damaged_bundle_directory_is_unpacked_again(host, dev_document):
    booted = host()
    damaged = booted.machine.path(f"/opt/observability-lab/bundles/{dev_document.digest}/agent/conf.d/"
                                  "custom_my_metric.yaml")
    damaged.write_text(damaged.read_text() + "# edited on the host\n")
    run = booted.converge(dev_document)
    booted.assert_converged(dev_document, run)  # the files on the host are the bundle's
    assert "# edited on the host" not in damaged.read_text()


HANGING_APP = '''import time

from flask import Flask

app = Flask(__name__)


@app.route("/")
def never_answers():  # accepts the connection, answers too late: the fault under test
    time.sleep(3600)
'''


def test_an_app_that_never_answers_is_waited_for_a_bounded_time_then_rolled_back(host, dev_document):
    changed = dev_document.changed({"app/app.py": HANGING_APP})
    booted = host()
    run = booted.converge(changed)
    assert run.returncode != 0
    assert "FAILED: flask-app rejected its new files" in run.stdout, run.stdout[-1500:]
    assert "does not answer" in run.stderr, run.stderr[-1500:]
    log = booted.machine.path("/var/log/observability-lab-converge.log").read_text()
    tries = log[log.rindex("== converge "):].count("curl: (")
    # One wait of 30 s in all: curl's 2 s per try fit about 10 times, with the rollback's own
    # few (the wait that bounded each try instead made 30 tries of up to 2 s, 90 s).
    assert 0 < tries < 30, tries
    booted.assert_host_state(dev_document)  # the previous app.py is back and answers
