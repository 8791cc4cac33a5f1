"""The first-boot fetcher (userdata/first-boot/run_config_document.py), against real peers.

* Its Signature Version 4 is compared with botocore's own signer on the same request.
* It runs for real against moto's SSM server (an independent implementation of the SSM
  API, on 127.0.0.1) holding the stack's rendered document and parameter, and against a
  small IMDSv2 endpoint on 127.0.0.1 that refuses requests without a session token. The
  script it fetches then unpacks the bundle and converges a scratch root, with the host
  commands replaced by recorders (tests/support/converge_harness.py).

What stays unproven here: that the real IMDS and SSM endpoints answer as these do.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from rendering.first_boot import FETCHER
from tests.support import REGION
from tests.support.converge_harness import Host

# boto3, botocore and moto are imported where they are used: every pytest process that
# collects this file (both workers of `-n 2`) would otherwise pay their ~0.5 CPU-s import.
CREDENTIALS = {"AccessKeyId": "ASIAEXAMPLEEXAMPLE00", "SecretAccessKey": "example/secret/key/for/tests/only",
               "Token": "session-token-for-tests"}


def load_fetcher():
    spec = importlib.util.spec_from_file_location("run_config_document", FETCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("target,payload", [
    ("AmazonSSM.GetParameter", {"Name": "/observability-lab/dev/host-config/document"}),
    ("AmazonSSM.GetDocument", {"Name": "observability-lab-dev-host-config-0123", "DocumentFormat": "JSON"}),
])
def test_signature_matches_botocores_signer(monkeypatch, target, payload):
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = datetime.datetime(2026, 11, 28, 14, 5, 9, tzinfo=datetime.timezone.utc)
    body = json.dumps(payload).encode()
    host = f"ssm.{REGION}.amazonaws.com"
    ours = load_fetcher().signed_headers(host, REGION, target, body, CREDENTIALS, now)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    request = AWSRequest(method="POST", url=f"https://{host}/", data=body,
                         headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target})
    botocore.auth.SigV4Auth(Credentials(CREDENTIALS["AccessKeyId"], CREDENTIALS["SecretAccessKey"],
                                        CREDENTIALS["Token"]), "ssm", REGION).add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]


class FakeImds(BaseHTTPRequestHandler):
    """IMDSv2 as EC2 answers it: a session token first, then metadata for that token only."""

    missing_credentials = 0  # answer 404 for the role's credentials this many times first

    def do_PUT(self):  # noqa: N802
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._answer(200, "imds-session-token")
        self._answer(400, "")

    def do_GET(self):  # noqa: N802
        if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
            return self._answer(401, "")
        answers = {"/latest/meta-data/placement/region": REGION,
                   "/latest/meta-data/services/domain": "amazonaws.com",
                   "/latest/meta-data/iam/security-credentials/": "observability-lab-dev-host"}
        if self.path == "/latest/meta-data/iam/security-credentials/observability-lab-dev-host":
            if FakeImds.missing_credentials > 0:
                FakeImds.missing_credentials -= 1
                return self._answer(404, "")
            return self._answer(200, json.dumps({"Code": "Success", **CREDENTIALS}))
        self._answer(200 if self.path in answers else 404, answers.get(self.path, ""))

    def _answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope="module")
def imds():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeImds)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()  # shutdown polls this
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def ssm_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


DEV_PARAMETER = "/observability-lab/dev/host-config/document"
DEV_PREFIX = "observability-lab-dev-host-config"


@pytest.fixture(scope="module")
def dev(rendered_document):
    """dev's configuration document, rendered from its settings as the program registers it."""
    return rendered_document("dev")


@pytest.fixture(scope="module")
def prod(rendered_document):
    return rendered_document("prod")


@pytest.fixture(scope="module")
def ssm(ssm_endpoint):
    """A boto3 SSM client of the test's moto server, as `pulumi up` would call SSM."""
    import boto3

    return boto3.client("ssm", region_name=REGION, endpoint_url=ssm_endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def publish(ssm, document, parameter: str, *, content: str | None = None, name: str | None = None) -> str:
    """What `pulumi up` creates: the document and the parameter naming it."""
    name = name or document.name
    ssm.create_document(Content=content or document.content, Name=name, DocumentType="Command",
                        DocumentFormat="YAML", TargetType="/AWS::EC2::Instance")
    ssm.put_parameter(Name=parameter, Value=name, Type="String", Overwrite=True)
    return name


# The fetcher's first retry waits a hundredth of this bound, then twice as long each time.
def run_fetcher(host: Host, imds: str, ssm: str, parameter: str, retry_seconds: str = "5"):
    return host.run([sys.executable, str(FETCHER), parameter, DEV_PREFIX], IMDS_ENDPOINT=imds,
                    SSM_ENDPOINT=ssm, RETRY_SECONDS=retry_seconds)


def test_first_boot_fetches_the_current_document_and_converges_with_it(
        dev, imds, ssm_endpoint, ssm, tmp_path):
    parameter = DEV_PARAMETER
    assert (dev.parameter, dev.name.rsplit("-", 1)[0]) == (DEV_PARAMETER, DEV_PREFIX)
    name = publish(ssm, dev, parameter)
    FakeImds.missing_credentials = 2  # the instance profile shows up late at boot
    host = Host(tmp_path)
    run = run_fetcher(host, imds, ssm_endpoint, parameter)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr.count("configuration document not available yet") == 2
    assert f"running configuration document {name}" in run.stdout
    assert "(first-boot)" in run.stdout and "service datadog-agent: restarted" in run.stdout
    assert host.path("/etc/datadog-agent/datadog.yaml").exists()


def test_first_boot_gives_up_with_a_clear_message(imds, ssm_endpoint, tmp_path):
    run = run_fetcher(Host(tmp_path), imds, ssm_endpoint, "/observability-lab/dev/no-such-parameter",
                      retry_seconds="0.3")
    assert run.returncode != 0
    assert "giving up on the configuration document" in run.stderr
    assert "GetParameter /observability-lab/dev/no-such-parameter: HTTP 400" in run.stderr
    assert "ParameterNotFound" in run.stderr


# libyaml's safe loader and emitter when PyYAML has them (as rendering/document.py): the
# document carries the whole bundle, ~60 KB that the pure-Python ones take ~0.1 CPU-s over.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _two_steps(content: str) -> str:
    document = yaml.load(content, Loader=LOADER)
    document["mainSteps"].append({**document["mainSteps"][0], "name": "second"})
    return yaml.dump(document, Dumper=DUMPER, sort_keys=False)


def _power_shell(content: str) -> str:
    document = yaml.load(content, Loader=LOADER)
    document["mainSteps"][0]["action"] = "aws:runPowerShellScript"
    return yaml.dump(document, Dumper=DUMPER, sort_keys=False)


@pytest.mark.parametrize("case", ["another-stacks-document", "an-aws-document", "two-steps", "not-a-shell-step"])
def test_first_boot_refuses_a_document_that_is_not_this_stacks(dev, prod, imds, ssm_endpoint, ssm, tmp_path, case):
    """Whoever can rewrite the parameter must not get dev's hosts to run, as root, prod's
    document, another one, or a document of another shape: refused at once, nothing run."""
    parameter = f"/observability-lab/dev/host-config/{case}"
    if case == "another-stacks-document":
        name = publish(ssm, prod, parameter)
        why = "which is not this stack's"
    elif case == "an-aws-document":
        name = publish(ssm, dev, parameter, name="AWS-RunShellScript-lookalike")
        why = "which is not this stack's"
    else:
        change = _two_steps if case == "two-steps" else _power_shell
        name = publish(ssm, dev, parameter, content=change(dev.content),
                       name=f"{DEV_PREFIX}-{case}")
        why = "exactly one aws:runShellScript step"
    host = Host(tmp_path)
    run = run_fetcher(host, imds, ssm_endpoint, parameter)
    assert run.returncode != 0
    assert "refusing to run it" in run.stderr and why in run.stderr and name in run.stderr, run.stderr
    assert "not available yet" not in run.stderr  # not retried: it will not become ours
    assert "running configuration document" not in run.stdout
    assert not host.path("/etc/datadog-agent/datadog.yaml").exists()
