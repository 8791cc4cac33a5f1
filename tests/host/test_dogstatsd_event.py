"""converge.sh's DogStatsD event encoder (`dogstatsd_event`), byte for byte against Datadog's
own client (the `datadog` package's `DogStatsd.event`), both received by a UDP listener."""
from __future__ import annotations

import os
import subprocess

import pytest
from datadog.dogstatsd.base import DogStatsd

from tests.support import CONVERGE
from tests.support.dogstatsd_events import Listener, parse_event

HOST = "observability-lab-dev-1"
# The sender has finished when we read: its datagram is queued (or on its way on
# loopback, hence the long bound); a second one would have followed it within
# microseconds, so a tenth of a second still catches it.
ONE_DATAGRAM = {"first": 5.0, "wait": 0.1}


@pytest.fixture
def listener():
    udp = Listener()
    yield udp
    udp.close()


def shell_event(listener: Listener, alert_type: str, title: str, text: str, *tags: str) -> bytes:
    subprocess.run(["bash", "-c", '. "$1"; shift; dogstatsd_event "$@"', "_", str(CONVERGE),
                    alert_type, title, text, *tags],
                   env={"PATH": os.environ["PATH"], "CONVERGE_DOGSTATSD": listener.address,
                        "DATADOG_HOSTNAME": HOST}, check=True)
    (datagram,) = listener.received(**ONE_DATAGRAM)
    return datagram


def reference_event(listener: Listener, alert_type: str, title: str, text: str, *tags: str) -> bytes:
    client = DogStatsd(host="127.0.0.1", port=listener.port, disable_telemetry=True,
                       origin_detection_enabled=False, disable_buffering=True)
    client.event(title, text, alert_type=alert_type, tags=list(tags), hostname=HOST)
    client.close_socket()
    (datagram,) = listener.received(**ONE_DATAGRAM)
    return datagram


@pytest.mark.parametrize("alert_type,title,text,tags", [
    ("info", "Converge on observability-lab-dev-1: restarted flask-app",
     "file /opt/sample-flask-app/app.py: updated\nservice flask-app.service: restarted\nbundle 0123abcd",
     ("env:dev", "service:sample-flask-app", "host:observability-lab-dev-1", "source:observability-lab")),
    ("error", "Converge FAILED on observability-lab-dev-1: datadog-agent",
     "FAILED: datadog-agent rejected its new files | see the log", ("env:prod",)),
    ("success", "Unicode: déploiement réussi ✓", "texte: 日本語\nsecond line", ()),
    ("info", "tags", "made valid", ("team:sre ops", "path:/a/b.c", "odd,comma|pipe", "version:1.2-3_x")),
])
def test_the_datagram_is_the_reference_encoders(listener, alert_type, title, text, tags):
    ours = shell_event(listener, alert_type, title, text, *tags)
    assert ours == reference_event(listener, alert_type, title, text, *tags)
    event = parse_event(ours)  # and well formed by the Agent's reading
    assert (event.title, event.text, event.hostname, event.alert_type) == (title, text, HOST, alert_type)


def test_a_text_beyond_datadogs_limit_is_cut_with_consistent_lengths(listener):
    text = "file /etc/x: updated\n" * 400  # 8400 characters
    event = parse_event(shell_event(listener, "info", "long", text))
    assert len(event.text) <= 4000 and event.text.endswith("\n(truncated)")
    assert text.startswith(event.text[: -len("\n(truncated)")])


def test_an_agent_that_is_not_listening_does_not_fail_the_caller(listener):
    port = listener.port
    listener.close()  # nothing listens there any more: the datagram is lost, quietly
    result = subprocess.run(["bash", "-c", 'set -euo pipefail; . "$1"; dogstatsd_event info t x env:dev; echo sent',
                             "_", str(CONVERGE)],
                            env={"PATH": os.environ["PATH"], "CONVERGE_DOGSTATSD": f"127.0.0.1:{port}",
                                 "DATADOG_HOSTNAME": HOST}, capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "sent\n", "")
