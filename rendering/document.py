"""Delivery of the configuration bundle through SSM: a document, and an association running it.

An `aws.ssm.Document` (Command, schemaVersion 2.2, one `aws:runShellScript` step) carries
the whole bundle as a gzipped tar; its script unpacks it into
`/opt/observability-lab/bundles/<digest>/` and runs `converge.sh` from there. Two triggers
run that one script: the instance's first boot (its user-data fetches the document named
by an SSM parameter and runs it: rendering/first_boot.py) and an `aws.ssm.Association` on
the stack's hosts, named by instance id, after every change. Compressed, the bundle fits SSM's
64 KB document limit with room to spare; EC2's 16 KiB user-data could not carry it.

Why the association re-runs exactly when the content changes (and never otherwise):
the document's name carries the sha256 of its content, and so does the association's.
A content change is a new document and a new association, never an update: that avoids
every known provider trap at once. An association on `$LATEST` is not re-run by a new
document version (terraform-provider-aws #9996); updating a document's content in place
fails or is silently skipped (pulumi-aws #2555 `InvalidDocumentVersion`,
terraform-provider-aws #31131); `wait_for_success_timeout_seconds` only applies on create,
so with a new association on every change, `pulumi up` waits for every converge and fails
when it fails. AWS runs a new association at once on its targets, and a run-once
association (no schedule) is not re-run by an SSM Agent restart. An unchanged program
renders the same bytes, so the same names and no change at all. The old association and
document are deleted once the new ones exist.

The document takes no parameters (association parameters are strings, and SSM would
substitute `{{ }}` in the content).
"""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
import yaml

from rendering.bundle import BUNDLES_DIR, Bundle, sha256
from settings.naming import Naming

# libyaml's emitter (in PyYAML's wheels) writes the same YAML as PyYAML's pure-Python one,
# which spends ~70 ms scanning the payload's long lines character by character on every
# evaluation; tests/program/test_config_document.py checks the two agree.
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SSM_DOCUMENT_LIMIT = 65_536
# 10 % headroom below SSM's limit. dev's document (the Java workload, SLOs, logs, change events,
# the data volume) is 74 % of it with converge.sh's comment lines left out (rendering/bundle.py);
# xz instead of gzip would make every host, the plan, the policy pack and CI depend on xz-utils
# (not in minbase).
DOCUMENT_BUDGET_SHARE = 0.90
DOCUMENT_BUDGET = int(SSM_DOCUMENT_LIMIT * DOCUMENT_BUDGET_SHARE)
# The settings of unbounded length that the bundle's files carry (tests/program/test_config_document.py).
BUNDLE_LISTS = ("hostTags", "watchedProcesses", "urlLookupAllowlist")
# Base64 characters per runCommand item: each item costs its YAML list overhead, so long items
# save some 4.6 KB over base64's usual 76. SSM documents no limit on an item's length; this
# stays under the YAML width below (one item, one line) and is a whole number of base64 quanta.
PAYLOAD_LINE_CHARS = 960
# How long `pulumi up` waits for a new association to succeed on every host: a first
# boot (apt, MySQL, the app's venv) may hold the converge lock before it.
WAIT_FOR_SUCCESS_SECONDS = 1800


def bundle_archive(bundle: Bundle) -> bytes:
    """The bundle as a gzipped tar, byte-identical for identical files (no dates, no owners)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for path, content in sorted(bundle.files.items()):
            data = content.encode()
            entry = tarfile.TarInfo(path)
            entry.size, entry.mode, entry.mtime = len(data), 0o644, 0
            archive.addfile(entry, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def delivery_script(bundle: Bundle) -> list[str]:
    """The document's script, one line per runCommand item (SSM joins them with newlines);
    the base64 payload in lines of PAYLOAD_LINE_CHARS (GNU base64 -d takes any length).

    POSIX sh (the SSM Agent runs it with `sh`): unless the bundle's directory is there and
    its files hash to its name, unpack the bundle into a temporary directory and move it
    into place in one rename (a damaged copy removed first); then hand over to bash and
    converge.sh, which checks the digest again.
    """
    encoded = base64.b64encode(bundle_archive(bundle)).decode()
    return _script(bundle, [encoded[start:start + PAYLOAD_LINE_CHARS]
                            for start in range(0, len(encoded), PAYLOAD_LINE_CHARS)])


def document_id(bundle: Bundle) -> str:
    """What names a document: its bundle's digest and its script, not the gzip bytes.

    The bundle's digest covers every file; the script around the payload covers how they
    are delivered. zlib builds differ in their output, so the compressed payload is left
    out: the same files give the same name on every machine.
    """
    return sha256("\n".join(_script(bundle, ["<payload>"])))[:16]


def _script(bundle: Bundle, payload: list[str]) -> list[str]:
    return [
        "#!/bin/sh",
        f"# Unpacks configuration bundle {bundle.digest[:12]} ({len(bundle.files)} files, listed in",
        "# `make plan`), then converges this host on it with the bundle's converge.sh.",
        "set -eu",
        "# OBSERVABILITY_LAB_BUNDLES is set only by tests, to unpack into a scratch directory.",
        f"bundle=${{OBSERVABILITY_LAB_BUNDLES:-{BUNDLES_DIR}}}/{bundle.digest}",
        "# Its name is the sha256 of the sha256sum listing of its files (converge.sh checks it",
        "# too): a directory that does not match (edited, cut short) is unpacked again.",
        "intact() {",
        r"""  [ -d "$1" ] && [ "$(cd "$1" && find . -type f -printf '%P\n' | LC_ALL=C sort |""",
        r"""    xargs -d '\n' sha256sum | sha256sum | cut -d' ' -f1)" = "${1##*/}" ]""",
        "}",
        'if ! intact "$bundle"; then',
        '  mkdir -p "${bundle%/*}"',
        '  incoming=$(mktemp -d "${bundle%/*}/.incoming.XXXXXX")',
        "  base64 -d <<'END_OF_BUNDLE' | tar -xzf - -C \"$incoming\"",
        *payload,
        "END_OF_BUNDLE",
        '  if [ -d "$bundle" ] && ! intact "$bundle"; then',
        '    mv -T "$bundle" "$incoming.damaged" 2>/dev/null || true',
        '    rm -rf "$incoming.damaged"',
        "  fi",
        "  # A concurrent run may have unpacked the same digest meanwhile: same files, keep it.",
        '  mv -T "$incoming" "$bundle" 2>/dev/null || rm -rf "$incoming"',
        "fi",
        'exec bash "$bundle/converge.sh"',
    ]


def document_description(naming: Naming) -> str:
    return f"{naming.project} {naming.env}: unpack a configuration bundle and converge the host on it"


def document_content(bundle: Bundle, description: str) -> str:
    content = yaml.dump({
        "schemaVersion": "2.2",
        "description": description,
        "mainSteps": [{
            "action": "aws:runShellScript",
            "name": "converge",
            "precondition": {"StringEquals": ["platformType", "Linux"]},
            "inputs": {"timeoutSeconds": "3600", "runCommand": delivery_script(bundle)},
        }],
    }, Dumper=YAML_DUMPER, sort_keys=False, width=1_000)
    if len(content.encode()) > DOCUMENT_BUDGET:
        raise ValueError(f"the SSM document is {len(content.encode())} bytes; the budget is "
                         f"{DOCUMENT_BUDGET} ({DOCUMENT_BUDGET_SHARE:.0%} of SSM's {SSM_DOCUMENT_LIMIT}): "
                         f"what grows it are the lists the host's files carry ({', '.join(BUNDLE_LISTS)}); "
                         "shorten one")
    return content
