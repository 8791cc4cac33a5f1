#!/usr/bin/env python3
"""First boot: run this stack's current configuration document, as the SSM association does.

cloud-init runs this once, from the instance's user-data. It reads which SSM document
holds the stack's configuration bundle (the parameter named on the command line), fetches
that document and, only if it is this stack's (its name starts with the stack's document
prefix, also on the command line, and it is a Command document of exactly one
aws:runShellScript step), runs its script with `sh`, as root: the very script the State Manager association
runs after every change, so both triggers converge the host with the same files and the
same converge.sh. The user-data itself never carries the bundle (EC2 caps it at 16 KiB).

Standard library only, since a fresh Ubuntu image has python3 but no AWS CLI: credentials
of the instance profile from IMDSv2, requests signed with AWS Signature Version 4, the SSM
JSON API. At boot the credentials, the network or SSM can lag: it retries for 15 minutes.
"""

import datetime
import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

# Overridable only so tests can point them at local servers.
IMDS = os.environ.get("IMDS_ENDPOINT", "http://169.254.169.254")
SSM_ENDPOINT = os.environ.get("SSM_ENDPOINT", "")
RETRY_SECONDS = float(os.environ.get("RETRY_SECONDS", "900"))


def imds(path, token=None):
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    request = urllib.request.Request(IMDS + path, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def instance_identity():
    """(region, DNS suffix, credentials) of this instance, from IMDSv2 (tokens required)."""
    token_request = urllib.request.Request(
        IMDS + "/latest/api/token", method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    with urllib.request.urlopen(token_request, timeout=5) as response:
        token = response.read().decode()
    region = imds("/latest/meta-data/placement/region", token)
    domain = imds("/latest/meta-data/services/domain", token)
    role = imds("/latest/meta-data/iam/security-credentials/", token).split()[0]
    credentials = json.loads(imds("/latest/meta-data/iam/security-credentials/" + role, token))
    return region, domain, credentials


def signed_headers(host, region, target, body, credentials, now):
    """Headers of an AWS JSON 1.1 POST to `/`, signed with Signature Version 4."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = "{}/{}/ssm/aws4_request".format(now.strftime("%Y%m%d"), region)
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-security-token": credentials["Token"],
        "x-amz-target": target,
    }
    names = ";".join(sorted(headers))
    canonical = "\n".join(["POST", "/", ""] + ["{}:{}".format(k, headers[k]) for k in sorted(headers)]
                          + ["", names, hashlib.sha256(body).hexdigest()])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + credentials["SecretAccessKey"]).encode()
    for part in (now.strftime("%Y%m%d"), region, "ssm", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}".format(
        credentials["AccessKeyId"], scope, names, signature)
    return headers


def ssm(action, payload, region, domain, credentials):
    endpoint = SSM_ENDPOINT or "https://ssm.{}.{}".format(region, domain)
    body = json.dumps(payload).encode()
    host = endpoint.split("://", 1)[1].rstrip("/")
    headers = signed_headers(host, region, "AmazonSSM." + action, body, credentials,
                             datetime.datetime.now(datetime.timezone.utc))
    request = urllib.request.Request(endpoint + "/", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return json.loads(response.read().decode())
    except urllib.error.HTTPError as error:  # AWS says why in the body: keep it
        raise RuntimeError("SSM {} {}: HTTP {} {}".format(
            action, payload.get("Name"), error.code, error.read().decode(errors="replace"))) from None


class ForeignDocument(Exception):
    """The parameter names a document this fetcher must not run: never retried."""


def document_script(parameter, prefix):
    """The script of the document that `parameter` names, as the SSM Agent writes it."""
    region, domain, credentials = instance_identity()
    name = ssm("GetParameter", {"Name": parameter}, region, domain, credentials)["Parameter"]["Value"]
    # A name, not an ARN (another account's shared document), and one of this stack's.
    if not (name.startswith(prefix + "-") and len(name) > len(prefix) + 1 and "/" not in name):
        raise ForeignDocument("{} names document {!r}, which is not this stack's (not {}-*)".format(
            parameter, name, prefix))
    document = ssm("GetDocument", {"Name": name, "DocumentFormat": "JSON"}, region, domain, credentials)
    return name, shell_script(name, document)


def shell_script(name, document):
    """The one aws:runShellScript step of a Command document, joined as the SSM Agent joins it."""
    if document.get("Name") != name or document.get("DocumentType") != "Command":
        raise ForeignDocument("document {!r} is not the Command document asked for".format(name))
    try:
        steps = json.loads(document["Content"])["mainSteps"]
    except (KeyError, TypeError, ValueError):
        steps = None
    shell = [s for s in steps or [] if isinstance(s, dict) and s.get("action") == "aws:runShellScript"]
    lines = shell[0].get("inputs", {}).get("runCommand") if len(shell) == 1 else None
    if len(steps or []) != 1 or not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        raise ForeignDocument("document {!r} must have exactly one aws:runShellScript step".format(name))
    # The SSM Agent joins runCommand's lines with newlines into a file it runs with sh.
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: run_config_document.py <SSM parameter naming the configuration document> "
                 "<the stack's document name prefix>")
    deadline, delay = time.monotonic() + RETRY_SECONDS, min(2.0, RETRY_SECONDS / 100)
    while True:
        try:
            name, script = document_script(argv[1], argv[2])
            break
        except ForeignDocument as error:
            sys.exit("refusing to run it: {}".format(error))
        except Exception as error:  # noqa: BLE001 anything here is worth a retry at boot
            if time.monotonic() + delay > deadline:
                sys.exit("giving up on the configuration document: {!r}".format(error))
            print("configuration document not available yet ({!r}); retrying in {:g} s".format(error, delay),
                  file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, 60.0)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as handle:
        handle.write(script)
    print("running configuration document {}".format(name), flush=True)
    # converge.sh reads the trigger: at first boot it never goes back to an older bundle.
    os.execvpe("sh", ["sh", handle.name], dict(os.environ, CONVERGE_TRIGGER="first-boot"))


if __name__ == "__main__":
    main(sys.argv)
