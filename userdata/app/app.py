"""Sample Flask app traced by Datadog APM.

Run as ``ddtrace-run gunicorn ... app:app`` with DD_SERVICE/DD_ENV/DD_VERSION set:
ddtrace-run instruments Flask and applies unified service tagging, so this module must
not call patch_all(), import ddtrace.auto or name a service (plain import enables nothing).
"""
import ipaddress
import logging
import os
import random
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from ddtrace.trace import tracer  # ddtrace >= 3 home of the global tracer
from flask import Flask, Response, g, request


class ConfigError(ValueError):
    """Bad environment configuration: raised at import, so gunicorn fails at startup."""


@dataclass(frozen=True)
class Config:
    allowlist: frozenset
    setup_min_ms: int
    setup_max_ms: int
    connect_timeout_s: float
    read_timeout_s: float
    max_bytes: int


def _num(env, name, default, kind, minimum):
    raw = env.get(name, "").strip() or str(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not minimum <= value < float("inf"):  # also rejects nan
        raise ConfigError(f"{name}={raw!r} must be a finite number >= {minimum}")
    return value


def load_config(env=os.environ):
    allow = env.get("URL_LOOKUP_ALLOWLIST", "www.datadoghq.com,docs.datadoghq.com,example.com")
    cfg = Config(
        allowlist=frozenset(h.strip().lower() for h in allow.split(",") if h.strip()),
        setup_min_ms=_num(env, "SETUP_OVERHEAD_MIN_MS", 250, int, 0),
        setup_max_ms=_num(env, "SETUP_OVERHEAD_MAX_MS", 750, int, 0),
        connect_timeout_s=_num(env, "URL_LOOKUP_CONNECT_TIMEOUT_S", 3, float, 0.001),
        read_timeout_s=_num(env, "URL_LOOKUP_READ_TIMEOUT_S", 5, float, 0.001),
        max_bytes=_num(env, "URL_LOOKUP_MAX_BYTES", 1_000_000, int, 1),
    )
    if cfg.setup_min_ms > cfg.setup_max_ms:
        raise ConfigError("SETUP_OVERHEAD_MIN_MS must be <= SETUP_OVERHEAD_MAX_MS")
    if not cfg.allowlist:
        raise ConfigError("URL_LOOKUP_ALLOWLIST must name at least one host")
    return cfg


CONFIG = load_config()
# Only the scheme's own default port is accepted (http:80, https:443): anything else
# would let callers probe arbitrary services on allowlisted hosts.
DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\d)")  # "file:", not "host:80"


class Refused(ValueError):
    """The requested URL violates the lookup policy (-> HTTP 400)."""


class UpstreamError(Exception):
    """The upstream fetch failed or misbehaved (-> HTTP 502)."""


def parse_target(raw, allowlist):
    """-> (scheme, host, port, path) for 'host', 'host/path' (http, like the original
    app) or an http(s) URL; raises Refused. Makes no DNS lookup or connection."""
    if not raw:
        raise Refused("missing 'url-name' parameter")
    if any(not ("!" <= c <= "~") for c in raw) or "\\" in raw:
        raise Refused("url-name must be printable ASCII without spaces or backslashes")
    if "://" not in raw:
        if _SCHEME_LIKE.match(raw):
            raise Refused("only http and https URLs are allowed")
        raw = "http://" + raw
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise Refused(f"scheme {scheme!r} is not allowed; use http or https")
    if "@" in parts.netloc:
        raise Refused("credentials (user@host) are not allowed in the URL")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise Refused("invalid port") from None
    if port != DEFAULT_PORTS[scheme]:
        raise Refused(f"port {port} is not allowed for {scheme} (only {DEFAULT_PORTS[scheme]})")
    host = (parts.hostname or "").lower()
    if not host:
        raise Refused("URL has no host name")
    if _is_ip(host):  # the allowlist would refuse it too; this just says why
        raise Refused("IP address literals are not allowed; use an allowlisted host name")
    if host not in allowlist:
        raise Refused(f"host {host!r} is not in the allowlist")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, path


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_public_ip(addr):
    ip = ipaddress.ip_address(addr)
    if ip.version == 6 and ip.ipv4_mapped:  # ::ffff:10.0.0.1 must be judged as IPv4
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local
                                 or ip.is_loopback or ip.is_private or ip.is_unspecified)


def resolve(host, port):
    """All addresses the name resolves to (the route vets every one of them)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0].split("%")[0] for info in infos))


def fetch(ip, host, port, scheme, path):
    """GET path from the already-vetted ip (no re-resolution, defeats DNS rebinding).

    The whole fetch, headers and body, ends within connect + read timeout. The read timeout
    alone is per socket read, so a server dripping a body (with a Content-Length or without)
    would outlive it: at the deadline a timer shuts the socket down, which ends any read.
    """
    budget = CONFIG.connect_timeout_s + CONFIG.read_timeout_s
    deadline = time.monotonic() + budget
    timeout = urllib3.Timeout(connect=CONFIG.connect_timeout_s, read=CONFIG.read_timeout_s, total=budget)
    if scheme == "https":  # SNI and certificate checks use the name, the socket uses ip
        pool = urllib3.HTTPSConnectionPool(ip, port, timeout=timeout, maxsize=1, retries=False,
                                           server_hostname=host, assert_hostname=host,
                                           cert_reqs="CERT_REQUIRED")
    else:
        pool = urllib3.HTTPConnectionPool(ip, port, timeout=timeout, maxsize=1, retries=False)
    too_slow = UpstreamError(f"response from {host} took longer than {budget:g}s")
    with pool:
        try:
            resp = pool.urlopen("GET", path, redirect=False, preload_content=False,
                                # identity: the size cap must apply to what we receive
                                headers={"Host": host, "Accept-Encoding": "identity"})
        except urllib3.exceptions.HTTPError as exc:
            raise (too_slow if time.monotonic() >= deadline else
                   UpstreamError(f"could not fetch from {host}: {type(exc).__name__}")) from None
        cut = threading.Event()

        def cut_off():
            cut.set()
            try:
                resp.shutdown()
            except (ValueError, RuntimeError, OSError):  # already closed
                pass

        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), cut_off)
        watchdog.daemon = True
        watchdog.start()
        try:
            if not 200 <= resp.status < 300:  # incl. 3xx: redirects are never followed
                where = resp.headers.get("Location", "")
                raise UpstreamError(f"{host} answered HTTP {resp.status} {where}".rstrip())
            # Over the cap -> 502 rather than a silently truncated page.
            body = bytearray()
            for chunk in resp.stream(64 * 1024, decode_content=False):
                body += chunk
                if len(body) > CONFIG.max_bytes:
                    raise UpstreamError(f"response from {host} exceeds {CONFIG.max_bytes} bytes")
            if cut.is_set():  # a body without a length ends at the cut: not a whole page
                raise too_slow
            return bytes(body)
        except urllib3.exceptions.HTTPError as exc:
            raise (too_slow if cut.is_set() else
                   UpstreamError(f"error reading from {host}: {type(exc).__name__}")) from None
        finally:
            watchdog.cancel()
            resp.close()  # never hand a half-read connection back; the pool is closed anyway


app = Flask(__name__)
# One JSON line per request (gunicorn's access log is off: it is written after the request's
# span has ended, so it could not carry the trace id). log_format.py formats it.
REQUEST_LOG = logging.getLogger("sample_flask_app.request")


class DeliberateFailure(RuntimeError):
    """Raised by /api/fail: a server error on purpose, for the error SLO to count."""


@app.before_request
def start_clock():
    g.started_ns = time.perf_counter_ns()


@app.after_request
def log_request(response):
    # Still inside the request's span (after_request runs for a 500 too), so the
    # line carries its trace and span ids.
    duration = time.perf_counter_ns() - g.get("started_ns", time.perf_counter_ns())
    level = logging.ERROR if response.status_code >= 500 else logging.INFO
    REQUEST_LOG.log(level, "%s %s %s", request.method, request.path, response.status_code,
                    extra={"duration": duration,
                           "http": {"method": request.method, "status_code": response.status_code,
                                    "url_details": {"path": request.path},
                                    "useragent": request.headers.get("User-Agent", "")}})
    return response


@app.route("/")
def entrypoint():
    return "Entrypoint to the Application"


@app.route("/api/apm")
def apm_endpoint():
    return "Getting APM Started"


@app.route("/api/trace")
def trace_endpoint():
    return "Posting Traces"


@app.route("/api/fail")
def fail_endpoint():
    # The traffic generator's deliberate failures: a 500 that ddtrace marks as an error
    # (trace.flask.request.errors), logged with its traceback by Flask.
    raise DeliberateFailure("failed on purpose (the traffic generator's error share)")


def _text(msg, status):
    return Response(msg + "\n", status=status, mimetype="text/plain")


@app.route("/url_lookup")
def url_lookup():
    raw = request.args.get("url-name", "").strip()
    try:
        scheme, host, port, path = parse_target(raw, CONFIG.allowlist)
    except Refused as exc:
        return _text(f"refused: {exc}", 400)

    with tracer.trace("setup_overhead"):  # artificial latency so the demo trace has shape
        time.sleep(random.randint(CONFIG.setup_min_ms, CONFIG.setup_max_ms) / 1000.0)

    with tracer.trace("call_url") as span:
        span.set_tag("url-name", raw)
        try:
            addrs = resolve(host, port)
        except OSError as exc:
            return _text(f"upstream error: cannot resolve {host}: {exc}", 502)
        bad = [a for a in addrs if not is_public_ip(a)]
        if bad or not addrs:  # one private answer is enough to refuse (DNS rebinding/pinning tricks)
            span.set_tag("url_lookup.refused", "non-public address")
            return _text(f"refused: {host} resolves to non-public address(es) {bad}", 400)
        span.set_tag("network.destination.ip", addrs[0])
        try:
            body = fetch(addrs[0], host, port, scheme, path)
        except UpstreamError as exc:
            span.set_tag("url_lookup.upstream_error", str(exc))
            return _text(f"upstream error: {exc}", 502)
    # Someone else's content: plain text, never HTML or script running from this origin.
    return Response(body, status=200, mimetype="text/plain", headers={"X-Content-Type-Options": "nosniff"})
