"""First boot: the host's #cloud-config user-data.

The user-data carries no configuration. cloud-init writes one small, stable script
(`userdata/first-boot/run_config_document.py`) and runs it once: it reads which SSM
document holds the stack's current configuration bundle (an SSM parameter), fetches it
and runs its script, the same script the SSM association runs after every change
(components/configuration.py, rendering/document.py). So both triggers converge the host with the same files and the
same converge.sh, and the user-data changes only when that fetcher does: settings and
every file of the bundle reach a running host through SSM alone. (EC2 caps user-data at
16 KiB; the bundle, gzipped, would not fit for long.)
"""

from __future__ import annotations

import yaml

from rendering.bundle import USERDATA_DIR

EC2_USER_DATA_LIMIT = 16_384
USER_DATA_BUDGET = int(EC2_USER_DATA_LIMIT * 0.7)  # 30 % headroom
FETCHER = USERDATA_DIR / "first-boot" / "run_config_document.py"
FETCHER_ON_HOST = "/opt/observability-lab/run_config_document.py"


# libyaml's emitter where PyYAML has it (its wheels do): the same YAML as the pure-Python one,
# faster (tests/program/test_user_data.py checks they agree).
EMITTER: type[yaml.SafeDumper] | type[yaml.CSafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _literal_str(dumper: yaml.SafeDumper | yaml.CSafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LITERAL_DUMPERS: dict[type, type] = {}


def _literal_dumper(emitter: type[yaml.SafeDumper] | type[yaml.CSafeDumper]) -> type:
    """The emitter writing multi-line strings as YAML literal blocks, so the script reads as a file."""
    if emitter not in _LITERAL_DUMPERS:
        dumper = type(f"Literal{emitter.__name__}", (emitter,), {})
        dumper.add_representer(str, _literal_str)
        _LITERAL_DUMPERS[emitter] = dumper
    return _LITERAL_DUMPERS[emitter]


def user_data(document_parameter: str, document_prefix: str) -> str:
    """The hosts' user-data, refused when it would leave EC2's limit too little headroom."""
    text = render_cloud_config(document_parameter, document_prefix)
    size = len(text.encode())
    if size > USER_DATA_BUDGET:
        raise ValueError(f"user-data is {size} bytes; the budget is {USER_DATA_BUDGET} "
                         f"(70 % of EC2's {EC2_USER_DATA_LIMIT})")
    return text


def render_cloud_config(document_parameter: str, document_prefix: str) -> str:
    """The complete #cloud-config document: write the fetcher, run it once on the parameter
    naming the current document; it runs only a document whose name has the stack's prefix."""
    document = {
        # Permissions as a quoted string: cloud-init's schema rejects YAML integers there.
        "write_files": [{"path": FETCHER_ON_HOST, "owner": "root:root", "permissions": "0755",
                         "content": FETCHER.read_text()}],
        "runcmd": [["python3", FETCHER_ON_HOST, document_parameter, document_prefix]],
    }
    return "#cloud-config\n" + yaml.dump(document, Dumper=_literal_dumper(EMITTER), sort_keys=False, width=1_000)
