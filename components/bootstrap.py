"""The host's user-data: one #cloud-config document built from the files in userdata/.

Every file under userdata/ is staged on the host under /opt/observability-lab by
cloud-init's write_files; `*.tmpl` files are first rendered from stack settings with
`string.Template`. runcmd then runs the staged bootstrap.sh, which installs packages
and moves each file into place.

Every file stays plain text in the document, so reviewers read it as it is. When the
document is larger than 70 % of EC2's 16 KiB user-data limit, it is sent gzipped
(`user_data_base64`; cloud-init recognises gzip by its magic bytes), so what EC2
stores keeps at least 30 % headroom.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from pathlib import Path
from string import Template
from typing import Optional

import pulumi
import yaml

from components.settings import Settings

USERDATA_DIR = Path(__file__).resolve().parent.parent / "userdata"
STAGE_DIR = "/opt/observability-lab"
APP_DIR = "/opt/sample-flask-app"
APP_USER = "flaskapp"
APP_UNIT = "flask-app.service"
EC2_USER_DATA_LIMIT = 16_384
# Send gzipped above this, so the stored user-data keeps >= 30 % headroom.
PLAIN_TEXT_BUDGET = int(EC2_USER_DATA_LIMIT * 0.7)


def template_values(settings: Settings, sources: dict[str, str]) -> dict[str, str]:
    """Everything the *.tmpl files may use, already quoted for their format."""
    return {
        # YAML templates take JSON scalars/lists: valid YAML, no quoting surprises.
        "api_key_ref": json.dumps(f"ENC[{settings.api_key_parameter_name}]"),
        "aws_region": json.dumps(settings.aws_region),
        "site": json.dumps(settings.datadog_site),
        "hostname": json.dumps(settings.datadog_hostname),
        "env": settings.env,
        "host_tags": json.dumps(list(settings.agent.host_tags)),
        "check_interval": str(settings.agent.check_interval_seconds),
        "check_tags": json.dumps([f"service:{settings.service}"]),
        "process_instances": json.dumps([
            {"name": process, "search_string": [process], "exact_match": False}
            for process in settings.monitors.watched_processes]),
        # Shell/systemd env files: plain values (validated to need no quoting).
        "agent_version": settings.agent.version,
        "app_user": APP_USER,
        "app_dir": APP_DIR,
        "app_unit": APP_UNIT,
        "service": settings.service,
        "app_version": app_version(sources),
        "app_port": str(settings.host.app_port),
        "url_lookup_allowlist": ",".join(settings.app.url_lookup_allowlist),
        "setup_overhead_min_ms": str(settings.app.setup_overhead_min_ms),
        "setup_overhead_max_ms": str(settings.app.setup_overhead_max_ms),
    }


def app_version(sources: dict[str, str]) -> str:
    """DD_VERSION: a digest of the app's code, so every code change is a new version."""
    digest = hashlib.sha256()
    for relative in sorted(sources):
        if relative.startswith("app/") and relative.endswith((".py", "requirements.txt")):
            digest.update(sources[relative].encode())
    return digest.hexdigest()[:12]


def read_sources() -> dict[str, str]:
    """Every file under userdata/ (relative path -> text), read once per rendering.

    `*.example` files document options (as integrations-core's conf.yaml.example) and are never
    installed, so they are not staged: user-data has no bytes to spare.
    """
    return {path.relative_to(USERDATA_DIR).as_posix(): path.read_text()
            for path in sorted(USERDATA_DIR.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".example")}


def rendered_files(settings: Settings) -> dict[str, str]:
    """Host path -> content for every file under userdata/, templates rendered."""
    sources = read_sources()
    values = template_values(settings, sources)
    files: dict[str, str] = {}
    for relative, content in sources.items():
        if relative.endswith(".tmpl"):
            relative = relative[: -len(".tmpl")]
            content = Template(content).substitute(values)
        files[f"{STAGE_DIR}/{relative}"] = content
    return files


def _write_file(path: str, content: str) -> dict[str, str]:
    # Permissions as quoted strings: cloud-init's schema rejects YAML integers there.
    return {"path": path, "owner": "root:root",
            "permissions": "0755" if path.endswith(".sh") else "0644",
            "content": content}


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as YAML literal blocks, so the plain files read as files."""


def _literal_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _literal_str)


def render_user_data(settings: Settings) -> str:
    """The complete #cloud-config document for this stack's host."""
    document = {
        "write_files": [_write_file(path, content)
                        for path, content in rendered_files(settings).items()],
        "runcmd": [["bash", f"{STAGE_DIR}/bootstrap.sh"]],
    }
    body = yaml.dump(document, Dumper=_LiteralDumper, sort_keys=False, width=1_000)
    return "#cloud-config\n" + body


def ec2_payload(cloud_config: str) -> bytes:
    """The bytes EC2 stores: the document itself, or gzipped when it is too large."""
    raw = cloud_config.encode()
    if len(raw) <= PLAIN_TEXT_BUDGET:
        return raw
    return gzip.compress(raw, compresslevel=9, mtime=0)  # mtime=0: same input, same bytes


class AgentBootstrap(pulumi.ComponentResource):
    """Renders the user-data that turns a bare Ubuntu host into the monitored host.

    Exactly one of `user_data` (plain document) and `user_data_base64` (gzipped) is set.
    """

    def __init__(self, name: str, settings: Settings,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("observability-lab:host:AgentBootstrap", name, None, opts)
        self.cloud_config = render_user_data(settings)
        payload = ec2_payload(self.cloud_config)
        if len(payload) > PLAIN_TEXT_BUDGET:
            raise ValueError(f"user-data is {len(payload)} bytes after gzip; the budget is "
                             f"{PLAIN_TEXT_BUDGET} (70 % of EC2's {EC2_USER_DATA_LIMIT})")
        compressed = payload != self.cloud_config.encode()
        self.user_data: Optional[str] = None if compressed else self.cloud_config
        self.user_data_base64: Optional[str] = base64.b64encode(payload).decode() if compressed else None
        self.register_outputs({
            "cloudConfigBytes": len(self.cloud_config.encode()),
            "userDataBytes": len(payload),
            "userDataSha256": hashlib.sha256(payload).hexdigest(),
        })
