"""Collects every bad stack setting of one run, so a user fixes them all at once.

The reader parses raw config strings itself (instead of `Config.get_int` & co.)
because those raise on the first bad value; here every value is checked and
every problem is reported together in one `SettingsError`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable, Optional, Sequence, TypeVar

T = TypeVar("T")

# Every pattern is matched against the whole value (fullmatch): `re.match` with `$` also
# accepts a trailing newline, which would end a line of app.env or datadog.yaml early.
# Datadog tag rules: start with a letter, lowercase letters, digits and
# `_ - : . /`, at most 200 characters; we also require `key:value`.
_TAG = re.compile(r"[a-z][a-z0-9_.\-/]*:[a-z0-9_.\-/:]+")
# A notification handle: `@` then an email, a Slack/PagerDuty/team handle, ...
_LABEL = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?")
_HANDLE = re.compile(r"@[A-Za-z0-9_.+\-@/]+")
# An IAM role or user, as aws:PrincipalArn names it (a role's path included, never a session).
_IAM_PRINCIPAL = re.compile(r"arn:aws(-cn|-us-gov)?:iam::\d{12}:(role|user)/([\w+=,.@\-]+/)*[\w+=,.@\-]{1,64}")


class SettingsError(ValueError):
    """Every invalid stack setting of one run, one per line."""

    def __init__(self, stack: str, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} invalid setting(s) in stack '{stack}' "
            f"(Pulumi.{stack}.yaml); nothing was created:\n{lines}"
        )


class ConfigReader:
    """Reads one Pulumi config namespace, recording problems instead of raising."""

    def __init__(self, namespace: str, get: Callable[[str], Optional[str]]):
        self.namespace = namespace
        self._get = get
        self.problems: list[str] = []

    def key(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def fail(self, name: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{self.key(name)} = {value!r}: {allowed}")

    def raw(self, name: str) -> Optional[str]:
        return self._get(name)

    def string(self, name: str, default: str, pattern: Optional[str] = None,
               allowed: str = "") -> str:
        value = self._get(name)
        if value is None:
            return default
        if pattern is not None and not re.fullmatch(pattern, value):
            self.fail(name, value, allowed)
            return default
        return value

    def optional(self, name: str, pattern: str, allowed: str) -> Optional[str]:
        value = self._get(name)
        if value is None or value == "":
            return None
        if not re.fullmatch(pattern, value):
            self.fail(name, value, allowed)
            return None
        return value

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        value = self._get(name)
        if value is None:
            return default
        if value not in choices:
            self.fail(name, value, f"allowed: {', '.join(choices)}")
            return default
        return value

    def number(self, name: str, default: T, low: float, high: float,
               kind: Callable[[str], T]) -> T:
        value = self._get(name)
        if value is None:
            return default
        what = "an integer" if kind is int else "a number"
        try:
            parsed = kind(value)
        except ValueError:
            self.fail(name, value, f"must be {what} from {low:g} to {high:g}")
            return default
        if not low <= parsed <= high:  # type: ignore[operator]
            self.fail(name, value, f"must be {what} from {low:g} to {high:g}")
            return default
        return parsed

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        return self.number(name, default, low, high, int)

    def decimal(self, name: str, default: float, low: float, high: float) -> float:
        return self.number(name, default, low, high, float)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.fail(name, value, "must be true or false")
        return default

    def string_list(self, name: str, default: Sequence[str],
                    item_ok: Callable[[str], bool], allowed: str) -> tuple[str, ...]:
        value = self._get(name)
        if value is None:
            return tuple(default)
        try:
            items = json.loads(value)
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            self.fail(name, value, "must be a YAML list of strings")
            return tuple(default)
        bad = [i for i in items if not item_ok(i)]
        for item in bad:
            self.problems.append(f"{self.key(name)} item {item!r}: {allowed}")
        return tuple(default) if bad else tuple(items)


def is_datadog_tag(tag: str) -> bool:
    return len(tag) <= 200 and bool(_TAG.fullmatch(tag))


def is_handle(handle: str) -> bool:
    return bool(_HANDLE.fullmatch(handle))


def is_iam_principal_arn(arn: str) -> bool:
    return bool(_IAM_PRINCIPAL.fullmatch(arn))


def is_hostname(name: str) -> bool:
    """A DNS name (not an IP literal): the app's URL allowlist holds only names."""
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or labels[-1].isdigit():
        return False
    return all(_LABEL.fullmatch(label) for label in labels)


def is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return False
    return True


def is_whole_internet(cidr: str) -> bool:
    return ipaddress.ip_network(cidr).prefixlen == 0
