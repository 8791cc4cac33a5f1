"""Issue 20 on the booted host: the app's JSON log lines in the journal under the unit the Agent's
logs config names, readable by dd-agent; MySQL's log directory readable by dd-agent alone of the
non-root users, a rotated file too; and the DogStatsD event a changing converge sends to loopback.
"""

from __future__ import annotations

import json
import time
import urllib.request

import yaml

from tests.booted.documents import render
from tests.support.dogstatsd_events import parse_event
from tests.support.local_processes import wait_until
from tests.support.traces import logged_trace_id

APP_PORT = 5050
LOGS_CONF = "/etc/datadog-agent/conf.d/flask_app.d/conf.yaml"
MYSQL_LOG_DIR = "/var/log/mysql"


def journal_as_dd_agent(booted, unit: str) -> list[dict]:
    """The unit's journal entries, read as the Agent's user reads them (its journald tailer)."""
    result = booted.sh(f"runuser -u dd-agent -- journalctl --no-pager -o json _SYSTEMD_UNIT={unit}\n")
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_the_apps_json_lines_are_in_the_journal_under_the_unit_the_agent_reads(host):
    booted = host()
    (source,) = yaml.safe_load(booted.machine.path(LOGS_CONF).read_text())["logs"]
    assert (source["type"], source["source"], source["service"]) == ("journald", "python", "sample-flask-app")
    (unit,) = source["include_units"]
    urllib.request.urlopen(urllib.request.Request(f"{booted.trace_intake}/test/session/clear"), timeout=10)
    booted.wait_for_listener(APP_PORT)  # just booted: gunicorn may not listen yet
    status, _ = booted.http_get(APP_PORT, "/api/fail")
    assert status == 500

    def failure_lines():
        entries = journal_as_dd_agent(booted, unit)
        return [(entry, json.loads(entry["MESSAGE"])) for entry in entries
                if isinstance(entry.get("MESSAGE"), str) and entry["MESSAGE"].startswith("{")
                and json.loads(entry["MESSAGE"]).get("http", {}).get("url_details", {}).get("path") == "/api/fail"]

    entry, line = wait_until(failure_lines, 30, f"a /api/fail line of {unit} in the journal", interval=0.5)[-1]
    # journald took the line's <3> prefix as its priority: the Agent's status for the entry.
    assert entry["PRIORITY"] == "3" and entry["_SYSTEMD_UNIT"] == unit
    assert line["status"] == "error"
    assert {key: line["dd"][key] for key in ("service", "env")} == {"service": "sample-flask-app", "env": "dev"}
    # The trace the intake received for that request carries the same id: Datadog joins them.
    def the_logged_trace_arrived() -> bool:
        with urllib.request.urlopen(f"{booted.trace_intake}/test/traces", timeout=10) as response:
            roots = [span for trace in json.loads(response.read()) for span in trace
                     if span.get("name") == "flask.request" and span.get("meta", {}).get("http.status_code") == "500"]
        return any(logged_trace_id(root) == line["dd"]["trace_id"] for root in roots)

    wait_until(the_logged_trace_arrived, 30, f"trace {line['dd']['trace_id']} at the intake", interval=0.5)


def test_dd_agent_reads_mysqls_log_directory_and_the_file_a_rotation_makes(host, dev_document):
    booted = host()
    # The booted host's MariaDB logs to the journal and leaves no /var/log/mysql: make it as Ubuntu's
    # mysql-server-8.0 does (mysql:adm 2750, error.log mysql:adm 0640), then converge as on EC2.
    made = booted.sh(f"""set -e
install -d -o mysql -g adm -m 2750 {MYSQL_LOG_DIR}
install -o mysql -g adm -m 0640 /dev/null {MYSQL_LOG_DIR}/error.log
""")
    assert made.returncode == 0, made.stderr
    run = booted.converge(dev_document)
    assert run.returncode == 0, run.stdout
    assert f"directory {MYSQL_LOG_DIR}: readable by dd-agent" in run.stdout.splitlines()
    result = booted.sh(f"""set -e
getfacl -p {MYSQL_LOG_DIR}
# What logrotate's `create 640 mysql adm` leaves: a new file, not world-readable.
runuser -u mysql -- sh -c 'umask 027; echo rotated > {MYSQL_LOG_DIR}/error.log.1'
runuser -u dd-agent -- cat {MYSQL_LOG_DIR}/error.log.1
if runuser -u nobody -- cat {MYSQL_LOG_DIR}/error.log.1 2>/dev/null; then echo NOBODY-READ; fi
if runuser -u dd-agent -- cat /var/log/observability-lab-converge.log >/dev/null 2>&1; then echo CONVERGE-LOG-READ; fi
""")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "user:dd-agent:r-x" in result.stdout and "default:user:dd-agent:r--" in result.stdout
    assert "rotated" in result.stdout.splitlines()
    assert "NOBODY-READ" not in result.stdout and "CONVERGE-LOG-READ" not in result.stdout


LISTENER = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 8125))
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        data = s.recv(65535)
        out.write(len(data).to_bytes(4, "big") + data)
"""


def test_a_changing_converge_sends_one_event_to_the_local_dogstatsd(host):
    booted = host()
    booted.machine.write("/var/lib/observability-lab-test/listen.py", LISTENER, mode=0o700)
    started = booted.sh("systemd-run --unit=dogstatsd-listener python3 /var/lib/observability-lab-test/listen.py "
                        "/var/lib/observability-lab-test/datagrams\nsleep 1\n")
    assert started.returncode == 0, started.stderr
    changed = render(checkIntervalSeconds=30)
    run = booted.converge(changed)
    booted.assert_converged(changed, run)
    again = booted.converge(changed)  # nothing to change: no event
    assert again.returncode == 0
    time.sleep(1)
    booted.sh("systemctl stop dogstatsd-listener\n")
    raw = booted.machine.path("/var/lib/observability-lab-test/datagrams").read_bytes()
    datagrams = []
    while raw:
        size, raw = int.from_bytes(raw[:4], "big"), raw[4:]
        datagrams.append(raw[:size])
        raw = raw[size:]
    (event,) = [parse_event(d) for d in datagrams]
    assert event.alert_type == "info"
    assert event.title.endswith("datadog-agent restarted or applied; 1 file changed")
    assert "file /etc/datadog-agent/conf.d/custom_my_metric.yaml: updated" in event.text.splitlines()
    assert {"env:dev", "service:sample-flask-app", "source:observability-lab"} <= set(event.tags)
