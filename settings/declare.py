"""How a stack setting is declared, once: its key, kind (type and bounds), default and meaning.

A section of the settings is a frozen dataclass whose fields are declared with `setting()`:

    @dataclass(frozen=True)
    class AppSettings:
        workers: int = setting("appWorkers", Integer(1, 32), 2,
                               "gunicorn workers of the app; its process monitor expects them plus the master")

From that one declaration come the validation (`read_section`: every bad value of every
section is reported together, in one `SettingsError`), the typed section a component
receives (the dataclass itself), the template values of the host's bundle
(rendering/bundle.py), and the configuration reference in docs/configuration.md
(settings/reference.py). A rule across settings is the section's `check` method.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Optional, Protocol, Sequence, TypeVar

T = TypeVar("T")
PROJECT = "observability-lab"
SETTING = "setting"  # the dataclass field metadata key holding its declaration


class Invalid(ValueError):
    """A raw value a kind refuses: each problem is what follows `<key> = <value>: ` or a full line."""

    def __init__(self, allowed: str, lines: Sequence[str] = ()):
        super().__init__(allowed)
        self.allowed = allowed
        self.lines = list(lines)  # complete problem lines (one per bad list item), if any


class Kind(Generic[T]):
    """A setting's type and bounds: parses a raw config string, describes itself for the docs."""

    def describe(self) -> str:
        raise NotImplementedError

    def parse(self, key: str, raw: str) -> T:
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(Kind[int]):
    low: int
    high: int

    def describe(self) -> str:
        return f"int, {self.low}–{self.high}"

    def parse(self, key: str, raw: str) -> int:
        return _number(raw, int, self.low, self.high)


@dataclass(frozen=True)
class Number(Kind[float]):
    low: float
    high: float

    def describe(self) -> str:
        return f"number, {self.low:g}–{self.high:g}"

    def parse(self, key: str, raw: str) -> float:
        return _number(raw, float, self.low, self.high)


def _number(raw: str, kind: Callable[[str], Any], low: float, high: float) -> Any:
    allowed = f"must be {'an integer' if kind is int else 'a number'} from {low:g} to {high:g}"
    try:
        parsed = kind(raw)
    except ValueError:
        raise Invalid(allowed) from None
    if not low <= parsed <= high:
        raise Invalid(allowed)
    return parsed


@dataclass(frozen=True)
class Flag(Kind[bool]):
    def describe(self) -> str:
        return "bool"

    def parse(self, key: str, raw: str) -> bool:
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise Invalid("must be true or false")


@dataclass(frozen=True)
class Choice(Kind[str]):
    options: tuple[str, ...]

    def describe(self) -> str:
        quoted = [f"`{option}`" for option in self.options]
        return " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)

    def parse(self, key: str, raw: str) -> str:
        if raw not in self.options:
            raise Invalid(f"allowed: {', '.join(self.options)}")
        return raw


@dataclass(frozen=True)
class Text(Kind[str]):
    """A string matching `pattern` as a whole (or accepted by `accept`)."""
    type_text: str  # the docs' type column
    allowed: str
    pattern: Optional[str] = None
    accept: Optional[Callable[[str], bool]] = None

    def describe(self) -> str:
        return self.type_text

    def ok(self, raw: str) -> bool:
        return ((self.pattern is None or re.fullmatch(self.pattern, raw) is not None)
                and (self.accept is None or self.accept(raw)))

    def parse(self, key: str, raw: str) -> str:
        if not self.ok(raw):
            raise Invalid(self.allowed)
        return raw


@dataclass(frozen=True)
class OptionalText(Kind[Optional[str]]):
    """Like Text; unset or empty is None."""
    type_text: str  # the docs' type column
    allowed: str
    pattern: str

    def describe(self) -> str:
        return self.type_text

    def parse(self, key: str, raw: str) -> Optional[str]:
        if raw == "":
            return None
        if not re.fullmatch(self.pattern, raw):
            raise Invalid(self.allowed)
        return raw


@dataclass(frozen=True)
class Timezone(Kind[str]):
    def describe(self) -> str:
        return "IANA timezone"

    def parse(self, key: str, raw: str) -> str:
        try:
            zoneinfo.ZoneInfo(raw)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise Invalid("must be an IANA timezone such as America/New_York or Europe/Paris") from None
        return raw


@dataclass(frozen=True)
class Names(Kind[tuple[str, ...]]):
    """A YAML list of strings, each accepted by `item`; a bad item is a problem of its own."""
    type_text: str  # the docs' type column
    item: Callable[[str], bool]
    allowed: str  # what a bad item is told

    def describe(self) -> str:
        return self.type_text

    def parse(self, key: str, raw: str) -> tuple[str, ...]:
        try:
            items = json.loads(raw)
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise Invalid("must be a YAML list of strings")
        bad = [f"{key} item {i!r}: {self.allowed}" for i in items if not self.item(i)]
        if bad:
            raise Invalid(self.allowed, bad)
        return tuple(items)


@dataclass(frozen=True)
class Secret(Kind[Any]):
    """Read with `get_secret`, never as plain text: a Pulumi secret output."""

    def describe(self) -> str:
        return "secret"

    def parse(self, key: str, raw: str) -> Any:  # pragma: no cover - secrets are not parsed
        raise NotImplementedError


@dataclass(frozen=True)
class Setting:
    key: str                 # as in Pulumi.<stack>.yaml; no namespace means observability-lab:
    kind: Kind[Any]
    default: Any
    meaning: str
    default_text: Optional[str] = None   # the docs' default column, where `default` says too little
    required: Optional[str] = None       # unset is an error, and this is what the user is told
    derive: Optional[Callable[[Context], Any]] = None  # the default, from the stack and earlier fields

    @property
    def full_key(self) -> str:
        return self.key if ":" in self.key else f"{PROJECT}:{self.key}"


@dataclass(frozen=True)
class Context:
    """What a derived default may depend on: the stack's name and the section's earlier fields."""
    stack: str
    values: Mapping[str, Any]


def setting(key: str, kind: Kind[T], default: T, meaning: str, *, default_text: Optional[str] = None,
            required: Optional[str] = None, derive: Optional[Callable[[Context], T]] = None) -> T:
    """Declare a section field as the stack setting `key` (see the module docstring)."""
    declared = Setting(key, kind, default, meaning, default_text, required, derive)
    return dataclasses.field(default=default, metadata={SETTING: declared})  # type: ignore[return-value]


def declarations(section: type) -> Iterator[tuple[str, Setting]]:
    """(field name, declaration) of every setting of a section class, in declaration order."""
    for field in dataclasses.fields(section):
        if SETTING in field.metadata:
            yield field.name, field.metadata[SETTING]


class Source(Protocol):
    """Where raw settings come from: Pulumi config, or a test's mapping."""

    def get(self, key: str) -> Optional[str]: ...

    def get_secret(self, key: str) -> Any: ...

    def is_secret(self, key: str) -> bool:
        """Whether the stack's config holds the value encrypted (`pulumi config set --secret`)."""
        ...

    def keys(self) -> Iterable[str]:
        """Every full key the stack sets (to tell it of a key that is no setting)."""
        ...


class MappingSource:
    """Raw settings from a mapping of full keys (a stack file read without Pulumi); its secrets
    are plain strings, for rendering and tests only. `secret_keys`: the keys the file holds
    encrypted; None when unknown, as in a test's own mapping (then every key counts as one)."""

    def __init__(self, values: Mapping[str, str], secret_keys: Optional[Sequence[str]] = None):
        self.values = dict(values)
        self.secret_keys = None if secret_keys is None else frozenset(secret_keys)

    def get(self, key: str) -> Optional[str]:
        return self.values.get(key)

    def get_secret(self, key: str) -> Any:
        return self.values.get(key)

    def is_secret(self, key: str) -> bool:
        return self.secret_keys is None or key in self.secret_keys

    def keys(self) -> Iterable[str]:
        return self.values.keys()


class Report:
    """Problems of one run, collected across sections; a section's `check` reports through it."""

    def __init__(self, stack: str, source: Source):
        self.stack = stack
        self.source = source
        self.problems: list[str] = []

    def key(self, section: Any, field: str) -> str:
        return _declaration(type(section) if not isinstance(section, type) else section, field).full_key

    def is_set(self, section: Any, field: str) -> bool:
        return self.source.get(self.key(section, field)) is not None

    def fail(self, section: Any, field: str, value: Any, allowed: str) -> None:
        self.problems.append(f"{self.key(section, field)} = {value!r}: {allowed}")


def _declaration(section: type, field: str) -> Setting:
    return dict(declarations(section))[field]


S = TypeVar("S")


def read_section(section: Callable[..., S], report: Report) -> S:
    """The section with every declared setting read from `report.source`; a bad or missing value
    is reported and replaced by its default, so later checks still run."""
    values: dict[str, Any] = {}
    for name, declared in declarations(section):  # type: ignore[arg-type]
        values[name] = _read(declared, Context(report.stack, dict(values)), report)
    result = section(**values)
    check = getattr(result, "check", None)
    if check is not None:
        check(report)
    return result


def _plain_secret_problem(key: str, stack: str) -> str:
    """A secret set with `pulumi config set` without --secret: in clear in Pulumi.<stack>.yaml,
    which the repo keeps. Refused, and never echoed."""
    return (f"{key} = [not shown]: is stored in plain text in Pulumi.{stack}.yaml; remove it "
            f"(`pulumi config rm {key}`) and set it with `pulumi config set --secret {key} <value>`")


def _read(declared: Setting, context: Context, report: Report) -> Any:
    default = declared.derive(context) if declared.derive else declared.default
    if isinstance(declared.kind, Secret):
        value = report.source.get_secret(declared.full_key)
        if value is None and declared.required:
            report.problems.append(f"{declared.full_key} = None: {declared.required}")
        elif value is not None and not report.source.is_secret(declared.full_key):
            report.problems.append(_plain_secret_problem(declared.full_key, report.stack))
        return value
    raw = report.source.get(declared.full_key)
    if raw is None:
        if declared.required:
            report.problems.append(f"{declared.full_key} = None: {declared.required}")
        return default
    try:
        return declared.kind.parse(declared.full_key, raw)
    except Invalid as invalid:
        report.problems.extend(invalid.lines or [f"{declared.full_key} = {raw!r}: {invalid.allowed}"])
        return default
