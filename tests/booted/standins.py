"""The world a booted host talks to, inside its private network namespace, and nothing else.

Every stand-in listens on a socket inside the host's namespace (netns.py) and is served by the
tests' threads. Each says what it imitates (`IMITATES`) and can be told to fail (`failing`: an
HTTP status every request then gets; `refusing` for a relay). Names resolve through the
container's /etc/hosts (`hosts_lines`), which only ever point at these sockets:

* instance metadata, IMDSv2 (token, instance tags incl. datadog-hostname, region, domain, the
  instance profile's credentials), on 169.254.169.254:80;
* over TLS with a throwaway CA the container trusts, on one address (names told apart by the
  Host header): Datadog's key server and apt repository (apt_repo.py), the SSM API for the
  first-boot fetcher (moto's server, as tests/host/test_first_boot.py uses it), the GBFS feed;
* the trace intake on 127.0.0.1:8126: a relay to ddapm-test-agent on the machine's loopback;
* relays to the package registries the machine reaches, apt's mirrors and pip's index only.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.booted.netns import NetworkNamespace
from tests.support import netns as netns_support

IMDS_ADDRESS = "169.254.169.254"
TLS_ADDRESS = "127.0.1.1"
RELAY_ADDRESSES = "127.0.2.{}"
TRACE_PORT = 8126
IMDS_TOKEN_PREFIX = "imds-v2-token-"
INSTANCE_ROLE = "observability-lab-dev-host"
INSTANCE_CREDENTIALS = {"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIABOOTEDHOSTEXAMPLE",
                        "SecretAccessKey": "booted/host/secret/for/tests/only", "Token": "booted-host-session"}
# pip's index; apt's mirrors come from the machine's own sources (image.machine_mirrors).
PIP_HOSTS = ("pypi.org", "files.pythonhosted.org")


class ThrowawayCA:
    """A CA made for one test session, and one server certificate for every TLS stand-in."""

    def __init__(self, directory: Path, names: list[str], make: bool = True):
        self.directory, self.names = directory, names
        self.cert, self.server_cert, self.server_key = (directory / "ca.pem", directory / "server.pem",
                                                        directory / "server.key")
        if make:
            self.make()

    def make(self) -> None:
        directory, names = self.directory, self.names
        directory.mkdir(parents=True, exist_ok=True)
        key = directory / "ca.key"
        openssl = ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        subprocess.run([*openssl, "-x509", "-days", "2", "-keyout", key, "-out", self.cert,
                        "-subj", "/CN=observability-lab throwaway test CA",
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"], check=True, capture_output=True)
        csr = directory / "server.csr"
        subprocess.run([*openssl, "-keyout", self.server_key, "-out", csr, "-subj", "/CN=observability-lab stand-ins"],
                       check=True, capture_output=True)
        extensions = directory / "server.ext"
        extensions.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                              "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
                              "authorityKeyIdentifier=keyid\n"
                              f"subjectAltName={','.join('DNS:' + name for name in names)}\n")
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", key,
                        "-CAcreateserial", "-days", "2", "-out", self.server_cert, "-extfile", extensions],
                       check=True, capture_output=True)


class StandIn:
    """An HTTP stand-in: a WSGI app that answers `failing` to every request when it is set."""

    IMITATES = ""
    failing: Optional[int] = None

    def __call__(self, environ, start_response):
        request = Request(environ)
        if self.failing is not None:
            response = Response(f"stand-in told to fail ({self.IMITATES})\n", status=self.failing)
        else:
            response = self.answer(request)
        return response(environ, start_response)

    def answer(self, request: Request) -> Response:
        raise NotImplementedError


class InstanceMetadata(StandIn):
    IMITATES = "EC2 instance metadata, IMDSv2: a PUT for a session token, then GETs with it only"

    def __init__(self, region: str, tags: dict[str, str]):
        self.region = region
        self.tags = dict(tags)
        self.tokens: set[str] = set()
        self.requests: list[str] = []

    def answer(self, request: Request) -> Response:
        self.requests.append(f"{request.method} {request.path}")
        if request.method == "PUT" and request.path == "/latest/api/token":
            if not request.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return Response(status=400)
            token = f"{IMDS_TOKEN_PREFIX}{len(self.tokens)}"
            self.tokens.add(token)
            return Response(token)
        if request.headers.get("X-aws-ec2-metadata-token") not in self.tokens:
            return Response(status=401)  # IMDSv2 required: no token, no metadata
        base = "/latest/meta-data/"
        answers = {base + "placement/region": self.region, base + "services/domain": "amazonaws.com",
                   base + "iam/security-credentials/": INSTANCE_ROLE,
                   base + f"iam/security-credentials/{INSTANCE_ROLE}": json.dumps(INSTANCE_CREDENTIALS),
                   base + "tags/instance": "\n".join(sorted(self.tags)),
                   **{base + f"tags/instance/{key}": value for key, value in self.tags.items()}}
        if request.path in answers:
            return Response(answers[request.path])
        return Response(status=404)


class KeyServer(StandIn):
    IMITATES = "https://keys.datadoghq.com: Datadog's apt signing keys, DATADOG_APT_KEY_<id>.public"

    def __init__(self, public_keys: dict[str, bytes]):
        self.public_keys = public_keys

    def answer(self, request: Request) -> Response:
        name = request.path.lstrip("/")
        for key_id, key in self.public_keys.items():
            if name == f"DATADOG_APT_KEY_{key_id}.public":
                return Response(key, content_type="application/pgp-keys")
        return Response(status=404)


class StaticFiles(StandIn):
    """Files of a directory by path: the apt repository (apt_repo.py writes it)."""

    def __init__(self, root: Path, imitates: str):
        self.root = root
        self.IMITATES = imitates
        self.requests: list[str] = []

    def answer(self, request: Request) -> Response:
        self.requests.append(request.path)
        path = (self.root / request.path.lstrip("/")).resolve()
        if self.root.resolve() not in path.parents or not path.is_file():
            return Response(status=404)
        return Response(path.read_bytes(), content_type="application/octet-stream")


class BikeShareFeed(StandIn):
    IMITATES = "a GBFS 2.3 system (Citi Bike's auto-discovery file and its station feeds)"
    STATIONS = [("72", "W 52 St & 11 Ave", 55, 20), ("79", "Franklin St & W Broadway", 33, 0),
                ("82", "St James Pl & Pearl St", 27, 27)]

    def __init__(self, host: str, path: str):
        self.base = f"https://{host}{path.rsplit('/', 1)[0]}"
        self.discovery = path

    def answer(self, request: Request) -> Response:
        now = int(time.time())
        feeds = ("system_information", "station_information", "station_status")
        head = {"last_updated": now - 5, "ttl": 10, "version": "2.3"}
        documents = {
            self.discovery: {**head, "data": {"en": {"feeds": [
                {"name": name, "url": f"{self.base}/en/{name}.json"} for name in feeds]}}},
            f"{self.discovery.rsplit('/', 1)[0]}/en/system_information.json": {**head, "data": {
                "system_id": "booted_test", "language": "en", "name": "Bike share stand-in",
                "timezone": "America/New_York"}},
            f"{self.discovery.rsplit('/', 1)[0]}/en/station_information.json": {**head, "data": {"stations": [
                {"station_id": sid, "name": name, "lat": 40.7, "lon": -74.0, "capacity": capacity}
                for sid, name, capacity, _ in self.STATIONS]}},
            f"{self.discovery.rsplit('/', 1)[0]}/en/station_status.json": {**head, "data": {"stations": [
                {"station_id": sid, "num_bikes_available": bikes, "num_docks_available": capacity - bikes,
                 "is_installed": True, "is_renting": True, "is_returning": True, "last_reported": now - 30}
                for sid, _, capacity, bikes in self.STATIONS]}},
        }
        if request.path in documents:
            return Response(json.dumps(documents[request.path]), content_type="application/json")
        return Response(status=404)


class ByHost:
    """One TLS listener for several names: the Host header picks the stand-in."""

    def __init__(self, apps: dict[str, Callable]):
        self.apps = apps

    def __call__(self, environ, start_response):
        host = environ.get("HTTP_HOST", "").split(":")[0]
        if host not in self.apps:
            return Response(f"no stand-in for {host}\n", status=421)(environ, start_response)
        return self.apps[host](environ, start_response)


class Relay(netns_support.Relay):
    """The shared relay (tests/support/netns.py) as a stand-in: connections to a listening socket
    in the host's namespace passed to one destination reached from the machine's own (apt's
    mirrors, pip's index, the trace intake); it can refuse them all, and counts those it relays."""

    def __init__(self, listener: socket.socket, destination: tuple[str, int], imitates: str):
        self.IMITATES = imitates
        self.refusing = False
        self.connections = 0
        super().__init__(listener, destination)

    def admit(self, client: socket.socket) -> bool:
        if self.refusing:
            return False
        self.connections += 1
        return True


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # the stand-ins keep their own records
        pass


def serve(listener: socket.socket, app, ssl_context=None) -> BaseWSGIServer:
    """Serves a WSGI app on a socket made inside a namespace, from a thread of the machine."""
    host, port = listener.getsockname()[:2]
    server = make_server(host, port, app, threaded=True, ssl_context=ssl_context, fd=listener.fileno(),
                         request_handler=QuietHandler)
    listener.close()  # the server holds its own duplicate
    threading.Thread(target=server.serve_forever, daemon=True, name=f"standin-{host}:{port}").start()
    return server


def registry_addresses(registries: list[tuple[str, int]]) -> dict[str, str]:
    """The address each registry's name gets in the host's namespace (its relays listen there)."""
    hosts = list(dict.fromkeys(host for host, _ in registries))
    return {host: RELAY_ADDRESSES.format(index) for index, host in enumerate(hosts, start=1)}


def hosts_file(tls_names: list[str], registries: list[tuple[str, int]]) -> str:
    """The host's /etc/hosts: every name it may reach is one of these sockets."""
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback",
             f"{TLS_ADDRESS} {' '.join(sorted(tls_names))}"]
    lines += [f"{address} {host}" for host, address in registry_addresses(registries).items()]
    return "\n".join(lines) + "\n"


class World:
    """Every stand-in of one booted host, in its namespace."""

    def __init__(self, netns: NetworkNamespace, *, tls_apps: dict[str, Callable], imds: InstanceMetadata,
                 ca: ThrowawayCA, registries: list[tuple[str, int]], trace_intake: int):
        import ssl
        self.imds = imds
        self.tls_apps = tls_apps
        self.servers: list[BaseWSGIServer] = []
        self.relays: dict[str, Relay] = {}
        netns.add_address(IMDS_ADDRESS)
        self.servers.append(serve(netns.listen(IMDS_ADDRESS, 80), imds))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(ca.server_cert, ca.server_key)
        self.servers.append(serve(netns.listen(TLS_ADDRESS, 443), ByHost(tls_apps), context))
        addresses = registry_addresses(registries)
        for host, port in registries:
            address = addresses[host]
            self.relays[f"{host}:{port}"] = Relay(netns.listen(address, port), (host, port),
                                                  f"the package registry {host}:{port}")
        self.relays["trace-intake"] = Relay(netns.listen("127.0.0.1", TRACE_PORT), ("127.0.0.1", trace_intake),
                                            "the Agent's trace intake (ddapm-test-agent on the machine)")

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for relay in self.relays.values():
            relay.close()


def moto_app():
    """moto's SSM API (every moto server in this process shares its state)."""
    return DomainDispatcherApplication(create_backend_app)
