"""A stack's settings as the engine hands them to the program: Pulumi.<stack>.yaml plus overrides,
every value a string, secrets replaced by placeholders. Imports no Pulumi SDK, so what renders
from settings alone (the bundle, the document) is read without loading the engine."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

from settings.declare import MappingSource
from settings.stack import Settings, read_settings

ROOT = Path(__file__).resolve().parent.parent
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]

# Stand-ins for values a user sets with `pulumi config set --secret`; tests assert
# that they never leak outside the resources that must hold them.
PLACEHOLDER_SECRETS = {
    "datadog:apiKey": "placeholder-datadog-api-key-do-not-use",
    "datadog:appKey": "placeholder-datadog-app-key-do-not-use",
}


def config_key(key: str) -> str:
    """`instanceType` -> `observability-lab:instanceType`; namespaced keys stay as they are."""
    return key if ":" in key else f"{PROJECT}:{key}"


def load_stack_config(stack: str, stack_file: Optional[Path] = None) -> tuple[dict[str, str], list[str]]:
    """Pulumi.<stack>.yaml as the engine hands it to the program: every value a string."""
    path = stack_file or ROOT / f"Pulumi.{stack}.yaml"
    config, secret_keys = _stack_file_config(path.read_text())
    return dict(config), list(secret_keys)


# A function of the file's text alone, parsed once per distinct text: the tests evaluate a stack
# file a few hundred times, and PyYAML reads one in ~5 ms. The caller gets its own copies.
@lru_cache(maxsize=16)
def _stack_file_config(text: str) -> tuple[dict[str, str], tuple[str, ...]]:
    document = yaml.safe_load(text) or {}
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (document.get("config") or {}).items():
        full_key = config_key(key)
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[full_key] = f"placeholder-secret-for-{full_key}"
            secret_keys.append(full_key)
        else:
            config[full_key] = _config_string(value)
    for key, placeholder in PLACEHOLDER_SECRETS.items():
        if key not in config:
            config[key] = placeholder
            secret_keys.append(key)
    return config, tuple(secret_keys)


def stack_config(stack: str, overrides: Optional[Mapping[str, Any]] = None,
                 stack_file: Optional[Path] = None) -> tuple[dict[str, str], list[str]]:
    """Pulumi.<stack>.yaml plus `overrides` (an override of None removes the key, so the
    program's default applies), as the engine hands config to the program."""
    config, secret_keys = load_stack_config(stack, stack_file)
    for key, value in (overrides or {}).items():
        full_key = config_key(key)
        if value is None:
            config.pop(full_key, None)
        else:
            config[full_key] = _config_string(value)
    return config, secret_keys


def stack_settings(stack: str, overrides: Optional[Mapping[str, Any]] = None,
                   stack_file: Optional[Path] = None) -> Settings:
    """The stack's settings read straight from its file (and `overrides`), without the engine:
    what the program reads, for rendering its pure parts. Raises SettingsError."""
    config, secret_keys = stack_config(stack, overrides, stack_file)
    return read_settings(stack, MappingSource(config, secret_keys))


def _config_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
