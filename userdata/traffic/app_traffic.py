"""A bounded load on the sample app, from the host itself (app-traffic.service).

So that its graphs, SLOs and monitors measure something: a steady rate of requests
(TRAFFIC_REQUESTS_PER_SECOND) over a fixed mix of endpoints: the static routes, some
`/url_lookup` calls to the app's allowlist (TRAFFIC_URL_LOOKUP_PERCENT) and some `/api/fail`
calls that fail on purpose (TRAFFIC_FAIL_PERCENT), which the error SLO counts.

Never more than the rate: one request at a time, each started at least 1/rate seconds after
the one before; a slow answer delays the next request, it never causes a burst to catch up.
The mix is exact, not random: a smooth weighted round robin, so over any run each endpoint
is within one request of its share. SIGTERM (systemctl stop) ends it at once.
Python's standard library only: it runs on the host's own python3.
"""
import itertools
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

STATIC_ROUTES = ("/", "/api/apm", "/api/trace")
FAIL_ROUTE = "/api/fail"
USER_AGENT = "observability-lab-traffic"
REQUEST_TIMEOUT_S = 15  # above the app's own worst /url_lookup (0.75 s overhead + 3 s connect + 5 s read)
REPORT_EVERY_S = 60


class Config:
    def __init__(self, env):
        self.target = env["TRAFFIC_TARGET"].rstrip("/")
        self.rate = float(env["TRAFFIC_REQUESTS_PER_SECOND"])
        self.url_lookup_percent = float(env["TRAFFIC_URL_LOOKUP_PERCENT"])
        self.fail_percent = float(env["TRAFFIC_FAIL_PERCENT"])
        self.url_lookup_hosts = [h for h in env.get("TRAFFIC_URL_LOOKUP_HOSTS", "").split(",") if h]
        if not 0 < self.rate <= 50:
            raise ValueError(f"TRAFFIC_REQUESTS_PER_SECOND={self.rate:g} must be above 0 and at most 50")
        if self.url_lookup_percent < 0 or self.fail_percent < 0 or self.url_lookup_percent + self.fail_percent > 100:
            raise ValueError("TRAFFIC_URL_LOOKUP_PERCENT and TRAFFIC_FAIL_PERCENT must be >= 0, at most 100 together")
        if self.url_lookup_percent and not self.url_lookup_hosts:
            raise ValueError("TRAFFIC_URL_LOOKUP_HOSTS must name the allowlist when TRAFFIC_URL_LOOKUP_PERCENT > 0")


def weights(config):
    """Endpoint kind -> share of the requests, in percent."""
    static = (100 - config.url_lookup_percent - config.fail_percent) / len(STATIC_ROUTES)
    shares = {route: static for route in STATIC_ROUTES}
    shares.update({"/url_lookup": config.url_lookup_percent, FAIL_ROUTE: config.fail_percent})
    return {kind: share for kind, share in shares.items() if share > 0}


def endpoints(config):
    """The request paths, forever, in the configured mix (smooth weighted round robin)."""
    shares = weights(config)
    total = sum(shares.values())
    credit = dict.fromkeys(shares, 0.0)
    hosts = itertools.cycle(config.url_lookup_hosts or [""])
    while True:
        for kind, share in shares.items():
            credit[kind] += share
        kind = max(credit, key=credit.get)
        credit[kind] -= total
        if kind == "/url_lookup":
            yield "/url_lookup?" + urllib.parse.urlencode({"url-name": next(hosts)})
        else:
            yield kind


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the app is local: no proxy


def send(url):
    """One GET; -> its HTTP status, or 0 when the app did not answer."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with OPENER.open(request, timeout=REQUEST_TIMEOUT_S) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return 0


def run(config, stop, send=send, clock=time.monotonic):
    """Send the mix at the rate until `stop` is set; -> {status: count}."""
    interval = 1.0 / config.rate
    statuses, reported = {}, clock()
    next_at = clock()
    for path in endpoints(config):
        while (wait := next_at - clock()) > 0:
            if stop.wait(wait):
                return statuses
        if stop.is_set():
            return statuses
        started = clock()
        status = send(config.target + path)
        statuses[status] = statuses.get(status, 0) + 1
        next_at = started + interval  # from this start: a late one never makes the next early
        if started - reported >= REPORT_EVERY_S:
            print(json.dumps({"message": "traffic sent", "statuses": statuses}), flush=True)
            reported = started
    return statuses


def main():
    try:
        config = Config(os.environ)
    except (KeyError, ValueError) as error:
        print(f"app-traffic: bad configuration: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"message": "traffic started", "target": config.target, "rate": config.rate,
                      "mix": weights(config)}), flush=True)
    statuses = run(config, stop)
    print(json.dumps({"message": "traffic stopped", "statuses": statuses}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
