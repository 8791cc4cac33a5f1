"""The traffic generator (userdata/traffic/app_traffic.py), run as the host runs it: its own
process, configured by environment, against a local app that records every request it gets
and when; then stopped with SIGTERM, as `systemctl stop` does."""
from __future__ import annotations

import collections
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from tests.support import USERDATA
from tests.support.local_processes import wait_until

SCRIPT = USERDATA / "traffic" / "app_traffic.py"
# The fastest rate appTrafficRequestsPerSecond allows: its spacing the tightest to keep, and
# the 100 requests the mix is counted over come in 2 s.
RATE = 50.0
MIX = {"TRAFFIC_URL_LOOKUP_PERCENT": "20", "TRAFFIC_FAIL_PERCENT": "10"}
ALLOWLIST = ("example.com", "docs.datadoghq.com")


class RecordingApp(http.server.ThreadingHTTPServer):
    """Answers like the sample app (500 on /api/fail) and records (arrival, path) per request."""

    def __init__(self):
        self.requests: list[tuple[float, str, str]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    stall_request = -1  # the index of a request answered half a second late

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append((time.monotonic(), self.path, self.headers.get("User-Agent", "")))
        if len(self.server.requests) - 1 == self.stall_request:
            time.sleep(0.5)  # 25 request slots at 50/s
        status = 500 if self.path == "/api/fail" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def app():
    server = RecordingApp()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def start_generator(app, **overrides):
    env = {"PATH": os.environ["PATH"], "TRAFFIC_TARGET": f"http://127.0.0.1:{app.server_address[1]}",
           "TRAFFIC_REQUESTS_PER_SECOND": str(RATE), "TRAFFIC_URL_LOOKUP_HOSTS": ",".join(ALLOWLIST),
           **MIX, **overrides}
    return subprocess.Popen([sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_within_rate(arrivals: list[float]) -> None:
    """Never faster than the rate: each request starts at least 1/RATE after the one before,
    so any window of the run holds at most RATE x its length + 1 requests."""
    for window in (0.2, 1.0):
        most = max(sum(1 for t in arrivals if start <= t < start + window) for start in arrivals)
        assert most <= RATE * window + 1, (window, most)


def kind(path: str) -> str:
    return urllib.parse.urlsplit(path).path


def test_stays_within_its_rate_and_mix_and_stops_when_told(app):
    generator = start_generator(app)
    wait_until(lambda: len(app.requests) >= 100, 30, "100 requests")
    generator.send_signal(signal.SIGTERM)
    out, err = generator.communicate(timeout=10)
    assert generator.returncode == 0, err
    stopped = len(app.requests)
    time.sleep(3 / RATE)
    assert len(app.requests) == stopped, "requests after the generator stopped"
    assert '"traffic stopped"' in out

    assert_within_rate([at for at, _, _ in app.requests])

    counts = collections.Counter(kind(path) for _, path, _ in app.requests)
    total = len(app.requests)
    shares = {"/url_lookup": 20, "/api/fail": 10, "/": 70 / 3, "/api/apm": 70 / 3, "/api/trace": 70 / 3}
    assert set(counts) == set(shares)
    for endpoint, percent in shares.items():  # exact mix: within one request of each share
        assert abs(counts[endpoint] - total * percent / 100) <= 1, (endpoint, counts, total)
    # The lookups go to the app's allowlist, in turn; every request says who sent it.
    lookups = [urllib.parse.parse_qs(urllib.parse.urlsplit(p).query)["url-name"][0]
               for _, p, _ in app.requests if kind(p) == "/url_lookup"]
    assert set(lookups) == set(ALLOWLIST) and abs(lookups.count(ALLOWLIST[0]) - lookups.count(ALLOWLIST[1])) <= 1
    assert {agent for _, _, agent in app.requests} == {"observability-lab-traffic"}


def test_a_slow_app_gets_no_burst_afterwards(app):
    """A stalled answer delays the requests; it never makes the generator catch up."""
    _Handler.stall_request = 3
    try:
        generator = start_generator(app)
        wait_until(lambda: len(app.requests) >= 20, 30, "20 requests")
        generator.send_signal(signal.SIGTERM)
        generator.communicate(timeout=10)
    finally:
        _Handler.stall_request = -1
    times = [at for at, _, _ in app.requests]
    assert times[4] - times[3] >= 0.5  # the stall delayed the next request...
    assert_within_rate(times)  # ...and none came early afterwards


@pytest.mark.parametrize("overrides,message", [
    ({"TRAFFIC_REQUESTS_PER_SECOND": "0"}, "must be above 0"),
    ({"TRAFFIC_REQUESTS_PER_SECOND": "51"}, "at most 50"),
    ({"TRAFFIC_FAIL_PERCENT": "90"}, "at most 100 together"),
    ({"TRAFFIC_URL_LOOKUP_HOSTS": ""}, "must name the allowlist"),
])
def test_refuses_a_configuration_beyond_its_bounds(app, overrides, message):
    generator = start_generator(app, **overrides)
    _, err = generator.communicate(timeout=10)
    assert generator.returncode == 2 and message in err
    assert app.requests == []
