"""What a text handed to AWS really contains, through its layers of base64 and gzip.

EC2 user-data may be sent plain (`userData`) or gzipped (`userDataBase64`), and files
inside a cloud-config may themselves be base64 or gzip+base64 (`encoding: gz+b64`), or a
MIME multi-part document with base64 parts. An SSM Command document may carry a whole
gzipped archive as base64 lines inside a script (`runCommand`, one YAML or JSON list item
per line, which the SSM Agent joins with newlines). A key hidden in any of those is still
readable by whoever can describe the instance or get the document, so every layer is
decoded and scanned. Nothing here knows how the program builds its user-data or documents.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, Iterator, NamedTuple

import yaml

from guardrails.values import get

USER_DATA_PLAIN = "userData"
USER_DATA_BASE64 = "userDataBase64"
DOCUMENT_CONTENT = "content"

# Datadog API keys are 32 hex characters, application keys 40; as whole tokens only, so a
# sha256 (64) or a longer identifier does not match.
_DATADOG_KEY = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{32})(?![0-9A-Za-z])")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
# A base64 run on one line, or a block of lines that are nothing but base64 (wrapped
# encodings: YAML block scalars, MIME parts, a heredoc in a script).
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_BASE64_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/]{4,}={0,2}[ \t]*")
_MAX_DEPTH = 4
_MAX_DECODED_BYTES = 4 * 1024 * 1024  # no gzip bomb in a policy run


class Layer(NamedTuple):
    where: str  # "userData", "gzip data in userDataBase64 (decoded)", ...
    text: str


class Finding(NamedTuple):
    what: str
    where: str


def user_data(props: Any) -> list[Layer]:
    """Every decoded layer of an instance's user-data, outermost first ([] if none)."""
    found: list[Layer] = []
    text = get(props, USER_DATA_PLAIN)
    if isinstance(text, str) and text:
        _unwrap(text.encode(), USER_DATA_PLAIN, 0, found)
    encoded = get(props, USER_DATA_BASE64)
    if isinstance(encoded, str) and encoded:
        data = _b64decode(encoded)
        _unwrap(data if data is not None else encoded.encode(), f"{USER_DATA_BASE64} (decoded)", 0, found)
    return found


def ssm_document(props: Any) -> list[Layer]:
    """Every decoded layer of an SSM document's content, and of each script in it as the
    SSM Agent runs it (its runCommand lines joined): base64 split over list items is only
    whole there."""
    content = get(props, DOCUMENT_CONTENT)
    if not isinstance(content, str) or not content:
        return []
    return list(_document_layers(content))


# The layers are a function of the content alone. Parsing a document (~60 KB of YAML, most of it a
# base64 payload) is the slow part of a policy run (~0.05 s with PyYAML's pure-Python reader), and
# one document can be validated several times in a process (a pack serving several previews, a
# test suite): it is parsed once per distinct content.
@lru_cache(maxsize=32)
def _document_layers(content: str) -> tuple[Layer, ...]:
    found: list[Layer] = []
    _unwrap(content.encode(), DOCUMENT_CONTENT, 0, found)
    for where, script in _scripts(content):
        layers: list[Layer] = []
        _unwrap(script.encode(), where, 0, layers)
        found += layers[1:]  # the script's own text is in the content, already scanned
    return tuple(found)


def _scripts(content: str) -> list[tuple[str, str]]:
    """(where, script) for each step of a Command document (YAML or JSON) with a runCommand."""
    try:
        document = yaml.safe_load(content)
    except yaml.YAMLError:
        return []
    steps = document.get("mainSteps") if isinstance(document, Mapping) else None
    scripts = []
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        inputs = step.get("inputs") if isinstance(step, Mapping) else None
        commands = inputs.get("runCommand") if isinstance(inputs, Mapping) else None
        if isinstance(commands, Sequence) and not isinstance(commands, str):
            scripts.append((f"the script of mainSteps[{index}] ({step.get('name', 'unnamed')})",
                            "\n".join(str(line) for line in commands)))
    return scripts


def findings(layers: list[Layer]) -> list[Finding]:
    """Datadog-key-shaped tokens and private keys, by kind and layer (never the value)."""
    found: list[Finding] = []
    for layer in layers:
        for match in _DATADOG_KEY.finditer(layer.text):
            kind = "API" if len(match.group(0)) == 32 else "application"
            found.append(Finding(f"a {len(match.group(0))}-hex-character token (the shape of a "
                                 f"Datadog {kind} key)", layer.where))
        if _PRIVATE_KEY.search(layer.text):
            found.append(Finding("a PEM private key", layer.where))
    return list(dict.fromkeys(found))


def _unwrap(data: bytes, where: str, depth: int, found: list[Layer]) -> None:
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data)
        where = f"gzip data in {where}"
    text = data.decode("utf-8", errors="replace")
    found.append(Layer(where, text))
    if depth >= _MAX_DEPTH:
        return
    for blob in _base64_blobs(text):
        decoded = _b64decode(blob)
        if decoded:
            _unwrap(decoded, f"base64 data in {where}", depth + 1, found)


def _base64_blobs(text: str) -> Iterator[str]:
    yield from (m.group(0) for m in _BASE64_RUN.finditer(text))
    block: list[str] = []
    for line in text.splitlines() + [""]:
        if _BASE64_LINE.fullmatch(line):
            block.append(line.strip())
            continue
        if len(block) > 1 and sum(map(len, block)) >= 24:
            yield "".join(block)
        block = []


def _b64decode(text: str) -> bytes | None:
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _gunzip(data: bytes) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, _MAX_DECODED_BYTES)
    except zlib.error:
        return data
