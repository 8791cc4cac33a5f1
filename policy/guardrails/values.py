"""Reading resource properties the same way whoever hands them over.

A real engine gives a policy plain values, wrapped in pulumi-policy's read-only proxies
(`Mapping`/`Sequence`, not `dict`/`list`), which raise `UnknownValueError` for values
not known during a preview. Pulumi's in-process mock engine (the offline tests) keeps
the wire format's secret marker around secret values. Everything here accepts both, and
never catches `UnknownValueError`: the SDK turns it into "can't run during preview".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from pulumi_policy import PolicyConfigSchema, ResourceValidationArgs
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY


def plain(value: Any) -> Any:
    """The value without a secret marker (there is none in a real engine)."""
    while isinstance(value, Mapping) and value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG:
        value = value.get("value")
    return value


def get(props: Any, path: str) -> Any:
    """`props` at a dotted path ("metadataOptions.httpTokens"); None when any step is missing."""
    value = plain(props)
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = plain(value.get(key))
    return value


def items(value: Any) -> list[Any]:
    """A list property as a list of plain values; [] when unset."""
    value = plain(value)
    if value is None or isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [] if value is None else [value]
    return [plain(v) for v in value]


def strings(value: Any) -> list[str]:
    return [str(v) for v in items(value) if v is not None]


def number(value: Any) -> Optional[float]:
    """A number property (the wire format carries every number as a float); None if unset."""
    value = plain(value)
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def label(args: ResourceValidationArgs) -> str:
    """How a message names a resource: its type and Pulumi name."""
    return f"{args.resource_type} '{args.name}'"


def config(args: Any, schema: PolicyConfigSchema, key: str) -> Any:
    """A policy setting: the pack config's value, or the schema's default.

    The CLI fills in schema defaults itself; the fallback serves callers that do not
    (unit tests, and a Configure call that names only some keys).
    """
    value = args.get_config().get(key)
    return schema.properties[key].get("default") if value is None else value
