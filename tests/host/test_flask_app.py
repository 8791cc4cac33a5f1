"""Tests for userdata/app (sample Flask app traced by Datadog APM).

Two layers, both offline (only 127.0.0.1 is ever contacted):
* in-process unit tests of the /url_lookup policy and of the real fetch(), with app.py
  imported by path and WITHOUT ddtrace.auto (the app must not enable tracing itself);
* end-to-end: ddapm-test-agent + ``ddtrace-run gunicorn --config gunicorn.conf.py`` in
  subprocesses, the app's network access replaced by tests/flask_app_harness.py fakes.
"""
import dataclasses
import http.server
import importlib.util
import itertools
import json
import re
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import BIN, ROOT
from tests.support.local_processes import free_port, kill_group, stop, wait_until
from tests.support.traces import logged_trace_id

APP_DIR = ROOT / "userdata" / "app"
PUBLIC_IP = "93.184.215.14"
ALLOWLIST = "example.com,www.datadoghq.com,internal.example.com,mixed.example.com"
FAKE_DNS = {
    "example.com": [PUBLIC_IP],
    "internal.example.com": ["10.1.2.3"],            # allowlisted name -> private IP
    "mixed.example.com": [PUBLIC_IP, "169.254.169.254"],
}
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy env
WORKERS = 3


# --------------------------------------------------------------------------- helpers
def http_get(url, timeout=5):
    try:
        with LOCAL.open(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def load_app_module():
    spec = importlib.util.spec_from_file_location("sample_flask_app_under_test", APP_DIR / "app.py")
    mod = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in userdata/
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = saved
    return mod


# --------------------------------------------------------------------------- unit tests
@pytest.fixture(scope="module")
def appmod():
    return load_app_module()


def test_importing_app_does_not_enable_tracing(appmod):
    import flask

    assert "ddtrace.auto" not in sys.modules
    assert not getattr(flask, "_datadog_patch", False), "flask was patched by a plain import"
    assert appmod.app.name  # module-level Flask app


@pytest.mark.parametrize("raw,expected", [
    ("example.com", ("http", "example.com", 80, "/")),
    ("Example.COM/a/b?x=1", ("http", "example.com", 80, "/a/b?x=1")),
    ("example.com:80/x", ("http", "example.com", 80, "/x")),
    ("https://docs.datadoghq.com/tracing/", ("https", "docs.datadoghq.com", 443, "/tracing/")),
    ("HTTP://example.com#frag", ("http", "example.com", 80, "/")),
])
def test_policy_accepts(appmod, raw, expected):
    allow = frozenset({"example.com", "docs.datadoghq.com"})
    assert appmod.parse_target(raw, allow) == expected


@pytest.mark.parametrize("raw,why", [
    ("", "missing"),
    ("169.254.169.254", "IP address literals"),
    ("http://169.254.169.254/latest/meta-data/", "IP address literals"),
    ("127.0.0.1", "IP address literals"),
    ("10.0.0.1", "IP address literals"),
    ("http://[::1]/", "IP address literals"),
    ("[::ffff:127.0.0.1]", "IP address literals"),
    ("not-allowed.example.org", "not in the allowlist"),
    ("example.com.evil.test", "not in the allowlist"),
    ("example.com.", "not in the allowlist"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("file:/etc/passwd", "only http and https"),
    ("gopher://example.com", "scheme 'gopher'"),
    ("ftp://example.com/", "scheme 'ftp'"),
    ("http://user@example.com/", "credentials"),
    ("http://example.com@169.254.169.254/", "credentials"),
    ("http://example.com:8080/", "port 8080"),
    ("https://example.com:80/", "port 80"),
    ("http://example.com:99999/", "invalid port"),
    ("http://example.com\\@evil.test/", "printable ASCII"),
    ("http://exa mple.com/", "printable ASCII"),
    ("http://example.com/\r\nX: y", "printable ASCII"),
    ("http:///nohost", "no host"),
])
def test_policy_refuses(appmod, raw, why):
    with pytest.raises(appmod.Refused, match=why):
        appmod.parse_target(raw, frozenset({"example.com"}))


@pytest.mark.parametrize("addr,ok", [
    (PUBLIC_IP, True), ("2606:4700::6810:84e5", True),
    ("10.1.2.3", False), ("172.16.0.1", False), ("192.168.1.1", False),
    ("127.0.0.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("224.0.0.1", False), ("240.0.0.1", False),
    ("::1", False), ("fe80::1", False), ("fd00::1", False), ("::ffff:10.0.0.1", False),
    ("fd00:ec2::254", False),  # IMDS over IPv6
])
def test_public_ip_check(appmod, addr, ok):
    assert appmod.is_public_ip(addr) is ok


def test_config_defaults_and_validation(appmod):
    cfg = appmod.load_config({})
    assert cfg.allowlist == {"www.datadoghq.com", "docs.datadoghq.com", "example.com"}
    assert (cfg.setup_min_ms, cfg.setup_max_ms, cfg.max_bytes) == (250, 750, 1_000_000)
    assert (cfg.connect_timeout_s, cfg.read_timeout_s) == (3.0, 5.0)
    assert appmod.load_config({"URL_LOOKUP_ALLOWLIST": " A.com , b.COM,"}).allowlist == {"a.com", "b.com"}
    for env, msg in [({"URL_LOOKUP_MAX_BYTES": "lots"}, "not a valid int"),
                     ({"URL_LOOKUP_MAX_BYTES": "0"}, ">= 1"),
                     ({"URL_LOOKUP_READ_TIMEOUT_S": "nan"}, "finite"),
                     ({"SETUP_OVERHEAD_MIN_MS": "900"}, "<= SETUP_OVERHEAD_MAX_MS"),
                     ({"URL_LOOKUP_ALLOWLIST": " , "}, "at least one host")]:
        with pytest.raises(appmod.ConfigError, match=msg):
            appmod.load_config(env)


def test_refused_route_makes_no_network_calls(appmod, monkeypatch):
    def boom(*a):
        raise AssertionError(f"network used: {a}")

    monkeypatch.setattr(appmod, "resolve", boom)
    monkeypatch.setattr(appmod, "fetch", boom)
    client = appmod.app.test_client()
    for raw in ["", "169.254.169.254", "not-allowed.example.org", "gopher://example.com"]:
        r = client.get("/url_lookup", query_string={"url-name": raw})
        assert r.status_code == 400 and r.text.startswith("refused:"), (raw, r.text)
    assert client.get("/url_lookup").status_code == 400


class _Upstream(http.server.BaseHTTPRequestHandler):
    seen = []

    drip_done = threading.Event()  # set once /drip has sent its whole body

    def do_GET(self):
        type(self).seen.append((self.path, self.headers.get("Host")))
        if self.path in ("/drip", "/drip-until-close"):  # 1 byte every 50 ms (10 s)
            self.send_response(200)
            if self.path == "/drip":  # an honest Content-Length; else the body ends at close
                self.send_header("Content-Length", "200")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
                type(self).drip_done.set()
            except OSError:  # the client hung up: what the deadline is for
                pass
            return
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")  # same host: the only kind a pool could follow
            body = b""
        else:
            body = b"x" * (5000 if self.path == "/big" else 10)
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture()
def upstream():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    _Upstream.seen = []
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_real_fetch_pins_ip_caps_size_and_ignores_redirects(appmod, upstream, monkeypatch):
    real_gai = socket.getaddrinfo

    def no_dns(host, *a, **kw):  # fetch must connect to the vetted IP, never re-resolve
        assert host == "127.0.0.1", f"fetch resolved {host!r}"
        return real_gai(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(appmod, "CONFIG", dataclasses.replace(appmod.CONFIG, max_bytes=1000))
    assert appmod.fetch("127.0.0.1", "example.com", upstream, "http", "/ok?a=1") == b"x" * 10
    assert _Upstream.seen == [("/ok?a=1", "example.com")]
    with pytest.raises(appmod.UpstreamError, match="exceeds 1000 bytes"):
        appmod.fetch("127.0.0.1", "example.com", upstream, "http", "/big")
    with pytest.raises(appmod.UpstreamError, match="HTTP 302"):
        appmod.fetch("127.0.0.1", "example.com", upstream, "http", "/redirect")
    assert [p for p, _ in _Upstream.seen] == ["/ok?a=1", "/big", "/redirect"]  # not followed
    with pytest.raises(appmod.UpstreamError, match="could not fetch"):
        appmod.fetch("127.0.0.1", "example.com", free_port(), "http", "/")


@pytest.mark.parametrize("path", ["/drip", "/drip-until-close"])
def test_a_dripping_body_ends_at_the_deadline(appmod, upstream, monkeypatch, path):
    # Each byte comes well within the read timeout; the whole body would take 10 s.
    monkeypatch.setattr(appmod, "CONFIG", dataclasses.replace(appmod.CONFIG, connect_timeout_s=0.2,
                                                              read_timeout_s=0.3))
    _Upstream.drip_done.clear()
    with pytest.raises(appmod.UpstreamError, match="took longer than"):
        appmod.fetch("127.0.0.1", "example.com", upstream, "http", path)
    assert not _Upstream.drip_done.is_set(), "fetch waited for the whole dripped body"


def test_real_fetch_https_uses_name_for_sni_and_cert_check(appmod, tmp_path, monkeypatch):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", tmp_path / "k.pem", "-out", tmp_path / "c.pem", "-days", "1",
                    "-subj", "/CN=example.com", "-addext", "subjectAltName=DNS:example.com"],
                   check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "c.pem"))  # trust only this cert
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    sni = []
    ctx.sni_callback = lambda sock, name, c: sni.append(name)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        port = srv.server_address[1]
        assert appmod.fetch("127.0.0.1", "example.com", port, "https", "/ok") == b"x" * 10
        assert sni == ["example.com"]
        with pytest.raises(appmod.UpstreamError, match="SSLError"):  # cert is not for this name
            appmod.fetch("127.0.0.1", "docs.datadoghq.com", port, "https", "/ok")
    finally:
        srv.shutdown()
        srv.server_close()


# --------------------------------------------------------------------------- end-to-end
@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("agent") / "agent.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "ddapm-test-agent"), "--host", "127.0.0.1", "--port", str(port),
         "--otlp-http-port", str(free_port()), "--otlp-grpc-port", str(free_port())],
        stdout=log, stderr=subprocess.STDOUT)
    def up():
        if proc.poll() is not None:
            pytest.fail(f"ddapm-test-agent exited with {proc.returncode}")
        return http_get(f"http://127.0.0.1:{port}/info")[0] == 200

    try:
        wait_until(up, 10, "ddapm-test-agent")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc, signal.SIGKILL)  # a test double with nothing to flush
        log.close()


@pytest.fixture(scope="module")
def server(agent, tmp_path_factory, rendered_bundle):
    tmp = tmp_path_factory.mktemp("app")
    netlog = tmp / "fake_net.log"
    netlog.touch()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "URL_LOOKUP_"))}
    # The unit's environment as the host gets it (app.env), so a setting added there reaches the
    # app here too; then what this test needs instead (loopback, its own workers, agent and DNS).
    env.update(line.split("=", 1) for line in rendered_bundle("dev")["app/app.env"].splitlines()
               if line and not line.startswith("#"))
    env.update({
        "PYTHONPATH": os.pathsep.join([str(APP_DIR), str(ROOT / "tests" / "support")]),
        "APP_HOST": "127.0.0.1", "APP_PORT": str(port), "APP_WORKERS": str(WORKERS),
        "FAKE_NET_LOG": str(netlog), "FAKE_DNS": json.dumps(FAKE_DNS),
        "URL_LOOKUP_ALLOWLIST": ALLOWLIST,
        "SETUP_OVERHEAD_MIN_MS": "1", "SETUP_OVERHEAD_MAX_MS": "5",
        "DD_SERVICE": "sample-flask-app", "DD_ENV": "test", "DD_VERSION": "1.2.3",
        "DD_TRACE_AGENT_URL": agent, "DD_TRACE_WRITER_INTERVAL_SECONDS": "0.2",
        "DD_TRACE_STARTUP_LOGS": "false", "DD_REMOTE_CONFIGURATION_ENABLED": "false",
        "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false", "DD_TRACE_STATS_COMPUTATION_ENABLED": "false",
        "DD_CRASHTRACKING_ENABLED": "false", "DD_PROFILING_ENABLED": "false",
        "DD_CODE_ORIGIN_FOR_SPANS_ENABLED": "false", "DD_DATA_STREAMS_ENABLED": "false",
        "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1", "PYTHONDONTWRITEBYTECODE": "1",
    })
    log = open(tmp / "gunicorn.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "ddtrace-run"), str(BIN / "gunicorn"), "--config", str(APP_DIR / "gunicorn.conf.py"),
         "flask_app_harness:app"],
        cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited:\n{(tmp / 'gunicorn.log').read_text()}")
        return http_get(base + "/")[0] == 200

    try:
        # A bound on start-up only (ddtrace's import): 15 s was exceeded at load 18 on 2 cores.
        wait_until(up, 60, "gunicorn")
        yield base, netlog, tmp / "gunicorn.log", proc.pid
    finally:
        # No test reads the shutdown: killed with its workers at once. (Even gunicorn's quick
        # shutdown, SIGQUIT, took ~1.3 s and ~1.5 CPU-s: each worker tearing down ddtrace.)
        kill_group(proc)
        log.close()


def lookup(base, raw):
    return http_get(f"{base}/url_lookup?" + urllib.parse.urlencode({"url-name": raw}))


def net_calls(netlog):
    return [json.loads(line) for line in netlog.read_text().splitlines()]


def find_trace(agent, pred, timeout=10):
    def poll():
        traces = json.loads(http_get(agent + "/test/traces")[1])
        return next((t for t in traces if pred(t)), None)

    return wait_until(poll, timeout, "trace at the test agent")


def by_name(trace, name):
    return [s for s in trace if s["name"] == name]


def process_tree(root: int) -> dict[int, str]:
    """pid -> command line of `root` and all its descendants, from /proc."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                commands[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # exited meanwhile
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
        tree.update(children)
        frontier = children
    return {pid: commands[pid] for pid in tree if pid in commands}


def test_gunicorn_runs_the_master_plus_the_configured_workers(server):
    """What the app's live process monitor counts: processes matching its search, one
    master (ddtrace-run execs gunicorn, so the started pid is the master) + the workers."""
    from rendering.queries import APP_PROCESS_SEARCH, app_process_count

    expected = app_process_count(WORKERS)
    *_, master = server

    def matching():
        # Only this server's process tree: other gunicorns may run on a shared machine.
        found = [pid for pid, command in process_tree(master).items() if APP_PROCESS_SEARCH in command]
        return found if len(found) == expected else None

    wait_until(matching, 10, f"{expected} gunicorn processes")


def test_static_routes(server):
    base, *_ = server
    assert http_get(base + "/") == (200, b"Entrypoint to the Application")
    assert http_get(base + "/api/apm") == (200, b"Getting APM Started")
    assert http_get(base + "/api/trace") == (200, b"Posting Traces")


def test_url_lookup_trace(server, agent):
    base, netlog, *_ = server
    assert lookup(base, "example.com") == (200, b"<html>fake</html>")
    calls = net_calls(netlog)
    assert {"fn": "fetch", "args": [PUBLIC_IP, "example.com", 80, "http", "/"]} in calls

    trace = find_trace(agent, lambda t: any(s["meta"].get("url-name") == "example.com"
                                            for s in by_name(t, "call_url")))
    (root,) = by_name(trace, "flask.request")
    assert root["service"] == "sample-flask-app"
    assert root["meta"]["env"] == "test" and root["meta"]["version"] == "1.2.3"
    assert root["meta"]["http.status_code"] == "200"
    assert root["resource"] == "GET /url_lookup"
    (setup,) = by_name(trace, "setup_overhead")
    (call,) = by_name(trace, "call_url")
    assert {s["trace_id"] for s in trace} == {root["trace_id"]}
    assert call["service"] == setup["service"] == "sample-flask-app"
    assert call["meta"]["network.destination.ip"] == PUBLIC_IP


def test_upstream_content_is_served_as_plain_text(server):
    # The fake upstream answers HTML; served as text/html from the app's own origin, its
    # scripts would run there. Plain text, and no sniffing it back into HTML.
    base, *_ = server
    with LOCAL.open(f"{base}/url_lookup?url-name=example.com", timeout=5) as r:
        assert r.read() == b"<html>fake</html>"
        assert r.headers.get_content_type() == "text/plain"
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_static_route_trace_has_unified_tags(server, agent):
    base, *_ = server
    assert http_get(base + "/api/apm")[0] == 200
    trace = find_trace(agent, lambda t: any(s["name"] == "flask.request" and s["resource"] == "GET /api/apm"
                                            for s in t))
    (root,) = by_name(trace, "flask.request")
    assert (root["service"], root["meta"]["env"], root["meta"]["version"]) == ("sample-flask-app", "test", "1.2.3")


@pytest.mark.parametrize("raw,resolves", [
    ("169.254.169.254", False),
    ("http://169.254.169.254/latest/meta-data/", False),
    ("127.0.0.1", False),
    ("10.0.0.1", False),
    ("http://[::1]/", False),
    ("not-allowed.example.org", False),
    ("file:///etc/passwd", False),
    ("gopher://example.com", False),
    ("http://example.com:8080/", False),
    ("internal.example.com", True),   # allowlisted, but resolves to 10.1.2.3
    ("mixed.example.com", True),      # one public + one link-local answer
])
def test_url_lookup_ssrf_refused(server, raw, resolves):
    base, netlog, *_ = server
    before = len(net_calls(netlog))
    status, body = lookup(base, raw)
    assert status == 400, body
    assert body.startswith(b"refused: ") and len(body) > 20, body
    new = net_calls(netlog)[before:]
    assert not [c for c in new if c["fn"] == "fetch"], new
    assert [c["fn"] for c in new] == (["resolve"] if resolves else []), new


def test_url_lookup_missing_param(server):
    base, netlog, *_ = server
    before = len(net_calls(netlog))
    assert http_get(base + "/url_lookup")[0] == 400
    assert lookup(base, "")[0] == 400
    assert len(net_calls(netlog)) == before


def test_unresolvable_allowlisted_name_is_502(server):
    base, netlog, *_ = server
    status, body = lookup(base, "www.datadoghq.com")  # fake DNS has no answer for it
    assert status == 502 and b"cannot resolve" in body
    assert not [c for c in net_calls(netlog) if c["fn"] == "fetch" and c["args"][1] == "www.datadoghq.com"]


# --------------------------------------------------------------------------- logs joined to traces
def app_log(path):
    """(syslog priority, JSON object) of every line the app wrote (log_format.py)."""
    lines = []
    for raw in path.read_text().splitlines():
        match = re.fullmatch(r"<([0-7])>(\{.*\})", raw)
        assert match, f"not a prioritised JSON line: {raw!r}"
        lines.append((int(match[1]), json.loads(match[2])))
    return lines


def request_lines(log, agent_marker):
    return [entry for _, entry in app_log(log) if entry.get("http", {}).get("useragent") == agent_marker]


def get_as(url, useragent):
    request = urllib.request.Request(url, headers={"User-Agent": useragent})
    try:
        with LOCAL.open(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def traced_request(server, agent, path: str, status: int, label: str):
    """One request with a user agent of its own: (that marker, its trace, the trace's flask.request span)."""
    marker = f"{label}-{time.monotonic_ns()}"
    assert get_as(server[0] + path, marker) == status
    trace = find_trace(agent, lambda t: any(s["meta"].get("http.useragent") == marker for s in t))
    (root,) = by_name(trace, "flask.request")
    return marker, trace, root


def test_every_line_is_json(server):
    *_, log, _ = server
    assert app_log(log), "gunicorn wrote nothing"  # its startup lines at least, as JSON too
    assert any(entry["logger"]["name"] == "gunicorn.error" for _, entry in app_log(log))


def test_request_log_carries_the_trace_the_agent_received(server, agent):
    log = server[2]
    marker, trace, root = traced_request(server, agent, "/api/apm", 200, "log-correlation")
    (line,) = wait_until(lambda: request_lines(log, marker), 5, "the request's log line")
    spans = {str(s["span_id"]): s for s in trace}
    assert line["dd"] == {"trace_id": logged_trace_id(root), "span_id": line["dd"]["span_id"],
                          "service": "sample-flask-app", "env": "test", "version": "1.2.3"}
    # The span active when the line was written: ddtrace's span of the after_request hook, in
    # the request's trace (Datadog links a log line by its trace id, and shows it on that span).
    assert spans[line["dd"]["span_id"]]["name"] == "app.log_request"
    assert len(line["dd"]["trace_id"]) == 32  # 128-bit ids, as the Agent's trace intake receives them
    assert (line["status"], line["http"]["status_code"], line["http"]["url_details"]["path"]) == ("info", 200, "/api/apm")
    assert line["duration"] > 0


def test_a_deliberate_failure_is_an_error_trace_and_an_error_line(server, agent):
    log = server[2]
    _, _, root = traced_request(server, agent, "/api/fail", 500, "deliberate-failure")
    assert root["error"] == 1, root  # counted in trace.flask.request.errors
    assert root["meta"]["http.status_code"] == "500"
    lines = wait_until(lambda: [(p, e) for p, e in app_log(log) if e.get("dd", {}).get("trace_id")
                                == logged_trace_id(root)], 5, "the failure's log lines")
    # Flask's traceback line and the request line, both errors to journald (<3>) and in the JSON.
    assert {(p, e["status"]) for p, e in lines} == {(3, "error")}
    (traceback,) = [e for _, e in lines if "error" in e]
    assert traceback["error"]["kind"] == "DeliberateFailure" and "raise DeliberateFailure" in traceback["error"]["stack"]


def test_the_traffic_generators_mix_is_what_the_app_serves(server):
    """Every path the generator sends (userdata/traffic/app_traffic.py) exists on the real app:
    the lookups succeed against the allowlist, and only the deliberate failures fail."""
    spec = importlib.util.spec_from_file_location("app_traffic", ROOT / "userdata" / "traffic" / "app_traffic.py")
    traffic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(traffic)
    base, *_ = server
    config = traffic.Config({"TRAFFIC_TARGET": base, "TRAFFIC_REQUESTS_PER_SECOND": "1",
                             "TRAFFIC_URL_LOOKUP_PERCENT": "20", "TRAFFIC_FAIL_PERCENT": "20",
                             "TRAFFIC_URL_LOOKUP_HOSTS": "example.com"})
    paths = list(itertools.islice(traffic.endpoints(config), 10))
    statuses = {path: traffic.send(base + path) for path in paths}
    assert {p for p, status in statuses.items() if status != 200} == {traffic.FAIL_ROUTE}
    assert statuses[traffic.FAIL_ROUTE] == 500


def test_no_secret_a_request_carries_reaches_the_log(server):
    """The request line logs the method, the path, the status and the user agent only: a
    credential in the query string, an Authorization header or a cookie is never written."""
    base, _, log, _ = server
    marker = f"secrets-{time.monotonic_ns()}"
    secrets = ("s3cret-in-the-url", "bearer-token-9f8e7d", "session-cookie-1a2b3c")
    url = base + f"/url_lookup?url-name=https://user:{secrets[0]}@example.com/&token={secrets[0]}"
    request = urllib.request.Request(url, headers={"User-Agent": marker, "Authorization": f"Bearer {secrets[1]}",
                                                   "Cookie": f"session={secrets[2]}"})
    try:
        LOCAL.open(request, timeout=5).close()
    except urllib.error.HTTPError as refused:
        assert refused.code == 400  # credentials in the URL are refused
    (line,) = wait_until(lambda: request_lines(log, marker), 5, "the request's log line")
    assert line["http"]["url_details"] == {"path": "/url_lookup"}
    written = log.read_text()
    assert not [secret for secret in secrets if secret in written]
